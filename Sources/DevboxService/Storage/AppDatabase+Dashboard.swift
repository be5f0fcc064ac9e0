import Foundation
import GRDB

/// A signed-in dashboard browser, as stored: the hash of the cookie's random id (never the
/// id itself, never a token), the principal it resolved to, and when it ends.
struct DashboardSessionRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable, Equatable {
    static let databaseTableName = "dashboard_sessions"
    var idHash: String
    var providerId: String
    var providerTokenId: String
    var userId: String
    var createdAt: Date
    var expiresAt: Date
    enum CodingKeys: String, CodingKey {
        case idHash = "id_hash", providerId = "provider_id", providerTokenId = "provider_token_id", userId = "user_id"
        case createdAt = "created_at", expiresAt = "expires_at"
    }
}

extension AppDatabase {
    /// Migration `v4-dashboard`: server-side dashboard sessions. Rows go with their provider
    /// token or user; a revoked token ends its sessions because lookups join on it.
    static func migrateDashboard(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE dashboard_sessions (
                id_hash TEXT PRIMARY KEY NOT NULL,
                provider_id TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
                provider_token_id TEXT NOT NULL REFERENCES provider_tokens(id) ON DELETE CASCADE,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                created_at DATETIME NOT NULL,
                expires_at DATETIME NOT NULL
            );
            CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions(expires_at);
            """)
    }

    /// Stores a new session and drops expired ones.
    func insertDashboardSession(_ r: DashboardSessionRecord) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM dashboard_sessions WHERE expires_at <= ?", arguments: [r.createdAt])
            try r.insert(db)
        }
    }

    /// The live session with this id hash: unexpired, and its provider token not revoked.
    func dashboardSession(idHash: String, now: Date) async throws -> DashboardSessionRecord? {
        try await pool.read { db in
            try DashboardSessionRecord.fetchOne(
                db,
                sql: """
                    SELECT s.* FROM dashboard_sessions s
                    JOIN provider_tokens t ON t.id = s.provider_token_id AND t.revoked_at IS NULL
                    WHERE s.id_hash = ? AND s.expires_at > ?
                    """,
                arguments: [idHash, now])
        }
    }

    func deleteDashboardSession(idHash: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM dashboard_sessions WHERE id_hash = ?", arguments: [idHash])
        }
    }
}
