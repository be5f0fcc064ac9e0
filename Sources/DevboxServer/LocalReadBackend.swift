import DevboxModel
import DevboxService
import DevboxTools
import Logging

/// Read access to a data directory's devboxes from another process on the same machine
/// (`devbox mcp`): the authenticator and the devbox reads over the same SQLite database
/// (WAL: readers in other processes are safe) — no runtime, no secrets, no workers. Anything
/// that would change state goes through the running `devbox serve` instead.
public struct LocalReadBackend: Sendable {
    let authenticator: Authenticator
    let reads: DevboxReads

    public init(dataDirectory: String, logger: Logger) throws {
        let database = try AppDatabase(path: dataDirectory + "/devbox.sqlite")
        authenticator = Authenticator(database: database, userVerifier: nil, logger: logger)
        reads = DevboxReads(database: database, logger: logger)
    }

    /// A tools backend for the holder of `providerToken` (401 as `DevboxAPIError` if it is not live).
    /// Only its reads may be used (`ReadToolBackend`): writes go to the serve.
    public func backend(providerToken: String) async throws -> any DevboxBackend {
        do {
            return ReadToolBackend(
                reads: reads, principal: try await authenticator.authenticate(providerToken: providerToken, bearer: nil))
        } catch {
            throw DevboxAPIError(status: error.statusCode, code: error.code, message: error.message, field: error.field)
        }
    }
}

/// The MCP tools' reads of another process's database, for one principal. The writes happen
/// in the serve's process, out of this process's sight: no change feed (`wait_for_ready`
/// polls). Everything that is not a read is refused: `devbox mcp` sends it to the serve.
struct ReadToolBackend: DevboxBackend {
    let reads: DevboxReads
    let principal: Principal

    /// In-process reads are cheap; poll often so progress is prompt.
    var pollInterval: Duration { .milliseconds(200) }

    func devbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await reads.devbox(principal, id: id) }
    }

    func listDevboxes() async throws -> [Devbox] {
        try await api { () async throws(ServiceError) in try await reads.listDevboxes(principal) }
    }

    func operations(devboxId: String) async throws -> [DevboxOperation] {
        try await api { () async throws(ServiceError) in try await reads.operations(principal, id: devboxId) }
    }

    func listRepositories(devboxId: String) async throws -> [DevboxRepository] {
        try await api { () async throws(ServiceError) in try await reads.devboxRepositories(principal, id: devboxId) }
    }

    func profile() async throws -> UserProfile {
        try await api { () async throws(ServiceError) in try await reads.profile(principal) }
    }

    func network(devboxId: String) async throws -> DevboxNetwork {
        try await api { () async throws(ServiceError) in try await reads.network(principal, id: devboxId) }
    }

    // Not reads: `devbox mcp` sends these to the serve.
    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox { throw Self.readOnly }
    func deleteDevbox(id: String) async throws { throw Self.readOnly }
    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession { throw Self.readOnly }
    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] { throw Self.readOnly }
    func revokeSession(devboxId: String, sessionId: String) async throws { throw Self.readOnly }
    func setSSHKey(_ publicKey: String) async throws { throw Self.readOnly }
    func listGitHubRepos() async throws -> [GitHubRepo] { throw Self.readOnly }

    static let readOnly = DevboxBackendUnavailable("This reader of the data directory only reads; the devbox serve does the rest.")

    /// Runs a read, reporting its refusal in the API's error shape.
    private func api<T>(_ body: () async throws(ServiceError) -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw DevboxAPIError(status: error.statusCode, code: error.code, message: error.message, field: error.field)
        }
    }
}
