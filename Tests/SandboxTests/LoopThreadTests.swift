import Foundation
import Synchronization
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The one way a long-lived loop gets a thread of its own (issue 20): named, at its nice,
/// joinable.
@Suite struct LoopThreadTests {
    @Test func namedAtItsNiceAndJoinable() async throws {
        let seen = Mutex<(name: String, nice: Int32)?>(nil)
        let gate = Atomic(false)
        let loop = LoopThread.start(name: "h20b-loop-test", nice: 7) {
            let name = readSmallFile("/proc/thread-self/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let nice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
            seen.withLock { $0 = (name, nice) }
            while !gate.load(ordering: .acquiring) { usleep(1000) }
        }
        #expect(loop.name == "h20b-loop-test")
        usleep(50_000)
        #expect(!loop.isFinished)
        gate.store(true, ordering: .releasing)
        await onDedicatedThread { loop.join() }
        #expect(loop.isFinished)
        let s = seen.withLock { $0 }
        #expect(s?.name == "h20b-loop-test")
        #expect(s?.nice == 7)
        // The caller's own nice is untouched.
        #expect(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) != 7)
    }

    @Test func longNamesAreCutToWhatTheKernelKeeps() async throws {
        let seen = Mutex<String?>(nil)
        let loop = LoopThread.start(name: "a-rather-long-loop-name") {
            seen.withLock { $0 = readSmallFile("/proc/thread-self/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        await onDedicatedThread { loop.join() }
        #expect(seen.withLock { $0 } == "a-rather-long-l")
    }
}
