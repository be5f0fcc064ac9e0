import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Per-box disks (BoxDisk.swift): a box's writable layer and /workspace share one quota,
/// enforced by an ext4 image on a loop device; nothing of it is left after destroy.
@Suite(.serialized)
struct DiskQuotaTests {
    static let mib: Int64 = 1 << 20
    static let limits = BoxLimits(memoryBytes: 256 << 20, cpus: 1, pids: 256, diskBytes: 128 << 20)

    static func median(_ xs: [UInt64]) -> Double { Double(xs.sorted()[xs.count / 2]) / 1e6 }

    /// Waits until the pool holds `n` ready images.
    static func waitReady(_ h: Harness, _ n: Int) async throws {
        for _ in 0..<600 where h.runtime.readyDiskImages < n { try await Task.sleep(for: .milliseconds(25)) }
        #expect(h.runtime.readyDiskImages >= n)
    }

    /// Box loop devices bound now, once autoclear has had up to 5 s: the kernel unbinds a
    /// device on a workqueue after its last close, not within the unmount.
    static func settledLoops(_ h: Harness, ready: Bool = false) async throws -> [String] {
        for _ in 0..<100 where !h.runtime.boundLoopDevices(ready: ready).isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        return h.runtime.boundLoopDevices(ready: ready)
    }

    @Test func quotaCoversUpperAndWorkspaceAndSurvivesStopStart() async throws {
        try await withHarness("dq") { h in
            h.runtime.prepareDisks(sizes: [Self.limits.diskBytes])
            try await Self.waitReady(h, 2)
            try await h.create("q", limits: Self.limits)
            #expect(h.runtime.boundLoopDevices().count == 1)
            // df shows the quota for / (overlayfs reports its upper layer) and /workspace.
            let df = try await h.sh("q", "df -k / /workspace | tail -n 2 | awk '{print $2}'")
            let sizes = df.out.split(separator: "\n").compactMap { Int64($0) }
            #expect(sizes.count == 2)
            for kib in sizes { #expect(kib > 100 << 10 && kib <= 128 << 10, "df: \(df.out)") }
            // 100 MiB into /workspace fit; 60 MiB more into the writable layer (/root) do not.
            let first = try await h.sh("q", "dd if=/dev/zero of=/workspace/a bs=1M count=100 2>&1 && sync", merge: true)
            #expect(first.exitCode == 0, "\(first.out)")
            let second = try await h.sh("q", "dd if=/dev/zero of=/root/b bs=1M count=60 2>&1", merge: true)
            #expect(second.exitCode != 0)
            #expect(second.out.contains("No space left on device"), "\(second.out)")
            // The box carries on; freeing space makes room again.
            let after = try await h.sh("q", "rm /root/b /workspace/a && echo hi > /workspace/keep && cat /workspace/keep")
            #expect(after.exitCode == 0 && after.out == "hi\n")
            // The host's view: the image is sparse and bounded by the quota.
            var st = stat()
            #expect(stat(h.runtime.diskImagePath("q"), &st) == 0)
            #expect(Int64(st.st_blocks) * 512 <= Self.limits.diskBytes)

            // Stop unmounts it (the loop device goes), start brings it back with its files.
            try await h.runtime.stop(id: "q")
            #expect(try await Self.settledLoops(h).isEmpty)
            #expect(!HostState.isMountPoint(h.runtime.diskMountPath("q")))
            try await h.runtime.start(id: "q")
            #expect(h.runtime.boundLoopDevices().count == 1)
            #expect(try await h.sh("q", "cat /workspace/keep").out == "hi\n")

            // A lost mount (what a reboot leaves) is mounted again on start.
            try await h.runtime.stop(id: "q")
            try await h.runtime.start(id: "q")
            #expect(try await h.sh("q", "cat /workspace/keep").out == "hi\n")

            try await h.runtime.destroy(id: "q")
            #expect(try await Self.settledLoops(h).isEmpty)
            #expect(access(h.runtime.diskImagePath("q"), F_OK) != 0)
            // The pool's ready disks go with a shutdown.
            #expect(!h.runtime.boundLoopDevices(ready: true).isEmpty)
            await h.runtime.releaseIdleResources()
            #expect(try await Self.settledLoops(h, ready: true).isEmpty)
            #expect(access(h.runtime.diskDirectory, F_OK) != 0)
        }
    }

    @Test func tmpAndRunAreCapped() async throws {
        try await withHarness("dt") { h in
            try await h.create("t", limits: Self.limits)
            let df = try await h.sh("t", "df -k /tmp /run | tail -n 2 | awk '{print $2}'")
            #expect(df.out == "131072\n32768\n", "\(df.out)")
            let big = try await h.sh("t", "dd if=/dev/zero of=/tmp/x bs=1M count=200 2>&1", merge: true)
            #expect(big.exitCode != 0 && big.out.contains("No space left on device"), "\(big.out)")
            #expect(try await h.sh("t", "rm /tmp/x; echo ok").out == "ok\n")
        }
    }

    @Test func twoRuntimesNeverShareALoopDevice() async throws {
        try await withHarness("da") { a in
            try await withHarness("db") { b in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<3 {
                        group.addTask { try await a.create("a\(i)", limits: Self.limits) }
                        group.addTask { try await b.create("b\(i)", limits: Self.limits) }
                    }
                    try await group.waitForAll()
                }
                let devices = a.runtime.boundLoopDevices() + b.runtime.boundLoopDevices()
                #expect(devices.count == 6 && Set(devices).count == 6, "\(devices)")
                for (h, n) in [(a, "a"), (b, "b")] {
                    for i in 0..<3 {
                        #expect(try await h.sh("\(n)\(i)", "echo \(n)\(i) > /workspace/who; ls /workspace").out == "who\n")
                    }
                }
                #expect(try await b.sh("b0", "cat /workspace/who").out == "b0\n")
            }
        }
    }

    /// Images are copies of a template formatted once per size: sparse, a clean ext4 of the
    /// size; a burst that outruns the ready disks makes the pool of that size grow.
    @Test func templateCopiesAndPoolGrowsWithBursts() async throws {
        try await withHarness("dg") { h in
            let bytes = Self.limits.diskBytes
            h.runtime.prepareDisks(sizes: [bytes])
            try await Self.waitReady(h, DiskImagePool.minPerSize)
            #expect(access(h.runtime.diskTemplatePath(bytes), F_OK) == 0)
            // A copy holds the template's metadata only and checks clean.
            let copy = h.state + "/copy.img"
            try h.runtime.makeImage(at: copy, bytes: bytes)
            defer { _ = unlink(copy) }
            var st = stat()
            #expect(stat(copy, &st) == 0 && Int64(st.st_size) == bytes)
            #expect(Int64(st.st_blocks) * 512 < 1 << 20, "allocated \(st.st_blocks * 512) bytes")
            let fsck = try runCommandBlocking(resolveExecutable("e2fsck"), ["e2fsck", "-fn", copy])
            #expect(fsck.status == 0, "\(fsck.stdoutText) \(fsck.stderrText)")
            // A burst of 6 with 2 ready: the others find none and the pool grows for the next one.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<6 { group.addTask { try await h.create("g\(i)", limits: Self.limits) } }
                try await group.waitForAll()
            }
            let target = h.runtime.diskImages.target(bytes)
            #expect(target > DiskImagePool.minPerSize && target <= DiskImagePool.maxPerSize)
            try await Self.waitReady(h, target)
            for i in 0..<6 {
                #expect(try await h.sh("g\(i)", "echo g\(i) > /workspace/w; cat /workspace/w").out == "g\(i)\n")
                try await h.runtime.destroy(id: "g\(i)")
            }
            #expect(try await Self.settledLoops(h).isEmpty)
            await h.runtime.releaseIdleResources()
            #expect(try await Self.settledLoops(h, ready: true).isEmpty)
            #expect(access(h.runtime.diskDirectory, F_OK) != 0)
        }
    }

    /// The cost a disk adds to a cold create (printed for the report).
    @Test func createCost() async throws {
        try await withHarness("dc") { h in
            var format: [UInt64] = [], copy: [UInt64] = []
            for i in 0..<5 {
                let t = monotonicNanos()
                try h.runtime.formatImage(at: h.state + "/fmt\(i).img", bytes: 10 << 30)
                format.append(monotonicNanos() - t)
                _ = unlink(h.state + "/fmt\(i).img")
            }
            try h.runtime.makeDirectories(h.runtime.diskDirectory, mode: 0o700)
            try h.runtime.makeDiskTemplate(bytes: 10 << 30)
            for i in 0..<5 {
                let t = monotonicNanos()
                try h.runtime.makeImage(at: h.state + "/copy\(i).img", bytes: 10 << 30)
                copy.append(monotonicNanos() - t)
                _ = unlink(h.state + "/copy\(i).img")
            }
            let big = BoxLimits(memoryBytes: 256 << 20, cpus: 1, pids: 256, diskBytes: 10 << 30)
            h.runtime.prepareDisks(sizes: [big.diskBytes])
            try await h.create("warmup", limits: Harness.limits)
            var plain: [UInt64] = [], disk: [UInt64] = []
            for i in 0..<6 {
                try await Self.waitReady(h, 2)
                var t = monotonicNanos()
                try await h.create("d\(i)", limits: big)
                disk.append(monotonicNanos() - t)
                t = monotonicNanos()
                try await h.create("p\(i)", limits: Harness.limits)
                plain.append(monotonicNanos() - t)
                try await h.runtime.destroy(id: "d\(i)")
                try await h.runtime.destroy(id: "p\(i)")
            }
            #expect(try await Self.settledLoops(h).isEmpty)
            // The parts of a disk's cost: adopt a ready disk (rename, second mount, detach the
            // pool's), or bind a loop device and mount (what a create without a ready disk adds
            // to formatting); unmount (stop, destroy).
            var adopt: [UInt64] = [], mount: [UInt64] = [], unmount: [UInt64] = []
            for i in 0..<6 {
                try await Self.waitReady(h, 2)
                let parts = try await onDedicatedThread { () -> [UInt64] in
                    let name = "m\(i)"
                    _ = mkdir(h.runtime.boxDirectory(name), 0o700)
                    _ = mkdir(h.runtime.diskMountPath(name), 0o700)
                    let t0 = monotonicNanos()
                    #expect(h.runtime.adoptReadyDisk(name, bytes: big.diskBytes))
                    h.runtime.wantDiskImages(big.diskBytes)
                    let t1 = monotonicNanos()
                    h.runtime.unmountDisk(name)
                    let t2 = monotonicNanos()
                    try h.runtime.mountDisk(name)
                    let t3 = monotonicNanos()
                    h.runtime.destroyBlocking(name)
                    return [t1 - t0, t3 - t2, t2 - t1]
                }
                adopt.append(parts[0]); mount.append(parts[1]); unmount.append(parts[2])
            }
            print(String(format: "DISK parts median: adopt a ready disk %.2f ms, bind a loop device and mount %.2f ms, unmount %.2f ms",
                         Self.median(adopt), Self.median(mount), Self.median(unmount)))
            print(String(format: "DISK median: cold create without a disk %.1f ms, with a 10 GiB disk (ready image) %.1f ms; formatting a 10 GiB image %.1f ms, copying its template %.2f ms",
                         Self.median(plain), Self.median(disk), Self.median(format), Self.median(copy)))
        }
    }
}
