import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSH
import ServiceLifecycle
import Synchronization

/// Settings of the SSH gateway.
public struct SSHGatewayConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port (see `SSHGateway.port`).
    public var port: Int
    /// Holds the persistent host key `ssh_host_ed25519_key` (created once, 0600).
    public var dataDirectory: String
    /// Ports `direct-tcpip` never connects to (the service's own HTTP port, say); the
    /// gateway's own port is always refused.
    public var deniedForwardPorts: Set<Int>
    public var shell: String = "/bin/bash"
    public var sftpServer: String = "/usr/lib/openssh/sftp-server"
    public var workingDirectory: String = "/workspace"
    /// A connection that has not authenticated by then is closed.
    public var loginGraceTime: Duration = .seconds(30)
    /// How often live connections are checked against their session (expiry, revocation
    /// by another replica, devbox no longer ready).
    public var sweepInterval: Duration = .seconds(1)
    public var maxAuthAttempts: Int = 6
    /// Open channels per connection (sessions and tunnels together).
    public var maxChannelsPerConnection: Int = 64

    public init(host: String, port: Int, dataDirectory: String, deniedForwardPorts: Set<Int> = []) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.deniedForwardPorts = deniedForwardPorts
    }

    public static let hostKeyFileName = "ssh_host_ed25519_key"
}

/// The embedded SSH server: public-key logins against sessions, channels run inside
/// devboxes. A ServiceLifecycle `Service`: `run()` listens until graceful shutdown, then
/// closes the listener and every connection.
public final class SSHGateway: Service, Sendable {
    public let configuration: SSHGatewayConfiguration
    let backend: any SSHGatewayBackend
    let logger: Logger
    let group: any EventLoopGroup
    let hostKey: NIOSSHPrivateKey
    /// SHA256 fingerprint of the host key, as `ssh-keygen -l` prints it.
    public let hostKeyFingerprint: String
    let registry = ConnectionRegistry()
    private let listener = Mutex<(channel: (any Channel)?, port: Int?, stopped: Bool)>((nil, nil, false))
    private let activityNoted = Mutex<[String: ContinuousClock.Instant]>([:])

    /// Loads (or creates once) the host key; fails early if it is unusable.
    public init(
        configuration: SSHGatewayConfiguration, backend: any SSHGatewayBackend, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        self.configuration = configuration
        self.backend = backend
        self.logger = logger
        self.group = eventLoopGroup
        let path = configuration.dataDirectory + "/" + SSHGatewayConfiguration.hostKeyFileName
        let key = try HostKeyStore.loadOrCreate(path: path) { logger.warning("\($0)") }
        self.hostKey = NIOSSHPrivateKey(ed25519Key: key)
        let blob = GatewayAuthDelegate.wireForm(hostKey.publicKey)?.1 ?? []
        var b64 = Data(Array(SHA256.hash(data: blob))).base64EncodedString()
        while b64.hasSuffix("=") { b64.removeLast() }
        self.hostKeyFingerprint = "SHA256:" + b64
    }

    // MARK: public surface

    /// The port actually bound, once `run()` listens.
    public var port: Int? { listener.withLock { $0.port } }

    /// Live TCP connections (authenticated or not) and those accepted since start (metrics).
    public var connectionCounts: (open: Int, accepted: UInt64) { (registry.count, registry.accepted) }

    /// Live authenticated connections of a session.
    public func connectionCount(sessionId: String) -> Int {
        registry.connections { $0.sessionId == sessionId }.count
    }

    /// Live authenticated connections to a devbox, over all its sessions.
    public func connectionCount(devboxId: String) -> Int {
        registry.connections { $0.devboxId == devboxId }.count
    }

    /// Closes every live connection of a session now (the TCP connection goes at once,
    /// with all its channels; their processes get SIGHUP, then SIGKILL).
    public func closeConnections(sessionId: String) {
        close(registry.connections { $0.sessionId == sessionId }, reason: "session closed")
    }

    public func closeConnections(devboxId: String) {
        close(registry.connections { $0.devboxId == devboxId }, reason: "devbox stopped or gone")
    }

    private func close(_ connections: [GatewayConnection], reason: String) {
        for c in connections {
            logger.info(
                "closing SSH connection",
                metadata: ["session": .string(c.grant?.sessionId ?? "-"), "reason": .string(reason)])
            c.channel.close(promise: nil)
        }
    }

    // MARK: Service

    /// Binds the listener now, before `run()`: the serve binds its ports before anything
    /// else runs (a port already taken fails the start-up at once, with no box touched).
    /// Connections wait in the kernel's backlog until `run()` starts accepting them.
    public func listen() async throws {
        if listener.withLock({ $0.channel }) != nil { return }
        let server = try await bind()
        let stopped = listener.withLock { l -> Bool in
            l.channel = server
            l.port = server.localAddress?.port
            return l.stopped
        }
        if stopped { server.close(promise: nil) }
        logger.notice(
            "SSH gateway listening",
            metadata: [
                "address": .string(server.localAddress?.description ?? "?"),
                "host_key": .string(hostKeyFingerprint),
            ])
    }

    public func run() async throws {
        try await listen()
        guard let server = listener.withLock({ $0.channel }) else { return }
        try? await server.setOption(.autoRead, value: true).get()
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { await self.sweepLoop() }
                    try? await server.closeFuture.get()
                    tasks.cancelAll()
                }
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        await closeAll()
        logger.notice("SSH gateway stopped")
    }

    private func stop() {
        let server = listener.withLock { l -> (any Channel)? in
            l.stopped = true
            return l.channel
        }
        server?.close(promise: nil)
    }

    /// Closes every connection and waits until each is gone.
    private func closeAll() async {
        let all = registry.all
        for c in all { c.channel.close(promise: nil) }
        for c in all { try? await c.channel.closeFuture.get() }
    }

    private func bind() async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            // Bound by `listen()` before start-up has run; `run()` starts accepting.
            .serverChannelOption(.autoRead, value: false)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.initializeConnection(channel) }
            }
        return try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
    }

    // MARK: connections

    private func initializeConnection(_ channel: any Channel) throws {
        let connection = registry.open(channel)
        channel.closeFuture.whenComplete { [registry] _ in registry.remove(connection) }
        let delegate = GatewayAuthDelegate(connection: connection, backend: backend) { [logger] c, grant in
            logger.info(
                "SSH login",
                metadata: [
                    "session": .string(grant.sessionId), "devbox": .string(grant.devboxId),
                    "peer": .string(c.channel.remoteAddress?.description ?? "?"),
                ])
        }
        var server = SSHServerConfiguration(hostKeys: [hostKey], userAuthDelegate: delegate)
        server.maxAuthAttempts = configuration.maxAuthAttempts
        let handler = NIOSSHHandler(
            role: .server(server), allocator: channel.allocator,
            inboundChildChannelInitializer: { [self] child, type in
                self.initializeChild(child, type, connection)
            })
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.pipeline.syncOperations.addHandler(ConnectionGuard(logger: logger))
        let grace = TimeAmount.nanoseconds(Int64(configuration.loginGraceTime.components.seconds) * 1_000_000_000)
        channel.eventLoop.scheduleTask(in: grace) {
            if connection.grant == nil { channel.close(promise: nil) }
        }
    }

    /// Channel types: an exhaustive switch, refusing what the gateway does not offer.
    private func initializeChild(_ child: any Channel, _ type: SSHChannelType, _ connection: GatewayConnection)
        -> EventLoopFuture<Void>
    {
        guard let grant = connection.grant, connection.openChannels < configuration.maxChannelsPerConnection else {
            return child.eventLoop.makeFailedFuture(GatewayError.refused)
        }
        let opened: EventLoopFuture<Void>
        switch type {
        case .session:
            let settings = SessionSettings(
                shell: configuration.shell, sftpServer: configuration.sftpServer,
                workingDirectory: configuration.workingDirectory)
            let backend = self.backend
            let logger = self.logger
            opened = checkGrant(grant, on: child.eventLoop).flatMapThrowing {
                try child.pipeline.syncOperations.addHandler(
                    SessionChannelHandler(grant: grant, backend: backend, settings: settings, logger: logger))
            }.flatMap {
                child.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            }
        case .directTCPIP(let target):
            var denied = configuration.deniedForwardPorts
            if let p = port { denied.insert(p) }
            guard let addresses = ForwardPolicy(deniedPorts: denied).addresses(host: target.targetHost, port: target.targetPort)
            else {
                logger.info(
                    "refused direct-tcpip",
                    metadata: ["session": .string(grant.sessionId), "target": .string("\(target.targetHost):\(target.targetPort)")])
                return child.eventLoop.makeFailedFuture(GatewayError.refused)
            }
            let backend = self.backend
            let loop = child.eventLoop
            let port = target.targetPort
            opened = checkGrant(grant, on: loop).flatMap {
                // A box with a network of its own: the connection starts inside it, so the
                // tunnel reaches the box's loopback and never the host's.
                let inBox = loop.makePromise(of: Int32?.self)
                inBox.completeWithTask { try await backend.connectInBox(grant, port: port) }
                return inBox.futureResult.flatMap { fd in
                    guard let fd else { return Self.connectForward(child, addresses) }
                    return Self.joinForward(child, connectedSocket: fd)
                }
            }
        case .forwardedTCPIP:
            return child.eventLoop.makeFailedFuture(GatewayError.refused)
        }
        return opened.map {
            connection.channelOpened()
            child.closeFuture.whenComplete { _ in connection.channelClosed() }
            self.noteActivity(grant)
        }
    }

    /// New channels only while the session is still valid.
    private func checkGrant(_ grant: SSHGatewayGrant, on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard grant.expiresAt > Date() else { return loop.makeFailedFuture(GatewayError.refused) }
        let promise = loop.makePromise(of: Void.self)
        let backend = self.backend
        Task {
            if await backend.isValid(grant) { promise.succeed() } else { promise.fail(GatewayError.refused) }
        }
        return promise.futureResult
    }

    /// Joins a socket already connected (inside a box) to the SSH channel; NIO owns the fd.
    private static func joinForward(_ child: any Channel, connectedSocket fd: Int32) -> EventLoopFuture<Void> {
        let loop = child.eventLoop
        let (sshEnd, socketEnd) = RelayEnd.pair()
        let boundSocketEnd = NIOLoopBound(socketEnd, eventLoop: loop)
        let boundSSHEnd = NIOLoopBound(sshEnd, eventLoop: loop)
        return ClientBootstrap(group: loop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(boundSocketEnd.value) }
            }
            .withConnectedSocket(fd)
            .flatMap { socket in
                child.setOption(ChannelOptions.allowRemoteHalfClosure, value: true).flatMapThrowing {
                    try child.pipeline.syncOperations.addHandler(boundSSHEnd.value)
                }.flatMapErrorThrowing { error in
                    socket.close(promise: nil)
                    throw error
                }
            }
    }

    /// Connects to the first reachable address and joins it to the SSH channel.
    private static func connectForward(_ child: any Channel, _ addresses: [SocketAddress]) -> EventLoopFuture<Void> {
        let loop = child.eventLoop
        // Runs on `loop` (it is only called from that loop's callbacks).
        @Sendable func attempt(_ i: Int) -> EventLoopFuture<(NIOLoopBound<SSHRelayHandler>, any Channel)> {
            let (sshEnd, socketEnd) = RelayEnd.pair()
            let boundSocketEnd = NIOLoopBound(socketEnd, eventLoop: loop)
            let boundSSHEnd = NIOLoopBound(sshEnd, eventLoop: loop)
            return ClientBootstrap(group: loop)
                .connectTimeout(.seconds(5))
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(boundSocketEnd.value) }
                }
                .connect(to: addresses[i])
                .map { (boundSSHEnd, $0) }
                .flatMapError { error in
                    i + 1 < addresses.count ? attempt(i + 1) : loop.makeFailedFuture(error)
                }
        }
        return attempt(0).flatMap { sshEnd, socket in
            child.setOption(ChannelOptions.allowRemoteHalfClosure, value: true).flatMapThrowing {
                try child.pipeline.syncOperations.addHandler(sshEnd.value)
            }.flatMapErrorThrowing { error in
                socket.close(promise: nil)
                throw error
            }
        }
    }

    // MARK: sweep

    /// Every `sweepInterval`: close the connections of sessions that expired, were revoked
    /// or whose devbox is no longer ready (this also catches a revocation that raced a
    /// login, or one made by another replica).
    private func sweepLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: configuration.sweepInterval) } catch { return }
            await sweep()
        }
    }

    func sweep() async {
        let sessions = registry.bySession()
        guard !sessions.isEmpty else { return }
        let backend = self.backend
        await withTaskGroup(of: (String, Bool).self) { tasks in
            for (id, entry) in sessions {
                tasks.addTask {
                    let valid = entry.grant.expiresAt > Date() ? await backend.isValid(entry.grant) : false
                    return (id, valid)
                }
            }
            for await (id, valid) in tasks {
                guard let entry = sessions[id] else { continue }
                if !valid {
                    close(entry.connections, reason: "session expired or revoked")
                } else if entry.connections.contains(where: { $0.openChannels > 0 }) {
                    noteActivity(entry.grant)
                }
            }
        }
    }

    /// Tells the backend about use, at most once a minute per session.
    private func noteActivity(_ grant: SSHGatewayGrant) {
        let now = ContinuousClock.now
        let due = activityNoted.withLock { m -> Bool in
            if let last = m[grant.sessionId], now - last < .seconds(60) { return false }
            m[grant.sessionId] = now
            if m.count > 10_000 { m = m.filter { now - $0.value < .seconds(60) } }
            return true
        }
        guard due else { return }
        let backend = self.backend
        Task { await backend.noteActivity(grant) }
    }
}

enum GatewayError: Error {
    case refused
}

/// Last handler of a connection: any error ends the connection.
final class ConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = Any
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("SSH connection error", metadata: ["error": .string("\(error)")])
        context.close(promise: nil)
    }
}
