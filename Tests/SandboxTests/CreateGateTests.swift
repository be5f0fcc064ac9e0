import Foundation
import Synchronization
import Testing
@testable import Sandbox

/// The admission gate of cold box starts (Sources/Sandbox/CreateGate.swift).
@Suite struct CreateGateTests {
    /// Runs `count` threads through a gate of `limit`; each holds its slot `holdMicros`, and
    /// until `fillTo` were inside at once (at most 10 s): the peak is then reached however
    /// late the threads start on a loaded machine, and a gate that let more in shows it.
    /// Answers the most that were inside at once and the order they entered in.
    private func drive(limit: Int, count: Int, holdMicros: UInt32, fillTo: Int, failEvery: Int = 0) -> (peak: Int, order: [Int]) {
        let gate = CreateGate(limit: limit)
        let inside = Mutex((now: 0, peak: 0, order: [Int]()))
        let group = DispatchGroup()
        for k in 0..<count {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                _ = try? gate.withSlot { () throws -> Void in
                    inside.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now); $0.order.append(k) }
                    let deadline = ContinuousClock.now + .seconds(10)
                    while inside.withLock({ $0.peak }) < fillTo && ContinuousClock.now < deadline { usleep(200) }
                    usleep(holdMicros)
                    inside.withLock { $0.now -= 1 }
                    if failEvery > 0, k % failEvery == 0 { throw CocoaError(.featureUnsupported) }
                }
            }
            usleep(2000)  // arrival order k = 0, 1, 2, …
        }
        group.wait()
        let s = inside.withLock { $0 }
        return (s.peak, s.order)
    }

    @Test func admitsAtMostTheLimitInArrivalOrder() {
        let r = drive(limit: 3, count: 12, holdMicros: 20_000, fillTo: 3)
        #expect(r.peak == 3)
        #expect(r.order.count == 12)
    }

    @Test func waitersEnterInArrivalOrder() {
        // A holder keeps the gate (limit 1) full; waiters queue one by one (each is seen
        // waiting before the next starts); then the holder leaves and the waiters must enter
        // in order (with a limit of one, entering is running: no race between two bodies).
        let gate = CreateGate(limit: 1)
        let release = DispatchSemaphore(value: 0)
        let order = Mutex([Int]())
        let group = DispatchGroup()
        for _ in 0..<1 {
            group.enter()
            Thread.detachNewThread { _ = try? gate.withSlot { () throws -> Void in release.wait() }; group.leave() }
        }
        while gate.inside < 1 { usleep(500) }
        for k in 0..<8 {
            group.enter()
            Thread.detachNewThread { _ = try? gate.withSlot { () throws -> Void in order.withLock { $0.append(k) } }; group.leave() }
            while gate.waiting < k + 1 { usleep(500) }
        }
        release.signal()
        group.wait()
        #expect(order.withLock { $0 } == Array(0..<8))
    }

    @Test func aThrowingBodyGivesItsSlotBack() {
        // Every other body throws: if a throw kept its slot, the gate would stall (the test hangs).
        let r = drive(limit: 2, count: 10, holdMicros: 5_000, fillTo: 2, failEvery: 2)
        #expect(r.peak == 2)
        #expect(r.order.count == 10)
    }

    @Test func zeroMeansNoLimit() {
        let r = drive(limit: 0, count: 8, holdMicros: 50_000, fillTo: 8)
        #expect(r.peak == 8)
    }

    @Test func theLimitComesFromTheEnvironment() {
        #expect(CreateGate.configuredLimit(["DEVBOX_CREATE_CONCURRENCY": "3"]) == 3)
        #expect(CreateGate.configuredLimit(["DEVBOX_CREATE_CONCURRENCY": "0"]) == 0)
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        #expect(CreateGate.configuredLimit([:]) == max(2, 2 * cpus))
        #expect(CreateGate.configuredLimit(["DEVBOX_CREATE_CONCURRENCY": "many"]) == max(2, 2 * cpus))
    }
}
