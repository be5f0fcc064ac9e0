import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the encryption keys could not be loaded. Descriptions are one line and never contain
/// key material.
public enum FernetKeyRingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `origin` (the variable name or the key file path) holds no key at all.
    case noKeys(origin: String)
    /// Key number `position` (1-based) of `count` in `origin` is not a valid Fernet key.
    case malformedKey(origin: String, position: Int, count: Int, problem: FernetKeyError)
    /// The key file grants permissions to group or others (`mode` is the permission bits).
    case insecureKeyFile(path: String, mode: UInt32)
    /// The key file path exists but is not a regular file.
    case notARegularFile(path: String)
    /// A system call on the key file failed.
    case keyFileIO(path: String, operation: String, errno: Int32)

    public var description: String {
        let format = "urlsafe base64 of 32 bytes, as Python's Fernet.generate_key()"
        switch self {
        case .noKeys(let origin):
            return "\(origin) contains no encryption key; expected one or more comma-separated keys, each \(format)"
        case .malformedKey(let origin, let position, let count, let problem):
            let what: String
            switch problem {
            case .notBase64: what = "is not urlsafe base64"
            case .wrongLength(0): what = "is empty"
            case .wrongLength(let n): what = "decodes to \(n) bytes instead of 32"
            }
            return "\(origin): key \(position) of \(count) \(what); each comma-separated key must be \(format)"
        case .insecureKeyFile(let path, let mode):
            return "refusing to use encryption key file \(path): its mode \(Self.octal(mode)) lets group/others access it; run: chmod 600 \(path)"
        case .notARegularFile(let path):
            return "encryption key file \(path) is not a regular file"
        case .keyFileIO(let path, let operation, let code):
            return "cannot \(operation) encryption key file \(path): \(String(cString: strerror(code)))"
        }
    }

    private static func octal(_ mode: UInt32) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// The server's Fernet keys: the first encrypts, every key decrypts (like Python's
/// `MultiFernet`). Rotating means putting a new key first and re-encrypting stored tokens
/// for which `needsReencryption(_:)` is true.
public struct FernetKeyRing: Sendable {
    /// Where the keys came from, for a startup log line.
    public enum Source: Sendable, Equatable {
        case explicit
        case environment
        case keyFile(path: String)
        /// The key file did not exist and was created with a new key.
        case createdKeyFile(path: String)
    }

    public static let environmentVariable = "DEVBOX_ENCRYPTION_KEY"
    public static let keyFileName = "encryption.key"

    /// All keys, the encrypting one first. Never empty.
    public let keys: [FernetKey]
    public let source: Source

    /// The key that encrypts.
    public var primary: FernetKey { keys[0] }

    public init(primary: FernetKey, previous: [FernetKey] = []) {
        self.keys = [primary] + previous
        self.source = .explicit
    }

    /// Parses one or more comma-separated keys (each whitespace-trimmed), as found in
    /// `DEVBOX_ENCRYPTION_KEY`. `origin` names the source in error messages.
    /// - Throws: `FernetKeyRingError.noKeys` or `.malformedKey`.
    public init(parsing list: String, origin: String = FernetKeyRing.environmentVariable) throws {
        try self.init(parsing: list, origin: origin, source: .explicit)
    }

    private init(parsing list: String, origin: String, source: Source) throws {
        let entries = list.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        if entries.allSatisfy(\.isEmpty) {
            throw FernetKeyRingError.noKeys(origin: origin)
        }
        var keys: [FernetKey] = []
        for (index, entry) in entries.enumerated() {
            do {
                keys.append(try FernetKey(base64: entry))
            } catch let problem as FernetKeyError {
                throw FernetKeyRingError.malformedKey(
                    origin: origin, position: index + 1, count: entries.count, problem: problem)
            }
        }
        self.keys = keys
        self.source = source
    }

    /// Loads the keys from `DEVBOX_ENCRYPTION_KEY` when it is set (even if empty: that is an
    /// error, not a request for a new key). Otherwise reads `<dataDirectory>/encryption.key`,
    /// refusing it if group/others have any permission on it; if it does not exist, creates it
    /// atomically with mode 0600 and a new key. The data directory must exist.
    /// - Throws: `FernetKeyRingError`.
    public static func loadOrCreate(
        dataDirectory: URL,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> FernetKeyRing {
        if let value = environment[environmentVariable] {
            return try FernetKeyRing(parsing: value, origin: environmentVariable, source: .environment)
        }
        let path = dataDirectory.appendingPathComponent(keyFileName).path
        if let contents = try KeyFile.load(path) {
            return try FernetKeyRing(parsing: contents, origin: path, source: .keyFile(path: path))
        }
        let key = FernetKey.generate()
        if try KeyFile.create(path, contents: key.base64 + "\n") {
            return FernetKeyRing(keys: [key], source: .createdKeyFile(path: path))
        }
        // Another process created it first: use theirs.
        guard let contents = try KeyFile.load(path) else {
            throw FernetKeyRingError.keyFileIO(path: path, operation: "read", errno: ENOENT)
        }
        return try FernetKeyRing(parsing: contents, origin: path, source: .keyFile(path: path))
    }

    private init(keys: [FernetKey], source: Source) {
        self.keys = keys
        self.source = source
    }

    /// Encrypts with the primary key.
    public func encrypt(_ bytes: [UInt8], now: Date = .now) -> String {
        primary.encrypt(bytes, now: now)
    }

    /// Decrypts with whichever key signed the token.
    /// - Throws: `FernetError` (`.invalidSignature` when no key signed it).
    public func decrypt(_ token: String, ttl: TimeInterval? = nil, now: Date = .now) throws -> [UInt8] {
        try decryptWithIndex(token, ttl: ttl, now: now).plaintext
    }

    /// Whether the token was made with a key other than the primary one, and so should be
    /// re-encrypted (see `reencrypt(_:)`) before the old key is dropped.
    /// - Throws: `FernetError` when no key can decrypt it.
    public func needsReencryption(_ token: String) throws -> Bool {
        try decryptWithIndex(token, ttl: nil, now: .now).index != 0
    }

    /// The token re-encrypted with the primary key, keeping its original timestamp (as Python's
    /// `MultiFernet.rotate`).
    /// - Throws: `FernetError` when no key can decrypt it.
    public func reencrypt(_ token: String) throws -> String {
        let plaintext = try decrypt(token)
        return primary.encrypt(plaintext, timestamp: try FernetKey.unverifiedTimestamp(of: token))
    }

    private func decryptWithIndex(_ token: String, ttl: TimeInterval?, now: Date) throws -> (plaintext: [UInt8], index: Int) {
        for (index, key) in keys.enumerated() {
            do {
                return (try key.decrypt(token, ttl: ttl, now: now), index)
            } catch FernetError.invalidSignature {
                continue
            }
            // Any other error means the token is malformed (the same for every key) or that
            // this key signed it but it is expired or undecryptable: stop there.
        }
        throw FernetError.invalidSignature
    }
}

/// The key file, with plain system calls so that permissions are exact.
enum KeyFile {
    static let maximumSize = 64 * 1024

    /// The file's contents, or nil if it does not exist. Refuses files that group/others can
    /// access, judged on the opened file (symlinks are followed; the target must be private).
    static func load(_ path: String) throws -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return nil }
            throw FernetKeyRingError.keyFileIO(path: path, operation: "open", errno: code)
        }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FernetKeyRingError.keyFileIO(path: path, operation: "stat", errno: errno)
        }
        guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
            throw FernetKeyRingError.notARegularFile(path: path)
        }
        guard info.st_mode & 0o077 == 0 else {
            throw FernetKeyRingError.insecureKeyFile(path: path, mode: UInt32(info.st_mode) & 0o7777)
        }

        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while contents.count <= maximumSize {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FernetKeyRingError.keyFileIO(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            contents.append(contentsOf: buffer[0..<n])
        }
        guard contents.count <= maximumSize else {
            throw FernetKeyRingError.keyFileIO(path: path, operation: "read", errno: EFBIG)
        }
        return String(decoding: contents, as: UTF8.self)
    }

    /// Creates `path` holding `contents`, mode 0600, without ever exposing a partial file:
    /// the content goes to a fresh temporary file (O_CREAT|O_EXCL, mode fixed before writing)
    /// that is then hard-linked to `path`, which fails if `path` exists. Returns false if
    /// `path` already existed. Falls back to O_EXCL on `path` itself where hard links are
    /// unsupported.
    static func create(_ path: String, contents: String) throws -> Bool {
        let directory = (path as NSString).deletingLastPathComponent
        var rng = SystemRandomNumberGenerator()
        let temporary = directory + "/.\(FernetKeyRing.keyFileName).\(Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) })).tmp"

        try writeExclusive(temporary, reportedPath: path, contents: contents)
        defer { unlink(temporary) }

        if link(temporary, path) == 0 {
            syncDirectory(directory)
            return true
        }
        let code = errno
        switch code {
        case EEXIST:
            return false
        case EPERM, EOPNOTSUPP, EXDEV, EMLINK:
            // No hard links here (e.g. some FUSE or network filesystems).
            do {
                try writeExclusive(path, reportedPath: path, contents: contents)
            } catch FernetKeyRingError.keyFileIO(_, _, EEXIST) {
                return false
            }
            syncDirectory(directory)
            return true
        default:
            throw FernetKeyRingError.keyFileIO(path: path, operation: "create", errno: code)
        }
    }

    private static func writeExclusive(_ path: String, reportedPath: String, contents: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600))
        guard fd >= 0 else {
            throw FernetKeyRingError.keyFileIO(path: reportedPath, operation: "create", errno: errno)
        }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(path) }
        }
        // The umask can only remove bits, but be explicit, and before any content exists.
        guard fchmod(fd, 0o600) == 0 else {
            throw FernetKeyRingError.keyFileIO(path: reportedPath, operation: "chmod", errno: errno)
        }
        var bytes = ArraySlice(Array(contents.utf8))
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FernetKeyRingError.keyFileIO(path: reportedPath, operation: "write", errno: errno)
            }
            bytes = bytes.dropFirst(n)
        }
        guard fsync(fd) == 0 else {
            throw FernetKeyRingError.keyFileIO(path: reportedPath, operation: "sync", errno: errno)
        }
        ok = true
    }

    private static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
