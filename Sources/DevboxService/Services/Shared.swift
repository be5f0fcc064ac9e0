import DevboxModel
import DevboxRuntime
import Foundation
import Logging

// What several services share, passed to each explicitly by the composition root
// (`DevboxApp.buildServices`): the activity clocks, the teardown of a devbox, the storage
// failure mapping. The shared state objects themselves (`AuditLog` in `Auditor`, `JobSignal`,
// `GatewayBox`, `BrokerState`, `StartupGate`, `ServiceMetrics`) are made once there.

/// A service with a logger: maps a storage error to the API's 503 (logged), keeping a
/// `ServiceError` as it is.
protocol LoggingService {
    var logger: Logger { get }
}

extension LoggingService {
    func storageFailure(_ error: any Error) -> ServiceError {
        if let e = error as? ServiceError { return e }
        logger.error("storage failure: \(error)")
        return .unavailable("storage is unavailable, try again")
    }
}

/// Use of devboxes (exec, files, SSH, port connections): the debounced `last_activity_at`
/// writes and the commands running per devbox, which the lifetime worker counts as use.
public final class ActivityTracker: Sendable, LoggingService {
    let db: AppDatabase
    let interval: TimeInterval
    let logger: Logger
    /// When each devbox's activity was last written (at most one write per `interval`).
    let written = ActivityDebounce()
    /// Execs running per devbox (activity for as long as they run).
    let execsRunning = InFlight()

    public init(database: AppDatabase, writeInterval: TimeInterval, logger: Logger) {
        self.db = database
        self.interval = writeInterval
        self.logger = logger
    }

    /// Records use of a devbox (exec, files, SSH). At most one write per
    /// `activityWriteInterval` per devbox; a failed write is only logged.
    public func noteActivity(devboxId: String) async {
        let now = Date()
        guard written.shouldWrite(devboxId, now: now, interval: interval) else { return }
        do { try await db.touchActivity(devboxId: devboxId) } catch {
            logger.warning("recording activity failed", metadata: ["devbox": "\(devboxId)", "error": "\(error)"])
        }
    }

    /// The devbox stopped or went: its next use writes at once.
    func forget(_ id: String) { written.forget(id) }
}

/// Removes the sandbox and every secret of a devbox that has left the live states
/// (a delete, an expiry, a failed or cancelled provisioning).
public struct Teardown: Sendable, LoggingService {
    let db: AppDatabase
    let sandbox: any BoxRuntime
    let logger: Logger

    public init(database: AppDatabase, runtime: any BoxRuntime, logger: Logger) {
        self.db = database
        self.sandbox = runtime
        self.logger = logger
    }

    /// Removes the sandbox and every secret (AI tokens and env values) of a devbox that has
    /// left the live states: destroyed, or failed (which only leads to destroyed).
    func callAsFunction(_ id: String, reason: String, destroySandbox: Bool = true) async {
        // Secrets first: they leave the disk as soon as the devbox has left the live states,
        // not after the sandbox's teardown (a crun delete and its network's, tens of ms).
        do {
            try await db.finishRemainingOperations(devboxId: id, reason: reason)
            try await db.deleteSecrets(devboxId: id)
        } catch {
            logger.error("teardown bookkeeping failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
        }
        do {
            if destroySandbox { try await sandbox.destroy(box: id) }
        } catch {
            logger.error("sandbox teardown failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
        }
        logger.info("devbox torn down", metadata: ["devbox": "\(id)", "reason": "\(reason)"])
    }
}
