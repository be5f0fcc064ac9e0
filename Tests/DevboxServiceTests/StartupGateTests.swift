import Testing

@testable import DevboxService

/// The order `devbox serve` relies on: workers wait until start-up (after the listeners are
/// bound) has run; a shutdown before start-up began means it never runs.
@Suite struct StartupGateTests {
    @Test func waitersGoWhenStartUpIsDone() async {
        let gate = StartupGate()
        async let waited = gate.wait()
        #expect(gate.begin())
        gate.open()
        #expect(await waited)
        #expect(await gate.wait())  // and anyone later
    }

    @Test func aShutdownBeforeStartUpAbandonsIt() async {
        let gate = StartupGate()
        async let waited = gate.wait()
        gate.abandonIfNotBegun()
        #expect(await waited == false)
        #expect(!gate.begin(), "start-up must not run after the workers left")
    }

    @Test func aShutdownDuringStartUpWaitsForIt() async {
        let gate = StartupGate()
        #expect(gate.begin())
        gate.abandonIfNotBegun()  // ignored: what start-up starts, the workers must release
        async let waited = gate.wait()
        gate.open()
        #expect(await waited)
    }

    @Test func aCancelledWaiterLeaves() async {
        let gate = StartupGate()
        let waiter = Task { await gate.wait() }
        waiter.cancel()
        #expect(await waiter.value == false)
    }
}
