import DevboxModel
import DevboxSecurity
import Foundation
import Logging

/// Settings of the service layer (already validated by the executable).
public struct CoreConfiguration: Sendable {
    public var plans: [Plan]
    public var defaultPlan: String
    public var workerConcurrency: Int
    public var leaseSeconds: TimeInterval
    public var setupOutputLimit: Int
    public var github: GitHubSettings
    /// Idle timeouts, lifetimes and their defaults (Domain/Lifetimes.swift).
    public var lifetimes: LifetimeSettings
    /// Exec: bytes kept of stdout and of stderr (the tail), default and largest timeout.
    public var execOutputLimit: Int
    public var execDefaultTimeoutSeconds: Int
    public var execMaxTimeoutSeconds: Int
    /// Largest file the files API reads or writes.
    public var fileSizeLimit: Int
    /// Boxes of the default plan kept started ahead of demand (0: none); see Sandbox/WarmPool.swift.
    public var warmPoolSize: Int = 20
    /// The AI-API broker (issue 19): default credential mode, port, upstreams.
    public var broker = BrokerSettings()
    /// The audit log's stderr copy and retention (Audit/Auditor.swift).
    public var audit = AuditSettings()
    /// Root images of boxes (issue 18): the machine's store, the default, its readiness.
    public var images = ImageSettings()
    /// Free space the data directory's filesystem keeps: creates below it answer 507.
    public var minFreeDisk = DiskFloor.standard
    /// Snapshots (issue 23): the per-user quota (DEVBOX_SNAPSHOT_QUOTA).
    public var snapshots = SnapshotSettings()

    public init(
        plans: [Plan] = Plan.defaults, defaultPlan: String = "small", workerConcurrency: Int = 32,
        leaseSeconds: TimeInterval = 15, setupOutputLimit: Int = 64 * 1024, github: GitHubSettings = GitHubSettings(),
        lifetimes: LifetimeSettings = LifetimeSettings(), execOutputLimit: Int = 1 << 20,
        execDefaultTimeoutSeconds: Int = 600, execMaxTimeoutSeconds: Int = 86400, fileSizeLimit: Int = 32 << 20
    ) {
        self.plans = plans
        self.defaultPlan = defaultPlan
        self.workerConcurrency = workerConcurrency
        self.leaseSeconds = leaseSeconds
        self.setupOutputLimit = setupOutputLimit
        self.github = github
        self.lifetimes = lifetimes
        self.execOutputLimit = execOutputLimit
        self.execDefaultTimeoutSeconds = execDefaultTimeoutSeconds
        self.execMaxTimeoutSeconds = execMaxTimeoutSeconds
        self.fileSizeLimit = fileSizeLimit
    }
}

/// Verifies a user bearer token and returns its subject (`sub`).
public protocol UserTokenVerifying: Sendable {
    func subject(ofBearer token: String) async throws -> String
    /// The subject and the token's expiry (the dashboard never keeps a session past it).
    func verify(bearer token: String) async throws -> (subject: String, expiresAt: Date?)
}

/// Thrown by a verifier that cannot judge tokens right now (its OpenID provider has not
/// answered): the request is answered 503, not 401, since the token may well be good.
public struct UserVerifierUnavailable: Error, Sendable {
    public init() {}
}

extension UserTokenVerifying {
    public func verify(bearer token: String) async throws -> (subject: String, expiresAt: Date?) {
        (try await subject(ofBearer: token), nil)
    }
}

/// The service layer as the composition root (`DevboxApp.buildServices`) made it: one
/// value of each focused service, and the shared state they were given. A bag with no
/// behaviour of its own: each face takes from it only the services it uses (see
/// docs/ARCHITECTURE.md, "Services").
public struct DevboxServices: Sendable {
    public var authenticator: Authenticator
    public var reads: DevboxReads
    public var commands: DevboxCommands
    public var runtime: RuntimeService
    public var access: AccessService
    public var github: GitHubService
    public var dashboard: DashboardAuth
    public var credentials: CredentialBroker
    public var gitBroker: GitBrokerService
    public var images: ImageService
    public var snapshots: SnapshotService
    public var auditor: Auditor
    public var housekeeping: Housekeeping
    public var provisioning: ProvisioningContext
    public var gauges: GaugeReader
    public var brokerUsage: BrokerUsageFlusher
    /// The SSH gateway, attached once it exists (sessions and stops close its connections).
    public var gateway: GatewayBox
    /// Provisioning's and the faces' instruments (Metrics/ServiceMetrics.swift).
    public var metrics: ServiceMetrics

    public init(
        authenticator: Authenticator, reads: DevboxReads, commands: DevboxCommands, runtime: RuntimeService,
        access: AccessService, github: GitHubService, dashboard: DashboardAuth, credentials: CredentialBroker,
        gitBroker: GitBrokerService, images: ImageService, snapshots: SnapshotService, auditor: Auditor,
        housekeeping: Housekeeping, provisioning: ProvisioningContext, gauges: GaugeReader, brokerUsage: BrokerUsageFlusher,
        gateway: GatewayBox, metrics: ServiceMetrics
    ) {
        self.authenticator = authenticator
        self.reads = reads
        self.commands = commands
        self.runtime = runtime
        self.access = access
        self.github = github
        self.dashboard = dashboard
        self.credentials = credentials
        self.gitBroker = gitBroker
        self.images = images
        self.snapshots = snapshots
        self.auditor = auditor
        self.housekeeping = housekeeping
        self.provisioning = provisioning
        self.gauges = gauges
        self.brokerUsage = brokerUsage
        self.gateway = gateway
        self.metrics = metrics
    }
}
