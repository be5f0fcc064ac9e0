import Crypto
import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

/// `devbox backup` / `devbox restore` (docs/ARCHITECTURE.md, "Backup and restore").
///
/// A backup is one POSIX tar (ustar) file, mode 0600, holding:
/// - `MANIFEST.json`: format name and version, time, and each file's size and SHA-256;
/// - `devbox.sqlite`: a consistent copy of the database taken with SQLite's online backup
///   API (all pages in one step, under one read transaction: a snapshot, while a serve keeps
///   writing), checked with `PRAGMA integrity_check` before it is packed;
/// - `encryption.key` (when the data dir has one): it decrypts every secret in the database,
///   so the backup is as sensitive as the data directory itself;
/// - `ssh_host_ed25519_key` (when present): the SSH gateway keeps its identity.
/// The database holds secrets only as Fernet ciphertext; the boxes' files (`boxes/`) are not
/// part of a backup.
public enum DataBackup {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static let format = "devbox-backup"
    public static let version = 1
    static let databaseName = "devbox.sqlite"
    static let manifestName = "MANIFEST.json"

    /// Writes a backup of `dataDirectory` to `file` (atomically: a temporary file renamed
    /// over it). `extraFiles`: names of other files of the data dir to carry when present
    /// (the key file, the SSH host key). Answers the names packed.
    public static func backup(dataDirectory: String, to file: String, extraFiles: [String]) throws -> [String] {
        let dbPath = dataDirectory + "/" + databaseName
        guard FileManager.default.fileExists(atPath: dbPath) else {
            throw Failure("no database at \(dbPath): is \(dataDirectory) a devbox data directory?")
        }
        let outURL = URL(fileURLWithPath: file)
        let outDir = outURL.deletingLastPathComponent().path
        var template = Array((outDir + "/.devbox-backup-XXXXXX").utf8CString)
        guard let tmpDirC = mkdtemp(&template) else { throw Failure("cannot make a temporary directory in \(outDir): \(errnoText())") }
        let tmpDir = String(cString: tmpDirC)
        defer { try? FileManager.default.removeItem(atPath: tmpDir) }
        let copyPath = tmpDir + "/" + databaseName
        // The online backup API: a snapshot of the source while the serve keeps writing.
        do {
            var config = Configuration()
            config.busyMode = .timeout(10)
            let source = try DatabaseQueue(path: dbPath, configuration: config)
            let dest = try DatabaseQueue(path: copyPath)
            try source.backup(to: dest)
            let check = try dest.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            guard check == ["ok"] else { throw Failure("the copied database fails integrity_check: \(check.prefix(3))") }
            try dest.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try dest.close()
            try source.close()
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure("database backup failed: \(error)")
        }
        var files: [(String, [UInt8])] = [(databaseName, try readFile(copyPath))]
        for name in extraFiles where FileManager.default.fileExists(atPath: dataDirectory + "/" + name) {
            files.append((name, try readFile(dataDirectory + "/" + name)))
        }
        let manifest = Manifest(
            format: format, version: version, createdAt: ISO8601DateFormatter().string(from: Date()),
            files: Dictionary(uniqueKeysWithValues: files.map { ($0.0, Manifest.Entry(size: $0.1.count, sha256: sha256($0.1))) }))
        let manifestBytes = Array(try JSONEncoder.sorted.encode(manifest))
        var tar = Tar.Writer()
        tar.add(manifestName, manifestBytes)
        for (name, bytes) in files { tar.add(name, bytes) }
        let tmpOut = tmpDir + "/out.tar"
        try writeFile(tmpOut, tar.finish(), mode: 0o600)
        guard rename(tmpOut, file) == 0 else { throw Failure("cannot write \(file): \(errnoText())") }
        return [manifestName] + files.map(\.0)
    }

    /// Restores a backup into `dataDirectory`, which must be missing or empty unless `force`
    /// (then the database, its `-wal`/`-shm` and the backed-up files are replaced; the caller
    /// makes sure no serve runs there). Every file is checked against the manifest first.
    public static func restore(from file: String, into dataDirectory: String, force: Bool, allowed: Set<String>) throws -> [String] {
        let fm = FileManager.default
        if fm.fileExists(atPath: dataDirectory) {
            let entries = (try? fm.contentsOfDirectory(atPath: dataDirectory)) ?? []
            if !entries.isEmpty && !force {
                throw Failure("\(dataDirectory) is not empty (\(entries.count) entries); restore into a fresh directory, or pass --force to replace its database and keys")
            }
        }
        let entries = try Tar.read(try readFile(file))
        guard let manifestBytes = entries.first(where: { $0.name == manifestName })?.bytes,
            let manifest = try? JSONDecoder().decode(Manifest.self, from: Data(manifestBytes)),
            manifest.format == format
        else { throw Failure("\(file) is not a devbox backup (no valid \(manifestName))") }
        guard manifest.version <= version else {
            throw Failure("\(file) is a version \(manifest.version) backup; this devbox reads up to version \(version)")
        }
        let names = allowed.union([databaseName])
        var payload: [(String, [UInt8])] = []
        for e in entries where e.name != manifestName {
            guard names.contains(e.name) else { throw Failure("\(file) holds an unexpected file '\(e.name)'") }
            guard let m = manifest.files[e.name], m.size == e.bytes.count, m.sha256 == sha256(e.bytes) else {
                throw Failure("\(e.name) in \(file) does not match its manifest (damaged backup)")
            }
            payload.append((e.name, e.bytes))
        }
        guard payload.contains(where: { $0.0 == databaseName }) else { throw Failure("\(file) holds no database") }
        guard Set(payload.map(\.0)) == Set(manifest.files.keys) else { throw Failure("\(file) is missing files its manifest lists") }
        try fm.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        _ = chmod(dataDirectory, 0o700)
        for suffix in ["-wal", "-shm", "-journal"] { unlink(dataDirectory + "/" + databaseName + suffix) }
        for (name, bytes) in payload {
            let tmp = dataDirectory + "/." + name + ".restore"
            try writeFile(tmp, bytes, mode: 0o600)
            guard rename(tmp, dataDirectory + "/" + name) == 0 else { throw Failure("cannot write \(name): \(errnoText())") }
        }
        // Opened once: integrity, and the migrations of this version.
        do {
            let q = try DatabaseQueue(path: dataDirectory + "/" + databaseName)
            let check = try q.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            guard check == ["ok"] else { throw Failure("the restored database fails integrity_check") }
            try q.close()
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure("the restored database cannot be opened: \(error)")
        }
        return payload.map(\.0)
    }

    struct Manifest: Codable {
        struct Entry: Codable {
            var size: Int
            var sha256: String
        }
        var format: String
        var version: Int
        var createdAt: String
        var files: [String: Entry]
        enum CodingKeys: String, CodingKey { case format, version, createdAt = "created_at", files }
    }

    static func sha256(_ b: [UInt8]) -> String {
        SHA256.hash(data: b).map { String(format: "%02x", $0) }.joined()
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func readFile(_ path: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else { throw Failure("cannot read \(path)") }
        return Array(d)
    }

    /// Creates `path` (O_EXCL, `mode` whatever the umask) and writes every byte, then fsyncs.
    static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure("cannot create \(path): \(errnoText())") }
        defer { close(fd) }
        _ = fchmod(fd, mode)
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure("cannot write \(path): \(errnoText())")
            }
            rest = rest.dropFirst(n)
        }
        guard fsync(fd) == 0 else { throw Failure("cannot sync \(path): \(errnoText())") }
    }
}

extension JSONEncoder {
    fileprivate static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return e
    }
}

/// The subset of POSIX ustar a backup needs: regular files with short names.
enum Tar {
    struct Entry {
        var name: String
        var bytes: [UInt8]
    }

    struct Writer {
        private var out: [UInt8] = []

        mutating func add(_ name: String, _ bytes: [UInt8]) {
            var h = [UInt8](repeating: 0, count: 512)
            func put(_ s: String, at offset: Int, width: Int) {
                for (i, b) in s.utf8.prefix(width).enumerated() { h[offset + i] = b }
            }
            func octal(_ v: Int, at offset: Int, width: Int) {
                let s = String(v, radix: 8)
                put(String(repeating: "0", count: max(0, width - 1 - s.count)) + s, at: offset, width: width - 1)
            }
            put(name, at: 0, width: 100)
            octal(0o600, at: 100, width: 8)
            octal(0, at: 108, width: 8)
            octal(0, at: 116, width: 8)
            octal(bytes.count, at: 124, width: 12)
            octal(Int(Date().timeIntervalSince1970), at: 136, width: 12)
            put("        ", at: 148, width: 8)
            h[156] = UInt8(ascii: "0")
            put("ustar", at: 257, width: 6)
            put("00", at: 263, width: 2)
            put("root", at: 265, width: 32)
            put("root", at: 297, width: 32)
            let sum = h.reduce(0) { $0 + Int($1) }
            let s = String(sum, radix: 8)
            put(String(repeating: "0", count: max(0, 6 - s.count)) + s, at: 148, width: 6)
            h[154] = 0
            h[155] = UInt8(ascii: " ")
            out += h
            out += bytes
            let pad = (512 - bytes.count % 512) % 512
            out += [UInt8](repeating: 0, count: pad)
        }

        mutating func finish() -> [UInt8] {
            out += [UInt8](repeating: 0, count: 1024)
            return out
        }
    }

    static func read(_ data: [UInt8]) throws -> [Entry] {
        var entries: [Entry] = []
        var at = 0
        func field(_ h: ArraySlice<UInt8>, _ offset: Int, _ width: Int) -> String {
            let start = h.startIndex + offset
            let bytes = h[start..<(start + width)].prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
        while at + 512 <= data.count {
            let h = data[at..<(at + 512)]
            if h.allSatisfy({ $0 == 0 }) { return entries }
            let name = field(h, 0, 100)
            guard let size = Int(field(h, 124, 12), radix: 8), size >= 0,
                let sum = Int(field(h, 148, 8), radix: 8)
            else { throw DataBackup.Failure("not a tar file (bad header at byte \(at))") }
            var check = 0
            for (i, b) in h.enumerated() { check += (148..<156).contains(i) ? 32 : Int(b) }
            guard check == sum else { throw DataBackup.Failure("not a tar file (bad checksum at byte \(at))") }
            let type = h[h.startIndex + 156]
            guard type == UInt8(ascii: "0") || type == 0 else {
                throw DataBackup.Failure("unexpected tar entry type for '\(name)'")
            }
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                throw DataBackup.Failure("unexpected name '\(name)' in the backup")
            }
            let start = at + 512
            guard start + size <= data.count else { throw DataBackup.Failure("truncated backup ('\(name)')") }
            entries.append(Entry(name: name, bytes: Array(data[start..<(start + size)])))
            at = start + (size + 511) / 512 * 512
        }
        throw DataBackup.Failure("truncated backup (no end-of-archive marker)")
    }
}
