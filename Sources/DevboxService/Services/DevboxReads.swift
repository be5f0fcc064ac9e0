import DevboxModel
import Foundation
import Logging

/// Reads of a caller's devboxes: get, list (pages), operations, repositories, the egress
/// policy, the user's profile, the long-poll wait, and the encoded-answer reads the REST API
/// writes out as they are cached (`AppDatabase.devboxJSON`). Another user's devbox answers
/// exactly like an unknown one. Needs the database only: `devbox mcp` reads a serve's data
/// directory with one of these (`LocalReadBackend`).
public final class DevboxReads: Sendable, LoggingService {
    let db: AppDatabase
    let logger: Logger

    public init(database: AppDatabase, logger: Logger) {
        self.db = database
        self.logger = logger
    }

    public func listDevboxes(_ principal: Principal) async throws(ServiceError) -> [Devbox] {
        do { return try await db.devboxes(userId: principal.userId) } catch { throw storageFailure(error) }
    }

    /// A page of the list (newest first) and the cursor of the next one (nil: last page).
    public func listDevboxes(_ principal: Principal, page: DevboxPageRequest) async throws(ServiceError) -> (devboxes: [Devbox], next: String?) {
        if let limit = page.limit, !(1...500).contains(limit) {
            throw .validation(field: "limit", message: "limit must be between 1 and 500")
        }
        do {
            let r = try await db.devboxPage(userId: principal.userId, page)
            return (r.devboxes, r.next?.encoded)
        } catch {
            throw storageFailure(error)
        }
    }

    /// Another user's devbox answers exactly like an unknown one.
    public func devbox(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        let found: Devbox?
        do { found = try await db.devbox(id: id, userId: principal.userId) } catch { throw storageFailure(error) }
        guard let found else { throw .notFound("no devbox with id \(id)") }
        return found
    }

    public func operations(_ principal: Principal, id: String) async throws(ServiceError) -> [DevboxOperation] {
        _ = try await devbox(principal, id: id)
        do { return try await db.operations(devboxId: id).map(\.model) } catch { throw storageFailure(error) }
    }

    /// `GET /api/v1/devboxes/:id/repositories`.
    public func devboxRepositories(_ principal: Principal, id: String) async throws(ServiceError) -> [DevboxRepository] {
        _ = try await devbox(principal, id: id)
        do { return try await db.repositoryRecords(devboxId: id).map(\.model) } catch { throw storageFailure(error) }
    }

    /// `GET /api/v1/devboxes/:id/network`: the devbox's egress policy.
    public func network(_ principal: Principal, id: String) async throws(ServiceError) -> DevboxNetwork {
        try await devbox(principal, id: id).network
    }

    public func profile(_ principal: Principal) async throws(ServiceError) -> UserProfile {
        let p: UserProfile?
        do { p = try await db.userProfile(principal) } catch { throw storageFailure(error) }
        guard let p else { throw .notFound("user not found") }
        return p
    }

    /// The caller's devbox, which must be ready to `what` (409 naming how to start a stopped one).
    func requireReady(_ principal: Principal, id: String, for what: String) async throws(ServiceError) {
        let box = try await devbox(principal, id: id)
        switch box.state {
        case .ready: return
        case .stopped:
            throw .conflict("devbox \(id) is stopped; start it (POST /api/v1/devboxes/\(id)/start) to \(what)")
        default:
            throw .conflict("devbox \(id) is \(box.state.rawValue); only a ready devbox can \(what)")
        }
    }

    // MARK: Encoded reads

    /// `GET /api/v1/devboxes/:id` as the bytes of its answer: the same answer as
    /// `devbox(_:id:)` encoded with `encode`, kept encoded while the devbox is cached, so the
    /// serve writes a polled answer out without building it again.
    public func devboxJSON(_ principal: Principal, id: String, encode: (Devbox) -> [UInt8]) async throws(ServiceError) -> [UInt8] {
        let found: [UInt8]?
        do { found = try await db.devboxJSON(id: id, userId: principal.userId, encode: encode) } catch { throw storageFailure(error) }
        guard let found else { throw .notFound("no devbox with id \(id)") }
        return found
    }

    /// A page of the list as bytes (`listDevboxes(_:page:)`); `encode` gets the page's
    /// devboxes and its `next_cursor` (nil on the last page).
    public func listDevboxesJSON(
        _ principal: Principal, page: DevboxPageRequest, encode: ([Devbox], String?) -> [UInt8]
    ) async throws(ServiceError) -> [UInt8] {
        if let limit = page.limit, !(1...500).contains(limit) {
            throw .validation(field: "limit", message: "limit must be between 1 and 500")
        }
        do {
            return try await db.devboxPageJSON(userId: principal.userId, page) { encode($0, $1?.encoded) }
        } catch {
            throw storageFailure(error)
        }
    }

    // MARK: Wait

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
