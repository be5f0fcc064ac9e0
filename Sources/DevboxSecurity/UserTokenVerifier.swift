import Foundation
import JWTKit

/// The identity proven by a valid user JWT.
public struct VerifiedUser: Sendable, Equatable {
    /// The token's `sub` claim (never empty).
    public let subject: String
    /// The token's `exp` claim (always present on a verified token; `nil` only when built by hand).
    /// Not part of equality: two tokens for one subject prove the same identity.
    public let expiresAt: Date?

    public init(subject: String, expiresAt: Date? = nil) {
        self.subject = subject
        self.expiresAt = expiresAt
    }

    public static func == (a: VerifiedUser, b: VerifiedUser) -> Bool { a.subject == b.subject }
}

/// Why a user JWT was rejected. Descriptions are fixed strings: they never include the token,
/// nor any value taken from it.
public enum UserTokenError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a compact JWS with a decodable JSON header and payload, or too long.
    case malformed
    /// `alg` is `none`, unsupported, not configured, or does not match the selected key
    /// (e.g. an HS256 token naming an RSA key), or the header has `crit` extensions.
    case algorithmNotAllowed
    /// `kid` names no configured JWKS key (or there is no `kid` and several keys could apply).
    case unknownKey
    case invalidSignature
    case expired
    case notYetValid
    case missingExpiration
    case missingSubject
    case wrongIssuer
    case wrongAudience

    public var description: String {
        switch self {
        case .malformed: "invalid user token: malformed"
        case .algorithmNotAllowed: "invalid user token: signing algorithm not accepted"
        case .unknownKey: "invalid user token: unknown signing key"
        case .invalidSignature: "invalid user token: bad signature"
        case .expired: "invalid user token: expired"
        case .notYetValid: "invalid user token: not yet valid"
        case .missingExpiration: "invalid user token: no exp claim"
        case .missingSubject: "invalid user token: no sub claim"
        case .wrongIssuer: "invalid user token: wrong issuer"
        case .wrongAudience: "invalid user token: wrong audience"
        }
    }
}

/// A verifier configuration that cannot work. Never includes the secret.
public enum UserTokenVerifierConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case noKeysConfigured
    case secretTooShort(byteCount: Int)
    case invalidJWKS(reason: String)

    public var description: String {
        switch self {
        case .noKeysConfigured:
            "user token verification needs an HS256 secret, a JWKS document, or both"
        case .secretTooShort(let count):
            "the HS256 secret is \(count) bytes; it must be at least \(UserTokenVerifier.minimumSecretLength) bytes"
        case .invalidJWKS(let reason):
            "invalid JWKS document: \(reason)"
        }
    }
}

/// Verifies users' bearer JWTs: HS256 with a shared secret, and/or RS256 and ES256 (P-256)
/// with public keys from a JWKS document, selected by `kid`.
///
/// Requires `exp` and a non-empty `sub`; honours `nbf`; allows `clockSkewLeeway` seconds of
/// clock difference on both. `iss`/`aud` are checked only when `issuer`/`audience` are given.
/// The header's `alg` must be exactly one of the configured algorithms and match the key's
/// type, so `none` and key confusion (an HS256 token keyed with an RSA public key) are refused
/// before any cryptography runs.
public struct UserTokenVerifier: Sendable {
    public static let minimumSecretLength = 32
    public static let clockSkewLeeway: TimeInterval = 60
    static let maximumTokenLength = 16 * 1024

    private struct JWKSEntry: Sendable {
        let kid: String?
        let algorithm: String
        let keys: JWTKeyCollection
    }

    private let hmacKeys: JWTKeyCollection?
    private let jwksEntries: [JWKSEntry]
    private let issuer: String?
    private let audience: String?

    /// - Parameters:
    ///   - hs256Secret: shared secret for HS256, at least 32 bytes of UTF-8; nil to refuse HS256.
    ///   - jwksJSON: a JWKS document (`{"keys": [...]}`) of public signing keys; RSA keys
    ///     (≥ 2048 bits) serve RS256 and EC P-256 keys serve ES256. Keys for other algorithms,
    ///     curves or uses are ignored; private key material is refused. nil to refuse RS256/ES256.
    ///   - issuer: when set, `iss` must equal it.
    ///   - audience: when set, `aud` must contain it.
    /// - Throws: `UserTokenVerifierConfigurationError`.
    public init(
        hs256Secret: String?,
        jwksJSON: String?,
        issuer: String? = nil,
        audience: String? = nil
    ) async throws {
        guard hs256Secret != nil || jwksJSON != nil else {
            throw UserTokenVerifierConfigurationError.noKeysConfigured
        }
        if let hs256Secret {
            let count = hs256Secret.utf8.count
            guard count >= Self.minimumSecretLength else {
                throw UserTokenVerifierConfigurationError.secretTooShort(byteCount: count)
            }
            self.hmacKeys = await JWTKeyCollection().add(hmac: HMACKey(from: hs256Secret), digestAlgorithm: .sha256)
        } else {
            self.hmacKeys = nil
        }
        if let jwksJSON {
            self.jwksEntries = try await Self.parseJWKS(jwksJSON, skippingUnusableKeys: false)
        } else {
            self.jwksEntries = []
        }
        self.issuer = issuer
        self.audience = audience
    }

    /// A verifier for a key set fetched from an OpenID provider (`OIDCUserTokenVerifier`): RS256
    /// and ES256 only, `iss` and `aud` always checked. Keys this verifier cannot use (a short RSA
    /// key, private material, a repeated `kid`, an EC key without coordinates…) are skipped
    /// rather than failing the whole set, so one odd key at the issuer does not lock every user
    /// out; a set with no usable key at all is still refused.
    init(remoteJWKS jwksJSON: String, issuer: String, audience: String) async throws {
        self.hmacKeys = nil
        self.jwksEntries = try await Self.parseJWKS(jwksJSON, skippingUnusableKeys: true)
        self.issuer = issuer
        self.audience = audience
    }

    /// The `kid`s of the usable keys (for logs).
    var keyIdentifiers: [String] { jwksEntries.map { $0.kid ?? "(no kid)" } }

    /// Verifies a bearer token (a leading `Bearer ` is tolerated) and returns its subject.
    /// - Throws: `UserTokenError`, whose descriptions never include the token.
    public func verify(_ bearer: String, now: Date = .now) async throws -> VerifiedUser {
        var token = Substring(bearer)
        if token.utf8.count > 7, token.prefix(7).lowercased() == "bearer " {
            token = token.dropFirst(7)
        }
        guard token.utf8.count <= Self.maximumTokenLength else { throw UserTokenError.malformed }

        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            let headerBytes = Base64URL.decode(String(parts[0]), padded: false),
            let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes))
        else {
            throw UserTokenError.malformed
        }
        // The algorithm is judged first, so `alg: none` (usually with an empty signature) is
        // reported as such.
        guard header.crit == nil else { throw UserTokenError.algorithmNotAllowed }
        let keys = try selectKeys(algorithm: header.alg, kid: header.kid)
        guard !parts[1].isEmpty, !parts[2].isEmpty,
            Base64URL.decode(String(parts[1]), padded: false) != nil,
            Base64URL.decode(String(parts[2]), padded: false) != nil
        else {
            throw UserTokenError.malformed
        }

        let claims: Claims
        do {
            claims = try await keys.verify(String(token), as: Claims.self)
        } catch let error as JWTError where error.errorType == .malformedToken {
            throw UserTokenError.malformed
        } catch {
            throw UserTokenError.invalidSignature
        }
        return try check(claims, now: now)
    }

    // MARK: - Internals

    private struct Header: Decodable {
        let alg: String?
        let kid: String?
        let crit: [String]?
    }

    /// Claims are checked here rather than by jwt-kit so that `now` can be injected.
    private struct Claims: JWTPayload {
        let sub: String?
        let exp: Double?
        let nbf: Double?
        let iss: String?
        let aud: AudienceClaim?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    private func selectKeys(algorithm: String?, kid: String?) throws -> JWTKeyCollection {
        switch algorithm {
        case "HS256":
            guard let hmacKeys else { throw UserTokenError.algorithmNotAllowed }
            return hmacKeys
        case "RS256", "ES256":
            guard !jwksEntries.isEmpty else { throw UserTokenError.algorithmNotAllowed }
            let entry: JWKSEntry
            if let kid {
                guard let match = jwksEntries.first(where: { $0.kid == kid }) else {
                    throw UserTokenError.unknownKey
                }
                entry = match
            } else {
                let candidates = jwksEntries.filter { $0.algorithm == algorithm }
                guard candidates.count == 1 else { throw UserTokenError.unknownKey }
                entry = candidates[0]
            }
            guard entry.algorithm == algorithm else { throw UserTokenError.algorithmNotAllowed }
            return entry.keys
        default:
            throw UserTokenError.algorithmNotAllowed
        }
    }

    private func check(_ claims: Claims, now: Date) throws -> VerifiedUser {
        let time = now.timeIntervalSince1970
        guard let exp = claims.exp else { throw UserTokenError.missingExpiration }
        guard time < exp + Self.clockSkewLeeway else { throw UserTokenError.expired }
        if let nbf = claims.nbf {
            guard time + Self.clockSkewLeeway >= nbf else { throw UserTokenError.notYetValid }
        }
        if let issuer {
            guard claims.iss == issuer else { throw UserTokenError.wrongIssuer }
        }
        if let audience {
            guard let aud = claims.aud, aud.value.contains(audience) else { throw UserTokenError.wrongAudience }
        }
        guard let subject = claims.sub, !subject.isEmpty else { throw UserTokenError.missingSubject }
        return VerifiedUser(subject: subject, expiresAt: Date(timeIntervalSince1970: exp))
    }

    private struct RawJWKS: Decodable {
        let keys: [RawJWK]
    }

    private struct RawJWK: Decodable {
        let kty: String?
        let kid: String?
        let alg: String?
        let use: String?
        let crv: String?
        let n: String?
        let e: String?
        let x: String?
        let y: String?
        // Private or symmetric material, which has no place in a verification JWKS.
        let d: String?
        let p: String?
        let q: String?
        let k: String?
    }

    private static func parseJWKS(_ json: String, skippingUnusableKeys lenient: Bool) async throws -> [JWKSEntry] {
        let raw: RawJWKS
        do {
            raw = try JSONDecoder().decode(RawJWKS.self, from: Data(json.utf8))
        } catch {
            throw UserTokenVerifierConfigurationError.invalidJWKS(reason: "not a JSON object with a \"keys\" array")
        }
        var entries: [JWKSEntry] = []
        for (index, jwk) in raw.keys.enumerated() {
            let name = "key \(index + 1)" + (jwk.kid.map { " (kid \"\($0)\")" } ?? "")
            // A key that cannot be used fails a configured set, and is skipped in a fetched one.
            func unusable(_ reason: String) throws {
                if !lenient { throw UserTokenVerifierConfigurationError.invalidJWKS(reason: reason) }
            }
            guard jwk.d == nil, jwk.p == nil, jwk.q == nil, jwk.k == nil else {
                try unusable("\(name) contains private or symmetric key material; publish public keys only")
                continue
            }
            guard jwk.use == nil || jwk.use == "sig" else { continue }
            if let kid = jwk.kid, entries.contains(where: { $0.kid == kid }) {
                try unusable("\(name) repeats a kid")
                continue
            }
            // A kid is needed by jwt-kit; key-less entries get one that no header can name,
            // and are only used for tokens without `kid`.
            let identifier = JWKIdentifier(string: jwk.kid ?? "devbox-unnamed-\(index)")
            let algorithm: String
            let publicKey: JWK
            switch (jwk.kty, jwk.alg) {
            case ("RSA", nil), ("RSA", "RS256"):
                guard let n = jwk.n, let e = jwk.e else {
                    try unusable("\(name) is an RSA key without n or e")
                    continue
                }
                let bits = modulusBits(n)
                guard bits >= 2048 else {
                    try unusable("\(name) is a \(bits)-bit RSA key; at least 2048 bits are required")
                    continue
                }
                algorithm = "RS256"
                publicKey = .rsa(.rs256, identifier: identifier, modulus: n, exponent: e)
            case ("EC", nil), ("EC", "ES256"):
                guard jwk.crv == "P-256" else { continue }
                guard let x = jwk.x, let y = jwk.y else {
                    try unusable("\(name) is an EC key without x or y")
                    continue
                }
                algorithm = "ES256"
                publicKey = .ecdsa(.es256, identifier: identifier, x: x, y: y, curve: .p256)
            default:
                continue
            }
            let keys = JWTKeyCollection()
            do {
                try await keys.add(jwk: publicKey)
            } catch {
                try unusable("\(name) is not a valid \(algorithm) public key")
                continue
            }
            entries.append(JWKSEntry(kid: jwk.kid, algorithm: algorithm, keys: keys))
        }
        guard !entries.isEmpty else {
            throw UserTokenVerifierConfigurationError.invalidJWKS(reason: "no RS256 or ES256 (P-256) signing key")
        }
        return entries
    }

    /// Bit length of a base64url big-endian modulus; 0 if undecodable.
    private static func modulusBits(_ n: String) -> Int {
        var trimmed = Substring(n)
        while trimmed.last == "=" { trimmed = trimmed.dropLast() }
        guard let bytes = Base64URL.decode(String(trimmed), padded: false),
            let first = bytes.firstIndex(where: { $0 != 0 })
        else { return 0 }
        return (bytes.count - first) * 8 - bytes[first].leadingZeroBitCount
    }
}
