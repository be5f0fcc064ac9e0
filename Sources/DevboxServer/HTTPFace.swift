import DevboxService
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// What the HTTP face serves: the service layer, the route table the API's routes are
/// recorded in, the logger and the metrics registry. Built by the composition root
/// (`DevboxApp.buildSystem`); tests build one around an in-memory database and a fake runtime.
public struct DevboxSystem: Sendable {
    public let core: DevboxCore
    public let routes: RouteTable
    public let logger: Logger
    /// The Prometheus registry and scrape-time gauges (`Metrics/DevboxMetrics.swift`).
    public var metrics: DevboxMetrics

    public init(core: DevboxCore, logger: Logger, metrics: DevboxMetrics = DevboxMetrics()) {
        self.core = core
        self.routes = RouteTable()
        self.logger = logger
        self.metrics = metrics
    }
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
    SnapshotsController(core: system.core).register(on: api, table: system.routes)
    // Exposed ports: the API's credentials or the dashboard's cookie (checked in the controller).
    PortsController(core: system.core).register(on: router, table: system.routes)
    // The dashboard authenticates with its own session cookie (not behind AuthMiddleware).
    DashboardController(core: system.core, logger: system.logger).register(on: router, table: system.routes)
    return router
}

/// The network services of the HTTP face beside the API listener: the AI-API broker (its port
/// is recorded in the core here, before start-up offers it to boxes), the flusher of its
/// usage counts, and the `DEVBOX_METRICS_ADDR` listener when one is configured.
public func httpSideServices(
    system: DevboxSystem, broker: BrokerSettings, dataDirectory: String, metricsAddress: (host: String, port: Int)?,
    logger: Logger
) -> [any Service] {
    let broker = BrokerServer.make(core: system.core, settings: broker, dataDirectory: dataDirectory, logger: logger)
    var services: [any Service] = [broker, BrokerUsageFlusher(core: system.core)]
    if let address = metricsAddress {
        services.append(
            MetricsController.listener(
                core: system.core, metrics: system.metrics, host: address.host, port: address.port, logger: logger))
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
