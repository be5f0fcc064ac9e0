import DevboxModel
import DevboxService
import DevboxTools

/// The services the MCP tools call in process (`/mcp` inside `devbox serve`).
struct ToolServices: Sendable {
    let reads: DevboxReads
    let commands: DevboxCommands
    let runtime: RuntimeService
    let access: AccessService
    let github: GitHubService
    let snapshots: SnapshotService
}

/// The MCP tools' backend inside `devbox serve`: the in-process services, acting for the
/// principal that authenticated the `/mcp` request. No HTTP round trip.
struct CoreToolBackend: DevboxBackend {
    let services: ToolServices
    let principal: Principal
    /// Where this caller reaches the service (`DEVBOX_PUBLIC_URL`, else the `/mcp` request's
    /// Host): the base of port URLs.
    var baseURL: String? = nil

    var reads: DevboxReads { services.reads }
    var commands: DevboxCommands { services.commands }
    var runtime: RuntimeService { services.runtime }
    var access: AccessService { services.access }
    var github: GitHubService { services.github }
    var snapshots: SnapshotService { services.snapshots }
    /// Without notifications: in-process reads are cheap; poll often so progress is prompt.
    var pollInterval: Duration { .milliseconds(200) }

    func changeFeed(devboxId: String) -> (any DevboxChangeFeed)? {
        CoreChangeFeed(subscription: reads.changes(devboxId: devboxId))
    }

    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await commands.createDevbox(principal, request, tokens: tokens) }
    }

    func devbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await reads.devbox(principal, id: id) }
    }

    func listDevboxes() async throws -> [Devbox] {
        try await api { () async throws(ServiceError) in try await reads.listDevboxes(principal) }
    }

    func deleteDevbox(id: String) async throws {
        try await api { () async throws(ServiceError) in try await commands.deleteDevbox(principal, id: id) }
    }

    func operations(devboxId: String) async throws -> [DevboxOperation] {
        try await api { () async throws(ServiceError) in try await reads.operations(principal, id: devboxId) }
    }

    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession {
        try await api { () async throws(ServiceError) in
            try await access.createSession(principal, devboxId: devboxId, ttlSeconds: ttlSeconds)
        }
    }

    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] {
        try await api { () async throws(ServiceError) in try await access.listSessions(principal, devboxId: devboxId) }
    }

    func revokeSession(devboxId: String, sessionId: String) async throws {
        try await api { () async throws(ServiceError) in
            try await access.revokeSession(principal, devboxId: devboxId, sessionId: sessionId)
        }
    }

    func listRepositories(devboxId: String) async throws -> [DevboxRepository] {
        try await api { () async throws(ServiceError) in try await reads.devboxRepositories(principal, id: devboxId) }
    }

    func setSSHKey(_ publicKey: String) async throws {
        try await api { () async throws(ServiceError) in try await access.setSSHKey(principal, publicKey: publicKey) }
    }

    func profile() async throws -> UserProfile {
        try await api { () async throws(ServiceError) in try await reads.profile(principal) }
    }

    func listGitHubRepos() async throws -> [GitHubRepo] {
        try await api { () async throws(ServiceError) in try await github.gitHubRepos(principal) }
    }

    func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws
        -> ExecResult
    {
        try await api { () async throws(ServiceError) in
            try await runtime.exec(principal, id: devboxId, request, onOutput: onOutput)
        }
    }

    func stopDevbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await runtime.stopDevbox(principal, id: id) }
    }

    func startDevbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await runtime.startDevbox(principal, id: id) }
    }

    func network(devboxId: String) async throws -> DevboxNetwork {
        try await api { () async throws(ServiceError) in try await reads.network(principal, id: devboxId) }
    }

    func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        try await api { () async throws(ServiceError) in try await runtime.setNetwork(principal, id: devboxId, network) }
    }

    func stats(devboxId: String) async throws -> DevboxStats {
        try await api { () async throws(ServiceError) in try await runtime.devboxStats(principal, id: devboxId) }
    }

    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        try await api { () async throws(ServiceError) in try await snapshots.createSnapshot(principal, devboxId: devboxId, name: name) }
    }

    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        try await api { () async throws(ServiceError) in
            let r = try await commands.forkDevbox(principal, devboxId: id, request, tokens: tokens)
            return ForkResult(snapshot: r.snapshot, devboxes: r.devboxes)
        }
    }

    func portURL(devboxId: String, port: Int) async throws -> String {
        let box = try await devbox(id: devboxId)
        guard let baseURL else { throw DevboxBackendUnavailable("This server does not know the address it is reached at; set DEVBOX_PUBLIC_URL.") }
        return PortURL.make(base: baseURL, devboxId: box.id, port: port)
    }

    func readPath(devboxId: String, path: String) async throws -> FileContent {
        try await api { () async throws(ServiceError) in try await runtime.readPath(principal, id: devboxId, path: path) }
    }

    func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult {
        try await api { () async throws(ServiceError) in
            try await runtime.writeFile(principal, id: devboxId, path: path, bytes: bytes, mode: mode)
        }
    }

    /// Runs a service call, reporting its refusal in the API's error shape.
    private func api<T>(_ body: () async throws(ServiceError) -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw DevboxAPIError(status: error.statusCode, code: error.code, message: error.message, field: error.field)
        }
    }
}

/// The database's change subscription (this process's writes) as the tools' change feed.
struct CoreChangeFeed: DevboxChangeFeed {
    let subscription: DevboxChangeSubscription

    func next(timeout: Duration) async -> Bool {
        await subscription.next(timeout: timeout) != .shutdown
    }

    func cancel() { subscription.cancel() }
}
