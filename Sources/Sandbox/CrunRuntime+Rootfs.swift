import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A box's root file system: the overlay of its upper dir over its (idmapped) layers, and
/// the per-box files placed in the upper dir before it is mounted.
extension CrunRuntime {
    /// Mounts the box root: upper dir, the shared mask layer, the host root (or image).
    @discardableResult
    func mountRootfs(_ id: String) throws -> String? {
        let dir = boxDirectory(id)
        // The box's image (its `image` file), else the configured base or the host's root.
        let image = BoxImage.read(boxDirectory: dir)
        let lower = image?.lowerDirs.first ?? configuration.baseImage ?? "/"
        // Per-box files, created in the upper dir unless the box already has its own.
        let writable = writableRoot(id)
        let upperFD = try SafeFS.openDirectory(writable + "/upper")
        var files: [MaskPlan.Item] = [
            .file("etc/hostname", contents: Array("\(id)\n".utf8), mode: 0o644),
            .file("etc/hosts", contents: hostsFile(hostname: id, lowers: image?.lowerDirs), mode: 0o644),
        ]
        if let networks, let link = networks.link(of: boxName(id)) {
            files.append(.file("etc/resolv.conf", contents: networks.resolvConf(link), mode: 0o644))
        }
        MaskPlan().apply(upperFD: upperFD, lowerRoot: lower, extraFiles: files)
        closeFD(upperFD)
        ownWritableTree(id, upper: writable + "/upper", workspace: writable + "/workspace",
                        files: ["etc/hostname", "etc/hosts", "etc/resolv.conf"])
        let layer = image == nil ? try maskLayer() : nil
        // Each layer through an idmapped clone in the box's own user namespace (UserNamespace.swift);
        // a box made from a snapshot also has its workspace's layers (Snapshot.swift).
        let rootLowers = image?.lowerDirs ?? layer.map { [$0, lower] } ?? [lower]
        let mapped = try idmappedLowers(id, rootLowers + (image?.workspaceLowerDirs ?? []))
        let lowers = Array(mapped.prefix(rootLowers.count))
        // The layers are named to overlay by descriptor (`/proc/self/fd/N`), and overlay shows
        // the names it was given in the box's /proc/mounts: no host path (data dir, box
        // directory, image store) is readable there.
        var fds: [Int32] = []
        defer { fds.forEach(closeFD) }
        func named(_ path: String) throws -> String {
            let fd = open(path, oPath | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 { throw sysError("open \(path)") }
            fds.append(fd)
            return "/proc/self/fd/\(fd)"
        }
        let lowerNames = try lowers.map(named).joined(separator: ":")
        let opts = "lowerdir=\(lowerNames),upperdir=\(try named(writable + "/upper")),workdir=\(try named(writable + "/work"))"
        if dbx_mount("overlay", rootfsPath(id), "overlay", 0, opts) != 0 { throw sysError("mount overlay for \(id)") }
        if mapped.count > rootLowers.count {
            try mountWorkspaceOverlay(id, writable: writable, lowers: Array(mapped.dropFirst(rootLowers.count)), named: named)
        }
        return layer
    }

    /// A box made from a snapshot: `/workspace` (`<disk>/workspace`, which the bundle binds)
    /// is an overlay of the snapshot's workspace layers under `<disk>/wsupper`.
    func mountWorkspaceOverlay(_ id: String, writable: String, lowers: [String], named: (String) throws -> String) throws {
        let upper = writable + "/wsupper", work = writable + "/wswork", target = writable + "/workspace"
        if mkdir(upper, 0o755) == 0 {
            let owner = boxRootOwner(id: id)
            _ = chown(upper, owner.uid, owner.gid)
        } else if lastErrno() != EEXIST {
            throw sysError("mkdir \(upper)")
        }
        if mkdir(work, 0o700) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(work)") }
        let opts = "lowerdir=\(try lowers.map(named).joined(separator: ":")),upperdir=\(try named(upper)),workdir=\(try named(work))"
        if dbx_mount("overlay", target, "overlay", 0, opts) != 0 { throw sysError("mount the workspace overlay for \(id)") }
    }

    /// The box's `/etc/hosts`: the base's, plus its hostname on 127.0.1.1.
    func hostsFile(hostname: String, lowers: [String]? = nil) -> [UInt8] {
        let candidates = lowers ?? [configuration.baseImage ?? "/"]
        var hosts = candidates.lazy.compactMap { readFileBytes($0 == "/" ? "/etc/hosts" : $0 + "/etc/hosts") }.first
            ?? Array("127.0.0.1\tlocalhost\n".utf8)
        if hosts.last != UInt8(ascii: "\n") && !hosts.isEmpty { hosts.append(UInt8(ascii: "\n")) }
        return hosts + Array("127.0.1.1\t\(hostname)\n".utf8)
    }

    func unmountRootfs(_ id: String) {
        let rootfs = rootfsPath(id)
        for _ in 0..<3 where HostState.isMountPoint(rootfs) {
            if dbx_umount(rootfs, 0) == 0 { continue }
            if lastErrno() == EBUSY { _ = dbx_umount(rootfs, Int32(MNT_DETACH)) } else { break }
        }
        // A snapshot box's workspace overlay, before the layers under it.
        let workspace = writableRoot(id) + "/workspace"
        if BoxImage.read(boxDirectory: boxDirectory(id))?.workspaceLowerDirs != nil, HostState.isMountPoint(workspace) {
            if dbx_umount(workspace, 0) != 0 { _ = dbx_umount(workspace, Int32(MNT_DETACH)) }
        }
        unmountIDMapped(id)
    }

    /// What is still mounted under the box directory at destroy, once the rootfs and its
    /// layers are off (`unmountRootfs`): the disk, by path; then a statx of the box
    /// directory and each entry of it, of `lower` and of `disk`. The mount table is read
    /// only when one of them is still a mount point (a crash, a mount made elsewhere): every
    /// mount at or below the box directory goes then.
    func unmountBoxDirectory(_ id: String) {
        let dir = boxDirectory(id)
        if HostState.unmountStack(diskMountPath(id)), !HostState.isMountPoint(dir),
            !HostState.hasMountPoint(in: dir, within: ["lower", "disk"]) { return }
        let mounts = HostState.mounts().map(\.mountPoint).filter { $0 == dir || $0.hasPrefix(dir + "/") }
        for m in mounts.sorted(by: { $0.count > $1.count }) {
            if dbx_umount(m, 0) != 0 { _ = dbx_umount(m, Int32(MNT_DETACH)) }
        }
    }
}
