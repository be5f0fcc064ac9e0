import Foundation
import Logging
import Synchronization
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Captures every log record (to check no secret is ever logged).
final class CapturingLog: Sendable {
    let lines = Mutex<[String]>([])
}
struct CapturingHandler: LogHandler {
    let sink: CapturingLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        sink.lines.withLock { $0.append("\(event.message) \(event.metadata ?? [:]) \(self.metadata)") }
    }
}

/// All host processes' command lines.
func hostCommandLines() -> [String] {
    MaskPlan.listDirectory("/proc").compactMap { Int32($0) }.compactMap { pid in
        readFileBytes("/proc/\(pid)/cmdline").map { String(decoding: $0.map { $0 == 0 ? 32 : $0 }, as: UTF8.self) }
    }
}

@Suite struct ExecTests {
    static let nasty: [String: String] = [
        "NL": "line1\nline2\n",
        "QUOTES": #"it's "quoted" \" \\ \'"#,
        "SHELLY": "$HOME `id -u` $(echo pwned) ${PATH} !! ;&|<>*?",
        "EQ": "a=b=c",
        "SPACES": "  lead and trail  ",
        "EMPTY": "",
        "UNICODE": "héllo ☃ 中文 \u{1F600}",
        "CTRL": "tab\there\rcr\u{1}\u{7f}",
        "ANTHROPIC_API_KEY": "sk-ant-test-\(UUID().uuidString)",
        "OPENAI_API_KEY": "sk-openai-test-\(UUID().uuidString)",
    ]

    static func parseEnviron(_ bytes: [UInt8]) -> [String: String] { EnvFile.decode(bytes) }

    @Test func envFileRoundTripAndSecrecy() async throws {
        let sink = CapturingLog()
        let h = try await onDedicatedThread { try Harness("env") }
        var logger = Logger(label: "capture") { _ in CapturingHandler(sink: sink) }
        logger.logLevel = .trace
        let runtime = CrunRuntime(configuration: h.runtime.configuration, logger: logger)
        do {
            try await runtime.create(id: "e1", limits: Harness.limits, env: Self.nasty)
            // The process's real environment, NUL-separated, straight from the kernel.
            let r = try await runtime.exec(id: "e1", BoxProcessSpec(argv: ["cat", "/proc/self/environ"], env: ["EXTRA": "x\ny"]),
                                           stdin: nil, timeout: .seconds(10), outputLimit: 1 << 20, mergeStderr: false)
            let env = Self.parseEnviron(r.stdout)
            for (k, v) in Self.nasty { #expect(env[k] == v, "\(k)") }
            #expect(env["EXTRA"] == "x\ny")
            #expect(env["HOME"] == "/root")
            #expect(env["PATH"]?.contains("/usr/bin") == true)
            // spec.env wins over the file.
            let o = try await runtime.exec(id: "e1", BoxProcessSpec(argv: ["sh", "-c", "printf %s \"$NL\""], env: ["NL": "over"]),
                                           stdin: nil, timeout: .seconds(10), outputLimit: 1024, mergeStderr: false)
            #expect(o.out == "over")
            // A shell sees the value byte-exact too.
            let s = try await runtime.exec(id: "e1", BoxProcessSpec(argv: ["sh", "-c", "printf %s \"$SHELLY\""]),
                                           stdin: nil, timeout: .seconds(10), outputLimit: 1024, mergeStderr: false)
            #expect(s.out == Self.nasty["SHELLY"])
            let mode = try await runtime.exec(id: "e1", BoxProcessSpec(argv: ["stat", "-c", "%a %u %g", "/etc/devbox/env"]),
                                              stdin: nil, timeout: .seconds(10), outputLimit: 1024, mergeStderr: false)
            #expect(mode.out == "600 0 0\n")

            // While a process runs in the box, no host command line holds a value.
            let p = try runtime.spawn(id: "e1", BoxProcessSpec(argv: ["sleep", "3"]))
            var cmdlines: [String] = []
            for _ in 0..<5 { cmdlines += hostCommandLines(); usleep(20_000) }
            for v in Self.nasty.values where v.count > 3 {
                #expect(!cmdlines.contains { $0.contains(v) }, "value visible on a command line")
            }
            p.signal(SIGKILL)
            _ = await p.wait()
            closeFD(p.stdout); p.closeStdin(); if let e = p.stderr { closeFD(e) }

            // writeEnv replaces the whole env.
            try runtime.writeEnv(id: "e1", env: ["ONLY": "new\nvalue"])
            let r2 = try await runtime.exec(id: "e1", BoxProcessSpec(argv: ["cat", "/proc/self/environ"]),
                                            stdin: nil, timeout: .seconds(10), outputLimit: 1 << 20, mergeStderr: false)
            let env2 = Self.parseEnviron(r2.stdout)
            #expect(env2["ONLY"] == "new\nvalue")
            #expect(env2["ANTHROPIC_API_KEY"] == nil)
            // A box can neither change its env file nor redirect the host's env write with a
            // symlink: /etc/devbox is a read-only bind mount of its directory on the secrets tmpfs.
            let trap = "/var/lib/\(h.prefix)escape"
            mkdir(trap, 0o755)
            defer { _ = try? HostState.removeTree(trap) }
            let tamper = try await runtime.exec(
                id: "e1", BoxProcessSpec(argv: ["sh", "-c", "rm -rf /etc/devbox; ln -s \(trap) /etc/devbox; echo EVIL=1 > /etc/devbox/env; mv /etc/devbox /etc/x; echo done"]),
                stdin: nil, timeout: .seconds(10), outputLimit: 4096, mergeStderr: true)
            #expect(tamper.out.hasSuffix("done\n"), "\(tamper.out)")
            try runtime.writeEnv(id: "e1", env: ["ONLY": "again"])
            #expect(MaskPlan.listDirectory(trap).isEmpty)
            let r3 = try await runtime.exec(id: "e1", BoxProcessSpec(argv: ["cat", "/proc/self/environ"]),
                                            stdin: nil, timeout: .seconds(10), outputLimit: 1 << 20, mergeStderr: false)
            #expect(Self.parseEnviron(r3.stdout)["ONLY"] == "again")
            #expect(Self.parseEnviron(r3.stdout)["EVIL"] == nil)
            // The file is on the runtime's tmpfs, not in the box's layer on the host's disk.
            #expect(HostState.mounts().contains { $0.mountPoint == runtime.envRoot && $0.fsType == "tmpfs" })
            #expect(access(runtime.envDirectory("e1") + "/env", F_OK) == 0)
            for layer in ["/upper", "/disk/upper"] { var st = stat(); #expect(lstat(h.runtime.boxDirectory("e1") + layer + "/etc/devbox/env", &st) != 0) }
            // Invalid input is refused.
            #expect(throws: BoxRuntimeError.self) { try runtime.writeEnv(id: "e1", env: ["A=B": "x"]) }
            #expect(throws: BoxRuntimeError.self) { try runtime.writeEnv(id: "e1", env: ["A": "x\u{0}y"]) }

            // No secret in any host file of the box other than the env file itself, nor in logs.
            let config = String(decoding: readFileBytes(h.runtime.boxDirectory("e1") + "/config.json") ?? [], as: UTF8.self)
            #expect(!config.contains("sk-"))
            let logs = sink.lines.withLock { $0 }.joined(separator: "\n")
            #expect(!logs.isEmpty)
            for v in Self.nasty.values where v.count > 3 { #expect(!logs.contains(v)) }
            try await runtime.destroy(id: "e1")
        } catch {
            await h.cleanup()
            throw error
        }
        await h.cleanup()
    }

    @Test func exitCodesStderrAndSignals() async throws {
        try await withHarness("exit") { h in
            try await h.create("x1")
            let r = try await h.sh("x1", "echo out; echo err >&2; exit 3")
            #expect(r.exitCode == 3 && r.signal == nil)
            #expect(r.out == "out\n")
            #expect(r.err == "err\n")
            let k = try await h.sh("x1", "kill -TERM $$; sleep 5")
            #expect(k.exitCode == nil)
            #expect(k.signal == SIGTERM)
            let c = try await h.runtime.exec(id: "x1", BoxProcessSpec(argv: ["no-such-command-xyz"]), stdin: nil,
                                             timeout: .seconds(10), outputLimit: 4096, mergeStderr: false)
            #expect(c.exitCode == 127)
            #expect(c.err.contains("not found"))
            let cwd = try await h.runtime.exec(id: "x1", BoxProcessSpec(argv: ["pwd"], cwd: "/tmp"), stdin: nil,
                                               timeout: .seconds(Int64.max), outputLimit: 4096, mergeStderr: false)
            #expect(cwd.out == "/tmp\n")
            let nocwd = try await h.runtime.exec(id: "x1", BoxProcessSpec(argv: ["pwd"], cwd: "/nonexistent"), stdin: nil,
                                                 timeout: nil, outputLimit: 4096, mergeStderr: false)
            #expect(nocwd.exitCode == 127 && nocwd.err.contains("chdir"), "\(nocwd.err)")
            await #expect(throws: BoxRuntimeError.self) {
                _ = try await h.runtime.exec(id: "nobox", BoxProcessSpec(argv: ["true"]), stdin: nil,
                                             timeout: .seconds(5), outputLimit: 10, mergeStderr: false)
            }
        }
    }

    @Test func mergedOutputKeepsOrderAndTailTruncation() async throws {
        try await withHarness("merge") { h in
            try await h.create("m1")
            let r = try await h.sh("m1", "for i in 1 2 3 4 5; do echo o$i; echo e$i >&2; done", merge: true)
            #expect(r.out == "o1\ne1\no2\ne2\no3\ne3\no4\ne4\no5\ne5\n")
            #expect(r.stderr.isEmpty)
            let t = try await h.sh("m1", "head -c 300000 /dev/zero | tr '\\0' a; printf END; printf ERR >&2", limit: 1000)
            #expect(t.stdout.count == 1000)
            #expect(t.out.hasSuffix("aaaEND"))
            #expect(t.err == "ERR")
            #expect(t.truncated)
            let small = try await h.sh("m1", "printf 12345", limit: 5)
            #expect(small.out == "12345" && !small.truncated)
        }
    }

    @Test func stdinIsFedThenClosed() async throws {
        try await withHarness("stdin") { h in
            try await h.create("s1")
            let r = try await h.sh("s1", "cat; echo done", stdin: Array("hello\nworld".utf8))
            #expect(r.out == "hello\nworlddone\n")
            var big = [UInt8](repeating: 0, count: 3 << 20)
            for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
            let w = try await h.sh("s1", "wc -c", stdin: big)
            #expect(w.out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(big.count)")
            let none = try await h.sh("s1", "cat; echo eof")
            #expect(none.out == "eof\n")
        }
    }

    @Test func timeoutKillsTheWholeProcessGroup() async throws {
        try await withHarness("tmo") { h in
            try await h.create("t1")
            let start = ContinuousClock.now
            let r = try await h.sh("t1", "sleep 100 & sleep 100", timeout: .milliseconds(800))
            let elapsed = ContinuousClock.now - start
            #expect(r.timedOut)
            #expect(r.signal == SIGKILL)
            // Far under the sleeps' 100 s; loose, since `crun exec` takes seconds while other
            // suites start boxes.
            #expect(elapsed < .seconds(15))
            var names: [String] = []
            for _ in 0..<40 {
                let ps = try await h.sh("t1", "for p in /proc/[0-9]*; do cat $p/comm; done")
                names = ps.out.split(separator: "\n").map(String.init)
                if !names.contains("sleep") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(!names.contains("sleep"), "left behind: \(names)")
            // Only init and our own listing shell/cat are there.
            #expect(Set(names).isSubset(of: ["init", "catatonit", "sh", "cat"]), "\(names)")
            // Cancelling the calling task kills the process group too.
            let task = Task { try await h.sh("t1", "sleep 60 & sleep 60", timeout: nil) }
            try await Task.sleep(for: .milliseconds(400))
            let cancelledAt = ContinuousClock.now
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
            #expect(ContinuousClock.now - cancelledAt < .seconds(15))
            var after: [String] = []
            for _ in 0..<40 {
                after = try await h.sh("t1", "for p in /proc/[0-9]*; do cat $p/comm; done").out.split(separator: "\n").map(String.init)
                if !after.contains("sleep") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(!after.contains("sleep"), "\(after)")
            // Background processes of a finished command do not hold exec up.
            let bg = try await h.sh("t1", "sleep 30 >/dev/null 2>&1 & echo started")
            #expect(bg.out == "started\n" && bg.exitCode == 0)
            let held = ContinuousClock.now
            let bg2 = try await h.sh("t1", "sleep 30 & echo held")
            #expect(bg2.out == "held\n")
            #expect(ContinuousClock.now - held < .seconds(15))
        }
    }
}
