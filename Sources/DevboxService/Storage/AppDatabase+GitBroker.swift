import DevboxModel
import Foundation
import GRDB

// Issue 19's git broker: a repository's `push_branches` (JSON, NULL: not brokered) and the
// per-box secret of its broker path. No token is stored here: the broker uses the connected
// account's (github_connections), looked up per request, so disconnecting GitHub stops it.
extension AppDatabase {
    static func migrateGitBroker(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE devbox_repositories ADD COLUMN push_branches TEXT;
            CREATE TABLE devbox_git_broker (
                devbox_id TEXT PRIMARY KEY NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                secret TEXT NOT NULL
            );
            """)
    }

    /// The devbox's git broker path secret, made (from `make`) and stored on first use.
    func gitBrokerSecret(devboxId: String, make: @escaping @Sendable () -> String) async throws -> String {
        try await pool.write { db in
            if let s = try String.fetchOne(
                db, sql: "SELECT secret FROM devbox_git_broker WHERE devbox_id = ?", arguments: [devboxId]) {
                return s
            }
            let s = make()
            try db.execute(sql: "INSERT INTO devbox_git_broker (devbox_id, secret) VALUES (?, ?)", arguments: [devboxId, s])
            return s
        }
    }

    /// State, owner, path secret and brokered repositories of a devbox; nil: no such devbox.
    func gitBrokerEntry(devboxId: String) async throws -> GitBrokerEntry? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT d.state, d.user_id, (SELECT secret FROM devbox_git_broker WHERE devbox_id = d.id) AS secret
                    FROM devboxes d WHERE d.id = ?
                    """),
                arguments: [devboxId])
            else { return nil }
            let repos = try RepositoryRecord.fetchAll(
                db.cachedStatement(sql: "SELECT * FROM devbox_repositories WHERE devbox_id = ? AND push_branches IS NOT NULL"),
                arguments: [devboxId])
            return GitBrokerEntry(
                state: row["state"], userId: row["user_id"], secret: row["secret"],
                repositories: repos.map { ($0.fullName, $0.pushGlobs) })
        }
    }
}
