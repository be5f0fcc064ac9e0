import DevboxModel
import Foundation
import GRDB
import Synchronization

/// Every devbox that is not destroyed, as the API shows it, kept in the serve's memory and
/// brought up to date inside each commit that changes one (issue 21): a page of the list that
/// asks for states other than `destroyed` (the CLI's default list, a dashboard's, an agent
/// polling its live boxes) is cut from here, with no database read.
///
/// Under create/delete churn every commit made the cached pages stale, so nearly every page
/// request read the database: the read waited for one of GRDB's reader threads behind the
/// churn's work (p50 2 ms, p99 18 ms of queueing), then for the CPU while it ran (p99 7 ms),
/// and the requests that joined it waited for all of that: a list p99 of 41–65 ms with
/// clients polling every 50 ms against a GET by id of 26–41 ms.
///
/// Coherent for the same reason as `DevboxReadCache` (the serve makes every write to the
/// devbox tables) and updated on the writer's connection after SQLite's commit, before the
/// write returns (`DevboxChangeObserver`): a client that saw its create or delete answered
/// sees it in the next page. The rows a commit changed are read again by row id (one indexed
/// query, and one for their repositories); a commit that deleted devbox or repository rows (the
/// retention purge) reloads everything. The index is updated before the read cache's epoch
/// moves, so a page cut from it and stored under an epoch is never older than that epoch.
/// Destroyed devboxes are not kept (they are kept in the database for the retention period
/// and may be many): a page that asks for them, or for every state, reads the database.
final class LiveDevboxIndex: Sendable {
    struct Item: Sendable {
        /// SQLite's row id (the read cache drops its entries by row id).
        var rowID: Int64
        var userId: String
        /// `created_at` as stored: pages are ordered and cut on the stored text, as SQLite does.
        var createdAt: String
        var devbox: Devbox
    }

    private struct State {
        /// False until the first load, and after a failed update (pages then read the database).
        var valid = false
        var byId: [String: Item] = [:]
        /// Each user's devboxes, newest first (`created_at DESC, id DESC`).
        var byUser: [String: [Item]] = [:]
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.byId.count } }

    /// One devbox that is not destroyed, if it belongs to `userId` (any user when nil), with
    /// its row id; nil when the index does not hold it (destroyed, unknown, another user's,
    /// or the index not loaded): the caller reads the database.
    func devbox(id: String, userId: String?) -> (rowID: Int64, userId: String, devbox: Devbox)? {
        state.withLock { s in
            guard s.valid, let item = s.byId[id], userId == nil || item.userId == userId else { return nil }
            return (item.rowID, item.userId, item.devbox)
        }
    }

    /// The page, or nil when the index cannot answer it: it asks for destroyed devboxes or for
    /// every state (`states` nil), or the index is not loaded.
    func page(userId: String, _ page: DevboxPageRequest) -> (devboxes: [Devbox], next: DevboxCursor?)? {
        guard let states = page.states, !states.contains(.destroyed) else { return nil }
        return state.withLock { s -> (devboxes: [Devbox], next: DevboxCursor?)? in
            guard s.valid else { return nil }
            var picked: [Item] = []
            for item in s.byUser[userId] ?? [] {
                if let after = page.after, !Self.less((item.createdAt, item.devbox.id), (after.createdAt, after.id)) {
                    continue
                }
                guard states.contains(item.devbox.state) else { continue }
                picked.append(item)
                if let limit = page.limit, picked.count > limit { break }
            }
            var next: DevboxCursor?
            if let limit = page.limit, picked.count > limit {
                picked.removeLast(picked.count - limit)
                next = DevboxCursor(createdAt: picked[limit - 1].createdAt, id: picked[limit - 1].devbox.id)
            }
            return (picked.map(\.devbox), next)
        }
    }

    /// SQLite's `(x.0, x.1) < (y.0, y.1)` on text: byte by byte (the BINARY collation).
    private static func less(_ x: (String, String), _ y: (String, String)) -> Bool {
        if x.0 != y.0 { return x.0.utf8.lexicographicallyPrecedes(y.0.utf8) }
        return x.1.utf8.lexicographicallyPrecedes(y.1.utf8)
    }

    /// Reads every devbox that is not destroyed (at start, and after a commit that deleted rows).
    func reload(_ db: Database) {
        do {
            let items = try Self.read(
                db, sql: "SELECT rowid AS row_id, * FROM devboxes WHERE state != ?", arguments: [DevboxState.destroyed.rawValue])
            state.withLock { s in
                s = State()
                for item in items { Self.upsert(&s, item) }
                s.valid = true
            }
        } catch {
            state.withLock { $0 = State() }
        }
    }

    /// After a commit that inserted or updated these devbox rows and these repository rows
    /// (SQLite row ids); `reloadAll` when it deleted any of either.
    func apply(_ db: Database, devboxRows: Set<Int64>, repositoryRows: Set<Int64>, reloadAll: Bool) {
        guard !reloadAll, state.withLock({ $0.valid }) else {
            reload(db)
            return
        }
        do {
            var items: [Item] = []
            if !devboxRows.isEmpty {
                items += try Self.read(
                    db, sql: "SELECT rowid AS row_id, * FROM devboxes WHERE rowid IN (SELECT value FROM json_each(?))",
                    arguments: [Self.rowList(devboxRows)])
            }
            if !repositoryRows.isEmpty {
                let owners = try String.fetchAll(
                    db,
                    sql: "SELECT DISTINCT devbox_id FROM devbox_repositories WHERE rowid IN (SELECT value FROM json_each(?))",
                    arguments: [Self.rowList(repositoryRows)])
                let seen = Set(items.map(\.devbox.id))
                let more = owners.filter { !seen.contains($0) }
                if !more.isEmpty {
                    items += try Self.read(
                        db, sql: "SELECT rowid AS row_id, * FROM devboxes WHERE id IN (SELECT value FROM json_each(?))",
                        arguments: [try Self.jsonArray(more)])
                }
            }
            state.withLock { s in
                for item in items {
                    if item.devbox.state == .destroyed {
                        Self.remove(&s, id: item.devbox.id)
                    } else {
                        Self.upsert(&s, item)
                    }
                }
            }
        } catch {
            // Pages read the database until a later commit's reload succeeds.
            state.withLock { $0 = State() }
        }
    }

    /// Row ids as one JSON array argument (`json_each`), without an encoder: this runs in
    /// every commit that changes a devbox.
    private static func rowList(_ rows: Set<Int64>) -> String {
        "[" + rows.map(String.init).joined(separator: ",") + "]"
    }

    /// One statement argument whatever the count (`json_each`), as `AppDatabase.repositories` does.
    private static func jsonArray<T: Encodable>(_ values: [T]) throws -> String {
        String(decoding: try JSONEncoder().encode(values), as: UTF8.self)
    }

    /// Devbox rows as the API shows them (with their repositories).
    private static func read(_ db: Database, sql: String, arguments: StatementArguments) throws -> [Item] {
        var found: [(rowID: Int64, record: DevboxRecord, createdAt: String)] = []
        let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        while let row = try rows.next() {
            found.append((row["row_id"], try DevboxRecord(row: row), row["created_at"]))
        }
        // One devbox (most commits): the single-devbox read GET uses, without encoding a list.
        let repositories =
            found.count == 1
            ? [found[0].record.id: try AppDatabase.repositories(db, found[0].record.id)]
            : try AppDatabase.repositories(db, devboxIds: found.map(\.record.id))
        return found.map { f in
            Item(rowID: f.rowID, userId: f.record.userId, createdAt: f.createdAt,
                 devbox: f.record.model(repositories: repositories[f.record.id] ?? []))
        }
    }

    private static func upsert(_ s: inout State, _ item: Item) {
        remove(&s, id: item.devbox.id)
        s.byId[item.devbox.id] = item
        var list = s.byUser[item.userId] ?? []
        // Newest first: before the first item that is less than the new one.
        let key = (item.createdAt, item.devbox.id)
        var lo = 0
        var hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if less((list[mid].createdAt, list[mid].devbox.id), key) { hi = mid } else { lo = mid + 1 }
        }
        list.insert(item, at: lo)
        s.byUser[item.userId] = list
    }

    private static func remove(_ s: inout State, id: String) {
        guard let old = s.byId.removeValue(forKey: id) else { return }
        s.byUser[old.userId]?.removeAll { $0.devbox.id == id }
        if s.byUser[old.userId]?.isEmpty == true { s.byUser[old.userId] = nil }
    }
}
