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
    func devboxPage(userId: String, _ page: DevboxPageRequest) async throws -> (devboxes: [Devbox], next: DevboxCursor?) {
        try await pool.read { db in
            var sql = "SELECT * FROM devboxes WHERE user_id = ?"
            var args: StatementArguments = [userId]
            if let states = page.states {
                sql += " AND state IN (\(states.map { _ in "?" }.joined(separator: ",")))"
                for s in states.sorted(by: { $0.rawValue < $1.rawValue }) { args += [s.rawValue] }
            }
            if let after = page.after {
                sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
                args += [after.createdAt, after.createdAt, after.id]
            }
            sql += " ORDER BY created_at DESC, id DESC"
            if let limit = page.limit {
                sql += " LIMIT ?"
                args += [limit + 1]
            }
            let rows = try Row.fetchAll(db, sql: sql, arguments: args)
            var records = try rows.map { try DevboxRecord(row: $0) }
            var next: DevboxCursor?
            if let limit = page.limit, records.count > limit {
                records.removeLast(records.count - limit)
                if let last = rows[limit - 1]["created_at"] as String? { next = DevboxCursor(createdAt: last, id: records[limit - 1].id) }
            }
            let repos = try RepositoryRecord.filter(records.map(\.id).contains(Column("devbox_id")))
                .order(Column("position")).fetchAll(db)
            let byBox = Dictionary(grouping: repos, by: \.devboxId)
            return (records.map { $0.model(repositories: byBox[$0.id] ?? []) }, next)
        }
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
