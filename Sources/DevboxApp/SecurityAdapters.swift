import DevboxSecurity
import DevboxService
import Foundation
import Logging

/// Fernet key ring as the service's secret cipher.
public struct FernetCipher: SecretCipher {
    let ring: FernetKeyRing

    public init(ring: FernetKeyRing) { self.ring = ring }

    static func load(environmentKeys: String?, dataDirectory: String) throws -> FernetCipher {
        do {
            var env: [String: String] = [:]
            if let environmentKeys { env[FernetKeyRing.environmentVariable] = environmentKeys }
            return FernetCipher(
                ring: try FernetKeyRing.loadOrCreate(dataDirectory: URL(fileURLWithPath: dataDirectory), environment: env))
        } catch {
            throw ConfigurationError("\(error)")
        }
    }

    public func seal(_ plaintext: String) throws -> String { ring.encrypt(Array(plaintext.utf8)) }
    public func open(_ token: String) throws -> String { String(decoding: try ring.decrypt(token), as: UTF8.self) }
}

/// The user token verifier the configuration asks for: an OpenID provider's keys
/// (`DEVBOX_USER_OIDC_ISSUER`, discovery started in the background at once), or a static
/// secret and/or JWKS file, or none.
func makeUserVerifier(configuration: ServerConfiguration, logger: Logger) async throws -> (any UserTokenVerifying)? {
    if let oidc = configuration.userOIDC {
        let fetcher: OIDCHTTPFetcher
        do {
            fetcher = try OIDCHTTPFetcher(timeout: oidc.requestTimeout, caFile: oidc.caFile)
        } catch {
            throw ConfigurationError(error.description)
        }
        let verifier = OIDCUserTokenVerifier(settings: oidc, fetcher: fetcher, logger: logger)
        logger.notice("user tokens: verified with the keys of OpenID provider \(oidc.issuer) (audience \(oidc.audience))")
        verifier.start()
        return OIDCUserVerifier(verifier: verifier)
    }
    return try await JWTUserVerifier.make(secret: configuration.userJWTSecret, jwksFile: configuration.userJWKSFile)
}

/// User bearer tokens verified against an OpenID provider's published keys.
struct OIDCUserVerifier: UserTokenVerifying {
    let verifier: OIDCUserTokenVerifier

    func subject(ofBearer token: String) async throws -> String {
        try await verify(bearer: token).subject
    }

    func verify(bearer token: String) async throws -> (subject: String, expiresAt: Date?) {
        do {
            let v = try await verifier.verify(token)
            return (v.subject, v.expiresAt)
        } catch is OIDCUnavailableError {
            throw UserVerifierUnavailable()
        }
    }
}

/// jwt-kit verification of user bearer tokens.
struct JWTUserVerifier: UserTokenVerifying {
    let verifier: UserTokenVerifier

    static func make(secret: String?, jwksFile: String?) async throws -> JWTUserVerifier? {
        guard secret != nil || jwksFile != nil else { return nil }
        var jwks: String?
        if let jwksFile {
            guard let data = FileManager.default.contents(atPath: jwksFile) else {
                throw ConfigurationError("DEVBOX_USER_JWKS_FILE '\(jwksFile)' cannot be read")
            }
            jwks = String(decoding: data, as: UTF8.self)
        }
        do {
            return JWTUserVerifier(verifier: try await UserTokenVerifier(hs256Secret: secret, jwksJSON: jwks))
        } catch {
            throw ConfigurationError("user token keys are invalid: \(error)")
        }
    }

    func subject(ofBearer token: String) async throws -> String {
        try await verifier.verify(token).subject
    }

    func verify(bearer token: String) async throws -> (subject: String, expiresAt: Date?) {
        let v = try await verifier.verify(token)
        return (v.subject, v.expiresAt)
    }
}
