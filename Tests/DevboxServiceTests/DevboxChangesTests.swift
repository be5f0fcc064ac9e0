import DevboxModel
import Foundation
import GRDB
import ServiceLifecycleTestKit
import Testing

@testable import DevboxService

/// Long enough that a test never depends on it passing (it is the fallback of a broken wake-up).
private let long: Duration = .seconds(60)
/// How long a waiter is given to show it is NOT woken (a wrong wake-up fails the test; a slow
/// machine only makes the test pass more surely).
private let quiet: Duration = .milliseconds(200)

@Suite("Change notifications: the notifier")
struct DevboxChangesNotifierTests {
    @Test("a publication for the devbox wakes its waiter; one for another devbox does not")
    func wakesByDevbox() async throws {
        let changes = DevboxChanges()
        let a = changes.subscribe(devboxId: "dbx_a")
        let b = changes.subscribe(devboxId: "dbx_b")
        let waiting = Task { await a.next(timeout: long) }
        changes.publish(["dbx_a"])
        #expect(await waiting.value == .changed)
        #expect(await b.next(timeout: quiet) == .timedOut)
        changes.publish(["dbx_b", "dbx_c"])
        #expect(await b.next(timeout: long) == .changed)
    }

    @Test("a change published before next() is called is not lost, and is delivered once")
    func changeBeforeWait() async throws {
        let changes = DevboxChanges()
        let s = changes.subscribe(devboxId: "dbx_a")
        changes.publish(["dbx_a"])
        changes.publish(["dbx_a"])
        #expect(await s.next(timeout: long) == .changed)
        #expect(await s.next(timeout: quiet) == .timedOut)
        #expect(await s.next(timeout: .zero) == .timedOut)
    }

    @Test("a publication before the subscription does not wake it")
    func onlyLaterChanges() async throws {
        let changes = DevboxChanges()
        changes.publish(["dbx_a"])
        let s = changes.subscribe(devboxId: "dbx_a")
        #expect(await s.next(timeout: quiet) == .timedOut)
    }

    @Test("publishAll wakes every subscriber")
    func publishAll() async throws {
        let changes = DevboxChanges()
        let subs = (0..<3).map { changes.subscribe(devboxId: "dbx_\($0)") }
        changes.publishAll()
        for s in subs { #expect(await s.next(timeout: long) == .changed) }
    }

    @Test("cancelling the waiting task ends next() with .cancelled; cancel() unsubscribes")
    func cancellation() async throws {
        let changes = DevboxChanges()
        let s = changes.subscribe(devboxId: "dbx_a")
        #expect(changes.hasSubscribers && changes.subscriberCount(devboxId: "dbx_a") == 1)
        let waiting = Task { await s.next(timeout: long) }
        waiting.cancel()
        #expect(await waiting.value == .cancelled)
        // Still subscribed: a later change is still seen.
        changes.publish(["dbx_a"])
        #expect(await s.next(timeout: long) == .changed)
        s.cancel()
        #expect(!changes.hasSubscribers && changes.subscriberCount(devboxId: "dbx_a") == 0)
    }

    @Test("a released subscription unsubscribes")
    func release() async throws {
        let changes = DevboxChanges()
        do {
            let s = changes.subscribe(devboxId: "dbx_a")
            #expect(await s.next(timeout: .zero) == .timedOut)
        }
        #expect(!changes.hasSubscribers)
    }

    @Test("graceful shutdown ends a wait at once, and every later wait")
    func gracefulShutdown() async throws {
        let changes = DevboxChanges()
        let s = changes.subscribe(devboxId: "dbx_a")
        await testGracefulShutdown { trigger in
            async let wake = s.next(timeout: long)
            while changes.waiterCount(devboxId: "dbx_a") == 0 { try? await Task.sleep(for: .milliseconds(5)) }
            trigger.triggerGracefulShutdown()
            #expect(await wake == .shutdown)
            #expect(await s.next(timeout: long) == .shutdown)
        }
    }
}

@Suite("Change notifications: every write to the devbox tables")
struct DevboxChangeObserverTests {
    struct Fixture {
        let db: AppDatabase
        let dir: String
        let userId: String
    }

    func fixture(cachesDevboxes: Bool = false) async throws -> Fixture {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-changes-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let db = try AppDatabase(path: dir + "/devbox.sqlite", cachesDevboxes: cachesDevboxes)
        let token = try await db.insertProviderToken(providerName: "p", tokenHash: UUID().uuidString, hint: "x")
        let providerId = try #require(try await db.liveTokenHashes().first { $0.id == token.id }?.providerId)
        return Fixture(db: db, dir: dir, userId: try await db.resolveUser(providerId: providerId, subject: ""))
    }

    func insertBox(_ f: Fixture, id: String = Identifier.make("dbx_"), repository: Bool = false) async throws -> String {
        let now = Date()
        let record = DevboxRecord(
            id: id, userId: f.userId, name: "box", plan: "small", state: .requested, envKeys: [], setupCommands: [],
            setupTimeoutSeconds: 900, injectClaudeToken: false, injectCodexToken: false, createdAt: now, updatedAt: now,
            lastActivityAt: now)
        let repos =
            repository
            ? [RepositoryRecord(devboxId: id, position: 0, repoId: nil, fullName: "o/r", ref: "main", targetPath: "/workspace/r", status: "pending")]
            : []
        _ = try await f.db.insertDevbox(NewDevbox(record: record, env: [], secrets: [], repositories: repos))
        return id
    }

    /// Runs `write` while `a` and `b` are subscribed: `a` must be woken, `b` must not.
    func expectWakes(
        _ f: Fixture, _ a: String, notOther b: String, _ what: Comment, _ write: () async throws -> Void
    ) async throws {
        let sa = f.db.changes.subscribe(devboxId: a)
        let sb = f.db.changes.subscribe(devboxId: b)
        try await write()
        #expect(await sa.next(timeout: long) == .changed, what)
        #expect(await sb.next(timeout: quiet) == .timedOut, what)
    }

    @Test("state transitions, claims, leases, operations, repositories, activity and a raw write each wake the devbox's waiters only")
    func everyWritePath() async throws {
        let f = try await fixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let a = try await insertBox(f, repository: true)
        let b = try await insertBox(f)
        let db = f.db
        let owner = "test@\(getpid())"

        let c = Identifier.make("dbx_")
        try await expectWakes(f, c, notOther: a, "insert of a new devbox") { _ = try await insertBox(f, id: c) }
        try await expectWakes(f, a, notOther: b, "claim") {
            // The oldest unclaimed devbox is a.
            let job = try await db.claimJob(owner: owner, lease: 15)
            #expect(job?.devbox.id == a)
        }
        try await expectWakes(f, a, notOther: b, "heartbeat") {
            let held = try await db.heartbeat(devboxId: a, owner: owner, lease: 15)
            #expect(held)
        }
        try await expectWakes(f, a, notOther: b, "operation status") {
            try await db.updateOperation(devboxId: a, kind: .provision, status: .running)
        }
        try await expectWakes(f, a, notOther: b, "operation output") {
            try await db.updateOperationOutput(devboxId: a, kind: .provision, output: "hello\n", truncated: false)
        }
        try await expectWakes(f, a, notOther: b, "repository status") {
            try await db.updateRepository(devboxId: a, position: 0, status: "cloning", commit: nil, error: nil)
        }
        try await expectWakes(f, a, notOther: b, "activity") { try await db.touchActivity(devboxId: a) }
        try await expectWakes(f, a, notOther: b, "a write method nobody told the notifier about") {
            try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET name = 'renamed' WHERE id = ?", arguments: [a]) }
        }
        try await expectWakes(f, a, notOther: b, "remaining operations finished") {
            try await db.finishRemainingOperations(devboxId: a, reason: "test")
        }
        try await expectWakes(f, a, notOther: b, "state transition") {
            try await db.transition(a, to: .destroyed) { $0.destroyedAt = Date() }
        }
    }

    @Test("a rolled-back write wakes nobody; a deleted row wakes everyone")
    func rollbackAndDelete() async throws {
        let f = try await fixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let a = try await insertBox(f)
        let b = try await insertBox(f)
        let sa = f.db.changes.subscribe(devboxId: a)
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await f.db.pool.write { db in
                try db.execute(sql: "UPDATE devboxes SET name = 'x' WHERE id = ?", arguments: [a])
                throw Abort()
            }
        }
        #expect(await sa.next(timeout: quiet) == .timedOut)

        let sb = f.db.changes.subscribe(devboxId: b)
        try await f.db.pool.write { try $0.execute(sql: "DELETE FROM operations WHERE devbox_id = ?", arguments: [a]) }
        #expect(await sa.next(timeout: long) == .changed)
        #expect(await sb.next(timeout: long) == .changed)
    }

    @Test("writes to other tables wake nobody")
    func otherTables() async throws {
        let f = try await fixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let a = try await insertBox(f)
        let sa = f.db.changes.subscribe(devboxId: a)
        _ = try await f.db.insertProviderToken(providerName: "p", tokenHash: UUID().uuidString, hint: "y")
        #expect(await sa.next(timeout: quiet) == .timedOut)
    }
}
