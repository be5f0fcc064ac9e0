import Crypto
import DevboxSecurity
import Foundation
import Logging

/// A signed-in dashboard browser: who it acts for, until when, and the CSRF token its
/// forms must carry.
public struct DashboardSession: Sendable, Equatable {
    public var principal: Principal
    public var expiresAt: Date
    /// Derived from the cookie's secret id (HMAC), so it is bound to this session and
    /// nothing extra is stored.
    public var csrfToken: String
}

/// The dashboard's sign-in: a cookie session made from the same credentials the REST API
/// checks (`Authenticator`), looked up per request, signed out; the CSRF token of its forms.
public final class DashboardAuth: Sendable, LoggingService {
    let authenticator: Authenticator
    let db: AppDatabase
    let auditor: Auditor
    let logger: Logger

    public init(authenticator: Authenticator, database: AppDatabase, auditor: Auditor, logger: Logger) {
        self.authenticator = authenticator
        self.db = database
        self.auditor = auditor
        self.logger = logger
    }

    /// Whether user bearer tokens (JWT) can be verified here (the sign-in form offers the field).
    public var acceptsUserTokens: Bool { authenticator.acceptsUserTokens }

    /// A dashboard session never lasts longer than this (nor past the user token's `exp`).
    public static let dashboardSessionLifetime: TimeInterval = 12 * 3600

    /// Signs a browser in: the provider token (and optional user token) are checked exactly
    /// as the REST API checks `X-Provider-Token` and `Authorization: Bearer`; then a random
    /// session id is made. The answer's `cookie` is the only copy of that id: the database
    /// keeps its SHA-256, the principal and the expiry, never a token.
    func signInDashboardUnaudited(
        providerToken: String, userToken: String?
    ) async throws(ServiceError) -> (cookie: String, session: DashboardSession) {
        let provider = providerToken.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !provider.isEmpty else {
            throw .validation(field: "provider_token", message: "enter a provider token")
        }
        guard provider.utf8.count <= 512 else { throw .unauthorized("invalid provider token") }
        let user = userToken?.trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty
        if let user, user.utf8.count > 16 * 1024 { throw .unauthorized("invalid user bearer token") }
        let (principal, bearerExpiry) = try await authenticator.authenticateWithExpiry(providerToken: provider, bearer: user)
        let now = Date()
        var expires = now.addingTimeInterval(Self.dashboardSessionLifetime)
        if let bearerExpiry, bearerExpiry < expires { expires = bearerExpiry }
        guard expires > now else { throw .unauthorized("invalid user bearer token") }
        let cookie = Identifier.make("dbs_", length: 52)
        let record = DashboardSessionRecord(
            idHash: ProviderToken.hash(cookie), providerId: principal.providerId, providerTokenId: principal.providerTokenId,
            userId: principal.userId, createdAt: now, expiresAt: expires)
        do { try await db.insertDashboardSession(record) } catch { throw storageFailure(error) }
        logger.info("dashboard sign-in", metadata: ["user": "\(principal.userId)"])
        return (cookie, DashboardSession(principal: principal, expiresAt: expires, csrfToken: Self.csrfToken(cookie: cookie)))
    }

    /// The live session a cookie names, or nil (unknown, expired, signed out, or its provider
    /// token revoked). Throws only when storage is unavailable.
    public func dashboardSession(cookie: String) async throws(ServiceError) -> DashboardSession? {
        guard cookie.hasPrefix("dbs_"), cookie.utf8.count <= 128 else { return nil }
        let row: DashboardSessionRecord?
        do { row = try await db.dashboardSession(idHash: ProviderToken.hash(cookie), now: Date()) } catch {
            throw storageFailure(error)
        }
        guard let row else { return nil }
        return DashboardSession(
            principal: Principal(providerId: row.providerId, providerTokenId: row.providerTokenId, userId: row.userId),
            expiresAt: row.expiresAt, csrfToken: Self.csrfToken(cookie: cookie))
    }

    /// Deletes the session's row. Idempotent.
    public func signOutDashboard(cookie: String) async throws(ServiceError) {
        guard cookie.hasPrefix("dbs_"), cookie.utf8.count <= 128 else { return }
        do { try await db.deleteDashboardSession(idHash: ProviderToken.hash(cookie)) } catch { throw storageFailure(error) }
    }

    /// A dashboard sign-in that succeeded (a failed one has no principal to record).
    public func signInDashboard(
        providerToken: String, userToken: String?
    ) async throws(ServiceError) -> (cookie: String, session: DashboardSession) {
        let r = try await signInDashboardUnaudited(providerToken: providerToken, userToken: userToken)
        auditor.record(r.session.principal, action: "dashboard.sign_in", devboxId: nil, result: "ok", face: "dashboard")
        return r
    }

    /// HMAC-SHA256 of a fixed label keyed by the session id, base64url: a page can carry it,
    /// and it proves nothing about the id.
    static func csrfToken(cookie: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array("devbox-dashboard-csrf-v1".utf8), using: SymmetricKey(data: Array(cookie.utf8)))
        return Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Whether `presented` is the session's CSRF token, compared in constant time.
    public static func csrfMatches(_ session: DashboardSession, presented: String?) -> Bool {
        guard let presented, !presented.isEmpty else { return false }
        return ConstantTime.equals(Array(session.csrfToken.utf8), Array(presented.utf8))
    }
}

extension String {
    fileprivate var nilIfEmpty: String? { isEmpty ? nil : self }
}
