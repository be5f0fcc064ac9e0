import DevboxModel
import Foundation
import GRDB
import Synchronization
import Testing

@testable import DevboxService

/// Requests for a page of the list that is not cached share one read (issue 21): a request
/// that finds the same page being read since the last devbox commit waits for that read;
/// after a commit, a request reads again.
@Suite("Devbox read cache: one read per page in flight")
struct PageFlightTests {
    let changes = DevboxChangeObserverTests()

    /// Encodes a page as its devboxes' names, taking 100 ms (so the leader's read is still in
    /// flight while the other requests arrive), and counts the encodings.
    final class SlowEncoder: Sendable {
        let calls = Mutex(0)
        func page(_ list: [Devbox], _ next: DevboxCursor?) -> [UInt8] {
            calls.withLock { $0 += 1 }
            usleep(100_000)
            return Array(list.map(\.name).joined(separator: ",").utf8)
        }
        var count: Int { calls.withLock { $0 } }
    }

    @Test("concurrent requests for one page at one epoch: one read and one encoding, the same bytes")
    func oneReadForAll() async throws {
        let f = try await changes.fixture(cachesDevboxes: true)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let id = try await changes.insertBox(f)
        let db = f.db, userId = f.userId
        let enc = SlowEncoder()
        let page = DevboxPageRequest(states: [.requested], limit: 50)
        // Each request joins the leader's read or (once it is stored) hits: one encoding,
        // whatever the timing. Without the flights, those arriving during the leader's
        // 100 ms would each read and encode.
        let all = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<20 {
                group.addTask { try await db.devboxPageJSON(userId: userId, page, encode: enc.page) }
            }
            var all: [[UInt8]] = []
            for try await a in group { all.append(a) }
            return all
        }
        #expect(all.count == 20)
        #expect(Set(all) == [Array("box".utf8)])
        #expect(enc.count == 1)
        // After a commit that changed the devbox, the page is read again, with the new row.
        try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET name = 'renamed' WHERE id = ?", arguments: [id]) }
        #expect(try await db.devboxPageJSON(userId: userId, page, encode: enc.page) == Array("renamed".utf8))
        #expect(enc.count == 2)
    }

    @Test("a flight hands its answer to late waiters once, and a failed leader's waiters read for themselves")
    func flightUnit() async {
        let flight = PageFlight(epoch: 0)
        let early = Task { await flight.wait() }
        try? await Task.sleep(for: .milliseconds(20))
        flight.finish([7])
        flight.finish([8])  // once
        #expect(await early.value == [7])
        #expect(await flight.wait() == [7])
        let failed = PageFlight(epoch: 0)
        failed.finish(nil)
        #expect(await failed.wait() == nil)

        let cache = DevboxReadCache()
        let key = DevboxReadCache.PageKey(userId: "usr_a", DevboxPageRequest(states: [.ready], limit: 50))
        guard case .lead(let lead) = cache.lookupPageJSON(key) else { Issue.record("no lead"); return }
        guard case .join(let joined) = cache.lookupPageJSON(key) else { Issue.record("no join"); return }
        #expect(joined === lead)
        cache.invalidate(devboxRows: [1])
        guard case .lead(let next) = cache.lookupPageJSON(key) else { Issue.record("joined across a commit"); return }
        #expect(next !== lead)
        cache.endFlight(key, lead)  // the old flight's end leaves the new one in place
        guard case .join(let again) = cache.lookupPageJSON(key) else { Issue.record("new flight dropped"); return }
        #expect(again === next)
        cache.endFlight(key, next)
        guard case .lead = cache.lookupPageJSON(key) else { Issue.record("flight kept after its end"); return }
    }
}
