import CDevbox
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Host-side file access inside a running box (the files API).
//
// Every path is resolved from the box init's root directory (`/proc/<init>/root`: the
// box's own mount namespace, so /workspace, /tmp and /home are what a process in the
// box sees) with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): symlinks are followed
// only while they stay inside; an absolute symlink target or `..` climbing out fails
// (EXDEV) and is reported as `BoxFileError.escapes`. `..` components are refused before
// any lookup. Only regular files are read or written and only directories listed:
// device nodes, FIFOs and sockets are never opened, and the pseudo filesystems (proc,
// sysfs, cgroup, devpts, mqueue...) are refused. A write goes to a temporary file in the
// target directory and is renamed over the name, so a reader never sees half a file and
// a symlink planted at the name is replaced, never followed. Files and directories created
// here belong to the box's root (its host uid/gid in the box's own id range, shown as
// root:root inside, UserNamespace.swift); an existing file keeps its owner and, unless
// `mode` is given, its mode.

extension BoxFileError {
    static func from(_ e: Int32, _ what: String) -> BoxFileError {
        switch e {
        case ENOENT: return .notFound
        case EXDEV, ELOOP: return .escapes
        case ENOTDIR: return .notDirectory
        case EISDIR: return .isDirectory
        case ENOTEMPTY, EEXIST: return .notEmpty
        case EROFS: return .readOnly
        case ENOSPC, EDQUOT: return .noSpace
        case EBUSY: return .unsupported("the path is busy (a mount point)")
        case ENAMETOOLONG: return .invalidPath("the path is too long")
        default: return .system(what, errno: e)
        }
    }
}

extension BoxPath {
    /// `components` joined as a path relative to the root ("." for the root itself).
    static func relative(_ comps: [String]) -> String { comps.isEmpty ? "." : comps.joined(separator: "/") }
}

let oPath = dbx_o_path()

/// Filesystems the files API never reads or writes.
let pseudoFilesystems: Set<Int> = [
    0x9fa0,  // proc
    0x6265_6572,  // sysfs
    0x0027_e0eb,  // cgroup
    0x6367_7270,  // cgroup2
    0x1cd1,  // devpts
    0x1980_0202,  // mqueue
    0x6462_6720,  // debugfs
    0x7363_6673,  // securityfs
    0xcafe_4a11,  // bpf
    0x7472_6163,  // tracefs
    0x6165_676c,  // pstore
    0xf97c_ff8c,  // selinuxfs
]

extension CrunRuntime {
    // MARK: public operations

    /// Reads a regular file (at most `maxBytes`) or lists a directory (at most `maxEntries`).
    public func readPath(id: String, path: String, maxBytes: Int, maxEntries: Int = 10_000) async throws -> BoxFileContent {
        try validate(id)
        let comps = try BoxPath.components(path)
        return try await onDedicatedThread { [self] () throws -> BoxFileContent in
            try withBoxRoot(id) { root in
                let fd = dbx_open_inside(root, BoxPath.relative(comps), oPath, 0)
                if fd < 0 { throw BoxFileError.from(lastErrno(), "open") }
                defer { closeFD(fd) }
                try refusePseudo(fd)
                var st = stat()
                if fstat(fd, &st) != 0 { throw BoxFileError.from(lastErrno(), "stat") }
                switch st.st_mode & S_IFMT {
                case S_IFREG:
                    if st.st_size > Int64(maxBytes) { throw BoxFileError.tooLarge(limit: maxBytes, size: Int64(st.st_size)) }
                    let rfd = open("/proc/self/fd/\(fd)", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
                    if rfd < 0 { throw BoxFileError.from(lastErrno(), "open") }
                    defer { closeFD(rfd) }
                    guard let bytes = readAll(fd: rfd, limit: maxBytes + 1) else { throw BoxFileError.from(lastErrno(), "read") }
                    if bytes.count > maxBytes { throw BoxFileError.tooLarge(limit: maxBytes, size: Int64(bytes.count)) }
                    return .file(bytes: bytes, mode: UInt32(st.st_mode & 0o7777))
                case S_IFDIR:
                    let dfd = open("/proc/self/fd/\(fd)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                    if dfd < 0 { throw BoxFileError.from(lastErrno(), "open") }
                    defer { closeFD(dfd) }
                    let (entries, truncated) = listDirectory(dfd, max: maxEntries)
                    return .directory(entries: entries, truncated: truncated)
                default:
                    throw BoxFileError.unsupported("not a regular file or directory")
                }
            }
        }
    }

    /// Writes a regular file atomically, creating missing parent directories (root:root
    /// 0755). `mode` nil: an existing file keeps its mode, a new one gets 0644.
    /// Returns true when the file did not exist before.
    @discardableResult
    public func writeFile(id: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool {
        try validate(id)
        let comps = try BoxPath.components(path)
        guard let name = comps.last else { throw BoxFileError.isDirectory }
        if let mode, mode > 0o7777 { throw BoxFileError.invalidPath("mode must be at most 7777 (octal)") }
        return try await onDedicatedThread { [self] () throws -> Bool in
            try withBoxRoot(id) { root in
                let target = "/" + comps.joined(separator: "/")
                if boxMountPoints(id).contains(target) { throw BoxFileError.mountPoint(target) }
                let dir = try ensureParent(root, Array(comps.dropLast()), owner: boxRootOwner(id: id))
                defer { closeFD(dir) }
                try refusePseudo(dir)
                var st = stat()
                var existing: stat? = nil
                if fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                    switch st.st_mode & S_IFMT {
                    case S_IFREG: existing = st
                    case S_IFDIR: throw BoxFileError.isDirectory
                    case S_IFLNK: throw BoxFileError.unsupported("the path is a symbolic link; write to the path it points to")
                    default: throw BoxFileError.unsupported("not a regular file")
                    }
                } else if lastErrno() != ENOENT {
                    throw BoxFileError.from(lastErrno(), "stat")
                }
                let tmp = ".devbox-write-\(getpid())-\(counterNext())"
                let owner = boxRootOwner(id: id)
                let fd = creatingAsBoxRoot(owner) { openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
                if fd < 0 { throw BoxFileError.from(lastErrno(), "create") }
                var ok = writeAll(fd: fd, bytes)
                var e = lastErrno()
                let finalMode = mode_t(mode ?? existing.map { UInt32($0.st_mode & 0o7777) } ?? 0o644)
                if ok {
                    ok = creatingAsBoxRoot(owner, { fchown(fd, existing?.st_uid ?? owner.uid, existing?.st_gid ?? owner.gid) }) == 0
                        && creatingAsBoxRoot(owner, { fchmod(fd, finalMode) }) == 0
                    e = lastErrno()
                }
                closeFD(fd)
                if ok && creatingAsBoxRoot(owner, { renameat(dir, tmp, dir, name) }) != 0 { ok = false; e = lastErrno() }
                if !ok {
                    _ = unlinkat(dir, tmp, 0)
                    throw BoxFileError.from(e, "write")
                }
                return existing == nil
            }
        }
    }

    /// Deletes a file, symlink (not its target) or empty directory; a non-empty
    /// directory only with `recursive` (never crossing into another mount).
    public func deletePath(id: String, path: String, recursive: Bool) async throws {
        try validate(id)
        let comps = try BoxPath.components(path)
        guard let name = comps.last else { throw BoxFileError.invalidPath("the root directory cannot be deleted") }
        try await onDedicatedThread { [self] () throws in
            try withBoxRoot(id) { root in
                let target = "/" + comps.joined(separator: "/")
                if boxMountPoints(id).contains(where: { $0 == target || $0.hasPrefix(target + "/") }) {
                    throw BoxFileError.mountPoint(target)
                }
                let dir = dbx_open_inside(root, BoxPath.relative(Array(comps.dropLast())), oPath | O_DIRECTORY, 0)
                if dir < 0 { throw BoxFileError.from(lastErrno(), "open") }
                defer { closeFD(dir) }
                try refusePseudo(dir)
                var st = stat()
                if fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 { throw BoxFileError.from(lastErrno(), "stat") }
                if st.st_mode & S_IFMT == S_IFDIR {
                    if recursive {
                        let sub = dbx_open_inside(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
                        if sub < 0 { throw BoxFileError.from(lastErrno(), "open") }
                        var sst = stat()
                        if fstat(sub, &sst) == 0 { HostState.removeContents(sub, dev: sst.st_dev) }
                        closeFD(sub)
                    }
                    if unlinkat(dir, name, AT_REMOVEDIR) != 0 { throw BoxFileError.from(lastErrno(), "rmdir") }
                } else if unlinkat(dir, name, 0) != 0 {
                    throw BoxFileError.from(lastErrno(), "unlink")
                }
            }
        }
    }

    // MARK: internals (dedicated thread)

    /// Runs `body` with an oPath descriptor of the box's root, under the box lock (so a
    /// stop or destroy cannot unmount the root halfway).
    func withBoxRoot<T>(_ id: String, _ body: (Int32) throws -> T) throws -> T {
        try withBoxLock(id) {
            let root = try openBoxRoot(id)
            defer { closeFD(root) }
            return try body(root)
        }
    }

    /// The mount points of the box as its init sees them (`/proc/<pid>/mountinfo`: paths
    /// relative to the box's root). Empty if the box is not running (the root open fails then).
    func boxMountPoints(_ id: String) -> Set<String> {
        guard let pid = knownInitPid(id) ?? initPid(id), let text = readSmallFile("/proc/\(pid)/mountinfo") else { return [] }
        var out = Set<String>()
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count > 4 { out.insert(HostState.unescape(String(f[4]))) }
        }
        return out
    }

    /// The box init's root directory. The init's pid comes from `crun state`; it is
    /// checked to be in the box's cgroup after a pidfd pins it, and the pidfd must still
    /// be alive once the root is open, so a recycled pid can never hand out the root of
    /// another process (e.g. the host's "/").
    func openBoxRoot(_ id: String) throws -> Int32 {
        guard let pid = initPid(id) else { throw BoxRuntimeError.notRunning(id) }
        let pidfd = try pinInit(id, pid: pid)
        defer { closeFD(pidfd) }
        let root = open("/proc/\(pid)/root", oPath | O_DIRECTORY | O_CLOEXEC)
        if root < 0 { throw BoxRuntimeError.notRunning(id) }
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, 0) != 0 {
            closeFD(root)
            throw BoxRuntimeError.notRunning(id)
        }
        return root
    }

    /// A pidfd of `pid`, checked to be in the box's cgroup after the pidfd pinned it.
    func pinInit(_ id: String, pid: pid_t) throws -> Int32 {
        let pidfd = dbx_pidfd_open(pid)
        if pidfd < 0 { throw BoxRuntimeError.notRunning(id) }
        let suffix = ":" + cgroupsPath(id)
        guard let cg = readSmallFile("/proc/\(pid)/cgroup"),
            cg.split(separator: "\n").contains(where: { $0.hasSuffix(suffix) })
        else {
            closeFD(pidfd)
            throw BoxRuntimeError.notRunning(id)
        }
        return pidfd
    }

    /// The host pid of the box's init while it runs (`crun state`), else nil.
    func initPid(_ id: String) -> pid_t? {
        guard let r = try? runCommandBlocking(crun, ["crun", "state", containerName(id)]), r.status == 0 else { return nil }
        let text = r.stdoutText
        guard text.contains("\"running\""), let range = text.range(of: "\"pid\"") else { return nil }
        let digits = text[range.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "\t" }.prefix { $0.isNumber }
        guard let pid = pid_t(digits), pid > 1 else { return nil }
        return pid
    }

    /// Opens the directory `comps` beneath `root`, creating missing components (0755, owned
    /// by the box's root: `owner` is its host uid/gid).
    func ensureParent(_ root: Int32, _ comps: [String], owner: (uid: uid_t, gid: gid_t) = (0, 0)) throws -> Int32 {
        let whole = dbx_open_inside(root, BoxPath.relative(comps), oPath | O_DIRECTORY, 0)
        if whole >= 0 { return whole }
        if lastErrno() != ENOENT { throw BoxFileError.from(lastErrno(), "open") }
        var current = dbx_open_inside(root, ".", oPath | O_DIRECTORY, 0)
        if current < 0 { throw BoxFileError.from(lastErrno(), "open") }
        for i in comps.indices {
            var next = dbx_open_inside(root, BoxPath.relative(Array(comps[...i])), oPath | O_DIRECTORY, 0)
            if next < 0 && lastErrno() == ENOENT {
                if creatingAsBoxRoot(owner, { mkdirat(current, comps[i], 0o755) }) != 0 && lastErrno() != EEXIST {
                    let e = lastErrno(); closeFD(current); throw BoxFileError.from(e, "mkdir")
                }
                next = dbx_open_inside(root, BoxPath.relative(Array(comps[...i])), oPath | O_DIRECTORY, 0)
                if next >= 0 {
                    // oPath descriptors cannot fchmod/fchown: go through the directory itself.
                    let d = dbx_open_inside(current, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
                    if d >= 0 { _ = fchown(d, owner.uid, owner.gid); _ = fchmod(d, 0o755); closeFD(d) }
                }
            }
            if next < 0 { let e = lastErrno(); closeFD(current); throw BoxFileError.from(e, "open") }
            closeFD(current)
            current = next
        }
        return current
    }

    /// Runs a call that creates or changes an inode; if the kernel answers EOVERFLOW — the filesystem
    /// belongs to the box's user namespace (the box's own /tmp and /run tmpfs, mounted by crun
    /// inside it), where the host's uid 0 has no mapping to own a new inode — runs it again
    /// with this thread's filesystem ids set to the box root's host ids, which that namespace
    /// maps, and restores them. setfsuid/setfsgid are per thread; capabilities come back with
    /// fsuid 0 (capabilities(7)).
    func creatingAsBoxRoot(_ owner: (uid: uid_t, gid: gid_t), _ call: () -> Int32) -> Int32 {
        let r = call()
        guard r < 0, lastErrno() == EOVERFLOW, owner.uid != 0 else { return r }
        guard dbx_set_fsids(owner.uid, owner.gid) == 0 else { _ = dbx_set_fsids(0, 0); errno = EOVERFLOW; return r }
        let again = call()
        let e = lastErrno()
        _ = dbx_set_fsids(0, 0)
        errno = e
        return again
    }

    func refusePseudo(_ fd: Int32) throws {
        let type = dbx_fs_type(fd)
        if type < 0 { throw BoxFileError.from(lastErrno(), "statfs") }
        if pseudoFilesystems.contains(Int(UInt32(truncatingIfNeeded: type))) {
            throw BoxFileError.unsupported("the files API does not reach /proc, /sys, /dev/pts and other pseudo filesystems; use exec")
        }
    }

    func listDirectory(_ dfd: Int32, max: Int) -> ([BoxFileEntry], Bool) {
        let dupFD = dup(dfd)
        guard dupFD >= 0, let dir = fdopendir(dupFD) else { closeFD(dupFD); return ([], false) }
        defer { closedir(dir) }
        var out: [BoxFileEntry] = []
        var truncated = false
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            if out.count >= max { truncated = true; break }
            var st = stat()
            guard fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let kind: BoxFileEntry.Kind
            var target: String? = nil
            switch st.st_mode & S_IFMT {
            case S_IFREG: kind = .file
            case S_IFDIR: kind = .directory
            case S_IFLNK:
                kind = .symlink
                var buf = [UInt8](repeating: 0, count: 4097)
                let n = buf.withUnsafeMutableBytes { raw -> Int in
                    guard let base = raw.baseAddress else { return -1 }
                    return readlinkat(dfd, name, base.assumingMemoryBound(to: CChar.self), 4096)
                }
                if n >= 0 { target = String(decoding: buf[0..<n], as: UTF8.self) }
            default: kind = .other
            }
            let mtime = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
            out.append(BoxFileEntry(
                name: name, kind: kind, size: Int64(st.st_size), mode: UInt32(st.st_mode & 0o7777), modifiedAt: mtime,
                linkTarget: target))
        }
        out.sort { $0.name < $1.name }
        return (out, truncated)
    }
}
