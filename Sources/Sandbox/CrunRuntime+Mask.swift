import CDevbox
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The mask layer of a host-root box (Bundle.swift explains what it hides): built once per
// distinct plan on a tmpfs of the runtime's own, rescanned at most every 30 s, unmounted
// when no box root uses it.
extension CrunRuntime {
    /// The hiding entries live in a shared, read-only overlay layer between the box's
    /// upper dir and the host root: `<state>/.mask` (a tmpfs: an overlay layer below "/"
    /// on the root filesystem itself would be refused as overlapping), one generation
    /// directory per distinct plan, never modified once a box uses it. Rebuilt after a
    /// reboot; recomputed (host /etc rescanned) at most every 30 s.
    var maskRoot: String { configuration.stateDirectory + "/.mask" }

    /// Path of the mask layer for the current plan (building it if needed); nil with a base image.
    ///
    /// A plan older than `maskMaxAgeNanos` is rescanned by one caller while the others keep
    /// the current layer: a burst of creates would otherwise scan the host's trees once
    /// per create, all at the same moment (≈ 1,500 stat calls each).
    func maskLayer(refresh: Bool = false, now: UInt64 = monotonicNanos()) throws -> String? {
        if configuration.baseImage != nil { return nil }
        var rescanning = false
        defer { if rescanning { maskRescanning.store(false, ordering: .releasing) } }
        if !refresh, let c = maskCache.withLock({ $0 }), let layer = c.layer, access(layer, F_OK) == 0 {
            if now < c.at + Self.maskMaxAgeNanos { return layer }
            rescanning = maskRescanning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
            if !rescanning { return layer }
        }
        maskScans.add(1, ordering: .relaxed)
        let plan = MaskPlan.forHostRoot(hiddenPaths: configuration.hiddenHostPaths + [configuration.stateDirectory])
        try maskMount.withLock { _ in
            if !HostState.isMountPoint(maskRoot) {
                try makeDirectories(maskRoot, mode: 0o700)
                if dbx_mount("tmpfs", maskRoot, "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0700,size=16m") != 0 {
                    throw sysError("mount mask tmpfs")
                }
            }
        }
        var hash: UInt64 = 0xcbf29ce484222325
        for b in "\(plan.items)".utf8 { hash = (hash ^ UInt64(b)) &* 0x100000001b3 }
        let layer = maskRoot + "/g" + String(hash, radix: 16)
        if access(layer + "/.complete", F_OK) != 0 {
            let building = maskRoot + "/.build-\(getpid())-\(counterNext())"
            if mkdir(building, 0o755) != 0 { throw sysError("mkdir mask layer") }
            let fd = try SafeFS.openDirectory(building)
            plan.apply(upperFD: fd, lowerRoot: "/", extraFiles: [])
            _ = mkdirat(fd, ".complete", 0o700)
            closeFD(fd)
            if rename(building, layer) != 0 {
                try? HostState.removeTree(building)   // another thread built the same generation
                guard access(layer + "/.complete", F_OK) == 0 else { throw sysError("install mask layer") }
            }
        }
        maskCache.withLock { $0 = (plan, now, layer) }
        return layer
    }

    /// Unmounts the mask tmpfs if no box root is mounted any more (sweep), and removes
    /// the parent cgroups if no box cgroup is left in them.
    func releaseMaskIfUnused() {
        let base = configuration.stateDirectory + "/"
        let inUse = HostState.mounts().contains { $0.mountPoint.hasPrefix(base) && $0.fsType == "overlay" }
        if !inUse {
            maskMount.withLock { _ in
                // Every mount stacked there (an older service could leave more than one).
                for _ in 0..<16 where HostState.isMountPoint(maskRoot) {
                    if dbx_umount(maskRoot, 0) != 0 { _ = dbx_umount(maskRoot, Int32(MNT_DETACH)) }
                }
                _ = rmdir(maskRoot)
            }
            maskCache.withLock { $0 = nil }
        }
        if !inUse {
            // rmdir refuses a cgroup that still has children: running boxes keep theirs.
            for root in HostState.cgroupRoots() { _ = rmdir(root + "/" + cgroupParent) }
        }
    }
}
