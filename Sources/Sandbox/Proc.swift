import CDevbox
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a dedicated thread is scheduled against the rest of the service.
enum WorkPriority: Sendable {
    /// As the service (API answers, execs, file reads and writes).
    case normal
    /// Box teardown, stop and start (`crun delete`/`run`, mounts, the box network's netlink
    /// work) and the pools' refills (warm boxes, ready disks): `nice` `backgroundNice`, and
    /// so are the helper processes the thread starts. Under load the API answers first
    /// (issue 21: 20 clients creating and deleting in a loop held GET p99 at ~350 ms); on an
    /// idle machine nothing changes. A box's own processes are not affected (`runBox` gives
    /// its init nice 0).
    case background
    /// A create: `createNice` (`DEVBOX_CREATE_NICE`).
    case create
}

/// The nice value of `WorkPriority.background` threads (weight 110 against 1024 for the
/// service's own threads).
let backgroundNice: Int32 = 10

/// The nice value of creates, `DEVBOX_CREATE_NICE` (0-19; default 0). At 0 a create runs
/// as the API does and ahead of the teardown of earlier boxes and the pools' refills (all at
/// `backgroundNice`), which it would otherwise share the CPU with evenly; 10 puts creates
/// behind API answers too, for a service whose readers matter more than its create latency.
let createNice: Int32 = {
    guard let v = ProcessInfo.processInfo.environment["DEVBOX_CREATE_NICE"], let n = Int32(v), (0...19).contains(n) else {
        return 0
    }
    return n
}()

extension WorkPriority {
    /// The nice value a dedicated thread of this priority runs at.
    var nice: Int32 {
        switch self {
        case .normal: 0
        case .background: backgroundNice
        case .create: createNice
        }
    }
}

/// Sets the calling thread's nice value (Linux schedules threads, not processes: this
/// thread and what it spawns). Best effort.
func setThreadNice(_ nice: Int32) {
    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
}

/// Gives `pid` and its descendants nice 0 (the box's init, after a `crun run` started by a
/// background thread); best effort.
func resetNice(ofTree pid: pid_t) {
    var pending = [pid], seen = 0
    while let p = pending.popLast(), seen < 64 {
        seen += 1
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(p), 0)
        guard let bytes = readFileBytes("/proc/\(p)/task/\(p)/children") else { continue }
        pending += String(decoding: bytes, as: UTF8.self).split(separator: " ").compactMap { pid_t($0) }
    }
}

/// Runs `body` on a thread of the blocking executor (`BlockingExecutor.shared`: reused
/// dedicated threads, bounded, at `priority`'s nice) and suspends until it returns, so
/// blocking system calls (poll, waitid, crun) never occupy a thread of Swift's cooperative pool.
func onDedicatedThread<T: Sendable>(priority: WorkPriority = .normal, _ body: @escaping @Sendable () -> T) async -> T {
    await BlockingExecutor.shared.run(nice: priority.nice, body)
}

func onDedicatedThread<T: Sendable>(priority: WorkPriority = .normal, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await BlockingExecutor.shared.run(nice: priority.nice, body)
}

@inline(__always) func lastErrno() -> Int32 { dbx_errno() }

func sysError(_ what: String, _ e: Int32 = dbx_errno()) -> BoxRuntimeError { .system(what, errno: e) }

func closeFD(_ fd: Int32) { if fd >= 0 { _ = Glibc.close(fd) } }

/// Calls `body` with a NULL-terminated C string array.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) throws -> R) rethrows -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    ptrs.append(nil)
    defer { for p in ptrs { free(p) } }
    return try ptrs.withUnsafeBufferPointer { buf in
        // Never nil: the array holds at least the terminating nil.
        guard let base = buf.baseAddress else { preconditionFailure("empty argv buffer") }
        return try body(base)
    }
}

let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/// The environment handed to crun itself (never the box's values).
let toolEnvironment = ["PATH=\(defaultPath)", "LANG=C"]

/// Resolves a program name against PATH (or returns it if it contains a slash).
func resolveExecutable(_ name: String) -> String {
    if name.contains("/") { return name }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? defaultPath
    for dir in (path + ":" + defaultPath).split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return name
}

/// Spawns a program; `fds[i]` becomes fd i in the child (-1 = /dev/null).
/// The child is registered as owned by the reaper before anything can collect it
/// (the spawn happens under the reaper's lock): the caller waits for it and must call
/// `Reaper.shared.disown(pid)` afterwards.
func spawnProgram(_ path: String, _ argv: [String], env: [String] = toolEnvironment,
                  fds: [Int32], newSession: Bool = true, cwd: String? = nil) throws -> pid_t {
    var pid: pid_t = 0
    let rc: Int32 = Reaper.shared.spawnOwned { () -> (Int32, pid_t) in
      let rc: Int32 = withCStrings(argv) { cargv in
        withCStrings(env) { cenv in
            fds.withUnsafeBufferPointer { fdbuf in
                if let cwd {
                    return dbx_spawn(path, cargv, cenv, fdbuf.baseAddress, Int32(fds.count), newSession ? 1 : 0, cwd, &pid)
                }
                return dbx_spawn(path, cargv, cenv, fdbuf.baseAddress, Int32(fds.count), newSession ? 1 : 0, nil, &pid)
            }
        }
      }
      return (rc, pid)
    }
    if rc != 0 { throw BoxRuntimeError.system("spawn \(path)", errno: rc) }
    return pid
}

struct CommandResult: Sendable {
    var status: Int32       // exit code, or 128+signal
    var stdout: [UInt8]
    var stderr: [UInt8]
    var stderrText: String { String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a helper command (crun) to completion. Blocking: call it from a dedicated
/// thread. Output is captured in memfds, not pipes: `crun run -d` leaves the box's init
/// holding crun's stdio, so there would never be an EOF (and a closed pipe could
/// SIGPIPE the init). `extraFDs` become fds 3, 4, ... in the child.
func runCommandBlocking(_ path: String, _ argv: [String], extraFDs: [Int32] = [], stdinFD: Int32 = -1,
                        timeoutMillis: Int32 = 60_000) throws -> CommandResult {
    let outFD = dbx_memfd_with("devbox-out", nil, 0)
    if outFD < 0 { throw sysError("memfd_create") }
    defer { closeFD(outFD) }
    let errFD = dbx_memfd_with("devbox-err", nil, 0)
    if errFD < 0 { throw sysError("memfd_create") }
    defer { closeFD(errFD) }
    let pid = try spawnProgram(path, argv, fds: [stdinFD, outFD, errFD] + extraFDs)
    defer { Reaper.shared.disown(pid) }
    let pidfd = dbx_pidfd_open(pid)
    if pidfd >= 0 {
        var p = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
        var n: Int32
        repeat { n = poll(&p, 1, timeoutMillis) } while n < 0 && lastErrno() == EINTR
        if n == 0 { _ = kill(-pid, SIGKILL) }
        closeFD(pidfd)
    }
    var code: Int32 = 0, sig: Int32 = 0
    if dbx_wait_pid(pid, 0, &code, &sig) != 0 { throw sysError("waitid") }
    func contents(_ fd: Int32) -> [UInt8] {
        _ = lseek(fd, 0, SEEK_SET)
        return readAll(fd: fd, limit: 16 << 20) ?? []
    }
    return CommandResult(status: sig != 0 ? 128 + sig : code, stdout: contents(outFD), stderr: contents(errFD))
}

/// A duration in nanoseconds: negative → 0, too long → UInt64.max.
func saturatingNanos(_ d: Duration) -> UInt64 {
    let (s, a) = d.components
    let secs = UInt64(max(0, s)).multipliedReportingOverflow(by: 1_000_000_000)
    if secs.overflow { return UInt64.max }
    let sum = secs.partialValue.addingReportingOverflow(UInt64(max(0, a) / 1_000_000_000))
    return sum.overflow ? UInt64.max : sum.partialValue
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The service is a child subreaper (SANDBOX.md trap 5): `crun run -d` and `crun exec -d`
/// leave their container processes re-parented to us. The reaper collects them:
/// - watched pids (box inits, spawned processes): a pidfd each, polled on one thread;
///   their exit status goes to a callback;
/// - owned pids: waited for by the code that spawned them (left alone here);
/// - any other zombie child still a zombie two seconds after it was first seen (an
///   orphan of ours nobody waits for) is reaped, so other libraries in the process keep
///   two seconds to wait for their own children by pid. Zombies named "crun" (helper processes of `crun run`
///   and `crun exec` that exit after handing over) are ours alone and reaped at once;
///   `kick()` asks for such a sweep right away.
final class Reaper: Sendable {
    static let shared = Reaper()

    private struct Watch {
        var pidfd: Int32
        var onExit: @Sendable (Int32) -> Void
    }
    private struct State {
        var watched: [pid_t: Watch] = [:]
        var owned: [pid_t: Int] = [:]
        var zombiesSeen: [pid_t: UInt64] = [:]
        var kicked = false
    }
    private let state = Mutex(State())
    private let wakeR: Int32
    private let wakeW: Int32

    private init() {
        var p: [Int32] = [-1, -1]
        if dbx_pipe(&p, 1, 1) != 0 { p = [-1, -1] }
        wakeR = p[0]
        wakeW = p[1]
        LoopThread.start(name: "devbox-reaper") { [self] in self.loop() }
    }

    /// Runs `spawn` (returning (0, pid) on success) under the lock and owns the pid.
    func spawnOwned(_ spawn: () -> (Int32, pid_t)) -> Int32 {
        state.withLock { s in
            let (rc, pid) = spawn()
            if rc == 0 { s.owned[pid, default: 0] += 1 }
            return rc
        }
    }

    func own(_ pid: pid_t) { state.withLock { $0.owned[pid, default: 0] += 1 } }
    func disown(_ pid: pid_t) {
        state.withLock { s in
            if let n = s.owned[pid], n > 1 { s.owned[pid] = n - 1 } else { s.owned[pid] = nil }
        }
    }

    /// Calls `onExit(pidfd)` once `pid` (a child of ours) has exited; the callback collects
    /// it (`collect(pidfd:)`), so that it can do so under its own lock. The reaper closes
    /// `pidfd` (which it owns) after the callback.
    func watch(pid: pid_t, pidfd: Int32, onExit: @escaping @Sendable (Int32) -> Void) {
        state.withLock { $0.watched[pid] = Watch(pidfd: pidfd, onExit: onExit) }
        wake()
    }

    /// Collects an exited child: (exit code, nil) or (nil, signal); (nil, nil) if it was
    /// not ours to collect (the service is not its parent).
    static func collect(pidfd: Int32) -> (exitCode: Int32?, signal: Int32?) {
        var code: Int32 = 0, sig: Int32 = 0
        if dbx_wait_pidfd(pidfd, 0, 0, &code, &sig) != 0 { return (nil, nil) }
        return sig == 0 ? (code, nil) : (nil, sig)
    }

    /// Sweeps orphaned crun helpers now (called after `crun run -d` / `crun exec -d`).
    func kick() {
        state.withLock { $0.kicked = true }
        wake()
    }

    private func wake() {
        var b: UInt8 = 1
        _ = write(wakeW, &b, 1)
    }

    /// A kick sweeps at most this often: a burst of creates kicks once per crun run and
    /// exec, and each sweep reads every thread's children and their stat files.
    static let kickedSweepInterval: UInt64 = 100_000_000

    private func loop() {
        var lastSweep = monotonicNanos()
        var drain = [UInt8](repeating: 0, count: 64)
        while true {
            let entries = state.withLock { s in s.watched.map { ($0.key, $0.value.pidfd) } }
            var pfds = [pollfd(fd: wakeR, events: Int16(POLLIN), revents: 0)]
            pfds += entries.map { pollfd(fd: $0.1, events: Int16(POLLIN), revents: 0) }
            let pendingKick = state.withLock { $0.kicked }
            let sinceSweep = monotonicNanos() - lastSweep
            let timeout: Int32 = pendingKick
                ? Int32(Self.kickedSweepInterval > sinceSweep ? (Self.kickedSweepInterval - sinceSweep) / 1_000_000 + 1 : 0)
                : 1000
            let n = poll(&pfds, nfds_t(pfds.count), timeout)
            if n > 0 {
                if pfds[0].revents != 0 { _ = drain.withUnsafeMutableBytes { read(wakeR, $0.baseAddress, $0.count) } }
                for (i, entry) in entries.enumerated() where pfds[i + 1].revents != 0 {
                    let w = state.withLock { $0.watched.removeValue(forKey: entry.0) }
                    w?.onExit(entry.1)
                    closeFD(entry.1)
                }
            }
            let now = monotonicNanos()
            let due = now - lastSweep >= 1_000_000_000
                || (now - lastSweep >= Self.kickedSweepInterval && state.withLock { $0.kicked })
            if due {
                state.withLock { $0.kicked = false }
                lastSweep = now
                sweepOrphans()
            }
        }
    }

    private func sweepOrphans() {
        let zombies = zombieChildren()
        let now = monotonicNanos()
        state.withLock { s in
            var next: [pid_t: UInt64] = [:]
            for (pid, comm) in zombies where s.watched[pid] == nil && s.owned[pid] == nil {
                let first = s.zombiesSeen[pid] ?? now
                if comm == "crun" || now - first >= 2_000_000_000 {
                    var c: Int32 = 0, g: Int32 = 0
                    _ = dbx_wait_pid(pid, 1, &c, &g)
                } else {
                    next[pid] = first
                }
            }
            s.zombiesSeen = next
        }
    }

    private func zombieChildren() -> [(pid_t, String)] {
        var result: [(pid_t, String)] = []
        let me = getpid()
        guard let dir = opendir("/proc/\(me)/task") else { return [] }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let tid = Int32(name) else { continue }
            guard let text = readSmallFile("/proc/\(me)/task/\(tid)/children") else { continue }
            for p in text.split(separator: " ") {
                guard let pid = Int32(p.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
                if let stat = readSmallFile("/proc/\(pid)/stat"), let open = stat.firstIndex(of: "("),
                   let close = stat.lastIndex(of: ")") {
                    let rest = stat[stat.index(after: close)...].drop { $0 == " " }
                    if rest.first == "Z" { result.append((pid, String(stat[stat.index(after: open)..<close]))) }
                }
            }
        }
        return result
    }
}

func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    guard let bytes = readFileBytes(path, limit: limit) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

func readFileBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { closeFD(fd) }
    return readAll(fd: fd, limit: limit)
}

func readAll(fd: Int32, limit: Int) -> [UInt8]? {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 8192)
    while out.count <= limit {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if lastErrno() == EINTR { continue }; return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out.count > limit ? nil : out
}

func writeAll(fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { raw -> Int in
            guard let base = raw.baseAddress else { return 0 }
            return write(fd, base + off, bytes.count - off)
        }
        if n < 0 { if lastErrno() == EINTR { continue }; return false }
        off += n
    }
    return true
}
