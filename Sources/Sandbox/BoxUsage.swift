import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one box uses now (issue 24, the type in DevboxRuntime), read from the host: its
/// cgroups (v2 or v1), its writable tree, and the host end of its veth.
extension BoxUsage {
    /// Entries a disk walk visits at most (a few ms per thousand on a warm cache).
    public static let walkLimit = 20_000
}

extension CrunRuntime {
    /// The box's usage now; blocking (file reads, maybe a bounded walk): call it off the
    /// cooperative pool (`usageOffPool`).
    public func usage(id: String) -> BoxUsage {
        var u = BoxUsage()
        let cg = cgroupsPath(id)
        for root in HostState.cgroupRoots() {
            let dir = root + cg
            if let text = readSmallFile(dir + "/cpu.stat", limit: 4096), let usec = Self.field(text, "usage_usec") {
                u.cpuSeconds = Double(usec) / 1e6
            } else if u.cpuSeconds == nil, let ns = Self.number(dir + "/cpuacct.usage") {
                u.cpuSeconds = Double(ns) / 1e9
            }
            if let v = Self.number(dir + "/memory.current") {
                u.memoryBytes = v
                u.memoryPeakBytes = Self.number(dir + "/memory.peak")
                u.memoryLimitBytes = Self.number(dir + "/memory.max")
            } else if let v = Self.number(dir + "/memory.usage_in_bytes") {
                u.memoryBytes = v
                u.memoryPeakBytes = Self.number(dir + "/memory.max_usage_in_bytes")
                // v1 says "no limit" with a huge page-rounded number.
                u.memoryLimitBytes = Self.number(dir + "/memory.limit_in_bytes").flatMap { $0 >= (Int64(1) << 60) ? nil : $0 }
            }
            if let v = Self.number(dir + "/pids.current") { u.pids = Int(v) }
        }
        (u.diskUsedBytes, u.diskUsedComplete) = diskUsage(id: id)
        if let link = networkInfo(id: id) {
            let stats = "/sys/class/net/\(link.hostInterface)/statistics/"
            // The host end's transmit is what the box received, and the other way round.
            u.networkInBytes = Self.number(stats + "tx_bytes")
            u.networkOutBytes = Self.number(stats + "rx_bytes")
        }
        return u
    }

    /// `usage(id:)` on the blocking executor.
    public func usageOffPool(id: String) async -> BoxUsage {
        await onDedicatedThread { [self] in usage(id: id) }
    }

    /// Bytes used by the box's writable tree. When the workspace's parent is a file system of
    /// its own (a per-box disk, mounted while the box runs), statvfs answers at once; a stopped
    /// box's unmounted disk answers with its image's allocated bytes; otherwise (no disk of its
    /// own) the upper dir and the workspace are walked, at most `BoxUsage.walkLimit` entries.
    func diskUsage(id: String) -> (Int64, Bool) {
        let workspace = workspaceHostPath(id: id)
        let root = (workspace as NSString).deletingLastPathComponent
        var own = stat()
        var parent = stat()
        if stat(root, &own) == 0, stat((root as NSString).deletingLastPathComponent, &parent) == 0, own.st_dev != parent.st_dev {
            var fs = statvfs()
            if statvfs(root, &fs) == 0 {
                return ((Int64(fs.f_blocks) - Int64(fs.f_bfree)) * Int64(fs.f_frsize), true)
            }
        }
        // A stopped box's disk is not mounted: what its image takes on the host (an upper
        // bound: the file system's own metadata, and blocks freed inside it, count too).
        var image = stat()
        if lstat(diskImagePath(id), &image) == 0, (image.st_mode & S_IFMT) == S_IFREG {
            return (Int64(image.st_blocks) * 512, true)
        }
        var budget = BoxUsage.walkLimit
        var total: Int64 = 0
        for dir in [root + "/upper", workspace] {
            total += Self.walk(dir, budget: &budget)
        }
        return (total, budget > 0)
    }

    /// Allocated bytes under `path` (its own entry included), never following symlinks or
    /// leaving its file system; stops when `budget` entries have been visited.
    static func walk(_ path: String, budget: inout Int) -> Int64 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            return 0
        }
        return Int64(st.st_blocks) * 512 + walk(fd: fd, device: st.st_dev, budget: &budget)
    }

    private static func walk(fd: Int32, device: dev_t, budget: inout Int) -> Int64 {
        guard let d = fdopendir(fd) else {
            close(fd)
            return 0
        }
        defer { closedir(d) }
        var total: Int64 = 0
        while budget > 0, let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name == "." || name == ".." { continue }
            budget -= 1
            var st = stat()
            guard fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            total += Int64(st.st_blocks) * 512
            if (st.st_mode & S_IFMT) == S_IFDIR, st.st_dev == device {
                let child = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 { total += walk(fd: child, device: device, budget: &budget) }
            }
        }
        return total
    }

    /// A file holding one number ("max" and unreadable files: nil).
    static func number(_ path: String) -> Int64? {
        guard let text = readSmallFile(path, limit: 256) else { return nil }
        return Int64(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// `key value` lines (cpu.stat): the value of `key`.
    static func field(_ text: String, _ key: String) -> Int64? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return Int64(parts[1]) }
        }
        return nil
    }
}
