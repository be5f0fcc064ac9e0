import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The mask layer's tmpfs is mounted once, whatever the concurrency, and not at all once
/// no box is left (issue 21: a burst right after start stacked several mounts on `.mask`).
@Suite struct MaskMountTests {
    func maskMounts(_ h: Harness) -> Int {
        HostState.mounts().filter { $0.mountPoint == h.runtime.maskRoot }.count
    }

    @Test func aBurstOfCreatesMountsTheMaskOnce() async throws {
        try await withHarness("maskburst") { h in
            // As after a start on a fresh data dir: no mask mounted, no plan cached.
            await h.runtime.releaseIdleResources()
            #expect(maskMounts(h) == 0)
            let ids = (0..<12).map { "m\($0)" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in ids { group.addTask { try await h.create(id) } }
                try await group.waitForAll()
            }
            #expect(maskMounts(h) == 1)
            for id in ids { try await h.runtime.destroy(id: id) }
            await h.runtime.releaseIdleResources()
            #expect(maskMounts(h) == 0)
        }
    }
}
