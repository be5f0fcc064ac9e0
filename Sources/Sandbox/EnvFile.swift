import CDevbox
#if canImport(Glibc)
import Glibc
#endif

/// The box environment file, `/etc/devbox/env` inside the box (0600, owned by the box's
/// root; the directory is a read-only bind mount).
///
/// Format: `KEY=VALUE` entries each terminated by a NUL byte, the format of
/// `/proc/PID/environ`. Values may hold any byte but NUL (newlines, quotes, `$`,
/// backticks...) and need no quoting. In a box: `xargs -0 -a /etc/devbox/env env --`.
///
/// Where it lives on the host: a tmpfs of the runtime's own, never the host's disk
/// (CrunRuntime+Env.swift). How it reaches processes (no loader inside the box): on every
/// exec/spawn the host reads this file from the tmpfs, merges defaults, the file and the
/// spec's env, and hands the result to `crun exec --process /proc/self/fd/3` in a memfd.
/// Values never appear on a command line, in a file on the host's disk, or in a log.
enum EnvFile {
    /// The directory the box sees it in (the bind mount's destination).
    static let boxDirectory = "/etc/devbox"
    static let name = "env"
    static let maxBytes = 1 << 20

    static func validate(_ env: [String: String]) throws {
        for (k, v) in env {
            if k.isEmpty || k.utf8.contains(0) || k.utf8.contains(UInt8(ascii: "=")) {
                throw BoxRuntimeError.invalidEnvironment("bad variable name (length \(k.utf8.count))")
            }
            if v.utf8.contains(0) { throw BoxRuntimeError.invalidEnvironment("value of \(k) contains NUL") }
        }
    }

    static func encode(_ env: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        for k in env.keys.sorted() {
            out.append(contentsOf: Array(k.utf8))
            out.append(UInt8(ascii: "="))
            out.append(contentsOf: Array((env[k] ?? "").utf8))
            out.append(0)
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> [String: String] {
        var env: [String: String] = [:]
        for entry in bytes.split(separator: 0, omittingEmptySubsequences: true) {
            guard let eq = entry.firstIndex(of: UInt8(ascii: "=")), eq > entry.startIndex else { continue }
            let k = String(decoding: entry[entry.startIndex..<eq], as: UTF8.self)
            let v = String(decoding: entry[(eq + 1)...], as: UTF8.self)
            env[k] = v
        }
        return env
    }

    /// Reads the env file in `directoryFD`. Missing file: empty env.
    static func read(directoryFD: Int32) -> [String: String] {
        let fd = openat(directoryFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { return [:] }
        defer { closeFD(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= maxBytes else { return [:] }
        guard let bytes = readAll(fd: fd, limit: maxBytes) else { return [:] }
        return decode(bytes)
    }

    /// Atomically replaces the env file in `directoryFD` (a directory on the secrets tmpfs:
    /// nothing to fsync), owned by `owner`, mode 0600.
    static func write(directoryFD: Int32, env: [String: String], owner: (uid: uid_t, gid: gid_t)) throws {
        try validate(env)
        let tmp = ".env.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = openat(directoryFD, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("create env file") }
        let ok = fchown(fd, owner.uid, owner.gid) == 0 && fchmod(fd, 0o600) == 0 && writeAll(fd: fd, encode(env))
        let e = lastErrno()
        closeFD(fd)
        if !ok || renameat(directoryFD, tmp, directoryFD, name) != 0 {
            let e2 = ok ? lastErrno() : e
            _ = unlinkat(directoryFD, tmp, 0)
            throw sysError("write env file", e2)
        }
    }
}

/// Host-side file operations inside trees a box controls (its upper dir, its merged
/// root): every path is resolved with openat2 beneath a directory fd, without following
/// any symlink, so a box cannot redirect a host write to a host file.
enum SafeFS {
    /// Opens (creating missing components, each `mode`, owned by root) a directory.
    static func ensureDirectory(rootFD: Int32, path: String, mode: mode_t) throws -> Int32 {
        var current = dup(rootFD)
        if current < 0 { throw sysError("dup") }
        for comp in path.split(separator: "/") where !comp.isEmpty {
            let name = String(comp)
            var next = dbx_open_beneath(current, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            if next < 0 && lastErrno() == ENOENT {
                if mkdirat(current, name, mode) != 0 && lastErrno() != EEXIST {
                    let e = lastErrno(); closeFD(current); throw sysError("mkdir \(path)", e)
                }
                next = dbx_open_beneath(current, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
                if next >= 0 { _ = fchmod(next, mode) }
            }
            if next < 0 { let e = lastErrno(); closeFD(current); throw sysError("open \(path)", e) }
            closeFD(current)
            current = next
        }
        return current
    }

    static func openDirectory(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw sysError("open \(path)") }
        return fd
    }
}
