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
        let s = JobSignal()
        s.signal()
        let start = ContinuousClock.now
        await s.wait(timeout: .seconds(5))
        #expect(ContinuousClock.now - start < .seconds(1))
        async let waited: Void = s.wait(timeout: .seconds(5))
        try? await Task.sleep(for: .milliseconds(50))
        s.signal()
        await waited
        #expect(ContinuousClock.now - start < .seconds(2))
    }
}
