import DevboxModel
import Foundation
import GRDB

// Issue 19's AI-API broker. A proxy-mode devbox keeps its AI keys in
// `devbox_pending_secrets` (Fernet tokens, as before) for its whole life instead of only
// until ready; they go with `deleteSecrets` (destroy, failure: secure_delete, WAL truncated).
// Its box gets a placeholder key of its own, kept here: the broker accepts it only from the
// box's own address, so it is worth nothing outside the box.
extension AppDatabase {
    static func migrateCredentialMode(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE devboxes ADD COLUMN credential_mode TEXT NOT NULL DEFAULT 'env';
            CREATE TABLE devbox_broker (
                devbox_id TEXT PRIMARY KEY NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                placeholder TEXT NOT NULL
            );
            """)
    }

    /// The devbox's placeholder key, made (from `make`) and stored on first use.
    func brokerPlaceholder(devboxId: String, make: @escaping @Sendable () -> String) async throws -> String {
        try await pool.write { db in
            if let p = try String.fetchOne(
                db, sql: "SELECT placeholder FROM devbox_broker WHERE devbox_id = ?", arguments: [devboxId]) {
                return p
            }
            let p = make()
            try db.execute(sql: "INSERT INTO devbox_broker (devbox_id, placeholder) VALUES (?, ?)", arguments: [devboxId, p])
            return p
        }
    }

    /// What the broker needs of a devbox for one request: its state, mode, placeholder and
    /// the sealed key of `kind` (nil when none is stored). Nil: no such devbox.
    func brokerEntry(devboxId: String, kind: String) async throws
        -> (state: DevboxState, mode: String, placeholder: String?, sealedKey: String?)?
    {
        try await pool.read { db in
            guard let row = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT d.state, d.credential_mode,
                           (SELECT placeholder FROM devbox_broker WHERE devbox_id = d.id) AS placeholder,
                           (SELECT value_encrypted FROM devbox_pending_secrets WHERE devbox_id = d.id AND kind = ?) AS sealed
                    FROM devboxes d WHERE d.id = ?
                    """),
                arguments: [kind, devboxId])
            else { return nil }
            return (row["state"], row["credential_mode"], row["placeholder"], row["sealed"])
        }
    }

    /// Replaces (`sealed` non-nil) or removes the AI key `kind` of a devbox and keeps its
    /// credential profile's flag in step; a removal truncates the WAL like every deletion
    /// of a secret.
    func replaceBrokerKey(devboxId: String, kind: String, sealed: String?) async throws {
        let flag = kind == "claude" ? "inject_claude_token" : "inject_codex_token"
        try await pool.write { db in
            if let sealed {
                try db.execute(
                    sql: """
                        INSERT INTO devbox_pending_secrets (devbox_id, kind, value_encrypted) VALUES (?, ?, ?)
                        ON CONFLICT (devbox_id, kind) DO UPDATE SET value_encrypted = excluded.value_encrypted
                        """,
                    arguments: [devboxId, kind, sealed])
            } else {
                try db.execute(
                    sql: "DELETE FROM devbox_pending_secrets WHERE devbox_id = ? AND kind = ?", arguments: [devboxId, kind])
            }
            try db.execute(
                sql: "UPDATE devboxes SET \(flag) = ?, updated_at = ? WHERE id = ?",
                arguments: [sealed != nil, SQLDate.string(Date()), devboxId])
        }
        // Replacing rewrites the cell (secure_delete zeroes the old one); either way no copy in the WAL.
        await truncateWAL()
    }
}
