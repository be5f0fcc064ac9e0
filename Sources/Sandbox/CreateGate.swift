import Foundation
import Synchronization

/// Admission of cold box starts: at most `limit` run at once, the others wait in arrival
/// order (`DEVBOX_CREATE_CONCURRENCY`; default: twice the CPUs, at least 2; 0: no limit).
///
/// Why: a cold start is CPU work (crun, mounts, the box's network) that takes ~25 ms of CPU.
/// Twenty of them started together on two cores share the CPU evenly, so every one of them
/// is ready near the end of the burst; admitted a few at a time, in order, the first ones
/// are ready after a fraction of it and the last one no later than before (the work is the
/// same). What a burst's callers see (its median) drops; the burst's wall time does not move.
/// Only the blocking part of a cold start passes through here: a create the warm pool serves,
/// setup commands, clones and teardown do not.
///
/// Blocking: called on a dedicated (executor) thread, never on the cooperative pool.
final class CreateGate: Sendable {
    /// A create waiting for a slot: woken with one (`granted`) or without (its create was
    /// cancelled while it waited, `abandon`).
    private final class Waiter: Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        let granted = Atomic<Bool>(false)
    }
    private struct State {
        var running = 0
        var waiting: [Waiter] = []
    }
    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// The limit from `DEVBOX_CREATE_CONCURRENCY`, or twice the active CPUs (≥ 2).
    static func configuredLimit(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let v = environment["DEVBOX_CREATE_CONCURRENCY"], let n = Int(v), n >= 0 { return n }
        return max(2, 2 * ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Starts waiting for a slot now (tests).
    var waiting: Int { state.withLock { $0.waiting.count } }
    /// Holding a slot now (tests).
    var inside: Int { state.withLock { $0.running } }

    /// Runs `body` once a slot is free (FIFO), releasing it afterwards. With `cancellation`:
    /// a create cancelled while it waits stops waiting, and one cancelled before `body`
    /// starts does not run it; both throw `CancellationError` (nothing was made). Issue 21:
    /// a devbox deleted right after its create waited here holding its box lock, then was
    /// built (crun run, mounts, its network) only to be torn down again.
    func withSlot<T>(unless cancellation: CreateCancellation? = nil, _ body: () throws -> T) throws -> T {
        if limit > 0 {
            let waiter: Waiter? = state.withLock { s in
                if s.running < limit, s.waiting.isEmpty {
                    s.running += 1
                    return nil
                }
                let w = Waiter()
                s.waiting.append(w)
                return w
            }
            if let waiter {
                cancellation?.onCancel { [self] in abandon(waiter) }
                // A waiter that is granted owns the slot its waker passed on (running is not decremented).
                waiter.semaphore.wait()
                cancellation?.onCancel(nil)
                guard waiter.granted.load(ordering: .acquiring) else { throw CancellationError() }
            }
        }
        defer { if limit > 0 { release() } }
        if cancellation?.isCancelled == true { throw CancellationError() }
        return try body()
    }

    private func release() {
        let next: Waiter? = state.withLock { s in
            if s.waiting.isEmpty {
                s.running -= 1
                return nil
            }
            return s.waiting.removeFirst()
        }
        next?.granted.store(true, ordering: .releasing)
        next?.semaphore.signal()
    }

    /// Wakes `waiter` without a slot, unless it was granted one already.
    private func abandon(_ waiter: Waiter) {
        let removed = state.withLock { s in
            guard let i = s.waiting.firstIndex(where: { $0 === waiter }) else { return false }
            s.waiting.remove(at: i)
            return true
        }
        if removed { waiter.semaphore.signal() }
    }
}

/// A create's cancellation as its blocking thread sees it: set from the task's cancellation
/// handler (a DELETE of the devbox cancels its provisioning job), checked by the create at its
/// step boundaries, and it wakes a create waiting in `CreateGate`.
final class CreateCancellation: Sendable {
    private struct State {
        var cancelled = false
        var action: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    init() {}

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    func cancel() {
        let action: (@Sendable () -> Void)? = state.withLock { s in
            guard !s.cancelled else { return nil }
            s.cancelled = true
            defer { s.action = nil }
            return s.action
        }
        action?()
    }

    /// `action` runs once on `cancel` (at once if cancelled already); nil forgets it.
    func onCancel(_ action: (@Sendable () -> Void)?) {
        let now: Bool = state.withLock { s in
            if s.cancelled { return action != nil }
            s.action = action
            return false
        }
        if now { action?() }
    }
}
