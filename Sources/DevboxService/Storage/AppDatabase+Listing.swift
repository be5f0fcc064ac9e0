import DevboxModel
import Foundation
import GRDB

/// A page of the devbox list: newest first, `after` the last one of the previous page.
public struct DevboxPageRequest: Sendable, Equatable {
    /// nil: every state.
    public var states: Set<DevboxState>?
    /// nil: no limit (the seed's list).
    public var limit: Int?
    public var after: DevboxCursor?

    public init(states: Set<DevboxState>? = nil, limit: Int? = nil, after: DevboxCursor? = nil) {
        self.states = states
        self.limit = limit
        self.after = after
    }
}

/// Where a page ended: the last devbox's creation time (as stored) and id. Opaque to clients
/// (base64url of "<created_at>|<id>").
public struct DevboxCursor: Sendable, Equatable {
    var createdAt: String
    var id: String

    public init?(encoded: String) {
        var b64 = encoded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard encoded.count <= 256, let data = Data(base64Encoded: b64),
            let text = String(data: data, encoding: .utf8), let bar = text.firstIndex(of: "|")
        else { return nil }
        createdAt = String(text[..<bar])
        id = String(text[text.index(after: bar)...])
        guard !createdAt.isEmpty, !id.isEmpty else { return nil }
    }

    init(createdAt: String, id: String) {
        self.createdAt = createdAt
        self.id = id
    }

    public var encoded: String {
        Data("\(createdAt)|\(id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

extension AppDatabase {
    /// One page of a user's devboxes and the cursor of the next page (nil: the last page).
    ///
    /// Reads O(states × limit) rows whatever the number of destroyed devboxes kept for the
    /// retention period: with a state filter, one leg per state walks
    /// `devboxes_user_state_created` newest first and stops after `limit + 1` rows, and only
    /// those legs are merged (one ordered scan of `devboxes_user_created` skipping every
    /// destroyed row took 1 ms of CPU per page after 300 create/delete cycles, and grew with
    /// them). Cached statements (a few dozen shapes); rows decoded from the statement, not
    /// copied (a copied row looks every column up by a lowercased linear search).
    ///
    /// In the serve, pages are kept in memory (`DevboxReadCache`) until the next commit that
    /// changes a devbox: clients polling a page of live devboxes cost no read, no decoding.
    /// A page that does not ask for destroyed devboxes is cut from `LiveDevboxIndex` when it
    /// is not cached: no read either.
    func devboxPage(userId: String, _ page: DevboxPageRequest) async throws -> (devboxes: [Devbox], next: DevboxCursor?) {
        guard let cache = readCache else { return try await readPage(userId: userId, page) }
        let key = DevboxReadCache.PageKey(userId: userId, page)
        if let hit = cache.page(key) { return (hit.devboxes, hit.next) }
        let epoch = cache.epoch
        if let r = cache.live.page(userId: userId, page) {
            cache.storePage(key, .init(devboxes: r.devboxes, next: r.next), readSince: epoch)
            return r
        }
        let r = try await readPage(userId: userId, page)
        cache.storePage(key, .init(devboxes: r.devboxes, next: r.next), readSince: epoch)
        return r
    }

    func readPage(userId: String, _ page: DevboxPageRequest) async throws -> (devboxes: [Devbox], next: DevboxCursor?) {
        try await pool.read { db in
            let (sql, args) = Self.pageQuery(userId: userId, page)
            var records: [DevboxRecord] = []
            var createdAt: [String] = []
            let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: args)
            while let row = try rows.next() {
                records.append(try DevboxRecord(row: row))
                if page.limit != nil { createdAt.append(row["created_at"]) }
            }
            var next: DevboxCursor?
            if let limit = page.limit, records.count > limit {
                records.removeLast(records.count - limit)
                next = DevboxCursor(createdAt: createdAt[limit - 1], id: records[limit - 1].id)
            }
            let byBox = try Self.repositories(db, devboxIds: records.map(\.id))
            return (records.map { $0.model(repositories: byBox[$0.id] ?? []) }, next)
        }
    }

    /// The SQL of a page and its arguments (see `devboxPage`).
    static func pageQuery(userId: String, _ page: DevboxPageRequest) -> (sql: String, arguments: StatementArguments) {
        var args: StatementArguments = []
        func leg(state: DevboxState?) -> String {
            var sql = "SELECT * FROM devboxes WHERE user_id = ?"
            args += [userId]
            if let state {
                sql += " AND state = ?"
                args += [state.rawValue]
            }
            if let after = page.after {
                sql += " AND (created_at, id) < (?, ?)"
                args += [after.createdAt, after.id]
            }
            sql += " ORDER BY created_at DESC, id DESC"
            if let limit = page.limit {
                sql += " LIMIT ?"
                args += [limit + 1]
            }
            return sql
        }
        var sql: String
        if let states = page.states, states.count > 1 {
            sql = states.sorted(by: { $0.rawValue < $1.rawValue })
                .map { "SELECT * FROM (\(leg(state: $0)))" }.joined(separator: " UNION ALL ")
            sql += " ORDER BY created_at DESC, id DESC"
            if let limit = page.limit {
                sql += " LIMIT ?"
                args += [limit + 1]
            }
        } else {
            sql = leg(state: page.states?.first)
        }
        return (sql, args)
    }

    /// The repositories of these devboxes, in position order, by devbox id (one cached
    /// statement whatever the count: the ids go in as one JSON array).
    static func repositories(_ db: Database, devboxIds ids: [String]) throws -> [String: [RepositoryRecord]] {
        guard !ids.isEmpty else { return [:] }
        let list = String(decoding: try JSONEncoder().encode(ids), as: UTF8.self)
        let repos = try RepositoryRecord.fetchAll(
            db.cachedStatement(sql: """
                SELECT * FROM devbox_repositories WHERE devbox_id IN (SELECT value FROM json_each(?))
                ORDER BY devbox_id, position
                """), arguments: [list])
        return Dictionary(grouping: repos, by: \.devboxId)
    }

    /// The index of a page filtered by state (`devboxPage`): newest first within one user's
    /// devboxes of one state.
    static func migrateListStates(_ db: Database) throws {
        try db.execute(sql: "CREATE INDEX devboxes_user_state_created ON devboxes(user_id, state, created_at, id)")
    }

    /// Deletes devboxes destroyed before `cutoff` (their rows in other tables cascade);
    /// returns how many.
    func purgeDestroyed(before cutoff: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: "DELETE FROM devboxes WHERE state = 'destroyed' AND destroyed_at IS NOT NULL AND destroyed_at < ?",
                arguments: [SQLDate.string(cutoff)])
            return db.changesCount
        }
    }
}
