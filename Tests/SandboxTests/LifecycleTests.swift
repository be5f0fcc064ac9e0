import Foundation
import Logging
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

@Suite struct LifecycleTests {
    @Test func stopStartKeepsFilesystem() async throws {
        try await withHarness("life") { h in
            try await h.create("s1", env: ["KEPT": "yes"])
            _ = try await h.sh("s1", "echo ws > /workspace/f; echo home > /root/g; echo sys > /usr/local/h")
            try await h.runtime.stop(id: "s1")
            #expect(await !h.runtime.isRunning(id: "s1"))
            // Processes gone, memory cgroup gone, root unmounted; the box dir stays.
            let cg = "/sys/fs/cgroup/memory/\(h.runtime.cgroupParent)/\(h.runtime.containerName("s1"))"
            #expect(access(cg, F_OK) != 0)
            #expect(!HostState.isMountPoint(h.runtime.rootfsPath("s1")))
            #expect(access(h.runtime.workspaceHostPath(id: "s1") + "/f", F_OK) == 0)
            await #expect(throws: SandboxError.self) { _ = try await h.sh("s1", "true") }
            // The env file can be rewritten while stopped.
            try h.runtime.writeEnv(id: "s1", env: ["KEPT": "yes", "ADDED": "while stopped"])
            try await h.runtime.start(id: "s1")
            #expect(await h.runtime.isRunning(id: "s1"))
            let r = try await h.sh("s1", "cat /workspace/f /root/g /usr/local/h; echo $KEPT; echo $ADDED")
            #expect(r.out == "ws\nhome\nsys\nyes\nwhile stopped\n")
            try await h.runtime.start(id: "s1")  // already running: no-op
            // A host /usr/local file was not touched by the box's write.
            #expect(access("/usr/local/h", F_OK) != 0 || readSmallFile("/usr/local/h") != "sys\n")
            await #expect(throws: SandboxError.self) { try await h.create("s1") }
            try await h.runtime.destroy(id: "s1")
            await #expect(throws: SandboxError.self) { try await h.runtime.start(id: "s1") }
        }
    }

    @Test func sweepAfterCrash() async throws {
        let h = try Harness("crash")
        do {
            // A runtime that "crashes": boxes created, runtime dropped without destroy.
            do {
                let crashed = CrunRuntime(configuration: h.runtime.configuration, logger: Logger(label: "crashed"))
                try await crashed.create(id: "c1", limits: Harness.limits, env: ["A": "1"])
                try await crashed.create(id: "c2", limits: Harness.limits, env: [:])
                try await crashed.create(id: "keep", limits: Harness.limits, env: [:])
                _ = try await crashed.exec(id: "c1", SandboxProcessSpec(argv: ["sh", "-c", "sleep 1000 &"]), stdin: nil,
                                           timeout: .seconds(5), outputLimit: 100, mergeStderr: false)
            }
            // Also a stray mount and cgroup without a container, as a killed service may leave.
            try await h.runtime.stop(id: "c2")
            #expect(Glibc.mount("tmpfs", h.runtime.rootfsPath("c2"), "tmpfs", 0, "size=1m") == 0)
            let stray = "/sys/fs/cgroup/pids/\(h.runtime.cgroupParent)/\(h.prefix)stray"
            #expect(mkdir(stray, 0o755) == 0)

            let fresh = CrunRuntime(configuration: h.runtime.configuration, logger: Logger(label: "fresh"))
            let removed = await fresh.sweep(keeping: ["keep"])
            #expect(removed == ["c1", "c2", "stray"])
            #expect(await fresh.isRunning(id: "keep"))
            #expect(await !fresh.isRunning(id: "c1"))
            // The shared mask layer stays while a kept box uses it.
            let left = h.leftovers().filter { !$0.hasPrefix("cgroupparent:") && !$0.hasSuffix("/.mask") && $0 != "dir:.mask" }
            #expect(left.allSatisfy { $0.contains("keep") }, "\(left)")
            #expect(!left.isEmpty)
            // No process of the swept box survives.
            #expect(!hostCommandLines().contains { $0.hasPrefix("sleep 1000") })
        } catch {
            await h.cleanup()
            throw error
        }
        await h.cleanup()
    }
}
