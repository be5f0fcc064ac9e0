import DevboxModel
import Foundation
import GRDB

/// A provider token as listed by `devbox token list` (never the token itself).
public struct ProviderTokenInfo: Sendable, Equatable {
    public var id: String
    public var provider: String
    public var hint: String
    public var createdAt: Date
    public var revokedAt: Date?
}

/// Who is calling: the provider (from the token) and the user acting within it.
public struct Principal: Sendable, Equatable {
    public var providerId: String
    public var providerTokenId: String
    public var userId: String
}

extension AppDatabase {
    /// `auth_version` counts the commits that inserted, changed or deleted provider tokens
    /// (`authVersion()`): the triggers bump it in the transaction of the change, whichever
    /// process makes it (`devbox token create` and `revoke` write the file the serve reads).
    static func migrateAuthVersion(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE auth_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
            INSERT INTO auth_version (id, version) VALUES (1, 0);
            CREATE TRIGGER provider_tokens_insert_version AFTER INSERT ON provider_tokens
                BEGIN UPDATE auth_version SET version = version + 1 WHERE id = 1; END;
            CREATE TRIGGER provider_tokens_update_version AFTER UPDATE ON provider_tokens
                BEGIN UPDATE auth_version SET version = version + 1 WHERE id = 1; END;
            CREATE TRIGGER provider_tokens_delete_version AFTER DELETE ON provider_tokens
                BEGIN UPDATE auth_version SET version = version + 1 WHERE id = 1; END;
            """)
    }

    /// Stores a new token hash for the provider `name`, creating the provider when new.
    public func insertProviderToken(providerName: String, tokenHash: String, hint: String) async throws -> ProviderTokenInfo {
        try await pool.write { db in
            let now = Date()
            let provider: ProviderRecord
            if let existing = try ProviderRecord.filter(Column("name") == providerName).fetchOne(db) {
                provider = existing
            } else {
                provider = ProviderRecord(id: Identifier.make("prv_"), name: providerName, createdAt: now)
                try provider.insert(db)
            }
            let token = ProviderTokenRecord(
                id: Identifier.make("tok_"), providerId: provider.id, tokenHash: tokenHash, hint: hint, createdAt: now)
            try token.insert(db)
            return ProviderTokenInfo(id: token.id, provider: provider.name, hint: hint, createdAt: now, revokedAt: nil)
        }
    }

    public func listProviderTokens() async throws -> [ProviderTokenInfo] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT t.id, p.name, t.hint, t.created_at, t.revoked_at
                FROM provider_tokens t JOIN providers p ON p.id = t.provider_id ORDER BY t.created_at
                """)
            return rows.map {
                ProviderTokenInfo(id: $0[0], provider: $0[1], hint: $0[2], createdAt: $0[3], revokedAt: $0[4])
            }
        }
    }

    /// Marks a token revoked; false when no live token has that id.
    public func revokeProviderToken(id: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE provider_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                arguments: [Date(), id])
            let revoked = db.changesCount > 0
            // Its dashboard sessions end with it (lookups also join on the token).
            try db.execute(sql: "DELETE FROM dashboard_sessions WHERE provider_token_id = ?", arguments: [id])
            return revoked
        }
    }

    public func hasLiveProviderToken() async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM provider_tokens WHERE revoked_at IS NULL)") ?? false
        }
    }

    /// All live token hashes; the caller compares in constant time.
    public func liveTokenHashes() async throws -> [(id: String, providerId: String, hash: String)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, provider_id, token_hash FROM provider_tokens WHERE revoked_at IS NULL")
                .map { (id: $0[0], providerId: $0[1], hash: $0[2]) }
        }
    }

    /// Finds or creates the user `subject` of a provider ("" is the provider's service user).
    public func resolveUser(providerId: String, subject: String) async throws -> String {
        if let id = try await pool.read({ db in
            try String.fetchOne(
                db, sql: "SELECT id FROM users WHERE provider_id = ? AND subject = ?", arguments: [providerId, subject])
        }) {
            return id
        }
        return try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO users (id, provider_id, subject, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                arguments: [Identifier.make("usr_"), providerId, subject, Date()])
            return try String.fetchOne(
                db, sql: "SELECT id FROM users WHERE provider_id = ? AND subject = ?", arguments: [providerId, subject])!
        }
    }

    public func userProfile(_ principal: Principal) async throws -> UserProfile? {
        try await pool.read { db in
            guard let u = try UserRecord.fetchOne(db, key: principal.userId) else { return nil }
            var key: SSHKeyInfo?
            if let type = u.sshKeyType, let fp = u.sshKeyFingerprint, let pk = u.sshPublicKey, let at = u.sshKeyUpdatedAt {
                key = SSHKeyInfo(type: type, fingerprint: fp, publicKey: pk, updatedAt: at)
            }
            return UserProfile(
                id: u.id, externalId: u.subject.isEmpty ? nil : u.subject, providerTokenId: principal.providerTokenId,
                createdAt: u.createdAt, sshKey: key)
        }
    }

    public func setSSHKey(userId: String, type: String?, fingerprint: String?, publicKey: String?) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE users SET ssh_key_type = ?, ssh_key_fingerprint = ?, ssh_public_key = ?, ssh_key_updated_at = ?
                    WHERE id = ?
                    """,
                arguments: [type, fingerprint, publicKey, publicKey == nil ? nil : Date(), userId])
        }
    }
}
