import DevboxModel
import Foundation
import GRDB
import Testing
@testable import DevboxService

/// The pipeline's single-statement writes: operation updates checked against the operation
/// state machine, claims that skip live leases, `ready` only under the lease.
@Suite("Storage: operation updates and claims")
struct OperationUpdateTests {
    static func setStatus(_ db: AppDatabase, _ id: String, _ kind: OperationKind, _ status: OperationStatus,
                          output: String = "kept", started: Date? = Date(timeIntervalSince1970: 1000)) async throws {
        try await db.pool.write { db in
            try db.execute(
                sql: """
                    UPDATE operations SET status = ?, output = ?, output_truncated = 1, error = 'e0', started_at = ?,
                        finished_at = ? WHERE devbox_id = ? AND name = ?
                    """,
                arguments: [status, output, started, Date(timeIntervalSince1970: 2000), id, kind])
        }
    }

    static func op(_ db: AppDatabase, _ id: String, _ kind: OperationKind) async throws -> OperationRecord {
        try #require(try await db.operations(devboxId: id).first { $0.name == kind })
    }

    /// Every (from, to) pair: allowed exactly when the state machine allows it (or from == to);
    /// a refused update changes nothing and names both statuses.
    @Test func everyTransitionFollowsTheStateMachine() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.insert(db, id: "dbx_t")
        for from in OperationStatus.allCases {
            for to in OperationStatus.allCases {
                try await Self.setStatus(db, "dbx_t", .cloneRepositories, from)
                let allowed = from == to || OperationStateMachine.canTransition(from: from, to: to)
                do {
                    try await db.updateOperation(devboxId: "dbx_t", kind: .cloneRepositories, status: to)
                    #expect(allowed, "\(from) → \(to) was accepted")
                    #expect(try await Self.op(db, "dbx_t", .cloneRepositories).status == to)
                } catch let e as StorageError {
                    #expect(!allowed, "\(from) → \(to) was refused")
                    #expect(e == .illegalOperationTransition(.cloneRepositories, from: from, to: to))
                    let after = try await Self.op(db, "dbx_t", .cloneRepositories)
                    #expect(after.status == from && after.output == "kept" && after.error == "e0")
                }
            }
        }
        // The other operations of the devbox were never touched.
        #expect(try await db.operations(devboxId: "dbx_t").filter { $0.name != .cloneRepositories }
            .allSatisfy { $0.status == .pending && $0.startedAt == nil })
    }

    @Test func fieldsFollowTheStatus() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.insert(db, id: "dbx_f")
        let old = Date(timeIntervalSince1970: 1000)

        // running: a fresh start time, no finish; output, truncation and error stay unless given.
        try await Self.setStatus(db, "dbx_f", .provision, .pending)
        try await db.updateOperation(devboxId: "dbx_f", kind: .provision, status: .running)
        var o = try await Self.op(db, "dbx_f", .provision)
        #expect(o.startedAt.map { $0 > old } == true && o.finishedAt == nil)
        #expect(o.output == "kept" && o.outputTruncated && o.error == "e0")

        // finished: keeps the start it has, sets the finish; given fields replace.
        try await Self.setStatus(db, "dbx_f", .provision, .running)
        try await db.updateOperation(devboxId: "dbx_f", kind: .provision, status: .failed, output: "out", truncated: false, error: "boom")
        o = try await Self.op(db, "dbx_f", .provision)
        #expect(o.status == .failed && o.startedAt == old && o.finishedAt.map { $0 > old } == true)
        #expect(o.output == "out" && !o.outputTruncated && o.error == "boom")

        // skipped without running: start and finish both set now.
        try await Self.setStatus(db, "dbx_f", .publishAccess, .pending, started: nil)
        try await db.updateOperation(devboxId: "dbx_f", kind: .publishAccess, status: .skipped)
        o = try await Self.op(db, "dbx_f", .publishAccess)
        #expect(o.startedAt != nil && o.startedAt == o.finishedAt)

        // pending again (a step interrupted by a crash): everything of the last run is cleared.
        try await Self.setStatus(db, "dbx_f", .runSetupCommands, .running)
        try await db.updateOperation(devboxId: "dbx_f", kind: .runSetupCommands, status: .pending)
        o = try await Self.op(db, "dbx_f", .runSetupCommands)
        #expect(o.status == .pending && o.startedAt == nil && o.finishedAt == nil)
        #expect(o.output == "" && !o.outputTruncated && o.error == nil)

        await #expect(throws: StorageError.notFound) {
            try await db.updateOperation(devboxId: "dbx_none", kind: .provision, status: .running)
        }
    }

    /// Leases: a live holder's valid lease is left alone (this worker's own too); an expired
    /// one, one without expiry, or one whose holder process is gone is taken over.
    @Test func claimsSkipLiveLeasesOnly() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let me = "wrk_me@\(getpid())", live = "wrk_other@\(getppid())", dead = "wrk_dead@2147483646"
        let soon = Date(timeIntervalSinceNow: 60), past = Date(timeIntervalSinceNow: -60)
        let cases: [(String, String?, Date?, Bool)] = [
            ("dbx_1own", me, soon, false), ("dbx_2live", live, soon, false), ("dbx_3dead", dead, soon, true),
            ("dbx_4expired", live, past, true), ("dbx_5noexpiry", live, nil, true), ("dbx_6free", nil, nil, true),
        ]
        for (id, owner, expires, _) in cases {
            try await PipelineCommitTests.insert(db, id: id)
            try await db.pool.write { db in
                try db.execute(
                    sql: "UPDATE devboxes SET state = 'provisioning', lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                    arguments: [owner, expires, id])
            }
        }
        let claimed = try await db.claimJobs(owner: me, lease: 15, max: 10)
        #expect(Set(claimed.map(\.devbox.id)) == Set(cases.filter(\.3).map(\.0)))
        for job in claimed {
            #expect(job.devbox.leaseOwner == me && job.devbox.state == .provisioning)
            #expect(job.devbox.leaseExpiresAt.map { $0 > Date() } == true)
        }
        let untouched = try #require(try await db.devboxRecord(id: "dbx_2live"))
        #expect(untouched.leaseOwner == live)
        // `max` is respected and oldest first.
        try await PipelineCommitTests.insert(db, id: "dbx_7")
        try await PipelineCommitTests.insert(db, id: "dbx_8")
        #expect(try await db.claimJobs(owner: me, lease: 15, max: 1).map(\.devbox.id) == ["dbx_7"])
    }

    @Test func readyNeedsProvisioningAndTheLease() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.insert(db, id: "dbx_r")
        // Not claimed yet: requested → ready is not a transition, even for the right owner.
        try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET lease_owner = 'w1@1' WHERE id = 'dbx_r'") }
        await #expect(throws: StorageError.illegalTransition(from: .requested, to: .ready)) {
            try await db.finishPipeline(devboxId: "dbx_r", owner: "w1@1", last: [])
        }
        await #expect(throws: StorageError.notFound) {
            try await db.finishPipeline(devboxId: "dbx_none", owner: "w1@1", last: [])
        }
        let r = try #require(try await db.devboxRecord(id: "dbx_r"))
        #expect(r.state == .requested && r.readyAt == nil && r.leaseOwner == "w1@1")
    }
}
