import DevboxModel
import Foundation
import Testing
@testable import DevboxService

/// The provisioning pipeline's decisions (`PipelineDecisions`, `PipelineProgress`) are
/// values: every restart, skip, failure and commit branch is checked here without a
/// database, a sandbox or root. `JobRunner` only performs them.
@Suite("Provisioning: the pipeline's decisions (no I/O)")
struct PipelineDecisionTests {
    typealias Ops = [OperationKind: OperationStatus]
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func record(setup: [String] = ["true"], claude: Bool = false, mode: String = "env") -> DevboxRecord {
        DevboxRecord(
            id: "dbx_d", userId: "u1", name: "n", plan: "small", state: .provisioning, envKeys: [], setupCommands: setup,
            setupTimeoutSeconds: 900, injectClaudeToken: claude, injectCodexToken: false, createdAt: t0, updatedAt: t0,
            idleTimeoutSeconds: nil, ttlSeconds: nil, expiresAt: nil, lastActivityAt: nil, credentialMode: mode)
    }

    static func job(_ ops: Ops, fresh: Bool = false, setup: [String] = ["true"], repositories: Int = 0) -> ClaimedJob {
        let records = OperationKind.allCases.enumerated().map { i, kind in
            OperationRecord(
                id: "op_\(i)", devboxId: "dbx_d", position: i, name: kind, status: ops[kind] ?? .pending, startedAt: nil,
                finishedAt: nil, output: "", outputTruncated: false, error: nil)
        }
        let repos = (0..<repositories).map {
            RepositoryRecord(devboxId: "dbx_d", position: $0, fullName: "o/r\($0)", ref: "main", targetPath: "r\($0)", status: "pending")
        }
        return ClaimedJob(devbox: record(setup: setup), operations: records, repositories: repos, provisionStarted: fresh)
    }

    /// The database's view: commits applied in order, each update checked against the
    /// operation state machine exactly as `applyOperationUpdate` admits it.
    struct Simulated {
        var ops: Ops
        var commits = 0
        mutating func apply(_ updates: [OperationUpdate]) {
            guard !updates.isEmpty else { return }
            commits += 1
            for u in updates {
                let from = ops[u.kind] ?? .pending
                #expect(from == u.status || OperationStateMachine.canTransition(from: from, to: u.status),
                        "\(u.kind): \(from) → \(u.status) is refused by the state machine")
                ops[u.kind] = u.status
            }
        }
    }

    /// Runs a job to its end with `outcome` deciding each step; returns the simulated
    /// database, the steps run and the final effect.
    static func drive(
        _ job: ClaimedJob, stopAfterRuns: Int? = nil,
        outcome: (OperationKind) -> StepOutcome = { _ in .succeeded(StepOutput(text: "ok\n")) }
    ) -> (Simulated, [OperationKind], PipelineDecisions.Effect) {
        var db = Simulated(ops: Dictionary(job.operations.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a }))
        var progress = PipelineProgress(job: job)
        var ran: [OperationKind] = []
        for _ in 0..<20 {
            let stopping = stopAfterRuns == ran.count
            let effect = progress.next(stopping: stopping, now: t0)
            switch effect {
            case .run(let kind, let commit):
                db.apply(commit)
                // A step runs only once its start is on disk (or it is instant).
                #expect(db.ops[kind] == .running || PipelineDecisions.isInstant(kind), "\(kind) ran before its start was written")
                ran.append(kind)
                if let end = progress.finished(kind, outcome(kind), ended: t0.addingTimeInterval(1)) {
                    if case .fail(_, _, let commit) = end { db.apply(commit) }
                    return (db, ran, end)
                }
            case .pause(let commit), .finish(let commit, _), .fail(_, _, let commit):
                db.apply(commit)
                return (db, ran, effect)
            }
        }
        Issue.record("the pipeline did not end")
        return (db, ran, .pause(commit: []))
    }

    // MARK: resume

    @Test func aFreshClaimIsNotAnInterruption() {
        let job = Self.job([.provision: .running], fresh: true)
        let ops = PipelineDecisions.statuses(job)
        #expect(ops[.provision] == .pending)
        #expect(!PipelineDecisions.needsSandboxCheck(ops))
        #expect(PipelineDecisions.resume(ops, sandboxRunning: false) == .proceed)
    }

    /// Every combination of operation statuses and box liveness (5^5 × 2).
    @Test func resumeOverEveryCombination() {
        let all = OperationStatus.allCases
        var combos = 0
        for a in all { for b in all { for c in all { for d in all { for e in all {
            let ops: Ops = [.provision: a, .injectCredentials: b, .cloneRepositories: c, .runSetupCommands: d, .publishAccess: e]
            let anyRunning = [a, b, c, d, e].contains(.running)
            #expect(PipelineDecisions.needsSandboxCheck(ops) == (!anyRunning && a == .succeeded))
            for alive in [true, false] {
                combos += 1
                let interrupted = anyRunning || (a == .succeeded && !alive)
                switch PipelineDecisions.resume(ops, sandboxRunning: alive) {
                case .proceed:
                    #expect(!interrupted)
                case .fail(let kind, let message):
                    // Setup commands are not idempotent: never run twice.
                    #expect(interrupted && (d == .running || d == .succeeded))
                    #expect(kind == .runSetupCommands && message == PipelineDecisions.interruptedSetup)
                case .restart(let reset):
                    #expect(interrupted && d != .running && d != .succeeded)
                    #expect(reset == OperationKind.allCases.filter { ops[$0] != .pending })
                }
            }
        } } } } }
        #expect(combos == 6_250)
    }

    @Test func aRestartRunsEveryStepAgainFromTheFirst() {
        // A reclaimed job: provision had succeeded, the clone was running when the service died.
        let ops: Ops = [.provision: .succeeded, .injectCredentials: .skipped, .cloneRepositories: .running]
        let job = Self.job(ops, repositories: 1)
        guard case .restart(let reset) = PipelineDecisions.resume(PipelineDecisions.statuses(job), sandboxRunning: true) else {
            Issue.record("not a restart")
            return
        }
        #expect(reset == [.provision, .injectCredentials, .cloneRepositories])
        #expect(reset.allSatisfy { OperationStateMachine.restartable.contains(ops[$0]!) })
        var progress = PipelineProgress(job: job, restarted: true)
        #expect(progress.next(stopping: false, now: Self.t0) == .run(.provision, commit: [OperationUpdate(kind: .provision, status: .running)]))
    }

    // MARK: progress

    /// The create of the docs: insert, claim (with provision's start), setup's start, ready.
    @Test func oneSetupCommandTakesTwoCommitsAfterTheClaim() {
        let (db, ran, end) = Self.drive(Self.job([.provision: .running], fresh: true))
        #expect(ran == [.provision, .runSetupCommands, .publishAccess])
        #expect(db.commits == 2)
        guard case .finish(let last, let deleteTokens) = end else { Issue.record("\(end)"); return }
        #expect(!deleteTokens)
        #expect(last.map(\.kind) == [.runSetupCommands, .publishAccess, .publishAccess])
        #expect(last.map(\.status) == [.succeeded, .running, .succeeded])
        // Each result carries its step's own end, the instant step its start.
        #expect(last[0].at == Self.t0.addingTimeInterval(1) && last[1].at == Self.t0)
        #expect(db.ops.values.allSatisfy { $0 == .succeeded || $0 == .skipped })
        #expect(db.ops[.injectCredentials] == .skipped && db.ops[.cloneRepositories] == .skipped)
    }

    @Test func withNothingToSetUpReadyIsTheOnlyCommitAfterTheClaim() {
        let (db, ran, end) = Self.drive(Self.job([.provision: .running], fresh: true, setup: []))
        #expect(ran == [.provision, .publishAccess])
        guard case .finish(let last, _) = end else { Issue.record("\(end)"); return }
        #expect(db.commits == 1)
        #expect(last.filter { $0.status == .skipped }.map(\.kind) == [.injectCredentials, .cloneRepositories, .runSetupCommands])
        #expect(last.first { $0.kind == .runSetupCommands }?.output == "no setup commands\n")
    }

    /// Every shape of job (fresh or reclaimed, any skips), every step failing in turn,
    /// every shutdown point: the commits are legal in order, every step ends final once,
    /// and a failure's one commit holds what was not written yet plus the failed step.
    @Test func everyShapeEveryFailureEveryPause() {
        for fresh in [true, false] {
            for setup in [[], ["true"]] {
                for repositories in [0, 1] {
                    let job = Self.job(fresh ? [.provision: .running] : [:], fresh: fresh, setup: setup, repositories: repositories)
                    let (ok, ran, end) = Self.drive(job)
                    guard case .finish = end else { Issue.record("\(end)"); continue }
                    #expect(OperationKind.allCases.allSatisfy { ok.ops[$0] == .succeeded || ok.ops[$0] == .skipped })
                    for failing in ran {
                        let (db, _, end) = Self.drive(job) { kind in
                            kind == failing ? .failed("boom", StepOutput(text: "tail\n", truncated: true)) : .succeeded(StepOutput())
                        }
                        guard case .fail(let kind, let message, let commit) = end else { Issue.record("\(end)"); continue }
                        #expect(kind == failing && message == "boom")
                        #expect(commit.last == OperationUpdate(
                            kind: failing, status: .failed, output: "tail\n", truncated: true, error: "boom",
                            at: Self.t0.addingTimeInterval(1)))
                        #expect(db.ops[failing] == .failed)
                        // Every step before it is final in the database after that commit.
                        for before in OperationKind.allCases.prefix(while: { $0 != failing }) {
                            #expect(db.ops[before] == .succeeded || db.ops[before] == .skipped, "\(before) before \(failing)")
                        }
                    }
                    for n in 0..<ran.count {
                        let (db, ranBefore, end) = Self.drive(job, stopAfterRuns: n)
                        guard case .pause = end else { Issue.record("\(end)"); continue }
                        #expect(ranBefore == Array(ran.prefix(n)))
                        // What ran is written; nothing is left running but a step the claim started.
                        for kind in ranBefore { #expect(db.ops[kind] == .succeeded || db.ops[kind] == .skipped) }
                        for (kind, status) in db.ops where status == .running {
                            #expect(fresh && kind == .provision && n == 0, "\(kind) left running")
                        }
                    }
                }
            }
        }
    }

    @Test func aStepThatFindsNothingToDoIsSkippedWithItsReason() {
        let (db, _, end) = Self.drive(Self.job([:], repositories: 1)) { kind in
            kind == .cloneRepositories ? .skipped("nothing\n") : .succeeded(StepOutput())
        }
        guard case .finish(let last, _) = end else { Issue.record("\(end)"); return }
        #expect(db.ops[.cloneRepositories] == .skipped)
        _ = last
    }

    @Test func tokensAreDeletedAtReadyInEnvModeOnly() {
        #expect(PipelineDecisions.deletesTokensAtReady(Self.record(claude: true)))
        #expect(!PipelineDecisions.deletesTokensAtReady(Self.record(claude: true, mode: "proxy")))
        #expect(!PipelineDecisions.deletesTokensAtReady(Self.record()))
        // Proxy mode has something to inject even without tokens (the broker's settings).
        #expect(PipelineDecisions.nothingToDo(.injectCredentials, Self.record(mode: "proxy"), repositories: 0) == nil)
        #expect(PipelineDecisions.nothingToDo(.injectCredentials, Self.record(), repositories: 0) == "no credentials to inject\n")
        #expect(PipelineDecisions.nothingToDo(.provision, Self.record(setup: []), repositories: 0) == nil)
        #expect(PipelineDecisions.nothingToDo(.publishAccess, Self.record(setup: []), repositories: 0) == nil)
    }

    @Test func aFailureOutsideAStepIsTheStepAlone() {
        #expect(PipelineDecisions.failureCommit(.provision, "internal error: x")
            == [OperationUpdate(kind: .provision, status: .failed, error: "internal error: x")])
    }
}
