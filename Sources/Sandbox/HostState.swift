import CDevbox
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Mounts, cgroups and directories on the host.
enum HostState {
    struct MountEntry { var mountPoint: String; var fsType: String }

    /// /proc/self/mountinfo, with octal escapes (\040...) decoded.
    static func mounts() -> [MountEntry] {
        guard let text = readSmallFile("/proc/self/mountinfo", limit: 16 << 20) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count > 7, let dash = f.firstIndex(of: "-"), dash + 1 < f.count else { return nil }
            return MountEntry(mountPoint: unescape(String(f[4])), fsType: String(f[dash + 1]))
        }
    }

    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
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

    static func isMountPoint(_ path: String) -> Bool {
        mounts().contains { $0.mountPoint == path }
    }

    /// Mount points of cgroup hierarchies (v1 and v2).
    static func cgroupRoots() -> [String] {
        mounts().filter { $0.fsType == "cgroup" || $0.fsType == "cgroup2" }.map(\.mountPoint)
    }

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
            if dbx_mount("cgroup", dir, "cgroup", 0, c) != 0 {
                if lastErrno() == EBUSY && isMountPoint(dir) { continue }  // another process did it
                throw sysError("mount cgroup \(c)")
            }
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
