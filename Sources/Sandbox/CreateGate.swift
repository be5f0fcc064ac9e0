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
    private struct State {
        var running = 0
        var waiting: [DispatchSemaphore] = []
    }
    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// The limit from `DEVBOX_CREATE_CONCURRENCY`, or twice the active CPUs (≥ 2).
    static func configuredLimit(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let v = environment["DEVBOX_CREATE_CONCURRENCY"], let n = Int(v), n >= 0 { return n }
        return max(2, 2 * ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Runs `body` once a slot is free (FIFO), releasing it afterwards.
    func withSlot<T>(_ body: () throws -> T) rethrows -> T {
        guard limit > 0 else { return try body() }
        let wait: DispatchSemaphore? = state.withLock { s in
            if s.running < limit, s.waiting.isEmpty {
                s.running += 1
                return nil
            }
            let sem = DispatchSemaphore(value: 0)
            s.waiting.append(sem)
            return sem
        }
        // A waiter that is woken owns the slot its waker passed on (running is not decremented).
        wait?.wait()
        defer {
            let next: DispatchSemaphore? = state.withLock { s in
                if s.waiting.isEmpty {
                    s.running -= 1
                    return nil
                }
                return s.waiting.removeFirst()
            }
            next?.signal()
        }
        return try body()
    }
}
