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
                let readThread = Thread {
                    var tail: [UInt8] = []
                    var buf = [UInt8](repeating: 0, count: 16 * 1024)
                    let fd = reader.fileDescriptor
                    while true {
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
                    if handle.kill() { join.markTimedOut() }
                }
            }
        } onCancel: {
            _ = handle.kill()
        }
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

    /// SIGKILL while it still runs; true when a signal was sent.
    func kill() -> Bool {
        lock.withLock {
            guard launched, process.isRunning else { return false }
            return Glibc.kill(process.processIdentifier, SIGKILL) == 0
        }
    }
}

/// Resumes the continuation once both the exit status and the output have arrived.
private final class ResultJoin: Sendable {
    private struct State {
        var cont: CheckedContinuation<GitResult, any Error>?
        var status: Int32?
        var output: [UInt8]?
        var timedOut = false
    }
    private let state: Mutex<State>

    init(_ cont: CheckedContinuation<GitResult, any Error>) { state = Mutex(State(cont: cont)) }

    func exited(_ status: Int32) { state.withLock { $0.status = status; Self.finish(&$0) } }
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
