import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where blocking work runs (system calls that wait: crun, poll, waitid, mounts, netlink, a
/// PTY's fds): a bounded set of dedicated OS threads fed by one FIFO queue, awaited with
/// `run {}`. Nothing of it ever occupies a thread of Swift's cooperative pool.
///
/// - Threads are reused: one is started only when every thread is busy (a job never waits
///   behind another while the bound allows a thread), and one that stayed idle for
///   `idleTimeout` ends, down to `keepIdle`. Past `maxThreads` jobs queue in order.
/// - `nice`: a job runs at that nice value (Linux schedules threads: it and the processes it
///   spawns). A thread goes back to 0 after the job; a thread that may not (no CAP_SYS_NICE)
///   ends instead, so later jobs never inherit a lower priority.
/// - Long-lived loops (a resolver, a listener, a pool's filler) are not jobs: they keep a
///   thread of their own for their lifetime (docs/ARCHITECTURE.md, "Blocking work").
public final class BlockingExecutor: @unchecked Sendable {
    /// The service's executor. The bound is far above what the service runs at once (a job
    /// per running exec, setup command, SSH channel's spawn, file call, create or teardown);
    /// it is there so that a flood queues instead of exhausting the process's threads.
    public static let shared = BlockingExecutor(maxThreads: 512, keepIdle: 8)

    public let maxThreads: Int
    public let keepIdle: Int
    public let idleTimeout: TimeInterval
    public let stackSize: Int

    private struct Job {
        let nice: Int32
        /// Does the work; returns what hands its result back (called once the thread
        /// counts as idle again, so the caller's next job finds it free).
        let body: () -> () -> Void
    }

    // Guarded by `condition` (a condition variable is what idle threads wait on).
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var head = 0
    private var threads = 0
    private var idle = 0
    private var peak = 0

    public init(maxThreads: Int, keepIdle: Int, idleTimeout: TimeInterval = 10, stackSize: Int = 1 << 20) {
        precondition(maxThreads > 0 && keepIdle >= 0)
        self.maxThreads = maxThreads
        self.keepIdle = keepIdle
        self.idleTimeout = idleTimeout
        self.stackSize = stackSize
    }

    /// Runs `body` on one of the executor's threads and suspends until it returns.
    /// Cancellation does not interrupt it: blocking work ends by its own deadline.
    public func run<T: Sendable>(nice: Int32 = 0, _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (cont: CheckedContinuation<T, Never>) in
            submit(Job(nice: nice) {
                let value = body()
                return { cont.resume(returning: value) }
            })
        }
    }

    public func run<T: Sendable>(nice: Int32 = 0, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let r: Result<T, any Error> = await run(nice: nice) { () -> Result<T, any Error> in
            do { return .success(try body()) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// Runs `body` on one of the executor's threads without waiting for it (work nobody
    /// awaits: a box directory deleted in the background). `nice` nil: the caller's thread's.
    public func execute(nice: Int32? = nil, _ body: @escaping @Sendable () -> Void) {
        submit(Job(nice: nice ?? getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)) {
            body()
            return {}
        })
    }

    /// Threads now, idle ones, jobs waiting for a thread, and the most threads ever at once.
    public var counts: (threads: Int, idle: Int, queued: Int, peak: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (threads, idle, queue.count - head, peak)
    }

    private func submit(_ job: Job) {
        condition.lock()
        queue.append(job)
        let waiting = queue.count - head
        // Each idle thread takes one job: start a thread only when the queue outgrew them.
        let start = waiting > idle && threads < maxThreads
        if start {
            threads += 1
            peak = max(peak, threads)
        } else {
            condition.signal()
        }
        condition.unlock()
        if start { startThread() }
    }

    private func startThread() {
        let thread = Thread { [self] in work() }
        thread.name = "devbox-blocking"
        thread.stackSize = stackSize
        thread.start()
    }

    /// The next job, or nil when this thread ends (idle too long). `counted`: this thread
    /// is already counted idle (it just handed a result back).
    private func take(counted: Bool) -> Job? {
        condition.lock()
        defer { condition.unlock() }
        if !counted { idle += 1 }
        while head == queue.count {
            let woken = condition.wait(until: Date(timeIntervalSinceNow: idleTimeout))
            if !woken && head == queue.count && threads > keepIdle {
                idle -= 1
                threads -= 1
                return nil
            }
        }
        idle -= 1
        let job = queue[head]
        head += 1
        if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return job
    }

    private func work() {
        var next = take(counted: false)
        while let job = next {
            if job.nice != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, job.nice) }
            let handBack = job.body()
            if job.nice != 0 && setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 0) != 0 {
                // Could not go back to 0 (no CAP_SYS_NICE): this thread ends, and a fresh one
                // (at nice 0) takes its place if jobs wait for it.
                condition.lock()
                let replace = queue.count - head > idle
                if !replace { threads -= 1 }
                condition.unlock()
                if replace { startThread() }
                handBack()
                return
            }
            condition.lock()
            idle += 1
            condition.unlock()
            handBack()
            next = take(counted: true)
        }
    }
}
