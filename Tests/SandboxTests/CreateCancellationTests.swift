import Foundation
import Synchronization
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// A create whose devbox is deleted before its box is built builds nothing (issue 21): the
/// gate's `withSlot(unless:)` and `CrunRuntime.create`'s cancellation checks.
@Suite struct CreateCancellationTests {
    /// Fills `gate` with `n` holders that stay until `release` is signalled `n` times.
    private func fill(_ gate: CreateGate, _ n: Int, release: DispatchSemaphore, done: DispatchGroup) {
        for _ in 0..<n {
            done.enter()
            Thread.detachNewThread { _ = try? gate.withSlot { () throws -> Void in release.wait() }; done.leave() }
        }
        while gate.inside < n { usleep(500) }
    }

    @Test func aWaiterCancelledWhileWaitingLeavesWithoutASlot() throws {
        let gate = CreateGate(limit: 1)
        let release = DispatchSemaphore(value: 0)
        let holders = DispatchGroup()
        fill(gate, 1, release: release, done: holders)
        let cancellation = CreateCancellation()
        let outcome = Mutex<String?>(nil)
        let waiter = DispatchGroup()
        waiter.enter()
        Thread.detachNewThread {
            do {
                try gate.withSlot(unless: cancellation) { () throws -> Void in outcome.withLock { $0 = "ran" } }
            } catch is CancellationError {
                outcome.withLock { $0 = "cancelled" }
            } catch {
                outcome.withLock { $0 = "\(error)" }
            }
            waiter.leave()
        }
        while gate.waiting < 1 { usleep(500) }
        cancellation.cancel()
        // It leaves at once, while the holder still has the only slot.
        #expect(waiter.wait(timeout: .now() + 5) == .success)
        #expect(outcome.withLock { $0 } == "cancelled")
        #expect(gate.waiting == 0)
        #expect(gate.inside == 1)
        release.signal()
        holders.wait()
        // The slot count is intact: the next create enters at once and gives it back.
        #expect(gate.inside == 0)
        let ran = try gate.withSlot { true }
        #expect(ran)
        #expect(gate.inside == 0)
    }

    @Test func cancelledBeforeItsTurnRunsNothingAndGivesTheSlotBack() {
        let gate = CreateGate(limit: 2)
        let cancellation = CreateCancellation()
        cancellation.cancel()
        let ran = Mutex(false)
        #expect(throws: CancellationError.self) {
            try gate.withSlot(unless: cancellation) { () throws -> Void in ran.withLock { $0 = true } }
        }
        #expect(!ran.withLock { $0 })
        #expect(gate.inside == 0)
        // No limit: the body is skipped all the same.
        #expect(throws: CancellationError.self) {
            try CreateGate(limit: 0).withSlot(unless: cancellation) { () throws -> Void in ran.withLock { $0 = true } }
        }
        #expect(!ran.withLock { $0 })
    }

    @Test func aGrantedWaiterCancelledBeforeItRunsPassesTheSlotOn() {
        // Cancelled around the instant it is granted a slot: whichever comes first, the slot
        // goes on to the next waiter (else the gate would shrink by one, or stall).
        for _ in 0..<50 {
            let gate = CreateGate(limit: 1)
            let release = DispatchSemaphore(value: 0)
            let holders = DispatchGroup()
            fill(gate, 1, release: release, done: holders)
            let cancellation = CreateCancellation()
            let ran = Mutex(0)
            let waiters = DispatchGroup()
            waiters.enter()
            Thread.detachNewThread {
                _ = try? gate.withSlot(unless: cancellation) { () throws -> Void in ran.withLock { $0 += 1 } }
                waiters.leave()
            }
            while gate.waiting < 1 { usleep(200) }
            waiters.enter()
            Thread.detachNewThread {
                _ = try? gate.withSlot { () throws -> Void in ran.withLock { $0 += 10 } }
                waiters.leave()
            }
            while gate.waiting < 2 { usleep(200) }
            // Both orders happen across the iterations: release first or cancel first.
            release.signal()
            cancellation.cancel()
            #expect(waiters.wait(timeout: .now() + 5) == .success)
            holders.wait()
            // The second waiter always ran; the first did only when the cancel came after its
            // last check (then it was too late to stop, as for a box already being built).
            let r = ran.withLock { $0 }
            #expect(r == 10 || r == 11)
            #expect(gate.inside == 0 && gate.waiting == 0)
        }
    }

    @Test func onCancelRunsOnceAndAtOnceWhenAlreadyCancelled() {
        let c = CreateCancellation()
        let calls = Mutex(0)
        c.onCancel { calls.withLock { $0 += 1 } }
        c.cancel()
        c.cancel()
        #expect(calls.withLock { $0 } == 1)
        c.onCancel { calls.withLock { $0 += 1 } }
        #expect(calls.withLock { $0 } == 2)
        #expect(c.isCancelled)
    }

    /// The runtime end to end (root, crun): a create waiting for a slot whose task is cancelled
    /// (a DELETE of its devbox) ends at once with CancellationError and leaves nothing; the
    /// harness checks for leftover mounts, cgroups, containers and directories.
    @Test func aCreateCancelledWhileWaitingForASlotBuildsNothing() async throws {
        try await withHarness("cxl") { h in
            let gate = h.runtime.createGate
            guard gate.limit > 0 else { return }
            let release = DispatchSemaphore(value: 0)
            let holders = DispatchGroup()
            await onDedicatedThread { fill(gate, gate.limit, release: release, done: holders) }
            let create = Task { try await h.create("c1") }
            while gate.waiting < 1 { try await Task.sleep(for: .milliseconds(1)) }
            let started = ContinuousClock.now
            create.cancel()
            await #expect(throws: CancellationError.self) { try await create.value }
            // The slots are freed only below, so a cancellation that did not reach the gate
            // would hang here; the bound only turns such a hang into a failure (a full run
            // can keep a task waiting seconds for a cooperative thread).
            #expect(ContinuousClock.now - started < .seconds(30))
            #expect(access(h.runtime.boxDirectory("c1"), F_OK) != 0)
            #expect(gate.waiting == 0)
            await onDedicatedThread {
                for _ in 0..<gate.limit { release.signal() }
                holders.wait()
            }
            #expect(gate.inside == 0)
            // The id is free: a create of it now builds the box.
            try await h.create("c1")
            #expect(await h.runtime.isRunning(id: "c1"))
            try await h.runtime.destroy(id: "c1")
        }
    }
}
