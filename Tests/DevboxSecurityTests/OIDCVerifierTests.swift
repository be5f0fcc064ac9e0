import Crypto
import DevboxSecurity
import Foundation
import Logging
import Synchronization
import Testing


/// The OpenID-provider verifier against an in-memory provider (documents served by a fake
/// fetcher, a clock the tests move). The e2e test `Tests/e2e/test_oidc.py` runs the same
/// against a real HTTP provider and a real `devbox serve`.
@Suite struct OIDCVerifierTests {
    typealias T = UserTokenVerifierTests
    static let issuer = "https://id.example.test/realms/dev"
    static let audience = "devbox"

    /// A provider: its discovery document, its JWKS, answers that can be broken, fetch counts.
    final class FakeProvider: OIDCFetching, Sendable {
        struct State {
            var discovery: [String: String] = [
                "issuer": OIDCVerifierTests.issuer, "jwks_uri": "https://keys.example.test/jwks",
            ]
            var keys: [[String: String]] = []
            var status: [String: Int] = [:]
            var down = false
            var fetches: [String: Int] = [:]
            var delay: Duration = .zero
        }
        let state: Mutex<State>

        init(keys: [[String: String]]) {
            var s = State()
            s.keys = keys
            state = Mutex(s)
        }

        func update(_ body: (inout State) -> Void) { state.withLock { body(&$0) } }
        var jwksFetches: Int { state.withLock { $0.fetches["https://keys.example.test/jwks"] ?? 0 } }
        var discoveryFetches: Int { state.withLock { $0.fetches[OIDCVerifierTests.discoveryURL] ?? 0 } }

        func get(_ url: String, limit: Int) async throws -> (status: Int, body: [UInt8]) {
            let delay = state.withLock { $0.delay }
            if delay > .zero { try await Task.sleep(for: delay) }
            // JSONSerialization's values are not Sendable: the body is made under the lock.
            let answer: (Int, [UInt8])? = state.withLock { s in
                s.fetches[url, default: 0] += 1
                if s.down { return nil }
                let status = s.status[url] ?? 200
                let object: [String: Any]
                switch url {
                case OIDCVerifierTests.discoveryURL: object = s.discovery as [String: Any]
                case "https://keys.example.test/jwks": object = ["keys": s.keys]
                default: return (404, [])
                }
                return (status, Array(T.json(object).utf8))
            }
            guard let answer else { throw OIDCFetchError("connection refused") }
            return answer
        }
    }

    static let discoveryURL = issuer + "/.well-known/openid-configuration"

    /// A clock the test moves.
    final class TestClock: Sendable {
        let base = ContinuousClock.now
        let offset = Mutex<Duration>(.zero)
        func advance(_ d: Duration) { offset.withLock { $0 += d } }
        var now: @Sendable () -> ContinuousClock.Instant { { self.base + self.offset.withLock { $0 } } }
    }

    static let keyA = P256.Signing.PrivateKey()
    static let keyB = P256.Signing.PrivateKey()
    static let stranger = P256.Signing.PrivateKey()

    static func jwk(_ key: P256.Signing.PrivateKey, kid: String, extra: [String: String] = [:]) -> [String: String] {
        T.ecJWK(key, kid: kid, extra: extra).compactMapValues { $0 as? String }
    }

    static func make(
        _ provider: FakeProvider, clock: TestClock, refresh: Duration = .seconds(30), timeout: Duration = .seconds(5)
    ) throws -> OIDCUserTokenVerifier {
        var settings = try OIDCSettings(issuer: issuer, audience: audience, minimumRefreshInterval: refresh)
        settings.requestTimeout = timeout
        return OIDCUserTokenVerifier(
            settings: settings, fetcher: provider, logger: Logger(label: "oidc-test", factory: { _ in SwiftLogNoOpLogHandler() }), now: clock.now)
    }

    static func token(
        kid: String?, key: P256.Signing.PrivateKey, sub: String = "alice", extra: [String: Any] = [:],
        header: [String: Any]? = nil
    ) throws -> String {
        var claims: [String: Any] = ["iss": issuer, "aud": audience]
        claims.merge(extra) { $1 }
        var h: [String: Any] = ["alg": "ES256", "typ": "JWT"]
        if let kid { h["kid"] = kid }
        return try T.token(header: header ?? h, claims: T.claims(sub: sub, extra: claims), signer: T.es256(key))
    }

    static func expect(
        _ verifier: OIDCUserTokenVerifier, _ token: String, rejectedWith expected: UserTokenError,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            let user = try await verifier.verify(token)
            Issue.record("accepted as \(user.subject); expected \(expected)", sourceLocation: sourceLocation)
        } catch let error as UserTokenError {
            #expect(error == expected, sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    static func expectUnavailable(
        _ verifier: OIDCUserTokenVerifier, _ token: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            _ = try await verifier.verify(token)
            Issue.record("accepted; expected the provider to be unavailable", sourceLocation: sourceLocation)
        } catch is OIDCUnavailableError {
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: configuration

    @Test func settingsFromEnvironment() throws {
        #expect(try OIDCSettings.fromEnvironment([:]) == nil)
        #expect(try OIDCSettings.fromEnvironment(["DEVBOX_USER_JWT_SECRET": "x"]) == nil)
        let s = try #require(
            try OIDCSettings.fromEnvironment([
                "DEVBOX_USER_OIDC_ISSUER": "https://id.example/", "DEVBOX_USER_OIDC_AUDIENCE": "devbox",
            ]))
        #expect(s.issuer == "https://id.example/")
        #expect(s.discoveryURL == "https://id.example/.well-known/openid-configuration")
        #expect(s.minimumRefreshInterval == .seconds(30))
        #expect(!s.isLoopbackHTTP)
        let r = try #require(
            try OIDCSettings.fromEnvironment([
                "DEVBOX_USER_OIDC_ISSUER": "http://127.0.0.1:9000/realms/x", "DEVBOX_USER_OIDC_AUDIENCE": "a",
                "DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS": "2",
            ]))
        #expect(r.minimumRefreshInterval == .seconds(2))
        #expect(r.isLoopbackHTTP)
        #expect(r.discoveryURL == "http://127.0.0.1:9000/realms/x/.well-known/openid-configuration")
        for loopback in ["http://localhost:8080", "http://[::1]:8080", "http://127.1.2.3"] {
            #expect(throws: Never.self) { try OIDCSettings(issuer: loopback, audience: "a") }
        }

        func refused(_ env: [String: String], _ expected: OIDCConfigurationError, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(throws: expected, sourceLocation: sourceLocation) { try OIDCSettings.fromEnvironment(env) }
        }
        let iss = "https://id.example"
        refused(["DEVBOX_USER_OIDC_ISSUER": iss], .missingAudience)
        refused(["DEVBOX_USER_OIDC_AUDIENCE": "devbox"], .issuerMissing)
        refused(["DEVBOX_USER_OIDC_CA_FILE": "/etc/hostname"], .issuerMissing)
        refused(
            ["DEVBOX_USER_OIDC_ISSUER": iss, "DEVBOX_USER_OIDC_AUDIENCE": "a", "DEVBOX_USER_OIDC_CA_FILE": "/nonexistent/ca.pem"],
            .invalidCAFile("/nonexistent/ca.pem"))
        refused(
            ["DEVBOX_USER_OIDC_ISSUER": iss, "DEVBOX_USER_OIDC_AUDIENCE": "a", "DEVBOX_USER_OIDC_CA_FILE": "/etc/hostname"],
            .invalidCAFile("/etc/hostname"))
        refused(
            ["DEVBOX_USER_OIDC_ISSUER": iss, "DEVBOX_USER_OIDC_AUDIENCE": "a", "DEVBOX_USER_JWT_SECRET": "s"],
            .conflictsWithStaticKeys(["DEVBOX_USER_JWT_SECRET"]))
        refused(
            [
                "DEVBOX_USER_OIDC_ISSUER": iss, "DEVBOX_USER_OIDC_AUDIENCE": "a", "DEVBOX_USER_JWT_SECRET": "s",
                "DEVBOX_USER_JWKS_FILE": "/k",
            ], .conflictsWithStaticKeys(["DEVBOX_USER_JWT_SECRET", "DEVBOX_USER_JWKS_FILE"]))
        refused(
            ["DEVBOX_USER_OIDC_ISSUER": iss, "DEVBOX_USER_OIDC_AUDIENCE": "a", "DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS": "0"],
            .invalidRefreshInterval("0"))
        for bad in ["http://id.example", "http://10.0.0.1", "ftp://id.example", "id.example", "https://id.example?x=1", "https://id.example#f", "https://u:p@id.example", "https://"] {
            #expect(throws: OIDCConfigurationError.self, "\(bad)") {
                try OIDCSettings.fromEnvironment(["DEVBOX_USER_OIDC_ISSUER": bad, "DEVBOX_USER_OIDC_AUDIENCE": "a"])
            }
        }
        // Every message is one line naming the variable.
        let e = OIDCConfigurationError.invalidIssuer("http://id.example", "it must be https (plain http only on a loopback address)")
        #expect(e.description.contains("DEVBOX_USER_OIDC_ISSUER") && !e.description.contains("\n"))
    }

    // MARK: tokens

    @Test func verifiesTokensAgainstDiscoveredKeys() async throws {
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a", extra: ["alg": "ES256", "use": "sig"])])
        let verifier = try Self.make(provider, clock: TestClock())
        let user = try await verifier.verify(try Self.token(kid: "a", key: Self.keyA, sub: "alice"))
        #expect(user.subject == "alice")
        #expect(provider.discoveryFetches == 1 && provider.jwksFetches == 1)

        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyA, extra: ["iss": "https://evil.example"]), rejectedWith: .wrongIssuer)
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyA, extra: ["iss": Self.issuer + "/"]), rejectedWith: .wrongIssuer)
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyA, extra: ["aud": "other"]), rejectedWith: .wrongAudience)
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyA, extra: ["aud": NSNull()]), rejectedWith: .wrongAudience)
        #expect(try await verifier.verify(try Self.token(kid: "a", key: Self.keyA, extra: ["aud": ["x", Self.audience]])).subject == "alice")
        await Self.expect(
            verifier, try Self.token(kid: "a", key: Self.keyA, extra: ["exp": Date().timeIntervalSince1970 - 120]), rejectedWith: .expired)
        await Self.expect(
            verifier, try Self.token(kid: "a", key: Self.keyA, extra: ["nbf": Date().timeIntervalSince1970 + 600]), rejectedWith: .notYetValid)
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.stranger), rejectedWith: .invalidSignature)
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyA, sub: ""), rejectedWith: .missingSubject)
        // alg none, and HS256 "signed" with the published key.
        let none = T.b64(T.json(["alg": "none", "kid": "a"]).utf8) + "." + T.b64(T.json(T.claims(extra: ["iss": Self.issuer, "aud": Self.audience])).utf8) + "."
        await Self.expect(verifier, none, rejectedWith: .algorithmNotAllowed)
        let jwkText = Array(T.json(Self.jwk(Self.keyA, kid: "a")).utf8)
        let point = Array(Self.keyA.publicKey.x963Representation)
        for secret in [jwkText, point, Array(Self.keyA.publicKey.pemRepresentation.utf8)] {
            let forged = try T.token(
                header: ["alg": "HS256", "kid": "a"], claims: T.claims(extra: ["iss": Self.issuer, "aud": Self.audience]),
                signer: T.hs256(secret))
            await Self.expect(verifier, forged, rejectedWith: .algorithmNotAllowed)
        }
        // No refresh for any of those: each named a known key.
        #expect(provider.jwksFetches == 1)
        // A token claiming another issuer never causes a fetch, whatever its kid.
        await Self.expect(verifier, try Self.token(kid: "zzz", key: Self.stranger, extra: ["iss": "https://evil.example"]), rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 1)
    }

    @Test func discoveryDocumentIsValidated() async throws {
        let good = try Self.token(kid: "a", key: Self.keyA)
        let cases: [(String, (inout FakeProvider.State) -> Void)] = [
            ("issuer differs by a slash", { $0.discovery["issuer"] = Self.issuer + "/" }),
            ("another issuer", { $0.discovery["issuer"] = "https://evil.example" }),
            ("no issuer", { $0.discovery["issuer"] = nil }),
            ("no jwks_uri", { $0.discovery["jwks_uri"] = nil }),
            ("http jwks_uri", { $0.discovery["jwks_uri"] = "http://keys.example.test/jwks" }),
            ("relative jwks_uri", { $0.discovery["jwks_uri"] = "/jwks" }),
            ("redirect", { $0.status[Self.discoveryURL] = 302 }),
            ("server error", { $0.status[Self.discoveryURL] = 500 }),
            ("JWKS 404", { $0.status["https://keys.example.test/jwks"] = 404 }),
            ("no usable key", { $0.keys = [["kty": "oct", "k": "c2VjcmV0", "kid": "a"]] }),
            ("too many keys", { s in s.keys = (0...OIDCSettings.maximumKeyCount).map { Self.jwk(Self.keyA, kid: "k\($0)") } }),
            ("down", { $0.down = true }),
        ]
        for (name, breakIt) in cases {
            let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
            provider.update(breakIt)
            let verifier = try Self.make(provider, clock: TestClock())
            #expect(await verifier.refreshNow() == false, "\(name)")
            await Self.expectUnavailable(verifier, good)
        }
    }

    /// Keys this verifier cannot use are skipped, not fatal: one odd key at the provider must
    /// not lock every user out.
    @Test func unusableKeysAreSkipped() async throws {
        let short: [String: String] = ["kty": "RSA", "kid": "short", "n": T.b64([UInt8](repeating: 0xC3, count: 128)), "e": "AQAB"]
        let privateKey = Self.jwk(Self.keyB, kid: "leaky", extra: ["d": "AAAA"])
        let encryption = Self.jwk(Self.keyB, kid: "enc", extra: ["use": "enc"])
        let p384: [String: String] = ["kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"]
        let provider = FakeProvider(keys: [short, privateKey, encryption, p384, Self.jwk(Self.keyA, kid: "a"), Self.jwk(Self.keyB, kid: "a")])
        let verifier = try Self.make(provider, clock: TestClock())
        #expect(try await verifier.verify(try Self.token(kid: "a", key: Self.keyA)).subject == "alice")
        // The repeated kid is skipped: the first key with that kid stays the only one.
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyB), rejectedWith: .invalidSignature)
        await Self.expect(verifier, try Self.token(kid: "leaky", key: Self.keyB), rejectedWith: .unknownKey)
    }

    // MARK: refresh

    @Test func rotationIsPickedUpOnAnUnknownKidAtMostOncePerInterval() async throws {
        let clock = TestClock()
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
        let verifier = try Self.make(provider, clock: clock, refresh: .seconds(30))
        #expect(try await verifier.verify(try Self.token(kid: "a", key: Self.keyA)).subject == "alice")
        #expect(provider.jwksFetches == 1)

        // The provider rotates: b replaces a.
        provider.update { $0.keys = [Self.jwk(Self.keyB, kid: "b")] }
        let newToken = try Self.token(kid: "b", key: Self.keyB, sub: "bob")
        // Too soon after the last fetch: refused without fetching.
        clock.advance(.seconds(10))
        await Self.expect(verifier, newToken, rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 1)
        // Later: one refresh, and the new key works without a restart.
        clock.advance(.seconds(21))
        #expect(try await verifier.verify(newToken).subject == "bob")
        #expect(provider.jwksFetches == 2)
        // The withdrawn key no longer verifies (unknown kid again, rate-limited: no fetch).
        await Self.expect(verifier, try Self.token(kid: "a", key: Self.keyA), rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 2)
        // Junk kids right after a refresh do not fetch.
        for i in 0..<20 { await Self.expect(verifier, try Self.token(kid: "junk\(i)", key: Self.stranger), rejectedWith: .unknownKey) }
        #expect(provider.jwksFetches == 2)
    }

    @Test func concurrentUnknownKidsShareOneRefresh() async throws {
        let clock = TestClock()
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
        let verifier = try Self.make(provider, clock: clock)
        #expect(await verifier.refreshNow())
        clock.advance(.seconds(60))
        provider.update {
            $0.keys = [Self.jwk(Self.keyA, kid: "a"), Self.jwk(Self.keyB, kid: "b")]
            $0.delay = .milliseconds(200)
        }
        let good = try Self.token(kid: "b", key: Self.keyB, sub: "bob")
        let junk = try (0..<40).map { try Self.token(kid: "junk\($0)", key: Self.stranger) }
        let outcomes = await withTaskGroup(of: String.self) { group in
            for t in junk + [good] {
                group.addTask {
                    do { return try await verifier.verify(t).subject } catch { return "\(error)" }
                }
            }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == "bob" }.count == 1)
        #expect(outcomes.filter { $0 == "\(UserTokenError.unknownKey)" }.count == 40)
        #expect(provider.jwksFetches == 2)
    }

    @Test func aFailedRefreshKeepsTheOldKeysAndBacksOff() async throws {
        let clock = TestClock()
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
        let verifier = try Self.make(provider, clock: clock)
        #expect(await verifier.refreshNow())
        clock.advance(.seconds(31))
        provider.update { $0.status["https://keys.example.test/jwks"] = 503 }
        await Self.expect(verifier, try Self.token(kid: "b", key: Self.keyB), rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 2)
        // The old key still works.
        #expect(try await verifier.verify(try Self.token(kid: "a", key: Self.keyA)).subject == "alice")
        // After a failure the next try waits 1 s, then 2 s…
        await Self.expect(verifier, try Self.token(kid: "b", key: Self.keyB), rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 2)
        clock.advance(.milliseconds(1100))
        await Self.expect(verifier, try Self.token(kid: "b", key: Self.keyB), rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 3)
        clock.advance(.milliseconds(1100))
        await Self.expect(verifier, try Self.token(kid: "b", key: Self.keyB), rejectedWith: .unknownKey)
        #expect(provider.jwksFetches == 3)
        clock.advance(.seconds(1))
        provider.update {
            $0.status = [:]
            $0.keys = [Self.jwk(Self.keyB, kid: "b")]
        }
        #expect(try await verifier.verify(try Self.token(kid: "b", key: Self.keyB, sub: "bob")).subject == "bob")
        #expect(provider.jwksFetches == 4)
    }

    @Test func unreachableAtStartIsRetriedOnUseWithBackoff() async throws {
        let clock = TestClock()
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
        provider.update { $0.down = true }
        let verifier = try Self.make(provider, clock: clock)
        let good = try Self.token(kid: "a", key: Self.keyA)
        await Self.expectUnavailable(verifier, good)
        await Self.expectUnavailable(verifier, good)
        #expect(provider.discoveryFetches == 1)
        clock.advance(.milliseconds(1100))
        await Self.expectUnavailable(verifier, good)
        #expect(provider.discoveryFetches == 2)
        provider.update { $0.down = false }
        clock.advance(.milliseconds(1100))
        await Self.expectUnavailable(verifier, good)  // 2 s backoff now
        #expect(provider.discoveryFetches == 2)
        clock.advance(.seconds(1))
        #expect(try await verifier.verify(good).subject == "alice")
        #expect(provider.discoveryFetches == 3)
    }

    /// A provider that answers too slowly fails the refresh within twice the request timeout,
    /// whatever the fetcher does, so the requests waiting for it are not held.
    @Test func aSlowProviderTimesOut() async throws {
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
        provider.update { $0.delay = .seconds(30) }
        let verifier = try Self.make(provider, clock: TestClock(), timeout: .milliseconds(100))
        let started = ContinuousClock.now
        await Self.expectUnavailable(verifier, try Self.token(kid: "a", key: Self.keyA))
        #expect(ContinuousClock.now - started < .seconds(20), "the provider answers after 30 s")
    }

    @Test func oldKeysAreRefreshedInTheBackground() async throws {
        let clock = TestClock()
        let provider = FakeProvider(keys: [Self.jwk(Self.keyA, kid: "a")])
        let verifier = try Self.make(provider, clock: clock)
        let good = try Self.token(kid: "a", key: Self.keyA)
        #expect(try await verifier.verify(good).subject == "alice")
        clock.advance(.seconds(3601))
        // Answered with the held keys at once; a refresh starts behind it.
        #expect(try await verifier.verify(good).subject == "alice")
        for _ in 0..<200 where provider.jwksFetches < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(provider.jwksFetches == 2)
    }
}
