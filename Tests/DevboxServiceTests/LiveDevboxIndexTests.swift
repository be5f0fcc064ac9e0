import DevboxModel
import Foundation
import GRDB
import Testing

@testable import DevboxService

/// The serve's index of live devboxes (issue 21): pages of live states are cut from memory,
/// and after every kind of write they are exactly what the database answers, at once.
@Suite("Storage: the live devbox index")
struct LiveDevboxIndexTests {
    static let liveFilters: [Set<DevboxState>] = [
        [.requested, .provisioning, .ready], [.ready], [.ready, .stopped, .failed], [.requested],
        Set(DevboxState.allCases).subtracting([.destroyed]),
    ]

    /// Every live filter, several limits, walked page by page with the cursor: the index's
    /// pages equal the database's, devbox for devbox (repositories, states, names).
    static func expectSameAsDatabase(_ db: AppDatabase, _ users: [String], _ what: Comment) async throws {
        let index = try #require(db.readCache?.live)
        for user in users {
            // By id (GET misses): every devbox that is not destroyed, to its owner only.
            let oracle = try await db.readPage(userId: user, DevboxPageRequest())
            for box in oracle.devboxes {
                let live = index.devbox(id: box.id, userId: user)
                if box.state == .destroyed {
                    #expect(live == nil, what)
                } else {
                    #expect(live?.devbox == box, what)
                    #expect(index.devbox(id: box.id, userId: "usr_nobody") == nil, what)
                }
            }
            for states in liveFilters {
                for limit in [1, 2, 5, 50, nil] as [Int?] {
                    var after: DevboxCursor?
                    var pages = 0
                    repeat {
                        let request = DevboxPageRequest(states: states, limit: limit, after: after)
                        let fromIndex = try #require(index.page(userId: user, request), what)
                        let fromDatabase = try await db.readPage(userId: user, request)
                        #expect(fromIndex.devboxes == fromDatabase.devboxes, "\(what): \(states) limit \(String(describing: limit))")
                        #expect(fromIndex.next?.encoded == fromDatabase.next?.encoded, what)
                        after = fromDatabase.next
                        pages += 1
                    } while after != nil && pages < 100
                }
            }
        }
    }

    @Test("after inserts, claims, transitions, repository changes, raw writes, deletes and rollbacks, live pages equal the database's")
    func followsEveryWrite() async throws {
        let changes = DevboxChangeObserverTests()
        let f = try await changes.fixture(cachesDevboxes: true)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let db = f.db
        // A second user, whose devboxes never show in the first one's pages.
        try await db.pool.write { d in
            try d.execute(sql: "INSERT INTO users (id, provider_id, subject, created_at) SELECT 'usr_other', provider_id, 'other', created_at FROM users LIMIT 1")
        }
        let users = [f.userId, "usr_other"]

        var made: [String] = []
        for i in 0..<8 { made.append(try await changes.insertBox(f, repository: i % 3 == 0)) }
        let ids = made
        try await Self.expectSameAsDatabase(db, users, "inserts")
        // Several devboxes created in the same instant: the cursor's tie-break on id.
        try await db.pool.write { d in
            try d.execute(sql: "UPDATE devboxes SET created_at = (SELECT created_at FROM devboxes WHERE id = ?) WHERE id IN (?, ?, ?)",
                          arguments: [ids[0], ids[1], ids[2], ids[3]])
        }
        try await Self.expectSameAsDatabase(db, users, "equal creation times")
        try await db.pool.write { d in
            try d.execute(sql: "UPDATE devboxes SET user_id = 'usr_other' WHERE id = ?", arguments: [ids[7]])
        }
        try await Self.expectSameAsDatabase(db, users, "a devbox moved to another user")

        let owner = "test@\(getpid())"
        _ = try await db.claimJob(owner: owner, lease: 15)
        try await Self.expectSameAsDatabase(db, users, "a claim")
        try await db.transition(ids[1], to: .provisioning)
        try await db.transition(ids[1], to: .ready) { $0.readyAt = Date() }
        try await db.transition(ids[2], to: .failed) { $0.errorMessage = "boom" }
        try await Self.expectSameAsDatabase(db, users, "transitions")
        try await db.updateRepository(devboxId: ids[0], position: 0, status: "cloning", commit: nil, error: nil)
        try await Self.expectSameAsDatabase(db, users, "a repository's status")
        try await db.pool.write { d in
            try d.execute(sql: "UPDATE devboxes SET name = 'renamed' WHERE id = ?", arguments: [ids[4]])
        }
        try await Self.expectSameAsDatabase(db, users, "a raw write")
        // Destroyed: gone from every live page at once (the read of the index is synchronous,
        // right after the write returned).
        try await db.transition(ids[5], to: .destroyed) { $0.destroyedAt = Date() }
        let live = DevboxPageRequest(states: [.requested, .provisioning, .ready], limit: 50)
        #expect(db.readCache?.live.page(userId: f.userId, live)?.devboxes.contains { $0.id == ids[5] } == false)
        try await Self.expectSameAsDatabase(db, users, "a destroy")
        // Rows deleted (the retention purge, a repository row): the index reloads.
        try await db.pool.write { d in
            try d.execute(sql: "DELETE FROM devbox_repositories WHERE devbox_id = ?", arguments: [ids[3]])
        }
        try await Self.expectSameAsDatabase(db, users, "a deleted repository row")
        try await db.pool.write { d in
            try d.execute(sql: "DELETE FROM operations WHERE devbox_id = ?", arguments: [ids[6]])
            try d.execute(sql: "DELETE FROM devboxes WHERE id = ?", arguments: [ids[6]])
        }
        try await Self.expectSameAsDatabase(db, users, "a deleted devbox row")
        // A rolled-back write changes nothing.
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await db.pool.write { d in
                try d.execute(sql: "UPDATE devboxes SET name = 'never', state = 'destroyed' WHERE id = ?", arguments: [ids[4]])
                throw Abort()
            }
        }
        #expect(db.readCache?.live.page(userId: f.userId, live)?.devboxes.first { $0.id == ids[4] }?.name == "renamed")
        try await Self.expectSameAsDatabase(db, users, "a rollback")

        // A serve starting on this database loads the index from it.
        let reopened = try AppDatabase(path: f.dir + "/devbox.sqlite", cachesDevboxes: true)
        try await Self.expectSameAsDatabase(reopened, users, "a fresh serve")
        #expect(reopened.readCache?.live.count == db.readCache?.live.count)
    }

    @Test("pages asking for destroyed devboxes, or every state, are not answered by the index")
    func destroyedPagesReadTheDatabase() async throws {
        let changes = DevboxChangeObserverTests()
        let f = try await changes.fixture(cachesDevboxes: true)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let id = try await changes.insertBox(f)
        try await f.db.transition(id, to: .destroyed) { $0.destroyedAt = Date() }
        let index = try #require(f.db.readCache?.live)
        #expect(index.page(userId: f.userId, DevboxPageRequest(states: nil, limit: 50)) == nil)
        #expect(index.page(userId: f.userId, DevboxPageRequest(states: [.destroyed, .ready])) == nil)
        #expect(index.page(userId: f.userId, DevboxPageRequest(states: [.ready]))?.devboxes.isEmpty == true)
        // The database's answer to those still lists it.
        let all = try await f.db.devboxPage(userId: f.userId, DevboxPageRequest(states: nil, limit: 50))
        #expect(all.devboxes.map(\.id) == [id])
        #expect(index.count == 0)
    }
}
