import Crypto

/// Opaque bearer tokens handed to providers: `dbx_pt_` followed by 32 random bytes in
/// base64url without padding (43 characters). Only their SHA-256 is stored.
public enum ProviderToken {
    public static let prefix = "dbx_pt_"

    /// A new token. Show it once; store only `hash(_:)` of it.
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        return prefix + Base64URL.encode(bytes, padded: false)
    }

    /// Lowercase hex SHA-256 of the token's UTF-8 bytes (64 characters).
    public static func hash(_ token: String) -> String {
        Hex.encode(SHA256.hash(data: Array(token.utf8)))
    }

    /// Whether `token` hashes to `storedHash`, compared in constant time.
    public static func matches(_ token: String, storedHash: String) -> Bool {
        ConstantTime.equals(hash(token), storedHash)
    }
}
