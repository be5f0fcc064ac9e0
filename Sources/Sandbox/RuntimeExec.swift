import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension CrunRuntime {
    /// The environment of a process: defaults, then the box env file, then `spec.env`.
    /// Returned as `K=V` strings for process.json (only ever put in a memfd).
    func processEnvironment(_ id: String, _ spec: BoxProcessSpec) throws -> [String] {
        try EnvFile.validate(spec.env)
        var env: [String: String] = ["PATH": defaultPath, "HOME": "/root", "HOSTNAME": id]
        env.merge(readEnvFile(id)) { $1 }
        env.merge(spec.env) { $1 }
        if spec.tty != nil && env["TERM"] == nil { env["TERM"] = "xterm-256color" }
        return env.keys.sorted().map { "\($0)=\(env[$0] ?? "")" }
    }

    func processJSON(_ id: String, _ spec: BoxProcessSpec) throws -> [UInt8] {
        guard !spec.argv.isEmpty, spec.argv.allSatisfy({ !$0.utf8.contains(0) }) else {
            throw BoxRuntimeError.invalidArgument("argv must be non-empty and free of NUL bytes")
        }
        guard spec.cwd.hasPrefix("/"), !spec.cwd.utf8.contains(0) else { throw BoxRuntimeError.invalidArgument("cwd must be absolute") }
        let env = try processEnvironment(id, spec)
        return BundleSpec.execProcess(argv: spec.argv, env: env, cwd: spec.cwd, tty: spec.tty).serialized()
    }

    /// Runs a process to completion and collects its output.
    /// - stdin: bytes fed to the process, then EOF (nil: /dev/null).
    /// - timeout: then the whole process group inside the box is SIGKILLed, `timedOut` set.
    /// - outputLimit: only the last `outputLimit` bytes of each stream are kept.
    /// - mergeStderr: stderr goes into `stdout`, in order (one pipe).
    /// - onOutput: gets every chunk as it is read (on the exec thread; keep it short).
    /// Once the process exited, output still held open by its background children is
    /// read for at most 200 ms more. Task cancellation kills the process group.
    public func exec(id: String, _ spec: BoxProcessSpec, stdin: [UInt8]?, timeout: Duration?,
                     outputLimit: Int, mergeStderr: Bool,
                     onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)? = nil) async throws -> BoxExecResult {
        try validate(id)
        guard spec.tty == nil else { throw BoxRuntimeError.invalidArgument("exec does not take a tty; use spawn") }
        let timeoutNanos = timeout.map(saturatingNanos)
        let cancel = PollCancel()
        let result = try await withTaskCancellationHandler {
            try await onDedicatedThread { [self] () throws -> ExecResult in
                let params = ExecParams(crun: crun, container: containerName(id), process: try processJSON(id, spec),
                                        stdin: stdin, timeoutNanos: timeoutNanos, outputLimit: outputLimit,
                                        mergeStderr: mergeStderr, onOutput: onOutput)
                return try runExecBlocking(params, cancel: cancel)
            }
        } onCancel: {
            cancel.fire()
        }
        switch result {
        case .finished(let outcome):
            return outcome
        case .cancelled:
            throw CancellationError()
        case .startFailed(let status, var outcome, let cancelled):
            if cancelled { throw CancellationError() }
            if await !isRunning(id: id) { throw BoxRuntimeError.notRunning(id) }
            // crun could not start it (executable not found, cwd missing, no pids left):
            // its message is in stderr; report the shell's "command not found" code.
            logger.debug("crun exec failed", metadata: ["box": .string(id), "status": "\(status)"])
            outcome.exitCode = 127
            return outcome
        }
    }

    /// Starts a process for streaming (SSH sessions, streamed exec). With `spec.tty` it
    /// runs on a PTY whose master is received from crun over a unix socket
    /// (`--console-socket`, SCM_RIGHTS). Blocks the caller for the crun start (~10-25 ms).
    public func spawn(id: String, _ spec: BoxProcessSpec) throws -> SandboxProcess {
        try validate(id)
        let process = try processJSON(id, spec)
        let memfd = process.withUnsafeBytes { dbx_memfd_with("devbox-process", $0.baseAddress, $0.count) }
        if memfd < 0 { throw sysError("memfd_create") }
        var closeOnExit: [Int32] = [memfd]
        var closeOnError: [Int32] = []
        var success = false
        defer {
            for fd in closeOnExit { closeFD(fd) }
            if !success { for fd in closeOnError { closeFD(fd) } }
        }
        var pidP: [Int32] = [-1, -1]
        guard dbx_pipe(&pidP, 1, 0) == 0 else { throw sysError("pipe") }
        closeOnExit += [pidP[0], pidP[1]]
        let errMem = dbx_memfd_with("devbox-err", nil, 0)   // crun's own errors
        if errMem < 0 { throw sysError("memfd_create") }
        closeOnExit.append(errMem)

        var argv = ["crun", "exec", "-d", "--process", "/proc/self/fd/3", "--pid-file", "/proc/self/fd/4"]
        var childFDs: [Int32]
        var listenFD: Int32 = -1
        var socketName = ""
        var runFD: Int32 = -1
        var ours: (stdin: Int32?, stdout: Int32, stderr: Int32?) = (nil, -1, nil)
        if spec.tty != nil {
            if mkdir(boxDirectory(id) + "/run", 0o700) != 0 && lastErrno() != EEXIST && lastErrno() != ENOENT {
                throw sysError("mkdir run dir")
            }
            runFD = open(boxDirectory(id) + "/run", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
            if runFD < 0 { throw lastErrno() == ENOENT ? BoxRuntimeError.notFound(id) : sysError("open run dir") }
            closeOnExit.append(runFD)
            socketName = "console-\(getpid())-\(counterNext()).sock"
            listenFD = dbx_listen_unix_at(runFD, socketName)
            if listenFD < 0 { throw sysError("console socket") }
            closeOnExit.append(listenFD)
            argv += ["--console-socket", boxDirectory(id) + "/run/" + socketName]
            childFDs = [-1, -1, errMem, memfd, pidP[1]]
        } else {
            var inP: [Int32] = [-1, -1], outP: [Int32] = [-1, -1], errP: [Int32] = [-1, -1]
            guard dbx_pipe(&inP, 0, 0) == 0 else { throw sysError("pipe") }
            closeOnExit.append(inP[0]); closeOnError.append(inP[1])
            guard dbx_pipe(&outP, 0, 0) == 0 else { throw sysError("pipe") }
            closeOnExit.append(outP[1]); closeOnError.append(outP[0])
            guard dbx_pipe(&errP, 0, 0) == 0 else { throw sysError("pipe") }
            closeOnExit.append(errP[1]); closeOnError.append(errP[0])
            ours = (inP[1], outP[0], errP[0])
            // crun's own error messages land in the process's stderr pipe.
            childFDs = [inP[0], outP[1], errP[1], memfd, pidP[1]]
        }
        defer { if runFD >= 0 && !socketName.isEmpty { _ = unlinkat(runFD, socketName, 0) } }
        argv.append(containerName(id))

        let crunPid = try spawnProgram(crun, argv, fds: childFDs)
        defer { Reaper.shared.disown(crunPid) }
        let crunFD = dbx_pidfd_open(crunPid)
        closeOnExit.append(crunFD)
        if spec.tty != nil {
            let master = dbx_recv_fd(listenFD, 30_000, crunFD)
            if master >= 0 {
                ours = (master, master, nil)
                closeOnError.append(master)
            }
        }
        var code: Int32 = 0, sig: Int32 = 0
        if dbx_wait_pid(crunPid, 0, &code, &sig) != 0 { throw sysError("waitid crun") }
        if code != 0 || sig != 0 || ours.stdout < 0 {
            _ = lseek(errMem, 0, SEEK_SET)
            var msg = String(decoding: readAll(fd: errMem, limit: 65536) ?? [], as: UTF8.self)
            if spec.tty == nil, let e = ours.stderr {
                _ = dbx_set_nonblocking(e, 1)
                msg += String(decoding: readAll(fd: e, limit: 65536) ?? [], as: UTF8.self)
            }
            let st = containerStatus(id)
            if st != "running" { throw BoxRuntimeError.notRunning(id) }
            throw BoxRuntimeError.commandFailed("crun exec", status: sig != 0 ? 128 + sig : code,
                                             message: msg.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { read(pidP[0], $0.baseAddress, $0.count) }
        guard n > 0, let pid = pid_t(String(decoding: buf[0..<n], as: UTF8.self)), pid > 1 else {
            throw BoxRuntimeError.commandFailed("crun exec", status: 0, message: "no pid reported")
        }
        let pidfd = dbx_pidfd_open(pid)
        if pidfd < 0 { throw sysError("pidfd_open") }
        let watchFD = dup(pidfd)
        let proc = SandboxProcess(pid: pid, pidfd: pidfd, processGroup: getpgid(pid), stdin: ours.stdin,
                                  stdout: ours.stdout, stderr: ours.stderr, isTTY: spec.tty != nil)
        Reaper.shared.watch(pid: pid, pidfd: watchFD) { [weak proc] fd in
            if let proc { proc.exited(pidfd: fd) } else { _ = Reaper.collect(pidfd: fd) }
        }
        success = true
        return proc
    }

}
