import Foundation

/// Lifecycle states of a devbox, exactly the seed's list.
public enum DevboxState: String, Codable, Sendable, CaseIterable {
    case requested, provisioning, ready, stopped, destroyed, failed

    /// States from which `waitForReady` stops waiting without success.
    public var isTerminalFailure: Bool { self == .failed || self == .destroyed || self == .stopped }
}

/// Token injection flags of a devbox.
public struct CredentialProfile: Codable, Sendable, Equatable {
    public var injectClaudeToken: Bool
    public var injectCodexToken: Bool

    public init(injectClaudeToken: Bool = false, injectCodexToken: Bool = false) {
        self.injectClaudeToken = injectClaudeToken
        self.injectCodexToken = injectCodexToken
    }

    enum CodingKeys: String, CodingKey {
        case injectClaudeToken = "inject_claude_token"
        case injectCodexToken = "inject_codex_token"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        injectClaudeToken = try c.decodeIfPresent(Bool.self, forKey: .injectClaudeToken) ?? false
        injectCodexToken = try c.decodeIfPresent(Bool.self, forKey: .injectCodexToken) ?? false
    }
}

/// A repository to clone into a devbox, as sent on create.
public struct DevboxRepositoryRequest: Codable, Sendable, Equatable {
    public var repoId: Int64?
    public var fullName: String
    public var ref: String?
    public var targetPath: String?
    /// Issue 19's git broker: branch globs (`agent/*`) the box may push to through the
    /// service, which adds the GitHub token on the way out. Nil or absent: no broker, the
    /// token is used only to clone (the seed's behaviour).
    public var pushBranches: [String]?

    public init(
        repoId: Int64? = nil, fullName: String, ref: String? = nil, targetPath: String? = nil, pushBranches: [String]? = nil
    ) {
        self.repoId = repoId
        self.fullName = fullName
        self.ref = ref
        self.targetPath = targetPath
        self.pushBranches = pushBranches
    }

    enum CodingKeys: String, CodingKey {
        case repoId = "repo_id", fullName = "full_name", ref, targetPath = "target_path", pushBranches = "push_branches"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        repoId = try c.decodeStrictIntIfPresent(forKey: .repoId).map(Int64.init)
        fullName = try c.decode(String.self, forKey: .fullName)
        ref = try c.decodeIfPresent(String.self, forKey: .ref)
        targetPath = try c.decodeIfPresent(String.self, forKey: .targetPath)
        pushBranches = try c.decodeIfPresent([String].self, forKey: .pushBranches)
    }
}

/// A devbox's egress policy (`network` on create, `GET|PATCH /api/v1/devboxes/:id/network`):
/// `egress` is `allow_all` (the public internet) or `deny_all`; `allow` and `deny` hold CIDRs
/// or domain names (`*.example.org`: its subdomains). Private, loopback, link-local and the
/// host's own addresses are refused in every mode.
public struct DevboxNetwork: Codable, Sendable, Equatable {
    public var egress: String
    public var allow: [String]
    public var deny: [String]

    public static let allowAll = DevboxNetwork(egress: "allow_all", allow: [], deny: [])

    public init(egress: String = "allow_all", allow: [String] = [], deny: [String] = []) {
        self.egress = egress
        self.allow = allow
        self.deny = deny
    }

    enum CodingKeys: String, CodingKey { case egress, allow, deny }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        egress = try c.decodeIfPresent(String.self, forKey: .egress) ?? "allow_all"
        allow = try c.decodeIfPresent([String].self, forKey: .allow) ?? []
        deny = try c.decodeIfPresent([String].self, forKey: .deny) ?? []
    }
}

/// Body of `POST /api/v1/devboxes`.
public struct CreateDevboxRequest: Codable, Sendable, Equatable {
    public var name: String
    public var plan: String?
    public var repository: String?
    public var branch: String?
    public var repositories: [DevboxRepositoryRequest]?
    public var credentialProfile: CredentialProfile?
    public var env: [String: String]?
    public var setupCommands: [String]?
    public var setupTimeoutSeconds: Int?
    public var idleTimeoutSeconds: Int?
    public var ttlSeconds: Int?
    public var network: DevboxNetwork?
    /// `env` (the real key in the box's environment) or `proxy` (the service's broker adds
    /// it on the way out); nil: the service's default.
    public var credentialMode: String?
    /// The root image (`devbox image list`); nil: the server's default image.
    public var image: String?
    /// Issue 23: a snapshot's id or name to start from instead of an image (its files, with
    /// this request's env, tokens, setup commands and repositories applied on top).
    public var snapshot: String?

    public init(
        name: String, plan: String? = nil, repository: String? = nil, branch: String? = nil,
        repositories: [DevboxRepositoryRequest]? = nil, credentialProfile: CredentialProfile? = nil,
        env: [String: String]? = nil, setupCommands: [String]? = nil, setupTimeoutSeconds: Int? = nil,
        idleTimeoutSeconds: Int? = nil, ttlSeconds: Int? = nil, network: DevboxNetwork? = nil,
        credentialMode: String? = nil, image: String? = nil, snapshot: String? = nil
    ) {
        self.image = image
        self.snapshot = snapshot
        self.network = network
        self.credentialMode = credentialMode
        self.name = name
        self.plan = plan
        self.repository = repository
        self.branch = branch
        self.repositories = repositories
        self.credentialProfile = credentialProfile
        self.env = env
        self.setupCommands = setupCommands
        self.setupTimeoutSeconds = setupTimeoutSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.ttlSeconds = ttlSeconds
    }

    enum CodingKeys: String, CodingKey {
        case name, plan, repository, branch, repositories, env, network
        case credentialProfile = "credential_profile"
        case setupCommands = "setup_commands"
        case setupTimeoutSeconds = "setup_timeout_seconds"
        case idleTimeoutSeconds = "idle_timeout_seconds"
        case ttlSeconds = "ttl_seconds"
        case credentialMode = "credential_mode"
        case image, snapshot
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        plan = try c.decodeIfPresent(String.self, forKey: .plan)
        repository = try c.decodeIfPresent(String.self, forKey: .repository)
        branch = try c.decodeIfPresent(String.self, forKey: .branch)
        repositories = try c.decodeIfPresent([DevboxRepositoryRequest].self, forKey: .repositories)
        credentialProfile = try c.decodeIfPresent(CredentialProfile.self, forKey: .credentialProfile)
        env = try c.decodeIfPresent([String: String].self, forKey: .env)
        setupCommands = try c.decodeIfPresent([String].self, forKey: .setupCommands)
        setupTimeoutSeconds = try c.decodeStrictIntIfPresent(forKey: .setupTimeoutSeconds)
        idleTimeoutSeconds = try c.decodeStrictIntIfPresent(forKey: .idleTimeoutSeconds)
        ttlSeconds = try c.decodeStrictIntIfPresent(forKey: .ttlSeconds)
        network = try c.decodeIfPresent(DevboxNetwork.self, forKey: .network)
        credentialMode = try c.decodeIfPresent(String.self, forKey: .credentialMode)
        image = try c.decodeIfPresent(String.self, forKey: .image)
        snapshot = try c.decodeIfPresent(String.self, forKey: .snapshot)
    }
}

/// The AI tokens sent beside a create (headers `X-Claude-Token`, `X-Codex-Token`).
public struct InjectionTokens: Sendable, Equatable {
    public var claudeToken: String?
    public var codexToken: String?
    public init(claudeToken: String? = nil, codexToken: String? = nil) {
        self.claudeToken = claudeToken
        self.codexToken = codexToken
    }
}

/// A repository of a devbox with its clone status.
public struct DevboxRepository: Codable, Sendable, Equatable {
    public var repoId: Int64?
    public var fullName: String
    public var ref: String
    public var targetPath: String
    public var status: String
    public var commit: String?
    public var error: String?
    /// The branch globs the git broker admits pushes to; empty: no broker for this repository.
    public var pushBranches: [String]

    public init(
        repoId: Int64?, fullName: String, ref: String, targetPath: String, status: String, commit: String?, error: String?,
        pushBranches: [String] = []
    ) {
        self.repoId = repoId
        self.fullName = fullName
        self.ref = ref
        self.targetPath = targetPath
        self.status = status
        self.commit = commit
        self.error = error
        self.pushBranches = pushBranches
    }

    enum CodingKeys: String, CodingKey {
        case repoId = "repo_id", fullName = "full_name", ref, targetPath = "target_path", status, commit, error
        case pushBranches = "push_branches"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        repoId = try c.decodeIfPresent(Int64.self, forKey: .repoId)
        fullName = try c.decode(String.self, forKey: .fullName)
        ref = try c.decode(String.self, forKey: .ref)
        targetPath = try c.decode(String.self, forKey: .targetPath)
        status = try c.decode(String.self, forKey: .status)
        commit = try c.decodeIfPresent(String.self, forKey: .commit)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        // A server from before the git broker sends none.
        pushBranches = try c.decodeIfPresent([String].self, forKey: .pushBranches) ?? []
    }

    /// `repo_id`, `commit` and `error` are always present (null when unknown).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(repoId, forKey: .repoId)
        try c.encode(fullName, forKey: .fullName)
        try c.encode(ref, forKey: .ref)
        try c.encode(targetPath, forKey: .targetPath)
        try c.encode(status, forKey: .status)
        try c.encode(commit, forKey: .commit)
        try c.encode(error, forKey: .error)
        try c.encode(pushBranches, forKey: .pushBranches)
    }
}

/// Why a devbox failed: the operation and its error.
public struct DevboxError: Codable, Sendable, Equatable {
    public var operation: String
    public var message: String
    public init(operation: String, message: String) {
        self.operation = operation
        self.message = message
    }
}

/// A devbox as the API returns it.
public struct Devbox: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var plan: String
    public var state: DevboxState
    public var repositories: [DevboxRepository]
    public var envKeys: [String]
    public var setupCommands: [String]
    public var setupTimeoutSeconds: Int
    public var credentialProfile: CredentialProfile
    public var createdAt: Date
    public var updatedAt: Date
    public var readyAt: Date?
    public var error: DevboxError?
    public var idleTimeoutSeconds: Int?
    public var ttlSeconds: Int?
    public var expiresAt: Date?
    public var lastActivityAt: Date?
    public var network: DevboxNetwork
    /// `env` or `proxy` (see `CreateDevboxRequest.credentialMode`).
    public var credentialMode: String
    /// The root image the box runs on: an image name, `host` (the host's root, masked) or
    /// the path of DEVBOX_BASE_IMAGE; nil for boxes from before images.
    public var image: String?

    public init(
        id: String, name: String, plan: String, state: DevboxState, repositories: [DevboxRepository],
        envKeys: [String], setupCommands: [String], setupTimeoutSeconds: Int, credentialProfile: CredentialProfile,
        createdAt: Date, updatedAt: Date, readyAt: Date?, error: DevboxError?,
        idleTimeoutSeconds: Int? = nil, ttlSeconds: Int? = nil, expiresAt: Date? = nil, lastActivityAt: Date? = nil,
        network: DevboxNetwork = .allowAll, credentialMode: String = "env", image: String? = nil
    ) {
        self.network = network
        self.credentialMode = credentialMode
        self.image = image
        self.id = id
        self.name = name
        self.plan = plan
        self.state = state
        self.repositories = repositories
        self.envKeys = envKeys
        self.setupCommands = setupCommands
        self.setupTimeoutSeconds = setupTimeoutSeconds
        self.credentialProfile = credentialProfile
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.readyAt = readyAt
        self.error = error
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.ttlSeconds = ttlSeconds
        self.expiresAt = expiresAt
        self.lastActivityAt = lastActivityAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, plan, state, repositories, error
        case envKeys = "env_keys"
        case setupCommands = "setup_commands"
        case setupTimeoutSeconds = "setup_timeout_seconds"
        case credentialProfile = "credential_profile"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case readyAt = "ready_at"
        case idleTimeoutSeconds = "idle_timeout_seconds"
        case ttlSeconds = "ttl_seconds"
        case expiresAt = "expires_at"
        case lastActivityAt = "last_activity_at"
        case network
        case credentialMode = "credential_mode"
        case image
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        plan = try c.decode(String.self, forKey: .plan)
        state = try c.decode(DevboxState.self, forKey: .state)
        repositories = try c.decode([DevboxRepository].self, forKey: .repositories)
        envKeys = try c.decode([String].self, forKey: .envKeys)
        setupCommands = try c.decode([String].self, forKey: .setupCommands)
        setupTimeoutSeconds = try c.decode(Int.self, forKey: .setupTimeoutSeconds)
        credentialProfile = try c.decode(CredentialProfile.self, forKey: .credentialProfile)
        createdAt = try c.decode(Date.self, forKey: .createdAt)
        updatedAt = try c.decode(Date.self, forKey: .updatedAt)
        readyAt = try c.decodeIfPresent(Date.self, forKey: .readyAt)
        error = try c.decodeIfPresent(DevboxError.self, forKey: .error)
        idleTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .idleTimeoutSeconds)
        ttlSeconds = try c.decodeIfPresent(Int.self, forKey: .ttlSeconds)
        expiresAt = try c.decodeIfPresent(Date.self, forKey: .expiresAt)
        lastActivityAt = try c.decodeIfPresent(Date.self, forKey: .lastActivityAt)
        // A server from before per-box networks sends none: its boxes reach everything.
        network = try c.decodeIfPresent(DevboxNetwork.self, forKey: .network) ?? .allowAll
        // A server from before issue 19 sends none: its tokens went into the box.
        credentialMode = try c.decodeIfPresent(String.self, forKey: .credentialMode) ?? "env"
        image = try c.decodeIfPresent(String.self, forKey: .image)
    }

    public func encode(to encoder: any Encoder) throws {
        // Optional fields are written as explicit nulls so clients see a stable shape.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(plan, forKey: .plan)
        try c.encode(state, forKey: .state)
        try c.encode(repositories, forKey: .repositories)
        try c.encode(envKeys, forKey: .envKeys)
        try c.encode(setupCommands, forKey: .setupCommands)
        try c.encode(setupTimeoutSeconds, forKey: .setupTimeoutSeconds)
        try c.encode(credentialProfile, forKey: .credentialProfile)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
        try c.encode(readyAt, forKey: .readyAt)
        try c.encode(error, forKey: .error)
        try c.encode(idleTimeoutSeconds, forKey: .idleTimeoutSeconds)
        try c.encode(ttlSeconds, forKey: .ttlSeconds)
        try c.encode(expiresAt, forKey: .expiresAt)
        try c.encode(lastActivityAt, forKey: .lastActivityAt)
        try c.encode(network, forKey: .network)
        try c.encode(credentialMode, forKey: .credentialMode)
        try c.encode(image, forKey: .image)
    }
}

/// The five provisioning steps, in order.
public enum OperationKind: String, Codable, Sendable, CaseIterable {
    case provision
    case injectCredentials = "inject_credentials"
    case cloneRepositories = "clone_repositories"
    case runSetupCommands = "run_setup_commands"
    case publishAccess = "publish_access"
}

public enum OperationStatus: String, Codable, Sendable, CaseIterable {
    case pending, running, succeeded, failed, skipped
    public var isFinished: Bool { self == .succeeded || self == .failed || self == .skipped }
}

/// One provisioning step of a devbox.
public struct DevboxOperation: Codable, Sendable, Equatable {
    public var id: String
    public var devboxId: String
    public var name: OperationKind
    public var status: OperationStatus
    public var startedAt: Date?
    public var finishedAt: Date?
    public var output: String
    public var outputTruncated: Bool
    public var error: String?

    public init(
        id: String, devboxId: String, name: OperationKind, status: OperationStatus, startedAt: Date?,
        finishedAt: Date?, output: String, outputTruncated: Bool, error: String?
    ) {
        self.id = id
        self.devboxId = devboxId
        self.name = name
        self.status = status
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.output = output
        self.outputTruncated = outputTruncated
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case id, name, status, output, error
        case devboxId = "devbox_id"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case outputTruncated = "output_truncated"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(devboxId, forKey: .devboxId)
        try c.encode(name, forKey: .name)
        try c.encode(status, forKey: .status)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(output, forKey: .output)
        try c.encode(outputTruncated, forKey: .outputTruncated)
        try c.encode(error, forKey: .error)
    }
}

/// `GET /api/v1/devboxes` body.
/// `GET /api/v1/devboxes?state=…&limit=…&cursor=…` body: a page and the next page's cursor.
public struct DevboxPage: Codable, Sendable {
    public var devboxes: [Devbox]
    public var nextCursor: String?
    public init(devboxes: [Devbox], nextCursor: String?) {
        self.devboxes = devboxes
        self.nextCursor = nextCursor
    }
    enum CodingKeys: String, CodingKey { case devboxes, nextCursor = "next_cursor" }
}

public struct DevboxList: Codable, Sendable {
    public var devboxes: [Devbox]
    public init(devboxes: [Devbox]) { self.devboxes = devboxes }
}

/// `GET /api/v1/devboxes/:id/operations` body.
public struct OperationList: Codable, Sendable {
    public var operations: [DevboxOperation]
    public init(operations: [DevboxOperation]) { self.operations = operations }
}
