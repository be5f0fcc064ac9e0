import DevboxSecurity
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct FernetKeyRingTests {
    static let k1 = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
    static let k2 = FernetKey.generate().base64
    static let k3 = FernetKey.generate().base64
    static let format = "urlsafe base64 of 32 bytes, as Python's Fernet.generate_key()"

    // MARK: parsing

    @Test func firstKeyEncryptsAllKeysDecrypt() throws {
        let ring = try FernetKeyRing(parsing: " \(Self.k1) ,\n\(Self.k2),\t\(Self.k3)  ")
        #expect(ring.keys.map(\.base64) == [Self.k1, Self.k2, Self.k3])

        let token = ring.encrypt([1, 2, 3])
        #expect(try FernetKey(base64: Self.k1).decrypt(token) == [1, 2, 3])
        #expect(throws: FernetError.invalidSignature) { try FernetKey(base64: Self.k2).decrypt(token) }

        for old in [Self.k2, Self.k3] {
            let oldToken = try FernetKey(base64: old).encrypt([4, 5])
            #expect(try ring.decrypt(oldToken) == [4, 5])
        }
        #expect(throws: FernetError.invalidSignature) { try ring.decrypt(FernetKey.generate().encrypt([6])) }
    }

    @Test func decryptReportsTheSigningKeysVerdict() throws {
        let ring = try FernetKeyRing(parsing: "\(Self.k1),\(Self.k2)")
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        let oldToken = try FernetKey(base64: Self.k2).encrypt([1], now: t0)
        #expect(throws: FernetError.expired) { try ring.decrypt(oldToken, ttl: 10, now: t0.addingTimeInterval(11)) }
        #expect(try ring.decrypt(oldToken, ttl: 10, now: t0.addingTimeInterval(10)) == [1])
        #expect(throws: FernetError.malformedToken) { try ring.decrypt("not a token") }
    }

    @Test func malformedKeyIsNamedByPositionWithoutMaterial() throws {
        let shortKey = "AAAAAAAAAAAAAAAAAAAAAA=="
        let list = "\(Self.k1), \(shortKey) ,\(Self.k3)"
        #expect(throws: FernetKeyRingError.malformedKey(
            origin: "DEVBOX_ENCRYPTION_KEY", position: 2, count: 3, problem: .wrongLength(byteCount: 16))
        ) { try FernetKeyRing(parsing: list) }

        let message = Self.message { try FernetKeyRing(parsing: list) }
        #expect(message == "DEVBOX_ENCRYPTION_KEY: key 2 of 3 decodes to 16 bytes instead of 32; each comma-separated key must be \(Self.format)")
        for material in [Self.k1, shortKey, Self.k3, "AAAA"] {
            #expect(!message.contains(material))
        }
    }

    @Test func otherMalformations() throws {
        let notBase64 = Self.message { try FernetKeyRing(parsing: "\(Self.k1),\(Self.k2.replacingOccurrences(of: "=", with: ""))") }
        #expect(notBase64 == "DEVBOX_ENCRYPTION_KEY: key 2 of 2 is not urlsafe base64; each comma-separated key must be \(Self.format)")

        let empty = Self.message { try FernetKeyRing(parsing: "\(Self.k1),,\(Self.k2)") }
        #expect(empty == "DEVBOX_ENCRYPTION_KEY: key 2 of 3 is empty; each comma-separated key must be \(Self.format)")

        let trailingComma = Self.message { try FernetKeyRing(parsing: "\(Self.k1),") }
        #expect(trailingComma.hasPrefix("DEVBOX_ENCRYPTION_KEY: key 2 of 2 is empty;"))

        for blank in ["", "  ", " , \n"] {
            #expect(throws: FernetKeyRingError.noKeys(origin: "DEVBOX_ENCRYPTION_KEY")) { try FernetKeyRing(parsing: blank) }
        }
        #expect(Self.message { try FernetKeyRing(parsing: "") }
            == "DEVBOX_ENCRYPTION_KEY contains no encryption key; expected one or more comma-separated keys, each \(Self.format)")
    }

    // MARK: rotation

    @Test func needsReencryptionAndReencrypt() throws {
        let ring = try FernetKeyRing(parsing: "\(Self.k1),\(Self.k2)")
        let t0 = Date(timeIntervalSince1970: 1_650_000_000)
        let current = ring.encrypt([1], now: t0)
        let old = try FernetKey(base64: Self.k2).encrypt([2, 2], now: t0)

        #expect(try ring.needsReencryption(current) == false)
        #expect(try ring.needsReencryption(old) == true)
        #expect(throws: FernetError.invalidSignature) { try ring.needsReencryption(FernetKey.generate().encrypt([3])) }
        #expect(throws: FernetError.malformedToken) { try ring.needsReencryption("garbage") }

        let rotated = try ring.reencrypt(old)
        #expect(try ring.needsReencryption(rotated) == false)
        #expect(try FernetKey(base64: Self.k1).decrypt(rotated) == [2, 2])
        // The original timestamp is kept, as Python's MultiFernet.rotate does.
        let raw = try #require(TestSupport.base64urlDecode(rotated))
        #expect(raw[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } == 1_650_000_000)

        // After dropping the old key, the rotated token still decrypts.
        let newRing = try FernetKeyRing(parsing: Self.k1)
        #expect(try newRing.decrypt(rotated) == [2, 2])
        #expect(throws: FernetError.invalidSignature) { try newRing.decrypt(old) }
    }

    // MARK: loadOrCreate

    @Test func environmentWinsAndCreatesNothing() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let ring = try FernetKeyRing.loadOrCreate(
            dataDirectory: dir, environment: ["DEVBOX_ENCRYPTION_KEY": "\(Self.k2), \(Self.k1)"])
        #expect(ring.source == .environment)
        #expect(ring.keys.map(\.base64) == [Self.k2, Self.k1])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func emptyEnvironmentVariableIsAnError() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        #expect(throws: FernetKeyRingError.noKeys(origin: "DEVBOX_ENCRYPTION_KEY")) {
            try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: ["DEVBOX_ENCRYPTION_KEY": ""])
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func createsPrivateKeyFileThenReusesIt() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let path = dir.appendingPathComponent("encryption.key").path

        // A permissive umask must not leak into the file's mode.
        let oldMask = umask(0)
        defer { umask(oldMask) }

        let created = try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        #expect(created.source == .createdKeyFile(path: path))
        #expect(created.keys.count == 1)

        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o600)
        let contents = try String(contentsOfFile: path, encoding: .utf8)
        #expect(contents == created.primary.base64 + "\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["encryption.key"])

        let loaded = try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        #expect(loaded.source == .keyFile(path: path))
        #expect(try loaded.decrypt(created.encrypt([7, 7])) == [7, 7])
    }

    @Test func concurrentCreatorsAgreeOnOneKey() async throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let keys = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<8 {
                group.addTask { try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:]).primary.base64 }
            }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(keys.count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["encryption.key"])
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o620, 0o660])
    func refusesKeyFileOpenToGroupOrOthers(mode: Int) throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let path = dir.appendingPathComponent("encryption.key").path
        try (Self.k1 + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        #expect(chmod(path, mode_t(mode)) == 0)

        #expect(throws: FernetKeyRingError.insecureKeyFile(path: path, mode: UInt32(mode))) {
            try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        }
        let message = Self.message { try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:]) }
        #expect(message.contains(path))
        #expect(message.contains("0" + String(mode, radix: 8)))
        #expect(message.contains("chmod 600"))
        #expect(!message.contains(Self.k1))
    }

    @Test func readsMultipleKeysFromFileAndNamesTheFileInErrors() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let path = dir.appendingPathComponent("encryption.key").path
        try "\(Self.k3),\(Self.k1)\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(chmod(path, 0o600) == 0)
        let ring = try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        #expect(ring.keys.map(\.base64) == [Self.k3, Self.k1])

        try "\(Self.k3),oops!\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: FernetKeyRingError.malformedKey(origin: path, position: 2, count: 2, problem: .notBase64)) {
            try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        }
        try "\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: FernetKeyRingError.noKeys(origin: path)) {
            try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        }
    }

    @Test func missingDataDirectoryIsAClearError() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        TestSupport.removeDirectory(dir)
        let path = dir.appendingPathComponent("encryption.key").path
        #expect(throws: FernetKeyRingError.keyFileIO(path: path, operation: "create", errno: ENOENT)) {
            try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        }
        #expect(Self.message { try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:]) }
            == "cannot create encryption key file \(path): No such file or directory")
    }

    @Test func keyFileMustBeARegularFile() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let path = dir.appendingPathComponent("encryption.key").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        #expect(throws: FernetKeyRingError.notARegularFile(path: path)) {
            try FernetKeyRing.loadOrCreate(dataDirectory: dir, environment: [:])
        }
    }

    /// The description of the error thrown by `body`, which must be a single line.
    static func message(_ body: () throws -> Any) -> String {
        do {
            _ = try body()
            Issue.record("no error thrown")
            return ""
        } catch {
            let text = String(describing: error)
            #expect(!text.contains("\n"))
            return text
        }
    }
}
