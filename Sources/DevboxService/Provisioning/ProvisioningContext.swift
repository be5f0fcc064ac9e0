import DevboxModel
import DevboxRuntime
import Foundation
import Logging

/// The provisioning pipeline's settings (`CoreConfiguration`).
public struct ProvisioningSettings: Sendable {
    public var plans: [Plan]
    /// Jobs one worker runs at once.
    public var workerConcurrency: Int
    public var leaseSeconds: TimeInterval
    /// Bytes kept of a setup command's (and a clone's) output.
    public var setupOutputLimit: Int
    /// Clone URLs and the clone's own settings.
    public var github: GitHubSettings

    public init(plans: [Plan], workerConcurrency: Int, leaseSeconds: TimeInterval, setupOutputLimit: Int, github: GitHubSettings) {
        self.plans = plans
        self.workerConcurrency = workerConcurrency
        self.leaseSeconds = leaseSeconds
        self.setupOutputLimit = setupOutputLimit
        self.github = github
    }
}

/// What the provisioning worker, its job runner and the pipeline's steps use: the database,
/// the cipher of the pending secrets, the runtime, the job signal (woken by creates,
/// cancelled by deletes), the start-up gate, provisioning's instruments, and the services a
/// step asks: a devbox's image layers (`SnapshotService`), the broker's env of a proxy-mode
/// box (`CredentialBroker`), the token a clone may use (`GitHubService`), the git broker's
/// remote (`GitBrokerService`), the teardown of a failed or deleted box.
public struct ProvisioningContext: Sendable {
    let db: AppDatabase
    let cipher: any SecretCipher
    let sandbox: any BoxRuntime
    let settings: ProvisioningSettings
    let jobs: JobSignal
    let startup: StartupGate
    let metrics: ServiceMetrics
    let snapshots: SnapshotService
    let credentials: CredentialBroker
    let github: GitHubService
    let gitBroker: GitBrokerService
    let teardown: Teardown
    let logger: Logger

    public init(
        database: AppDatabase, cipher: any SecretCipher, runtime: any BoxRuntime, settings: ProvisioningSettings, jobs: JobSignal,
        startup: StartupGate, metrics: ServiceMetrics, snapshots: SnapshotService, credentials: CredentialBroker,
        github: GitHubService, gitBroker: GitBrokerService, teardown: Teardown, logger: Logger
    ) {
        self.db = database
        self.cipher = cipher
        self.sandbox = runtime
        self.settings = settings
        self.jobs = jobs
        self.startup = startup
        self.metrics = metrics
        self.snapshots = snapshots
        self.credentials = credentials
        self.github = github
        self.gitBroker = gitBroker
        self.teardown = teardown
        self.logger = logger
    }
}
