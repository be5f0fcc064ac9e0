import DevboxModel
import Foundation
import GRDB
import Synchronization
import Testing

@testable import DevboxService

/// The encoded answers kept with cached devboxes and pages (`devboxJSON`, `pageJSON`):
/// a hit writes the stored bytes, and nothing stale is ever answered.
@Suite("Devbox read cache: encoded answers")
struct DevboxReadCacheJSONTests {
    let unit = DevboxReadCacheUnitTests()
    let changes = DevboxChangeObserverTests()

    @Test("bytes go with their entry: its owner only, dropped with it, not stored across a commit")
    func entryBytes() {
        let cache = DevboxReadCache()
        cache.store(.init(userId: "usr_a", rowID: 1, devbox: unit.box("dbx_1")), readSince: cache.epoch)
        #expect(cache.devboxJSON(id: "dbx_1", userId: "usr_a") == nil)
        let before = cache.epoch
        cache.invalidate(devboxRows: [99])  // another devbox's commit while this one was encoded
        cache.storeJSON(id: "dbx_1", [1], readSince: before)
        #expect(cache.devboxJSON(id: "dbx_1", userId: "usr_a") == nil)
        cache.storeJSON(id: "dbx_1", [2], readSince: cache.epoch)
        #expect(cache.devboxJSON(id: "dbx_1", userId: "usr_a") == [2])
        #expect(cache.devboxJSON(id: "dbx_1", userId: nil) == [2])
        #expect(cache.devboxJSON(id: "dbx_1", userId: "usr_b") == nil)
        // No entry, no bytes (nothing to hang them on).
        cache.storeJSON(id: "dbx_9", [3], readSince: cache.epoch)
        #expect(cache.devboxJSON(id: "dbx_9", userId: nil) == nil)
        // A new read of the devbox replaces the entry and its bytes.
        cache.store(.init(userId: "usr_a", rowID: 1, devbox: unit.box("dbx_1", name: "new")), readSince: cache.epoch)
        #expect(cache.devboxJSON(id: "dbx_1", userId: nil) == nil)
        cache.storeJSON(id: "dbx_1", [4], readSince: cache.epoch)
        cache.invalidate(devboxRows: [1])
        #expect(cache.devboxJSON(id: "dbx_1", userId: nil) == nil)
    }

    @Test("a page's bytes are answered only at the epoch the page was read at")
    func pageBytes() {
        let cache = DevboxReadCache()
        let key = DevboxReadCache.PageKey(userId: "usr_a", DevboxPageRequest(states: [.ready], limit: 50))
        cache.storePage(key, .init(devboxes: [unit.box("dbx_1")], next: nil), readSince: cache.epoch)
        let before = cache.epoch
        cache.invalidate(devboxRows: [5])
        cache.storePageJSON(key, [1], readSince: before)
        #expect(cache.pageJSON(key) == nil)
        // The page itself is stale now: no bytes are stored on it even at the new epoch.
        cache.storePageJSON(key, [2], readSince: cache.epoch)
        #expect(cache.pageJSON(key) == nil)
        cache.storePage(key, .init(devboxes: [unit.box("dbx_1")], next: nil), readSince: cache.epoch)
        cache.storePageJSON(key, [3], readSince: cache.epoch)
        #expect(cache.pageJSON(key) == [3])
        #expect(cache.pageJSON(DevboxReadCache.PageKey(userId: "usr_b", DevboxPageRequest(states: [.ready], limit: 50))) == nil)
        cache.invalidate(devboxRows: [6])
        #expect(cache.pageJSON(key) == nil)
    }

    /// Encodes a devbox as its name (what the test checks) and counts the encodings.
    final class Encoder: Sendable {
        let calls = Mutex(0)
        func devbox(_ d: Devbox) -> [UInt8] {
            calls.withLock { $0 += 1 }
            return Array(d.name.utf8)
        }
        func page(_ list: [Devbox], _ next: DevboxCursor?) -> [UInt8] {
            calls.withLock { $0 += 1 }
            return Array(list.map(\.name).joined(separator: ",").utf8)
        }
        var count: Int { calls.withLock { $0 } }
    }

    @Test("through the database: a hit is not encoded again; after a write the new devbox is")
    func throughTheDatabase() async throws {
        let f = try await changes.fixture(cachesDevboxes: true)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let id = try await changes.insertBox(f)
        let db = f.db
        let enc = Encoder()
        let page = DevboxPageRequest(states: [.requested], limit: 50)

        #expect(try await db.devboxJSON(id: id, userId: f.userId, encode: enc.devbox) == Array("box".utf8))
        #expect(try await db.devboxJSON(id: id, userId: f.userId, encode: enc.devbox) == Array("box".utf8))
        #expect(enc.count == 1)
        #expect(try await db.devboxJSON(id: id, userId: "usr_someone_else", encode: enc.devbox) == nil)
        #expect(try await db.devboxPageJSON(userId: f.userId, page, encode: enc.page) == Array("box".utf8))
        #expect(try await db.devboxPageJSON(userId: f.userId, page, encode: enc.page) == Array("box".utf8))
        #expect(enc.count == 2)

        try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET name = 'renamed' WHERE id = ?", arguments: [id]) }
        #expect(try await db.devboxJSON(id: id, userId: f.userId, encode: enc.devbox) == Array("renamed".utf8))
        #expect(try await db.devboxPageJSON(userId: f.userId, page, encode: enc.page) == Array("renamed".utf8))
        #expect(enc.count == 4)

        // Without the cache (every process but the serve) each read is encoded.
        let uncached = try AppDatabase(path: f.dir + "/devbox.sqlite")
        #expect(try await uncached.devboxJSON(id: id, userId: f.userId, encode: enc.devbox) == Array("renamed".utf8))
        #expect(try await uncached.devboxJSON(id: id, userId: f.userId, encode: enc.devbox) == Array("renamed".utf8))
        #expect(enc.count == 6)
    }
}
