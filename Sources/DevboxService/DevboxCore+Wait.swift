import DevboxModel
import Foundation

extension DevboxCore {
    /// Bounds of `GET /api/v1/devboxes/:id/wait?timeout_seconds=`.
    public static let waitTimeoutSeconds = 0...300
    public static let defaultWaitTimeoutSeconds = 60

    /// A wait's timeout in seconds: the default when absent, 422 naming `timeout_seconds` when out of bounds.
    public static func waitTimeout(_ timeoutSeconds: Int?) throws(ServiceError) -> Int {
        let seconds = timeoutSeconds ?? defaultWaitTimeoutSeconds
        guard waitTimeoutSeconds.contains(seconds) else {
            throw .validation(
                field: "timeout_seconds",
                message: "timeout_seconds must be a whole number from \(waitTimeoutSeconds.lowerBound) to \(waitTimeoutSeconds.upperBound)")
        }
        return seconds
    }

    /// Listens for changes of one devbox in this process (no ownership check: it carries no
    /// data, only wake-ups). Subscribe before reading, then wait, so no change is missed.
    public func changes(devboxId: String) -> DevboxChangeSubscription {
        db.changes.subscribe(devboxId: devboxId)
    }

    /// Long-poll: the devbox as soon as it has settled (its state is neither `requested` nor
    /// `provisioning`), or as it is when `timeoutSeconds` (default 60, 0–300) have passed,
    /// when the service starts shutting down, or when the caller's task is cancelled (the
    /// client went away). Same ownership rules as `devbox(_:id:)`.
    public func waitForDevbox(_ principal: Principal, id: String, timeoutSeconds: Int?) async throws(ServiceError) -> Devbox {
        let seconds = try Self.waitTimeout(timeoutSeconds)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        let subscription = changes(devboxId: id)
        defer { subscription.cancel() }
        guard var box = try await readForWait(principal, id: id) else {
            throw .unavailable("the wait was cancelled")
        }
        var ending = "settled"
        while box.state.isSettling {
            let remaining = deadline - clock.now
            if remaining <= .zero {
                ending = "timed out"
                break
            }
            let wake = await subscription.next(timeout: remaining)
            if wake == .cancelled {
                // The client went away: nobody reads the answer, so no further read.
                ending = "cancelled"
                break
            }
            guard let fresh = try await readForWait(principal, id: id) else {
                ending = "cancelled"
                break
            }
            box = fresh
            if wake == .shutdown {
                ending = "shutting down"
                break
            }
        }
        logger.debug("devbox wait ended", metadata: ["devbox": "\(id)", "state": "\(box.state.rawValue)", "ending": "\(ending)"])
        return box
    }
}

extension DevboxCore {
    /// `devbox(_:id:)`, answering nil when the task was cancelled during the read (GRDB
    /// interrupts cancelled reads; that is the client going away, not a storage failure).
    private func readForWait(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox? {
        let found: Devbox?
        do {
            found = try await db.devbox(id: id, userId: principal.userId)
        } catch {
            if Task.isCancelled { return nil }
            throw storageFailure(error)
        }
        guard let found else { throw .notFound("no devbox with id \(id)") }
        return found
    }
}

extension DevboxState {
    /// Still on its way to `ready` (or `failed`): what a wait waits through.
    public var isSettling: Bool { self == .requested || self == .provisioning }
}
