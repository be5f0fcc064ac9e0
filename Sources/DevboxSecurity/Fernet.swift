import Crypto
import _CryptoExtras
import Foundation

/// Why a Fernet key could not be parsed. Never carries key material.
public enum FernetKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not URL-safe base64 with `=` padding (wrong alphabet, whitespace, missing padding…).
    case notBase64
    /// Valid base64, but not 32 bytes once decoded.
    case wrongLength(byteCount: Int)

    /// The expected format, as shown to operators.
    public static let expectedFormat = "urlsafe base64 of 32 bytes, as Python's Fernet.generate_key()"

    public var description: String {
        switch self {
        case .notBase64:
            "invalid Fernet key: not valid urlsafe base64 (expected \(Self.expectedFormat))"
        case .wrongLength(let count):
            "invalid Fernet key: decodes to \(count) bytes (expected \(Self.expectedFormat))"
        }
    }
}

/// Why a Fernet token was rejected. Never carries token or key material.
public enum FernetError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not urlsafe base64, wrong version byte, or impossible length.
    case malformedToken
    /// The HMAC does not match: the token was made with another key, or was altered.
    case invalidSignature
    /// Authentic, but older than the `ttl` given to `decrypt`.
    case expired
    /// Authentic, but stamped more than `FernetKey.maxClockSkew` seconds in the future
    /// (only checked when a `ttl` is given, as Python does).
    case timestampInFuture
    /// Authentic, but the ciphertext does not decrypt to valid PKCS#7 padding
    /// (the producer used a different encryption key or a broken implementation).
    case decryptionFailed

    public var description: String {
        switch self {
        case .malformedToken: "invalid Fernet token: malformed"
        case .invalidSignature: "invalid Fernet token: signature mismatch (wrong key or altered token)"
        case .expired: "invalid Fernet token: expired"
        case .timestampInFuture: "invalid Fernet token: timestamp too far in the future"
        case .decryptionFailed: "invalid Fernet token: decryption failed"
        }
    }
}

/// A Fernet key: 16 bytes of HMAC-SHA256 signing key followed by 16 bytes of AES-128 key,
/// compatible with Python's `cryptography.fernet`.
///
/// Token layout: `0x80 ‖ timestamp (UInt64 BE) ‖ IV (16) ‖ AES-128-CBC/PKCS7 ciphertext ‖
/// HMAC-SHA256 (32)`, the whole urlsafe-base64 encoded with padding.
public struct FernetKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// How far in the future a token's timestamp may be when a `ttl` is checked (Python's `_MAX_CLOCK_SKEW`).
    public static let maxClockSkew: TimeInterval = 60

    static let version: UInt8 = 0x80
    static let headerLength = 1 + 8 + 16
    static let macLength = 32
    static let blockSize = 16

    let signingKey: SymmetricKey
    let encryptionKey: SymmetricKey

    /// Parses a key in the format of Python's `Fernet.generate_key()`: urlsafe base64 (with `=`
    /// padding) of 32 bytes. Stricter than Python: the standard alphabet (`+`, `/`) and
    /// surrounding whitespace are rejected.
    /// - Throws: `FernetKeyError`.
    public init(base64: String) throws {
        guard let bytes = Base64URL.decode(base64, padded: true) else {
            throw FernetKeyError.notBase64
        }
        try self.init(bytes: bytes)
    }

    /// A key from its 32 raw bytes.
    /// - Throws: `FernetKeyError.wrongLength`.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else {
            throw FernetKeyError.wrongLength(byteCount: bytes.count)
        }
        self.signingKey = SymmetricKey(data: bytes[0..<16])
        self.encryptionKey = SymmetricKey(data: bytes[16..<32])
    }

    /// A new random key.
    public static func generate() -> FernetKey {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        do {
            return try FernetKey(bytes: bytes)
        } catch {
            preconditionFailure("32 bytes always make a Fernet key")
        }
    }

    /// The key in Python's format (urlsafe base64 with padding, 44 characters). This is secret.
    public var base64: String {
        let bytes = signingKey.withUnsafeBytes { Array($0) } + encryptionKey.withUnsafeBytes { Array($0) }
        return Base64URL.encode(bytes, padded: true)
    }

    /// Redacted: a key never prints its material.
    public var description: String { "FernetKey(redacted)" }
    public var debugDescription: String { description }

    /// Encrypts `bytes` into a Fernet token stamped with `now` (whole seconds, as Python).
    /// - Parameter iv: 16 bytes; random when nil. Only pass one in tests.
    public func encrypt(_ bytes: [UInt8], now: Date = .now, iv: [UInt8]? = nil) -> String {
        encrypt(bytes, timestamp: Self.timestamp(for: now), iv: iv)
    }

    /// Decrypts a Fernet token, with Python's rules: when `ttl` is given, the token must be no
    /// older than `ttl` seconds and no more than `maxClockSkew` seconds in the future; without
    /// `ttl` the timestamp is not checked.
    /// - Throws: `FernetError`.
    public func decrypt(_ token: String, ttl: TimeInterval? = nil, now: Date = .now) throws -> [UInt8] {
        let data = try Self.decode(token)
        try verifySignature(data)
        if let ttl {
            let current = Double(Self.timestamp(for: now))
            let issued = Double(Self.timestamp(of: data))
            // Written so that a NaN ttl fails closed.
            guard issued + ttl >= current else { throw FernetError.expired }
            guard current + Self.maxClockSkew >= issued else { throw FernetError.timestampInFuture }
        }
        let iv: AES._CBC.IV
        do {
            iv = try AES._CBC.IV(ivBytes: data[9..<25])
        } catch {
            throw FernetError.malformedToken
        }
        do {
            let plaintext = try AES._CBC.decrypt(data[25..<(data.count - Self.macLength)], using: encryptionKey, iv: iv)
            return Array(plaintext)
        } catch {
            throw FernetError.decryptionFailed
        }
    }

    // MARK: - Internals

    /// The token's timestamp, without any verification.
    static func unverifiedTimestamp(of token: String) throws -> UInt64 {
        timestamp(of: try decode(token))
    }

    /// Decodes and checks the shape of a token: version byte, and room for header, at least one
    /// cipher block, and the MAC.
    static func decode(_ token: String) throws -> [UInt8] {
        guard let data = Base64URL.decode(token, padded: true),
            data.first == version,
            data.count >= headerLength + blockSize + macLength,
            (data.count - headerLength - macLength) % blockSize == 0
        else {
            throw FernetError.malformedToken
        }
        return data
    }

    private func verifySignature(_ data: [UInt8]) throws {
        let signed = data[..<(data.count - Self.macLength)]
        let expected = HMAC<SHA256>.authenticationCode(for: signed, using: signingKey)
        guard ConstantTime.equals(Array(expected), data[(data.count - Self.macLength)...]) else {
            throw FernetError.invalidSignature
        }
    }

    static func timestamp(of data: [UInt8]) -> UInt64 {
        data[1..<9].reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Whole seconds since 1970, as Python's `int(time.time())`; clamped to UInt64.
    static func timestamp(for date: Date) -> UInt64 {
        let seconds = date.timeIntervalSince1970.rounded(.towardZero)
        guard seconds > 0 else { return 0 }
        guard seconds < 0x1p64 else { return .max }
        return UInt64(seconds)
    }

    /// `encrypt` with an explicit timestamp (re-encryption keeps the original one, as Python's
    /// `MultiFernet.rotate`).
    func encrypt(_ bytes: [UInt8], timestamp: UInt64, iv: [UInt8]? = nil) -> String {
        let cbcIV: AES._CBC.IV
        let ciphertext: Data
        do {
            if let iv {
                precondition(iv.count == 16, "a Fernet IV is 16 bytes")
                cbcIV = try AES._CBC.IV(ivBytes: iv)
            } else {
                cbcIV = AES._CBC.IV()
            }
            ciphertext = try AES._CBC.encrypt(bytes, using: encryptionKey, iv: cbcIV)
        } catch {
            preconditionFailure("AES-128-CBC with a 16-byte key and IV cannot fail")
        }

        var token: [UInt8] = [Self.version]
        token.reserveCapacity(Self.headerLength + ciphertext.count + Self.macLength)
        withUnsafeBytes(of: timestamp.bigEndian) { token.append(contentsOf: $0) }
        token.append(contentsOf: cbcIV)
        token.append(contentsOf: ciphertext)
        let mac = HMAC<SHA256>.authenticationCode(for: token, using: signingKey)
        token.append(contentsOf: mac)
        return Base64URL.encode(token, padded: true)
    }
}
