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
            await #expect(throws: BoxRuntimeError.self) { _ = try await h.sh("s1", "true") }
            // The env file can be rewritten while stopped.
            try h.runtime.writeEnv(id: "s1", env: ["KEPT": "yes", "ADDED": "while stopped"])
            try await h.runtime.start(id: "s1")
            #expect(await h.runtime.isRunning(id: "s1"))
            let r = try await h.sh("s1", "cat /workspace/f /root/g /usr/local/h; echo $KEPT; echo $ADDED")
            #expect(r.out == "ws\nhome\nsys\nyes\nwhile stopped\n")
            try await h.runtime.start(id: "s1")  // already running: no-op
            // A host /usr/local file was not touched by the box's write.
            #expect(access("/usr/local/h", F_OK) != 0 || readSmallFile("/usr/local/h") != "sys\n")
            await #expect(throws: BoxRuntimeError.self) { try await h.create("s1") }
            try await h.runtime.destroy(id: "s1")
            await #expect(throws: BoxRuntimeError.self) { try await h.runtime.start(id: "s1") }
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
                _ = try await crashed.exec(id: "c1", BoxProcessSpec(argv: ["sh", "-c", "sleep 1000 &"]), stdin: nil,
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
            // The shared mask layer and secrets tmpfs stay while a kept box uses them.
            let left = h.leftovers().filter { !$0.hasPrefix("cgroupparent:") && !$0.hasSuffix("/.mask") && $0 != "dir:.mask"
                && !$0.hasSuffix("/.secrets") && $0 != "dir:.secrets" }
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

@Suite struct BaseImageTests {
    /// A tiny image made of host binaries and their libraries (a stand-in for debootstrap).
    static func makeImage(_ dir: String) throws {
        for sub in ["usr/bin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev", "tmp", "root"] {
            _ = try runCommandBlocking("/bin/mkdir", ["mkdir", "-p", "\(dir)/\(sub)"])
        }
        for link in ["bin", "lib", "lib64"] { symlink("usr/\(link)", "\(dir)/\(link)") }
        for bin in ["/usr/bin/dash", "/usr/bin/cat", "/usr/bin/ls"] {
            _ = try runCommandBlocking("/bin/cp", ["cp", bin, "\(dir)/usr/bin/"])
            let ldd = try runCommandBlocking("/usr/bin/ldd", ["ldd", bin])
            for lib in ldd.stdoutText.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) where lib.hasPrefix("/") {
                _ = try runCommandBlocking("/bin/cp", ["cp", "--parents", "-L", String(lib), dir])
            }
        }
        symlink("dash", "\(dir)/usr/bin/sh")
        try writeHostFile("\(dir)/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    }

    @Test func baseImageBox() async throws {
        let h0 = try Harness("img")
        let image = h0.state + "-image"
        defer { _ = try? HostState.removeTree(image) }
        try Self.makeImage(image)
        var config = h0.runtime.configuration
        config.baseImage = image
        let runtime = CrunRuntime(configuration: config, logger: h0.runtime.logger)
        do {
            try await runtime.create(id: "i1", limits: Harness.limits, env: ["IMG": "a b\nc"])
            let r = try await runtime.exec(id: "i1", BoxProcessSpec(argv: ["sh", "-c", "printf %s \"$IMG\"; ls /; cat /etc/hostname"]),
                                           stdin: nil, timeout: .seconds(10), outputLimit: 4096, mergeStderr: false)
            #expect(r.out.hasPrefix("a b\nc"), "\(r.out) \(r.err)")
            #expect(!r.out.contains("opt") && !r.out.contains("var") && r.out.contains("workspace") && r.out.hasSuffix("i1\n"))
            try await runtime.stop(id: "i1")
            try await runtime.start(id: "i1")
            #expect(try await runtime.exec(id: "i1", BoxProcessSpec(argv: ["sh", "-c", "echo $IMG"]), stdin: nil,
                                           timeout: .seconds(10), outputLimit: 4096, mergeStderr: false).out == "a b c\n")
            // The image itself is never written (writes go to the box's upper dir).
            _ = try await runtime.exec(id: "i1", BoxProcessSpec(argv: ["sh", "-c", "echo x > /etc/new"]), stdin: nil,
                                       timeout: .seconds(10), outputLimit: 4096, mergeStderr: false)
            #expect(access(image + "/etc/new", F_OK) != 0)
            #expect(access(image + "/etc/devbox", F_OK) != 0)
            try await runtime.destroy(id: "i1")
        } catch {
            await h0.cleanup()
            throw error
        }
        await h0.cleanup()
    }
}
