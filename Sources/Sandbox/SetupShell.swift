import CDevbox
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The setup shell: how a box runs its setup commands without one `crun exec` each.
//
// A box created with `setupShell` runs `catatonit -- /bin/sh -s` instead of
// `catatonit -P`: the shell is PID 1's child and reads its commands from a pipe that
// `crun run` hands it as stdin. Two more pipes come in as fds 3 and 4 (`--preserve-fds
// 2`): 3 carries the commands' stdout and stderr (merged, in order) to the service, 4 one
// line per finished command with its exit status. The service writes, one command at a
// time (the next only after the previous status arrived, so a failed command stops the
// sequence):
//
//   run() { ( cd /workspace && unset OLDPWD && export K='V'... && exec /bin/sh -c "$1" ) \
//           </dev/null >&3 2>&3 3>&- 4>&-; echo "$?" >&4; }     (once, with the first)
//   run '<command>'
//   ...
//   exec /.devbox/init -P </dev/null >/dev/null 2>&1 3>&- 4>&-   (the end)
//
// and the shell becomes a second catatonit that pauses for the box's lifetime. Each
// command therefore runs exactly as through `crun exec`: inside every namespace and
// cgroup of the box, with the box's capabilities, seccomp filter and rlimits (inherited
// from the box's process), as root in /workspace, with the environment made of the
// defaults and the box env file (`processEnvironment`; the shell itself exports only
// PATH, from config.json), stdin /dev/null. The values are exported by the shell, never
// put on a command line (a host user can read every process's argv). What differs:
// a fork in the box instead of a crun start (~1 ms instead of ~8-12 ms), and a status
// of 128+N for a command killed by signal N (the shell's `$?`).
//
// Secrets: the env values cross the pipe once, in the function definition, and live in
// that shell's memory until it execs the pause (the same values are in the box's env
// file and in every session's environment anyway). Nothing of them is written to the
// bundle or logged. `start` after `stop` hands the shell only the last line.
//
// Consequence: the box lives as long as that pause process. Killing it from inside
// (`kill -9 -1` as root in the box) stops the box, as ending the main process of a
// container does; it can be started again.

/// The service's ends of a setup shell's pipes.
final class SetupChannel: Sendable {
    let script: Int32   // we write commands (non-blocking)
    let output: Int32   // we read the commands' output (non-blocking)
    let status: Int32   // we read one status line per command (non-blocking)
    private let defined = Atomic(false)

    init(script: Int32, output: Int32, status: Int32) {
        self.script = script
        self.output = output
        self.status = status
    }

    /// True the first time: the caller sends the function definition with its command.
    func takeDefinition() -> Bool { !defined.exchange(true, ordering: .relaxed) }

    deinit {
        closeFD(script)
        closeFD(output)
        closeFD(status)
    }
}

enum SetupShell {
    static let boxArgs = ["/.devbox/init", "--", "/bin/sh", "-s"]
    static let pauseLine = Array("exec /.devbox/init -P </dev/null >/dev/null 2>&1 3>&- 4>&-\n".utf8)
    /// File in the box directory that says the box's process is the setup shell.
    static let marker = "setup-shell"

    /// POSIX single quoting: every byte literal; a quote becomes '\''.
    static func quote(_ s: String) -> String {
        "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func definition(env: [String]) -> String {
        "run() { ( cd /workspace && unset OLDPWD && export " + env.map(assignment).joined(separator: " ")
            + " && exec /bin/sh -c \"$1\" ) </dev/null >&3 2>&3 3>&- 4>&-; echo \"$?\" >&4; }\n"
    }

    /// `K=V` → `K='V'`.
    static func assignment(_ kv: String) -> String {
        guard let eq = kv.firstIndex(of: "=") else { return kv }
        return String(kv[..<eq]) + "=" + quote(String(kv[kv.index(after: eq)...]))
    }

    /// Names the shell can export unchanged: identifiers, minus those some shells keep
    /// read-only (bash as /bin/sh). A box env with any other name uses `crun exec`.
    static func exportable(_ env: [String]) -> Bool {
        env.allSatisfy { kv in
            guard let eq = kv.firstIndex(of: "=") else { return false }
            let name = kv[..<eq]
            guard let first = name.utf8.first, !(0x30...0x39).contains(first), !readOnlyInSomeShell.contains(String(name))
            else { return false }
            return name.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "_")
            }
        }
    }
    static let readOnlyInSomeShell: Set<String> = ["BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"]

    static func runLine(_ command: String) -> String { "run " + quote(command) + "\n" }
}

/// What one setup command came to.
enum SetupStepResult: Sendable {
    case finished(BoxExecResult)
    /// The box's shell is gone (the box stopped or died).
    case shellGone(BoxExecResult)
    case cancelled
}

/// Writes `line` to the shell, then collects output until the command's status line
/// arrives (or the deadline / cancellation). Blocking: runs on a dedicated thread.
func runSetupStepBlocking(_ ch: SetupChannel, line: [UInt8], timeoutNanos: UInt64, outputLimit: Int,
                          cancel: PollCancel) -> SetupStepResult {
    let start = monotonicNanos()
    let deadline = start.addingReportingOverflow(timeoutNanos).overflow ? UInt64.max : start + timeoutNanos
    var out = TailBuffer(limit: outputLimit)
    var written = 0
    var statusBytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)

    func outcome(code: Int32?, timedOut: Bool) -> BoxExecResult {
        out.trim()
        return BoxExecResult(exitCode: code, signal: nil, stdout: out.bytes, stderr: [], truncated: out.truncated,
                           timedOut: timedOut, durationNanos: monotonicNanos() - start)
    }
    /// Reads what is in the output pipe now.
    func drain() {
        while true {
            let r = buf.withUnsafeMutableBytes { read(ch.output, $0.baseAddress, $0.count) }
            if r > 0 { out.append(buf[0..<r]) } else if r < 0 && lastErrno() == EINTR { continue } else { break }
        }
    }

    while true {
        let now = monotonicNanos()
        if now >= deadline {
            drain()
            return .finished(outcome(code: nil, timedOut: true))
        }
        var pfds = [pollfd(fd: ch.output, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: ch.status, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: cancel.readFD, events: Int16(POLLIN), revents: 0)]
        if written < line.count { pfds.append(pollfd(fd: ch.script, events: Int16(POLLOUT), revents: 0)) }
        let wait = Int32(min((deadline - now) / 1_000_000 + 1, 3_600_000))
        let n = poll(&pfds, nfds_t(pfds.count), wait)
        if n < 0 { if lastErrno() == EINTR { continue }; return .shellGone(outcome(code: nil, timedOut: false)) }
        if pfds[2].revents != 0 { return .cancelled }
        if pfds.count > 3, pfds[3].revents != 0 {
            if pfds[3].revents & Int16(POLLERR | POLLHUP) != 0 { return .shellGone(outcome(code: nil, timedOut: false)) }
            let w = line.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return write(ch.script, base + written, min(65536, line.count - written))
            }
            if w > 0 { written += w } else if w < 0 && lastErrno() != EAGAIN && lastErrno() != EINTR {
                return .shellGone(outcome(code: nil, timedOut: false))
            }
        }
        if pfds[0].revents != 0 { drain() }
        if pfds[1].revents != 0 {
            let r = buf.withUnsafeMutableBytes { read(ch.status, $0.baseAddress, 64) }
            if r > 0 {
                statusBytes += buf[0..<r]
                if statusBytes.count > 64 { return .shellGone(outcome(code: nil, timedOut: false)) }
                if let nl = statusBytes.firstIndex(of: UInt8(ascii: "\n")) {
                    // Output written before the command ended is in the pipe already.
                    drain()
                    let code = Int32(String(decoding: statusBytes[..<nl], as: UTF8.self))
                    return .finished(outcome(code: code, timedOut: false))
                }
            } else if r == 0 || (lastErrno() != EAGAIN && lastErrno() != EINTR) {
                drain()
                return .shellGone(outcome(code: nil, timedOut: false))
            }
        }
    }
}

/// Writes the last line (the shell becomes the box's pause process). Best effort: a
/// box whose shell is gone is not running anyway.
func finishSetupShellBlocking(_ ch: SetupChannel, from start: Int = 0) {
    var written = start
    let line = SetupShell.pauseLine
    let deadline = monotonicNanos() + 5_000_000_000
    while written < line.count && monotonicNanos() < deadline {
        var p = [pollfd(fd: ch.script, events: Int16(POLLOUT), revents: 0)]
        if poll(&p, 1, 1000) <= 0 { continue }
        if p[0].revents & Int16(POLLERR | POLLHUP) != 0 { return }
        let w = line.withUnsafeBytes { raw -> Int in
            guard let base = raw.baseAddress else { return 0 }
            return write(ch.script, base + written, line.count - written)
        }
        if w > 0 { written += w } else if w < 0 && lastErrno() != EAGAIN && lastErrno() != EINTR { return }
    }
}

extension CrunRuntime {
    /// Runs one setup command through the box's setup shell. Returns nil when the box has
    /// no setup shell open in this process (created without one, or by an earlier run of
    /// the service): the caller uses `exec` instead.
    public func runSetupCommand(id: String, command: String, timeout: Duration, outputLimit: Int) async throws
        -> BoxExecResult?
    {
        try validate(id)
        guard !command.utf8.contains(0) else { throw BoxRuntimeError.invalidArgument("the command contains a NUL byte") }
        guard let ch = setupChannel(id) else { return nil }
        var line = ""
        if ch.takeDefinition() {
            let env = try processEnvironment(id, BoxProcessSpec(argv: ["/bin/sh"], env: [:], cwd: "/workspace"))
            guard SetupShell.exportable(env) else {
                // Let the shell become the pause process; this box's commands go through crun.
                _ = takeSetupChannel(id)
                await onDedicatedThread { finishSetupShellBlocking(ch) }
                return nil
            }
            line = SetupShell.definition(env: env)
        }
        line += SetupShell.runLine(command)
        let bytes = Array(line.utf8)
        let timeoutNanos = saturatingNanos(timeout)
        let cancel = PollCancel()
        let result = await withTaskCancellationHandler {
            await onDedicatedThread {
                runSetupStepBlocking(ch, line: bytes, timeoutNanos: timeoutNanos, outputLimit: outputLimit, cancel: cancel)
            }
        } onCancel: {
            cancel.fire()
        }
        switch result {
        case .finished(let o):
            return o
        case .cancelled:
            throw CancellationError()
        case .shellGone:
            throw BoxRuntimeError.notRunning(id)
        }
    }

    /// Ends the setup: the shell becomes the box's pause process. No-op without a shell.
    public func finishSetup(id: String) async {
        guard let ch = takeSetupChannel(id) else { return }
        // The shell has read everything before the last status, so the pipe has room: one
        // non-blocking write almost always does it, without a thread.
        let line = SetupShell.pauseLine
        let w = line.withUnsafeBytes { write(ch.script, $0.baseAddress, $0.count) }
        if w == line.count { return }
        if w > 0 { return await onDedicatedThread { finishSetupShellBlocking(ch, from: w) } }
        await onDedicatedThread { finishSetupShellBlocking(ch) }
    }
}
