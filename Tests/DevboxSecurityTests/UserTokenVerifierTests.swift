import Crypto
import DevboxSecurity
import Foundation
import JWTKit
import Testing
import _CryptoExtras

/// Tokens are assembled by hand here (header, payload, signature with swift-crypto), so the
/// tests do not share code with the verifier, and can build the hostile ones.
@Suite struct UserTokenVerifierTests {
    static let secret = "an HS256 secret of more than 32 bytes, for tests"
    static let now = Date()

    // A fixed test key (made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`):
    // generating one takes seconds in a debug build of BoringSSL, on a thread of Swift's
    // cooperative pool, which stalled every other test's tasks meanwhile.
    static let rsaKey = Result { try _RSA.Signing.PrivateKey(pemRepresentation: rsaPEM) }
    static let rsaPEM = """
        -----BEGIN PRIVATE KEY-----
        MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDQlBPI4RwqKiDw
        LQLRAOBIDygiE/M6cfh0i6+nBSTxmdf/OKillgUYWmi1a7yE+E6vPmyYUJCgM4JQ
        aj4/7ujj6PhkCk7l2NQXEntYbe0Sz/9Ek6jJ73vOb5y5bFxom0WV/muotjuWaNXD
        JR/84Nn0r+7VUPNKxDPghaYHJN7NyiY1feiK9TAWHdtCjlQIjMgreLgSDhQrCblw
        jvgKUcfefZpELYMlRHx41kOVy9VuQRIFYz+HfxN5H3tbtntHwz7T7kNzyfcFVKTl
        8daP1xvpyN8kKliPzyutLLsVzrsPfL9aY0FNbzy0I+dNP8d12ap6vfefA9H1CQ9a
        2CS2w2DtAgMBAAECggEAFWf9F9Kyl0k3lC6qaVTTr9GOZuDxR4BG5X8oidWnUvxd
        BJ6GAGiDIVq2AFiMQoFRYf7gGkm6bhabOzGMLfeRA0L3qxy7uC8mpS+KZSry98lN
        A3a8De18IVWnGgia+0lkPN6dofUB7I/Z0GtQ+x0AgXJE6rOiJHw6bsKIpZcNHsV+
        wsXplMSWGeYTj5TvUEpPlYOyJvNzGFop/0rHKVa6P3GTm5fioBWht6SNnP5CCnCB
        t7jlBMxG7OHYPl0KyOeRczYCXKCXgVHGcCWIex+VBTSu2McZZ+ocQEXT0uFgeu8S
        s4c6/zNdR/ZGj/mwLs/MEKuntsBjOIymT+ySdbLPQQKBgQD822pO8U6h4bQg7RLy
        TA/npqXHlRcEdLMKDQI+oJKL06+FXKBV15BN5iz2UKQTjnopgbTb6RWf5+m5E9go
        Tqnmz7YTYW2Q0Leo9rQ6gvAdF66WmSedBYpbQLwqqVHAF3UXaTpxC/fruH1JT7ML
        cmYmatSU08fSTQzhc5rrlNXi2QKBgQDTK8S5PcOtZYFYrobEHbXlxydytYoNXClh
        AN2Mko2K0o6hr8XhQh+ZLAmzhRplgs+BDh/viy4CoifwGTuHzdkVOjX/GcjeaAX3
        XsLgTqt2TZWtC5Vp5fBP1o0uu04weJ4qAzP7yAl0BmanfwZLyjU22ytel3eah6NP
        wYZcv2B6NQKBgQDtZK6NSR5S+41a8Fk+ZEz2Zs3z8DR4+XtyLz5xP932Kxr58TmS
        /lw71qNV6eXxem2U9HKxmEa2J0yWd1wUk64NxesijPEJ6frURjJ1UKNQHQDL4SSA
        1kfMXp2KzAa1exByl1fH9L2hcEcoAgyN7ayb2uaUh7Rt6+rw69GB5e1dGQKBgBUv
        i/IFt077IwnxoIWmcWxXGacRfYMvntsjihajUV3/F94y00hxKNhmKacAEJDkmcrZ
        zuxqazhKanVVIrrSNRhDGc25GYTurMKPmD+GxP7+c6jDw763Ge/4l3t7wTFtuHiA
        j8OP4xrn1X6yaMBLziDtxiEcUxyGxSSoRsGhVZ2NAoGBAIS26OzBzZT8zQSHs1PF
        J/x55h/0peCI5vx+HT4Qv/zRI8K0SlwTIdEbfVIO6d0qiiQHG6FgQXO2xepRgkWA
        2W+kUvsCwQBr0isKeauC+gQ/1UlWNt+5Zr/aZ/AegFOQrWELve1fLGP2AuEQHbuf
        XuND2Nt4nBrZH8g1I2EaFDmk
        -----END PRIVATE KEY-----
        """
    static let ecKey = P256.Signing.PrivateKey()
    static let otherECKey = P256.Signing.PrivateKey()

    // MARK: token building

    typealias Signer = ([UInt8]) throws -> [UInt8]

    static func b64(_ bytes: some Sequence<UInt8>) -> String { TestSupport.base64url(bytes) }

    static func json(_ object: [String: Any]) -> String {
        do {
            return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        } catch {
            Issue.record("cannot encode \(object)")
            return "{}"
        }
    }

    static func token(header: [String: Any], claims: [String: Any], signer: Signer) throws -> String {
        let signingInput = b64(json(header).utf8) + "." + b64(json(claims).utf8)
        return signingInput + "." + b64(try signer(Array(signingInput.utf8)))
    }

    static func claims(sub: Any? = "alice", exp: Double? = now.timeIntervalSince1970 + 3600, extra: [String: Any] = [:]) -> [String: Any] {
        var claims = extra
        if let sub, claims["sub"] == nil { claims["sub"] = sub }
        if let exp, claims["exp"] == nil { claims["exp"] = exp }
        return claims
    }

    static func hs256(_ secret: some DataProtocol) -> Signer {
        let key = SymmetricKey(data: Array(secret))
        return { Array(HMAC<SHA256>.authenticationCode(for: $0, using: key)) }
    }

    static func es256(_ key: P256.Signing.PrivateKey) -> Signer {
        { Array(try key.signature(for: $0).rawRepresentation) }
    }

    static func rs256(_ key: _RSA.Signing.PrivateKey) -> Signer {
        { Array(try key.signature(for: $0, padding: .insecurePKCS1v1_5).rawRepresentation) }
    }

    static func hsToken(_ claims: [String: Any] = claims(), header: [String: Any] = ["alg": "HS256", "typ": "JWT"]) throws -> String {
        try token(header: header, claims: claims, signer: hs256(Array(secret.utf8)))
    }

    static func rsaJWK(_ key: _RSA.Signing.PrivateKey, kid: String?, extra: [String: Any] = ["alg": "RS256", "use": "sig"]) throws -> [String: Any] {
        let primitives = try key.publicKey.getKeyPrimitives()
        var jwk = extra
        jwk["kty"] = "RSA"
        jwk["n"] = b64(primitives.modulus)
        jwk["e"] = b64(primitives.publicExponent)
        if let kid { jwk["kid"] = kid }
        return jwk
    }

    static func ecJWK(_ key: P256.Signing.PrivateKey, kid: String?, extra: [String: Any] = [:]) -> [String: Any] {
        let point = Array(key.publicKey.x963Representation)
        var jwk = extra
        jwk["kty"] = "EC"
        if jwk["crv"] == nil { jwk["crv"] = "P-256" }
        jwk["x"] = b64(point[1..<33])
        jwk["y"] = b64(point[33..<65])
        if let kid { jwk["kid"] = kid }
        return jwk
    }

    static func jwks(_ keys: [[String: Any]]) -> String { json(["keys": keys]) }

    static func standardJWKS() throws -> String {
        jwks([try rsaJWK(rsaKey.get(), kid: "rsa-1"), ecJWK(ecKey, kid: "ec-1")])
    }

    /// Asserts rejection for `expected`, and that the error's text holds no part of the token.
    static func expectRejected(
        _ verifier: UserTokenVerifier, _ token: String, _ expected: UserTokenError, now: Date = now,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            let user = try await verifier.verify(token, now: now)
            Issue.record("accepted, as \(user.subject); expected \(expected)", sourceLocation: sourceLocation)
        } catch let error as UserTokenError {
            #expect(error == expected, sourceLocation: sourceLocation)
            let text = "\(error) \(String(reflecting: error)) \(error.localizedDescription)"
            for part in token.split(separator: ".") where part.count >= 6 {
                #expect(!text.contains(part), "error text contains part of the token", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected error type \(type(of: error))", sourceLocation: sourceLocation)
        }
    }

    // MARK: HS256

    @Test func acceptsValidHS256() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: nil)
        let token = try Self.hsToken()
        #expect(try await verifier.verify(token) == VerifiedUser(subject: "alice"))
        #expect(try await verifier.verify("Bearer " + token).subject == "alice")
        let withNbf = try Self.hsToken(Self.claims(sub: "bob", extra: ["nbf": Self.now.timeIntervalSince1970 - 10]))
        #expect(try await verifier.verify(withNbf).subject == "bob")
    }

    @Test func rejectsBadSignatures() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: nil)
        let wrongSecret = try Self.token(
            header: ["alg": "HS256"], claims: Self.claims(), signer: Self.hs256(Array((Self.secret + "!").utf8)))
        await Self.expectRejected(verifier, wrongSecret, .invalidSignature)

        // Swap in another payload under the original signature.
        let good = try Self.hsToken().split(separator: ".")
        let forgedPayload = Self.b64(Self.json(Self.claims(sub: "admin")).utf8)
        await Self.expectRejected(verifier, "\(good[0]).\(forgedPayload).\(good[2])", .invalidSignature)
        // A truncated signature.
        await Self.expectRejected(verifier, "\(good[0]).\(good[1]).\(good[2].dropLast(4))", .invalidSignature)
    }

    @Test func enforcesExpAndNbfWithSixtySecondsLeeway() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: nil)
        let t = Self.now.timeIntervalSince1970.rounded()
        let token = try Self.hsToken(Self.claims(exp: t, extra: ["nbf": t - 600]))
        #expect(try await verifier.verify(token, now: Date(timeIntervalSince1970: t + 59)).subject == "alice")
        await Self.expectRejected(verifier, token, .expired, now: Date(timeIntervalSince1970: t + 60))
        await Self.expectRejected(verifier, token, .expired, now: Date(timeIntervalSince1970: t + 86400))
        #expect(try await verifier.verify(token, now: Date(timeIntervalSince1970: t - 660)).subject == "alice")
        await Self.expectRejected(verifier, token, .notYetValid, now: Date(timeIntervalSince1970: t - 661))

        // And with the real clock.
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(exp: Self.now.timeIntervalSince1970 - 3600)), .expired, now: Date())
        await Self.expectRejected(
            verifier, try Self.hsToken(Self.claims(extra: ["nbf": Self.now.timeIntervalSince1970 + 3600])), .notYetValid, now: Date())
    }

    @Test func requiresSubAndExp() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: nil)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(sub: nil)), .missingSubject)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(sub: "")), .missingSubject)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(exp: nil)), .missingExpiration)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(sub: 42)), .malformed)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(extra: ["exp": "tomorrow"])), .malformed)
    }

    @Test func rejectsAlgNoneAndOtherAlgorithms() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: try Self.standardJWKS())
        let body = Self.b64(Self.json(Self.claims()).utf8)
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = Self.b64(Self.json(["alg": alg]).utf8)
            await Self.expectRejected(verifier, "\(header).\(body).", .algorithmNotAllowed)
            await Self.expectRejected(verifier, "\(header).\(body).c2lnbmF0dXJl", .algorithmNotAllowed)
        }
        // Missing alg, and algorithms that are fine elsewhere but not accepted here.
        await Self.expectRejected(verifier, try Self.hsToken(header: ["typ": "JWT"]), .algorithmNotAllowed)
        for alg in ["HS384", "HS512", "hs256", "PS256", "RS512", "ES384", "EdDSA"] {
            await Self.expectRejected(verifier, try Self.hsToken(header: ["alg": alg]), .algorithmNotAllowed)
        }
        // Critical header extensions we do not understand.
        await Self.expectRejected(verifier, try Self.hsToken(header: ["alg": "HS256", "crit": ["exp"]]), .algorithmNotAllowed)
    }

    @Test func rejectsMalformedTokens() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: nil)
        let good = try Self.hsToken()
        let parts = good.split(separator: ".").map(String.init)
        let cases = [
            "", "Bearer ", "abc", "a.b", "\(parts[0]).\(parts[1])", good + ".x", "\(parts[0])..\(parts[2])",
            "!!!.\(parts[1]).\(parts[2])", "\(parts[0]).\(parts[1]).\(parts[2])=",
            "\(Self.b64("not json".utf8)).\(parts[1]).\(parts[2])",
            good + String(repeating: "A", count: 20_000),
        ]
        for token in cases {
            await Self.expectRejected(verifier, token, .malformed)
        }
        // A validly signed token whose payload is not JSON.
        let junk = Self.b64(#"{"alg":"HS256"}"#.utf8) + "." + Self.b64("junk".utf8)
        let signed = junk + "." + Self.b64(try Self.hs256(Array(Self.secret.utf8))(Array(junk.utf8)))
        await Self.expectRejected(verifier, signed, .malformed)
    }

    // MARK: JWKS

    @Test func acceptsRS256AndES256ByKid() async throws {
        let verifier = try await UserTokenVerifier(hs256Secret: nil, jwksJSON: try Self.standardJWKS())
        let rs = try Self.token(header: ["alg": "RS256", "kid": "rsa-1"], claims: Self.claims(sub: "rsa-user"), signer: Self.rs256(Self.rsaKey.get()))
        let es = try Self.token(header: ["alg": "ES256", "kid": "ec-1"], claims: Self.claims(sub: "ec-user"), signer: Self.es256(Self.ecKey))
        #expect(try await verifier.verify(rs).subject == "rsa-user")
        #expect(try await verifier.verify(es).subject == "ec-user")
        // Without kid, the only key of that type is used.
        let esNoKid = try Self.token(header: ["alg": "ES256"], claims: Self.claims(sub: "ec-user"), signer: Self.es256(Self.ecKey))
        #expect(try await verifier.verify(esNoKid).subject == "ec-user")

        // HS256 is refused when no secret is configured.
        await Self.expectRejected(verifier, try Self.hsToken(), .algorithmNotAllowed)
    }

    @Test func jwksSelectionFailures() async throws {
        let twoEC = Self.jwks([Self.ecJWK(Self.ecKey, kid: "ec-1"), Self.ecJWK(Self.otherECKey, kid: "ec-2"), try Self.rsaJWK(Self.rsaKey.get(), kid: "rsa-1")])
        let verifier = try await UserTokenVerifier(hs256Secret: nil, jwksJSON: twoEC)
        let claims = Self.claims()
        // Unknown kid, and no kid with two candidate keys.
        await Self.expectRejected(verifier, try Self.token(header: ["alg": "ES256", "kid": "nope"], claims: claims, signer: Self.es256(Self.ecKey)), .unknownKey)
        await Self.expectRejected(verifier, try Self.token(header: ["alg": "ES256"], claims: claims, signer: Self.es256(Self.ecKey)), .unknownKey)
        // Signed by one key, naming the other.
        await Self.expectRejected(verifier, try Self.token(header: ["alg": "ES256", "kid": "ec-2"], claims: claims, signer: Self.es256(Self.ecKey)), .invalidSignature)
        #expect(try await verifier.verify(try Self.token(header: ["alg": "ES256", "kid": "ec-2"], claims: claims, signer: Self.es256(Self.otherECKey))).subject == "alice")
        // Algorithm not matching the named key's type.
        await Self.expectRejected(verifier, try Self.token(header: ["alg": "RS256", "kid": "ec-1"], claims: claims, signer: Self.rs256(Self.rsaKey.get())), .algorithmNotAllowed)
        await Self.expectRejected(verifier, try Self.token(header: ["alg": "ES256", "kid": "rsa-1"], claims: claims, signer: Self.es256(Self.ecKey)), .algorithmNotAllowed)
        // Tampered RS256 payload.
        let rs = try Self.token(header: ["alg": "RS256", "kid": "rsa-1"], claims: claims, signer: Self.rs256(Self.rsaKey.get())).split(separator: ".")
        await Self.expectRejected(verifier, "\(rs[0]).\(Self.b64(Self.json(Self.claims(sub: "root")).utf8)).\(rs[2])", .invalidSignature)
    }

    /// The classic attack: an HS256 token "signed" with the RSA public key, hoping the verifier
    /// uses that key as an HMAC secret.
    @Test func rejectsKeyConfusion() async throws {
        let publicKey = try Self.rsaKey.get().publicKey
        let primitives = try publicKey.getKeyPrimitives()
        let secrets: [[UInt8]] = [
            Array(publicKey.pemRepresentation.utf8),
            Array((publicKey.pemRepresentation + "\n").utf8),
            Array(publicKey.derRepresentation),
            Array(primitives.modulus),
            Array(Self.json(try Self.rsaJWK(Self.rsaKey.get(), kid: "rsa-1")).utf8),
        ]
        let jwksOnly = try await UserTokenVerifier(hs256Secret: nil, jwksJSON: try Self.standardJWKS())
        let both = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: try Self.standardJWKS())
        for secret in secrets {
            for header: [String: Any] in [["alg": "HS256", "kid": "rsa-1"], ["alg": "HS256"]] {
                let forged = try Self.token(header: header, claims: Self.claims(sub: "admin"), signer: Self.hs256(secret))
                await Self.expectRejected(jwksOnly, forged, .algorithmNotAllowed)
                await Self.expectRejected(both, forged, .invalidSignature)
            }
        }
    }

    @Test func issuerAndAudienceWhenConfigured() async throws {
        let verifier = try await UserTokenVerifier(
            hs256Secret: Self.secret, jwksJSON: nil, issuer: "https://id.example", audience: "devbox")
        let good = try Self.hsToken(Self.claims(extra: ["iss": "https://id.example", "aud": ["other", "devbox"]]))
        #expect(try await verifier.verify(good).subject == "alice")
        let single = try Self.hsToken(Self.claims(extra: ["iss": "https://id.example", "aud": "devbox"]))
        #expect(try await verifier.verify(single).subject == "alice")
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(extra: ["iss": "https://evil.example", "aud": "devbox"])), .wrongIssuer)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(extra: ["aud": "devbox"])), .wrongIssuer)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(extra: ["iss": "https://id.example", "aud": "other"])), .wrongAudience)
        await Self.expectRejected(verifier, try Self.hsToken(Self.claims(extra: ["iss": "https://id.example"])), .wrongAudience)
    }

    @Test func verifiesTokensSignedByJWTKit() async throws {
        struct Payload: JWTPayload {
            var sub: SubjectClaim
            var exp: ExpirationClaim
            func verify(using algorithm: some JWTAlgorithm) throws {}
        }
        let signer = try await JWTKeyCollection()
            .add(ecdsa: ES256PrivateKey(backing: Self.ecKey), kid: "ec-1")
            .add(rsa: Insecure.RSA.PrivateKey(backing: Self.rsaKey.get()), digestAlgorithm: .sha256, kid: "rsa-1")
            .add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256, kid: "hs")
        let payload = Payload(sub: "kit-user", exp: .init(value: Date().addingTimeInterval(600)))
        let verifier = try await UserTokenVerifier(hs256Secret: Self.secret, jwksJSON: try Self.standardJWKS())
        for kid in ["ec-1", "rsa-1", "hs"] {
            let token = try await signer.sign(payload, kid: JWKIdentifier(string: kid))
            #expect(try await verifier.verify(token).subject == "kit-user", "\(kid)")
        }
    }

    // MARK: configuration

    @Test func configurationErrors() async throws {
        await #expect(throws: UserTokenVerifierConfigurationError.noKeysConfigured) {
            try await UserTokenVerifier(hs256Secret: nil, jwksJSON: nil)
        }
        await #expect(throws: UserTokenVerifierConfigurationError.secretTooShort(byteCount: 6)) {
            try await UserTokenVerifier(hs256Secret: "secret", jwksJSON: nil)
        }
        await #expect(throws: UserTokenVerifierConfigurationError.secretTooShort(byteCount: 0)) {
            try await UserTokenVerifier(hs256Secret: "", jwksJSON: nil)
        }

        let rsa = try Self.rsaKey.get()
        let cases: [(String, String)] = [
            ("{", "not a JSON object with a \"keys\" array"),
            (#"{"keys": {}}"#, "not a JSON object with a \"keys\" array"),
            (Self.jwks([]), "no RS256 or ES256 (P-256) signing key"),
            // Unusable keys are skipped, leaving none.
            (Self.jwks([
                Self.ecJWK(Self.ecKey, kid: "enc", extra: ["use": "enc"]),
                Self.ecJWK(Self.ecKey, kid: "p384", extra: ["crv": "P-384"]),
                try Self.rsaJWK(rsa, kid: "pss", extra: ["alg": "PS256"]),
                ["kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"],
            ]), "no RS256 or ES256 (P-256) signing key"),
            (Self.jwks([Self.ecJWK(Self.ecKey, kid: "a", extra: ["d": "c2VjcmV0"])]),
             "key 1 (kid \"a\") contains private or symmetric key material; publish public keys only"),
            (Self.jwks([["kty": "oct", "k": "c2VjcmV0", "kid": "sym"]]),
             "key 1 (kid \"sym\") contains private or symmetric key material; publish public keys only"),
            (Self.jwks([Self.ecJWK(Self.ecKey, kid: "a"), Self.ecJWK(Self.otherECKey, kid: "a")]), "key 2 (kid \"a\") repeats a kid"),
            (Self.jwks([["kty": "RSA", "kid": "small", "n": Self.b64([0x80] + Array(repeating: 1, count: 127)), "e": "AQAB"]]),
             "key 1 (kid \"small\") is a 1024-bit RSA key; at least 2048 bits are required"),
            (Self.jwks([["kty": "RSA", "kid": "no-e", "n": Self.b64([0x80] + Array(repeating: 1, count: 255))]]),
             "key 1 (kid \"no-e\") is an RSA key without n or e"),
            (Self.jwks([["kty": "EC", "crv": "P-256", "kid": "bad", "x": Self.b64([UInt8](repeating: 1, count: 32)), "y": Self.b64([UInt8](repeating: 2, count: 32))]]),
             "key 1 (kid \"bad\") is not a valid ES256 public key"),
        ]
        for (document, reason) in cases {
            await #expect(throws: UserTokenVerifierConfigurationError.invalidJWKS(reason: reason), "\(reason)") {
                try await UserTokenVerifier(hs256Secret: nil, jwksJSON: document)
            }
        }

        // Descriptions never include the secret.
        do {
            _ = try await UserTokenVerifier(hs256Secret: "short-secret-value", jwksJSON: nil)
        } catch {
            #expect(String(describing: error) == "the HS256 secret is 18 bytes; it must be at least 32 bytes")
        }
    }

    @Test func keysWithoutKidServeTokensWithoutKid() async throws {
        let verifier = try await UserTokenVerifier(
            hs256Secret: nil,
            jwksJSON: Self.jwks([Self.ecJWK(Self.ecKey, kid: nil), try Self.rsaJWK(Self.rsaKey.get(), kid: nil, extra: [:])]))
        let es = try Self.token(header: ["alg": "ES256"], claims: Self.claims(), signer: Self.es256(Self.ecKey))
        let rs = try Self.token(header: ["alg": "RS256"], claims: Self.claims(), signer: Self.rs256(Self.rsaKey.get()))
        #expect(try await verifier.verify(es).subject == "alice")
        #expect(try await verifier.verify(rs).subject == "alice")
        // The synthetic identifiers used internally cannot be named.
        await Self.expectRejected(
            verifier, try Self.token(header: ["alg": "ES256", "kid": "devbox-unnamed-0"], claims: Self.claims(), signer: Self.es256(Self.ecKey)),
            .unknownKey)
    }
}
