import Foundation
import Synchronization

/// Wakes idle workers when a devbox is created and lets DELETE cancel a running job.
final class JobSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var running: [String: @Sendable () -> Void] = [:]
    }
    private let state = Mutex(State())

    func signal() {
        let w: CheckedContinuation<Void, Never>? = state.withLock { s in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        w?.resume()
    }

    /// Returns when signalled or after `timeout`, whichever comes first.
    func wait(timeout: Duration) async {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.signal()
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow: Bool = state.withLock { s in
                if s.pending {
                    s.pending = false
                    return true
                }
                if let old = s.waiter { old.resume() }
                s.waiter = c
                return false
            }
            if resumeNow { c.resume() }
        }
        timer.cancel()
    }

    func register(devboxId: String, cancel: @escaping @Sendable () -> Void) {
        state.withLock { $0.running[devboxId] = cancel }
    }

    func unregister(devboxId: String) {
        _ = state.withLock { $0.running.removeValue(forKey: devboxId) }
    }

    func cancel(devboxId: String) {
        let c = state.withLock { $0.running[devboxId] }
        c?()
    }

    var runningCount: Int { state.withLock { $0.running.count } }
}
