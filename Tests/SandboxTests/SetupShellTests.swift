import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Setup commands through the box's setup shell (SetupShell.swift) instead of `crun exec`.
@Suite struct SetupShellTests {
    @Test func quotingSurvivesARealShell() throws {
        for value in ExecTests.nasty.values + ["'", "''", "a'b'c", "\\'", "$(id)", "\n'\n"] {
            let r = try runCommandBlocking("/bin/sh", ["/bin/sh", "-c", "printf %s " + SetupShell.quote(value)])
            #expect(r.stdout == Array(value.utf8), "quoting of \(value.debugDescription)")
        }
        #expect(SetupShell.assignment("K=a=b'c") == "K='a=b'\\''c'")
        #expect(SetupShell.exportable(["PATH=/bin", "A_1=x", "_=y"]))
        #expect(!SetupShell.exportable(["1A=x"]))
        #expect(!SetupShell.exportable(["A-B=x"]))
        #expect(!SetupShell.exportable(["UID=0"]))
    }

    /// What a process can see of itself: environment, credentials, capabilities, seccomp,
    /// namespaces, cgroups, limits, working directory, open descriptors, stdin.
    static let probe = """
        cat /proc/self/environ | tr '\\0' '\\n' | sort
        grep -E '^(Uid|Gid|Groups|Cap|Seccomp|NoNewPrivs)' /proc/self/status
        for n in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$n; done
        cat /proc/self/cgroup | sort
        ulimit -n; ulimit -u; pwd; ls /proc/self/fd | wc -l; cat | wc -c
        """

    @Test func commandsSeeWhatExecSees() async throws {
        try await withHarness("shs") { h in
            try await h.runtime.create(id: "s1", limits: Harness.limits, env: ExecTests.nasty, setupShell: true)
            let viaShell = try #require(
                try await h.runtime.runSetupCommand(id: "s1", command: Self.probe, timeout: .seconds(20), outputLimit: 1 << 20))
            let viaExec = try await h.runtime.exec(
                id: "s1", BoxProcessSpec(argv: ["/bin/sh", "-c", Self.probe], env: [:], cwd: "/workspace"), stdin: nil,
                timeout: .seconds(20), outputLimit: 1 << 20, mergeStderr: true)
            #expect(viaShell.exitCode == 0)
            #expect(viaShell.out == viaExec.out)
            #expect(viaShell.out.contains("ANTHROPIC_API_KEY=\(ExecTests.nasty["ANTHROPIC_API_KEY"] ?? "")"))
            #expect(viaShell.out.contains("\n/workspace\n"))
            // The values never sit on a command line or in the bundle.
            let secret = ExecTests.nasty["OPENAI_API_KEY"] ?? ""
            let slow = Task {
                try await h.runtime.runSetupCommand(id: "s1", command: "sleep 1", timeout: .seconds(20), outputLimit: 1024)
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(!hostCommandLines().contains { $0.contains(secret) })
            _ = try await slow.value
            for file in [h.runtime.boxDirectory("s1") + "/config.json", "/run/crun/\(h.runtime.containerName("s1"))/config.json"] {
                let bytes = try #require(readFileBytes(file))
                #expect(!String(decoding: bytes, as: UTF8.self).contains(secret), "\(file)")
            }
        }
    }

    @Test func statusOutputOrderAndTimeout() async throws {
        try await withHarness("sht") { h in
            try await h.runtime.create(id: "s2", limits: Harness.limits, env: [:], setupShell: true)
            func run(_ c: String, _ t: Duration = .seconds(20), limit: Int = 1 << 20) async throws -> BoxExecResult {
                try #require(try await h.runtime.runSetupCommand(id: "s2", command: c, timeout: t, outputLimit: limit))
            }
            let a = try await run("echo out; echo err >&2; echo out2; exit 7")
            #expect(a.exitCode == 7)
            #expect(a.out == "out\nerr\nout2\n")
            // Each command starts in /workspace with a fresh shell: cd and variables do not carry over.
            _ = try await run("cd /tmp; X=1; export Y=2")
            #expect(try await run("pwd; echo \"[$X$Y]\"").out == "/workspace\n[]\n")
            // The tail is kept; older output is dropped and marked.
            let big = try await run("seq 1 100000", limit: 1000)
            #expect(big.truncated && big.stdout.count == 1000 && big.out.hasSuffix("100000\n"))
            // A command killed by a signal: the shell's status 128+N.
            #expect(try await run("kill -9 $$").exitCode == 137)
            let slow = try await run("sleep 30", .seconds(1))
            #expect(slow.timedOut && slow.exitCode == nil)
        }
    }

    @Test func finishLeavesAPauseThatSurvivesStopAndStart() async throws {
        try await withHarness("shf") { h in
            try await h.runtime.create(id: "s3", limits: Harness.limits, env: ["A": "1"], setupShell: true)
            #expect(try await h.runtime.runSetupCommand(id: "s3", command: "true", timeout: .seconds(20), outputLimit: 64)?.exitCode == 0)
            await h.runtime.finishSetup(id: "s3")
            // Once finished, commands go through exec (nil here), and the box keeps running.
            #expect(try await h.runtime.runSetupCommand(id: "s3", command: "true", timeout: .seconds(5), outputLimit: 64) == nil)
            func processes() async throws -> String {
                try await h.sh("s3", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done").out
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(await h.runtime.isRunning(id: "s3"))
            var ps = try await processes()
            #expect(ps.contains("/.devbox/init -P"))
            #expect(!ps.split(separator: "\n").contains("/bin/sh -s "), "the setup shell became the pause process")
            try await h.runtime.stop(id: "s3")
            try await h.runtime.start(id: "s3")
            try await Task.sleep(for: .milliseconds(200))
            #expect(await h.runtime.isRunning(id: "s3"))
            ps = try await processes()
            #expect(ps.contains("/.devbox/init -P"))
            #expect(try await h.sh("s3", "echo $A").out == "1\n")
        }
    }

    @Test func withoutAShellOrWithOddNamesItFallsBack() async throws {
        try await withHarness("shn") { h in
            try await h.create("n1")
            #expect(try await h.runtime.runSetupCommand(id: "n1", command: "true", timeout: .seconds(5), outputLimit: 64) == nil)
            await h.runtime.finishSetup(id: "n1")  // no-op
            // A name the shell cannot export: the shell pauses and the command goes through exec.
            try await h.runtime.create(id: "n2", limits: Harness.limits, env: ["my-var": "x"], setupShell: true)
            #expect(try await h.runtime.runSetupCommand(id: "n2", command: "true", timeout: .seconds(5), outputLimit: 64) == nil)
            try await Task.sleep(for: .milliseconds(200))
            #expect(await h.runtime.isRunning(id: "n2"))
            let environ = try await h.runtime.exec(
                id: "n2", BoxProcessSpec(argv: ["cat", "/proc/self/environ"], env: [:]), stdin: nil, timeout: .seconds(10),
                outputLimit: 1 << 16, mergeStderr: false)
            #expect(EnvFile.decode(environ.stdout)["my-var"] == "x")
            await #expect(throws: BoxRuntimeError.self) {
                try await h.runtime.runSetupCommand(id: "n2", command: "a\u{0}b", timeout: .seconds(5), outputLimit: 64)
            }
        }
    }
}
