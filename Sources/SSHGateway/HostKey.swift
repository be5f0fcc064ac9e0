import Crypto
import Foundation
import NIOSSH
#if canImport(Glibc)
import Glibc
#endif

/// The gateway's persistent ed25519 host key, kept in OpenSSH's own private key format
/// (`ssh-keygen -l -f` reads it; an operator may also put a key made by `ssh-keygen` there).
enum HostKeyStore {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Loads `path`, or creates it once (0600) if it does not exist. Concurrent starters
    /// agree on one key: the file appears under its name only complete, via link(2),
    /// which never replaces an existing file. Writes `<path>.pub` next to it.
    static func loadOrCreate(path: String, warn: (String) -> Void) throws -> Curve25519.Signing.PrivateKey {
        let key: Curve25519.Signing.PrivateKey
        if let existing = try read(path: path, warn: warn) {
            key = existing
        } else {
            let fresh = Curve25519.Signing.PrivateKey()
            if try publish(path: path, contents: encode(fresh)) {
                key = fresh
            } else if let theirs = try read(path: path, warn: warn) {
                key = theirs  // another process created it between our read and our link
            } else {
                throw Failure(description: "host key \(path) vanished while being created")
            }
        }
        writePublicKey(path: path + ".pub", key: key)
        return key
    }

    // MARK: files

    /// nil when the file does not exist.
    static func read(path: String, warn: (String) -> Void) throws -> Curve25519.Signing.PrivateKey? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Failure(description: "cannot open host key \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw Failure(description: "host key \(path) is not a regular file")
        }
        if st.st_mode & 0o077 != 0 {
            warn("host key \(path) was readable by others; its mode is now 0600")
            _ = fchmod(fd, 0o600)
        }
        guard st.st_size > 0, st.st_size < 16 * 1024 else { throw Failure(description: "host key \(path) has an implausible size") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "cannot read host key \(path)") }
            got += n
        }
        guard let key = decode(String(decoding: bytes, as: UTF8.self)) else {
            throw Failure(description: "host key \(path) is not an unencrypted OpenSSH ed25519 private key")
        }
        return key
    }

    /// Writes a temporary file, then links it to `path`. false when `path` already existed.
    static func publish(path: String, contents: String) throws -> Bool {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw Failure(description: "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        defer { unlink(tmp) }
        let bytes = Array(contents.utf8)
        var done = 0
        var ok = true
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { ok = false; break }
            done += n
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok else { throw Failure(description: "cannot write host key \(tmp)") }
        if link(tmp, path) != 0 {
            if errno == EEXIST { return false }
            throw Failure(description: "cannot create host key \(path): \(String(cString: strerror(errno)))")
        }
        let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
        return true
    }

    /// Best effort: the `.pub` file is a convenience for operators (fingerprints).
    static func writePublicKey(path: String, key: Curve25519.Signing.PrivateKey) {
        let line = String(openSSHPublicKey: NIOSSHPrivateKey(ed25519Key: key).publicKey) + " devbox-ssh-gateway\n"
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let bytes = Array(line.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if n == bytes.count { _ = rename(tmp, path) } else { unlink(tmp) }
    }

    // MARK: OpenSSH private key format (PROTOCOL.key), unencrypted, one ed25519 key

    static let magic = Array("openssh-key-v1".utf8) + [0]
    static let keyType = Array("ssh-ed25519".utf8)

    static func encode(_ key: Curve25519.Signing.PrivateKey) -> String {
        let pub = [UInt8](key.publicKey.rawRepresentation)
        let seed = [UInt8](key.rawRepresentation)
        var pubBlob: [UInt8] = []
        putString(&pubBlob, keyType)
        putString(&pubBlob, pub)
        var priv: [UInt8] = []
        let check = UInt32.random(in: 0...UInt32.max)
        putUInt32(&priv, check)
        putUInt32(&priv, check)
        putString(&priv, keyType)
        putString(&priv, pub)
        putString(&priv, seed + pub)
        putString(&priv, Array("devbox-ssh-gateway".utf8))
        var pad: UInt8 = 1
        while priv.count % 8 != 0 {
            priv.append(pad)
            pad += 1
        }
        var out = magic
        putString(&out, Array("none".utf8))
        putString(&out, Array("none".utf8))
        putString(&out, [])
        putUInt32(&out, 1)
        putString(&out, pubBlob)
        putString(&out, priv)
        let b64 = Data(out).base64EncodedString()
        var lines: [Substring] = []
        var rest = Substring(b64)
        while !rest.isEmpty {
            lines.append(rest.prefix(70))
            rest = rest.dropFirst(70)
        }
        return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + lines.joined(separator: "\n")
            + "\n-----END OPENSSH PRIVATE KEY-----\n"
    }

    static func decode(_ text: String) -> Curve25519.Signing.PrivateKey? {
        let body = text.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("-----") }.joined()
        guard text.contains("-----BEGIN OPENSSH PRIVATE KEY-----"), let data = Data(base64Encoded: body) else { return nil }
        var r = Reader(bytes: [UInt8](data))
        guard r.take(magic.count) == magic, r.string() == Array("none".utf8), r.string() == Array("none".utf8),
            r.string() != nil, r.uint32() == 1, let pubBlob = r.string(), var p = r.string().map({ Reader(bytes: $0) })
        else { return nil }
        var pb = Reader(bytes: pubBlob)
        guard pb.string() == keyType, let pub = pb.string(), pub.count == 32,
            let c1 = p.uint32(), let c2 = p.uint32(), c1 == c2,
            p.string() == keyType, p.string() == pub, let secret = p.string(), secret.count == 64,
            Array(secret[32...]) == pub,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: secret[0..<32]),
            [UInt8](key.publicKey.rawRepresentation) == pub
        else { return nil }
        return key
    }

    static func putUInt32(_ out: inout [UInt8], _ v: UInt32) {
        out += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
    }

    static func putString(_ out: inout [UInt8], _ s: [UInt8]) {
        putUInt32(&out, UInt32(s.count))
        out += s
    }

    struct Reader {
        var bytes: [UInt8]
        var at = 0

        mutating func take(_ n: Int) -> [UInt8]? {
            guard n >= 0, bytes.count - at >= n else { return nil }
            defer { at += n }
            return Array(bytes[at..<at + n])
        }

        mutating func uint32() -> UInt32? {
            guard let b = take(4) else { return nil }
            return b.reduce(0) { $0 << 8 | UInt32($1) }
        }

        mutating func string() -> [UInt8]? {
            guard let n = uint32(), n < 1 << 20 else { return nil }
            return take(Int(n))
        }
    }
}
