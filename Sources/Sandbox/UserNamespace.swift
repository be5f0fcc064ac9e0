import CDevbox
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Every box in a user namespace of its own (issue 18).
//
// Ids: in-box uids and gids 0..65535 are host ids base..base+65535 of a block of 65,536
// that belongs to this box alone (`BoxIDMap`). A process that escapes its box is a host
// user without an account, a stranger to the host's files and to every other box's.
// Blocks start at 2^28, far above host accounts; blocks that overlap an id of
// /etc/passwd, /etc/group, /etc/subuid or /etc/subgid are never handed out.
//
// Claims (`IDRangeRegistry`): machine-wide, so serves on different data directories never
// share a block, kept in `/var/lib/devbox/id-ranges` (persistent: a box keeps its files'
// owners across service restarts and reboots). Entry `<block>` is a symlink to the box
// directory that holds it; the box directory has `ids` with the block number. An entry is
// live only while both agree, so a crash or a deleted data directory leaves nothing that
// must be cleaned: a dangling or disagreeing entry is free. Claims are made under an
// flock of `<registry>/.lock`; the search starts at a random block (one symlink(2) in the
// common case).
//
// Mounting a box root (`idmappedLowers`): the service makes the box's user namespace
// itself (userns.c: a CLONE_VM child unshares it, the service writes the maps), keeps it
// alive by bind-mounting its nsfs file on `<box>/userns` (crun joins it by that path; the
// box's network, cgroup, pid, ipc, uts and mount namespaces are made by crun inside it, so
// they are owned by it: sysfs mounts, /sys/class/net shows only the box's links), and
// attaches an idmapped clone of every lower layer (open_tree + mount_setattr
// MOUNT_ATTR_IDMAP, read-only) at `<box>/lower/<i>`. The overlay stacks those: layers stay
// in canonical ids on disk, a box sees them owned by its own root, and what it writes in
// its upper dir lands with its host ids. Nothing is copied or chowned per create.
// Host-side writers (files API, env file, clones, /etc/hostname...) give what they create
// the box's ids (`idMap(_:)`).

/// The host ids of a box: in-box id `i` (0..<65536) is host id `base + i`.
public struct BoxIDMap: Sendable, Equatable, CustomStringConvertible {
    public static let size: UInt32 = 65_536
    /// The first host id of the first block.
    static let firstBase: UInt32 = 1 << 28
    /// Blocks up to 2^31 (ids some tools read as signed stay positive).
    static let blockCount = Int(((UInt32(1) << 31) - firstBase) / size)

    public let block: Int
    public var base: UInt32 { BoxIDMap.firstBase + UInt32(block) * BoxIDMap.size }
    /// The box's root as the host sees it.
    public var rootUID: uid_t { base }
    public var rootGID: gid_t { base }
    public var description: String { "\(base)-\(base + BoxIDMap.size - 1)" }

    init?(block: Int) {
        guard block >= 0, block < BoxIDMap.blockCount else { return nil }
        self.block = block
    }

    public func contains(hostID: UInt32) -> Bool { hostID >= base && hostID - base < BoxIDMap.size }
    /// The host id of a file a host-side writer made with in-box-like ids (0: the box's root).
    func host(_ id: UInt32) -> UInt32 { contains(hostID: id) ? id : (id < BoxIDMap.size ? base + id : base) }
}

/// The machine-wide claims of id blocks (see the file comment).
final class IDRangeRegistry: Sendable {
    static let defaultDirectory = "/var/lib/devbox/id-ranges"
    static let boxFile = "ids"

    let directory: String
    private let excluded = Mutex<Set<Int>?>(nil)

    init(directory: String) { self.directory = directory }

    /// Blocks overlapping an id the host's account files name.
    func excludedBlocks() -> Set<Int> {
        if let e = excluded.withLock({ $0 }) { return e }
        var out = Set<Int>()
        func exclude(_ lo: UInt64, _ count: UInt64) {
            guard count > 0 else { return }
            let hi = lo + count - 1
            let first = UInt64(BoxIDMap.firstBase), size = UInt64(BoxIDMap.size)
            guard hi >= first else { return }
            let a = lo < first ? 0 : Int((lo - first) / size)
            let b = Int(min((hi - first) / size, UInt64(BoxIDMap.blockCount - 1)))
            if a <= b { for k in a...b { out.insert(k) } }
        }
        for file in ["/etc/passwd", "/etc/group"] {
            for line in (readSmallFile(file, limit: 16 << 20) ?? "").split(separator: "\n") {
                let f = line.split(separator: ":", omittingEmptySubsequences: false)
                if f.count > 3, let uid = UInt64(f[2]) { exclude(uid, 1) }
                if file == "/etc/passwd", f.count > 3, let gid = UInt64(f[3]) { exclude(gid, 1) }
            }
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            for line in (readSmallFile(file, limit: 16 << 20) ?? "").split(separator: "\n") {
                let f = line.split(separator: ":")
                if f.count == 3, let lo = UInt64(f[1]), let n = UInt64(f[2]) { exclude(lo, n) }
            }
        }
        excluded.withLock { $0 = out }
        return out
    }

    private func withLock<T>(_ body: () throws -> T) throws -> T {
        try makeDirectoriesIfNeeded(directory)
        let fd = open(directory + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 { throw sysError("open \(directory)/.lock") }
        defer { closeFD(fd) }
        while flock(fd, LOCK_EX) != 0 { if lastErrno() != EINTR { throw sysError("flock \(directory)/.lock") } }
        return try body()
    }

    private func makeDirectoriesIfNeeded(_ path: String) throws {
        if access(path, F_OK) == 0 { return }
        var current = ""
        for comp in path.split(separator: "/") {
            current += "/" + comp
            if mkdir(current, 0o755) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(current)") }
        }
        _ = chmod(path, 0o700)
    }

    /// The block recorded in a box directory, if any.
    static func recorded(boxDirectory: String) -> BoxIDMap? {
        guard let text = readSmallFile(boxDirectory + "/" + boxFile, limit: 64),
            let k = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        return BoxIDMap(block: k)
    }

    /// True when entry `block` is held by a box directory that still records it.
    private func live(_ block: Int, holder: String) -> Bool {
        IDRangeRegistry.recorded(boxDirectory: holder)?.block == block
    }

    private func holder(of block: Int) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(directory + "/\(block)", &buf, Int(PATH_MAX))
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Claims a free block for the box directory and records it there (`ids`).
    func claim(boxDirectory dir: String) throws -> BoxIDMap {
        let skip = excludedBlocks()
        return try withLock {
            let count = BoxIDMap.blockCount
            let start = Int.random(in: 0..<count)
            for i in 0..<count {
                let k = (start + i) % count
                if skip.contains(k) { continue }
                let entry = directory + "/\(k)"
                if symlink(dir, entry) != 0 {
                    guard lastErrno() == EEXIST else { throw sysError("claim id block \(k)") }
                    if let h = holder(of: k), h != dir, live(k, holder: h) { continue }
                    _ = unlink(entry)
                    if symlink(dir, entry) != 0 { throw sysError("claim id block \(k)") }
                }
                try record(k, in: dir)
                return BoxIDMap(block: k)!
            }
            throw BoxRuntimeError.invalidArgument("no free id range left for a box")
        }
    }

    /// Makes sure the box's recorded block is claimed for it (a restart, a registry that
    /// lost its entry). Throws when another live box holds it.
    func confirm(_ map: BoxIDMap, boxDirectory dir: String) throws {
        if holder(of: map.block) == dir { return }
        try withLock {
            let entry = directory + "/\(map.block)"
            if let h = holder(of: map.block) {
                if h == dir { return }
                if live(map.block, holder: h) {
                    throw BoxRuntimeError.invalidArgument("the id range \(map) of this box is held by \(h)")
                }
                _ = unlink(entry)
            }
            if symlink(dir, entry) != 0 && lastErrno() != EEXIST { throw sysError("claim id block \(map.block)") }
        }
    }

    /// Frees the box's block (destroy). Only the box's own entry is removed.
    func release(_ map: BoxIDMap, boxDirectory dir: String) {
        _ = try? withLock {
            if holder(of: map.block) == dir { _ = unlink(directory + "/\(map.block)") }
        }
    }

    private func record(_ block: Int, in dir: String) throws {
        let path = dir + "/" + IDRangeRegistry.boxFile
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("open \(path)") }
        defer { closeFD(fd) }
        if !writeAll(fd: fd, Array("\(block)\n".utf8)) { throw sysError("write \(path)") }
    }
}

extension CrunRuntime {
    var userNamespacePath: String { "userns" }
    func userNamespaceFile(_ id: String) -> String { boxDirectory(id) + "/userns" }
    func lowerMountDirectory(_ id: String) -> String { boxDirectory(id) + "/lower" }

    /// The box's host ids; nil for a box without a user namespace (made before them).
    func idMap(_ id: String) -> BoxIDMap? {
        let name = boxName(id)
        if let m = idMaps.withLock({ $0[name] }) { return m }
        guard let m = IDRangeRegistry.recorded(boxDirectory: boxDirectory(id)) else { return nil }
        idMaps.withLock { $0[name] = m }
        return m
    }

    /// The in-box root's host uid and gid of a devbox's box (0, 0 without a user namespace).
    public func boxRootOwner(id: String) -> (uid: uid_t, gid: gid_t) {
        guard (try? validate(id)) != nil, let m = idMap(id) else { return (0, 0) }
        return (m.rootUID, m.rootGID)
    }

    /// Claims the ids of a new box (create): recorded in its directory, which becomes
    /// traversable by the box's root group only (crun, joined to the box's user namespace,
    /// resolves the rootfs and bind sources below it).
    func claimIDs(name: String) throws -> BoxIDMap {
        let dir = boxDirectory(name)
        let map = try idRegistry.claim(boxDirectory: dir)
        idMaps.withLock { $0[name] = map }
        if chown(dir, 0, map.rootGID) != 0 || chmod(dir, 0o710) != 0 { throw sysError("chown \(dir)") }
        return map
    }

    /// `path` relative to the box's bundle directory when it is below the state directory
    /// (`x`, `disk/x`, `../.secrets/x`); unchanged otherwise.
    func bundleRelative(_ path: String, name: String) -> String {
        let dir = boxDirectory(name) + "/", state = configuration.stateDirectory + "/"
        if path.hasPrefix(dir) { return String(path.dropFirst(dir.count)) }
        if path.hasPrefix(state) { return "../" + path.dropFirst(state.count) }
        return path
    }

    /// Forgets and frees the box's ids (destroy).
    func releaseIDs(_ id: String) {
        let name = boxName(id)
        let dir = boxDirectory(id)
        if let m = idMaps.withLock({ $0.removeValue(forKey: name) }) ?? IDRangeRegistry.recorded(boxDirectory: dir) {
            idRegistry.release(m, boxDirectory: dir)
        }
    }

    /// The box's user namespace (made and bound on `<box>/userns` unless it is) and idmapped
    /// clones of `lowers` under `<box>/lower/`: the lowerdir paths for its overlay. A box
    /// without ids gets `lowers` unchanged.
    func idmappedLowers(_ id: String, _ lowers: [String]) throws -> [String] {
        guard let map = idMap(id) else { return lowers }
        let dir = boxDirectory(id)
        try idRegistry.confirm(map, boxDirectory: dir)
        let nsFile = userNamespaceFile(id)
        // What an earlier mount (a crash) left; a new box has nothing (no mountinfo scan then).
        if access(lowerMountDirectory(id), F_OK) == 0 { unmountIDMapped(id) }
        let nsfd = dbx_userns_create(map.rootUID, map.rootGID, BoxIDMap.size)
        if nsfd < 0 { throw sysError("create the user namespace of \(id)") }
        defer { closeFD(nsfd) }
        if access(nsFile, F_OK) != 0 {
            let fd = open(nsFile, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd < 0 { throw sysError("create \(nsFile)") }
            closeFD(fd)
        }
        if dbx_bind_fd(nsfd, nsFile) != 0 { throw sysError("bind the user namespace of \(id)") }
        let lowerDir = lowerMountDirectory(id)
        if mkdir(lowerDir, 0o700) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(lowerDir)") }
        var out: [String] = []
        for (i, lower) in lowers.enumerated() {
            let target = lowerDir + "/\(i)"
            if mkdir(target, 0o755) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(target)") }
            if dbx_idmapped_mount(lower, nsfd, target, 1) != 0 { throw sysError("idmap \(lower) for \(id)") }
            out.append(target)
        }
        return out
    }

    /// Unmounts the idmapped lower layers and the user namespace binding (after the overlay).
    func unmountIDMapped(_ id: String) {
        let lowerDir = lowerMountDirectory(id)
        let nsFile = userNamespaceFile(id)
        // By path (`lower/<i>` as `idmappedLowers` made them, then the binding): the mount
        // table only if one of them did not come off as expected.
        var clean = true
        for name in MaskPlan.listDirectory(lowerDir) { clean = HostState.unmountStack(lowerDir + "/" + name) && clean }
        clean = HostState.unmountStack(nsFile) && clean
        if clean { return }
        let mine = HostState.mounts().map(\.mountPoint).filter { $0 == nsFile || $0.hasPrefix(lowerDir + "/") }
        for m in mine.sorted(by: { $0.count > $1.count }) {
            if dbx_umount(m, 0) != 0 { _ = dbx_umount(m, Int32(MNT_DETACH)) }
        }
    }

    /// Gives the box's root what the host made at the top of its writable tree: the upper
    /// dir's root, the workspace, and the per-box files placed in the upper dir. Ids already
    /// in the box's range are left alone (a box's own chown stays).
    func ownWritableTree(_ id: String, upper: String, workspace: String, files: [String]) {
        guard let map = idMap(id) else { return }
        // The writable tree's own root (`<box>/disk`): traversable by the box's root group
        // only, like the box directory (crun reaches the workspace through it).
        let writable = (upper as NSString).deletingLastPathComponent
        if writable != boxDirectory(id) {
            var st = stat()
            if lstat(writable, &st) == 0, st.st_gid != map.rootGID || st.st_mode & 0o777 != 0o710 {
                _ = lchown(writable, 0, map.rootGID)
                _ = chmod(writable, 0o710)
            }
        }
        for path in [upper, workspace] {
            var st = stat()
            if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, !map.contains(hostID: st.st_uid) {
                _ = lchown(path, map.host(st.st_uid), map.host(st.st_gid))
            }
        }
        guard let upperFD = try? SafeFS.openDirectory(upper) else { return }
        defer { closeFD(upperFD) }
        var dirs = Set<String>()
        for f in files {
            var parts = f.split(separator: "/").dropLast()
            while !parts.isEmpty { dirs.insert(parts.joined(separator: "/")); parts = parts.dropLast() }
        }
        for path in dirs.sorted() + files { SafeFS.adopt(rootFD: upperFD, path: path, map: map) }
    }

    /// Gives a tree the host made for a box (a clone before it moves into the workspace)
    /// the box's ids: host id i < 65536 becomes the box's i. Never crosses a mount or
    /// follows a symlink. No-op for a box without a user namespace.
    public func adoptTree(id: String, path: String) async throws {
        try validate(id)
        guard let map = idMap(id) else { return }
        try await onDedicatedThread { try IDShift.shiftTree(path, map: map) }
    }
}

extension SafeFS {
    /// lchown of `path` beneath `rootFD` (no symlink followed on the way) to the box's ids
    /// if its owner is outside the box's range.
    static func adopt(rootFD: Int32, path: String, map: BoxIDMap) {
        let comps = path.split(separator: "/")
        guard let name = comps.last.map(String.init) else { return }
        let parentPath = comps.dropLast().joined(separator: "/")
        let parent = dbx_open_beneath(rootFD, parentPath.isEmpty ? "." : parentPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
        if parent < 0 { return }
        defer { closeFD(parent) }
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0, !map.contains(hostID: st.st_uid) else { return }
        _ = fchownat(parent, name, map.host(st.st_uid), map.host(st.st_gid), AT_SYMLINK_NOFOLLOW)
    }
}

enum IDShift {
    /// Shifts every entry of the tree at `path` (itself included) into the box's range.
    static func shiftTree(_ path: String, map: BoxIDMap) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw sysError("open \(path)") }
        defer { closeFD(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw sysError("stat \(path)") }
        if !map.contains(hostID: st.st_uid) { _ = fchown(fd, map.host(st.st_uid), map.host(st.st_gid)) }
        shiftContents(fd, dev: st.st_dev, map: map, depth: 0)
    }

    private static func shiftContents(_ dirFD: Int32, dev: UInt, map: BoxIDMap, depth: Int) {
        guard depth < 256 else { return }
        let dupFD = dup(dirFD)
        guard dupFD >= 0, let dir = fdopendir(dupFD) else { closeFD(dupFD); return }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            var st = stat()
            guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_dev == dev else { continue }
            if !map.contains(hostID: st.st_uid) || !map.contains(hostID: st.st_gid) {
                _ = fchownat(dirFD, name, map.host(st.st_uid), map.host(st.st_gid), AT_SYMLINK_NOFOLLOW)
                // chown clears set-id bits of non-directories: give them back.
                if (st.st_mode & S_IFMT) == S_IFREG, st.st_mode & (S_ISUID | S_ISGID) != 0 {
                    _ = fchmodat(dirFD, name, st.st_mode & 0o7777, 0)
                }
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let sub = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub >= 0 {
                    shiftContents(sub, dev: dev, map: map, depth: depth + 1)
                    closeFD(sub)
                }
            }
        }
    }
}
