import DevboxModel
import Foundation

/// The provisioning pipeline's decisions, as values: no I/O, no clock, no database. From a
/// claimed job they decide restart / fail / proceed, which step runs next, what is committed
/// before it, and what a step's outcome leads to; `JobRunner` performs the effects (the
/// database writes, the sandbox teardown, the steps themselves). Tests drive every branch
/// without root (`PipelineDecisionTests`).
enum PipelineDecisions {
    /// How a claimed job begins.
    enum Resume: Equatable {
        /// Run the pending steps.
        case proceed
        /// A step was interrupted (a service crash, or the box is gone): destroy the sandbox,
        /// set these operations back to pending in one commit, run from the first step.
        case restart(reset: [OperationKind])
        /// Setup commands had started (they are not idempotent): the job fails.
        case fail(OperationKind, String)
    }

    static let interruptedSetup =
        "interrupted by a service restart while running setup commands; delete this devbox and create a new one"

    /// The job's operations as the runner sees them: a fresh claim marked `provision`
    /// running in its own commit, which is the start of this run, not an interruption.
    static func statuses(_ job: ClaimedJob) -> [OperationKind: OperationStatus] {
        var ops = Dictionary(job.operations.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
        if job.provisionStarted { ops[.provision] = .pending }
        return ops
    }

    /// Whether `resume` needs to know if the box still runs: only when nothing was running
    /// and `provision` had succeeded (the host may have rebooted since).
    static func needsSandboxCheck(_ ops: [OperationKind: OperationStatus]) -> Bool {
        !ops.values.contains(.running) && ops[.provision] == .succeeded
    }

    static func resume(_ ops: [OperationKind: OperationStatus], sandboxRunning: Bool) -> Resume {
        let interrupted = ops.values.contains(.running) || (ops[.provision] == .succeeded && !sandboxRunning)
        guard interrupted else { return .proceed }
        if ops[.runSetupCommands] == .running || ops[.runSetupCommands] == .succeeded {
            return .fail(.runSetupCommands, interruptedSetup)
        }
        return .restart(reset: OperationKind.allCases.filter { (ops[$0] ?? .pending) != .pending })
    }

    /// Steps that take no time and change nothing (a check): written started and finished
    /// in one commit, after they ran.
    static func isInstant(_ kind: OperationKind) -> Bool { kind == .publishAccess }

    /// Why `kind` has nothing to do for this devbox, decided from its record; nil: run it.
    /// (A step can still find at run time that it has nothing to do and report skipped.)
    static func nothingToDo(_ kind: OperationKind, _ devbox: DevboxRecord, repositories: Int) -> String? {
        switch kind {
        case .injectCredentials where !devbox.injectClaudeToken && !devbox.injectCodexToken
            && devbox.credentialMode != CredentialMode.proxy.rawValue:
            "no credentials to inject\n"
        case .cloneRepositories where repositories == 0: "no repositories to clone\n"
        case .runSetupCommands where devbox.setupCommands.isEmpty: "no setup commands\n"
        default: nil
        }
    }

    /// The AI tokens live only inside the box once it is ready: they are deleted (with a WAL
    /// checkpoint) before anyone can see `ready` — except in proxy mode, where the broker
    /// keeps them (encrypted) until destroy. Tokens are stored only with their flag.
    static func deletesTokensAtReady(_ devbox: DevboxRecord) -> Bool {
        (devbox.injectClaudeToken || devbox.injectCodexToken) && devbox.credentialMode != CredentialMode.proxy.rawValue
    }

    /// What the runner does next.
    enum Effect: Equatable {
        /// Commit `commit` (nothing when empty: the step's start is already written, or an
        /// instant step's start goes with its result), then run `kind`.
        case run(OperationKind, commit: [OperationUpdate])
        /// Shutdown at a step boundary: commit `commit` (when not empty), release the lease.
        case pause(commit: [OperationUpdate])
        /// The end: delete the AI tokens when `deleteTokens`, then commit `last` with `ready`.
        case finish(last: [OperationUpdate], deleteTokens: Bool)
        /// A step failed: the sandbox goes, then ONE transaction writes `commit` (the
        /// results not yet written and the failed step), the remaining steps, `failed` and
        /// the deletion of the devbox's secrets (`AppDatabase.recordFailure`).
        case fail(OperationKind, message: String, commit: [OperationUpdate])
    }

    /// The commit of a failure decided outside a step (a resume, an internal error).
    static func failureCommit(_ kind: OperationKind, _ message: String) -> [OperationUpdate] {
        [OperationUpdate(kind: kind, status: .failed, error: message)]
    }
}

/// One job's progress through the steps (a value: `next` and `finished` decide, the runner
/// performs). A step's result is committed with the next step's start (the last one with
/// `ready`): one commit per step. A step with nothing to do is recorded skipped in that same
/// commit without running.
struct PipelineProgress: Equatable {
    /// Steps still to run, in order.
    private(set) var remaining: [OperationKind]
    /// Results (and skips) not committed yet.
    private(set) var unwritten: [OperationUpdate] = []
    /// A step already written running (a fresh claim's `provision`).
    private(set) var started: OperationKind?
    let skips: [OperationKind: String]
    let deleteTokens: Bool

    init(
        ops: [OperationKind: OperationStatus], provisionStarted: Bool, skips: [OperationKind: String], deleteTokens: Bool
    ) {
        remaining = OperationKind.allCases.filter { (ops[$0] ?? .pending) == .pending }
        started = provisionStarted ? .provision : nil
        self.skips = skips
        self.deleteTokens = deleteTokens
    }

    /// From a claimed job; `restarted`: every operation was set back to pending.
    init(job: ClaimedJob, restarted: Bool = false) {
        let ops = restarted ? [:] : PipelineDecisions.statuses(job)
        var skips: [OperationKind: String] = [:]
        for kind in OperationKind.allCases {
            skips[kind] = PipelineDecisions.nothingToDo(kind, job.devbox, repositories: job.repositories.count)
        }
        self.init(
            ops: ops, provisionStarted: job.provisionStarted && !restarted, skips: skips,
            deleteTokens: PipelineDecisions.deletesTokensAtReady(job.devbox))
    }

    /// The next effect. `now` is an instant step's start.
    mutating func next(stopping: Bool, now: Date) -> PipelineDecisions.Effect {
        while let kind = remaining.first {
            if stopping {
                defer { unwritten = [] }
                return .pause(commit: unwritten)
            }
            remaining.removeFirst()
            if let why = skips[kind] {
                unwritten.append(OperationUpdate(kind: kind, status: .skipped, output: why))
                continue
            }
            defer { started = nil }
            if PipelineDecisions.isInstant(kind) {
                // Nothing to interrupt: its start is written with its result.
                unwritten.append(OperationUpdate(kind: kind, status: .running, at: now))
                return .run(kind, commit: [])
            }
            if started == kind { return .run(kind, commit: []) }
            defer { unwritten = [] }
            return .run(kind, commit: unwritten + [OperationUpdate(kind: kind, status: .running)])
        }
        defer { unwritten = [] }
        return .finish(last: unwritten, deleteTokens: deleteTokens)
    }

    /// A step's outcome, `ended` when it ended (not when the commit that records it is made).
    /// nil: go on with `next`.
    mutating func finished(_ kind: OperationKind, _ outcome: StepOutcome, ended: Date) -> PipelineDecisions.Effect? {
        switch outcome {
        case .succeeded(let output):
            unwritten.append(OperationUpdate(
                kind: kind, status: .succeeded, output: output.text, truncated: output.truncated, at: ended))
            return nil
        case .skipped(let why):
            unwritten.append(OperationUpdate(kind: kind, status: .skipped, output: why, at: ended))
            return nil
        case .failed(let message, let output):
            defer { unwritten = [] }
            return .fail(kind, message: message, commit: unwritten + [
                OperationUpdate(
                    kind: kind, status: .failed, output: output.text, truncated: output.truncated, error: message, at: ended)
            ])
        }
    }
}
