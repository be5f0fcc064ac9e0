import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A named OS thread of its own for a loop that lives as long as the service or a stream
/// does (the reaper, the boxes' DNS resolver, the warm pool's filler): the one way the
/// service starts such a thread. One-shot blocking work is not a loop: it is a job on
/// `BlockingExecutor.shared` (docs/ARCHITECTURE.md, "Blocking work").
///
/// The thread is a plain pthread (named as `top` and /proc show it, 15 bytes at most),
/// detached unless someone `join`s it.
public final class LoopThread: Sendable {
    /// The thread's name (`ps -L`, `/proc/<pid>/task/<tid>/comm`).
    public let name: String
    private let finished = Mutex(false)
    private let handle: Mutex<pthread_t?>

    private init(name: String) {
        self.name = name
        handle = Mutex(nil)
    }

    /// Starts `body` on a new thread named `name`, at `nice` (nil: the caller's thread's)
    /// with a stack of `stackSize` bytes. Returns once the thread exists.
    @discardableResult
    public static func start(
        name: String, nice: Int32? = nil, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void
    ) -> LoopThread {
        let thread = LoopThread(name: name)
        let niceValue = nice ?? getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        let start = Start(name: String(name.utf8.prefix(15)) ?? "devbox-loop", nice: niceValue) {
            body()
            thread.finished.withLock { $0 = true }
        }
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, max(stackSize, 64 << 10))
        var tid = pthread_t()
        let context = Unmanaged.passRetained(start).toOpaque()
        let rc = pthread_create(&tid, &attr, { raw in
            guard let raw else { return nil }
            let start = Unmanaged<Start>.fromOpaque(raw).takeRetainedValue()
            // The thread's name (what pthread_setname_np writes; not in Swift's Glibc module).
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = start.name.withCString { write(comm, $0, strlen($0)) }
                _ = close(comm)
            }
            if start.nice != getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) {
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, start.nice)
            }
            start.body()
            return nil
        }, context)
        // Out of threads: nothing the service can run without (every caller starts one at
        // start-up or per stream), and a loop silently missing would hang its users.
        precondition(rc == 0, "pthread_create(\(name)) failed: \(rc)")
        thread.handle.withLock { $0 = tid }
        return thread
    }

    /// Whether the body has returned.
    public var isFinished: Bool { finished.withLock { $0 } }

    /// Waits until the body has returned (blocking: call it off the cooperative pool, e.g.
    /// where the loop's owner stops it). Once per thread; never from the thread itself.
    public func join() {
        guard let tid = handle.withLock({ h -> pthread_t? in defer { h = nil }; return h }) else { return }
        _ = pthread_join(tid, nil)
    }

    deinit {
        // Never joined: its resources go when it ends.
        if let tid = handle.withLock({ $0 }) { _ = pthread_detach(tid) }
    }

    private final class Start: Sendable {
        let name: String
        let nice: Int32
        let body: @Sendable () -> Void
        init(name: String, nice: Int32, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.nice = nice
            self.body = body
        }
    }
}
