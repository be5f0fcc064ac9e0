import Crypto
import Foundation

/// A user's SSH public key, parsed from an authorized_keys line and checked to be a type
/// the gateway can verify.
public struct SSHPublicKey: Sendable, Equatable {
    public var type: String
    /// The key blob (SSH wire format) — what a client presents during authentication.
    public var blob: [UInt8]
    public var comment: String?

    public static let supportedTypes = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"]
    static let howTo =
        "supported key types: ed25519 and ECDSA (P-256, P-384, P-521); make one with `ssh-keygen -t ed25519` and send the contents of ~/.ssh/id_ed25519.pub"

    /// `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it.
    public var fingerprint: String {
        let digest = SHA256.hash(data: blob)
        var b64 = Data(digest).base64EncodedString()
        while b64.hasSuffix("=") { b64.removeLast() }
        return "SHA256:" + b64
    }

    /// The normalized authorized_keys line (type, base64 blob, comment).
    public var line: String {
        ([type, Data(blob).base64EncodedString()] + (comment.map { [$0] } ?? [])).joined(separator: " ")
    }

    /// Parses one line. Every failure is a message fit for a 422.
    public static func parse(_ input: String) throws(ServiceError) -> SSHPublicKey {
        let text = input.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, !text.contains("\n") else {
            throw .validation(field: "public_key", message: "public_key must be one authorized_keys line; " + howTo)
        }
        let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true).map(String.init)
        guard parts.count >= 2 else {
            throw .validation(field: "public_key", message: "public_key is not an OpenSSH public key; " + howTo)
        }
        let type = parts[0]
        if type == "ssh-rsa" || type == "ssh-dss" || type.hasPrefix("sk-") || type.contains("-cert-") {
            throw .validation(field: "public_key", message: "\(type) keys are not supported by the SSH gateway; " + howTo)
        }
        guard supportedTypes.contains(type) else {
            throw .validation(field: "public_key", message: "public_key is not an OpenSSH public key; " + howTo)
        }
        guard let data = Data(base64Encoded: parts[1]), !data.isEmpty else {
            throw .validation(field: "public_key", message: "public_key has an invalid base64 key body; " + howTo)
        }
        let blob = [UInt8](data)
        guard Self.blobMatches(type: type, blob: blob) else {
            throw .validation(field: "public_key", message: "public_key body does not match its type \(type); " + howTo)
        }
        let comment = parts.count > 2 ? parts[2].trimmingCharacters(in: .whitespaces) : nil
        return SSHPublicKey(type: type, blob: blob, comment: comment?.isEmpty == true ? nil : comment)
    }

    /// Checks the wire structure: string type, then the key material of the right size.
    static func blobMatches(type: String, blob: [UInt8]) -> Bool {
        var r = WireReader(blob)
        guard let t = r.string(), String(decoding: t, as: UTF8.self) == type else { return false }
        if type == "ssh-ed25519" {
            guard let k = r.string(), k.count == 32 else { return false }
            return r.atEnd
        }
        let curves = ["ecdsa-sha2-nistp256": ("nistp256", 65), "ecdsa-sha2-nistp384": ("nistp384", 97), "ecdsa-sha2-nistp521": ("nistp521", 133)]
        guard let (curve, size) = curves[type], let c = r.string(), String(decoding: c, as: UTF8.self) == curve,
            let q = r.string(), q.count == size, q.first == 4
        else { return false }
        return r.atEnd
    }

    struct WireReader {
        let bytes: [UInt8]
        var i = 0
        init(_ b: [UInt8]) { bytes = b }
        var atEnd: Bool { i == bytes.count }
        mutating func string() -> ArraySlice<UInt8>? {
            guard bytes.count - i >= 4 else { return nil }
            let n = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            i += 4
            guard n >= 0, bytes.count - i >= n else { return nil }
            defer { i += n }
            return bytes[i..<(i + n)]
        }
    }
}
