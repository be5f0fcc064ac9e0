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

    /// How often `wait_for_ready` polls this backend.
    var pollInterval: Duration { get }
}

extension DevboxBackend {
    public var pollInterval: Duration { .seconds(1) }
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
