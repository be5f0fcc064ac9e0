import Foundation
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The threads that answer requests go ahead of the service's box work (issue 21).
///
/// Under create/delete churn on a small machine the API's readers shared the CPU evenly with
/// what creates start (`crun`, mounts, `mkfs`, at nice 0, `DEVBOX_CREATE_NICE`), so a GET that
/// took under 1 ms in its handler waited tens of ms for a CPU. Here:
/// - NIO's event-loop threads (HTTP, SSH, the broker's connections) run at `DEVBOX_API_NICE`;
/// - the service's tasks (request handlers, the SSH gateway, the lifetime worker) run at
///   `TaskPriority.high`, which Swift's executor on Linux (libdispatch) runs on the
///   user-initiated threads at nice -2, like GRDB's database queues already are;
/// - provisioning jobs stay at `.medium` (nice 0, `ProvisioningWorker`): creates keep their
///   place against box work, teardown and pool refills stay at nice 10 (`WorkPriority`).
/// Weights: nice -2 is 1.55× nice 0 and 14× nice 10, so on an idle machine nothing changes.
enum APIPriority {
    /// `DEVBOX_API_NICE`: -20…0, default -2; 0 leaves every thread as it was.
    static func configuredNice(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int32 {
        guard let v = environment["DEVBOX_API_NICE"], let n = Int32(v), (-20...0).contains(n) else { return -2 }
        return n
    }

    /// The priority the service group runs at: `.high` (nice -2 threads) unless the nice is 0.
    static func taskPriority(nice: Int32) -> TaskPriority { nice < 0 ? .high : .medium }

    /// Sets the nice value of every thread of NIO's singleton event-loop group (the one
    /// Hummingbird, the SSH gateway and the HTTP clients use). Best effort: without
    /// CAP_SYS_NICE a negative value is refused and the threads keep theirs.
    static func applyToEventLoops(nice: Int32) async {
        guard nice != 0 else { return }
        for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
            _ = try? await loop.submit { setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice) }.get()
        }
    }
}
