import DevboxService
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// What the HTTP face serves: the services, the route table the API's routes are recorded
/// in, the logger and the metrics registry. Built by the composition root
/// (`DevboxApp.buildSystem`); tests build one around an in-memory database and a fake runtime.
public struct DevboxSystem: Sendable {
    /// The composition root's bag: each controller, listener and worker below takes only
    /// the services it uses from it.
    public let services: DevboxServices
    public let routes: RouteTable
    public let logger: Logger
    /// The Prometheus registry and scrape-time gauges (`Metrics/DevboxMetrics.swift`).
    public var metrics: DevboxMetrics

    public init(services: DevboxServices, logger: Logger, metrics: DevboxMetrics = DevboxMetrics()) {
        self.services = services
        self.routes = RouteTable()
        self.logger = logger
        self.metrics = metrics
    }
}

/// Builds the HTTP router: health, OpenAPI, the REST API and `/mcp` behind auth, the dashboard.
/// Each controller holds the services it calls, nothing more.
public func buildRouter(system: DevboxSystem) -> Router<AppRequestContext> {
    let s = system.services
    let table = system.routes
    let router = Router(context: AppRequestContext.self)
    // Outermost: counts the status the error middleware chose (Metrics/HTTPMetricsMiddleware.swift).
    router.add(middleware: HTTPMetricsMiddleware(metrics: system.metrics))
    router.add(middleware: RequestIdMiddleware())
    router.add(middleware: RequestLogMiddleware(logger: system.logger))
    router.add(middleware: JSONErrorMiddleware(logger: system.logger, routes: table))
    HealthController(images: s.images).register(on: router)
    GitHubController(github: s.github).registerCallback(on: router, table: table)
    let api = router.group().add(middleware: AuthMiddleware(authenticator: s.authenticator))
    DevboxesController(reads: s.reads, commands: s.commands, runtime: s.runtime).register(on: api, table: table)
    CredentialsController(credentials: s.credentials).register(on: api, table: table)
    RuntimeController(runtime: s.runtime).register(on: api, table: table)
    UsersController(reads: s.reads, access: s.access).register(on: api, table: table)
    AuditController(auditor: s.auditor).register(on: api, table: table)
    SessionsController(access: s.access).register(on: api, table: table)
    GitHubController(github: s.github).register(on: api, table: table)
    MCPController(
        services: ToolServices(
            reads: s.reads, commands: s.commands, runtime: s.runtime, access: s.access, github: s.github,
            snapshots: s.snapshots),
        publicURL: s.github.publicURL, metrics: s.metrics, logger: system.logger
    ).register(on: api, table: table)
    MetricsController(gauges: s.gauges, metrics: system.metrics).register(on: api, table: table)
    StatsController(runtime: s.runtime).register(on: api, table: table)
    SnapshotsController(commands: s.commands, snapshots: s.snapshots).register(on: api, table: table)
    // Exposed ports: the API's credentials or the dashboard's cookie (checked in the controller).
    PortsController(
        authenticator: s.authenticator, reads: s.reads, runtime: s.runtime, dashboard: s.dashboard,
        publicURL: s.github.publicURL
    ).register(on: router, table: table)
    // The dashboard authenticates with its own session cookie (not behind AuthMiddleware).
    DashboardController(
        dashboard: s.dashboard, reads: s.reads, commands: s.commands, runtime: s.runtime, access: s.access,
        github: s.github, credentials: s.credentials, snapshots: s.snapshots, logger: system.logger
    ).register(on: router, table: table)
    return router
}

/// The network services of the HTTP face beside the API listener: the AI-API broker (its port
/// is recorded in the broker's state here, before start-up offers it to boxes), the flusher
/// of its usage counts, and the `DEVBOX_METRICS_ADDR` listener when one is configured.
public func httpSideServices(
    system: DevboxSystem, broker: BrokerSettings, dataDirectory: String, metricsAddress: (host: String, port: Int)?,
    logger: Logger
) -> [any Service] {
    let s = system.services
    let brokerApp = BrokerServer.make(
        credentials: s.credentials, gitBroker: s.gitBroker, metrics: s.metrics, settings: broker,
        dataDirectory: dataDirectory, logger: logger)
    var services: [any Service] = [brokerApp, s.brokerUsage]
    if let address = metricsAddress {
        services.append(
            MetricsController.listener(
                gauges: s.gauges, metrics: system.metrics, host: address.host, port: address.port, logger: logger))
    }
    return services
}

/// The Hummingbird application of the API listener: the router over HTTP/1.1, where the ports
/// route can take over an upgrade request's connection (WebSocket to an app in a box,
/// `PortUpgrade`), running `services` beside it. `onServerRunning` runs once the listener is
/// bound; connections are accepted only once it returns.
public func buildHTTPApplication(
    router: Router<AppRequestContext>, host: String, port: Int, services: [any Service],
    onServerRunning: @escaping @Sendable (any Channel) async -> Void, logger: Logger
) -> some ApplicationProtocol {
    Application(
        router: router,
        server: .http1WithPortUpgrades(),
        configuration: .init(address: .hostname(host, port: port), serverName: "devbox"),
        services: services,
        onServerRunning: onServerRunning,
        logger: logger)
}
