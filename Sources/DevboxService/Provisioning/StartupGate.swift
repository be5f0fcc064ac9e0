import Synchronization

/// Holds the workers back until start-up has run: the HTTP and SSH listeners are bound
/// first, then the start-up sweep (and the warm pool) runs, then the gate opens and the
/// workers claim jobs. So nothing of a box runs while the service's ports are not yet its
/// own, and a serve that cannot bind has touched no box.
///
/// idle → begun (start-up is running) → opened; or idle → abandoned (shutdown came first:
/// start-up will not run, the workers end). Once begun, start-up finishes even during a
/// graceful shutdown, so whatever it started (the warm pool) is there for the workers'
/// clean-up to release.
public final class StartupGate: Sendable {
    private enum Phase { case idle, begun, opened, abandoned }
    private struct State {
        var phase = Phase.idle
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// Start-up claims the gate; false if shutdown abandoned it first (then do nothing).
    public func begin() -> Bool {
        state.withLock { s in
            guard s.phase == .idle else { return false }
            s.phase = .begun
            return true
        }
    }

    /// Start-up is done: the workers go.
    public func open() { finish(.opened) }

    /// Shutdown before start-up began: it never will, the waiting workers end.
    /// No effect once start-up has begun (the workers wait for it to finish).
    public func abandonIfNotBegun() { finish(.abandoned) }

    private func finish(_ phase: Phase) {
        let woken: [CheckedContinuation<Bool, Never>] = state.withLock { s in
            switch (s.phase, phase) {
            case (.idle, _), (.begun, .opened): s.phase = phase
            default: return []
            }
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for w in woken { w.resume(returning: phase == .opened) }
    }

    /// True once the gate is open; false if it was abandoned or the waiting task is cancelled
    /// (the service group cancels every service when one fails, e.g. a port already taken).
    public func wait() async -> Bool {
        let id: UInt64 = state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let now: Bool? = state.withLock { s in
                    switch s.phase {
                    case .opened: return true
                    case .abandoned: return false
                    case .idle, .begun:
                        // Cancelled before registering: the handler below found nothing to resume.
                        if Task.isCancelled { return false }
                        s.waiters[id] = c
                        return nil
                    }
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            let w = state.withLock { $0.waiters.removeValue(forKey: id) }
            w?.resume(returning: false)
        }
    }
}
