import DevboxModel
import Foundation
import GRDB
import Synchronization
import Testing
@testable import DevboxService

/// The pipeline's commits: the claim starts a fresh job's first step, results go with the
/// next start, the last ones with `ready`, all or nothing.
@Suite("Storage: pipeline commits")
struct PipelineCommitTests {
    static func database() throws -> (AppDatabase, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-commits-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (try AppDatabase(path: dir + "/devbox.sqlite"), dir)
    }

    static func insert(_ db: AppDatabase, id: String) async throws {
        try await addUser(db)
        _ = try await db.insertDevbox(newDevbox(id))
    }

    static func addUser(_ db: AppDatabase) async throws {
        let now = Date()
        try await db.pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO providers (id, name, created_at) VALUES ('p1', 'p', ?)", arguments: [now])
            try db.execute(
                sql: "INSERT OR IGNORE INTO users (id, provider_id, subject, created_at) VALUES ('u1', 'p1', 's', ?)", arguments: [now])
        }
    }

    static func newDevbox(_ id: String) -> NewDevbox {
        let now = Date()
        let record = DevboxRecord(
            id: id, userId: "u1", name: "n", plan: "small", state: .requested, envKeys: [], setupCommands: ["true"],
            setupTimeoutSeconds: 900, injectClaudeToken: false, injectCodexToken: false, createdAt: now, updatedAt: now,
            idleTimeoutSeconds: 3600, ttlSeconds: nil, expiresAt: nil, lastActivityAt: now)
        return NewDevbox(record: record, env: [], secrets: [], repositories: [])
    }

    final class CommitCounter: TransactionObserver, @unchecked Sendable {
        let count = Mutex(0)
        func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { eventKind.tableName == "devboxes" }
        func databaseDidChange(with event: DatabaseEvent) {}
        func databaseDidCommit(_ db: Database) { count.withLock { $0 += 1 } }
        func databaseDidRollback(_ db: Database) {}
    }

    /// Creates arriving together share commits; one failing insert fails alone.
    @Test func concurrentCreatesShareCommits() async throws {
        let (db, dir) = try Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.addUser(db)
        try await Self.insert(db, id: "dbx_dup")
        let counter = CommitCounter()
        db.pool.add(transactionObserver: counter, extent: .databaseLifetime)
        let ids = (0..<20).map { "dbx_c\($0)" } + ["dbx_dup"]
        let outcomes = await withTaskGroup(of: (String, Bool).self) { group in
            for id in ids { group.addTask { (id, (try? await db.insertDevbox(Self.newDevbox(id))) != nil) } }
            return await group.reduce(into: [String: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(outcomes["dbx_dup"] == false)
        #expect(outcomes.filter { $0.value }.count == 20)
        for id in ids where id != "dbx_dup" {
            #expect(try await db.operations(devboxId: id).count == OperationKind.allCases.count)
        }
        let commits = counter.count.withLock { $0 }
        #expect(commits >= 1 && commits < 20, "20 concurrent creates took \(commits) commits")
    }

    static func statuses(_ db: AppDatabase, _ id: String) async throws -> [OperationKind: OperationRecord] {
        Dictionary(uniqueKeysWithValues: try await db.operations(devboxId: id).map { ($0.name, $0) })
    }

    @Test func claimStartsAFreshJobAndResultsRideWithTheNextStart() async throws {
        let (db, dir) = try Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.insert(db, id: "dbx_a")
        let job = try #require(try await db.claimJob(owner: "w1@1", lease: 15))
        #expect(job.provisionStarted)
        var ops = try await Self.statuses(db, "dbx_a")
        #expect(ops[.provision]?.status == .running && ops[.provision]?.startedAt != nil)
        #expect(ops.values.filter { $0.status == .pending }.count == 4)

        try await db.updateOperations(devboxId: "dbx_a", [
            OperationUpdate(kind: .provision, status: .succeeded, output: "ok\n"),
            OperationUpdate(kind: .injectCredentials, status: .skipped, output: "none\n"),
            OperationUpdate(kind: .cloneRepositories, status: .skipped, output: "none\n"),
            OperationUpdate(kind: .runSetupCommands, status: .running),
        ])
        ops = try await Self.statuses(db, "dbx_a")
        #expect(ops[.provision]?.status == .succeeded && ops[.provision]?.output == "ok\n")
        // Skipped without running: started and finished both set.
        #expect(ops[.injectCredentials]?.status == .skipped && ops[.injectCredentials]?.startedAt != nil
            && ops[.injectCredentials]?.finishedAt != nil)
        #expect(ops[.runSetupCommands]?.status == .running)

        // The last commit needs the lease: another owner changes nothing at all.
        let last = [
            OperationUpdate(kind: .runSetupCommands, status: .succeeded, output: "$ true\n"),
            OperationUpdate(kind: .publishAccess, status: .running),
            OperationUpdate(kind: .publishAccess, status: .succeeded, output: "ssh\n"),
        ]
        await #expect(throws: StorageError.leaseLost) { try await db.finishPipeline(devboxId: "dbx_a", owner: "w2@2", last: last) }
        #expect(try await Self.statuses(db, "dbx_a")[.runSetupCommands]?.status == .running)
        #expect(try await db.devboxRecord(id: "dbx_a")?.state == .provisioning)

        try await db.finishPipeline(devboxId: "dbx_a", owner: "w1@1", last: last)
        let r = try #require(try await db.devboxRecord(id: "dbx_a"))
        #expect(r.state == .ready && r.readyAt != nil && r.lastActivityAt == r.readyAt && r.leaseOwner == nil)
        ops = try await Self.statuses(db, "dbx_a")
        #expect(ops.values.allSatisfy { $0.status == .succeeded || $0.status == .skipped })
        #expect(ops[.publishAccess]?.startedAt != nil && ops[.publishAccess]?.finishedAt != nil)
    }

    @Test func aBurstIsClaimedOldestFirstUpToTheFreeSlots() async throws {
        let (db, dir) = try Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for id in ["dbx_1", "dbx_2", "dbx_3"] { try await Self.insert(db, id: id) }
        let first = try await db.claimJobs(owner: "w1@1", lease: 15, max: 2)
        #expect(first.map(\.devbox.id) == ["dbx_1", "dbx_2"])
        #expect(first.allSatisfy { $0.provisionStarted && $0.devbox.state == .provisioning && $0.devbox.leaseOwner == "w1@1" })
        #expect(try await db.claimJobs(owner: "w1@1", lease: 15, max: 5).map(\.devbox.id) == ["dbx_3"])
        #expect(try await db.claimJobs(owner: "w1@1", lease: 15, max: 5).isEmpty)
        #expect(try await db.claimJobs(owner: "w2@2", lease: 15, max: 0).isEmpty)
    }

    @Test func aReclaimedJobIsNotFresh() async throws {
        let (db, dir) = try Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.insert(db, id: "dbx_b")
        #expect(try await db.claimJob(owner: "w1@1", lease: 15)?.provisionStarted == true)
        // The first worker died: its lease ran out with provision running.
        try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET lease_expires_at = ?", arguments: [Date(timeIntervalSinceNow: -1)]) }
        let again = try #require(try await db.claimJob(owner: "w2@2", lease: 15))
        #expect(!again.provisionStarted)
        #expect(again.operations.first { $0.name == .provision }?.status == .running)
    }
}
