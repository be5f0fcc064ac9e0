import Foundation
import Logging
import Synchronization

/// One handshake-era HTTP session.
final class HTTPSession: Sendable {
    let id: String
    let connection: MCPConnection
    let owner: String?
    private let state: Mutex<(lastUsed: ContinuousClock.Instant, active: Int)>

    init(id: String, connection: MCPConnection, owner: String?) {
        self.id = id
        self.connection = connection
        self.owner = owner
        self.state = Mutex((ContinuousClock.now, 0))
    }

    func acquire() { state.withLock { $0.active += 1; $0.lastUsed = .now } }

    func release() { state.withLock { $0.active -= 1; $0.lastUsed = .now } }

    var snapshot: (ContinuousClock.Instant, Int) { state.withLock { ($0.lastUsed, $0.active) } }

    func isExpired(now: ContinuousClock.Instant, idle: Duration) -> Bool {
        state.withLock { $0.active == 0 && now - $0.lastUsed > idle }
    }
}

/// Decides JSON vs SSE for one request and carries the SSE frames.
final class ResponseExchange: Sendable {
    enum Decision: Sendable {
        case json([UInt8], errorCode: Int?)
        case stream
        /// Finished without a response before any byte was streamed.
        case cancelled
    }

    private struct State {
        var decision: Decision?
        var waiter: CheckedContinuation<Decision, Never>?
        var timer: Task<Void, Never>?
        var keepAlive: Task<Void, Never>?
        var finished = false
        var consumerGone = false
        var onConsumerGone: (@Sendable () -> Void)?
    }

    let stream: AsyncStream<[UInt8]>
    private let continuation: AsyncStream<[UInt8]>.Continuation
    private let state = Mutex(State())
    private let keepAliveInterval: Duration?

    static let framePrefix: [UInt8] = Array("event: message\ndata: ".utf8)
    static let keepAliveFrame: [UInt8] = Array(": keepalive\n\n".utf8)

    init(keepAlive: Duration?) {
        (stream, continuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .unbounded)
        keepAliveInterval = keepAlive
        continuation.onTermination = { [weak self] reason in
            guard let self else { return }
            if case .cancelled = reason { self.consumerGone() }
            self.state.withLock { s in
                s.keepAlive?.cancel()
                s.keepAlive = nil
            }
        }
    }

    var onConsumerGone: (@Sendable () -> Void)? {
        get { state.withLock { $0.onConsumerGone } }
        set { state.withLock { $0.onConsumerGone = newValue } }
    }

    static func frame(_ json: [UInt8]) -> [UInt8] {
        var f = framePrefix
        f.reserveCapacity(framePrefix.count + json.count + 2)
        f.append(contentsOf: json)
        f.append(0x0A)
        f.append(0x0A)
        return f
    }

    /// The client went away: cancel the request (if the policy says so).
    func consumerGone() {
        let action = state.withLock { s -> (@Sendable () -> Void)? in
            if s.consumerGone || s.finished { return nil }
            s.consumerGone = true
            return s.onConsumerGone
        }
        action?()
        continuation.finish()
    }

    func forceStream() { decide(.stream) }

    func startTimer(_ window: Duration) {
        let t = Task { [weak self] in
            try? await Task.sleep(for: window)
            if !Task.isCancelled { self?.decide(.stream) }
        }
        let cancelNow = state.withLock { s -> Bool in
            if s.decision != nil { return true }
            s.timer = t
            return false
        }
        if cancelNow { t.cancel() }
    }

    private func decide(_ d: Decision) {
        let (waiter, timer, startKeepAlive) = state.withLock { s -> (CheckedContinuation<Decision, Never>?, Task<Void, Never>?, Bool) in
            guard s.decision == nil else { return (nil, nil, false) }
            s.decision = d
            defer { s.waiter = nil; s.timer = nil }
            var ka = false
            if case .stream = d, !s.finished { ka = true }
            return (s.waiter, s.timer, ka)
        }
        timer?.cancel()
        if startKeepAlive, let interval = keepAliveInterval { startKeepAliveTask(interval) }
        waiter?.resume(returning: d)
    }

    private func startKeepAliveTask(_ interval: Duration) {
        let cont = continuation
        let t = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                if case .terminated = cont.yield(Self.keepAliveFrame) { break }
            }
        }
        let cancelNow = state.withLock { s -> Bool in
            if s.finished || s.consumerGone { return true }
            s.keepAlive = t
            return false
        }
        if cancelNow { t.cancel() }
    }

    func notification(_ json: [UInt8]) {
        let finished = state.withLock { $0.finished }
        if finished { return }
        decide(.stream)
        continuation.yield(Self.frame(json))
    }

    /// The request finished. `response` nil (or `suppressed`) ends the stream without a response.
    func complete(_ response: [UInt8]?, errorCode: Int?, suppressed: Bool) {
        let ka = state.withLock { s -> Task<Void, Never>? in
            s.finished = true
            defer { s.keepAlive = nil }
            return s.keepAlive
        }
        ka?.cancel()
        if let response, !suppressed {
            decide(.json(response, errorCode: errorCode))
            continuation.yield(Self.frame(response))
        } else {
            decide(.cancelled)
        }
        continuation.finish()
    }

    func decision() async -> Decision {
        await withCheckedContinuation { (c: CheckedContinuation<Decision, Never>) in
            let now = state.withLock { s -> Decision? in
                if let d = s.decision { return d }
                s.waiter = c
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }
}
