import Foundation
import GRDB
import Logging
import Synchronization
import Testing

@testable import DevboxServer
@testable import DevboxService

/// Every record a logger is given, by level (the pipeline's log, captured for a check).
final class LogRecords: Sendable {
    private let records = Mutex<[(level: Logger.Level, message: String)]>([])
    func append(_ level: Logger.Level, _ message: String) { records.withLock { $0.append((level, message)) } }
    var all: [(level: Logger.Level, message: String)] { records.withLock { $0 } }
}

struct CapturingLogHandler: LogHandler {
    let records: LogRecords
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { records.append(event.level, "\(event.message)") }
}

/// A DELETE that lands while the worker records a failed step: the devbox ends destroyed,
/// which is what was asked, so nothing is logged as an error.
@Suite struct FailureRaceTests {
    /// A requested devbox of user u1 (provider p1), stored as a create stores it
    /// (as DevboxServiceTests' PipelineCommitTests.insert).
    static func insert(_ db: AppDatabase, id: String, plan: String = "small") async throws {
        let now = Date()
        try await db.pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO providers (id, name, created_at) VALUES ('p1', 'p', ?)", arguments: [now])
            try db.execute(
                sql: "INSERT OR IGNORE INTO users (id, provider_id, subject, created_at) VALUES ('u1', 'p1', 's', ?)", arguments: [now])
        }
        let record = DevboxRecord(
            id: id, userId: "u1", name: "n", plan: plan, state: .requested, envKeys: [], setupCommands: ["true"],
            setupTimeoutSeconds: 900, injectClaudeToken: false, injectCodexToken: false, createdAt: now, updatedAt: now,
            idleTimeoutSeconds: 3600, ttlSeconds: nil, expiresAt: nil, lastActivityAt: now)
        _ = try await db.insertDevbox(NewDevbox(record: record, env: [], secrets: [], repositories: []))
    }

    @Test func aDeleteRacingAFailureIsNotAnError() async throws {
        try await withTestSystem("fail-race") { system, _ in
            let core = system.services
            try await Self.insert(core.reads.db, id: "dbx_race")
            let owner = "w1@1"
            _ = try #require(try await core.reads.db.claimJob(owner: owner, lease: 15))
            try await core.reads.db.updateOperations(devboxId: "dbx_race", [
                OperationUpdate(kind: .provision, status: .succeeded, output: "ok\n"),
                OperationUpdate(kind: .injectCredentials, status: .skipped, output: "none\n"),
                OperationUpdate(kind: .cloneRepositories, status: .skipped, output: "none\n"),
                OperationUpdate(kind: .runSetupCommands, status: .running),
            ])
            // The setup command has just failed; before the worker records it, the DELETE wins:
            // destroyed, lease taken away, the running step marked failed by its teardown.
            try await core.commands.deleteDevbox(Principal(providerId: "p1", providerTokenId: "t1", userId: "u1"), id: "dbx_race")

            let records = LogRecords()
            let log = Logger(label: "race") { _ in CapturingLogHandler(records: records) }
            let runner = JobRunner(ctx: core.provisioning, owner: owner, stopping: StopFlag())
            await runner.fail("dbx_race", op: .runSetupCommands, message: "exit 3", log: log)

            #expect(try await core.reads.db.devboxRecord(id: "dbx_race")?.state == .destroyed)
            let errors = records.all.filter { $0.level >= .error }
            #expect(errors.isEmpty, "logged as errors: \(errors)")
            #expect(records.all.contains { $0.level == .info && $0.message.contains("destroyed while its failure") })
        }
    }
}
