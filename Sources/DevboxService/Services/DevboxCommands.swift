import DevboxModel
import DevboxRuntime
import Foundation
import Logging

/// The settings a create is checked against.
public struct CreateSettings: Sendable {
    public var plans: [Plan]
    public var defaultPlan: String
    public var lifetimes: LifetimeSettings
    /// Free space the data directory's filesystem keeps: creates below it answer 507.
    public var minFreeDisk: DiskFloor

    public init(plans: [Plan], defaultPlan: String, lifetimes: LifetimeSettings, minFreeDisk: DiskFloor) {
        self.plans = plans
        self.defaultPlan = defaultPlan
        self.lifetimes = lifetimes
        self.minFreeDisk = minFreeDisk
    }
}

/// The provisioning commands: create (validated, stored with its pending operations in one
/// transaction, a worker woken), delete (from any state: the job cancelled, sessions revoked,
/// connections closed, the box and secrets torn down) and fork (a snapshot plus creates).
/// The pipeline itself runs in `ProvisioningWorker`.
public final class DevboxCommands: Sendable, LoggingService {
    let db: AppDatabase
    let cipher: any SecretCipher
    let sandbox: any BoxRuntime
    let settings: CreateSettings
    let reads: DevboxReads
    let images: ImageService
    let snapshots: SnapshotService
    let github: GitHubService
    let gitBroker: GitBrokerService
    let credentials: CredentialBroker
    let jobs: JobSignal
    let gateway: GatewayBox
    let teardown: Teardown
    let auditor: Auditor
    let logger: Logger

    public init(
        database: AppDatabase, cipher: any SecretCipher, runtime: any BoxRuntime, settings: CreateSettings, reads: DevboxReads,
        images: ImageService, snapshots: SnapshotService, github: GitHubService, gitBroker: GitBrokerService,
        credentials: CredentialBroker, jobs: JobSignal, gateway: GatewayBox, teardown: Teardown, auditor: Auditor,
        logger: Logger
    ) {
        self.db = database
        self.cipher = cipher
        self.sandbox = runtime
        self.settings = settings
        self.reads = reads
        self.images = images
        self.snapshots = snapshots
        self.github = github
        self.gitBroker = gitBroker
        self.credentials = credentials
        self.jobs = jobs
        self.gateway = gateway
        self.teardown = teardown
        self.auditor = auditor
        self.logger = logger
    }

    /// The plans a create may name (the dashboard's form offers them), and the default.
    public var plans: [Plan] { settings.plans }
    public var defaultPlanName: String { settings.defaultPlan }

    /// Validates and stores a new devbox with its five pending operations, then wakes a worker.
    func createDevboxUnaudited(
        _ principal: Principal, _ request: CreateDevboxRequest, tokens: InjectionTokens
    ) async throws(ServiceError) -> Devbox {
        let v = try CreateValidation.validate(
            request, plans: settings.plans, defaultPlan: settings.defaultPlan, lifetimes: settings.lifetimes)
        try RuntimeService.requireEnforceable(v.network, runtime: sandbox)
        try requireFreeDisk()
        let credentialMode = try credentials.credentialMode(of: request)
        // A snapshot (issue 23) brings its own image.
        let snapshot = try await snapshots.snapshotOfCreate(request, userId: principal.userId)
        let image: String
        if let snapshot { image = snapshot.image } else { image = try images.imageOfCreate(request) }
        try gitBroker.requireGitBroker(v.repositories, legacy: request.repository != nil)
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
        try await github.checkRepositoryAccess(userId: principal.userId, request: request, repositories: v.repositories)
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

    /// Destroys a devbox from any state: cancels in-flight work, tears down the sandbox,
    /// deletes pending secrets. Idempotent.
    func deleteDevboxUnaudited(_ principal: Principal, id: String) async throws(ServiceError) {
        let box = try await reads.devbox(principal, id: id)
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

    /// 507 when the filesystem of the boxes has less free space than `minFreeDisk` asks:
    /// the create is refused before anything is stored.
    func requireFreeDisk() throws(ServiceError) {
        guard let space = sandbox.diskSpace() else { return }
        let floor = settings.minFreeDisk.minimumFree(total: space.total)
        guard floor > 0, space.free < floor else { return }
        throw .insufficientStorage(
            "the host is short of disk: \(DiskFloor.describe(space.free)) free, below DEVBOX_MIN_FREE_DISK (\(settings.minFreeDisk)); no devbox can be created until space is freed")
    }

    static let maxForkCount = 32

    /// A snapshot of the devbox and `count` devboxes made from it. The new boxes get the
    /// original's plan, network policy and credential mode; its env values only with
    /// `copy_env`; AI tokens only from this request's headers; no setup commands or
    /// repositories (their results are in the snapshot).
    func forkDevboxUnaudited(
        _ principal: Principal, devboxId: String, _ request: ForkDevboxRequest, tokens: InjectionTokens
    ) async throws(ServiceError) -> (snapshot: Snapshot, devboxes: [Devbox]) {
        guard (1...Self.maxForkCount).contains(request.count) else {
            throw .validation(field: "count", message: "count must be between 1 and \(Self.maxForkCount)")
        }
        let original = try await reads.devbox(principal, id: devboxId)
        let base: String
        if let name = request.name {
            try CreateValidation.checkName(name, field: "name")
            base = name
        } else {
            base = String(original.name.unicodeScalars.prefix(40).map(Character.init)) + "-fork-" + String(Identifier.make("", length: 6))
        }
        // Room for "-32" after the base in a devbox name of at most 64.
        let prefix = String(base.unicodeScalars.prefix(60).map(Character.init))
        var env: [String: String] = [:]
        if request.copyEnv == true, !original.envKeys.isEmpty {
            do {
                for r in try await db.envRecords(devboxId: devboxId) { env[r.key] = try cipher.open(r.valueEncrypted) }
            } catch {
                throw storageFailure(error)
            }
        }
        let snapshot = try await snapshots.createSnapshotUnaudited(principal, devboxId: devboxId, name: base)
        let profile = CredentialProfile(
            injectClaudeToken: !(tokens.claudeToken ?? "").isEmpty, injectCodexToken: !(tokens.codexToken ?? "").isEmpty)
        var made: [Devbox] = []
        for i in 1...request.count {
            let create = CreateDevboxRequest(
                name: request.count == 1 ? prefix : "\(prefix)-\(i)", plan: original.plan, credentialProfile: profile,
                env: env.isEmpty ? nil : env, idleTimeoutSeconds: original.idleTimeoutSeconds, network: original.network,
                credentialMode: original.credentialMode, snapshot: snapshot.id)
            made.append(try await createDevboxUnaudited(principal, create, tokens: tokens))
        }
        return (snapshot, made)
    }

    // MARK: Audited entry points

    public func createDevbox(
        _ principal: Principal, _ request: CreateDevboxRequest, tokens: InjectionTokens
    ) async throws(ServiceError) -> Devbox {
        try await auditor.audited(
            principal, "devbox.create", devboxId: nil, detail: ["fields": .strings(Auditor.fieldNames(request))],
            okDetail: { ["plan": .string($0.plan)] }, okDevboxId: { $0.id }
        ) { () async throws(ServiceError) in
            try await createDevboxUnaudited(principal, request, tokens: tokens)
        }
    }

    public func deleteDevbox(_ principal: Principal, id: String) async throws(ServiceError) {
        try await auditor.audited(principal, "devbox.delete", devboxId: id) { () async throws(ServiceError) in
            try await deleteDevboxUnaudited(principal, id: id)
        }
    }

    public func forkDevbox(
        _ principal: Principal, devboxId: String, _ request: ForkDevboxRequest, tokens: InjectionTokens
    ) async throws(ServiceError) -> (snapshot: Snapshot, devboxes: [Devbox]) {
        var fields = ["count"]
        if request.name != nil { fields.append("name") }
        if request.copyEnv != nil { fields.append("copy_env") }
        return try await auditor.audited(
            principal, "devbox.fork", devboxId: devboxId, detail: ["fields": .strings(fields)],
            okDetail: { ["snapshot": .string($0.snapshot.id), "devboxes": .strings($0.devboxes.map(\.id))] }
        ) { () async throws(ServiceError) in
            try await forkDevboxUnaudited(principal, devboxId: devboxId, request, tokens: tokens)
        }
    }
}
