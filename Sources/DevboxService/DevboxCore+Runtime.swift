import DevboxModel
import Foundation
import DevboxRuntime

/// Exec, files and stop/start: what an agent does with a ready devbox.
extension DevboxCore {
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
        let timeout = r.timeoutSeconds ?? configuration.execDefaultTimeoutSeconds
        guard (1...configuration.execMaxTimeoutSeconds).contains(timeout) else {
            throw .validation(
                field: "timeout_seconds", message: "timeout_seconds must be between 1 and \(configuration.execMaxTimeoutSeconds)")
        }
        return (argv, env, cwd, timeout)
    }

    /// Refuses an exec before it starts (bad input, unknown devbox, wrong state).
    public func checkExec(_ principal: Principal, id: String, _ request: ExecRequest) async throws(ServiceError) {
        _ = try validateExec(request)
        try await requireReady(principal, id: id, for: "run commands")
    }

    /// Largest file the files API reads or writes.
    public var fileSizeLimit: Int { configuration.fileSizeLimit }

    /// Runs a command in a ready devbox with the devbox's environment (plus `env`).
    /// `onOutput` sees the output as it comes (streaming); the result keeps the tail of
    /// each stream. Never logs the command's input, output or env values.
    func execUnaudited(
        _ principal: Principal, id: String, _ request: ExecRequest,
        onOutput: (@Sendable (ExecChunk) -> Void)? = nil
    ) async throws(ServiceError) -> ExecResult {
        let v = try validateExec(request)
        try await requireReady(principal, id: id, for: "run commands")
        await noteActivity(devboxId: id)
        var forward: (@Sendable (Bool, [UInt8]) -> Void)? = nil
        if let onOutput {
            forward = { (isStderr: Bool, bytes: [UInt8]) -> Void in
                onOutput(ExecChunk(stream: isStderr ? .stderr : .stdout, bytes: bytes))
            }
        }
        let stdinBytes: [UInt8]? = request.stdin.map { Array($0.utf8) }
        execsRunning.begin(id)
        defer { execsRunning.end(id) }
        let r: BoxExecResult
        do {
            r = try await sandbox.exec(
                box: id, argv: v.argv, env: v.env, cwd: v.cwd, stdin: stdinBytes,
                timeout: .seconds(v.timeout), outputLimit: configuration.execOutputLimit, mergeStderr: false,
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
        try await requireReady(principal, id: id, for: "read files")
        await noteActivity(devboxId: id)
        do {
            switch try await sandbox.readPath(box: id, path: normalized, maxBytes: configuration.fileSizeLimit) {
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
        guard bytes.count <= configuration.fileSizeLimit else {
            throw .payloadTooLarge("the file is larger than the limit of \(configuration.fileSizeLimit) bytes")
        }
        try await requireReady(principal, id: id, for: "write files")
        await noteActivity(devboxId: id)
        do {
            let created = try await sandbox.writeFile(box: id, path: normalized, bytes: bytes, mode: bits)
            return FileWriteResult(path: normalized, size: bytes.count, created: created)
        } catch {
            throw await runtimeFailure(error, id: id, what: "write")
        }
    }

    func deletePathUnaudited(_ principal: Principal, id: String, path: String, recursive: Bool) async throws(ServiceError) {
        let normalized = try Self.checkPath(path, allowRoot: false)
        try await requireReady(principal, id: id, for: "delete files")
        await noteActivity(devboxId: id)
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
        let box = try await devbox(principal, id: id)
        guard box.state == .ready else {
            throw .conflict("devbox \(id) is \(box.state.rawValue); only a ready devbox can be stopped")
        }
        try await stop(id, reason: "stopped by request")
        return try await devbox(principal, id: id)
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
        activityWritten.forget(id)
        logger.info("devbox stopped", metadata: ["devbox": "\(id)", "reason": "\(reason)"])
    }

    /// stopped → ready: runs the sandbox again on its kept filesystem (nothing is cloned
    /// or set up again). Returns once it is ready.
    func startDevboxUnaudited(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        let box = try await devbox(principal, id: id)
        if box.state == .ready { return box }
        guard box.state == .stopped else {
            throw .conflict("devbox \(id) is \(box.state.rawValue); only a stopped devbox can be started")
        }
        await restoreEnvIfLost(id)
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
        return try await devbox(principal, id: id)
    }

    // MARK: Activity

    /// Records use of a devbox (exec, files, SSH). At most one write per
    /// `activityWriteInterval` per devbox; a failed write is only logged.
    public func noteActivity(devboxId: String) async {
        let now = Date()
        guard activityWritten.shouldWrite(devboxId, now: now, interval: configuration.lifetimes.activityWriteInterval) else {
            return
        }
        do { try await db.touchActivity(devboxId: devboxId) } catch {
            logger.warning("recording activity failed", metadata: ["devbox": "\(devboxId)", "error": "\(error)"])
        }
    }

    // MARK: Helpers

    func requireReady(_ principal: Principal, id: String, for what: String) async throws(ServiceError) {
        let box = try await devbox(principal, id: id)
        switch box.state {
        case .ready: return
        case .stopped:
            throw .conflict("devbox \(id) is stopped; start it (POST /api/v1/devboxes/\(id)/start) to \(what)")
        default:
            throw .conflict("devbox \(id) is \(box.state.rawValue); only a ready devbox can \(what)")
        }
    }

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
}
