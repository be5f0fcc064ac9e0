import Foundation
import GRDB

extension AppDatabase {
    /// Rewrites every encrypted value (env values, pending AI tokens, and any table listed in
    /// `encryptedColumns`) through `transform`, which returns nil when a value needs no change.
    /// One transaction: a crash leaves either the old or the new ciphertexts, never a mix.
    public func reencryptSecrets(_ transform: @Sendable (String) throws -> String?) async throws -> Int {
        let changed = try await pool.write { db -> Int in
            var changed = 0
            for (table, column) in Self.encryptedColumns {
                let rows = try Row.fetchAll(db, sql: "SELECT rowid, \(column) FROM \(table)")
                for row in rows {
                    let rowid: Int64 = row[0]
                    let value: String = row[1]
                    if let new = try transform(value) {
                        try db.execute(sql: "UPDATE \(table) SET \(column) = ? WHERE rowid = ?", arguments: [new, rowid])
                        changed += 1
                    }
                }
            }
            return changed
        }
        // Old ciphertexts must not linger in the WAL once the old key is retired.
        await truncateWAL()
        return changed
    }

    /// Every column holding Fernet tokens.
    static let encryptedColumns: [(table: String, column: String)] = [
        ("devbox_env", "value_encrypted"),
        ("devbox_pending_secrets", "value_encrypted"),
        ("github_connections", "token_encrypted"),
    ]
}
