import DevboxModel
import Foundation
import GRDB

/// One SSH access session row.
public struct SessionRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable, Equatable {
    public static let databaseTableName = "access_sessions"
    public var id: String
    public var devboxId: String
    public var userId: String
    public var createdAt: Date
    public var expiresAt: Date
    public var revokedAt: Date?
    enum CodingKeys: String, CodingKey {
        case id
        case devboxId = "devbox_id", userId = "user_id", createdAt = "created_at", expiresAt = "expires_at"
        case revokedAt = "revoked_at"
    }
}

/// What the SSH gateway needs to decide on a login, read in one query.
public struct SessionGrantRow: Sendable {
    public var session: SessionRecord
    public var devboxState: DevboxState
    public var userPublicKey: String?
}

extension AppDatabase {
    func insertSession(_ s: SessionRecord) async throws {
        try await pool.write { db in try s.insert(db) }
    }

    func activeSessions(devboxId: String, now: Date = Date()) async throws -> [SessionRecord] {
        try await pool.read { db in
            try SessionRecord.filter(Column("devbox_id") == devboxId && Column("revoked_at") == nil && Column("expires_at") > now)
                .order(Column("created_at")).fetchAll(db)
        }
    }

    /// Revokes one session of a devbox; false when there is no such unrevoked session.
    func revokeSession(devboxId: String, sessionId: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE access_sessions SET revoked_at = ? WHERE id = ? AND devbox_id = ? AND revoked_at IS NULL",
                arguments: [Date(), sessionId, devboxId])
            return db.changesCount > 0
        }
    }

    func revokeAllSessions(devboxId: String) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE access_sessions SET revoked_at = ? WHERE devbox_id = ? AND revoked_at IS NULL",
                arguments: [Date(), devboxId])
        }
    }

    func sessionGrant(sessionId: String) async throws -> SessionGrantRow? {
        try await pool.read { db in
            guard let s = try SessionRecord.fetchOne(db, key: sessionId) else { return nil }
            let row = try Row.fetchOne(
                db,
                sql: "SELECT d.state, u.ssh_public_key FROM devboxes d JOIN users u ON u.id = ? WHERE d.id = ?",
                arguments: [s.userId, s.devboxId])
            guard let row, let state = DevboxState(rawValue: row[0]) else { return nil }
            return SessionGrantRow(session: s, devboxState: state, userPublicKey: row[1])
        }
    }
}
