import DevboxRuntime
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `BlockingExecutor`: the bounded set of reused threads blocking work runs on (no root).
@Suite("Blocking executor")
struct BlockingExecutorTests {
    /// A gate jobs block on (a real blocking wait, as a crun run or a poll would be).
    final class Gate: @unchecked Sendable {
        let c = NSCondition()
        var open = false
        var inside = 0
        var most = 0
        func pass() {
            c.lock()
            inside += 1
            most = max(most, inside)
            while !open { c.wait() }
            inside -= 1
            c.unlock()
        }
        func release() {
            c.lock()
            open = true
            c.broadcast()
            c.unlock()
        }
        var waiting: Int {
            c.lock()
            defer { c.unlock() }
            return inside
        }
    }

    final class Order: Sendable {
        private let m = Mutex<[Int]>([])
        func append(_ i: Int) { m.withLock { $0.append(i) } }
        var all: [Int] { m.withLock { $0 } }
    }

    @Test func beyondTheBoundJobsQueueInOrder() async throws {
        let executor = BlockingExecutor(maxThreads: 3, keepIdle: 0)
        let gate = Gate()
        let order = Order()
        var tasks: [Task<Void, Never>] = []
        for i in 0..<10 {
            tasks.append(Task { await executor.run { gate.pass(); order.append(i) } })
            // Each job in the queue before the next is submitted (the queue is FIFO; task start order is not).
            for _ in 0..<400 where i < 3 ? gate.waiting < i + 1 : executor.counts.queued < i - 2 {
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        #expect(gate.waiting == 3, "only the bound runs at once")
        #expect(executor.counts.threads == 3 && executor.counts.queued == 7)
        gate.release()
        for t in tasks { await t.value }
        #expect(gate.most == 3)
        let done = order.all
        #expect(Set(done) == Set(0..<10) && done.count == 10, "\(done)")
    }

    @Test func oneThreadRunsTheQueueInOrder() async throws {
        let executor = BlockingExecutor(maxThreads: 1, keepIdle: 0)
        let gate = Gate()
        let order = Order()
        var tasks: [Task<Void, Never>] = []
        for i in 0..<8 {
            tasks.append(Task { await executor.run { gate.pass(); order.append(i) } })
            for _ in 0..<400 where i == 0 ? gate.waiting < 1 : executor.counts.queued < i {
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        gate.release()
        for t in tasks { await t.value }
        #expect(order.all == Array(0..<8))
    }

    @Test func threadsAreReusedAndIdleOnesEnd() async throws {
        let executor = BlockingExecutor(maxThreads: 8, keepIdle: 0, idleTimeout: 5)
        var tids = Set<UInt>()
        for _ in 0..<50 { tids.insert(await executor.run { pthread_self() }) }
        #expect(tids.count == 1, "50 jobs one after another took \(tids.count) threads")
        #expect(executor.counts.peak == 1)
        let short = BlockingExecutor(maxThreads: 8, keepIdle: 0, idleTimeout: 0.1)
        #expect(await short.run { 41 } == 41)
        for _ in 0..<100 where short.counts.threads > 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(short.counts.threads == 0, "an idle thread past its timeout ends")
        #expect(await short.run { 42 } == 42)
    }

    @Test func niceHoldsForTheJobOnly() async throws {
        let executor = BlockingExecutor(maxThreads: 1, keepIdle: 1)
        let niced = await executor.run(nice: 10) { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }
        #expect(niced == 10)
        let after = await executor.run { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }
        #expect(after == 0, "a job after a niced one ran at \(after)")
    }

    struct Boom: Error {}

    @Test func errorsReachTheCaller() async {
        let work: @Sendable () throws -> Int = { throw Boom() }
        await #expect(throws: Boom.self) { _ = try await BlockingExecutor.shared.run(work) }
    }

    /// The create path calls the executor a few times per create: a reused thread must not
    /// cost more than the fresh thread per call it replaced. Prints both (median of 200).
    @Test func costAgainstAFreshThreadPerCall() async {
        func fresh() async -> UInt {
            await withCheckedContinuation { (cont: CheckedContinuation<UInt, Never>) in
                let t = Thread { cont.resume(returning: pthread_self()) }
                t.stackSize = 1 << 20
                t.start()
            }
        }
        let executor = BlockingExecutor(maxThreads: 8, keepIdle: 2)
        var a: [Duration] = [], b: [Duration] = []
        let clock = ContinuousClock()
        for _ in 0..<200 {
            a.append(await clock.measure { _ = await fresh() })
            b.append(await clock.measure { _ = await executor.run { pthread_self() } })
        }
        let fa = a.sorted()[100], fb = b.sorted()[100]
        print("blocking executor: median \(fb) per call vs a fresh thread per call \(fa)")
        #expect(fb < .milliseconds(50))
    }
}
