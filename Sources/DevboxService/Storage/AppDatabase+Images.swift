import GRDB

extension AppDatabase {
    /// Issue 18: the root image each devbox runs on (a name of the machine's image store,
    /// `host`, or DEVBOX_BASE_IMAGE's path). NULL for devboxes made before images.
    static func migrateImages(_ db: Database) throws {
        try db.execute(sql: "ALTER TABLE devboxes ADD COLUMN image TEXT")
    }
}
