import DevboxModel
import DevboxSecurity
import DevboxService
import Foundation
import Hummingbird
import Logging
import NIOCore
import Sandbox
import ServiceLifecycle

/// The parts of a running service, built once from the configuration. `devbox serve`
/// runs them; tests build them the same way with a temporary data directory.
public struct DevboxSystem: Sendable {
    public let core: DevboxCore
    public let routes: RouteTable
    public let logger: Logger
    /// The Prometheus registry and scrape-time gauges (`Metrics/DevboxMetrics.swift`).
    public var metrics = DevboxMetrics()
}

/// Builds the service layer: data dir, database, keys, sandbox runtime, core.
public func buildSystem(configuration: ServerConfiguration, logger: Logger) async throws -> DevboxSystem {
    let fm = FileManager.default
    try fm.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    // 0700 whatever the umask or whoever made it: it holds the key file and the database.
    try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: configuration.dataDirectory)
    try DataDirectoryLock.acquire(dataDirectory: configuration.dataDirectory)
    let database = try AppDatabase(path: configuration.dataDirectory + "/devbox.sqlite", cachesDevboxes: true)
    let cipher = try FernetCipher.load(environmentKeys: configuration.encryptionKeys, dataDirectory: configuration.dataDirectory)
    // The root of boxes (issue 18): the machine's image store's default image (built in the
    // background if missing), or DEVBOX_BASE_IMAGE's path, or the host's root (`host`).
    let images = configuration.core.images
    var baseImage: String?
    if case .path(let p) = images.mode { baseImage = p }
    let sandbox = try CrunSandboxDriver(
        dataDirectory: configuration.dataDirectory, baseImage: baseImage, network: configuration.network, logger: logger)
    let missingImage = BaseImage.prepareDefault(settings: images, sandbox: sandbox, logger: logger)
    try await sandbox.prepareHost()
    let verifier = try await makeUserVerifier(configuration: configuration, logger: logger)
    let metrics = DevboxMetrics()
    let core = DevboxCore(
        database: database, cipher: cipher, sandbox: sandbox, configuration: configuration.core,
        userVerifier: verifier,
        sshEndpoint: SSHEndpoint(
            host: configuration.sshPublicHost ?? configuration.sshHost, port: configuration.sshPublicPort ?? configuration.sshPort),
        sessionPolicy: try sessionPolicy(),
        logger: logger, metrics: metrics.serviceMetrics())
    if let missingImage { BaseImage.buildInBackground(name: missingImage, core: core, logger: logger) }
    return DevboxSystem(core: core, routes: RouteTable(), logger: logger, metrics: metrics)
}

/// Builds the HTTP router: health, OpenAPI, the REST API and `/mcp` behind auth, the dashboard.
public func buildRouter(system: DevboxSystem) -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self)
    // Outermost: counts the status the error middleware chose (Metrics/HTTPMetricsMiddleware.swift).
    router.add(middleware: HTTPMetricsMiddleware(metrics: system.metrics))
    router.add(middleware: RequestIdMiddleware())
    router.add(middleware: RequestLogMiddleware(logger: system.logger))
    router.add(middleware: JSONErrorMiddleware(logger: system.logger, routes: system.routes))
    HealthController(core: system.core).register(on: router)
    GitHubController(core: system.core).registerCallback(on: router, table: system.routes)
    let api = router.group().add(middleware: AuthMiddleware(core: system.core))
    DevboxesController(core: system.core).register(on: api, table: system.routes)
    CredentialsController(core: system.core).register(on: api, table: system.routes)
    RuntimeController(core: system.core).register(on: api, table: system.routes)
    UsersController(core: system.core).register(on: api, table: system.routes)
    AuditController(core: system.core).register(on: api, table: system.routes)
    SessionsController(core: system.core).register(on: api, table: system.routes)
    GitHubController(core: system.core).register(on: api, table: system.routes)
    MCPController(core: system.core, logger: system.logger).register(on: api, table: system.routes)
    MetricsController(core: system.core, metrics: system.metrics).register(on: api, table: system.routes)
    StatsController(core: system.core).register(on: api, table: system.routes)
    // Exposed ports: the API's credentials or the dashboard's cookie (checked in the controller).
    PortsController(core: system.core).register(on: router, table: system.routes)
    // The dashboard authenticates with its own session cookie (not behind AuthMiddleware).
    DashboardController(core: system.core, logger: system.logger).register(on: router, table: system.routes)
    return router
}

/// Builds the whole application: HTTP server plus the provisioning workers.
/// `onHTTPListening` runs once the HTTP listener is bound, with the host and the port it
/// really got (`--http 127.0.0.1:0` binds an ephemeral one).
public func buildApplication(
    configuration: ServerConfiguration, logger: Logger,
    onHTTPListening: (@Sendable (_ host: String, _ port: Int) async -> Void)? = nil
) async throws -> some ApplicationProtocol {
    let system = try await buildSystem(configuration: configuration, logger: logger)
    let router = buildRouter(system: system)
    let worker = ProvisioningWorker(core: system.core)
    let lifetimes = LifetimeWorker(core: system.core)
    let gateway = try buildSSHGateway(system: system, configuration: configuration, logger: logger)
    // The AI-API broker (issue 19): its port is known before start-up offers it to boxes.
    let broker = BrokerServer.make(
        core: system.core, settings: configuration.core.broker, dataDirectory: configuration.dataDirectory, logger: logger)
    // The ports are bound before anything of a box runs: SSH here, HTTP when the application
    // starts; the start-up sweep, the warm pool and the workers wait for both (`startUp`).
    // A port already taken thus ends the serve with every box as it was.
    do {
        try await gateway.listen()
    } catch {
        await system.core.releaseHostBeforeStartUp()
        throw ListenFailure(listener: "SSH", host: configuration.sshHost, port: configuration.sshPort, error: error)
    }
    return Application(
        router: router,
        // HTTP/1.1 as `.http1()`; an upgrade request's connection can be taken over by the
        // ports route (WebSocket to an app in a box, `PortUpgrade`).
        server: .http1WithPortUpgrades(),
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "devbox"),
        services: [worker, lifetimes, gateway, broker, BrokerUsageFlusher(core: system.core)] + metricsListener(system: system, configuration: configuration, logger: logger),
        onServerRunning: { channel in
            logger.notice("HTTP listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
            // Hummingbird accepts connections only once this returns: no request is served
            // before start-up has run, as before the ports were bound first.
            await system.core.startUp()
            await onHTTPListening?(configuration.httpHost, channel.localAddress?.port ?? configuration.httpPort)
        },
        logger: logger)
}

/// Runs the application until SIGTERM or SIGINT. A graceful shutdown (HTTP drained, workers
/// at a step boundary) that takes longer than `shutdownGrace` is escalated to cancellation,
/// so a serve ends within a few seconds in every state; a job cut short is resumed (or
/// failed, if its setup commands had started) by the next serve, like after a crash.
/// An HTTP port already taken is thrown as a `ListenFailure`.
public func runApplication(
    _ app: some ApplicationProtocol, configuration: ServerConfiguration, logger: Logger,
    shutdownGrace: Duration = .seconds(10)
) async throws {
    var group = ServiceGroupConfiguration(
        // Last in the list, first told of a shutdown: STOPPING=1 before the HTTP server drains.
        services: [.init(service: app), .init(service: SystemdStoppingNotifier(), successTerminationBehavior: .ignore)],
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    group.maximumGracefulShutdownDuration = shutdownGrace
    do {
        try await ServiceGroup(configuration: group).run()
    } catch let error as IOError {
        // The SSH listener is bound before the application runs, so a failed bind is HTTP's.
        // NIO names the failed call first: "bind(descriptor:ptr:bytes:): Address already in use".
        guard error.description.hasPrefix("bind") else { throw error }
        throw ListenFailure(listener: "HTTP", host: configuration.httpHost, port: configuration.httpPort, error: error)
    }
}

/// A listener that could not be bound, said in one line: which, where, why.
public struct ListenFailure: Error, CustomStringConvertible, Sendable {
    public let listener: String
    public let address: String
    public let cause: String

    init(listener: String, host: String, port: Int, error: any Error) {
        self.listener = listener
        self.address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        if let io = error as? IOError {
            cause = String(cString: strerror(io.errnoCode))
        } else {
            cause = "\(error)"
        }
    }

    public var description: String { "cannot listen on \(address) (\(listener)): \(cause)" }
}
