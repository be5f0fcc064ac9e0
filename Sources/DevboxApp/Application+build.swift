import DevboxModel
import DevboxSecurity
import DevboxServer
import DevboxService
import Foundation
import Hummingbird
import Logging
import NIOCore
import Sandbox
import ServiceLifecycle

/// Builds the service layer of `devbox serve` from the configuration: the data directory
/// (0700, locked for this process), the database file, the key ring, the crun runtime (its
/// host prepared, the default image resolved or built in the background), then the services
/// (`buildSystem(configuration:runtime:database:cipher:logger:)`).
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
    // The crun runtime behind the service's runtime seam (DevboxRuntime's `BoxRuntime`).
    let sandbox = CrunBoxRuntime(
        dataDirectory: configuration.dataDirectory, baseImage: baseImage, network: configuration.network.mode,
        networkRange: configuration.network.range, dnsUpstreams: configuration.network.dnsUpstreams, logger: logger)
    // The machine's image store the settings' catalog reads (DEVBOX_IMAGE_DIR): the default image is built into it.
    let store = ImageStore(root: images.store.location)
    let missingImage = BaseImage.prepareDefault(settings: images, store: store, sandbox: sandbox, logger: logger)
    try await sandbox.prepareHost()
    let system = try await buildSystem(
        configuration: configuration, runtime: sandbox, database: database, cipher: cipher, logger: logger)
    if let missingImage { BaseImage.buildInBackground(name: missingImage, store: store, images: system.services.images, logger: logger) }
    return system
}

/// The service layer around the parts it is given: the runtime that runs boxes (crun in
/// `serve`; the fast tier's fake), the database (`AppDatabase(path:)`, or an in-memory one:
/// `AppDatabase.inMemory()`), the secret cipher. Adds the user-token verifier the
/// configuration asks for, the session policy (`DEVBOX_SESSION_*_TTL`) and the metrics
/// registry. Touches no file and no host state of its own.
public func buildSystem(
    configuration: ServerConfiguration, runtime: any BoxRuntime, database: AppDatabase, cipher: any SecretCipher,
    logger: Logger
) async throws -> DevboxSystem {
    let verifier = try await makeUserVerifier(configuration: configuration, logger: logger)
    let metrics = DevboxMetrics()
    let services = buildServices(
        configuration: configuration.core, runtime: runtime, database: database, cipher: cipher, userVerifier: verifier,
        sshEndpoint: SSHEndpoint(
            host: configuration.sshPublicHost ?? configuration.sshHost, port: configuration.sshPublicPort ?? configuration.sshPort),
        sessionPolicy: try sessionPolicy(), metrics: metrics.serviceMetrics(), logger: logger)
    return DevboxSystem(services: services, logger: logger, metrics: metrics)
}

/// Wires the focused services (docs/ARCHITECTURE.md, "Services"): each gets only what it
/// uses; the shared state — the audit log (`Auditor`), the job signal, the activity clocks,
/// the SSH gateway's late-bound reference, the AI-API broker's port and counters, the
/// start-up gate, the metrics — is made once here and handed to the services that need it.
/// The only place that sees every dependency.
public func buildServices(
    configuration c: CoreConfiguration, runtime: any BoxRuntime, database db: AppDatabase, cipher: any SecretCipher,
    userVerifier: (any UserTokenVerifying)?, sshEndpoint: SSHEndpoint, sessionPolicy: SessionPolicy,
    metrics: ServiceMetrics, logger: Logger
) -> DevboxServices {
    // Shared state.
    let auditor = Auditor(database: db, settings: c.audit, logger: logger)
    let jobs = JobSignal()
    let gateway = GatewayBox()
    let startup = StartupGate()
    let brokerState = BrokerState()
    let activity = ActivityTracker(database: db, writeInterval: c.lifetimes.activityWriteInterval, logger: logger)
    let teardown = Teardown(database: db, runtime: runtime, logger: logger)
    // Services, leaves first.
    let authenticator = Authenticator(database: db, userVerifier: userVerifier, logger: logger)
    let reads = DevboxReads(database: db, logger: logger)
    let github = GitHubService(database: db, cipher: cipher, settings: c.github, auditor: auditor, logger: logger)
    let images = ImageService(
        settings: c.images, runtime: runtime, startup: startup, warmPoolSize: c.warmPoolSize,
        warmPoolLimits: c.plans.first(where: { $0.name == c.defaultPlan })?.limits)
    let credentials = CredentialBroker(
        database: db, cipher: cipher, runtime: runtime, reads: reads, state: brokerState,
        defaultCredentialMode: c.broker.defaultCredentialMode, auditor: auditor, logger: logger)
    let gitBroker = GitBrokerService(database: db, runtime: runtime, brokerState: brokerState, github: github, logger: logger)
    let snapshots = SnapshotService(
        database: db, runtime: runtime, reads: reads, images: images, settings: c.snapshots, auditor: auditor, logger: logger)
    let runtimeService = RuntimeService(
        database: db, reads: reads, runtime: runtime, activity: activity, gateway: gateway, credentials: credentials,
        limits: RuntimeLimits(
            execOutputLimit: c.execOutputLimit, execDefaultTimeoutSeconds: c.execDefaultTimeoutSeconds,
            execMaxTimeoutSeconds: c.execMaxTimeoutSeconds, fileSizeLimit: c.fileSizeLimit),
        auditor: auditor, logger: logger)
    let access = AccessService(
        database: db, reads: reads, runtime: runtime, activity: activity, gateway: gateway, sshEndpoint: sshEndpoint,
        sessionPolicy: sessionPolicy, auditor: auditor, logger: logger)
    let commands = DevboxCommands(
        database: db, cipher: cipher, runtime: runtime,
        settings: CreateSettings(plans: c.plans, defaultPlan: c.defaultPlan, lifetimes: c.lifetimes, minFreeDisk: c.minFreeDisk),
        reads: reads, images: images, snapshots: snapshots, github: github, gitBroker: gitBroker, credentials: credentials,
        jobs: jobs, gateway: gateway, teardown: teardown, auditor: auditor, logger: logger)
    let housekeeping = Housekeeping(
        database: db, runtime: runtime, startup: startup, brokerState: brokerState, images: images,
        runtimeService: runtimeService, credentials: credentials, activity: activity, gateway: gateway, jobs: jobs,
        teardown: teardown, auditor: auditor, plans: c.plans, lifetimes: c.lifetimes, logger: logger)
    let provisioning = ProvisioningContext(
        database: db, cipher: cipher, runtime: runtime,
        settings: ProvisioningSettings(
            plans: c.plans, workerConcurrency: c.workerConcurrency, leaseSeconds: c.leaseSeconds,
            setupOutputLimit: c.setupOutputLimit, github: c.github),
        jobs: jobs, startup: startup, metrics: metrics, snapshots: snapshots, credentials: credentials, github: github,
        gitBroker: gitBroker, teardown: teardown, logger: logger)
    return DevboxServices(
        authenticator: authenticator, reads: reads, commands: commands, runtime: runtimeService, access: access,
        github: github, dashboard: DashboardAuth(authenticator: authenticator, database: db, auditor: auditor, logger: logger),
        credentials: credentials, gitBroker: gitBroker, images: images, snapshots: snapshots, auditor: auditor,
        housekeeping: housekeeping, provisioning: provisioning, gauges: GaugeReader(database: db, runtime: runtime),
        brokerUsage: BrokerUsageFlusher(state: brokerState, database: db, logger: logger), gateway: gateway, metrics: metrics)
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
    let worker = ProvisioningWorker(context: system.services.provisioning)
    let lifetimes = LifetimeWorker(housekeeping: system.services.housekeeping)
    let gateway = try buildSSHGateway(system: system, configuration: configuration, logger: logger)
    // The AI-API broker (issue 19): its port is known before start-up offers it to boxes.
    let sideServices = httpSideServices(
        system: system, broker: configuration.core.broker, dataDirectory: configuration.dataDirectory,
        metricsAddress: configuration.metricsAddress, logger: logger)
    // The ports are bound before anything of a box runs: SSH here, HTTP when the application
    // starts; the start-up sweep, the warm pool and the workers wait for both (`startUp`).
    // A port already taken thus ends the serve with every box as it was.
    do {
        try await gateway.listen()
    } catch {
        await system.services.housekeeping.releaseHostBeforeStartUp()
        throw ListenFailure(listener: "SSH", host: configuration.sshHost, port: configuration.sshPort, error: error)
    }
    return buildHTTPApplication(
        router: router, host: configuration.httpHost, port: configuration.httpPort,
        services: [worker, lifetimes, gateway] + sideServices,
        onServerRunning: { channel in
            logger.notice("HTTP listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
            // Hummingbird accepts connections only once this returns: no request is served
            // before start-up has run, as before the ports were bound first.
            await system.services.housekeeping.startUp()
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
    // The API ahead of box work (APIPriority): every service inherits the group's priority;
    // provisioning jobs run theirs at .medium. A detached task: a child task never runs below
    // its parent's priority, and the caller's is .medium.
    let nice = APIPriority.configuredNice()
    await APIPriority.applyToEventLoops(nice: nice)
    let services = group
    let run = Task.detached(priority: APIPriority.taskPriority(nice: nice)) {
        try await ServiceGroup(configuration: services).run()
    }
    do {
        try await withTaskCancellationHandler { try await run.value } onCancel: { run.cancel() }
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
