import CDevbox
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Mounts, cgroups and directories on the host.
enum HostState {
    struct MountEntry { var mountPoint: String; var fsType: String }

    /// /proc/self/mountinfo, with octal escapes (\040...) decoded. Scanned as bytes: with a
    /// box's half-dozen mounts each, the table of a busy service is long, and splitting every
    /// line into Swift strings was a tenth of a create/delete cycle's CPU. Prefer
    /// `isMountPoint` (no table) where one path will do.
    static func mounts() -> [MountEntry] {
        guard let bytes = readFileBytes("/proc/self/mountinfo", limit: 16 << 20) else { return [] }
        return parseMountInfo(bytes)
    }

    /// The mount point (field 5) and filesystem type (the field after ` - `) of each line.
    static func parseMountInfo(_ bytes: [UInt8]) -> [MountEntry] {
        var out: [MountEntry] = []
        bytes.withUnsafeBufferPointer { b in
            let space = UInt8(ascii: " "), newline = UInt8(ascii: "\n"), dash = UInt8(ascii: "-")
            var i = 0
            while i < b.count {
                var end = i
                while end < b.count && b[end] != newline { end += 1 }
                // Fields of this line: start and end of each, up to the separator's.
                var field = 0, start = i, mountPoint: Range<Int>?, fsType: Range<Int>?, afterDash = false
                var j = i
                while j <= end {
                    if j == end || b[j] == space {
                        if field == 4 { mountPoint = start..<j }
                        if afterDash { fsType = start..<j; break }
                        if field >= 6 && j - start == 1 && b[start] == dash { afterDash = true }
                        field += 1
                        start = j + 1
                    }
                    j += 1
                }
                if let mp = mountPoint, let fs = fsType {
                    let point = String(decoding: UnsafeBufferPointer(rebasing: b[mp]), as: UTF8.self)
                    out.append(MountEntry(mountPoint: unescape(point),
                                          fsType: String(decoding: UnsafeBufferPointer(rebasing: b[fs]), as: UTF8.self)))
                }
                i = end + 1
            }
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        guard s.utf8.contains(UInt8(ascii: "\\")) else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else { out.append(b[i]); i += 1 }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `path` (its last component not followed) is a mount point: statx's
    /// STATX_ATTR_MOUNT_ROOT, one lookup instead of reading and scanning the mount table
    /// (which it falls back to on a kernel that does not say).
    static func isMountPoint(_ path: String) -> Bool {
        let r = dbx_is_mount_root(path)
        if r >= 0 { return r == 1 }
        if lastErrno() != ENOTSUP { return false }  // no such path: not a mount point
        return mounts().contains { $0.mountPoint == path }
    }

    /// Unmounts every mount stacked on `path`, a place the service mounts (lazily when busy),
    /// by statx alone: no mount table. True when `path` is no mount point afterwards (or
    /// does not exist); false when an unmount failed or statx cannot tell, and the caller
    /// falls back to scanning the table (`mounts()`).
    @discardableResult
    static func unmountStack(_ path: String, limit: Int = 8) -> Bool {
        for _ in 0..<limit {
            let r = dbx_is_mount_root(path)
            if r == 0 { return true }
            if r < 0 { return lastErrno() == ENOENT || lastErrno() == ENOTDIR }  // ENOTSUP: cannot tell
            if dbx_umount(path, 0) != 0 {
                guard lastErrno() == EBUSY, dbx_umount(path, Int32(MNT_DETACH)) == 0 else { return false }
            }
        }
        return dbx_is_mount_root(path) == 0
    }

    /// Whether any entry of `dir`, or of its subdirectories `within`, is a mount point (statx
    /// per entry: a handful of lookups instead of the whole mount table). True also when
    /// statx cannot tell.
    static func hasMountPoint(in dir: String, within: [String]) -> Bool {
        func any(_ d: String) -> Bool {
            for name in MaskPlan.listDirectory(d) {
                let r = dbx_is_mount_root(d + "/" + name)
                if r == 1 || (r < 0 && lastErrno() == ENOTSUP) { return true }
            }
            return false
        }
        return any(dir) || within.contains { any(dir + "/" + $0) }
    }

    /// Mount points of cgroup hierarchies (v1 and v2), read once (`fixHybridCgroups`, the one
    /// place that mounts one, forgets them).
    static func cgroupRoots() -> [String] {
        if let roots = cgroupRootsCache.withLock({ $0 }) { return roots }
        let roots = mounts().filter { $0.fsType == "cgroup" || $0.fsType == "cgroup2" }.map(\.mountPoint)
        cgroupRootsCache.withLock { $0 = roots }
        return roots
    }

    private static let cgroupRootsCache = Mutex<[String]?>(nil)

    /// SANDBOX.md trap 1: with controllers left on the v2 hierarchy of a hybrid layout,
    /// crun refuses to run. Move them to v1. Returns the controllers moved.
    static func fixHybridCgroups() throws -> [String] {
        try hybridFixLock.withLock { _ in try fixHybridCgroupsLocked() }
    }

    private static let hybridFixLock = Mutex(())

    private static func fixHybridCgroupsLocked() throws -> [String] {
        let unified = "/sys/fs/cgroup/unified"
        guard let text = readSmallFile("\(unified)/cgroup.controllers") else { return [] }
        let controllers = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var moved: [String] = []
        for c in controllers where !c.isEmpty && c.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
            let dir = "/sys/fs/cgroup/\(c)"
            if mkdir(dir, 0o755) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(dir)") }
            if isMountPoint(dir) { continue }
            cgroupRootsCache.withLock { $0 = nil }
            if dbx_mount("cgroup", dir, "cgroup", 0, c) != 0 {
                if lastErrno() == EBUSY && isMountPoint(dir) { continue }  // another process did it
                throw sysError("mount cgroup \(c)")
            }
            cgroupRootsCache.withLock { $0 = nil }
            moved.append(c)
        }
        return moved
    }

    /// Kills every task of a cgroup directory tree and removes it (depth first).
    static func removeCgroup(_ path: String) {
        for name in MaskPlan.listDirectory(path) {
            var st = stat()
            if lstat(path + "/" + name, &st) == 0, st.st_mode & S_IFMT == S_IFDIR { removeCgroup(path + "/" + name) }
        }
        for attempt in 0..<50 {
            if let procs = readSmallFile(path + "/cgroup.procs") {
                for p in procs.split(separator: "\n") { if let pid = pid_t(p), pid > 1 { _ = kill(pid, SIGKILL) } }
            }
            if rmdir(path) == 0 || lastErrno() == ENOENT { return }
            if attempt < 49 { usleep(10_000) }
        }
    }

    /// Removes a directory tree without crossing into other filesystems (a still-mounted
    /// rootfs is skipped, never walked) and without following symlinks.
    static func removeTree(_ path: String) throws {
        var st = stat()
        if lstat(path, &st) != 0 { if lastErrno() == ENOENT { return }; throw sysError("stat \(path)") }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw sysError("open \(path)") }
        removeContents(fd, dev: st.st_dev)
        closeFD(fd)
        if rmdir(path) != 0 && lastErrno() != ENOENT { throw sysError("rmdir \(path)") }
    }

    static func removeContents(_ dirFD: Int32, dev: UInt) {
        let dupFD = dup(dirFD)
        guard dupFD >= 0, let dir = fdopendir(dupFD) else { closeFD(dupFD); return }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names {
            var st = stat()
            guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFDIR {
                if st.st_dev != dev { continue }   // a mount point: never walk into it
                let sub = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub >= 0 {
                    var sst = stat()
                    if fstat(sub, &sst) == 0, sst.st_dev == dev { removeContents(sub, dev: dev) }
                    closeFD(sub)
                }
                _ = unlinkat(dirFD, name, AT_REMOVEDIR)
            } else {
                _ = unlinkat(dirFD, name, 0)
            }
        }
    }
}
