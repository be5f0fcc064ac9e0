import AsyncHTTPClient
import Foundation
import HTTPClientSupport
import Logging
import NIOCore
import NIOSSL

// MARK: - Settings

/// `DEVBOX_USER_OIDC_ISSUER` and its companions: user tokens verified against the signing
/// keys an OpenID provider publishes (discovered from `<issuer>/.well-known/openid-configuration`).
public struct OIDCSettings: Sendable, Equatable {
    /// Exactly as configured: tokens' `iss` and the discovery document's `issuer` must equal it.
    public var issuer: String
    /// Tokens' `aud` must contain it. Required: without it any token the provider issues for
    /// any other application would open devbox too.
    public var audience: String
    /// The fewest seconds between two key refreshes (an unknown `kid` asks for one).
    public var minimumRefreshInterval: Duration
    /// Keys older than this are refreshed in the background, so a key the provider withdrew
    /// stops being accepted within this time even if no unknown `kid` shows up.
    public var maximumKeyAge: Duration = .seconds(3600)
    /// Connect and read timeout of each fetch, and twice it for the whole exchange.
    public var requestTimeout: Duration = .seconds(5)
    /// A PEM file of CA certificates trusted for the provider's https endpoints instead of the
    /// system's roots (`DEVBOX_USER_OIDC_CA_FILE`); nil: the system's roots.
    public var caFile: String?

    public static let defaultMinimumRefreshSeconds = 30
    /// Largest discovery document or JWKS read.
    public static let maximumDocumentSize = 256 * 1024
    /// Most keys a JWKS may hold.
    public static let maximumKeyCount = 100

    public init(issuer: String, audience: String, minimumRefreshInterval: Duration = .seconds(defaultMinimumRefreshSeconds))
        throws(OIDCConfigurationError)
    {
        try Self.validateIssuer(issuer)
        guard !audience.isEmpty else { throw .missingAudience }
        guard minimumRefreshInterval >= .seconds(1) else { throw .invalidRefreshInterval(String(describing: minimumRefreshInterval)) }
        self.issuer = issuer
        self.audience = audience
        self.minimumRefreshInterval = minimumRefreshInterval
    }

    /// Reads `DEVBOX_USER_OIDC_ISSUER`, `DEVBOX_USER_OIDC_AUDIENCE`,
    /// `DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS` and `DEVBOX_USER_OIDC_CA_FILE` (read and parsed
    /// here, so a bad file stops the start); nil when no issuer is set. Refuses an issuer
    /// combined with `DEVBOX_USER_JWT_SECRET` or `DEVBOX_USER_JWKS_FILE` (one source of user
    /// identity), and any other of these settings without an issuer.
    public static func fromEnvironment(_ env: [String: String]) throws(OIDCConfigurationError) -> OIDCSettings? {
        func value(_ name: String) -> String? {
            guard let v = env[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        let refresh = value("DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS")
        let caFile = value("DEVBOX_USER_OIDC_CA_FILE")
        guard let issuer = value("DEVBOX_USER_OIDC_ISSUER") else {
            if value("DEVBOX_USER_OIDC_AUDIENCE") != nil || refresh != nil || caFile != nil { throw .issuerMissing }
            return nil
        }
        let conflicting = ["DEVBOX_USER_JWT_SECRET", "DEVBOX_USER_JWKS_FILE"].filter { value($0) != nil }
        guard conflicting.isEmpty else { throw .conflictsWithStaticKeys(conflicting) }
        guard let audience = value("DEVBOX_USER_OIDC_AUDIENCE") else { throw .missingAudience }
        var interval = Duration.seconds(defaultMinimumRefreshSeconds)
        if let refresh {
            guard let seconds = Int(refresh), (1...86_400).contains(seconds) else { throw .invalidRefreshInterval(refresh) }
            interval = .seconds(seconds)
        }
        var settings = try OIDCSettings(issuer: issuer, audience: audience, minimumRefreshInterval: interval)
        if let caFile {
            _ = try loadCertificates(caFile)
            settings.caFile = caFile
        }
        return settings
    }

    /// The certificates of a PEM file (at least one).
    static func loadCertificates(_ path: String) throws(OIDCConfigurationError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw .invalidCAFile(path)
        }
        guard !certificates.isEmpty else { throw .invalidCAFile(path) }
        return certificates
    }

    /// The discovery document's address: the issuer, less any trailing `/`, then
    /// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0, section 4).
    public var discoveryURL: String {
        var base = Substring(issuer)
        while base.hasSuffix("/") { base = base.dropLast() }
        return base + "/.well-known/openid-configuration"
    }

    /// Whether the issuer is plain HTTP on a loopback address (allowed for tests and for a
    /// provider on the same host); then the JWKS may be plain HTTP on loopback too.
    public var isLoopbackHTTP: Bool {
        guard let url = URLComponents(string: issuer), url.scheme?.lowercased() == "http" else { return false }
        return Self.isLoopback(url.host)
    }

    /// An issuer is an absolute `https` URL with a host and neither query, fragment nor user
    /// info; `http` only on a loopback host (`localhost`, 127.0.0.0/8, `::1`).
    static func validateIssuer(_ issuer: String) throws(OIDCConfigurationError) {
        guard let url = URLComponents(string: issuer), let scheme = url.scheme?.lowercased(),
            let host = url.host, !host.isEmpty
        else { throw .invalidIssuer(issuer, "it is not an absolute URL") }
        guard url.query == nil, url.fragment == nil, url.user == nil, url.password == nil else {
            throw .invalidIssuer(issuer, "an issuer has no query, fragment or user info")
        }
        switch scheme {
        case "https": return
        case "http" where isLoopback(host): return
        case "http": throw .invalidIssuer(issuer, "it must be https (plain http only on a loopback address)")
        default: throw .invalidIssuer(issuer, "it must be https")
        }
    }

    /// The `jwks_uri` rule: https, or plain http on a loopback host when the issuer itself is
    /// plain http on loopback.
    func jwksURIProblem(_ uri: String) -> String? {
        guard let url = URLComponents(string: uri), let scheme = url.scheme?.lowercased(),
            let host = url.host, !host.isEmpty, url.user == nil, url.password == nil, url.fragment == nil
        else { return "jwks_uri is not an absolute URL" }
        if scheme == "https" { return nil }
        if scheme == "http", isLoopbackHTTP, Self.isLoopback(host) { return nil }
        return "jwks_uri is not https"
    }

    static func isLoopback(_ host: String?) -> Bool {
        guard var host = host?.lowercased() else { return false }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { UInt8($0) != nil } && octets[0] == "127"
    }
}

/// A `DEVBOX_USER_OIDC_*` setting that cannot work. One line each.
public enum OIDCConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case issuerMissing
    case missingAudience
    case conflictsWithStaticKeys([String])
    case invalidIssuer(String, String)
    case invalidRefreshInterval(String)
    case invalidCAFile(String)

    public var description: String {
        switch self {
        case .issuerMissing:
            "DEVBOX_USER_OIDC_AUDIENCE, DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS and DEVBOX_USER_OIDC_CA_FILE need DEVBOX_USER_OIDC_ISSUER"
        case .invalidCAFile(let path):
            "DEVBOX_USER_OIDC_CA_FILE '\(path)' is not a readable PEM file of CA certificates"
        case .missingAudience:
            "DEVBOX_USER_OIDC_ISSUER needs DEVBOX_USER_OIDC_AUDIENCE (the client id or API audience devbox's tokens carry in aud)"
        case .conflictsWithStaticKeys(let names):
            "DEVBOX_USER_OIDC_ISSUER cannot be combined with \(names.joined(separator: " and ")): choose one source of user keys"
        case .invalidIssuer(let issuer, let why):
            "DEVBOX_USER_OIDC_ISSUER '\(issuer)' is not usable: \(why)"
        case .invalidRefreshInterval(let value):
            "DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS must be a whole number of seconds from 1 to 86400, got '\(value)'"
        }
    }
}

// MARK: - Fetching

/// GETs a small document. The HTTP one is `OIDCHTTPFetcher`; tests inject their own.
public protocol OIDCFetching: Sendable {
    /// The answer's status and body; a body longer than `limit` bytes fails with
    /// `OIDCFetchError`, as does no answer at all.
    func get(_ url: String, limit: Int) async throws -> (status: Int, body: [UInt8])
}

/// Why a fetch got no usable answer, in a few words (never a header, never a body).
public struct OIDCFetchError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Fetches over async-http-client (`HTTPClientSupport`): system trust roots, no proxy, no
/// cookies, redirects answered rather than followed, bounded connect/read/overall times, and
/// the body read only up to the limit.
public final class OIDCHTTPFetcher: OIDCFetching {
    private let http: OwnedHTTPClient
    private let timeout: Duration

    /// - Parameter caFile: a PEM file of CA certificates trusted instead of the system's roots.
    public init(timeout: Duration = .seconds(5), caFile: String? = nil) throws(OIDCConfigurationError) {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        self.timeout = timeout
        var c = HTTPClient.Configuration.devbox(connectTimeout: seconds, readTimeout: seconds, followRedirects: false)
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try OIDCSettings.loadCertificates(caFile))
            c.tlsConfiguration = tls
        }
        let configuration = c
        http = OwnedHTTPClient(configuration: configuration)
    }

    public func get(_ url: String, limit: Int) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "devbox")
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        do {
            let response = try await http.client.execute(request, timeout: .fractionalSeconds(seconds * 2))
            let body = try await response.body.collect(upTo: limit)
            return (Int(response.status.code), Array(body.readableBytesView))
        } catch is NIOTooManyBytesError {
            throw OIDCFetchError("the answer is larger than \(limit / 1024) KiB")
        } catch {
            throw OIDCFetchError(HTTPFailure.reason(error))
        }
    }
}

// MARK: - Verifier

/// The issuer has not answered yet (or never validly): user tokens cannot be judged. Not a
/// verdict on the token — the caller should answer 503, not 401.
public struct OIDCUnavailableError: Error, Sendable, CustomStringConvertible {
    public var description: String { "user authentication is unavailable: the OpenID provider's keys could not be fetched" }
}

/// Verifies user tokens against an OpenID provider's published keys.
///
/// - Discovery: `<issuer>/.well-known/openid-configuration` must be JSON whose `issuer` is the
///   configured issuer exactly and whose `jwks_uri` follows `OIDCSettings.jwksURIProblem`.
/// - Keys are cached. A token naming an unknown `kid` (or, without `kid`, matching no single
///   key) makes one refresh — discovery and JWKS again — shared by every request waiting for
///   it, at most once per `minimumRefreshInterval`; keys older than `maximumKeyAge` are
///   refreshed in the background. A failed refresh keeps the keys already held, and retries
///   back off (1, 2, 4 … s up to `minimumRefreshInterval`).
/// - Until a first fetch succeeds, tokens are answered with `OIDCUnavailableError`.
/// - Tokens: RS256 or ES256 (P-256) only — never `none`, never HMAC — with `exp` (and `nbf`)
///   within 60 s of leeway, `iss` equal to the issuer, `aud` containing the audience, and a
///   non-empty `sub`, which is the user (as with the static keys).
public final class OIDCUserTokenVerifier: Sendable {
    public let settings: OIDCSettings
    let store: OIDCKeyStore
    private let logger: Logger

    public init(
        settings: OIDCSettings, fetcher: any OIDCFetching, logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.settings = settings
        self.logger = logger
        self.store = OIDCKeyStore(settings: settings, fetcher: fetcher, logger: logger, now: now)
    }

    /// Starts discovery in the background (at service start): the service does not wait for
    /// the provider, and a failure is logged and retried when a token needs the keys.
    public func start() {
        let store = self.store
        Task { _ = await store.refresh(after: nil) }
    }

    /// Fetches now (waiting for a fetch in flight), unless rate-limited; for tests and start-up.
    @discardableResult
    public func refreshNow() async -> Bool {
        await store.refresh(after: nil) != nil
    }

    /// Verifies a bearer token (a leading `Bearer ` is tolerated).
    /// - Throws: `UserTokenError` (a verdict: 401) or `OIDCUnavailableError` (no keys: 503).
    public func verify(_ bearer: String, now: Date = .now) async throws -> VerifiedUser {
        var held = await store.current()
        if held == nil {
            held = await store.refresh(after: nil)
        }
        guard let keys = held else { throw OIDCUnavailableError() }
        if await store.isStale(keys) {
            let store = self.store
            Task { _ = await store.refresh(after: keys.generation) }
        }
        do {
            return try await keys.verifier.verify(bearer, now: now)
        } catch UserTokenError.unknownKey {
            // Only a token that claims to come from this issuer is worth a fetch.
            guard Self.unverifiedIssuer(of: bearer) == settings.issuer,
                let fresh = await store.refresh(after: keys.generation), fresh.generation != keys.generation
            else { throw UserTokenError.unknownKey }
            return try await fresh.verifier.verify(bearer, now: now)
        }
    }

    /// The `iss` of a token's payload, unverified (only to decide whether to fetch).
    static func unverifiedIssuer(of bearer: String) -> String? {
        var token = Substring(bearer)
        if token.utf8.count > 7, token.prefix(7).lowercased() == "bearer " { token = token.dropFirst(7) }
        guard token.utf8.count <= UserTokenVerifier.maximumTokenLength else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        struct Payload: Decodable { let iss: String? }
        guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1]), padded: false),
            let payload = try? JSONDecoder().decode(Payload.self, from: Data(bytes))
        else { return nil }
        return payload.iss
    }
}

/// The cached keys and the refresh policy. One refresh at a time; callers join it.
actor OIDCKeyStore {
    struct Keys: Sendable {
        let verifier: UserTokenVerifier
        let fetchedAt: ContinuousClock.Instant
        /// Grows by one with every successful refresh.
        let generation: Int
    }

    private let settings: OIDCSettings
    private let fetcher: any OIDCFetching
    private let logger: Logger
    private let now: @Sendable () -> ContinuousClock.Instant
    private var keys: Keys?
    private var inFlight: Task<Void, Never>?
    private var lastAttempt: ContinuousClock.Instant?
    private var consecutiveFailures = 0

    init(
        settings: OIDCSettings, fetcher: any OIDCFetching, logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant
    ) {
        self.settings = settings
        self.fetcher = fetcher
        self.logger = logger
        self.now = now
    }

    func current() -> Keys? { keys }

    func isStale(_ keys: Keys) -> Bool { now() - keys.fetchedAt >= settings.maximumKeyAge }

    /// When the next fetch may start: `minimumRefreshInterval` after the last one, or after a
    /// failure 1, 2, 4 … s (never more than `minimumRefreshInterval`).
    private var nextAllowed: ContinuousClock.Instant? {
        guard let lastAttempt else { return nil }
        guard consecutiveFailures > 0 else { return lastAttempt + settings.minimumRefreshInterval }
        let backoff = Duration.seconds(1 << min(consecutiveFailures - 1, 20))
        return lastAttempt + min(backoff, settings.minimumRefreshInterval)
    }

    /// Refreshes the keys unless someone already did since `generation` was seen (then those
    /// keys are answered at once), joins a refresh in flight, or — when the last fetch was too
    /// recent — answers the keys held. nil while no fetch has ever succeeded.
    func refresh(after generation: Int?) async -> Keys? {
        if let keys, let generation, keys.generation > generation { return keys }
        if let inFlight {
            await inFlight.value
            return keys
        }
        if let nextAllowed, now() < nextAllowed { return keys }
        lastAttempt = now()
        let settings = self.settings
        let fetcher = self.fetcher
        let task = Task {
            // The whole refresh (discovery and JWKS) is bounded: requests wait for it.
            let result = await Self.withDeadline(settings.requestTimeout * 2) {
                await Self.fetchKeys(settings: settings, fetcher: fetcher)
            }
            self.finish(result)
        }
        inFlight = task
        await task.value
        return keys
    }

    private func finish(_ result: Result<UserTokenVerifier, OIDCFetchError>) {
        inFlight = nil
        switch result {
        case .success(let verifier):
            let first = keys == nil
            let generation = (keys?.generation ?? 0) + 1
            keys = Keys(verifier: verifier, fetchedAt: now(), generation: generation)
            consecutiveFailures = 0
            let kids = verifier.keyIdentifiers.joined(separator: ", ")
            logger.log(
                level: first ? .notice : .info,
                "OIDC signing keys \(first ? "fetched" : "refreshed") for issuer \(settings.issuer): \(verifier.keyIdentifiers.count) usable (kid \(kids))")
        case .failure(let error):
            consecutiveFailures += 1
            let retry = nextAllowed.map { $0 - now() } ?? .zero
            let wait = max(0, Int((retry / .seconds(1)).rounded(.up)))
            if let keys {
                let age = Int((now() - keys.fetchedAt).components.seconds)
                logger.warning(
                    "OIDC key refresh for issuer \(settings.issuer) failed: \(error); keeping the keys fetched \(age) s ago (next try allowed in \(wait) s)")
            } else {
                logger.warning(
                    "OIDC discovery for issuer \(settings.issuer) failed: \(error); user bearer tokens are answered 503 until it succeeds (next try allowed in \(wait) s, on the next token)")
            }
        }
    }

    /// `body`'s result, or "timed out" once `limit` has passed (`body` is then cancelled), so a
    /// provider that trickles its answer cannot hold the requests waiting for the refresh.
    static func withDeadline<T: Sendable>(
        _ limit: Duration, _ body: @escaping @Sendable () async -> Result<T, OIDCFetchError>
    ) async -> Result<T, OIDCFetchError> {
        await withTaskGroup(of: Result<T, OIDCFetchError>?.self) { group in
            group.addTask { await body() }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(OIDCFetchError("timed out after \(limit.components.seconds) s"))
        }
    }

    /// Discovery, then the JWKS it names, both validated.
    static func fetchKeys(settings: OIDCSettings, fetcher: any OIDCFetching) async -> Result<UserTokenVerifier, OIDCFetchError> {
        struct Discovery: Decodable {
            let issuer: String?
            let jwks_uri: String?
        }
        do {
            let discoveryBody = try await get(settings.discoveryURL, what: "discovery document", fetcher: fetcher)
            guard let discovery = try? JSONDecoder().decode(Discovery.self, from: Data(discoveryBody)) else {
                throw OIDCFetchError("the discovery document is not a JSON object")
            }
            guard let issuer = discovery.issuer else { throw OIDCFetchError("the discovery document has no issuer") }
            guard issuer == settings.issuer else {
                throw OIDCFetchError(
                    "the discovery document names issuer '\(issuer.prefix(200))', not the configured '\(settings.issuer)' (they must be equal exactly)")
            }
            guard let jwksURI = discovery.jwks_uri else { throw OIDCFetchError("the discovery document has no jwks_uri") }
            if let problem = settings.jwksURIProblem(jwksURI) {
                throw OIDCFetchError(
                    settings.isLoopbackHTTP ? "\(problem) (plain http only on loopback)" : "\(problem) (it must be https)")
            }
            let jwksBody = try await get(jwksURI, what: "JWKS", fetcher: fetcher)
            struct Count: Decodable { let keys: [Ignored] }
            struct Ignored: Decodable {}
            guard let count = try? JSONDecoder().decode(Count.self, from: Data(jwksBody)) else {
                throw OIDCFetchError("the JWKS is not a JSON object with a \"keys\" array")
            }
            guard count.keys.count <= OIDCSettings.maximumKeyCount else {
                throw OIDCFetchError("the JWKS holds \(count.keys.count) keys, more than \(OIDCSettings.maximumKeyCount)")
            }
            do {
                return .success(
                    try await UserTokenVerifier(
                        remoteJWKS: String(decoding: jwksBody, as: UTF8.self), issuer: settings.issuer,
                        audience: settings.audience))
            } catch {
                throw OIDCFetchError("the JWKS is not usable: \(error)")
            }
        } catch let error as OIDCFetchError {
            return .failure(error)
        } catch {
            return .failure(OIDCFetchError("\(type(of: error))"))
        }
    }

    private static func get(_ url: String, what: String, fetcher: any OIDCFetching) async throws -> [UInt8] {
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await fetcher.get(url, limit: OIDCSettings.maximumDocumentSize)
        } catch let error as OIDCFetchError {
            throw OIDCFetchError("\(what): \(error.reason)")
        } catch {
            throw OIDCFetchError("\(what): \(HTTPFailure.reason(error))")
        }
        switch answer.status {
        case 200: return answer.body
        case 300..<400: throw OIDCFetchError("\(what): answered \(answer.status) (redirects are not followed)")
        default: throw OIDCFetchError("\(what): answered \(answer.status)")
        }
    }
}
