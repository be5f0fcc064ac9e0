import DevboxModel
import Foundation
import GRDB
import GRDBSQLite
import Testing

@testable import DevboxService

/// The list's pages (issue 21): answers equal to the plain filter-and-sort, and a read cost
/// that does not grow with the destroyed devboxes kept for the retention period.
@Suite("Storage: list pages")
struct ListPageTests {
    static func withDatabase<T>(_ body: (AppDatabase, String) async throws -> T) async throws -> T {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-pages-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/devbox.sqlite"
        return try await body(try AppDatabase(path: path), path)
    }

    /// `count` devboxes of `userId`, states in turn from `states`, several sharing a creation
    /// time (the cursor's tie-break on id).
    static func seed(_ db: AppDatabase, userId: String, count: Int, states: [DevboxState]) async throws {
        try await db.pool.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO providers (id, name, created_at) VALUES ('prv_t', 'test', '2026-01-01 00:00:00.000')")
            try db.execute(
                sql: "INSERT OR IGNORE INTO users (id, provider_id, subject, created_at) VALUES (?, 'prv_t', ?, '2026-01-01 00:00:00.000')",
                arguments: [userId, userId])
            let base = Date(timeIntervalSince1970: 1_800_000_000)
            for i in 0..<count {
                let at = base.addingTimeInterval(TimeInterval(i / 3))
                let r = DevboxRecord(
                    id: "dbx_\(userId)_\(String(format: "%04d", (i * 7919) % 10_000))", userId: userId, name: "b\(i)",
                    plan: "small", state: states[i % states.count], envKeys: [], setupCommands: [], setupTimeoutSeconds: 900,
                    injectClaudeToken: false, injectCodexToken: false, createdAt: at, updatedAt: at, lastActivityAt: at)
                try r.insert(db)
            }
        }
    }

    @Test("pages with state filters, limits and cursors list exactly the filtered devboxes, newest first, once")
    func pagesMatchTheFilteredList() async throws {
        try await Self.withDatabase { db, _ in
            try await Self.seed(db, userId: "usr_a", count: 200, states: [.destroyed, .ready, .destroyed, .failed, .destroyed, .stopped])
            try await Self.seed(db, userId: "usr_b", count: 30, states: [.ready])
            let all = try await db.devboxes(userId: "usr_a")
            #expect(all.count == 200)
            let filters: [Set<DevboxState>?] = [nil, [.ready], [.ready, .stopped], [.requested, .provisioning, .ready],
                                                [.destroyed, .failed], Set(DevboxState.allCases), [.requested]]
            for states in filters {
                // The expected order: newest first, ties by id descending (the cursor's order).
                let expected = all.filter { states?.contains($0.state) ?? true }
                    .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.map(\.id)
                for limit in [1, 7, 50, 500] {
                    var seen: [String] = []
                    var after: DevboxCursor?
                    repeat {
                        let page = try await db.devboxPage(userId: "usr_a", DevboxPageRequest(states: states, limit: limit, after: after))
                        #expect(page.devboxes.count <= limit)
                        seen += page.devboxes.map(\.id)
                        after = page.next
                        #expect(seen.count <= expected.count)
                    } while after != nil && seen.count <= expected.count
                    #expect(seen == expected, "states \(String(describing: states)) limit \(limit)")
                }
                let unlimited = try await db.devboxPage(userId: "usr_a", DevboxPageRequest(states: states))
                #expect(unlimited.devboxes.map(\.id) == expected && unlimited.next == nil)
            }
        }
    }

    /// SQLite's VM steps for the page's own query (deterministic, unlike a time).
    static func pageSteps(_ db: AppDatabase, _ request: DevboxPageRequest) async throws -> (steps: Int32, plan: [String]) {
        try await db.pool.read { db in
            let (sql, args) = AppDatabase.pageQuery(userId: "usr_a", request)
            let statement = try db.makeStatement(sql: sql)
            _ = try Row.fetchAll(statement, arguments: args)
            let plan = try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: args).map { $0["detail"] as String }
            return (sqlite3_stmt_status(statement.sqliteStatement, SQLITE_STMTSTATUS_VM_STEP, 0), plan)
        }
    }

    @Test("a filtered page's cost does not grow with the destroyed devboxes kept for the retention period")
    func filteredPagesIgnoreDestroyedRows() async throws {
        let requests = [
            DevboxPageRequest(states: [.requested, .provisioning, .ready], limit: 50),
            DevboxPageRequest(states: [.ready], limit: 50),
            DevboxPageRequest(states: [.ready, .stopped], limit: 20, after: DevboxCursor(createdAt: "2027-01-15 08:00:00.000", id: "dbx_z")),
        ]
        // The same 200 live devboxes, alone and among 5,000 destroyed ones.
        let alone = try await Self.withDatabase { db, _ in
            try await Self.seed(db, userId: "usr_a", count: 200, states: [.ready, .stopped])
            var r: [(steps: Int32, plan: [String])] = []
            for q in requests { r.append(try await Self.pageSteps(db, q)) }
            return r
        }
        let among = try await Self.withDatabase { db, _ in
            try await Self.seed(db, userId: "usr_a", count: 200, states: [.ready, .stopped])
            try await db.pool.write { db in
                try db.execute(sql: """
                    WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 5000)
                    INSERT INTO devboxes (id, user_id, name, plan, state, env_keys, setup_commands, setup_timeout_seconds,
                        inject_claude_token, inject_codex_token, created_at, updated_at, destroyed_at)
                    SELECT 'dbx_gone_' || value, 'usr_a', 'gone', 'small', 'destroyed', '[]', '[]', 900, 0, 0,
                        '2027-02-01 00:00:00.000', '2027-02-01 00:00:00.000', '2027-02-01 00:00:00.000'
                    FROM n
                    """)
            }
            var r: [(steps: Int32, plan: [String])] = []
            for q in requests { r.append(try await Self.pageSteps(db, q)) }
            return r
        }
        for (i, (a, b)) in zip(alone, among).enumerated() {
            print("page \(i): \(a.steps) VM steps alone, \(b.steps) among 5,000 destroyed; plan \(b.plan)")
            #expect(b.steps <= a.steps + a.steps / 10, "page \(i): \(a.steps) steps alone, \(b.steps) among destroyed")
            #expect(b.plan.contains { $0.contains("devboxes_user_state_created") } && !b.plan.contains { $0.hasPrefix("SCAN devboxes") })
        }
    }

    @Test("the serve's page cache answers until a commit changes a devbox, never a page older than an acknowledged write")
    func pageCacheFollowsCommits() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-pages-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try AppDatabase(path: dir + "/devbox.sqlite", cachesDevboxes: true)
        try await Self.seed(db, userId: "usr_a", count: 12, states: [.ready, .destroyed])
        let live = DevboxPageRequest(states: [.requested, .provisioning, .ready], limit: 50)
        let first = try await db.devboxPage(userId: "usr_a", live)
        #expect(first.devboxes.count == 6)
        #expect(db.readCache?.page(.init(userId: "usr_a", live)) != nil)
        // Another user's page and another request are other entries.
        #expect(db.readCache?.page(.init(userId: "usr_b", live)) == nil)
        #expect(db.readCache?.page(.init(userId: "usr_a", DevboxPageRequest(states: [.ready], limit: 50))) == nil)
        // A commit that destroys one: the next page is read again and no longer lists it.
        let gone = first.devboxes[2].id
        try await db.transition(gone, to: .destroyed) { $0.destroyedAt = Date() }
        #expect(db.readCache?.page(.init(userId: "usr_a", live)) == nil)
        let second = try await db.devboxPage(userId: "usr_a", live)
        #expect(second.devboxes.map(\.id) == first.devboxes.map(\.id).filter { $0 != gone })
        // Commits that touch no devbox (operations, tokens) keep the page.
        _ = try await db.insertProviderToken(providerName: "p", tokenHash: "h", hint: "h")
        #expect(db.readCache?.page(.init(userId: "usr_a", live))?.devboxes.map(\.id) == second.devboxes.map(\.id))
        // A read that overlapped a commit is not kept.
        let cache = try #require(db.readCache)
        let before = cache.epoch
        cache.invalidate(devboxRows: [1])
        cache.storePage(.init(userId: "usr_a", live), .init(devboxes: [], next: nil), readSince: before)
        #expect(cache.page(.init(userId: "usr_a", live)) == nil)
    }
}
