import Foundation
import GRDB
import Testing
@testable import DevboxService

@Suite("Storage: dates written without DateFormatter")
struct SQLDateTests {
    /// The same text as GRDB's own encoding (Foundation's DateFormatter) for random instants
    /// between 1970 and 2200, whole seconds, and fractions at millisecond boundaries; and
    /// read back by GRDB as the same millisecond.
    @Test func sameTextAsGRDB() async throws {
        var rng = SystemRandomNumberGenerator()
        var dates = (0..<20_000).map { _ in Date(timeIntervalSince1970: Double.random(in: 0..<7_258_118_400, using: &rng)) }
        let base = Date(timeIntervalSince1970: 1_796_000_000)
        dates += [0, 0.0005, 0.001, 0.0009999, 0.999, 0.9995, 0.9999999, 59.999, 86_399.999].map { base.addingTimeInterval($0) }
        dates += [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 951_782_400.123)]  // 1970, 29 Feb 2000
        dates.append(Date())
        // A third of a second of formatting in a debug build: on a thread of its own, not on
        // the cooperative pool the other tests' tasks share.
        let all = dates
        let mismatches = await onOwnThread {
            all.compactMap { d -> String? in
                let ours = SQLDate.string(d), grdb = String.fromDatabaseValue(d.databaseValue)
                return ours == grdb ? nil : "\(d.timeIntervalSince1970): \(ours) vs \(grdb ?? "nil")"
            }
        }
        #expect(mismatches == [])
        let d = Date(timeIntervalSince1970: 1_796_000_000.25)
        let back = try #require(Date.fromDatabaseValue(SQLDate.value(d)))
        #expect(abs(back.timeIntervalSince(d)) < 0.001)
        #expect(SQLDate.value(nil as Date?) == .null)
    }
}

@Suite("Storage: records write dates through SQLDate")
struct StoredRecordDateTests {
    /// Every record type's date columns use SQLDate, not GRDB's DateFormatter default; and a
    /// record's stored text is SQLDate's.
    @Test func recordsUseSQLDate() throws {
        func usesSQLDate<R: EncodableRecord>(_: R.Type, _ column: String) -> Bool {
            if case .custom = R.databaseDateEncodingStrategy(for: column) { return true }
            return false
        }
        #expect(usesSQLDate(ProviderRecord.self, "created_at"))
        #expect(usesSQLDate(ProviderTokenRecord.self, "created_at"))
        #expect(usesSQLDate(UserRecord.self, "created_at"))
        #expect(usesSQLDate(DevboxRecord.self, "created_at"))
        #expect(usesSQLDate(OperationRecord.self, "started_at"))
        #expect(usesSQLDate(SessionRecord.self, "created_at"))
        #expect(usesSQLDate(DashboardSessionRecord.self, "created_at"))
        #expect(usesSQLDate(GitHubConnectionRecord.self, "created_at"))

        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let when = Date(timeIntervalSince1970: 1_796_000_000.1237)
        try db.pool.write { db in
            try ProviderRecord(id: "p9", name: "p", createdAt: when).insert(db)
            let text = try String.fetchOne(db, sql: "SELECT created_at FROM providers WHERE id = 'p9'")
            #expect(text == SQLDate.string(when) && text == "2026-11-30 00:53:20.124")
            #expect(try ProviderRecord.fetchOne(db, key: "p9").map { abs($0.createdAt.timeIntervalSince(when)) < 0.001 } == true)
        }
    }
}

/// Runs CPU-heavy test work on a thread of its own (Swift's cooperative pool has two threads here).
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        let thread = Thread { c.resume(returning: body()) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
