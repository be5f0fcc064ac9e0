import DevboxModel
import Foundation
import GRDB
import Testing
@testable import DevboxService

/// `AppDatabase.writeState`, the one checked state write (claim, ready, failed, stop, start,
/// destroy all go through it): every (from, to) pair against the state machine, leases, and
/// the columns written with the state.
@Suite("Storage: the checked state write")
struct StateWriteTests {
    static func setState(_ db: AppDatabase, _ id: String, _ state: DevboxState, lease: String? = nil) async throws {
        try await db.pool.write { db in
            try db.execute(
                sql: "UPDATE devboxes SET state = ?, lease_owner = ?, error_message = 'kept' WHERE id = ?",
                arguments: [state, lease, id])
        }
    }

    @Test func everyPairFollowsTheStateMachine() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.insert(db, id: "dbx_s")
        for from in DevboxState.allCases {
            for to in DevboxState.allCases {
                try await Self.setState(db, "dbx_s", from)
                let allowed = DevboxStateMachine.canTransition(from: from, to: to)
                do {
                    try await db.transition("dbx_s", to: to)
                    #expect(allowed, "\(from) → \(to) was accepted")
                    #expect(try await db.devboxRecord(id: "dbx_s")?.state == to)
                } catch let e as StorageError {
                    #expect(!allowed, "\(from) → \(to) was refused")
                    #expect(e == .illegalTransition(from: from, to: to))
                    let r = try #require(try await db.devboxRecord(id: "dbx_s"))
                    #expect(r.state == from && r.errorMessage == "kept")
                }
            }
        }
        await #expect(throws: StorageError.notFound) { try await db.transition("dbx_none", to: .destroyed) }
    }

    @Test func aLeaseIsCheckedFirstAndTheColumnsGoWithTheState() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.insert(db, id: "dbx_l")
        try await Self.setState(db, "dbx_l", .provisioning, lease: "w1@1")
        // Another owner: refused for the lease, even towards a state it could not reach anyway.
        await #expect(throws: StorageError.leaseLost) { try await db.transition("dbx_l", to: .failed, leaseOwner: "w2@2") }
        await #expect(throws: StorageError.leaseLost) { try await db.transition("dbx_l", to: .stopped, leaseOwner: "w2@2") }
        // The owner, with columns from `mutate`: only what it changed is written.
        try await db.transition("dbx_l", to: .failed, leaseOwner: "w1@1") { r in
            r.errorOperation = "provision"
            r.errorMessage = "boom"
            r.leaseOwner = nil
        }
        let r = try #require(try await db.devboxRecord(id: "dbx_l"))
        #expect(r.state == .failed && r.errorOperation == "provision" && r.errorMessage == "boom" && r.leaseOwner == nil)
        #expect(r.name == "n" && r.setupCommands == ["true"])

        // A narrowed `from`: stopped → ready is legal, but not where the writer allows only provisioning.
        try await Self.setState(db, "dbx_l", .stopped, lease: "w1@1")
        await #expect(throws: StorageError.illegalTransition(from: .stopped, to: .ready)) {
            try await db.pool.write { db in
                try AppDatabase.writeState(db, "dbx_l", StateWrite(to: .ready, from: [.provisioning], leaseOwner: "w1@1"))
            }
        }
        let at = Date(timeIntervalSince1970: 1_800_000_000)
        try await db.pool.write { db in
            try AppDatabase.writeState(
                db, "dbx_l", StateWrite(to: .ready, leaseOwner: "w1@1", columns: [(.readyAt, SQLDate.value(at))]), now: at)
        }
        let ready = try #require(try await db.devboxRecord(id: "dbx_l"))
        #expect(ready.state == .ready && ready.readyAt == at && ready.updatedAt == at)
    }

    /// A failed job is one transaction: the results not yet written, the failed step, the
    /// remaining steps, `failed` and the secrets; a refused operation update is left out.
    @Test func aFailureIsOneTransaction() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.addUser(db)
        var new = PipelineCommitTests.newDevbox("dbx_f")
        new.env = [EnvRecord(devboxId: "dbx_f", key: "K", valueEncrypted: "x")]
        _ = try await db.insertDevbox(new)
        _ = try #require(try await db.claimJob(owner: "w1@1", lease: 15))
        let counter = PipelineCommitTests.CommitCounter()
        db.pool.add(transactionObserver: counter, extent: .databaseLifetime)
        let refused = try await db.recordFailure(devboxId: "dbx_f", owner: "w1@1", op: .injectCredentials, message: "boom", updates: [
            OperationUpdate(kind: .provision, status: .succeeded, output: "ok\n"),
            OperationUpdate(kind: .injectCredentials, status: .running),
            OperationUpdate(kind: .injectCredentials, status: .failed, output: "tail\n", error: "boom"),
            OperationUpdate(kind: .provision, status: .failed),  // refused: provision succeeded
        ])
        #expect(refused.map(\.kind) == [.provision])
        #expect(counter.count.withLock { $0 } == 1)
        let r = try #require(try await db.devboxRecord(id: "dbx_f"))
        #expect(r.state == .failed && r.errorOperation == "inject_credentials" && r.errorMessage == "boom" && r.leaseOwner == nil)
        let ops = try await PipelineCommitTests.statuses(db, "dbx_f")
        #expect(ops[.provision]?.status == .succeeded)
        #expect(ops[.injectCredentials]?.status == .failed && ops[.injectCredentials]?.output == "tail\n")
        #expect([OperationKind.cloneRepositories, .runSetupCommands, .publishAccess].allSatisfy { ops[$0]?.status == .skipped })
        #expect(try await db.envRecords(devboxId: "dbx_f").isEmpty)

        // Another owner (a DELETE took the lease): nothing at all is written.
        try await PipelineCommitTests.insert(db, id: "dbx_g")
        _ = try #require(try await db.claimJob(owner: "w1@1", lease: 15))
        await #expect(throws: StorageError.leaseLost) {
            _ = try await db.recordFailure(devboxId: "dbx_g", owner: "w2@2", op: .provision, message: "x", updates: [
                OperationUpdate(kind: .provision, status: .failed, error: "x")
            ])
        }
        #expect(try await db.devboxRecord(id: "dbx_g")?.state == .provisioning)
        #expect(try await PipelineCommitTests.statuses(db, "dbx_g")[.provision]?.status == .running)
    }

    /// The restart of an interrupted pipeline: finished steps back to pending in one commit,
    /// never a failed one.
    @Test func aRestartSetsFinishedStepsPending() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.insert(db, id: "dbx_r")
        _ = try #require(try await db.claimJob(owner: "w1@1", lease: 15))
        try await db.updateOperations(devboxId: "dbx_r", [
            OperationUpdate(kind: .provision, status: .succeeded, output: "ok\n"),
            OperationUpdate(kind: .injectCredentials, status: .skipped, output: "none\n"),
            OperationUpdate(kind: .cloneRepositories, status: .running),
        ])
        try await db.restartOperations(devboxId: "dbx_r", [.provision, .injectCredentials, .cloneRepositories])
        let ops = try await PipelineCommitTests.statuses(db, "dbx_r")
        #expect(ops.values.allSatisfy { $0.status == .pending && $0.output == "" && $0.startedAt == nil && $0.finishedAt == nil })
        try await db.updateOperation(devboxId: "dbx_r", kind: .provision, status: .failed, error: "x")
        await #expect(throws: StorageError.illegalOperationTransition(.provision, from: .failed, to: .pending)) {
            try await db.restartOperations(devboxId: "dbx_r", [.provision])
        }
    }

    /// No SQL of the service sets a devbox's state except `writeState`.
    @Test func noOtherStateWrite() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(atPath: sources.path)?.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") } ?? []
        var offenders: [String] = []
        for f in files {
            let text = try String(contentsOfFile: sources.appendingPathComponent(f).path, encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let l = line.lowercased()
                if l.contains("update devboxes set state") || l.contains("set state =") && !l.contains("operations")
                    || l.contains("r.state = ") || l.contains(".state = to")
                {
                    offenders.append("\(f):\(n + 1): \(line)")
                }
            }
        }
        // The one statement: `writeState` builds "UPDATE devboxes SET state = ?".
        #expect(offenders.count == 1 && offenders.first?.contains("AppDatabase+Devboxes.swift") == true, "\(offenders)")
    }
}
