import CDevbox
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A process running inside a box, started by `CrunRuntime.spawn`.
///
/// File descriptors: `stdin`, `stdout`, `stderr` belong to the caller (hand them to NIO
/// or close them); this object never closes them, except `closeStdin()`. They are
/// close-on-exec and blocking. With a PTY, `stdout` is the PTY master, `stdin` is the
/// same descriptor and `stderr` is nil.
public final class SandboxProcess: BoxProcess {
    /// Host pid of the process inside the box (a child of this service: `crun exec -d`
    /// leaves it to us, the child subreaper).
    public let pid: Int32
    public let stdin: Int32?
    public let stdout: Int32
    public let stderr: Int32?
    /// Process group of the process (its session inside the box).
    let processGroup: pid_t
    let isTTY: Bool

    private struct State {
        var status: (exitCode: Int32?, signal: Int32?)? = nil
        var waiters: [CheckedContinuation<(exitCode: Int32?, signal: Int32?), Never>] = []
        var stdinClosed = false
    }
    private let state = Mutex(State())
    private let pidfd: Int32

    init(pid: Int32, pidfd: Int32, processGroup: pid_t, stdin: Int32?, stdout: Int32, stderr: Int32?, isTTY: Bool) {
        self.pid = pid
        self.pidfd = pidfd
        self.processGroup = processGroup
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.isTTY = isTTY
    }

    deinit { closeFD(pidfd) }

    /// Called by the reaper once the process exited: collects it under the lock.
    func exited(pidfd watchFD: Int32) {
        let (waiters, st) = state.withLock { s -> ([CheckedContinuation<(exitCode: Int32?, signal: Int32?), Never>], (exitCode: Int32?, signal: Int32?)) in
            let st = Reaper.collect(pidfd: watchFD)
            s.status = st
            let w = s.waiters
            s.waiters = []
            return (w, st)
        }
        for w in waiters { w.resume(returning: st) }
    }

    public var hasExited: Bool { state.withLock { $0.status != nil } }

    /// Sets the PTY window size (TIOCSWINSZ on the master); the box sees SIGWINCH.
    public func resize(_ size: TerminalSize) throws {
        guard isTTY else { throw BoxRuntimeError.invalidArgument("process has no terminal") }
        if dbx_set_winsize(stdout, size.rows, size.cols) != 0 { throw sysError("TIOCSWINSZ") }
    }

    /// Sends `sig` inside the box: with a PTY to the terminal's foreground process group
    /// (what Ctrl-C would reach), otherwise to the process's group (itself and every
    /// descendant that did not leave the group). No-op once the process was collected.
    public func signal(_ sig: Int32) {
        state.withLock { s in
            // Under the lock: the reaper cannot collect the process (and free its pid or
            // group id for reuse) while we signal.
            guard s.status == nil else { return }
            var target = processGroup
            if isTTY {
                var fg: pid_t = 0
                if ioctlForegroundGroup(stdout, &fg), fg > 1 { target = fg }
            }
            if target > 1, kill(-target, sig) == 0 { return }
            _ = dbx_pidfd_signal(pidfd, sig)
        }
    }

    /// Waits for the process to exit: (exit code, nil) or (nil, signal).
    /// Suspends without blocking a thread (the reaper thread collects the process).
    public func wait() async -> (exitCode: Int32?, signal: Int32?) {
        await withCheckedContinuation { cont in
            let done = state.withLock { s -> (exitCode: Int32?, signal: Int32?)? in
                if let st = s.status { return st }
                s.waiters.append(cont)
                return nil
            }
            if let done { cont.resume(returning: done) }
        }
    }

    /// Closes stdin (the process reads EOF). With a PTY there is no separate stdin: no-op.
    public func closeStdin() {
        guard !isTTY, let fd = stdin else { return }
        let close = state.withLock { s -> Bool in
            if s.stdinClosed { return false }
            s.stdinClosed = true
            return true
        }
        if close { closeFD(fd) }
    }
}

func ioctlForegroundGroup(_ fd: Int32, _ out: inout pid_t) -> Bool {
    out = tcgetpgrp(fd)
    return out > 0
}
