import DevboxModel
import Foundation
import Testing
@testable import DevboxService

/// An operation's started_at and finished_at are its step's own, although the pipeline
/// writes a step's result later, with the next step's start.
@Suite("Storage: operation times")
struct OperationTimesTests {
    static func setupRunning(_ db: AppDatabase, _ id: String) async throws -> Date {
        try await PipelineCommitTests.insert(db, id: id)
        _ = try #require(try await db.claimJob(owner: "w1@1", lease: 15))
        try await db.updateOperations(devboxId: id, [
            OperationUpdate(kind: .provision, status: .succeeded, output: "ok\n"),
            OperationUpdate(kind: .injectCredentials, status: .skipped, output: "none\n"),
            OperationUpdate(kind: .cloneRepositories, status: .skipped, output: "none\n"),
            OperationUpdate(kind: .runSetupCommands, status: .running),
        ])
        return try #require(try await PipelineCommitTests.statuses(db, id)[.runSetupCommands]?.startedAt)
    }

    /// A failed step's output is stored (status running) before the step is marked failed:
    /// that must not move its start to the moment of the failure.
    @Test func aFailedStepKeepsItsStart() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let started = try await Self.setupRunning(db, "dbx_f")
        try await Task.sleep(for: .milliseconds(120))
        try await db.updateOperations(devboxId: "dbx_f", [
            OperationUpdate(kind: .runSetupCommands, status: .running, output: "$ false\n", truncated: false)
        ])
        try await db.updateOperation(devboxId: "dbx_f", kind: .runSetupCommands, status: .failed, error: "exit 1")
        let op = try #require(try await PipelineCommitTests.statuses(db, "dbx_f")[.runSetupCommands])
        #expect(op.status == .failed && op.output == "$ false\n")
        #expect(op.startedAt == started)
        let took = try #require(op.finishedAt).timeIntervalSince(started)
        #expect(took >= 0.1, "a step that ran 120 ms is shown as \(took) s")
    }

    /// A result written with the next step's start carries the moment the step ended.
    @Test func aBatchedResultHasTheStepsOwnEnd() async throws {
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let started = try await Self.setupRunning(db, "dbx_s")
        let ended = started.addingTimeInterval(0.25)
        let publish = started.addingTimeInterval(0.4)
        try await db.finishPipeline(devboxId: "dbx_s", owner: "w1@1", last: [
            OperationUpdate(kind: .runSetupCommands, status: .succeeded, output: "$ sleep\n", at: ended),
            OperationUpdate(kind: .publishAccess, status: .running, at: publish),
            OperationUpdate(kind: .publishAccess, status: .succeeded, output: "ssh\n", at: publish),
        ])
        let ops = try await PipelineCommitTests.statuses(db, "dbx_s")
        let setup = try #require(ops[.runSetupCommands])
        #expect(setup.startedAt == started)
        #expect(abs(try #require(setup.finishedAt).timeIntervalSince(ended)) < 0.002)
        #expect(abs(try #require(ops[.publishAccess]?.startedAt).timeIntervalSince(publish)) < 0.002)
    }
}
