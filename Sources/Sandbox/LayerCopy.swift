import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Copies a box's writable tree (its overlay upper dir, its workspace) into a layer of the
/// image store (issue 23), in canonical ids: a file the box's uid `i` owns (host id
/// `base + i`) lands owned by `i`, so boxes of any id range can stack the layer (through
/// their idmapped lower mounts). Everything overlay needs from an upper dir survives:
/// whiteouts (0/0 character devices), opaque and redirect xattrs, hard links, sparse
/// files, set-id bits, file capabilities (a v3 capability, whose root id is the box's,
/// becomes a v2 one), modes and times.
///
/// `sync` is incremental: a second run over the same source and destination copies only
/// what changed since the first (by inode, ctime, mtime and size, taken *before* each
/// copy, so a change during or after a copy always shows) and deletes what disappeared.
/// A snapshot runs it twice: once while the box runs (the bulk of the bytes), once while
/// it is frozen (what changed meanwhile) — the pause is the second run only.
///
/// Never follows a symlink, never crosses a mount (entries on another device are
/// skipped). On ext4 without reflinks every byte is copied (copy_file_range, falling back
/// to read/write).
struct LayerCopy {
    struct Stamp: Equatable {
        var ino: UInt64, ctime: Int64, ctimeNsec: Int64, mtime: Int64, mtimeNsec: Int64, size: Int64, mode: UInt32
        init(_ st: stat) {
            ino = UInt64(st.st_ino)
            ctime = Int64(st.st_ctim.tv_sec)
            ctimeNsec = Int64(st.st_ctim.tv_nsec)
            mtime = Int64(st.st_mtim.tv_sec)
            mtimeNsec = Int64(st.st_mtim.tv_nsec)
            size = Int64(st.st_size)
            mode = UInt32(st.st_mode)
        }
    }

    /// The box's host ids (shifted down to 0..65535); nil: ids are copied as they are.
    let map: BoxIDMap?
    /// Relative paths (no leading slash) never copied: per-box files a new box gets anew.
    let skip: Set<String>
    /// Source path → its stamp when last copied.
    private(set) var stamps: [String: Stamp] = [:]
    /// Directory (relative path) → the names the last pass put there.
    private var children: [String: Set<String>] = [:]
    /// (device, inode) of multiply linked files → their relative path in the destination.
    private var links: [String: String] = [:]
    /// Files (re)copied and their bytes in the last `sync`.
    private(set) var copiedFiles = 0
    private(set) var copiedBytes: Int64 = 0

    init(map: BoxIDMap?, skip: Set<String> = []) {
        self.map = map
        self.skip = skip
    }

    /// Makes `dest` (created if missing) an image of `source`, copying what changed since
    /// the last `sync` of this value.
    mutating func sync(source: String, dest: String) throws {
        copiedFiles = 0
        copiedBytes = 0
        links = [:]
        let srcFD = open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if srcFD < 0 { throw sysError("open \(source)") }
        defer { closeFD(srcFD) }
        var st = stat()
        guard fstat(srcFD, &st) == 0 else { throw sysError("stat \(source)") }
        if mkdir(dest, 0o700) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(dest)") }
        let dstFD = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if dstFD < 0 { throw sysError("open \(dest)") }
        defer { closeFD(dstFD) }
        try syncDirectory(srcFD, dstFD, dstRoot: dstFD, rel: "", srcPath: source, dstPath: dest, dev: UInt64(st.st_dev), depth: 0)
        // The root's own owner, mode, xattrs and times.
        applyMetadata(dstFD: -1, name: dest, st, srcPath: source, dstPath: dest)
    }

    private func names(_ dirFD: Int32) -> [String] {
        let dupFD = dup(dirFD)
        guard dupFD >= 0, let dir = fdopendir(dupFD) else { closeFD(dupFD); return [] }
        defer { closedir(dir) }
        rewinddir(dir)
        var out: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    private func remove(_ dirFD: Int32, _ name: String) {
        var st = stat()
        guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let sub = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if sub >= 0 {
                HostState.removeContents(sub, dev: st.st_dev)
                closeFD(sub)
            }
            _ = unlinkat(dirFD, name, AT_REMOVEDIR)
        } else {
            _ = unlinkat(dirFD, name, 0)
        }
    }

    /// Brings `dstFD` up to date with `srcFD`; true when it changed the destination
    /// directory's entries (its times must then be set again). The destination is ours
    /// alone: what an earlier pass made there is known from `stamps` and `children`, so an
    /// unchanged entry costs one fstatat of the source (the frozen pass is mostly that).
    @discardableResult
    private mutating func syncDirectory(
        _ srcFD: Int32, _ dstFD: Int32, dstRoot: Int32, rel: String, srcPath: String, dstPath: String, dev: UInt64, depth: Int
    ) throws -> Bool {
        guard depth < 512 else { throw BoxRuntimeError.invalidArgument("directory tree deeper than 512 levels at \(rel)") }
        let sourceNames = names(srcFD)
        let wanted = Set(sourceNames.filter { !skip.contains(rel.isEmpty ? $0 : rel + "/" + $0) })
        var changed = false
        for name in children[rel] ?? Set(names(dstFD)) where !wanted.contains(name) {
            remove(dstFD, name)
            let gone = rel.isEmpty ? name : rel + "/" + name
            stamps[gone] = nil
            children[gone] = nil
            changed = true
        }
        children[rel] = wanted
        for name in sourceNames where wanted.contains(name) {
            let relPath = rel.isEmpty ? name : rel + "/" + name
            var st = stat()
            guard fstatat(srcFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if UInt64(st.st_dev) != dev { continue }
            let stamp = Stamp(st)
            let old = stamps[relPath]
            let type = st.st_mode & S_IFMT
            let src = srcPath + "/" + name, out = dstPath + "/" + name
            if type == S_IFDIR {
                var made = false
                if old.map({ $0.mode & UInt32(S_IFMT) != UInt32(S_IFDIR) }) ?? true {
                    var dst = stat()
                    let exists = fstatat(dstFD, name, &dst, AT_SYMLINK_NOFOLLOW) == 0
                    if exists && dst.st_mode & S_IFMT != S_IFDIR { remove(dstFD, name) }
                    if !exists || dst.st_mode & S_IFMT != S_IFDIR {
                        if mkdirat(dstFD, name, 0o700) != 0 { throw sysError("mkdir \(out)") }
                        made = true
                        changed = true
                        children[relPath] = nil
                    }
                }
                let subSrc = openat(srcFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if subSrc < 0 { throw sysError("open \(src)") }
                defer { closeFD(subSrc) }
                let subDst = openat(dstFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if subDst < 0 { throw sysError("open \(out)") }
                defer { closeFD(subDst) }
                let inner = try syncDirectory(subSrc, subDst, dstRoot: dstRoot, rel: relPath, srcPath: src, dstPath: out, dev: dev, depth: depth + 1)
                if made || inner || old != stamp { applyMetadata(dstFD: dstFD, name: name, st, srcPath: src, dstPath: out) }
                stamps[relPath] = stamp
                continue
            }
            let key = "\(st.st_dev):\(st.st_ino)"
            if old == stamp {
                if st.st_nlink > 1, links[key] == nil { links[key] = relPath }
                continue
            }
            remove(dstFD, name)
            changed = true
            switch type {
            case S_IFREG:
                if st.st_nlink > 1, let first = links[key] {
                    if linkat(dstRoot, first, dstFD, name, 0) != 0 { throw sysError("link \(out)") }
                    stamps[relPath] = stamp
                    continue
                }
                try copyFile(srcFD, dstFD, name, size: Int64(st.st_size), out: out)
                if st.st_nlink > 1 { links[key] = relPath }
            case S_IFLNK:
                var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlinkat(srcFD, name, &buf, Int(PATH_MAX))
                if n < 0 { throw sysError("readlink \(src)") }
                buf[n] = 0
                if symlinkat(buf, dstFD, name) != 0 { throw sysError("symlink \(out)") }
            case S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK:
                // Whiteouts are 0/0 character devices; the rest are kept as the box made them.
                if mknodat(dstFD, name, st.st_mode, st.st_rdev) != 0 { throw sysError("mknod \(out)") }
            default:
                continue
            }
            applyMetadata(dstFD: dstFD, name: name, st, srcPath: src, dstPath: out)
            stamps[relPath] = stamp
        }
        return changed
    }

    private mutating func copyFile(_ srcDir: Int32, _ dstDir: Int32, _ name: String, size: Int64, out: String) throws {
        let src = openat(srcDir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | dbx_o_noatime())
        if src < 0 { throw sysError("open \(out)") }
        defer { closeFD(src) }
        let dst = openat(dstDir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if dst < 0 { throw sysError("create \(out)") }
        defer { closeFD(dst) }
        copiedFiles += 1
        guard size > 0 else { return }
        if ftruncate(dst, off_t(size)) != 0 { throw sysError("size \(out)") }
        var offset: Int64 = 0
        while offset < size {
            // Only the data extents: holes stay holes.
            var data = dbx_seek_data(src, offset)
            if data < 0 { if lastErrno() == ENXIO { break }; data = offset }
            var hole = dbx_seek_hole(src, data)
            if hole < 0 || hole > size { hole = size }
            try copyRange(src, dst, from: data, count: hole - data, out: out)
            copiedBytes += hole - data
            offset = hole
        }
    }

    private func copyRange(_ src: Int32, _ dst: Int32, from start: Int64, count: Int64, out: String) throws {
        var inOff = start, outOff = start
        var left = count
        var kernelCopy = true
        while left > 0 {
            if kernelCopy {
                let n = dbx_copy_file_range(src, &inOff, dst, &outOff, min(left, 1 << 30))
                if n > 0 { left -= Int64(n); continue }
                if n == 0 { break }  // the source shrank
                let e = lastErrno()
                if e == EINTR { continue }
                guard e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP else { throw sysError("copy \(out)", e) }
                kernelCopy = false
            }
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            let n = buf.withUnsafeMutableBytes { pread(src, $0.baseAddress, Int(min(left, Int64($0.count))), off_t(inOff)) }
            if n < 0 { if lastErrno() == EINTR { continue }; throw sysError("read \(out)") }
            if n == 0 { break }
            var written = 0
            while written < n {
                let w = buf.withUnsafeBytes { pwrite(dst, $0.baseAddress! + written, n - written, off_t(outOff) + off_t(written)) }
                if w < 0 { if lastErrno() == EINTR { continue }; throw sysError("write \(out)") }
                written += w
            }
            inOff += Int64(n)
            outOff += Int64(n)
            left -= Int64(n)
        }
    }

    private func shift(_ id: UInt32) -> UInt32 {
        guard let map, map.contains(hostID: id) else { return id }
        return id - map.base
    }

    /// Owner (shifted), mode, xattrs, times of the copy of `st`. `dstFD` -1: `name` is a path.
    private func applyMetadata(dstFD: Int32, name: String, _ st: stat, srcPath: String, dstPath: String) {
        let dirFD = dstFD < 0 ? AT_FDCWD : dstFD
        let isLink = st.st_mode & S_IFMT == S_IFLNK
        _ = fchownat(dirFD, name, shift(st.st_uid), shift(st.st_gid), AT_SYMLINK_NOFOLLOW)
        // After the chown (which clears set-id bits), before the capabilities (which it clears too).
        if !isLink { _ = fchmodat(dirFD, name, st.st_mode & 0o7777, 0) }
        if !isLink { copyXattrs(from: srcPath, to: dstPath) }
        var times = [st.st_atim, st.st_mtim]
        _ = utimensat(dirFD, name, &times, AT_SYMLINK_NOFOLLOW)
    }

    /// Overlay's own bookkeeping of the source's mount, meaningless in a layer of another stack.
    static let droppedXattrs: Set<String> = [
        "trusted.overlay.origin", "trusted.overlay.impure", "trusted.overlay.nlink", "trusted.overlay.uuid",
        "trusted.overlay.metacopy", "system.posix_acl_access", "system.posix_acl_default",
    ]

    private func copyXattrs(from src: String, to dst: String) {
        var list = [CChar](repeating: 0, count: 65536)
        let n = dbx_llistxattr(src, &list, UInt(list.count))
        guard n > 0 else { return }
        let names = list[0..<Int(n)].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        for name in names where !LayerCopy.droppedXattrs.contains(name) {
            var value = [UInt8](repeating: 0, count: 65536)
            let len = dbx_lgetxattr(src, name, &value, UInt(value.count))
            guard len >= 0 else { continue }
            var bytes = Array(value[0..<Int(len)])
            if name == "security.capability" { bytes = LayerCopy.canonicalCapability(bytes) }
            _ = dbx_lsetxattr(dst, name, bytes, UInt(bytes.count))
        }
    }

    /// A v3 file capability (namespaced: it names its user namespace's root) as v2 (the
    /// layer's own root); anything else unchanged.
    static func canonicalCapability(_ v: [UInt8]) -> [UInt8] {
        guard v.count == 24 else { return v }
        let magic = UInt32(v[0]) | UInt32(v[1]) << 8 | UInt32(v[2]) << 16 | UInt32(v[3]) << 24
        guard magic & 0xFF00_0000 == 0x0300_0000 else { return v }
        let v2 = (magic & 0x00FF_FFFF) | 0x0200_0000
        var out = Array(v[0..<20])
        out[0] = UInt8(v2 & 0xFF); out[1] = UInt8(v2 >> 8 & 0xFF); out[2] = UInt8(v2 >> 16 & 0xFF); out[3] = UInt8(v2 >> 24)
        return out
    }

    /// Bytes a tree takes on disk (allocated blocks; hard links once), never crossing a mount.
    static func diskUsage(_ path: String) -> Int64 {
        var seen = Set<UInt64>()
        var total: Int64 = 0
        func walk(_ fd: Int32, dev: UInt, depth: Int) {
            guard depth < 512 else { return }
            let dupFD = dup(fd)
            guard dupFD >= 0, let dir = fdopendir(dupFD) else { closeFD(dupFD); return }
            defer { closedir(dir) }
            while let ent = readdir(dir) {
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                var st = stat()
                guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_dev == dev else { continue }
                if st.st_nlink > 1 && st.st_mode & S_IFMT != S_IFDIR && !seen.insert(UInt64(st.st_ino)).inserted { continue }
                total += Int64(st.st_blocks) * 512
                if st.st_mode & S_IFMT == S_IFDIR {
                    let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if sub >= 0 { walk(sub, dev: dev, depth: depth + 1); closeFD(sub) }
                }
            }
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { closeFD(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return 0 }
        total += Int64(st.st_blocks) * 512
        walk(fd, dev: st.st_dev, depth: 0)
        return total
    }
}
