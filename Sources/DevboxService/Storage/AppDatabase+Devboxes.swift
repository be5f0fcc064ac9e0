import DevboxModel
import Foundation
import GRDB

/// Everything needed to insert a new devbox in one transaction.
struct NewDevbox: Sendable {
    var record: DevboxRecord
    var env: [EnvRecord]
    var secrets: [PendingSecretRecord]
    var repositories: [RepositoryRecord]
}

/// One operation status change (see `updateOperation`).
struct OperationUpdate: Sendable, Equatable {
    var kind: OperationKind
    var status: OperationStatus
    var output: String? = nil
    var truncated: Bool? = nil
    var error: String? = nil
    /// When the step reached `status`. Updates are batched (a step's result goes in the
    /// commit of the next step's start), so the write happens later: without this the
    /// step's times would be the commit's. nil: the time of the write.
    var at: Date? = nil
}

/// A claimed provisioning job: the devbox and its operations at claim time.
struct ClaimedJob: Sendable {
    var devbox: DevboxRecord
    var operations: [OperationRecord]
    var repositories: [RepositoryRecord]
    /// A fresh job (every operation pending): the claim also marked `provision` running.
    var provisionStarted = false
}

enum StorageError: Error, Equatable {
    case illegalTransition(from: DevboxState, to: DevboxState)
    case illegalOperationTransition(OperationKind, from: OperationStatus, to: OperationStatus)
    case notFound
    case leaseLost
}

/// One change of a devbox's state, with the columns written in the same UPDATE
/// (`AppDatabase.writeState`, the one checked state write).
struct StateWrite: Sendable {
    var to: DevboxState
    /// Narrows the states it may leave (nil: every state the state machine allows).
    var from: Set<DevboxState>? = nil
    /// The lease the writer must hold.
    var leaseOwner: String? = nil
    /// Other columns set with the state (not `state`, `updated_at`, `id`).
    var columns: [(DevboxRecord.CodingKeys, DatabaseValue)] = []
}

extension AppDatabase {
    /// Inserts the devbox, its five pending operations, encrypted env, pending secrets and
    /// repositories in one transaction: either all of it is stored or none.
    /// Stores a new devbox with its operations, env, tokens and repositories: one
    /// transaction, on disk when this returns (group commit with concurrent creates).
    func insertDevbox(_ new: NewDevbox) async throws -> Devbox {
        try await createBatcher.insert(new)
    }

    static func insert(_ db: Database, _ new: NewDevbox) throws -> Devbox {
        try new.record.insert(db)
        let insertOperation = try db.cachedStatement(sql: """
            INSERT INTO operations (id, devbox_id, position, name, status, output, output_truncated)
            VALUES (?, ?, ?, ?, 'pending', '', 0)
            """)
        for (i, kind) in OperationKind.allCases.enumerated() {
            try insertOperation.execute(arguments: [Identifier.make("op_"), new.record.id, i, kind])
        }
        for e in new.env { try e.insert(db) }
        for s in new.secrets { try s.insert(db) }
        for r in new.repositories { try r.insert(db) }
        return new.record.model(repositories: new.repositories)
    }

    func devbox(id: String, userId: String?) async throws -> Devbox? {
        // The hottest read of the service (every GET and every poll): answered from
        // `readCache` when it holds the devbox; otherwise cached prepared statements skip
        // GRDB's SQL generation and statement authorizer on each call.
        if let cache = readCache {
            if let hit = cache.devbox(id: id, userId: userId) { return hit }
            let epoch = cache.epoch
            // Not destroyed: in the live index, no read (a commit that drops entries made every
            // poller of a devbox miss at once, and 140 reads queued for GRDB's readers took
            // 230 ms each under churn). Read after `epoch`, like the database.
            if let live = cache.live.devbox(id: id, userId: userId) {
                cache.store(.init(userId: live.userId, rowID: live.rowID, devbox: live.devbox), readSince: epoch)
                return live.devbox
            }
            guard let (rowID, record, box) = try await readDevbox(id: id, userId: userId) else { return nil }
            cache.store(.init(userId: record.userId, rowID: rowID, devbox: box), readSince: epoch)
            return box
        }
        return try await readDevbox(id: id, userId: userId)?.2
    }

    private func readDevbox(id: String, userId: String?) async throws -> (Int64, DevboxRecord, Devbox)? {
        try await pool.read { db in
            // The row is decoded from the statement (a cursor), not copied: a copied row
            // looks each column up by a lowercased linear search (a third of a miss's CPU).
            let rows: RowCursor
            if let userId {
                rows = try Row.fetchCursor(
                    db.cachedStatement(sql: "SELECT rowid AS row_id, * FROM devboxes WHERE id = ? AND user_id = ?"),
                    arguments: [id, userId])
            } else {
                rows = try Row.fetchCursor(
                    db.cachedStatement(sql: "SELECT rowid AS row_id, * FROM devboxes WHERE id = ?"), arguments: [id])
            }
            guard let row = try rows.next() else { return nil }
            let r = try DevboxRecord(row: row)
            let rowID: Int64 = row["row_id"]
            return (rowID, r, r.model(repositories: try Self.repositories(db, id)))
        }
    }

    func devboxRecord(id: String) async throws -> DevboxRecord? {
        try await pool.read { db in try DevboxRecord.fetchOne(db, key: id) }
    }

    func devboxes(userId: String) async throws -> [Devbox] {
        try await pool.read { db in
            let records = try DevboxRecord.filter(DevboxRecord.Columns.userId == userId)
                .order(DevboxRecord.Columns.createdAt.desc).fetchAll(db)
            let repos = try RepositoryRecord.filter(records.map(\.id).contains(Column("devbox_id")))
                .order(Column("position")).fetchAll(db)
            let byBox = Dictionary(grouping: repos, by: \.devboxId)
            return records.map { $0.model(repositories: byBox[$0.id] ?? []) }
        }
    }

    func devboxIds(inStates states: Set<DevboxState>) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                db, sql: "SELECT id FROM devboxes WHERE state IN (\(states.map { "'\($0.rawValue)'" }.joined(separator: ",")))")
        }
    }

    func operations(devboxId: String) async throws -> [OperationRecord] {
        try await pool.read { db in
            try OperationRecord.fetchAll(
                db.cachedStatement(sql: "SELECT * FROM operations WHERE devbox_id = ? ORDER BY position"),
                arguments: [devboxId])
        }
    }

    static func repositories(_ db: Database, _ devboxId: String) throws -> [RepositoryRecord] {
        try RepositoryRecord.fetchAll(
            db.cachedStatement(sql: "SELECT * FROM devbox_repositories WHERE devbox_id = ? ORDER BY position"),
            arguments: [devboxId])
    }

    func envRecords(devboxId: String) async throws -> [EnvRecord] {
        try await pool.read { db in try EnvRecord.filter(Column("devbox_id") == devboxId).fetchAll(db) }
    }

    func pendingSecrets(devboxId: String) async throws -> [PendingSecretRecord] {
        try await pool.read { db in try PendingSecretRecord.filter(Column("devbox_id") == devboxId).fetchAll(db) }
    }

    /// Deletes the AI tokens of a devbox and truncates the WAL so no copy stays on disk.
    func deletePendingSecrets(devboxId: String) async throws {
        let deleted = try await pool.write { db in
            try PendingSecretRecord.filter(Column("devbox_id") == devboxId).deleteAll(db)
        }
        if deleted > 0 { await truncateWAL() }
    }

    /// Deletes every secret of a devbox that will never run again (destroyed, or failed, from
    /// which only destroy leads): its AI tokens and its encrypted env values, in one commit,
    /// then truncates the WAL so no copy stays on disk (secure_delete zeroes the cells in the
    /// main file). The env keys stay on the devbox row: the API shows names, never values.
    func deleteSecrets(devboxId: String) async throws {
        let deleted = try await pool.write { db in try Self.deleteSecrets(db, devboxId) }
        if deleted > 0 { await truncateWAL() }
    }

    /// The rows `deleteSecrets` deletes; how many of them needed a WAL truncation.
    static func deleteSecrets(_ db: Database, _ devboxId: String) throws -> Int {
        // A proxy-mode devbox's placeholder goes too (worth nothing outside its box; no WAL truncation for it).
        try db.execute(sql: "DELETE FROM devbox_broker WHERE devbox_id = ?", arguments: [devboxId])
        // So does its git broker path secret (issue 19): the box's remotes stop working.
        try db.execute(sql: "DELETE FROM devbox_git_broker WHERE devbox_id = ?", arguments: [devboxId])
        return try PendingSecretRecord.filter(Column("devbox_id") == devboxId).deleteAll(db)
            + EnvRecord.filter(Column("devbox_id") == devboxId).deleteAll(db)
    }

    /// A failed provisioning job, in ONE transaction (written after its sandbox was
    /// destroyed): `failed` under the lease with the failed operation and message (checked
    /// first: a DELETE that took the lease, or destroyed the devbox, makes the whole
    /// transaction throw and write nothing), the operation updates the pipeline had not
    /// written yet and the failed step's, the remaining operations (running → failed,
    /// pending → skipped), and every secret of the devbox (it only leads to destroyed).
    /// An update the operation state machine refuses (an internal error blamed on a step
    /// that had finished) is left out and returned, not fatal: a failed bookkeeping write
    /// must not keep the devbox in provisioning.
    func recordFailure(
        devboxId: String, owner: String, op: OperationKind, message: String, updates: [OperationUpdate]
    ) async throws -> [OperationUpdate] {
        let (refused, deleted) = try await pool.write { db -> ([OperationUpdate], Int) in
            try Self.writeState(db, devboxId, StateWrite(
                to: .failed, leaseOwner: owner,
                columns: [(.errorOperation, op.rawValue.databaseValue), (.errorMessage, message.databaseValue),
                          (.leaseOwner, .null), (.leaseExpiresAt, .null)]))
            var refused: [OperationUpdate] = []
            for u in updates {
                do { try Self.applyOperationUpdate(db, devboxId, u) } catch StorageError.illegalOperationTransition {
                    refused.append(u)
                }
            }
            try Self.finishRemainingOperations(db, devboxId, reason: message)
            return (refused, try Self.deleteSecrets(db, devboxId))
        }
        if deleted > 0 { await truncateWAL() }
        return refused
    }

    /// The restart of an interrupted pipeline (a service crash mid-step, or a box lost since):
    /// `kinds` back to pending in one commit, their output, error and times cleared. Only from
    /// running, succeeded or skipped (`OperationStateMachine.restartable`): the one way back
    /// from a finished status, taken only here.
    func restartOperations(devboxId: String, _ kinds: [OperationKind]) async throws {
        guard !kinds.isEmpty else { return }
        try await progressWrite { db in
            let from = OperationStateMachine.restartable.map { "'\($0.rawValue)'" }.sorted().joined(separator: ",")
            for kind in kinds {
                try db.cachedStatement(sql: """
                    UPDATE operations SET status = 'pending', started_at = NULL, finished_at = NULL, output = '',
                        output_truncated = 0, error = NULL
                    WHERE devbox_id = ? AND name = ? AND status IN (\(from))
                    """).execute(arguments: [devboxId, kind])
                if db.changesCount == 1 { continue }
                guard let status = try String.fetchOne(
                    db.cachedStatement(sql: "SELECT status FROM operations WHERE devbox_id = ? AND name = ?"),
                    arguments: [devboxId, kind]),
                    let current = OperationStatus(rawValue: status)
                else { throw StorageError.notFound }
                throw StorageError.illegalOperationTransition(kind, from: current, to: .pending)
            }
        }
    }

    /// Moves a devbox to `to` if the state machine allows it from its current state (and,
    /// with `leaseOwner`, only under that lease). `mutate` adjusts other columns in the same
    /// write: the columns it changes go into the one checked UPDATE (`writeState`).
    func transition(
        _ id: String, to: DevboxState, leaseOwner: String? = nil, mutate: (@Sendable (inout DevboxRecord) -> Void)? = nil
    ) async throws {
        try await pool.write { db in try Self.applyTransition(db, id, to: to, leaseOwner: leaseOwner, mutate: mutate) }
    }

    static func applyTransition(
        _ db: Database, _ id: String, to: DevboxState, leaseOwner: String?, mutate: ((inout DevboxRecord) -> Void)?
    ) throws {
        var write = StateWrite(to: to, leaseOwner: leaseOwner)
        if let mutate {
            guard let old = try DevboxRecord.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM devboxes WHERE id = ?"), arguments: [id])
            else { throw StorageError.notFound }
            var new = old
            mutate(&new)
            let values = try new.databaseDictionary
            for column in try new.databaseChanges(from: old).keys.sorted() {
                guard let key = DevboxRecord.CodingKeys(rawValue: column) else { continue }
                write.columns.append((key, values[column] ?? .null))
            }
        }
        try writeState(db, id, write)
    }

    /// THE way a devbox's state changes (every state write of the service comes here: the
    /// claim, `ready`, `failed`, stop, start, destroy). One UPDATE, admitted only from the
    /// states from which the state machine reaches `write.to` (narrowed by `write.from`) and,
    /// with `write.leaseOwner`, only under that lease; `updated_at` and `write.columns` go
    /// in the same statement. When no row matched, a read names why: `notFound`,
    /// `leaseLost` (checked first), or `illegalTransition` from the current state.
    /// (A row is born `requested` by `insert`; that is its creation, not a transition.)
    static func writeState(_ db: Database, _ id: String, _ write: StateWrite, now: Date = Date()) throws {
        let from = DevboxState.allCases.filter {
            DevboxStateMachine.canTransition(from: $0, to: write.to) && (write.from?.contains($0) ?? true)
        }
        let columns = write.columns.filter { $0.0 != .state && $0.0 != .updatedAt && $0.0 != .id }
        var sql = "UPDATE devboxes SET state = ?, updated_at = ?"
        var arguments: [DatabaseValue] = [write.to.databaseValue, SQLDate.value(now)]
        for (column, value) in columns {
            sql += ", \(column.rawValue) = ?"
            arguments.append(value)
        }
        sql += " WHERE id = ? AND state IN (\(from.map { "'\($0.rawValue)'" }.joined(separator: ",")))"
        arguments.append(id.databaseValue)
        if let owner = write.leaseOwner {
            sql += " AND lease_owner = ?"
            arguments.append(owner.databaseValue)
        }
        try db.cachedStatement(sql: sql).execute(arguments: StatementArguments(arguments))
        if db.changesCount == 1 { return }
        guard let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT state, lease_owner FROM devboxes WHERE id = ?"), arguments: [id])
        else { throw StorageError.notFound }
        if let owner = write.leaseOwner, (row["lease_owner"] as String?) != owner { throw StorageError.leaseLost }
        let current: DevboxState = row["state"]
        throw StorageError.illegalTransition(from: current, to: write.to)
    }

    /// Several operation updates in one commit (the pipeline writes a step's result
    /// together with the next step's start).
    func updateOperations(devboxId: String, _ updates: [OperationUpdate]) async throws {
        try await progressWrite { db in
            for u in updates { try Self.applyOperationUpdate(db, devboxId, u) }
        }
    }

    /// The pipeline's last commit: the last operations' results and the move to `ready`
    /// (which starts the idle clock and drops the lease). A progress write: a crash of the
    /// service loses nothing; after a power cut the box is not running anyway.
    func finishPipeline(devboxId: String, owner: String, last: [OperationUpdate]) async throws {
        try await progressWrite { db in
            for u in last { try Self.applyOperationUpdate(db, devboxId, u) }
            // provisioning → ready under this lease; starts the idle clock, drops the lease.
            let now = Date()
            try Self.writeState(db, devboxId, StateWrite(
                to: .ready, from: [.provisioning], leaseOwner: owner,
                columns: [(.readyAt, SQLDate.value(now)), (.lastActivityAt, SQLDate.value(now)),
                          (.leaseOwner, .null), (.leaseExpiresAt, .null)]), now: now)
        }
    }

    /// Claims the oldest devbox whose pipeline is unfinished and whose lease is free, expired,
    /// or held by a worker process on this host that no longer exists (`owner` ends in `@pid`).
    func claimJob(owner: String, lease: TimeInterval) async throws -> ClaimedJob? {
        try await claimJobs(owner: owner, lease: lease, max: 1).first
    }

    /// Claims up to `max` jobs, oldest first, in one commit (a burst of creates is taken
    /// with a few commits instead of one each).
    func claimJobs(owner: String, lease: TimeInterval, max: Int) async throws -> [ClaimedJob] {
        try await progressWrite { db in
            guard max > 0 else { return [] }
            let now = Date()
            // This runs each time a job ends, and a burst keeps many devboxes in the pipeline
            // under this worker's own lease: those are left out in SQL, and only the lease
            // columns of the others are read; a whole record is read only once claimed.
            let candidates = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, lease_owner, lease_expires_at FROM devboxes
                WHERE state IN ('requested', 'provisioning')
                    AND COALESCE(lease_owner = ? AND lease_expires_at >= ?, 0) = 0
                ORDER BY created_at
                """), arguments: [owner, SQLDate.value(now)])
            var claimed: [ClaimedJob] = []
            for row in candidates where claimed.count < max {
                let holder: String? = row["lease_owner"]
                let expires: Date? = row["lease_expires_at"]
                if let expires, expires >= now, let holder, holder == owner || LeaseOwner.isAlive(holder) { continue }
                claimed.append(try Self.claim(db, row["id"], owner: owner, lease: lease, now: now))
            }
            return claimed
        }
    }

    private static func claim(_ db: Database, _ id: String, owner: String, lease: TimeInterval, now: Date) throws
        -> ClaimedJob
    {
        try writeState(db, id, StateWrite(
            to: .provisioning,
            columns: [(.leaseOwner, owner.databaseValue), (.leaseExpiresAt, SQLDate.value(now.addingTimeInterval(lease)))]),
            now: now)
        guard let r = try DevboxRecord.fetchOne(db.cachedStatement(sql: "SELECT * FROM devboxes WHERE id = ?"), arguments: [id])
        else { throw StorageError.notFound }
        var ops = try OperationRecord.fetchAll(
            db.cachedStatement(sql: "SELECT * FROM operations WHERE devbox_id = ? ORDER BY position"), arguments: [id])
        // A fresh job starts its first step in the claim's commit.
        let fresh = ops.allSatisfy { $0.status == .pending } && ops.first?.name == .provision
        if fresh {
            try db.cachedStatement(sql: "UPDATE operations SET status = 'running', started_at = ? WHERE id = ?")
                .execute(arguments: [SQLDate.value(now), ops[0].id])
            ops[0].status = .running
            ops[0].startedAt = now
        }
        return ClaimedJob(devbox: r, operations: ops, repositories: try Self.repositories(db, id), provisionStarted: fresh)
    }

    /// Extends a lease; false when the lease was lost (another worker took it, or the devbox left the pipeline).
    func heartbeat(devboxId: String, owner: String, lease: TimeInterval) async throws -> Bool {
        try await progressWrite { db in
            try db.execute(
                sql: "UPDATE devboxes SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND state = 'provisioning'",
                arguments: [SQLDate.value(Date().addingTimeInterval(lease)), devboxId, owner])
            return db.changesCount > 0
        }
    }

    func releaseLease(devboxId: String, owner: String) async throws {
        try await progressWrite { db in
            try db.execute(
                sql: "UPDATE devboxes SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
                arguments: [devboxId, owner])
        }
    }

    /// Sets an operation's status (checked against the operation state machine) and fields.
    func updateOperation(
        devboxId: String, kind: OperationKind, status: OperationStatus, output: String? = nil,
        truncated: Bool? = nil, error: String? = nil
    ) async throws {
        let u = OperationUpdate(kind: kind, status: status, output: output, truncated: truncated, error: error)
        try await progressWrite { db in try Self.applyOperationUpdate(db, devboxId, u) }
    }

    static func applyOperationUpdate(_ db: Database, _ devboxId: String, _ u: OperationUpdate) throws {
        // One UPDATE, allowed only from the statuses from which the operation state machine
        // reaches `u.status` (or `u.status` itself), with cached statements: the pipeline runs
        // this a few times per create. When no row matched, a read names the reason.
        // Given fields replace; otherwise output, truncation flag and error stay, except that
        // `pending` (a step to run again) clears everything of the last run.
        var fields = "output = COALESCE(?3, output), output_truncated = COALESCE(?4, output_truncated), error = COALESCE(?5, error)"
        let times: String
        switch u.status {
        // Running again (the worker stores a failed step's output before it marks it failed)
        // keeps the start: the step began when it was first marked running.
        case .running: times = "started_at = CASE status WHEN 'running' THEN started_at ELSE ?1 END, finished_at = NULL"
        case .pending:
            times = "started_at = NULL, finished_at = NULL"
            fields = "output = COALESCE(?3, ''), output_truncated = COALESCE(?4, 0), error = ?5"
        case .succeeded, .failed, .skipped: times = "started_at = COALESCE(started_at, ?1), finished_at = ?1"
        }
        let from = OperationStatus.allCases.filter { $0 == u.status || OperationStateMachine.canTransition(from: $0, to: u.status) }
        try db.cachedStatement(sql: """
            UPDATE operations SET status = ?2, \(times), \(fields)
            WHERE devbox_id = ?6 AND name = ?7 AND status IN (\(from.map { "'\($0.rawValue)'" }.joined(separator: ",")))
            """).execute(arguments: [SQLDate.value(u.at ?? Date()), u.status, u.output, u.truncated, u.error, devboxId, u.kind])
        if db.changesCount == 1 { return }
        guard let status = try String.fetchOne(
            db.cachedStatement(sql: "SELECT status FROM operations WHERE devbox_id = ? AND name = ?"),
            arguments: [devboxId, u.kind]),
            let current = OperationStatus(rawValue: status)
        else { throw StorageError.notFound }
        throw StorageError.illegalOperationTransition(u.kind, from: current, to: u.status)
    }

    /// Updates only the live output tail of a running operation.
    func updateOperationOutput(devboxId: String, kind: OperationKind, output: String, truncated: Bool) async throws {
        try await progressWrite { db in
            try db.execute(
                sql: "UPDATE operations SET output = ?, output_truncated = ? WHERE devbox_id = ? AND name = ? AND status = 'running'",
                arguments: [output, truncated, devboxId, kind])
        }
    }

    /// Marks every unfinished operation failed/skipped after the pipeline stopped on `failed`.
    func finishRemainingOperations(devboxId: String, reason: String) async throws {
        try await progressWrite { db in try Self.finishRemainingOperations(db, devboxId, reason: reason) }
    }

    static func finishRemainingOperations(_ db: Database, _ devboxId: String, reason: String) throws {
        try db.execute(
            sql: "UPDATE operations SET status = 'failed', finished_at = ?, error = COALESCE(error, ?) WHERE devbox_id = ? AND status = 'running'",
            arguments: [Date(), reason, devboxId])
        try db.execute(
            sql: "UPDATE operations SET status = 'skipped', finished_at = ? WHERE devbox_id = ? AND status = 'pending'",
            arguments: [Date(), devboxId])
    }

    func updateRepository(devboxId: String, position: Int, status: String, commit: String?, error: String?) async throws {
        try await progressWrite { db in
            try db.execute(
                sql: "UPDATE devbox_repositories SET status = ?, resolved_commit = ?, error = ? WHERE devbox_id = ? AND position = ?",
                arguments: [status, commit, error, devboxId, position])
        }
    }

    func touchActivity(devboxId: String) async throws {
        try await progressWrite { db in
            try db.execute(sql: "UPDATE devboxes SET last_activity_at = ? WHERE id = ?", arguments: [Date(), devboxId])
        }
    }

    /// Pipeline progress (claims, leases, operation status and output, clone status,
    /// activity): committed without waiting for the disk (`synchronous = NORMAL`, about 0.8 ms
    /// saved per commit here; a create makes a dozen). A crash of the service loses none of it
    /// (the WAL is in the page cache); only a power loss may roll back the last few, which
    /// start-up recovery treats like a crashed worker's step. Writes the API acknowledges
    /// (create, delete, state transitions, tokens, sessions) stay fully synchronous.
    func progressWrite<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await pool.writeWithoutTransaction { db in
            try db.cachedStatement(sql: "PRAGMA synchronous = NORMAL").execute()
            defer { try? db.cachedStatement(sql: "PRAGMA synchronous = FULL").execute() }
            var result: T?
            try db.inTransaction {
                result = try body(db)
                return .commit
            }
            guard let result else { throw StorageError.notFound }
            return result
        }
    }

    /// Devboxes with a lifetime or an idle timeout that are still alive, with their clocks.
    func lifetimeClocks() async throws -> [(id: String, clock: LifetimePolicy.Clock)] {
        try await pool.read { db in
            try DevboxRecord
                .filter(DevboxRecord.Columns.state != DevboxState.destroyed)
                .filter(Column("expires_at") != nil || (Column("idle_timeout_seconds") != nil && DevboxRecord.Columns.state == DevboxState.ready))
                .fetchAll(db)
                .map { r in
                    (r.id, LifetimePolicy.Clock(
                        state: r.state, idleTimeoutSeconds: r.idleTimeoutSeconds, expiresAt: r.expiresAt,
                        lastActivityAt: r.lastActivityAt, readyAt: r.readyAt, createdAt: r.createdAt))
                }
        }
    }
}
