import Foundation
import GRDB
import Testing
@testable import DevboxService

@Suite("Storage: durability of writes")
struct StorageSyncTests {
    /// Progress writes commit with synchronous = NORMAL and leave the writer at FULL, so the
    /// next acknowledged write (a create, a delete) reaches the disk before it is answered.
    @Test func progressWritesRestoreFullSync() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-sync-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try AppDatabase(path: dir + "/devbox.sqlite")
        let before = try await db.pool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        #expect(before == 2)  // FULL
        let during = try await db.progressWrite { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        #expect(during == 1)  // NORMAL
        let after = try await db.pool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        #expect(after == 2)
        // A failing body rolls back and still restores FULL.
        await #expect(throws: (any Error).self) {
            try await db.progressWrite { db -> Int in
                try db.execute(sql: "CREATE TABLE t(x)")
                throw CancellationError()
            }
        }
        let exists = try await db.pool.read { try Bool.fetchOne($0, sql: "SELECT count(*) > 0 FROM sqlite_master WHERE name = 't'") }
        #expect(exists == false)
        #expect(try await db.pool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 2)
    }
}
