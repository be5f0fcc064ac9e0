import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Figures for the report: `DEVBOX_BENCH=1 swift test --filter BenchTests` (serial, ~10 s).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["DEVBOX_BENCH"] != nil))
struct BenchTests {
    static func median(_ xs: [UInt64]) -> Double {
        let s = xs.sorted()
        return Double(s[s.count / 2]) / 1e6
    }

    static func ms(_ body: () async throws -> Void) async rethrows -> UInt64 {
        let t = monotonicNanos()
        try await body()
        return monotonicNanos() - t
    }

    @Test func figures() async throws {
        try await withHarness("bench") { h in
            let n = 20
            var create: [UInt64] = [], createExec: [UInt64] = [], destroy: [UInt64] = []
            for i in 0..<n {
                create.append(try await Self.ms { try await h.create("c\(i)", env: ["K": "v"]) })
                destroy.append(try await Self.ms { try await h.runtime.destroy(id: "c\(i)") })
            }
            for i in 0..<n {
                createExec.append(try await Self.ms {
                    try await h.create("x\(i)")
                    let r = try await h.runtime.exec(id: "x\(i)", BoxProcessSpec(argv: ["true"]), stdin: nil,
                                                     timeout: .seconds(5), outputLimit: 1024, mergeStderr: false)
                    #expect(r.exitCode == 0)
                })
                try await h.runtime.destroy(id: "x\(i)")
            }
            try await h.create("e")
            var api: [UInt64] = [], bare: [UInt64] = [], spawnPTY: [UInt64] = []
            let name = h.runtime.containerName("e")
            for _ in 0..<3 { _ = try runCommandBlocking(h.runtime.crun, ["crun", "exec", name, "true"]) }
            for _ in 0..<n {
                bare.append(try await Self.ms {
                    let r = try await onDedicatedThread { try runCommandBlocking(h.runtime.crun, ["crun", "exec", name, "true"]) }
                    #expect(r.status == 0)
                })
                api.append(try await Self.ms {
                    let r = try await h.runtime.exec(id: "e", BoxProcessSpec(argv: ["true"]), stdin: nil,
                                                     timeout: .seconds(5), outputLimit: 1024, mergeStderr: false)
                    #expect(r.exitCode == 0)
                })
                spawnPTY.append(try await Self.ms {
                    let p = try h.runtime.spawn(id: "e", BoxProcessSpec(argv: ["true"], tty: TerminalSize(rows: 24, cols: 80)))
                    _ = await p.wait()
                    closeFD(p.stdout)
                })
            }
            print(String(format: "BENCH median of %d: create %.1f ms, create+exec %.1f ms, destroy %.1f ms, exec true API %.1f ms, bare crun exec true %.1f ms, PTY spawn+wait %.1f ms",
                         n, Self.median(create), Self.median(createExec), Self.median(destroy), Self.median(api), Self.median(bare), Self.median(spawnPTY)))
        }
    }
}
