import CDevbox
import DevboxRuntime
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one git command.
struct GitResult: Sendable {
    /// Exit code, or 128 + signal.
    var status: Int32
    /// stdout and stderr interleaved; the last `outputLimit` bytes.
    var output: [UInt8]
    var timedOut: Bool

    var text: String { String(decoding: output, as: UTF8.self) }
}

/// Runs host-side git through the sandbox's spawn primitive (`dbx_spawn`: posix_spawn in a
/// session of its own, so git leads a process group that reaches git-remote-http,
/// index-pack and any other helper), waited for on the blocking executor: one poll loop
/// over the output pipe and a pidfd, with the deadline in it — no Foundation `Process`,
/// reader thread or Dispatch timer. The environment is exactly the one given: nothing of
/// the service's own environment (encryption keys, HOME, credential helpers) reaches git.
/// git's exit is read without collecting it (WNOWAIT) until the loop is done, so its
/// process group id cannot be reused while a straggler is killed; the child is then
/// collected at once (the sandbox reaper leaves children nobody waits for 2 s).
enum GitRunner {
    static let executable: String = {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where access(dir + "/git", X_OK) == 0 {
            return dir + "/git"
        }
        return "/usr/bin/git"
    }()

    static var isAvailable: Bool { access(executable, X_OK) == 0 }

    /// After git exits, how long a helper it left behind may hold the output pipe before
    /// its process group is killed.
    static let stragglerGrace: UInt64 = 1_000_000_000

    static func run(
        _ arguments: [String], environment: [String: String], directory: String? = nil, timeout: Duration,
        outputLimit: Int = 256 * 1024
    ) async throws -> GitResult {
        // Close-on-exec in the parent: a box process spawned meanwhile by the sandbox must
        // not inherit the write end (the read would then never see end-of-file).
        var fds: [Int32] = [-1, -1]
        guard dbx_pipe(&fds, 0, 0) == 0 else { throw GitRunnerError.pipe(dbx_errno()) }
        let readEnd = fds[0], writeEnd = fds[1]
        var pid: pid_t = 0
        let argv = [executable] + arguments
        let env = environment.map { "\($0.key)=\($0.value)" }
        let rc = cStrings(argv) { cargv in
            cStrings(env) { cenv in
                [Int32(-1), writeEnd, writeEnd].withUnsafeBufferPointer { io in
                    dbx_spawn(executable, cargv, cenv, io.baseAddress, 3, 1, directory, &pid)
                }
            }
        }
        // The parent's copy of the write end must go, or the read never sees end-of-file.
        _ = close(writeEnd)
        guard rc == 0 else {
            _ = close(readEnd)
            throw GitRunnerError.spawn(rc)
        }
        let child = pid
        let control = GitControl(pid: child)
        let seconds = UInt64(max(0, timeout.components.seconds))
        let deadline = monotonic() + seconds * 1_000_000_000 + UInt64(max(0, timeout.components.attoseconds) / 1_000_000_000)
        return await withTaskCancellationHandler {
            await BlockingExecutor.shared.run {
                wait(pid: child, output: readEnd, deadline: deadline, outputLimit: outputLimit, control: control)
            }
        } onCancel: {
            control.cancel()
        }
    }

    /// The blocking part: reads the output, notices the exit, enforces the deadline and a
    /// cancellation, kills stragglers, collects the child.
    private static func wait(pid: pid_t, output fd: Int32, deadline: UInt64, outputLimit: Int, control: GitControl) -> GitResult {
        let pidfd = dbx_pidfd_open(pid)
        var tail = TailBuffer(limit: outputLimit)
        var status: Int32?
        var exitedAt: UInt64 = 0
        var pipeOpen = true
        var timedOut = false
        var killedAt: UInt64?
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        func killGroup() {
            _ = kill(-pid, SIGKILL)
            _ = kill(pid, SIGKILL)
        }
        while pipeOpen || status == nil {
            let now = monotonic()
            if status == nil, killedAt == nil, now >= deadline || control.isCancelled {
                timedOut = !control.isCancelled
                killGroup()
                killedAt = now
            }
            if status != nil, pipeOpen, now - exitedAt > stragglerGrace {
                // git has exited but a helper it left behind still holds the pipe: end its
                // process group (git, not yet collected, keeps the group id from reuse).
                // Still open a grace period after the kill (a holder outside the group): done.
                if let k = killedAt {
                    if now - k > stragglerGrace { break }
                } else {
                    killGroup()
                    killedAt = now
                }
            }
            var pfds: [pollfd] = []
            if pipeOpen { pfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            let watchExit = status == nil && pidfd >= 0
            if watchExit { pfds.append(pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)) }
            let untilDeadline = deadline > now ? Int32(min((deadline - now) / 1_000_000 + 1, 250)) : 0
            let ready = pfds.isEmpty ? 0 : poll(&pfds, nfds_t(pfds.count), untilDeadline)
            if ready < 0, errno != EINTR { break }
            if pfds.isEmpty { usleep(50_000) }
            if pipeOpen, ready > 0, pfds[0].revents != 0 {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 { tail.append(buf[0..<n]) } else if n == 0 || errno != EINTR { pipeOpen = false }
            }
            if status == nil, watchExit ? (ready > 0 && pfds[pfds.count - 1].revents != 0) : true {
                var code: Int32 = 0, sig: Int32 = 0
                let r = pidfd >= 0 ? dbx_wait_pidfd(pidfd, 1, 1, &code, &sig) : dbx_wait_pid(pid, 1, &code, &sig)
                if r == 0 {
                    status = sig != 0 ? 128 + sig : code
                    exitedAt = monotonic()
                } else if r < 0 {
                    status = 128 + SIGKILL  // not ours to collect any more (cannot happen for our child)
                    exitedAt = monotonic()
                }
            }
        }
        // Collect the child (its status was read above without collecting it).
        var code: Int32 = 0, sig: Int32 = 0
        if pidfd >= 0 {
            _ = dbx_wait_pidfd(pidfd, 0, 0, &code, &sig)
            _ = close(pidfd)
        }
        _ = close(fd)
        tail.trim()
        return GitResult(status: status ?? 128 + SIGKILL, output: tail.bytes, timedOut: timedOut)
    }

    private static func monotonic() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private static func cStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        ptrs.append(nil)
        defer { for p in ptrs { free(p) } }
        return ptrs.withUnsafeBufferPointer { buf in
            // Never nil: the array holds at least the terminating nil.
            guard let base = buf.baseAddress else { preconditionFailure("empty argv buffer") }
            return body(base)
        }
    }
}

enum GitRunnerError: Error, CustomStringConvertible {
    case pipe(Int32)
    case spawn(Int32)
    var description: String {
        switch self {
        case .pipe(let e): "pipe() failed: errno \(e)"
        case .spawn(let e): "git could not be started: errno \(e)"
        }
    }
}

/// A cancellation of a running git (the wait loop kills it at its next turn, ≤ 250 ms).
private final class GitControl: Sendable {
    let pid: pid_t
    private let cancelled = Atomic(false)
    init(pid: pid_t) { self.pid = pid }
    var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
    func cancel() { cancelled.store(true, ordering: .relaxed) }
}
