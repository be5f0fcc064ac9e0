import DevboxModel
import Synchronization

/// Devboxes as the API shows them, kept in memory for `GET /api/v1/devboxes/:id` and
/// every poll of it: a hit answers without a database read (no reader checkout, no thread
/// hop, no row decoding).
///
/// Coherent only in the process that makes every write to the devbox tables (the serve):
/// `DevboxChangeObserver` drops entries after each commit that touched them. A read that
/// overlapped any such commit is not stored (`epoch`): it may have seen the old row, and
/// the commit's drop may have come before the store.
///
/// - a commit that changed devbox rows drops those rows' entries (by SQLite row id);
/// - a commit that changed repository rows, or deleted any row, drops everything.
final class DevboxReadCache: Sendable {
    struct Entry: Sendable {
        var userId: String
        var rowID: Int64
        var devbox: Devbox
    }

    /// A page of the list as `AppDatabase.devboxPage` answered it.
    struct PageKey: Hashable, Sendable {
        var userId: String
        var states: [String]?
        var limit: Int?
        var after: [String]?

        init(userId: String, _ page: DevboxPageRequest) {
            self.userId = userId
            states = page.states.map { $0.map(\.rawValue).sorted() }
            limit = page.limit
            after = page.after.map { [$0.createdAt, $0.id] }
        }
    }

    struct Page: Sendable {
        var devboxes: [Devbox]
        var next: DevboxCursor?
    }

    private struct State {
        /// Counts commits that changed the devbox tables.
        var epoch: UInt64 = 0
        var entries: [String: Entry] = [:]
        var idsByRow: [Int64: String] = [:]
        /// Pages of the list, each valid only at the epoch it was read at: any commit that
        /// changed a devbox (or a repository, or deleted rows) makes every page stale.
        var pages: [PageKey: (epoch: UInt64, page: Page)] = [:]
    }

    /// Above this many pages the page cache starts over.
    static let pageCapacity = 256

    /// Above this many entries the cache starts over (a bound, not an LRU: a miss is one read).
    static let capacity = 4096

    private let state = Mutex(State())

    /// Take before the read whose result you will `store`.
    var epoch: UInt64 { state.withLock { $0.epoch } }

    var count: Int { state.withLock { $0.entries.count } }

    /// The cached devbox, if it belongs to `userId` (any user when nil).
    func devbox(id: String, userId: String?) -> Devbox? {
        state.withLock { s in
            guard let e = s.entries[id], userId == nil || e.userId == userId else { return nil }
            return e.devbox
        }
    }

    /// Stores what a read returned, unless a devbox commit happened since `epoch` was taken.
    func store(_ entry: Entry, readSince epoch: UInt64) {
        state.withLock { s in
            guard s.epoch == epoch else { return }
            if s.entries.count >= Self.capacity {
                s.entries.removeAll(keepingCapacity: true)
                s.idsByRow.removeAll(keepingCapacity: true)
            }
            if let old = s.entries.updateValue(entry, forKey: entry.devbox.id), old.rowID != entry.rowID {
                s.idsByRow[old.rowID] = nil
            }
            s.idsByRow[entry.rowID] = entry.devbox.id
        }
    }

    /// The page, if it was read since the last commit that changed a devbox.
    func page(_ key: PageKey) -> Page? {
        state.withLock { s in
            guard let e = s.pages[key], e.epoch == s.epoch else { return nil }
            return e.page
        }
    }

    /// Stores a page a read returned, unless a devbox commit happened since `epoch` was taken.
    func storePage(_ key: PageKey, _ page: Page, readSince epoch: UInt64) {
        state.withLock { s in
            guard s.epoch == epoch else { return }
            if s.pages.count >= Self.pageCapacity { s.pages.removeAll(keepingCapacity: true) }
            s.pages[key] = (epoch, page)
        }
    }

    /// After a commit that changed these devbox rows (and nothing else the cache holds).
    func invalidate(devboxRows: Set<Int64>) {
        state.withLock { s in
            s.epoch &+= 1
            for row in devboxRows {
                if let id = s.idsByRow.removeValue(forKey: row) { s.entries[id] = nil }
            }
        }
    }

    /// After a commit that changed repositories or deleted rows.
    func invalidateAll() {
        state.withLock { s in
            s.epoch &+= 1
            s.entries.removeAll(keepingCapacity: true)
            s.idsByRow.removeAll(keepingCapacity: true)
        }
    }
}
