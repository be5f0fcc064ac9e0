import CDevbox
#if canImport(Glibc)
import Glibc
#endif

/// The entries of the shared mask layer that hide host-private trees
/// (see the comment at the top of Bundle.swift). Paths are relative to the box root.
struct MaskPlan: Sendable {
    enum Item: Sendable, Equatable {
        /// An empty opaque directory; `skeleton` entries are created inside when it is new.
        case opaque(String, mode: mode_t, skeleton: [Skeleton])
        case whiteout(String)
        /// A file created only if the box has none at that path.
        case file(String, contents: [UInt8], mode: mode_t)
    }
    enum Skeleton: Sendable, Equatable {
        case dir(String, mode: mode_t)
        case symlink(String, target: String)
    }
    var items: [Item] = []

    static let visibleTopLevel: Set<String> = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc"]
    static let mountedTopLevel: Set<String> = ["proc", "sys", "dev", "workspace", ".devbox"]
    static let emptyTopLevel: [(String, mode_t)] = [
        ("root", 0o700), ("home", 0o755), ("opt", 0o755), ("srv", 0o755), ("mnt", 0o755),
        ("media", 0o755), ("boot", 0o755), ("var", 0o755), ("tmp", 0o1777), ("run", 0o755),
    ]
    static let varSkeleton: [Skeleton] = [
        .dir("cache", mode: 0o755), .dir("lib", mode: 0o755), .dir("local", mode: 0o755),
        .dir("log", mode: 0o755), .dir("mail", mode: 0o2775), .dir("opt", mode: 0o755),
        .dir("spool", mode: 0o755), .dir("backups", mode: 0o755), .dir("tmp", mode: 0o1777),
        .symlink("run", target: "/run"), .symlink("lock", target: "/run/lock"),
    ]

    /// The plan for a box whose lower layer is the host's "/".
    static func forHostRoot(hiddenPaths: [String]) -> MaskPlan {
        var plan = MaskPlan()
        var covered: Set<String> = []   // paths already hidden (prefix check for nested ones)

        for (name, mode) in emptyTopLevel {
            plan.items.append(.opaque(name, mode: mode, skeleton: name == "var" ? varSkeleton : []))
            covered.insert(name)
        }
        // The box's own mount points exist in this shared layer, so crun mounts on them
        // without creating them in each box's upper dir (three inodes less per create).
        plan.items += mountPoints
        covered.formUnion(["workspace", ".devbox"])
        for name in listDirectory("/") where !visibleTopLevel.contains(name)
            && !mountedTopLevel.contains(name) && !covered.contains(name) {
            plan.items.append(.whiteout(name))
            covered.insert(name)
        }

        // /etc: secrets out, everything an unprivileged host user may read stays.
        let replaced: Set<String> = ["etc/shadow", "etc/gshadow"]
        var etcHidden: [String] = []
        scanUnreadable(host: "/etc", relative: "etc", depth: 0, into: &etcHidden)
        for name in listDirectory("/etc/ssh") where name.hasPrefix("ssh_host_") {
            etcHidden.append("etc/ssh/\(name)")
        }
        for path in Set(etcHidden).sorted() where !replaced.contains(path) {
            plan.items.append(.whiteout(path))
            covered.insert(path)
        }
        // resolv.conf as a symlink into /run (systemd-resolved, resolvconf) would dangle
        // over the box's own /run tmpfs: ship the resolved contents instead.
        var rst = stat()
        if lstat("/etc/resolv.conf", &rst) == 0, rst.st_mode & S_IFMT == S_IFLNK,
           let resolv = readFileBytes("/etc/resolv.conf", limit: 65536) {
            plan.items.append(.file("etc/resolv.conf", contents: resolv, mode: 0o644))
            covered.insert("etc/resolv.conf")
        }
        plan.items.append(.file("etc/shadow", contents: lockedShadow(), mode: 0o640))
        plan.items.append(.file("etc/gshadow", contents: lockedGshadow(), mode: 0o640))
        plan.items.append(.opaque("etc/devbox", mode: 0o700, skeleton: []))

        // Explicitly hidden host paths (state directory, data dir, work trees).
        for raw in hiddenPaths {
            for variant in Set([normalize(raw), normalize(realPath(raw) ?? raw)]) where !variant.isEmpty {
                if isCovered(variant, by: covered) { continue }
                plan.items.append(.whiteout(variant))
                covered.insert(variant)
            }
        }
        return plan
    }

    static let mountPoints: [Item] = [
        .opaque("workspace", mode: 0o755, skeleton: []),
        .file(".devbox/init", contents: [], mode: 0o755),
    ]

    /// The plan for a box on a base image: only the box's own /etc/devbox.
    static func forBaseImage() -> MaskPlan {
        MaskPlan(items: [.opaque("etc/devbox", mode: 0o700, skeleton: [])])
    }

    static func isCovered(_ path: String, by covered: Set<String>) -> Bool {
        var p = Substring(path)
        while true {
            if covered.contains(String(p)) { return true }
            guard let slash = p.lastIndex(of: "/") else { return false }
            p = p[p.startIndex..<slash]
        }
    }

    /// "/a//b/" -> "a/b" (relative to the box root); "" for "/" or relative paths.
    static func normalize(_ path: String) -> String {
        guard path.hasPrefix("/") else { return "" }
        return path.split(separator: "/").filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Entries below `host` an unprivileged user could not read (files without o+r,
    /// directories without o+r or o+x); readable directories are descended into.
    static func scanUnreadable(host: String, relative: String, depth: Int, into out: inout [String]) {
        if depth > 12 || out.count > 10_000 { return }
        for name in listDirectory(host) {
            let hp = host + "/" + name, rp = relative + "/" + name
            var st = stat()
            guard lstat(hp, &st) == 0 else { continue }
            let type = st.st_mode & S_IFMT
            if type == S_IFLNK { continue }
            if type == S_IFDIR {
                if st.st_mode & 0o005 != 0o005 { out.append(rp) } else { scanUnreadable(host: hp, relative: rp, depth: depth + 1, into: &out) }
            } else if st.st_mode & 0o004 == 0 {
                out.append(rp)
            }
        }
    }

    static func lockedShadow() -> [UInt8] {
        let names = firstFields(of: "/etc/passwd")
        return Array(names.map { "\($0):*:19000:0:99999:7:::\n" }.joined().utf8)
    }

    static func lockedGshadow() -> [UInt8] {
        let names = firstFields(of: "/etc/group")
        return Array(names.map { "\($0):*::\n" }.joined().utf8)
    }

    static func firstFields(of path: String) -> [String] {
        guard let text = readSmallFile(path) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let f = line.split(separator: ":", omittingEmptySubsequences: false).first, !f.isEmpty,
                  !f.hasPrefix("#") else { return nil }
            return String(f)
        }
    }

    /// Writes the plan into `upperFD` (an unmounted upper dir): creates what is missing,
    /// never replaces what the box made. `lowerRoot` gives modes/owners of parent dirs.
    func apply(upperFD: Int32, lowerRoot: String, extraFiles: [Item]) {
        for item in items + extraFiles {
            let path: String
            switch item {
            case .opaque(let p, _, _), .whiteout(let p), .file(let p, _, _): path = p
            }
            let comps = path.split(separator: "/").map(String.init)
            guard let name = comps.last else { continue }
            guard let parent = MaskPlan.openParents(upperFD: upperFD, components: comps.dropLast(), lowerRoot: lowerRoot) else { continue }
            defer { closeFD(parent) }
            var st = stat()
            let exists = fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0
            switch item {
            case .whiteout:
                if !exists { _ = dbx_mkwhiteout_at(parent, name) }
            case .file(_, let contents, let mode):
                if exists { continue }
                let fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
                if fd < 0 { continue }
                _ = fchown(fd, 0, 0); _ = fchmod(fd, mode)
                _ = writeAll(fd: fd, contents)
                closeFD(fd)
            case .opaque(_, let mode, let skeleton):
                let isNew = !exists
                if isNew {
                    guard mkdirat(parent, name, mode) == 0 else { continue }
                } else if st.st_mode & S_IFMT != S_IFDIR {
                    continue  // the box replaced it (whiteout, file, symlink): still hidden
                }
                let fd = dbx_open_beneath(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
                if fd < 0 { continue }
                _ = dbx_set_opaque(fd)
                if isNew {
                    _ = fchmod(fd, mode)
                    for s in skeleton {
                        switch s {
                        case .dir(let n, let m):
                            if mkdirat(fd, n, m) == 0 { _ = fchmodat(fd, n, m, 0) }
                        case .symlink(let n, let target):
                            _ = symlinkat(target, fd, n)
                        }
                    }
                }
                closeFD(fd)
            }
        }
    }

    /// Opens (creating as needed, mirroring the lower dir's mode and owner) the upper
    /// directory for `components`. nil if a component exists but is not a plain directory.
    static func openParents(upperFD: Int32, components: ArraySlice<String>, lowerRoot: String) -> Int32? {
        var current = dup(upperFD)
        if current < 0 { return nil }
        var lowerPath = lowerRoot == "/" ? "" : lowerRoot
        for comp in components {
            lowerPath += "/" + comp
            var next = dbx_open_beneath(current, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            if next < 0 && lastErrno() == ENOENT {
                var lst = stat()
                let haveLower = lstat(lowerPath, &lst) == 0 && lst.st_mode & S_IFMT == S_IFDIR
                let mode = haveLower ? lst.st_mode & 0o7777 : 0o755
                if mkdirat(current, comp, mode) == 0 {
                    _ = fchmodat(current, comp, mode, 0)
                    if haveLower { _ = fchownat(current, comp, lst.st_uid, lst.st_gid, AT_SYMLINK_NOFOLLOW) }
                }
                next = dbx_open_beneath(current, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            }
            closeFD(current)
            if next < 0 { return nil }
            current = next
        }
        return current
    }
}
