import Testing

@testable import DevboxService

@Suite("Job signal")
struct JobSignalTests {
    @Test("an idle wait really waits: a timed-out wait leaves nothing pending")
    func idleWaitDoesNotSpin() async {
        let s = JobSignal()
        await s.wait(timeout: .milliseconds(20))
        let start = ContinuousClock.now
        await s.wait(timeout: .milliseconds(200))
        #expect(ContinuousClock.now - start >= .milliseconds(150))
    }

    @Test("a signal before the wait is not lost; a signal wakes a waiter at once")
    func signalWakes() async {
        // Timeouts are long (30 s) and bounds loose (10 s): a loaded CI machine may be slow to
        // schedule, but only a lost signal makes a wait last its whole timeout.
        let s = JobSignal()
        s.signal()
        var start = ContinuousClock.now
        await s.wait(timeout: .seconds(30))
        #expect(ContinuousClock.now - start < .seconds(10))
        start = ContinuousClock.now
        async let waited: Void = s.wait(timeout: .seconds(30))
        try? await Task.sleep(for: .milliseconds(50))
        s.signal()
        await waited
        #expect(ContinuousClock.now - start < .seconds(10))
    }
}
