import DevboxModel
import Foundation
import GRDB

/// A user's GitHub connection; the token is a Fernet token.
struct GitHubConnectionRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "github_connections"
    var userId: String
    var githubUserId: Int64
    var login: String
    /// Space-separated OAuth scopes.
    var scopes: String
    var tokenEncrypted: String
    var connectedAt: Date

    enum CodingKeys: String, CodingKey {
        case login, scopes
        case userId = "user_id", githubUserId = "github_user_id", tokenEncrypted = "token_encrypted"
        case connectedAt = "connected_at"
    }

    var model: GitHubConnection {
        GitHubConnection(
            login: login, githubUserId: githubUserId, scopes: scopes.split(separator: " ").map(String.init),
            connectedAt: connectedAt)
    }
}

/// An OAuth state taken out of the store (it can be used once).
struct ConsumedOAuthState: Sendable {
    var userId: String
    var redirectURL: String
    var expiresAt: Date
}

extension AppDatabase {
    /// Stores a pending OAuth state (its hash) and drops expired ones.
    func insertOAuthState(hash: String, userId: String, redirectURL: String, now: Date, expiresAt: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM github_oauth_states WHERE expires_at < ?", arguments: [now])
            try db.execute(
                sql: """
                    INSERT INTO github_oauth_states (state_hash, user_id, redirect_url, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?)
                    """,
                arguments: [hash, userId, redirectURL, now, expiresAt])
        }
    }

    /// Deletes the state and returns what it was bound to: a second use finds nothing.
    func consumeOAuthState(hash: String) async throws -> ConsumedOAuthState? {
        try await pool.write { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "DELETE FROM github_oauth_states WHERE state_hash = ? RETURNING user_id, redirect_url, expires_at",
                    arguments: [hash])
            else { return nil }
            return ConsumedOAuthState(userId: row[0], redirectURL: row[1], expiresAt: row[2])
        }
    }

    /// Creates or replaces the user's connection. Grants are kept only when the same
    /// GitHub account reconnects.
    func upsertGitHubConnection(_ r: GitHubConnectionRecord) async throws {
        try await pool.write { db in
            if let old = try GitHubConnectionRecord.fetchOne(db, key: r.userId), old.githubUserId != r.githubUserId {
                try db.execute(sql: "DELETE FROM github_org_grants WHERE user_id = ?", arguments: [r.userId])
            }
            try db.execute(
                sql: """
                    INSERT INTO github_connections (user_id, github_user_id, login, scopes, token_encrypted, connected_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (user_id) DO UPDATE SET github_user_id = excluded.github_user_id, login = excluded.login,
                        scopes = excluded.scopes, token_encrypted = excluded.token_encrypted,
                        connected_at = excluded.connected_at
                    """,
                arguments: [r.userId, r.githubUserId, r.login, r.scopes, r.tokenEncrypted, r.connectedAt])
        }
    }

    func gitHubConnection(userId: String) async throws -> GitHubConnectionRecord? {
        try await pool.read { db in try GitHubConnectionRecord.fetchOne(db, key: userId) }
    }

    /// Deletes the connection and its grants, then truncates the WAL so no copy of the
    /// token's ciphertext stays on disk. Returns what was deleted.
    func deleteGitHubConnection(userId: String) async throws -> GitHubConnectionRecord? {
        let deleted = try await pool.write { db -> GitHubConnectionRecord? in
            guard let r = try GitHubConnectionRecord.fetchOne(db, key: userId) else { return nil }
            _ = try GitHubConnectionRecord.deleteOne(db, key: userId)
            return r
        }
        if deleted != nil { await truncateWAL() }
        return deleted
    }

    /// Replaces the granted organisations (lowercased logins). False when not connected.
    func setOrgGrants(userId: String, orgs: [String]) async throws -> Bool {
        try await pool.write { db in
            guard try GitHubConnectionRecord.exists(db, key: userId) else { return false }
            try db.execute(sql: "DELETE FROM github_org_grants WHERE user_id = ?", arguments: [userId])
            let now = Date()
            for org in Set(orgs) {
                try db.execute(
                    sql: "INSERT INTO github_org_grants (user_id, org, granted_at) VALUES (?, ?, ?)",
                    arguments: [userId, org, now])
            }
            return true
        }
    }

    func orgGrants(userId: String) async throws -> Set<String> {
        try await pool.read { db in
            Set(try String.fetchAll(db, sql: "SELECT org FROM github_org_grants WHERE user_id = ?", arguments: [userId]))
        }
    }

    func repositoryRecords(devboxId: String) async throws -> [RepositoryRecord] {
        try await pool.read { db in try Self.repositories(db, devboxId) }
    }

    /// Every repository of a devbox back to `pending` (a restarted clone step starts over).
    func resetRepositories(devboxId: String) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE devbox_repositories SET status = 'pending', resolved_commit = NULL, error = NULL WHERE devbox_id = ?",
                arguments: [devboxId])
        }
    }
}
