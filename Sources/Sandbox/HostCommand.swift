import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A helper program of the host run to completion — tar and sha256sum for `devbox image
/// import`, debootstrap for the base image — on the sandbox's spawn primitive
/// (`spawnProgram`: `dbx_spawn`, owned by the reaper), as git (`GitRunner`) and crun are:
/// one poll loop over its output pipes and its pidfd with the deadline in it, the last bytes
/// of each stream in a `TailBuffer`. No Foundation `Process`, reader thread or timer.
///
/// Blocking: call it in a job of the blocking executor (`onDedicatedThread`,
/// `BlockingExecutor.shared`) or on a CLI's own thread — never on the cooperative pool.
public enum HostCommand {
    public struct Options: Sendable {
        /// The child's environment, `NAME=value`; nil: the service's own (as a shell's child).
        public var environment: [String]?
        /// stderr into the same pipe as stdout (its tail is then `stdout`'s; `stderr` stays empty).
        public var mergeStderr = false
        /// Bytes of stdout and of stderr kept (the last ones).
        public var stdoutLimit = 1 << 20
        public var stderrLimit = 64 << 10
        /// Killed (its process group with `newSession`) when still running after this long.
        public var timeout: Duration?
        /// A session and process group of its own (a timeout then kills its helpers too);
        /// without it the child stays in the service's process group, so a terminal's ^C
        /// reaches it as it reaches the CLI.
        public var newSession = false
        /// After the child exited, how long a process it left behind may hold its output
        /// pipes before the read stops (and, with `newSession`, its group is killed).
        public var stragglerGrace: Duration = .seconds(1)

        public init(environment: [String]? = nil, mergeStderr: Bool = false, stdoutLimit: Int = 1 << 20,
                    stderrLimit: Int = 64 << 10, timeout: Duration? = nil, newSession: Bool = false) {
            self.environment = environment
            self.mergeStderr = mergeStderr
            self.stdoutLimit = stdoutLimit
            self.stderrLimit = stderrLimit
            self.timeout = timeout
            self.newSession = newSession
        }
    }

    public struct Result: Sendable {
        /// Exit code, or 128 + the signal that ended it.
        public var status: Int32
        public var stdout: TailBuffer
        public var stderr: TailBuffer
        /// Killed at `Options.timeout`.
        public var timedOut: Bool

        public var stdoutText: String { String(decoding: stdout.bytes, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr.bytes, as: UTF8.self) }
    }

    /// Runs `path` with `arguments` (argv[0] is `path`), stdin on /dev/null, and waits for
    /// it. `onLine` receives stdout's (merged: the output's) non-empty lines as they come,
    /// the last one also when it has no newline; the tails are kept either way. Throws only
    /// when it cannot be started.
    public static func run(
        _ path: String, _ arguments: [String], options: Options = Options(), onLine: ((String) -> Void)? = nil
    ) throws -> Result {
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        // Close-on-exec in the parent: a box process spawned meanwhile must not inherit a
        // write end (the read would never see end-of-file).
        guard dbx_pipe(&outPipe, 0, 0) == 0 else { throw sysError("pipe") }
        if !options.mergeStderr, dbx_pipe(&errPipe, 0, 0) != 0 {
            let e = lastErrno()
            closeFD(outPipe[0]); closeFD(outPipe[1])
            throw sysError("pipe", e)
        }
        let errWrite = options.mergeStderr ? outPipe[1] : errPipe[1]
        let env = options.environment ?? ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let pid: pid_t
        do {
            pid = try spawnProgram(path, [path] + arguments, env: env, fds: [-1, outPipe[1], errWrite],
                                   newSession: options.newSession)
        } catch {
            for fd in outPipe + errPipe { closeFD(fd) }
            throw error
        }
        defer { Reaper.shared.disown(pid) }
        // The parent's write ends must go, or the reads never see end-of-file.
        closeFD(outPipe[1])
        closeFD(errPipe[1])
        return wait(pid: pid, stdout: outPipe[0], stderr: options.mergeStderr ? -1 : errPipe[0],
                    options: options, onLine: onLine)
    }

    /// The blocking part: reads both pipes, notices the exit, enforces the deadline, stops
    /// waiting for stragglers, collects the child, closes the read ends.
    private static func wait(pid: pid_t, stdout outFD: Int32, stderr errFD: Int32, options: Options,
                             onLine: ((String) -> Void)?) -> Result {
        let pidfd = dbx_pidfd_open(pid)
        let deadline = options.timeout.map { monotonicNanos() &+ saturatingNanos($0) } ?? UInt64.max
        let grace = saturatingNanos(options.stragglerGrace)
        var out = TailBuffer(limit: options.stdoutLimit)
        var err = TailBuffer(limit: options.stderrLimit)
        var fds = [outFD, errFD]  // -1 once at end-of-file (or not there)
        var status: Int32?
        var exitedAt: UInt64 = 0
        var timedOut = false
        var killedAt: UInt64?
        var pendingLine: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        func kill() {
            if options.newSession { _ = Glibc.kill(-pid, SIGKILL) }
            _ = Glibc.kill(pid, SIGKILL)
        }
        func lines(_ bytes: ArraySlice<UInt8>) {
            guard let onLine else { return }
            pendingLine.append(contentsOf: bytes)
            var start = 0
            while let nl = pendingLine[start...].firstIndex(of: 10) {
                if nl > start { onLine(String(decoding: pendingLine[start..<nl], as: UTF8.self)) }
                start = nl + 1
            }
            if start > 0 { pendingLine.removeFirst(start) }
        }
        while fds.contains(where: { $0 >= 0 }) || status == nil {
            let now = monotonicNanos()
            if status == nil, killedAt == nil, now >= deadline {
                timedOut = true
                kill()
                killedAt = now
            }
            if status != nil, now - exitedAt > grace {
                // Exited, but something it left behind still holds a pipe: with a group of
                // its own, end the group (the child, not yet collected, keeps its id from
                // reuse); a grace later, or without a group, stop reading.
                if options.newSession, killedAt == nil {
                    kill()
                    killedAt = now
                } else if killedAt.map({ now - $0 > grace }) ?? true {
                    break
                }
            }
            var pfds: [pollfd] = []
            var owners: [Int] = []
            for (i, fd) in fds.enumerated() where fd >= 0 {
                pfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                owners.append(i)
            }
            let watchExit = status == nil && pidfd >= 0
            if watchExit { pfds.append(pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)) }
            let until = status == nil ? deadline : exitedAt &+ grace
            let waitMillis = until > now ? Int32(min((until - now) / 1_000_000 + 1, 250)) : 0
            let ready = pfds.isEmpty ? 0 : poll(&pfds, nfds_t(pfds.count), waitMillis)
            if ready < 0, lastErrno() != EINTR { break }
            if pfds.isEmpty { usleep(20_000) }
            if ready > 0 {
                for (k, i) in owners.enumerated() where pfds[k].revents != 0 {
                    let n = buf.withUnsafeMutableBytes { Glibc.read(fds[i], $0.baseAddress, $0.count) }
                    if n > 0 {
                        if i == 0 {
                            out.append(buf[0..<n])
                            lines(buf[0..<n])
                        } else {
                            err.append(buf[0..<n])
                        }
                    } else if n == 0 || lastErrno() != EINTR {
                        closeFD(fds[i])
                        fds[i] = -1
                    }
                }
            }
            if status == nil, watchExit ? (ready > 0 && pfds[pfds.count - 1].revents != 0) : true {
                var code: Int32 = 0, sig: Int32 = 0
                let r = pidfd >= 0 ? dbx_wait_pidfd(pidfd, 1, 1, &code, &sig) : dbx_wait_pid(pid, 1, &code, &sig)
                if r == 0 {
                    status = sig != 0 ? 128 + sig : code
                    exitedAt = monotonicNanos()
                } else if r < 0 {
                    status = 128 + SIGKILL  // not ours to collect (cannot happen: the reaper leaves owned pids)
                    exitedAt = monotonicNanos()
                }
            }
        }
        for fd in fds where fd >= 0 { closeFD(fd) }
        // Collect the child (its status was read above without collecting it).
        var code: Int32 = 0, sig: Int32 = 0
        if pidfd >= 0 {
            _ = dbx_wait_pidfd(pidfd, 0, 0, &code, &sig)
            closeFD(pidfd)
        } else {
            _ = dbx_wait_pid(pid, 0, &code, &sig)
        }
        if let onLine, !pendingLine.isEmpty { onLine(String(decoding: pendingLine, as: UTF8.self)) }
        out.trim()
        err.trim()
        return Result(status: status ?? 128 + SIGKILL, stdout: out, stderr: err, timedOut: timedOut)
    }
}
