import DevboxModel
import DevboxRuntime
import Foundation
import Logging

/// The service's own work on its devboxes, with no caller: start-up (sweep of leftovers,
/// box networks, boxes a host reboot stopped, disks, the warm pool; then the workers may
/// run), the release of the host when a serve stops before start-up, and the lifetime
/// worker's passes (idle stop, TTL expiry, retention purges).
public final class Housekeeping: Sendable {
    let db: AppDatabase
    let sandbox: any BoxRuntime
    /// Opened here once start-up has run; the workers and the image build wait on it.
    public let startup: StartupGate
    let brokerState: BrokerState
    let images: ImageService
    let runtime: RuntimeService
    let credentials: CredentialBroker
    let activity: ActivityTracker
    let gateway: GatewayBox
    let jobs: JobSignal
    let teardown: Teardown
    let auditor: Auditor
    let plans: [Plan]
    let lifetimes: LifetimeSettings
    let logger: Logger

    public init(
        database: AppDatabase, runtime sandbox: any BoxRuntime, startup: StartupGate, brokerState: BrokerState,
        images: ImageService, runtimeService: RuntimeService, credentials: CredentialBroker, activity: ActivityTracker,
        gateway: GatewayBox, jobs: JobSignal, teardown: Teardown, auditor: Auditor, plans: [Plan], lifetimes: LifetimeSettings,
        logger: Logger
    ) {
        self.db = database
        self.sandbox = sandbox
        self.startup = startup
        self.brokerState = brokerState
        self.images = images
        self.runtime = runtimeService
        self.credentials = credentials
        self.activity = activity
        self.gateway = gateway
        self.jobs = jobs
        self.teardown = teardown
        self.auditor = auditor
        self.plans = plans
        self.lifetimes = lifetimes
        self.logger = logger
    }

    // MARK: Start-up

    /// Start-up, once the HTTP and SSH listeners are bound and before the HTTP server accepts
    /// a connection: the sweep and the warm pool (`recoverOnStartup`), then the workers go.
    /// Nothing if a shutdown came first.
    public func startUp() async {
        guard startup.begin() else { return }
        await recoverOnStartup()
        startup.open()
    }

    /// The serve stops before start-up (a port already taken): gives back what preparing the
    /// host took — the mask layer's mount, the box networks' plumbing — unless running boxes
    /// still use it. No box is touched.
    public func releaseHostBeforeStartUp() async {
        startup.abandonIfNotBegun()
        await sandbox.releaseIdleResources()
    }

    /// Start-up: removes sandboxes, mounts and cgroups that no live devbox owns (left by a
    /// crash), then starts the warm pool. Runs before the service accepts requests.
    public func recoverOnStartup() async {
        do {
            let keep = try await db.devboxIds(inStates: DevboxStateMachine.sandboxStates)
            let removed = await sandbox.sweep(keeping: Set(keep))
            if !removed.isEmpty {
                logger.notice("swept leftover sandboxes", metadata: ["count": "\(removed.count)", "ids": "\(removed)"])
            }
        } catch {
            logger.error("start-up sweep failed: \(error)")
        }
        // The AI-API broker's port (bound before start-up) is offered to boxes by the table.
        sandbox.offerPorts(brokerState.port.map { [$0] } ?? [])
        do {
            try await sandbox.startNetworks(policies: await runtime.storedEgressPolicies())
        } catch {
            logger.critical("box networks could not be started; creates will fail: \(error)")
        }
        await reviveLostBoxes()
        // Formatted disk images of the plans' sizes, made in the background for the first creates.
        sandbox.prepareDisks(sizes: plans.map(\.limits.diskBytes))
        // Boxes of the default image: a serve still building it starts the pool once it is built.
        if images.settings.readiness.current == .ready { await images.startWarmPoolIfConfigured() }
    }

    /// Start-up, after the sweep and the networks: a devbox the database calls `ready` whose
    /// box does not run (the host rebooted, or something killed the boxes while the service
    /// was down) is started again on its files — upper layer and /workspace are on disk, so it
    /// comes back as it was. Its env file lives on a tmpfs (never on the host's disk): after a
    /// mere service restart it is still there, env-mode AI tokens included; after a host
    /// reboot it is rebuilt from the database (`restoreEnvIfLost`). If the start fails the
    /// devbox is marked `stopped` (a later start retries): a devbox is never shown `ready`
    /// while its box is not running.
    func reviveLostBoxes() async {
        let ids: [String]
        do { ids = try await db.devboxIds(inStates: [.ready]) } catch {
            logger.error("reading ready devboxes failed: \(error)")
            return
        }
        for id in ids where await !sandbox.isRunning(box: id) {
            await credentials.restoreEnvIfLost(id)
            do {
                try await sandbox.start(box: id)
                logger.notice("devbox was not running (host reboot?): started again", metadata: ["devbox": "\(id)"])
            } catch {
                logger.warning("devbox was not running and could not be started; marking it stopped",
                               metadata: ["devbox": "\(id)", "error": "\(error)"])
                do { try await db.transition(id, to: .stopped) } catch {
                    logger.error("marking a lost devbox stopped failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
                }
            }
        }
    }

    // MARK: Lifetimes

    /// One pass of the lifetime worker (public for tests).
    public func enforceLifetimes(now: Date = Date()) async {
        let clocks: [(id: String, clock: LifetimePolicy.Clock)]
        do { clocks = try await db.lifetimeClocks() } catch {
            logger.error("reading lifetimes failed: \(error)")
            return
        }
        for (id, clock) in clocks {
            // Live SSH connections and running commands are in use, however quiet.
            let live = (gateway.current?.connectionCount(devboxId: id) ?? 0) + activity.execsRunning.count(id)
            switch LifetimePolicy.decide(clock, now: now, liveConnections: live) {
            case .none:
                break
            case .touch:
                await activity.noteActivity(devboxId: id)
            case .stop:
                do {
                    try await runtime.stop(id, reason: "idle for \(clock.idleTimeoutSeconds ?? 0) s")
                    await auditor.recordSystem("devbox.idle_stop", devboxId: id)
                } catch {
                    logger.warning("idle stop failed", metadata: ["devbox": "\(id)", "error": "\(error.message)"])
                }
            case .destroy:
                await expire(id)
            }
        }
        await purgeDestroyed(now: now)
        await auditor.purge(now: now)
    }

    /// Deletes destroyed devboxes past the retention period, with their operations,
    /// repositories and sessions (the schema cascades); GET by id answers 404 afterwards.
    func purgeDestroyed(now: Date = Date()) async {
        guard let retention = lifetimes.destroyedRetentionSeconds else { return }
        do {
            let purged = try await db.purgeDestroyed(before: now.addingTimeInterval(-TimeInterval(retention)))
            if purged > 0 { logger.info("purged destroyed devboxes", metadata: ["count": "\(purged)"]) }
        } catch {
            logger.error("purging destroyed devboxes failed: \(error)")
        }
    }

    /// Destroys a devbox whose lifetime ended (as DELETE does, without a caller).
    func expire(_ id: String) async {
        do {
            try await db.transition(id, to: .destroyed) { r in
                r.destroyedAt = Date()
                r.leaseOwner = nil
                r.leaseExpiresAt = nil
            }
        } catch {
            return  // already destroyed, or storage trouble: the next pass retries
        }
        jobs.cancel(devboxId: id)
        try? await db.revokeAllSessions(devboxId: id)
        gateway.current?.closeConnections(devboxId: id)
        activity.forget(id)
        await auditor.recordSystem("devbox.expire", devboxId: id)
        await teardown(id, reason: "ttl expired")
    }
}
