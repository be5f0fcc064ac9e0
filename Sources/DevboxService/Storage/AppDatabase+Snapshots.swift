import DevboxModel
import Foundation
import GRDB

/// A snapshot (issue 23): its owner, name and the layer chain in the machine's image store
/// (the runtime's pin file holds the same; the database is what the API answers from).
struct SnapshotRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable, Equatable {
    static let databaseTableName = "snapshots"
    var id: String
    var userId: String
    var name: String
    var devboxId: String
    var image: String
    var sizeBytes: Int64
    /// Where the layers are (the image store's root).
    var store: String
    /// JSON arrays of the layers' lower dirs, top first.
    var rootLayers: String
    var workspaceLayers: String
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, name, image, store
        case userId = "user_id", devboxId = "devbox_id", sizeBytes = "size_bytes"
        case rootLayers = "root_layers", workspaceLayers = "workspace_layers", createdAt = "created_at"
    }

    var model: Snapshot {
        Snapshot(id: id, name: name, devboxId: devboxId, image: image, sizeBytes: sizeBytes, createdAt: createdAt)
    }

    static func encodeLayers(_ ids: [String]) -> String {
        String(decoding: (try? JSONEncoder().encode(ids)) ?? Data("[]".utf8), as: UTF8.self)
    }
    static func decodeLayers(_ json: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(json.utf8))) ?? []
    }
}

extension AppDatabase {
    /// Issue 23: snapshots, unique by name per user, and the snapshot each devbox was made from.
    static func migrateSnapshots(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE snapshots (
                id TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL REFERENCES users(id),
                name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
                devbox_id TEXT NOT NULL,
                image TEXT NOT NULL,
                size_bytes INTEGER NOT NULL,
                store TEXT NOT NULL,
                root_layers TEXT NOT NULL,
                workspace_layers TEXT NOT NULL,
                created_at DATETIME NOT NULL,
                UNIQUE (user_id, name)
            );
            CREATE INDEX snapshots_user_created ON snapshots(user_id, created_at);
            ALTER TABLE devboxes ADD COLUMN snapshot_id TEXT;
            CREATE INDEX devboxes_snapshot ON devboxes(snapshot_id) WHERE snapshot_id IS NOT NULL;
            """)
    }

    enum SnapshotInsert: Error { case nameTaken, overQuota(used: Int64) }

    /// Stores a snapshot unless the user has one of that name, or the user's snapshots
    /// would then take more than `quota` bytes (checked in the same transaction).
    func insertSnapshot(_ record: SnapshotRecord, quota: Int64) async throws {
        try await pool.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM snapshots WHERE user_id = ? AND name = ?", arguments: [record.userId, record.name]) == true {
                throw SnapshotInsert.nameTaken
            }
            let used = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size_bytes), 0) FROM snapshots WHERE user_id = ?", arguments: [record.userId]) ?? 0
            if used + record.sizeBytes > quota { throw SnapshotInsert.overQuota(used: used) }
            try record.insert(db)
        }
    }

    /// Bytes the user's snapshots take.
    func snapshotBytes(userId: String) async throws -> Int64 {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size_bytes), 0) FROM snapshots WHERE user_id = ?", arguments: [userId]) ?? 0
        }
    }

    func snapshotNameTaken(userId: String, name: String) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM snapshots WHERE user_id = ? AND name = ?", arguments: [userId, name]) == true
        }
    }

    /// The user's snapshots, newest first.
    func snapshots(userId: String) async throws -> [SnapshotRecord] {
        try await pool.read { db in
            try SnapshotRecord.fetchAll(db, sql: "SELECT * FROM snapshots WHERE user_id = ? ORDER BY created_at DESC, id DESC", arguments: [userId])
        }
    }

    /// A snapshot of the user by id, else by name.
    func snapshot(idOrName: String, userId: String) async throws -> SnapshotRecord? {
        try await pool.read { db in
            if let r = try SnapshotRecord.fetchOne(db, sql: "SELECT * FROM snapshots WHERE id = ? AND user_id = ?", arguments: [idOrName, userId]) {
                return r
            }
            return try SnapshotRecord.fetchOne(db, sql: "SELECT * FROM snapshots WHERE name = ? AND user_id = ?", arguments: [idOrName, userId])
        }
    }

    /// Any snapshot by id (provisioning).
    func snapshot(id: String) async throws -> SnapshotRecord? {
        try await pool.read { db in try SnapshotRecord.fetchOne(db, key: id) }
    }

    enum SnapshotDelete: Error { case inProvisioning(Int) }

    /// Deletes the snapshot row; refused while devboxes made from it are still being
    /// provisioned (they need its layers). Boxes already made keep them.
    func deleteSnapshot(id: String) async throws {
        try await pool.write { db in
            let pending = try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM devboxes WHERE snapshot_id = ? AND state IN ('requested', 'provisioning')", arguments: [id]) ?? 0
            if pending > 0 { throw SnapshotDelete.inProvisioning(pending) }
            try db.execute(sql: "DELETE FROM snapshots WHERE id = ?", arguments: [id])
        }
    }

    /// Ids of every snapshot (start-up: pins the runtime lost are reported).
    func allSnapshotIds() async throws -> [String] {
        try await pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM snapshots") }
    }
}
