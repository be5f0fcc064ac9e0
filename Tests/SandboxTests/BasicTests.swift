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
}
