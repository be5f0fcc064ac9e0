import CDevbox
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

/// Runs host-side git with Foundation's `Process`. `Process` waits for its own child
/// promptly (the sandbox reaper only collects children nobody waits for after 2 s), and
/// the environment is exactly the one given: nothing of the service's own environment
/// (encryption keys, HOME, credential helpers) reaches git.
enum GitRunner {
    static let executable: String = {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where access(dir + "/git", X_OK) == 0 {
            return dir + "/git"
        }
        return "/usr/bin/git"
    }()

    static var isAvailable: Bool { access(executable, X_OK) == 0 }

    static func run(
        _ arguments: [String], environment: [String: String], directory: String? = nil, timeout: Duration,
        outputLimit: Int = 256 * 1024
    ) async throws -> GitResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        // Close-on-exec in the parent: a box process spawned meanwhile by the sandbox must
        // not inherit the write end (the read would then never see end-of-file).
        var fds: [Int32] = [-1, -1]
        guard dbx_pipe(&fds, 0, 0) == 0 else { throw GitRunnerError.pipe(dbx_errno()) }
        let readEnd = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let writeEnd = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
        process.standardOutput = writeEnd
        process.standardError = writeEnd
        process.standardInput = FileHandle.nullDevice
        let handle = RunningGit(process)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<GitResult, any Error>) in
                let join = ResultJoin(cont)
                process.terminationHandler = { p in
                    let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
                    join.exited(status)
                }
                do {
                    try process.run()
                } catch {
                    try? writeEnd.close()
                    try? readEnd.close()
                    join.failed(error)
                    return
                }
                handle.started()
                // The parent's copy of the write end must go, or the read below never sees EOF.
                try? writeEnd.close()
                let reader = readEnd
                let pid = process.processIdentifier
                let readThread = Thread {
                    var tail: [UInt8] = []
                    var buf = [UInt8](repeating: 0, count: 16 * 1024)
                    let fd = reader.fileDescriptor
                    var zombieSince: ContinuousClock.Instant?
                    while true {
                        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                        let ready = poll(&p, 1, 250)
                        if ready < 0, errno == EINTR { continue }
                        if ready < 0 { break }
                        if ready == 0 {
                            if join.exitedLongerThan(.seconds(1)) { break }
                            // git has exited but a helper it left behind still holds the
                            // pipe (and Foundation's exit notification, and the zombie the
                            // sandbox reaper would collect after 2 s): end its process
                            // group. The unreaped zombie keeps the group id from reuse.
                            if Self.isZombie(pid) {
                                let since = zombieSince ?? .now
                                zombieSince = since
                                if ContinuousClock.now - since > .seconds(1) {
                                    _ = Glibc.kill(-pid, SIGKILL)
                                    zombieSince = .now + .seconds(3600)
                                }
                            }
                            continue
                        }
                        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                        if n < 0, errno == EINTR { continue }
                        if n <= 0 { break }
                        tail.append(contentsOf: buf[0..<n])
                        if tail.count > outputLimit { tail.removeFirst(tail.count - outputLimit) }
                    }
                    try? reader.close()
                    join.output(tail)
                }
                readThread.stackSize = 1 << 20
                readThread.start()
                let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
                DispatchQueue.global().asyncAfter(deadline: .now() + max(0, seconds)) {
                    _ = handle.kill { join.markTimedOut() }
                }
            }
        } onCancel: {
            _ = handle.kill()
        }
    }
}

extension GitRunner {
    /// True while `pid` has exited but nobody has collected it.
    static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].drop { $0 == " " }.first == "Z"
    }
}

enum GitRunnerError: Error, CustomStringConvertible {
    case pipe(Int32)
    var description: String {
        switch self {
        case .pipe(let e): "pipe() failed: errno \(e)"
        }
    }
}

/// The launched process, killable from a timer or a cancellation handler.
private final class RunningGit: @unchecked Sendable {
    private let process: Process
    private let lock = NSLock()
    private var launched = false

    init(_ process: Process) { self.process = process }

    func started() { lock.withLock { launched = true } }

    /// SIGKILL to git's process group (Foundation starts the child as a group leader, so
    /// this reaches git-remote-http, index-pack and any other helper) while git still
    /// runs; true when a signal was sent.
    func kill(before: () -> Void = {}) -> Bool {
        lock.withLock {
            guard launched, process.isRunning else { return false }
            before()
            let pid = process.processIdentifier
            if getpgid(pid) == pid { _ = Glibc.kill(-pid, SIGKILL) }
            return Glibc.kill(pid, SIGKILL) == 0
        }
    }
}

/// Resumes the continuation once both the exit status and the output have arrived.
private final class ResultJoin: Sendable {
    private struct State {
        var cont: CheckedContinuation<GitResult, any Error>?
        var status: Int32?
        var exitedAt: ContinuousClock.Instant?
        var output: [UInt8]?
        var timedOut = false
    }
    private let state: Mutex<State>

    init(_ cont: CheckedContinuation<GitResult, any Error>) { state = Mutex(State(cont: cont)) }

    func exited(_ status: Int32) {
        state.withLock {
            $0.status = status
            $0.exitedAt = .now
            Self.finish(&$0)
        }
    }

    func exitedLongerThan(_ d: Duration) -> Bool {
        state.withLock { s in s.exitedAt.map { ContinuousClock.now - $0 > d } ?? false }
    }
    func output(_ bytes: [UInt8]) { state.withLock { $0.output = bytes; Self.finish(&$0) } }
    func markTimedOut() { state.withLock { $0.timedOut = true } }

    func failed(_ error: any Error) {
        state.withLock { s in
            s.cont?.resume(throwing: error)
            s.cont = nil
        }
    }

    private static func finish(_ s: inout State) {
        guard let status = s.status, let output = s.output, let cont = s.cont else { return }
        s.cont = nil
        cont.resume(returning: GitResult(status: status, output: output, timedOut: s.timedOut))
    }
}
