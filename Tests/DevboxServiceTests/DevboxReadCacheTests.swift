import DevboxModel
import Foundation
import GRDB
import Testing

@testable import DevboxService

@Suite("Devbox read cache: the cache")
struct DevboxReadCacheUnitTests {
    func box(_ id: String, name: String = "box") -> Devbox {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        return DevboxRecord(
            id: id, userId: "usr_a", name: name, plan: "small", state: .ready, envKeys: [], setupCommands: [],
            setupTimeoutSeconds: 900, injectClaudeToken: false, injectCodexToken: false, createdAt: now, updatedAt: now,
            lastActivityAt: now
        ).model(repositories: [])
    }

    @Test("a stored devbox is answered to its owner (or an unscoped read), not to another user")
    func scopedToItsUser() {
        let cache = DevboxReadCache()
        cache.store(.init(userId: "usr_a", rowID: 1, devbox: box("dbx_1")), readSince: cache.epoch)
        #expect(cache.devbox(id: "dbx_1", userId: "usr_a") == box("dbx_1"))
        #expect(cache.devbox(id: "dbx_1", userId: nil) == box("dbx_1"))
        #expect(cache.devbox(id: "dbx_1", userId: "usr_b") == nil)
        #expect(cache.devbox(id: "dbx_2", userId: "usr_a") == nil)
    }

    @Test("a read that overlapped a commit is not stored")
    func overlappingReadIsDropped() {
        let cache = DevboxReadCache()
        let before = cache.epoch
        cache.invalidate(devboxRows: [7])  // a commit lands while the read runs
        cache.store(.init(userId: "usr_a", rowID: 1, devbox: box("dbx_1")), readSince: before)
        #expect(cache.devbox(id: "dbx_1", userId: nil) == nil)
        #expect(cache.count == 0)
        cache.store(.init(userId: "usr_a", rowID: 1, devbox: box("dbx_1")), readSince: cache.epoch)
        #expect(cache.count == 1)
    }

    @Test("a commit drops the entries of the rows it changed; a wider one drops everything")
    func invalidation() {
        let cache = DevboxReadCache()
        cache.store(.init(userId: "usr_a", rowID: 1, devbox: box("dbx_1")), readSince: cache.epoch)
        cache.store(.init(userId: "usr_a", rowID: 2, devbox: box("dbx_2")), readSince: cache.epoch)
        cache.invalidate(devboxRows: [2, 99])
        #expect(cache.devbox(id: "dbx_1", userId: nil) != nil)
        #expect(cache.devbox(id: "dbx_2", userId: nil) == nil)
        cache.invalidateAll()
        #expect(cache.count == 0)
    }

    @Test("the cache stays under its capacity")
    func bounded() {
        let cache = DevboxReadCache()
        for i in 0...(DevboxReadCache.capacity + 10) {
            cache.store(.init(userId: "usr_a", rowID: Int64(i), devbox: box("dbx_\(i)")), readSince: cache.epoch)
        }
        #expect(cache.count <= DevboxReadCache.capacity)
        #expect(cache.devbox(id: "dbx_\(DevboxReadCache.capacity + 10)", userId: nil) != nil)
    }
}

@Suite("Devbox read cache: every write to the devbox tables")
struct DevboxReadCacheStorageTests {
    let changes = DevboxChangeObserverTests()

    /// After `write`, a read through the cache answers what an uncached connection to the
    /// same file reads.
    func expectFresh(
        _ cached: AppDatabase, _ oracle: AppDatabase, _ id: String, _ userId: String, _ what: Comment,
        _ write: () async throws -> Void
    ) async throws {
        _ = try await cached.devbox(id: id, userId: userId)
        #expect(cached.readCache?.devbox(id: id, userId: userId) != nil, "cached before: \(what)")
        try await write()
        let seen = try await cached.devbox(id: id, userId: userId)
        #expect(seen == (try await oracle.devbox(id: id, userId: userId)), what)
    }

    @Test("reads through the cache follow state transitions, claims, repositories, activity, raw writes and deletes")
    func everyWritePath() async throws {
        let f = try await changes.fixture(cachesDevboxes: true)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let oracle = try AppDatabase(path: f.dir + "/devbox.sqlite")
        #expect(oracle.readCache == nil)
        let a = try await changes.insertBox(f, repository: true)
        let b = try await changes.insertBox(f)
        let db = f.db
        let owner = "test@\(getpid())"

        try await expectFresh(db, oracle, a, f.userId, "claim") {
            let job = try await db.claimJob(owner: owner, lease: 15)
            #expect(job?.devbox.id == a)
        }
        #expect(try await db.devbox(id: a, userId: f.userId)?.state == .provisioning)
        try await expectFresh(db, oracle, a, f.userId, "repository status") {
            try await db.updateRepository(devboxId: a, position: 0, status: "cloning", commit: nil, error: nil)
        }
        #expect(try await db.devbox(id: a, userId: f.userId)?.repositories.first?.status == "cloning")
        try await expectFresh(db, oracle, a, f.userId, "activity") { try await db.touchActivity(devboxId: a) }
        try await expectFresh(db, oracle, a, f.userId, "a write method nobody told the cache about") {
            try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET name = 'renamed' WHERE id = ?", arguments: [a]) }
        }
        #expect(try await db.devbox(id: a, userId: f.userId)?.name == "renamed")
        // b's entry survives a's changes; a change to b is seen.
        _ = try await db.devbox(id: b, userId: f.userId)
        try await expectFresh(db, oracle, a, f.userId, "state transition") {
            try await db.transition(a, to: .destroyed) { $0.destroyedAt = Date() }
        }
        #expect(db.readCache?.devbox(id: b, userId: f.userId) != nil)
        try await expectFresh(db, oracle, b, f.userId, "raw write to b") {
            try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET name = 'b2' WHERE id = ?", arguments: [b]) }
        }
        #expect(try await db.devbox(id: b, userId: f.userId)?.name == "b2")
        try await expectFresh(db, oracle, a, f.userId, "a deleted repository row") {
            try await db.pool.write { try $0.execute(sql: "DELETE FROM devbox_repositories WHERE devbox_id = ?", arguments: [a]) }
        }
        #expect(try await db.devbox(id: a, userId: f.userId)?.repositories == [])
        // A rolled-back write leaves the entry, and it is still right.
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await db.pool.write { d in
                try d.execute(sql: "UPDATE devboxes SET name = 'never' WHERE id = ?", arguments: [b])
                throw Abort()
            }
        }
        #expect(try await db.devbox(id: b, userId: f.userId)?.name == "b2")
        // Another user's read of a cached devbox is not answered from the cache.
        #expect(try await db.devbox(id: b, userId: "usr_someone_else") == nil)
    }
}
