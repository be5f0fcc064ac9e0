import Synchronization

/// A request being served: lets `notifications/cancelled` (or a closed stream) cancel its Task.
final class InFlightRequest: Sendable {
    private let state = Mutex<(task: Task<Void, Never>?, cancelled: Bool)>((nil, false))

    /// Attaches the Task; cancels it at once if cancellation arrived first.
    func attach(_ task: Task<Void, Never>) {
        let cancelNow = state.withLock { s -> Bool in
            s.task = task
            return s.cancelled
        }
        if cancelNow { task.cancel() }
    }

    /// Marks the request cancelled by the client and cancels its Task.
    func cancel() {
        let task = state.withLock { s -> Task<Void, Never>? in
            s.cancelled = true
            return s.task
        }
        task?.cancel()
    }

    /// Cancels the Task without marking the request as cancelled by the client (its response
    /// is still sent).
    func interrupt() {
        let task = state.withLock { $0.task }
        task?.cancel()
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }
}

/// A one-shot broadcast used to end long-lived requests (`subscriptions/listen`) gracefully.
final class ShutdownSignal: Sendable {
    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
    }
    private let state = Mutex(State())

    func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.fired = true
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume(returning: true) }
    }

    var isFired: Bool { state.withLock { $0.fired } }

    /// Returns true when the signal fired, false when the waiting Task was cancelled.
    func wait() async -> Bool {
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let resumeNow: Bool? = state.withLock { s in
                    if s.fired { return true }
                    if Task.isCancelled { return false }
                    s.waiters[id] = c
                    return nil
                }
                if let resumeNow { c.resume(returning: resumeNow) }
            }
        } onCancel: {
            let w = state.withLock { $0.waiters.removeValue(forKey: id) }
            w?.resume(returning: false)
        }
    }
}

/// State of one handshake-era conversation (a stdio process, or one HTTP session), plus the
/// requests in flight on it (for `notifications/cancelled`).
final class MCPConnection: Sendable {
    struct Negotiated: Sendable {
        var protocolVersion: String
        var clientInfo: JSONValue?
        var clientCapabilities: JSONValue?
        var initializedNotified = false
    }

    private struct State {
        var negotiated: Negotiated?
        var inFlight: [JSONRPCID: InFlightRequest] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    let shutdown = ShutdownSignal()

    init() {}

    var negotiated: Negotiated? { state.withLock { $0.negotiated } }

    func setNegotiated(_ n: Negotiated) { state.withLock { $0.negotiated = n } }

    func markInitializedNotified() {
        state.withLock { s in s.negotiated?.initializedNotified = true }
    }

    /// Registers a request; returns nil if the id is already in flight or the connection closed.
    func begin(_ id: JSONRPCID) -> InFlightRequest? {
        state.withLock { s -> InFlightRequest? in
            if s.closed || s.inFlight[id] != nil { return nil }
            let r = InFlightRequest()
            s.inFlight[id] = r
            return r
        }
    }

    func end(_ id: JSONRPCID, _ r: InFlightRequest) {
        state.withLock { s in
            if s.inFlight[id] === r { s.inFlight[id] = nil }
        }
    }

    /// Cancels the request with this id, if it is in flight (unknown ids are ignored, per spec).
    func cancel(_ id: JSONRPCID) {
        let r = state.withLock { $0.inFlight[id] }
        r?.cancel()
    }

    var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    /// Cancels the Tasks of all requests in flight; their responses are still sent.
    func interruptAll() {
        let all = state.withLock { Array($0.inFlight.values) }
        for r in all { r.interrupt() }
    }

    /// Ends the connection: cancels everything in flight and ends subscriptions.
    func close() {
        let all = state.withLock { s -> [InFlightRequest] in
            s.closed = true
            return Array(s.inFlight.values)
        }
        shutdown.fire()
        for r in all { r.cancel() }
    }
}
