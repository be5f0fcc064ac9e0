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
///
/// Entries and pages also keep their answer's bytes once a request has encoded them
/// (`devboxJSON`, `pageJSON`): a hit is then written out as it is, with no JSON built (the
/// encoding was nine tenths of a hit's handler CPU). The bytes go with their entry or page,
/// so whatever drops one drops its bytes; they are stored only if no devbox commit
/// happened since the caller took `epoch` before it looked the devbox or page up.
final class DevboxReadCache: Sendable {
    struct Entry: Sendable {
        var userId: String
        var rowID: Int64
        var devbox: Devbox
        /// `devbox` as the API writes it, once a request has encoded it.
        var json: [UInt8]? = nil
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
        /// The page as the API writes it, once a request has encoded it.
        var json: [UInt8]? = nil
    }

    private struct State {
        /// Counts commits that changed the devbox tables.
        var epoch: UInt64 = 0
        var entries: [String: Entry] = [:]
        var idsByRow: [Int64: String] = [:]
        /// Pages of the list, each valid only at the epoch it was read at: any commit that
        /// changed a devbox (or a repository, or deleted rows) makes every page stale.
        var pages: [PageKey: (epoch: UInt64, page: Page)] = [:]
        /// The read of each page in flight, with the epoch it started at (`PageFlight`).
        var flights: [PageKey: PageFlight] = [:]
    }

    /// Above this many pages the page cache starts over.
    static let pageCapacity = 256

    /// Above this many entries the cache starts over (a bound, not an LRU: a miss is one read).
    static let capacity = 4096

    private let state = Mutex(State())

    /// Every devbox that is not destroyed, for pages of live states (updated by the same
    /// observer, before the epoch moves).
    let live = LiveDevboxIndex()

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

    /// The cached devbox's encoded answer, if a request stored one (`storeJSON`).
    func devboxJSON(id: String, userId: String?) -> [UInt8]? {
        state.withLock { s in
            guard let e = s.entries[id], userId == nil || e.userId == userId else { return nil }
            return e.json
        }
    }

    /// Keeps the encoded answer with the devbox's entry, unless a devbox commit happened
    /// since `epoch` (taken before the devbox was looked up: the entry then still holds
    /// what was encoded).
    func storeJSON(id: String, _ json: [UInt8], readSince epoch: UInt64) {
        state.withLock { s in
            guard s.epoch == epoch else { return }
            s.entries[id]?.json = json
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

    /// The page's encoded answer, if it is current and a request stored one (`storePageJSON`).
    func pageJSON(_ key: PageKey) -> [UInt8]? {
        state.withLock { s in
            guard let e = s.pages[key], e.epoch == s.epoch else { return nil }
            return e.page.json
        }
    }

    /// What a request for a page's answer does: write out the stored bytes (`hit`), wait for
    /// the read of the same page that started at the current epoch (`join`), or read it
    /// itself and hand the bytes to those who join (`lead`, then `endFlight`).
    enum PageLookup {
        case hit([UInt8])
        case join(PageFlight)
        case lead(PageFlight)
    }

    /// Under create/delete churn every commit makes the pages stale, so nearly every request
    /// for a page missed, and 40 clients polling the same page each read and encoded it: the
    /// reads queued for GRDB's readers (issue 21: 100–250 ms in the handler). A request that
    /// finds a read of its page in flight that started at the current epoch waits for that
    /// read instead. Its answer is what a cache hit at that epoch would have been: the read
    /// started after every commit the epoch counts, as a stored page's read did.
    func lookupPageJSON(_ key: PageKey) -> PageLookup {
        state.withLock { s in
            if let e = s.pages[key], e.epoch == s.epoch, let json = e.page.json { return .hit(json) }
            if let f = s.flights[key], f.epoch == s.epoch { return .join(f) }
            if s.flights.count >= Self.pageCapacity { s.flights = s.flights.filter { $0.value.epoch == s.epoch } }
            let f = PageFlight(epoch: s.epoch)
            s.flights[key] = f
            return .lead(f)
        }
    }

    /// The leader's read is over: new requests no longer join it (its waiters get `finish`'s bytes).
    func endFlight(_ key: PageKey, _ flight: PageFlight) {
        state.withLock { s in
            if s.flights[key] === flight { s.flights[key] = nil }
        }
    }

    /// Keeps the encoded answer with the page, unless a devbox commit happened since `epoch`
    /// (taken before the page was looked up).
    func storePageJSON(_ key: PageKey, _ json: [UInt8], readSince epoch: UInt64) {
        state.withLock { s in
            guard s.epoch == epoch, s.pages[key]?.epoch == epoch else { return }
            s.pages[key]?.page.json = json
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

/// One read of a page of the list in flight (`DevboxReadCache.lookupPageJSON`): the requests
/// that join it wait for its answer's bytes; nil when the leader's read failed (each waiter
/// then reads for itself).
final class PageFlight: Sendable {
    let epoch: UInt64
    private struct State {
        var done = false
        var result: [UInt8]?
        var waiters: [CheckedContinuation<[UInt8]?, Never>] = []
    }
    private let state = Mutex(State())

    init(epoch: UInt64) { self.epoch = epoch }

    /// The leader's answer, once it has one.
    func wait() async -> [UInt8]? {
        await withCheckedContinuation { (c: CheckedContinuation<[UInt8]?, Never>) in
            let ready: [UInt8]?? = state.withLock { s in
                if s.done { return .some(s.result) }
                s.waiters.append(c)
                return .none
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// Hands `result` to every waiter (and to any that comes later). Once.
    func finish(_ result: [UInt8]?) {
        let waiters: [CheckedContinuation<[UInt8]?, Never>] = state.withLock { s in
            guard !s.done else { return [] }
            s.done = true
            s.result = result
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: result) }
    }
}
