import Logging
import NIOCore
import NIOPosix
import NIOSSH
import DevboxRuntime
#if canImport(Glibc)
import Glibc
#endif

/// How session channels run their processes.
struct SessionSettings: Sendable {
    var shell: String
    var sftpServer: String
    var workingDirectory: String
    /// After the process exited, output still held open by its background children is
    /// forwarded until it has been quiet this long (while the client was keeping up).
    var drainQuiet: TimeAmount = .milliseconds(300)
    /// SIGHUP on channel close, SIGKILL this much later if the process is still there.
    var killGrace: TimeAmount = .seconds(2)
}

/// What a session request may set, checked before anything reaches the box.
enum SessionRequestPolicy {
    /// `env` requests honoured: LANG, LC_*, TERM (what OpenSSH clients send by default).
    static func acceptsEnv(name: String, value: String) -> Bool {
        let nameOK = name == "LANG" || name == "TERM"
            || (name.hasPrefix("LC_") && name.count > 3
                && name.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F })
        return nameOK && value.utf8.count <= 1024 && !value.utf8.contains(0)
    }

    static func term(_ requested: String) -> String {
        let ok = !requested.isEmpty && requested.utf8.count <= 64
            && requested.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
        return ok ? requested : "xterm-256color"
    }

    static func size(rows: Int, cols: Int) -> TerminalSize {
        func clamp(_ v: Int, _ fallback: UInt16) -> UInt16 { v <= 0 ? fallback : UInt16(min(v, Int(UInt16.max))) }
        return TerminalSize(rows: clamp(rows, 24), cols: clamp(cols, 80))
    }
}

/// One SSH `session` channel: `pty-req`, `env`, then one of `exec`, `shell` or
/// `subsystem sftp`, run inside the devbox; `window-change` and `signal` while it runs.
///
/// I/O: the process's pipes (or its PTY master) become NIO pipe channels on this channel's
/// event loop, so every byte moves by readiness with no thread per stream. Back-pressure
/// both ways: a pipe's `read` is held while this SSH channel is not writable (the client's
/// window is full or the TCP socket is backed up), and this channel's `read` is held while
/// the process's stdin is not writable, which leaves the client's window unreplenished.
/// At most one SSH window (8 MiB) and one socket's watermark are ever buffered.
final class SessionChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = SSHChannelData
    typealias OutboundIn = SSHChannelData
    typealias OutboundOut = SSHChannelData

    enum Phase { case idle, starting, running, finishing, closed }
    enum Input {
        case notReady
        case open(any Channel)
        case gone
    }

    let grant: SSHGatewayGrant
    let backend: any SSHGatewayBackend
    let settings: SessionSettings
    let logger: Logger

    private var context: ChannelHandlerContext?
    private var phase = Phase.idle
    private var env: [String: String] = [:]
    private var terminal: TerminalSize?
    private var process: (any BoxProcess)?
    /// With a PTY: the master as the runtime handed it over. It stays open until the
    /// process is collected, so `resize` and `signal` never touch a recycled descriptor.
    private var masterFD: Int32 = -1
    private var isTerminal = false
    private var input = Input.notReady
    private var early: [ByteBuffer] = []
    private var inputTail: EventLoopFuture<Void>?
    private var outputTail: EventLoopFuture<Void>?
    private var inputNeedsFlush = false
    private var clientEOF = false
    private var readHeld = false
    private var outputEnds: [PipeEndHandler] = []
    private var pipes: [any Channel] = []
    private var openOutputs = 0
    private var exit: (exitCode: Int32?, signal: Int32?)?
    private var bytesSinceTick = 0
    private var quietSince: NIODeadline?

    init(grant: SSHGatewayGrant, backend: any SSHGatewayBackend, settings: SessionSettings, logger: Logger) {
        self.grant = grant
        self.backend = backend
        self.settings = settings
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    // MARK: requests

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let e as SSHChannelRequestEvent.PseudoTerminalRequest:
            let ok = phase == .idle && terminal == nil
            if ok {
                terminal = SessionRequestPolicy.size(rows: e.terminalRowHeight, cols: e.terminalCharacterWidth)
                env["TERM"] = SessionRequestPolicy.term(e.term)
            }
            reply(e.wantReply, ok)
        case let e as SSHChannelRequestEvent.EnvironmentRequest:
            let ok = phase == .idle && SessionRequestPolicy.acceptsEnv(name: e.name, value: e.value)
            if ok { env[e.name] = e.value }
            reply(e.wantReply, ok)
        case let e as SSHChannelRequestEvent.ExecRequest:
            start([settings.shell, "-c", e.command], tty: terminal, wantReply: e.wantReply)
        case let e as SSHChannelRequestEvent.ShellRequest:
            start([settings.shell, "-l"], tty: terminal, wantReply: e.wantReply)
        case let e as SSHChannelRequestEvent.SubsystemRequest:
            if e.subsystem == "sftp" {
                start([settings.sftpServer], tty: nil, wantReply: e.wantReply)
            } else {
                reply(e.wantReply, false)
            }
        case let e as SSHChannelRequestEvent.WindowChangeRequest:
            if masterFD >= 0, let process {
                try? process.resize(
                    SessionRequestPolicy.size(rows: e.terminalRowHeight, cols: e.terminalCharacterWidth))
            }
        case let e as SSHChannelRequestEvent.SignalRequest:
            if let process, exit == nil, let sig = SSHSignal.number(e.signal) { process.signal(sig) }
        case is SSHChannelRequestEvent.LocalFlowControlRequest:
            break
        case let e as ChannelEvent where e == .inputClosed:
            clientEOF = true
            closeInputIfDone()
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func reply(_ wantReply: Bool, _ ok: Bool) {
        guard wantReply, let context else { return }
        if ok {
            context.triggerUserOutboundEvent(ChannelSuccessEvent(), promise: nil)
        } else {
            context.triggerUserOutboundEvent(ChannelFailureEvent(), promise: nil)
        }
    }

    // MARK: process start

    private func start(_ argv: [String], tty: TerminalSize?, wantReply: Bool) {
        guard phase == .idle, let context else {
            reply(wantReply, false)
            return
        }
        phase = .starting
        let spec = BoxProcessSpec(argv: argv, env: env, cwd: settings.workingDirectory, tty: tty)
        let loop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: loop)
        let backend = self.backend
        let grant = self.grant
        Task {
            do {
                let p = try await backend.spawn(grant, spec)
                loop.execute { this.value.spawned(p, wantReply: wantReply) }
            } catch {
                loop.execute { this.value.spawnFailed(error, wantReply: wantReply) }
            }
        }
    }

    private func spawnFailed(_ error: any Error, wantReply: Bool) {
        logger.warning(
            "SSH session could not start its process",
            metadata: ["session": .string(grant.sessionId), "error": .string("\(error)")])
        guard phase == .starting else { return }
        phase = .finishing
        reply(wantReply, false)
        context?.close(promise: nil)
    }

    private func spawned(_ p: any BoxProcess, wantReply: Bool) {
        guard phase == .starting, let context else {
            // The channel closed while the process started: it must not outlive it.
            p.signal(SIGKILL)
            for fd in Set([p.stdin, p.stdout, p.stderr].compactMap { $0 }) { Glibc.close(fd) }
            return
        }
        phase = .running
        process = p
        reply(wantReply, true)
        let loop = context.eventLoop
        if let _ = p.stderr {
            // Pipes: three one-way channels, so a broken stdin never takes stdout with it.
            attach(.output(.stdout), input: p.stdout, output: nil)
            attach(.output(.stderr), input: p.stderr, output: nil)
            if let stdin = p.stdin { attach(.input, input: nil, output: stdin) } else { input = .gone }
        } else {
            isTerminal = true
            masterFD = p.stdout
            let a = fcntl(masterFD, F_DUPFD_CLOEXEC, 0)
            let b = a >= 0 ? fcntl(masterFD, F_DUPFD_CLOEXEC, 0) : -1
            if a >= 0 && b >= 0 {
                attach(.terminal, input: a, output: b)
            } else {
                if a >= 0 { Glibc.close(a) }
                input = .gone
                logger.error("cannot duplicate the PTY master", metadata: ["errno": "\(errno)"])
            }
        }
        let this = NIOLoopBound(self, eventLoop: loop)
        Task {
            let status = await p.wait()
            loop.execute { this.value.processExited(status) }
        }
    }

    /// Hands descriptors to NIO (it closes them when the pipe channel closes).
    private func attach(_ role: PipeEndHandler.Role, input inFD: Int32?, output outFD: Int32?) {
        guard let context else { return }
        let end = PipeEndHandler(role: role, session: self)
        if role.reads {
            openOutputs += 1
            outputEnds.append(end)
        }
        let boundEnd = NIOLoopBound(end, eventLoop: context.eventLoop)
        let bootstrap = NIOPipeBootstrap(group: context.eventLoop)
            .channelOption(.maxMessagesPerRead, value: 4)
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 65536))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(boundEnd.value) }
            }
        let future: EventLoopFuture<any Channel>
        switch (inFD, outFD) {
        case (let i?, let o?): future = bootstrap.takingOwnershipOfDescriptors(input: i, output: o)
        case (let i?, nil): future = bootstrap.takingOwnershipOfDescriptor(input: i)
        case (nil, let o?): future = bootstrap.takingOwnershipOfDescriptor(output: o)
        case (nil, nil): return
        }
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let ch):
                self.pipes.append(ch)
                if self.phase != .running { ch.close(promise: nil) }
                if role.writes, !end.ended, self.phase == .running {
                    self.input = .open(ch)
                    for b in self.early { self.writeInput(b) }
                    self.early = []
                    self.closeInputIfDone()
                    self.resumeRead()
                }
            case .failure(let error):
                for fd in Set([inFD, outFD].compactMap { $0 }) { Glibc.close(fd) }
                self.logger.error("cannot attach process I/O", metadata: ["error": .string("\(error)")])
                self.pipeEnded(end)
            }
        }
    }

    // MARK: process output -> client

    var outputWritable: Bool { context?.channel.isWritable ?? false }

    func processOutput(_ bytes: ByteBuffer, stderr: Bool) {
        guard let context, phase == .running else { return }
        bytesSinceTick += bytes.readableBytes
        let data = SSHChannelData(type: stderr ? .stdErr : .channel, data: .byteBuffer(bytes))
        let written = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(data), promise: written)
        outputTail = written.futureResult
    }

    func flushOutput() { context?.flush() }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for end in outputEnds { end.resumeRead() }
        }
        context.fireChannelWritabilityChanged()
    }

    /// A pipe channel closed: its output reached EOF (or failed), or stdin went away.
    func pipeEnded(_ end: PipeEndHandler) {
        guard !end.ended else { return }
        end.ended = true
        if end.role.reads {
            openOutputs -= 1
            outputEnds.removeAll { $0 === end }
        }
        if end.role.writes {
            input = .gone
            early = []
            resumeRead()
        }
        finishIfDone()
    }

    // MARK: client input -> process

    func read(context: ChannelHandlerContext) {
        if acceptingInput {
            context.read()
        } else {
            readHeld = true
        }
    }

    private var acceptingInput: Bool {
        switch input {
        case .notReady: return false
        case .open(let ch): return ch.isWritable
        case .gone: return true  // nobody reads it any more: drain and drop, as sshd does
        }
    }

    func resumeRead() {
        guard readHeld, acceptingInput, let context else { return }
        readHeld = false
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let d = unwrapInboundIn(data)
        guard d.type == .channel, case .byteBuffer(let bytes) = d.data else { return }
        switch input {
        case .open: writeInput(bytes)
        case .notReady: early.append(bytes)  // at most one window: no read is issued meanwhile
        case .gone: break
        }
    }

    private func writeInput(_ bytes: ByteBuffer) {
        guard case .open(let ch) = input else { return }
        let promise = ch.eventLoop.makePromise(of: Void.self)
        ch.write(bytes, promise: promise)
        inputTail = promise.futureResult
        inputNeedsFlush = true
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if inputNeedsFlush, case .open(let ch) = input {
            inputNeedsFlush = false
            ch.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Client EOF closes a pipe stdin once what it sent is written. A PTY has no separate
    /// stdin to close (like sshd, EOF is not forwarded to a terminal).
    private func closeInputIfDone() {
        guard clientEOF, !isTerminal, case .open(let ch) = input else { return }
        input = .gone
        ch.flush()
        let tail = inputTail ?? ch.eventLoop.makeSucceededVoidFuture()
        tail.whenComplete { _ in ch.close(promise: nil) }
    }

    // MARK: exit

    private func processExited(_ status: (exitCode: Int32?, signal: Int32?)) {
        exit = status
        if masterFD >= 0 {
            Glibc.close(masterFD)
            masterFD = -1
        }
        guard phase == .running else { return }
        finishIfDone()
        if phase == .running { scheduleDrainCheck() }
    }

    private func finishIfDone() {
        if phase == .running, exit != nil, openOutputs == 0 { finish() }
    }

    private func scheduleDrainCheck() {
        guard let context else { return }
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(100)) { this.value.drainCheck() }
    }

    /// Background children may keep the output open after the process exited: stop once
    /// nothing came for `drainQuiet` although the client was ready for more.
    private func drainCheck() {
        guard phase == .running else { return }
        let now = NIODeadline.now()
        if bytesSinceTick > 0 || !outputWritable {
            quietSince = nil
        } else if quietSince == nil {
            quietSince = now
        }
        bytesSinceTick = 0
        if let q = quietSince, now - q >= settings.drainQuiet {
            finish()
        } else {
            scheduleDrainCheck()
        }
    }

    /// Once the last output byte is out: exit-status (or exit-signal), EOF, close.
    /// NIOSSH's close drops writes still waiting for window space, hence the wait. EOF is
    /// skipped after the client's own EOF: swift-nio-ssh 0.15.1 rejects EOF in that state
    /// ("Sent EOF out of sequence"), and CLOSE implies it.
    private func finish() {
        guard phase == .running, let context else { return }
        phase = .finishing
        for ch in pipes { ch.close(promise: nil) }
        input = .gone
        let channel = context.channel
        let status = exit
        let sendEOF = !clientEOF
        context.flush()
        (outputTail ?? context.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in
            let sent: EventLoopFuture<Void>
            if let sig = status?.signal {
                sent = channel.triggerUserOutboundEvent(
                    SSHChannelRequestEvent.ExitSignal(
                        signalName: SSHSignal.name(sig), errorMessage: "", language: "", dumpedCore: false))
            } else {
                sent = channel.triggerUserOutboundEvent(
                    SSHChannelRequestEvent.ExitStatus(exitStatus: Int(status?.exitCode ?? 255)))
            }
            sent.whenComplete { _ in
                if sendEOF {
                    channel.close(mode: .output).whenComplete { _ in channel.close(promise: nil) }
                } else {
                    channel.close(promise: nil)
                }
            }
        }
    }

    // MARK: teardown

    func channelInactive(context: ChannelHandlerContext) {
        let wasRunning = phase == .running || phase == .finishing
        phase = .closed
        for ch in pipes { ch.close(promise: nil) }
        pipes = []
        input = .gone
        early = []
        if wasRunning, exit == nil, let p = process {
            // The client went away (or was cut off): hang up, then insist.
            p.signal(SIGHUP)
            let grace = settings.killGrace
            context.eventLoop.scheduleTask(in: .milliseconds(500)) { p.signal(SIGHUP) }
            context.eventLoop.scheduleTask(in: grace) { p.signal(SIGKILL) }
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("SSH session channel error", metadata: ["error": .string("\(error)")])
        context.close(promise: nil)
    }
}

/// The handler inside a process's pipe (or PTY) channel: passes bytes to the session and
/// holds reads while the SSH channel cannot take more.
final class PipeEndHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Stream { case stdout, stderr }
    enum Role {
        case output(Stream)
        case input
        case terminal

        var reads: Bool {
            if case .input = self { return false }
            return true
        }
        var writes: Bool {
            switch self {
            case .input, .terminal: return true
            case .output: return false
            }
        }
    }

    let role: Role
    private var session: SessionChannelHandler?
    private var context: ChannelHandlerContext?
    private var readHeld = false
    var ended = false

    init(role: Role, session: SessionChannelHandler) {
        self.role = role
        self.session = session
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .output(.stderr) = role {
            session?.processOutput(unwrapInboundIn(data), stderr: true)
        } else {
            session?.processOutput(unwrapInboundIn(data), stderr: false)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { session?.flushOutput() }

    func read(context: ChannelHandlerContext) {
        if session?.outputWritable ?? false {
            context.read()
        } else {
            readHeld = true
        }
    }

    func resumeRead() {
        guard readHeld, let context else { return }
        readHeld = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { session?.resumeRead() }
        context.fireChannelWritabilityChanged()
    }

    /// A PTY master reads EIO once the terminal's last user is gone: that is its EOF.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let s = session
        session = nil
        s?.pipeEnded(self)
        context.fireChannelInactive()
    }
}
