import DevboxModel

/// What the MCP tools need from a devbox service, bound to one caller: the in-process
/// core (`/mcp` inside `devbox serve`) or a server reached through the client SDK
/// (`devbox mcp`).
///
/// Errors: `DevboxAPIError` when the service refuses (status, code, message, field — the
/// REST API's error shape), `CancellationError` when the calling task is cancelled. Any
/// other error is reported to the agent as "the devbox service is unavailable".
public protocol DevboxBackend: Sendable {
    /// `POST /api/v1/devboxes`; `tokens` are the server-side AI tokens to inject.
    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox
    func devbox(id: String) async throws -> Devbox
    func listDevboxes() async throws -> [Devbox]
    /// Destroys the devbox (idempotent).
    func deleteDevbox(id: String) async throws
    func operations(devboxId: String) async throws -> [DevboxOperation]
    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession
    func listSessions(devboxId: String) async throws -> [AccessSessionInfo]
    func revokeSession(devboxId: String, sessionId: String) async throws
    func listRepositories(devboxId: String) async throws -> [DevboxRepository]
    func setSSHKey(_ publicKey: String) async throws
    func profile() async throws -> UserProfile
    func listGitHubRepos() async throws -> [GitHubRepo]

    /// `POST …/exec`: runs a command; `onOutput` (if the backend can stream) sees output as it comes.
    func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws -> ExecResult
    /// `POST …/stop` and `POST …/start`: the devbox afterwards.
    func stopDevbox(id: String) async throws -> Devbox
    func startDevbox(id: String) async throws -> Devbox
    /// `GET …/files`: a file's bytes or a directory listing.
    func readPath(devboxId: String, path: String) async throws -> FileContent
    /// `PUT …/files`.
    func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult

    /// `GET …/network`: the devbox's egress policy.
    func network(devboxId: String) async throws -> DevboxNetwork
    /// `PATCH …/network`: replaces the egress policy; the policy now in force.
    func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork
    /// The URL of `port` of a ready devbox (`/api/v1/devboxes/:id/ports/:port/`), on the
    /// address this backend reaches the service at.
    func portURL(devboxId: String, port: Int) async throws -> String
    /// What the devbox uses now (`GET /api/v1/devboxes/:id/stats`).
    func stats(devboxId: String) async throws -> DevboxStats
    /// `POST …/snapshots` (issue 23): the devbox's files frozen as a named snapshot.
    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot
    /// `POST …/fork`: a snapshot and `request.count` devboxes from it; `tokens` as on create.
    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult

    /// How often `wait_for_ready` polls this backend when it offers no change feed.
    var pollInterval: Duration { get }

    /// Wake-ups when the devbox changes, where the backend can tell without polling (the
    /// service in this process); nil where it cannot (another process's database, a remote
    /// server): then `wait_for_ready` polls every `pollInterval`.
    func changeFeed(devboxId: String) -> (any DevboxChangeFeed)?
}

/// Tells a waiter that a devbox may have changed. Made before the waiter's first read, so a
/// change between a read and the next wait is not missed.
public protocol DevboxChangeFeed: Sendable {
    /// Returns true when the devbox changed since the feed was made (or since the previous
    /// true), when `timeout` passed, or when the task was cancelled; false when the feed has
    /// ended for good (the service is shutting down): poll from then on.
    func next(timeout: Duration) async -> Bool
    /// Stops listening.
    func cancel()
}

extension DevboxBackend {
    public var pollInterval: Duration { .seconds(1) }
    public func changeFeed(devboxId: String) -> (any DevboxChangeFeed)? { nil }

    // Backends made before exec, files and stop/start (test fakes) refuse them.
    public func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws
        -> ExecResult
    { throw DevboxBackendUnavailable("This devbox backend cannot run commands.") }
    public func stopDevbox(id: String) async throws -> Devbox {
        throw DevboxBackendUnavailable("This devbox backend cannot stop devboxes.")
    }
    public func startDevbox(id: String) async throws -> Devbox {
        throw DevboxBackendUnavailable("This devbox backend cannot start devboxes.")
    }
    public func readPath(devboxId: String, path: String) async throws -> FileContent {
        throw DevboxBackendUnavailable("This devbox backend cannot read files.")
    }
    public func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult {
        throw DevboxBackendUnavailable("This devbox backend cannot write files.")
    }
    public func network(devboxId: String) async throws -> DevboxNetwork {
        throw DevboxBackendUnavailable("This devbox backend cannot read network policies.")
    }
    public func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        throw DevboxBackendUnavailable("This devbox backend cannot change network policies.")
    }
    public func portURL(devboxId: String, port: Int) async throws -> String {
        throw DevboxBackendUnavailable("This devbox backend cannot expose ports.")
    }
    public func stats(devboxId: String) async throws -> DevboxStats {
        throw DevboxBackendUnavailable("This devbox backend cannot read usage.")
    }
    public func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        throw DevboxBackendUnavailable("This devbox backend cannot take snapshots.")
    }
    public func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        throw DevboxBackendUnavailable("This devbox backend cannot fork devboxes.")
    }
}

/// The per-call surroundings of a tool: whom it acts for and which AI tokens the server holds.
public struct DevboxToolEnvironment: Sendable {
    public var backend: any DevboxBackend
    /// Claude/Codex tokens from the server side (the stdio process's environment, or the HTTP
    /// request's `X-Claude-Token`/`X-Codex-Token` headers) — never from tool arguments.
    public var credentials: InjectionTokens

    public init(backend: any DevboxBackend, credentials: InjectionTokens = InjectionTokens()) {
        self.backend = backend
        self.credentials = credentials
    }
}

/// Why a tool could not reach its backend at all (e.g. the local `devbox serve` did not start).
/// Its message is shown to the agent as is, so it must say what to do.
public struct DevboxBackendUnavailable: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
