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
    /// Idle timeouts, lifetimes and their defaults (see docs/LIFETIMES.md).
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
    /// The audit log's stderr copy and retention (Audit/DevboxCore+Audit.swift).
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

/// The service layer every face (REST, MCP, dashboard, SSH) calls. Knows devboxes, not transports.
public final class DevboxCore: Sendable {
    let db: AppDatabase
    let cipher: any SecretCipher
    let sandbox: any BoxRuntime
    let configuration: CoreConfiguration
    let userVerifier: (any UserTokenVerifying)?
    let logger: Logger
    let tokenCache = TokenCache()
    /// Audit events waiting to be stored (Audit/AuditLog.swift).
    let audit = AuditLog()
    let jobs: JobSignal
    /// Opened by the server once its listeners are bound and start-up has run (see `startUp`).
    public let startup = StartupGate()
    /// The SSH gateway, attached once it exists.
    public let gateway = GatewayBox()
    /// The AI-API broker's port and usage counters (`DevboxCore+Credentials.swift`).
    public let broker = BrokerState()
    let sshEndpoint: SSHEndpoint
    let sessionPolicy: SessionPolicy
    let githubClient: GitHubClient
    /// When each devbox's activity was last written (writes are at most one per
    /// `LifetimeSettings.activityWriteInterval` per devbox).
    let activityWritten = ActivityDebounce()
    /// Execs running per devbox (activity for as long as they run).
    let execsRunning = InFlight()
    /// Provisioning's instruments (Metrics/ServiceMetrics.swift); no-op unless the server gives a factory.
    public let metrics: ServiceMetrics

    public init(
        database: AppDatabase, cipher: any SecretCipher, sandbox: any BoxRuntime, configuration: CoreConfiguration,
        userVerifier: (any UserTokenVerifying)?, sshEndpoint: SSHEndpoint = SSHEndpoint(host: "127.0.0.1", port: 2222),
        sessionPolicy: SessionPolicy = SessionPolicy(), logger: Logger, metrics: ServiceMetrics = ServiceMetrics()
    ) {
        self.metrics = metrics
        self.sshEndpoint = sshEndpoint
        self.sessionPolicy = sessionPolicy
        self.db = database
        self.cipher = cipher
        self.sandbox = sandbox
        self.configuration = configuration
        self.userVerifier = userVerifier
        self.logger = logger
        self.jobs = JobSignal()
        self.githubClient = GitHubClient(settings: configuration.github)
    }

    // MARK: Auth

    /// Resolves the caller from the provider token and an optional bearer token.
    /// Neither token is stored or logged.
    public func authenticate(providerToken: String?, bearer: String?) async throws(ServiceError) -> Principal {
        try await authenticateWithExpiry(providerToken: providerToken, bearer: bearer).principal
    }

    /// `authenticate`, also answering the bearer token's expiry (nil without a bearer).
    func authenticateWithExpiry(
        providerToken: String?, bearer: String?
    ) async throws(ServiceError) -> (principal: Principal, bearerExpiresAt: Date?) {
        guard let providerToken, !providerToken.isEmpty else {
            throw .unauthorized("missing X-Provider-Token header")
        }
        let hash = ProviderToken.hash(providerToken)
        let match: TokenCache.Entry?
        do {
            match = try await tokenCache.lookup(
                hash: hash, version: { self.db.dataVersion() }, authVersion: { self.db.authVersion() },
                load: { try await self.db.liveTokenHashes() })
        } catch {
            logger.error("token lookup failed: \(error)")
            throw .unavailable("authentication is unavailable, try again")
        }
        guard let match else { throw .unauthorized("invalid provider token") }
        var subject = ""
        var bearerExpiresAt: Date?
        if let bearer {
            guard let userVerifier else {
                throw .unauthorized(
                    "user bearer tokens are not accepted: no DEVBOX_USER_JWT_SECRET, DEVBOX_USER_JWKS_FILE or DEVBOX_USER_OIDC_ISSUER configured")
            }
            do {
                (subject, bearerExpiresAt) = try await userVerifier.verify(bearer: bearer)
            } catch is UserVerifierUnavailable {
                throw .unavailable("user authentication is unavailable (the identity provider's keys could not be fetched), try again")
            } catch {
                throw .unauthorized("invalid user bearer token")
            }
            guard !subject.isEmpty else { throw .unauthorized("invalid user bearer token") }
        }
        let sub = subject
        do {
            let userId = try await tokenCache.user(providerId: match.providerId, subject: sub) {
                try await self.db.resolveUser(providerId: match.providerId, subject: sub)
            }
            return (Principal(providerId: match.providerId, providerTokenId: match.tokenId, userId: userId), bearerExpiresAt)
        } catch {
            logger.error("user lookup failed: \(error)")
            throw .unavailable("authentication is unavailable, try again")
        }
    }

    // MARK: Devboxes

    /// Validates and stores a new devbox with its five pending operations, then wakes a worker.
    func createDevboxUnaudited(
        _ principal: Principal, _ request: CreateDevboxRequest, tokens: InjectionTokens
    ) async throws(ServiceError) -> Devbox {
        let v = try CreateValidation.validate(
            request, plans: configuration.plans, defaultPlan: configuration.defaultPlan, lifetimes: configuration.lifetimes)
        try requireEnforceable(v.network)
        try requireFreeDisk()
        let credentialMode = try credentialMode(of: request)
        // A snapshot (issue 23) brings its own image.
        let snapshot = try await snapshotOfCreate(request, userId: principal.userId)
        let image: String
        if let snapshot { image = snapshot.image } else { image = try imageOfCreate(request) }
        try requireGitBroker(v.repositories, legacy: request.repository != nil)
        if v.credentialProfile.injectClaudeToken && (tokens.claudeToken ?? "").isEmpty {
            throw .validation(
                field: "X-Claude-Token",
                message: "credential_profile.inject_claude_token is set but the X-Claude-Token header is missing")
        }
        if v.credentialProfile.injectCodexToken && (tokens.codexToken ?? "").isEmpty {
            throw .validation(
                field: "X-Codex-Token",
                message: "credential_profile.inject_codex_token is set but the X-Codex-Token header is missing")
        }
        try await checkRepositoryAccess(userId: principal.userId, request: request, repositories: v.repositories)
        let id = Identifier.make("dbx_")
        let now = Date()
        do {
            var secrets: [PendingSecretRecord] = []
            // A header without its flag is not stored.
            if v.credentialProfile.injectClaudeToken, let t = tokens.claudeToken {
                secrets.append(PendingSecretRecord(devboxId: id, kind: "claude", valueEncrypted: try cipher.seal(t)))
            }
            if v.credentialProfile.injectCodexToken, let t = tokens.codexToken {
                secrets.append(PendingSecretRecord(devboxId: id, kind: "codex", valueEncrypted: try cipher.seal(t)))
            }
            let env = try v.env.map { EnvRecord(devboxId: id, key: $0.key, valueEncrypted: try cipher.seal($0.value)) }
            let repos = v.repositories.enumerated().map { i, r in
                RepositoryRecord(
                    devboxId: id, position: i, repoId: r.repoId, fullName: r.fullName, ref: r.ref ?? "main",
                    targetPath: r.targetPath ?? "/workspace", status: "pending",
                    pushBranches: RepositoryRecord.encodePushBranches(r.pushBranches))
            }
            let record = DevboxRecord(
                id: id, userId: principal.userId, name: v.name, plan: v.plan.name, state: .requested,
                envKeys: v.env.map(\.key), setupCommands: v.setupCommands, setupTimeoutSeconds: v.setupTimeoutSeconds,
                injectClaudeToken: v.credentialProfile.injectClaudeToken,
                injectCodexToken: v.credentialProfile.injectCodexToken, createdAt: now, updatedAt: now,
                idleTimeoutSeconds: v.idleTimeoutSeconds, ttlSeconds: v.ttlSeconds,
                expiresAt: v.ttlSeconds.map { now.addingTimeInterval(TimeInterval($0)) }, lastActivityAt: now,
                network: DevboxRecord.encodeNetwork(v.network), credentialMode: credentialMode.rawValue,
                image: image, snapshotId: snapshot?.id)
            let devbox = try await db.insertDevbox(
                NewDevbox(record: record, env: env, secrets: secrets, repositories: repos))
            jobs.signal()
            logger.info("devbox created", metadata: ["devbox": "\(id)", "plan": "\(v.plan.name)"])
            return devbox
        } catch {
            logger.error("create failed: \(error)")
            throw .unavailable("the devbox could not be stored, try again")
        }
    }

    public func listDevboxes(_ principal: Principal) async throws(ServiceError) -> [Devbox] {
        do { return try await db.devboxes(userId: principal.userId) } catch { throw storageFailure(error) }
    }

    /// A page of the list (newest first) and the cursor of the next one (nil: last page).
    public func listDevboxes(_ principal: Principal, page: DevboxPageRequest) async throws(ServiceError) -> (devboxes: [Devbox], next: String?) {
        if let limit = page.limit, !(1...500).contains(limit) {
            throw .validation(field: "limit", message: "limit must be between 1 and 500")
        }
        do {
            let r = try await db.devboxPage(userId: principal.userId, page)
            return (r.devboxes, r.next?.encoded)
        } catch {
            throw storageFailure(error)
        }
    }

    /// Another user's devbox answers exactly like an unknown one.
    public func devbox(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        let found: Devbox?
        do { found = try await db.devbox(id: id, userId: principal.userId) } catch { throw storageFailure(error) }
        guard let found else { throw .notFound("no devbox with id \(id)") }
        return found
    }

    public func operations(_ principal: Principal, id: String) async throws(ServiceError) -> [DevboxOperation] {
        _ = try await devbox(principal, id: id)
        do { return try await db.operations(devboxId: id).map(\.model) } catch { throw storageFailure(error) }
    }

    /// Destroys a devbox from any state: cancels in-flight work, tears down the sandbox,
    /// deletes pending secrets. Idempotent.
    func deleteDevboxUnaudited(_ principal: Principal, id: String) async throws(ServiceError) {
        let box = try await devbox(principal, id: id)
        if box.state == .destroyed { return }
        do {
            try await db.transition(id, to: .destroyed) { r in
                r.destroyedAt = Date()
                r.leaseOwner = nil
                r.leaseExpiresAt = nil
            }
        } catch StorageError.illegalTransition(from: .destroyed, _) {
            return
        } catch {
            throw storageFailure(error)
        }
        jobs.cancel(devboxId: id)
        try? await db.revokeAllSessions(devboxId: id)
        gateway.current?.closeConnections(devboxId: id)
        await teardown(id, reason: "destroyed by request")
    }

    /// Removes the sandbox and every secret (AI tokens and env values) of a devbox that has
    /// left the live states: destroyed, or failed (which only leads to destroyed).
    func teardown(_ id: String, reason: String, destroySandbox: Bool = true) async {
        // Secrets first: they leave the disk as soon as the devbox has left the live states,
        // not after the sandbox's teardown (a crun delete and its network's, tens of ms).
        do {
            try await db.finishRemainingOperations(devboxId: id, reason: reason)
            try await db.deleteSecrets(devboxId: id)
        } catch {
            logger.error("teardown bookkeeping failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
        }
        do {
            if destroySandbox { try await sandbox.destroy(box: id) }
        } catch {
            logger.error("sandbox teardown failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
        }
        logger.info("devbox torn down", metadata: ["devbox": "\(id)", "reason": "\(reason)"])
    }

    // MARK: Users

    public func profile(_ principal: Principal) async throws(ServiceError) -> UserProfile {
        let p: UserProfile?
        do { p = try await db.userProfile(principal) } catch { throw storageFailure(error) }
        guard let p else { throw .notFound("user not found") }
        return p
    }

    func storageFailure(_ error: any Error) -> ServiceError {
        if let e = error as? ServiceError { return e }
        logger.error("storage failure: \(error)")
        return .unavailable("storage is unavailable, try again")
    }
}

extension DevboxCore {
    /// How many boxes the warm pool keeps started, and how many are ready now.
    public func warmPool() -> (target: Int, idle: Int) { sandbox.warmPool() }
}
