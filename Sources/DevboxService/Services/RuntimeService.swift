import DevboxModel
import DevboxRuntime
import Foundation
import Logging

/// What an agent does with a ready devbox: exec, files, stop/start, its exposed ports,
/// its egress policy, its usage (stats). Reaches the
/// box through the runtime seam; every use is activity (`ActivityTracker`).
public final class RuntimeService: Sendable, LoggingService {
    let db: AppDatabase
    let reads: DevboxReads
    let sandbox: any BoxRuntime
    let activity: ActivityTracker
    let gateway: GatewayBox
    /// Rebuilds a box's env file lost with a host reboot before a start.
    let credentials: CredentialBroker
    let limits: RuntimeLimits
    let auditor: Auditor
    let logger: Logger

    public init(
        database: AppDatabase, reads: DevboxReads, runtime: any BoxRuntime, activity: ActivityTracker, gateway: GatewayBox,
        credentials: CredentialBroker, limits: RuntimeLimits, auditor: Auditor, logger: Logger
    ) {
        self.db = database
        self.reads = reads
        self.sandbox = runtime
        self.activity = activity
        self.gateway = gateway
        self.credentials = credentials
        self.limits = limits
        self.auditor = auditor
        self.logger = logger
    }

    /// Largest file the files API reads or writes.
    public var fileSizeLimit: Int { limits.fileSizeLimit }

    // MARK: Exec

    /// Checks an exec request (422 naming the field) without touching the devbox.
    func validateExec(_ r: ExecRequest) throws(ServiceError) -> (argv: [String], env: [String: String], cwd: String, timeout: Int) {
        let argv = r.command.argv
        switch r.command {
        case .shell(let s):
            guard !s.isEmpty else { throw .validation(field: "command", message: "command must not be empty") }
        case .argv(let a):
            guard !a.isEmpty, !a[0].isEmpty else {
                throw .validation(field: "command", message: "command must be a non-empty string or array of strings")
            }
        }
        guard argv.allSatisfy({ !$0.utf8.contains(0) }) else {
            throw .validation(field: "command", message: "command must not contain NUL bytes")
        }
        guard argv.reduce(0, { $0 + $1.utf8.count }) <= 256 * 1024 else {
            throw .validation(field: "command", message: "command is longer than 256 KiB")
        }
        let env = Dictionary(uniqueKeysWithValues: try CreateValidation.validateEnv(r.env ?? [:]).map { ($0.key, $0.value) })
        let cwd = r.cwd ?? "/workspace"
        guard cwd.hasPrefix("/"), !cwd.utf8.contains(0), cwd.utf8.count <= 4096 else {
            throw .validation(field: "cwd", message: "cwd must be an absolute path inside the devbox")
        }
        let timeout = r.timeoutSeconds ?? limits.execDefaultTimeoutSeconds
        guard (1...limits.execMaxTimeoutSeconds).contains(timeout) else {
            throw .validation(
                field: "timeout_seconds", message: "timeout_seconds must be between 1 and \(limits.execMaxTimeoutSeconds)")
        }
        return (argv, env, cwd, timeout)
    }

    /// Refuses an exec before it starts (bad input, unknown devbox, wrong state).
    public func checkExec(_ principal: Principal, id: String, _ request: ExecRequest) async throws(ServiceError) {
        _ = try validateExec(request)
        try await reads.requireReady(principal, id: id, for: "run commands")
    }

    /// Runs a command in a ready devbox with the devbox's environment (plus `env`).
    /// `onOutput` sees the output as it comes (streaming); the result keeps the tail of
    /// each stream. Never logs the command's input, output or env values.
    func execUnaudited(
        _ principal: Principal, id: String, _ request: ExecRequest,
        onOutput: (@Sendable (ExecChunk) -> Void)? = nil
    ) async throws(ServiceError) -> ExecResult {
        let v = try validateExec(request)
        try await reads.requireReady(principal, id: id, for: "run commands")
        await activity.noteActivity(devboxId: id)
        var forward: (@Sendable (Bool, [UInt8]) -> Void)? = nil
        if let onOutput {
            forward = { (isStderr: Bool, bytes: [UInt8]) -> Void in
                onOutput(ExecChunk(stream: isStderr ? .stderr : .stdout, bytes: bytes))
            }
        }
        let stdinBytes: [UInt8]? = request.stdin.map { Array($0.utf8) }
        activity.execsRunning.begin(id)
        defer { activity.execsRunning.end(id) }
        let r: BoxExecResult
        do {
            r = try await sandbox.exec(
                box: id, argv: v.argv, env: v.env, cwd: v.cwd, stdin: stdinBytes,
                timeout: .seconds(v.timeout), outputLimit: limits.execOutputLimit, mergeStderr: false,
                onOutput: forward)
        } catch is CancellationError {
            throw .unavailable("the request was cancelled")
        } catch {
            throw await runtimeFailure(error, id: id, what: "exec")
        }
        return ExecResult(
            exitCode: r.exitCode.map(Int.init), signal: r.signal.map(Int.init),
            stdout: String(decoding: r.stdout, as: UTF8.self), stderr: String(decoding: r.stderr, as: UTF8.self),
            truncated: r.truncated, timedOut: r.timedOut, durationMs: Int(r.durationNanos / 1_000_000))
    }

    // MARK: Files

    /// A file's bytes or a directory listing.
    public func readPath(_ principal: Principal, id: String, path: String) async throws(ServiceError) -> FileContent {
        let normalized = try Self.checkPath(path, allowRoot: true)
        try await reads.requireReady(principal, id: id, for: "read files")
        await activity.noteActivity(devboxId: id)
        do {
            switch try await sandbox.readPath(box: id, path: normalized, maxBytes: limits.fileSizeLimit) {
            case .file(let bytes, let mode):
                return .file(bytes: bytes, mode: Self.octal(mode))
            case .directory(let entries, let truncated):
                let base = normalized == "/" ? "" : normalized
                return .directory(
                    FileListing(
                        path: normalized,
                        entries: entries.map {
                            FileEntry(
                                name: $0.name, path: base + "/" + $0.name, type: $0.kind.rawValue, size: $0.size,
                                mode: Self.octal($0.mode), modifiedAt: $0.modifiedAt, linkTarget: $0.linkTarget)
                        }, truncated: truncated))
            }
        } catch {
            throw await runtimeFailure(error, id: id, what: "read")
        }
    }

    /// Writes a file (parents created). Returns whether it was created.
    func writeFileUnaudited(
        _ principal: Principal, id: String, path: String, bytes: [UInt8], mode: String?
    ) async throws(ServiceError) -> FileWriteResult {
        let normalized = try Self.checkPath(path, allowRoot: false)
        var bits: UInt32? = nil
        if let mode {
            guard (1...4).contains(mode.count), mode.allSatisfy({ ("0"..."7").contains($0) }), let m = UInt32(mode, radix: 8)
            else {
                throw .validation(field: "mode", message: "mode must be octal permission bits such as 644 or 0755")
            }
            bits = m
        }
        guard bytes.count <= limits.fileSizeLimit else {
            throw .payloadTooLarge("the file is larger than the limit of \(limits.fileSizeLimit) bytes")
        }
        try await reads.requireReady(principal, id: id, for: "write files")
        await activity.noteActivity(devboxId: id)
        do {
            let created = try await sandbox.writeFile(box: id, path: normalized, bytes: bytes, mode: bits)
            return FileWriteResult(path: normalized, size: bytes.count, created: created)
        } catch {
            throw await runtimeFailure(error, id: id, what: "write")
        }
    }

    func deletePathUnaudited(_ principal: Principal, id: String, path: String, recursive: Bool) async throws(ServiceError) {
        let normalized = try Self.checkPath(path, allowRoot: false)
        try await reads.requireReady(principal, id: id, for: "delete files")
        await activity.noteActivity(devboxId: id)
        do {
            try await sandbox.deletePath(box: id, path: normalized, recursive: recursive)
        } catch BoxFileError.notEmpty {
            throw .conflict("\(normalized) is a non-empty directory; pass recursive=true to delete it with its contents")
        } catch {
            throw await runtimeFailure(error, id: id, what: "delete")
        }
    }

    /// Validates a box path (422 naming `path`) and returns it normalized.
    static func checkPath(_ path: String, allowRoot: Bool) throws(ServiceError) -> String {
        let comps: [String]
        do { comps = try BoxPath.components(path) } catch { throw .validation(field: "path", message: error.description) }
        if comps.isEmpty && !allowRoot {
            throw .validation(field: "path", message: "path must name a file below /, not the root directory")
        }
        return "/" + comps.joined(separator: "/")
    }

    static func octal(_ mode: UInt32) -> String {
        let s = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    // MARK: Stop and start

    /// ready → stopped: SSH connections close, every process ends, memory is freed; the
    /// files (upper layer, /workspace, /root, /home) and the env file stay.
    func stopDevboxUnaudited(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        let box = try await reads.devbox(principal, id: id)
        guard box.state == .ready else {
            throw .conflict("devbox \(id) is \(box.state.rawValue); only a ready devbox can be stopped")
        }
        try await stop(id, reason: "stopped by request")
        return try await reads.devbox(principal, id: id)
    }

    /// Stops a devbox (request or idle timeout). The state goes first, so no new exec,
    /// file call or SSH login starts while the sandbox stops.
    func stop(_ id: String, reason: String) async throws(ServiceError) {
        do {
            try await db.transition(id, to: .stopped)
        } catch StorageError.illegalTransition(let from, _) {
            throw .conflict("devbox \(id) is \(from.rawValue); only a ready devbox can be stopped")
        } catch {
            throw storageFailure(error)
        }
        gateway.current?.closeConnections(devboxId: id)
        do {
            try await sandbox.stop(box: id)
        } catch {
            logger.error("stopping the sandbox failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
            throw .unavailable("the devbox could not be stopped cleanly; try again")
        }
        activity.forget(id)
        logger.info("devbox stopped", metadata: ["devbox": "\(id)", "reason": "\(reason)"])
    }

    /// stopped → ready: runs the sandbox again on its kept filesystem (nothing is cloned
    /// or set up again). Returns once it is ready.
    func startDevboxUnaudited(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        let box = try await reads.devbox(principal, id: id)
        if box.state == .ready { return box }
        guard box.state == .stopped else {
            throw .conflict("devbox \(id) is \(box.state.rawValue); only a stopped devbox can be started")
        }
        await credentials.restoreEnvIfLost(id)
        do {
            try await sandbox.start(box: id)
        } catch {
            logger.error("starting the sandbox failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
            throw .unavailable("the devbox could not be started; try again")
        }
        do {
            try await db.transition(id, to: .ready) { r in r.lastActivityAt = Date() }
        } catch StorageError.illegalTransition(let from, _) {
            // A concurrent start won (ready) or a delete (destroyed): the delete already tore down.
            if from != .ready { throw .conflict("devbox \(id) is \(from.rawValue); it was not started") }
        } catch {
            throw storageFailure(error)
        }
        logger.info("devbox started", metadata: ["devbox": "\(id)"])
        return try await reads.devbox(principal, id: id)
    }

    // MARK: Helpers

    /// A runtime failure as the API reports it, matched on the seam's errors (DevboxRuntime:
    /// `BoxFileError`, `BoxRuntimeError`): the caller's mistakes as 4xx naming `path`, a box
    /// that stopped meanwhile as 409, anything else as 503 (logged).
    func runtimeFailure(_ error: any Error, id: String, what: String) async -> ServiceError {
        switch error {
        case let e as ServiceError:
            return e
        case let e as BoxFileError:
            switch e {
            case .notFound: return .notFound("no such file or directory in devbox \(id)")
            case .tooLarge: return .payloadTooLarge(e.description)
            case .noSpace: return .payloadTooLarge(e.description)
            case .mountPoint: return .conflict(e.description)
            case .system:
                logger.error("file \(what) failed", metadata: ["devbox": "\(id)", "error": "\(e)"])
                return .unavailable("the file operation failed; try again")
            default: return .validation(field: "path", message: e.description)
            }
        case BoxRuntimeError.notRunning, BoxRuntimeError.notFound:
            return .conflict("devbox \(id) is not running; check its state")
        case BoxRuntimeError.invalidArgument(let m), BoxRuntimeError.invalidEnvironment(let m):
            return .badRequest(field: nil, message: m)
        default:
            logger.error("\(what) failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
            return .unavailable("the devbox could not \(what); try again")
        }
    }

    // MARK: Audited entry points

    public func stopDevbox(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        try await auditor.audited(principal, "devbox.stop", devboxId: id) { () async throws(ServiceError) in
            try await stopDevboxUnaudited(principal, id: id)
        }
    }

    public func startDevbox(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        try await auditor.audited(principal, "devbox.start", devboxId: id) { () async throws(ServiceError) in
            try await startDevboxUnaudited(principal, id: id)
        }
    }

    /// The command, its stdin and env values are not recorded: only which fields were set
    /// and the exit code.
    public func exec(
        _ principal: Principal, id: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)? = nil
    ) async throws(ServiceError) -> ExecResult {
        var fields = ["command"]
        if request.stdin != nil { fields.append("stdin") }
        if request.env != nil { fields.append("env") }
        if request.cwd != nil { fields.append("cwd") }
        if request.timeoutSeconds != nil { fields.append("timeout_seconds") }
        return try await auditor.audited(
            principal, "devbox.exec", devboxId: id, detail: ["fields": .strings(fields)],
            okDetail: { r in
                var d: [String: AuditValue] = ["timed_out": .bool(r.timedOut)]
                if let c = r.exitCode { d["exit_code"] = .int(c) }
                if let s = r.signal { d["signal"] = .int(s) }
                return d
            }
        ) { () async throws(ServiceError) in
            try await execUnaudited(principal, id: id, request, onOutput: onOutput)
        }
    }

    public func writeFile(
        _ principal: Principal, id: String, path: String, bytes: [UInt8], mode: String?
    ) async throws(ServiceError) -> FileWriteResult {
        try await auditor.audited(
            principal, "file.write", devboxId: id, target: Auditor.auditPath(path),
            okDetail: { ["size": .int($0.size), "created": .bool($0.created)] }
        ) { () async throws(ServiceError) in
            try await writeFileUnaudited(principal, id: id, path: path, bytes: bytes, mode: mode)
        }
    }

    public func deletePath(_ principal: Principal, id: String, path: String, recursive: Bool) async throws(ServiceError) {
        try await auditor.audited(
            principal, "file.delete", devboxId: id, target: Auditor.auditPath(path), detail: ["recursive": .bool(recursive)]
        ) { () async throws(ServiceError) in
            try await deletePathUnaudited(principal, id: id, path: path, recursive: recursive)
        }
    }

    public func setNetwork(_ principal: Principal, id: String, _ n: DevboxNetwork) async throws(ServiceError) -> DevboxNetwork {
        try await auditor.audited(
            principal, "devbox.network.set", devboxId: id, detail: ["egress": .string(String(n.egress.prefix(32)))]
        ) { () async throws(ServiceError) in
            try await setNetworkUnaudited(principal, id: id, n)
        }
    }
}

/// Exec and files limits (`CoreConfiguration`).
public struct RuntimeLimits: Sendable {
    /// Bytes kept of stdout and of stderr (the tail).
    public var execOutputLimit: Int
    public var execDefaultTimeoutSeconds: Int
    public var execMaxTimeoutSeconds: Int
    /// Largest file the files API reads or writes.
    public var fileSizeLimit: Int

    public init(execOutputLimit: Int, execDefaultTimeoutSeconds: Int, execMaxTimeoutSeconds: Int, fileSizeLimit: Int) {
        self.execOutputLimit = execOutputLimit
        self.execDefaultTimeoutSeconds = execDefaultTimeoutSeconds
        self.execMaxTimeoutSeconds = execMaxTimeoutSeconds
        self.fileSizeLimit = fileSizeLimit
    }
}
