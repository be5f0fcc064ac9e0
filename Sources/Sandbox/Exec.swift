import CDevbox
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A one-shot wake-up for a poll loop (task cancellation).
final class PollCancel: Sendable {
    let readFD: Int32
    private let writeFD: Int32
    init() {
        var p: [Int32] = [-1, -1]
        if dbx_pipe(&p, 1, 1) != 0 { p = [-1, -1] }
        readFD = p[0]
        writeFD = p[1]
    }
    func fire() {
        var b: UInt8 = 1
        _ = write(writeFD, &b, 1)
    }
    deinit {
        closeFD(readFD)
        closeFD(writeFD)
    }
}

struct ExecParams: Sendable {
    var crun: String
    var container: String
    var process: [UInt8]
    var stdin: [UInt8]?
    var timeoutNanos: UInt64?
    var outputLimit: Int
    var mergeStderr: Bool
    /// Called on the exec thread with every chunk read (`true`: from stderr), as it comes.
    var onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)? = nil
}

enum ExecResult: Sendable {
    case finished(BoxExecResult)
    /// crun could not start the process (container gone, executable missing...).
    case startFailed(status: Int32, output: BoxExecResult, cancelled: Bool)
    case cancelled
}

/// Output drain after the process exited while background processes still hold its
/// stdout/stderr open: we stop waiting for EOF after this long.
let exitDrainNanos: UInt64 = 200_000_000

/// Runs `crun exec -d` and collects the process's output. Blocking (dedicated thread).
///
/// `crun exec -d` forks the process inside the box (in a new session whose group holds
/// every descendant that does not call setsid) and exits; the process is re-parented
/// to us (child subreaper), so we wait for it directly and get its real status (exit
/// code or signal). Its host pid arrives through `--pid-file /proc/self/fd/4` (a pipe);
/// the process description (argv, env) through `--process /proc/self/fd/3` (a memfd).
func runExecBlocking(_ p: ExecParams, cancel: PollCancel) throws -> ExecResult {
    let start = monotonicNanos()
    var fdsToClose: [Int32] = []
    defer { for fd in fdsToClose { closeFD(fd) } }

    let memfd = p.process.withUnsafeBytes { dbx_memfd_with("devbox-process", $0.baseAddress, $0.count) }
    if memfd < 0 { throw sysError("memfd_create") }
    var pidP: [Int32] = [-1, -1], outP: [Int32] = [-1, -1], errP: [Int32] = [-1, -1], inP: [Int32] = [-1, -1]
    guard dbx_pipe(&pidP, 1, 0) == 0 else { closeFD(memfd); throw sysError("pipe") }
    fdsToClose += [pidP[0]]
    guard dbx_pipe(&outP, 1, 0) == 0 else { closeFD(memfd); closeFD(pidP[1]); throw sysError("pipe") }
    fdsToClose += [outP[0]]
    var childEnds = [memfd, pidP[1], outP[1]]
    defer { for fd in childEnds { closeFD(fd) } }
    if !p.mergeStderr {
        guard dbx_pipe(&errP, 1, 0) == 0 else { throw sysError("pipe") }
        fdsToClose.append(errP[0]); childEnds.append(errP[1])
    }
    if p.stdin != nil {
        guard dbx_pipe(&inP, 0, 1) == 0 else { throw sysError("pipe") }
        childEnds.append(inP[0])
    }

    let argv = ["crun", "exec", "-d", "--process", "/proc/self/fd/3", "--pid-file", "/proc/self/fd/4", p.container]
    let crunPid = try spawnProgram(p.crun, argv, fds: [inP[0], outP[1], p.mergeStderr ? outP[1] : errP[1], memfd, pidP[1]])
    defer { Reaper.shared.disown(crunPid) }
    for fd in childEnds { closeFD(fd) }
    childEnds = []
    var stdinFD = inP[1]
    defer { closeFD(stdinFD) }
    let crunFD = dbx_pidfd_open(crunPid)
    if crunFD < 0 { throw sysError("pidfd_open crun") }
    fdsToClose.append(crunFD)

    var out = TailBuffer(limit: p.outputLimit), err = TailBuffer(limit: p.outputLimit)
    var openOutputs: [Int32] = p.mergeStderr ? [outP[0]] : [outP[0], errP[0]]
    let stdinBytes = p.stdin ?? []
    var stdinOffset = 0
    var crunStatus: Int32? = nil
    var boxPid: pid_t = 0, boxFD: Int32 = -1, pgid: pid_t = 0
    var exitCode: Int32? = nil, exitSignal: Int32? = nil, exitedAt: UInt64? = nil
    var timedOut = false, cancelled = false
    let deadline = p.timeoutNanos.map { t in start.addingReportingOverflow(t).overflow ? UInt64.max : start + t }
    var buf = [UInt8](repeating: 0, count: 65536)

    func killAll() {
        if pgid > 1 { _ = kill(-pgid, SIGKILL) } else if boxPid > 0 { _ = kill(boxPid, SIGKILL) }
        if crunStatus == nil { _ = kill(-crunPid, SIGKILL) }
    }
    defer {
        if boxPid > 0 {
            var c: Int32 = 0, s: Int32 = 0
            if exitedAt == nil { killAll() }
            _ = dbx_wait_pidfd(boxFD, 0, 0, &c, &s)
            closeFD(boxFD)
            Reaper.shared.disown(boxPid)
        }
    }

    while true {
        let now = monotonicNanos()
        // Done?
        if let exitedAt, openOutputs.isEmpty || now >= exitedAt + exitDrainNanos { break }
        if let deadline, now >= deadline, exitedAt == nil, !timedOut {
            timedOut = true
            killAll()
        }
        var waitMillis: Int32 = -1
        if let exitedAt { waitMillis = Int32((exitedAt + exitDrainNanos - now) / 1_000_000) + 1 }
        else if let deadline, !timedOut { waitMillis = Int32(min(deadline - now, 3_600_000_000_000) / 1_000_000) + 1 }
        else if timedOut || cancelled { waitMillis = 100 }

        var pfds: [pollfd] = openOutputs.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let stdinIndex = stdinFD >= 0 ? pfds.count : -1
        if stdinFD >= 0 { pfds.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0)) }
        let crunIndex = crunStatus == nil ? pfds.count : -1
        if crunStatus == nil { pfds.append(pollfd(fd: crunFD, events: Int16(POLLIN), revents: 0)) }
        let boxIndex = boxFD >= 0 && exitedAt == nil ? pfds.count : -1
        if boxIndex >= 0 { pfds.append(pollfd(fd: boxFD, events: Int16(POLLIN), revents: 0)) }
        let cancelIndex = cancelled ? -1 : pfds.count
        if !cancelled { pfds.append(pollfd(fd: cancel.readFD, events: Int16(POLLIN), revents: 0)) }

        let n = poll(&pfds, nfds_t(pfds.count), waitMillis)
        if n < 0 { if lastErrno() == EINTR { continue }; throw sysError("poll") }

        for (i, fd) in openOutputs.enumerated() where pfds[i].revents != 0 {
            let r = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if r > 0 {
                if fd == outP[0] { out.append(buf[0..<r]) } else { err.append(buf[0..<r]) }
                p.onOutput?(fd != outP[0], Array(buf[0..<r]))
            } else if r == 0 || (lastErrno() != EAGAIN && lastErrno() != EINTR) {
                openOutputs.removeAll { $0 == fd }
            }
        }
        if stdinIndex >= 0, pfds[stdinIndex].revents != 0 {
            if stdinOffset < stdinBytes.count {
                let w = stdinBytes.withUnsafeBytes { raw -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    return write(stdinFD, base + stdinOffset, min(65536, stdinBytes.count - stdinOffset))
                }
                if w > 0 { stdinOffset += w } else if w < 0 && lastErrno() != EAGAIN && lastErrno() != EINTR { stdinOffset = stdinBytes.count }
            }
            if stdinOffset >= stdinBytes.count { closeFD(stdinFD); stdinFD = -1 }
        }
        if crunIndex >= 0, pfds[crunIndex].revents != 0 {
            var c: Int32 = 0, s: Int32 = 0
            if dbx_wait_pidfd(crunFD, 1, 0, &c, &s) == 0 {
                crunStatus = s != 0 ? 128 + s : c
                if crunStatus == 0 {
                    var pidBuf = [UInt8](repeating: 0, count: 32)
                    let r = pidBuf.withUnsafeMutableBytes { read(pidP[0], $0.baseAddress, $0.count) }
                    if r > 0, let pid = pid_t(String(decoding: pidBuf[0..<r], as: UTF8.self)), pid > 1 {
                        Reaper.shared.own(pid)
                        boxPid = pid
                        boxFD = dbx_pidfd_open(pid)
                        pgid = getpgid(pid)
                        if boxFD < 0 {
                            // Already reaped elsewhere (should not happen): report unknown status.
                            exitedAt = monotonicNanos(); boxPid = 0
                            Reaper.shared.disown(pid)
                        } else if timedOut || cancelled {
                            killAll()
                        }
                    } else {
                        crunStatus = -1
                    }
                } else {
                    // crun failed or was killed (timeout/cancel): if it had already started
                    // the process, kill that process's group as well.
                    var pidBuf = [UInt8](repeating: 0, count: 32)
                    let r = pidBuf.withUnsafeMutableBytes { read(pidP[0], $0.baseAddress, $0.count) }
                    if r > 0, let pid = pid_t(String(decoding: pidBuf[0..<r], as: UTF8.self)), pid > 1 {
                        let g = getpgid(pid)
                        _ = g > 1 ? kill(-g, SIGKILL) : kill(pid, SIGKILL)
                    }
                }
                if crunStatus != 0 { exitedAt = monotonicNanos(); Reaper.shared.kick() }
            }
        }
        if boxIndex >= 0, pfds[boxIndex].revents != 0 {
            var c: Int32 = 0, s: Int32 = 0
            // WNOWAIT: keep the zombie (and so its process group id) until we are done.
            if dbx_wait_pidfd(boxFD, 1, 1, &c, &s) == 0 {
                exitCode = s == 0 ? c : nil
                exitSignal = s == 0 ? nil : s
                exitedAt = monotonicNanos()
            }
        }
        if cancelIndex >= 0, pfds[cancelIndex].revents != 0 {
            cancelled = true
            killAll()
        }
    }
    if cancelled && !timedOut { return .cancelled }
    out.trim(); err.trim()
    let outcome = BoxExecResult(exitCode: exitCode, signal: exitSignal, stdout: out.bytes, stderr: err.bytes,
                              truncated: out.truncated || err.truncated, timedOut: timedOut,
                              durationNanos: monotonicNanos() - start)
    if let crunStatus, crunStatus != 0, !timedOut {
        return .startFailed(status: crunStatus, output: outcome, cancelled: cancelled)
    }
    return .finished(outcome)
}
