import Foundation
import Synchronization

/// Wakes idle workers when a devbox is created and lets DELETE cancel a running job.
/// Shared by `DevboxCommands` (create signals, delete cancels), `Housekeeping` (expiry
/// cancels) and the worker (`ProvisioningContext`).
public final class JobSignal: Sendable {
    private struct State {
        var pending = false
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var running: [String: @Sendable () -> Void] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes every current waiter, or the next one if nobody waits.
    func signal() {
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { s in
            guard !s.waiters.isEmpty else {
                s.pending = true
                return []
            }
            defer { s.waiters.removeAll() }
            return Array(s.waiters.values)
        }
        for w in woken { w.resume() }
    }

    /// Returns when signalled or after `timeout`, whichever comes first.
    func wait(timeout: Duration) async {
        let id: UInt64 = state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let timer = Task {
            // A cancelled timer must not wake anyone: that would leave a stray `pending`
            // behind and turn the worker's idle wait into a busy loop.
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            self.wake(id)
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow: Bool = state.withLock { s in
                if s.pending {
                    s.pending = false
                    return true
                }
                s.waiters[id] = c
                return false
            }
            if resumeNow { c.resume() }
        }
        timer.cancel()
    }

    private func wake(_ id: UInt64) {
        let w = state.withLock { $0.waiters.removeValue(forKey: id) }
        w?.resume()
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
