import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

@Suite struct BasicTests {
    @Test func createExecDestroy() async throws {
        try await withHarness("basic") { h in
            try await h.create("b1")
            #expect(await h.runtime.isRunning(id: "b1"))
            let r = try await h.runtime.exec(id: "b1", SandboxProcessSpec(argv: ["echo", "hi"]), stdin: nil,
                                             timeout: .seconds(10), outputLimit: 1024, mergeStderr: false)
            #expect(r.exitCode == 0)
            #expect(r.signal == nil)
            #expect(r.out == "hi\n")
            #expect(r.stderr.isEmpty)
            #expect(!r.timedOut && !r.truncated)
            let host = try await h.sh("b1", "hostname; pwd; id -u; cat /proc/1/cmdline | tr '\\0' ' '")
            #expect(host.out == "b1\n/workspace\n0\n/.devbox/init -P ")
            try await h.runtime.destroy(id: "b1")
            #expect(await !h.runtime.isRunning(id: "b1"))
            #expect(access(h.runtime.boxDirectory("b1"), F_OK) != 0)
            try await h.runtime.destroy(id: "b1")  // idempotent
        }
    }

    /// `isRunning` answers from the init's /proc entry when it knows the pid: a box whose init
    /// was killed behind the runtime's back (OOM killer, `crun kill`) must read as not running
    /// at once, not only after the reaper noticed.
    @Test func isRunningSeesAnInitKilledOutside() async throws {
        try await withHarness("kill") { h in
            try await h.create("k1")
            #expect(await h.runtime.isRunning(id: "k1"))
            let state = try runCommandBlocking(h.runtime.crun, ["crun", "state", h.runtime.containerName("k1")]).stdoutText
            let json = try #require(try JSONSerialization.jsonObject(with: Data(state.utf8)) as? [String: Any])
            let pid = try #require(json["pid"] as? Int).asPid
            #expect(kill(pid, SIGKILL) == 0)
            var running = true
            for _ in 0..<50 {
                running = await h.runtime.isRunning(id: "k1")
                if !running { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(!running)
            try await h.runtime.destroy(id: "k1")
        }
    }
}

extension Int {
    fileprivate var asPid: pid_t { pid_t(self) }
}
