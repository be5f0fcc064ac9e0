import DevboxModel
import Foundation
import ServiceLifecycle

/// Stops idle devboxes and destroys expired ones. The clocks live in the database
/// (`last_activity_at`, `expires_at`), so a restart of the service keeps them.
public struct LifetimeWorker: Service {
    let core: DevboxCore

    public init(core: DevboxCore) { self.core = core }

    public func run() async throws {
        let interval = core.configuration.lifetimes.checkInterval
        await cancelWhenGracefulShutdown {
            // Nothing is stopped or destroyed before the listeners are bound and start-up has run.
            guard await core.startup.wait() else { return }
            while !Task.isCancelled {
                await core.enforceLifetimes()
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }
}

extension DevboxCore {
    /// One pass of the lifetime worker (public for tests).
    public func enforceLifetimes(now: Date = Date()) async {
        let clocks: [(id: String, clock: LifetimePolicy.Clock)]
        do { clocks = try await db.lifetimeClocks() } catch {
            logger.error("reading lifetimes failed: \(error)")
            return
        }
        for (id, clock) in clocks {
            // Live SSH connections and running commands are in use, however quiet.
            let live = (gateway.current?.connectionCount(devboxId: id) ?? 0) + execsRunning.count(id)
            switch LifetimePolicy.decide(clock, now: now, liveConnections: live) {
            case .none:
                break
            case .touch:
                await noteActivity(devboxId: id)
            case .stop:
                do {
                    try await stop(id, reason: "idle for \(clock.idleTimeoutSeconds ?? 0) s")
                    await recordSystemAudit("devbox.idle_stop", devboxId: id)
                } catch {
                    logger.warning("idle stop failed", metadata: ["devbox": "\(id)", "error": "\(error.message)"])
                }
            case .destroy:
                await expire(id)
            }
        }
        await purgeDestroyed(now: now)
        await purgeAudit(now: now)
    }

    /// Deletes destroyed devboxes past the retention period, with their operations,
    /// repositories and sessions (the schema cascades); GET by id answers 404 afterwards.
    func purgeDestroyed(now: Date = Date()) async {
        guard let retention = configuration.lifetimes.destroyedRetentionSeconds else { return }
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
        activityWritten.forget(id)
        await recordSystemAudit("devbox.expire", devboxId: id)
        await teardown(id, reason: "ttl expired")
    }
}
