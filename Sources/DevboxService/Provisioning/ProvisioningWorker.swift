import DevboxModel
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Claims devboxes whose pipeline is unfinished and runs their steps, several at a time.
/// A lease with heartbeat makes a crashed worker's jobs claimable again; on shutdown it
/// stops at the next step boundary and releases its leases.
public struct ProvisioningWorker: Service {
    let ctx: ProvisioningContext
    let owner: String

    public init(context: ProvisioningContext) {
        self.ctx = context
        self.owner = LeaseOwner.make()
    }

    public func run() async throws {
        let stopping = StopFlag()
        let active = AtomicCounter()
        let runner = JobRunner(ctx: ctx, owner: owner, stopping: stopping)
        let limit = ctx.settings.workerConcurrency
        // No job before the listeners are bound and the start-up sweep has run. A shutdown
        // before start-up began abandons it; one after waits for it (a few seconds at most).
        let started = await withGracefulShutdownHandler {
            await ctx.startup.wait()
        } onGracefulShutdown: {
            ctx.startup.abandonIfNotBegun()
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                // Cancellation too: the service group cancels every service when another one
                // fails (a port already taken), and then there is no graceful shutdown to wait for.
                while started, !stopping.isSet, !Task.isCancelled {
                    var claimed = false
                    while active.value < limit, !stopping.isSet, !Task.isCancelled {
                        let jobs: [ClaimedJob]
                        do {
                            jobs = try await ctx.db.claimJobs(
                                owner: owner, lease: ctx.settings.leaseSeconds, max: limit - active.value)
                        } catch {
                            ctx.logger.error("claiming jobs failed: \(error)")
                            jobs = []
                        }
                        if jobs.isEmpty { break }
                        claimed = true
                        for job in jobs {
                            active.add(1)
                            // Box work's priority, not the API's (the serve runs its services at
                            // .high: DevboxApp's APIPriority). A child runs at least at its
                            // parent's priority; the job's steps (`JobRunner.run`'s own task)
                            // take this base priority, .medium.
                            group.addTask(priority: .medium) {
                                await runner.run(job)
                                active.add(-1)
                                ctx.jobs.signal()
                            }
                        }
                    }
                    if !claimed || active.value >= limit {
                        await ctx.jobs.wait(timeout: .seconds(1))
                    }
                }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            stopping.set()
            ctx.jobs.signal()
        }
        await ctx.sandbox.releaseIdleResources()
    }
}

/// Why a job stopped before its devbox became ready.
enum JobStop: Error {
    /// A failure decided by `PipelineDecisions` (`Effect.fail`), to be recorded in one transaction.
    case failed(OperationKind, String, commit: [OperationUpdate])
    case cancelled
    case shutdown
    case leaseLost
}

/// Runs one claimed job to a final state (or to a step boundary on shutdown): it performs
/// what `PipelineDecisions`/`PipelineProgress` decide.
struct JobRunner: Sendable {
    let ctx: ProvisioningContext
    let owner: String
    let stopping: StopFlag

    func run(_ job: ClaimedJob) async {
        let id = job.devbox.id
        let log = Logger.withDevbox(ctx.logger, id)
        let work = Task { try await steps(job, log: log) }
        ctx.jobs.register(devboxId: id) { work.cancel() }
        let heartbeat = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(ctx.settings.leaseSeconds / 3))
                if try await !ctx.db.heartbeat(devboxId: id, owner: owner, lease: ctx.settings.leaseSeconds) {
                    log.warning("lease lost; stopping the job")
                    work.cancel()
                    return
                }
            }
        }
        // `work` is a task of its own (a DELETE cancels it alone), so the worker's cancellation
        // (a shutdown past its grace period) is passed on by hand: the step in flight ends (a
        // running setup command is killed) instead of holding the serve open until it is done.
        let result = await withTaskCancellationHandler { await work.result } onCancel: { work.cancel() }
        heartbeat.cancel()
        ctx.jobs.unregister(devboxId: id)
        // The bookkeeping (lease, failure, teardown) must happen even then, and a cancelled
        // task's database calls would throw at once: it runs in a task that is not cancelled.
        await Task { await settle(id, result, log: log) }.value
    }

    private func settle(_ id: String, _ result: Result<Void, any Error>, log: Logger) async {
        switch result {
        case .success:
            break
        case .failure(JobStop.failed(let op, let message, let commit)):
            await fail(id, op: op, message: message, commit: commit, log: log)
        case .failure(JobStop.shutdown):
            try? await ctx.db.releaseLease(devboxId: id, owner: owner)
            log.info("job paused at a step boundary for shutdown")
        case .failure(JobStop.leaseLost):
            break
        case .failure(let error):
            // Cancelled by DELETE, or an unexpected error: the devbox state decides.
            let state = (try? await ctx.db.devboxRecord(id: id))?.state
            if state == .destroyed {
                await ctx.teardown(id, reason: "destroyed while provisioning")
            } else if error is CancellationError || error as? JobStop != nil {
                try? await ctx.db.releaseLease(devboxId: id, owner: owner)
            } else {
                await fail(id, op: .provision, message: "internal error: \(error)", log: log)
            }
        }
    }

    /// Records a failed step (internal, not private: tests drive the race with a DELETE).
    /// The sandbox goes first, so a devbox reads `failed` only once nothing of it runs; then
    /// one transaction records everything (`AppDatabase.recordFailure`): the step results not
    /// yet written, the failed step, the remaining steps, `failed` under the lease, and the
    /// deletion of the devbox's secrets. `commit` nil: only `op` failed with `message`.
    func fail(_ id: String, op: OperationKind, message: String, commit: [OperationUpdate]? = nil, log: Logger) async {
        log.warning("provisioning failed", metadata: ["operation": "\(op.rawValue)", "error": "\(message)"])
        ctx.metrics.provisioningFailed(op)
        do {
            try await ctx.sandbox.destroy(box: id)
        } catch {
            log.error("sandbox teardown failed: \(error)")
        }
        do {
            let refused = try await ctx.db.recordFailure(
                devboxId: id, owner: owner, op: op, message: message,
                updates: commit ?? PipelineDecisions.failureCommit(op, message))
            for u in refused {
                log.error("recording the failed operation failed: \(u.kind.rawValue) cannot become \(u.status.rawValue)")
            }
            log.info("devbox torn down", metadata: ["reason": "failed: \(op.rawValue)"])
        } catch StorageError.leaseLost, StorageError.illegalTransition(from: .destroyed, _) {
            // A DELETE came first: it took the lease, destroyed the devbox and tore it down,
            // which is the outcome asked for. Nothing went wrong, so no error in the log.
            log.info("devbox destroyed while its failure was being recorded; it stays destroyed")
        } catch {
            log.error("recording the failure failed: \(error)")
        }
    }

    private func steps(_ job: ClaimedJob, log: Logger) async throws {
        let id = job.devbox.id
        let ops = PipelineDecisions.statuses(job)
        let running = PipelineDecisions.needsSandboxCheck(ops) ? await ctx.sandbox.isRunning(box: id) : true
        var progress: PipelineProgress
        switch PipelineDecisions.resume(ops, sandboxRunning: running) {
        case .proceed:
            progress = PipelineProgress(job: job)
        case .fail(let kind, let message):
            throw JobStop.failed(kind, message, commit: PipelineDecisions.failureCommit(kind, message))
        case .restart(let reset):
            log.notice("restarting an interrupted pipeline from the first step")
            try? await ctx.sandbox.destroy(box: id)
            try await ctx.db.restartOperations(devboxId: id, reset)
            progress = PipelineProgress(job: job, restarted: true)
        }
        let pipeline = Pipeline(ctx: ctx, job: job, log: log)
        while true {
            switch progress.next(stopping: stopping.isSet, now: Date()) {
            case .pause(let commit):
                if !commit.isEmpty { try await ctx.db.updateOperations(devboxId: id, commit) }
                throw JobStop.shutdown
            case .finish(let last, let deleteTokens):
                if deleteTokens { try await ctx.db.deletePendingSecrets(devboxId: id) }
                try await ctx.db.finishPipeline(devboxId: id, owner: owner, last: last)
                ctx.metrics.becameReady(createdAt: job.devbox.createdAt)
                log.info("devbox ready")
                return
            case .fail(let kind, let message, let commit):
                throw JobStop.failed(kind, message, commit: commit)
            case .run(let kind, let commit):
                try Task.checkCancellation()
                if !commit.isEmpty { try await ctx.db.updateOperations(devboxId: id, commit) }
                let stepStart = ContinuousClock.now
                let outcome = try await pipeline.run(kind)
                ctx.metrics.stepRan(kind, ContinuousClock.now - stepStart)
                // The step's end, not the end of the next step's start commit that records it.
                let ended = Date()
                try Task.checkCancellation()
                if case .fail(let kind, let message, let commit)? = progress.finished(kind, outcome, ended: ended) {
                    throw JobStop.failed(kind, message, commit: commit)
                }
            }
        }
    }
}

/// A counter shared by the worker loop and its job tasks.
final class AtomicCounter: Sendable {
    private let v = Atomic(0)
    var value: Int { v.load(ordering: .relaxed) }
    func add(_ n: Int) { v.add(n, ordering: .relaxed) }
}

/// A set-once flag shared by copies of a runner.
final class StopFlag: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

extension Logger {
    static func withDevbox(_ base: Logger, _ id: String) -> Logger {
        var l = base
        l[metadataKey: "devbox"] = "\(id)"
        return l
    }
}
