import DevboxModel
import DevboxSecurity
import Foundation
import Logging

/// Who is calling: the provider token (its hash looked up in the cached live hashes) and an
/// optional user bearer token (the configured verifier) → `Principal`. Used by the REST
/// API's and `/mcp`'s auth middleware, the dashboard's sign-in and `devbox mcp`'s local reads.
public final class Authenticator: Sendable, LoggingService {
    let db: AppDatabase
    let userVerifier: (any UserTokenVerifying)?
    let logger: Logger
    let tokenCache = TokenCache()

    public init(database: AppDatabase, userVerifier: (any UserTokenVerifying)?, logger: Logger) {
        self.db = database
        self.userVerifier = userVerifier
        self.logger = logger
    }

    /// Whether user bearer tokens (JWT) can be verified here.
    public var acceptsUserTokens: Bool { userVerifier != nil }

    /// Resolves the caller from the provider token and an optional bearer token.
    /// Neither token is stored or logged.
    public func authenticate(providerToken: String?, bearer: String?) async throws(ServiceError) -> Principal {
        try await authenticateWithExpiry(providerToken: providerToken, bearer: bearer).principal
    }

    /// `authenticate`, also answering the bearer token's expiry (nil without a bearer).
    func authenticateWithExpiry(
        providerToken: String?, bearer: String?
    ) async throws(ServiceError) -> (principal: Principal, bearerExpiresAt: Date?) {
        guard let providerToken, !providerToken.isEmpty else {
            throw .unauthorized("missing X-Provider-Token header")
        }
        let hash = ProviderToken.hash(providerToken)
        let match: TokenCache.Entry?
        do {
            match = try await tokenCache.lookup(
                hash: hash, version: { self.db.dataVersion() }, authVersion: { self.db.authVersion() },
                load: { try await self.db.liveTokenHashes() })
        } catch {
            logger.error("token lookup failed: \(error)")
            throw .unavailable("authentication is unavailable, try again")
        }
        guard let match else { throw .unauthorized("invalid provider token") }
        var subject = ""
        var bearerExpiresAt: Date?
        if let bearer {
            guard let userVerifier else {
                throw .unauthorized(
                    "user bearer tokens are not accepted: no DEVBOX_USER_JWT_SECRET, DEVBOX_USER_JWKS_FILE or DEVBOX_USER_OIDC_ISSUER configured")
            }
            do {
                (subject, bearerExpiresAt) = try await userVerifier.verify(bearer: bearer)
            } catch is UserVerifierUnavailable {
                throw .unavailable("user authentication is unavailable (the identity provider's keys could not be fetched), try again")
            } catch {
                throw .unauthorized("invalid user bearer token")
            }
            guard !subject.isEmpty else { throw .unauthorized("invalid user bearer token") }
        }
        let sub = subject
        do {
            let userId = try await tokenCache.user(providerId: match.providerId, subject: sub) {
                try await self.db.resolveUser(providerId: match.providerId, subject: sub)
            }
            return (Principal(providerId: match.providerId, providerTokenId: match.tokenId, userId: userId), bearerExpiresAt)
        } catch {
            logger.error("user lookup failed: \(error)")
            throw .unavailable("authentication is unavailable, try again")
        }
    }
}
