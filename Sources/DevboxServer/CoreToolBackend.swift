import DevboxModel
import DevboxService
import DevboxTools

/// The MCP tools' backend inside `devbox serve`: the in-process core, acting for the
/// principal that authenticated the `/mcp` request. No HTTP round trip.
struct CoreToolBackend: DevboxBackend {
    let core: DevboxCore
    let principal: Principal
    /// Whether this process makes the writes, so the core's change notifications see them
    /// (`devbox serve`); false for a reader of another process's database (`LocalReadBackend`).
    var notifies = true
    /// Where this caller reaches the service (`DEVBOX_PUBLIC_URL`, else the `/mcp` request's
    /// Host): the base of port URLs.
    var baseURL: String? = nil

    /// Without notifications: in-process reads are cheap; poll often so progress is prompt.
    var pollInterval: Duration { .milliseconds(200) }

    func changeFeed(devboxId: String) -> (any DevboxChangeFeed)? {
        notifies ? CoreChangeFeed(subscription: core.changes(devboxId: devboxId)) : nil
    }

    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await core.createDevbox(principal, request, tokens: tokens) }
    }

    func devbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await core.devbox(principal, id: id) }
    }

    func listDevboxes() async throws -> [Devbox] {
        try await api { () async throws(ServiceError) in try await core.listDevboxes(principal) }
    }

    func deleteDevbox(id: String) async throws {
        try await api { () async throws(ServiceError) in try await core.deleteDevbox(principal, id: id) }
    }

    func operations(devboxId: String) async throws -> [DevboxOperation] {
        try await api { () async throws(ServiceError) in try await core.operations(principal, id: devboxId) }
    }

    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession {
        try await api { () async throws(ServiceError) in
            try await core.createSession(principal, devboxId: devboxId, ttlSeconds: ttlSeconds)
        }
    }

    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] {
        try await api { () async throws(ServiceError) in try await core.listSessions(principal, devboxId: devboxId) }
    }

    func revokeSession(devboxId: String, sessionId: String) async throws {
        try await api { () async throws(ServiceError) in
            try await core.revokeSession(principal, devboxId: devboxId, sessionId: sessionId)
        }
    }

    func listRepositories(devboxId: String) async throws -> [DevboxRepository] {
        try await api { () async throws(ServiceError) in try await core.devboxRepositories(principal, id: devboxId) }
    }

    func setSSHKey(_ publicKey: String) async throws {
        try await api { () async throws(ServiceError) in try await core.setSSHKey(principal, publicKey: publicKey) }
    }

    func profile() async throws -> UserProfile {
        try await api { () async throws(ServiceError) in try await core.profile(principal) }
    }

    func listGitHubRepos() async throws -> [GitHubRepo] {
        try await api { () async throws(ServiceError) in try await core.gitHubRepos(principal) }
    }

    func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws
        -> ExecResult
    {
        try await api { () async throws(ServiceError) in
            try await core.exec(principal, id: devboxId, request, onOutput: onOutput)
        }
    }

    func stopDevbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await core.stopDevbox(principal, id: id) }
    }

    func startDevbox(id: String) async throws -> Devbox {
        try await api { () async throws(ServiceError) in try await core.startDevbox(principal, id: id) }
    }

    func network(devboxId: String) async throws -> DevboxNetwork {
        try await api { () async throws(ServiceError) in try await core.network(principal, id: devboxId) }
    }

    func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        try await api { () async throws(ServiceError) in try await core.setNetwork(principal, id: devboxId, network) }
    }

    func stats(devboxId: String) async throws -> DevboxStats {
        try await api { () async throws(ServiceError) in try await core.devboxStats(principal, id: devboxId) }
    }

    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        try await api { () async throws(ServiceError) in try await core.createSnapshot(principal, devboxId: devboxId, name: name) }
    }

    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        try await api { () async throws(ServiceError) in
            let r = try await core.forkDevbox(principal, devboxId: id, request, tokens: tokens)
            return ForkResult(snapshot: r.snapshot, devboxes: r.devboxes)
        }
    }

    func portURL(devboxId: String, port: Int) async throws -> String {
        let box = try await devbox(id: devboxId)
        guard let baseURL else { throw DevboxBackendUnavailable("This server does not know the address it is reached at; set DEVBOX_PUBLIC_URL.") }
        return PortURL.make(base: baseURL, devboxId: box.id, port: port)
    }

    func readPath(devboxId: String, path: String) async throws -> FileContent {
        try await api { () async throws(ServiceError) in try await core.readPath(principal, id: devboxId, path: path) }
    }

    func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult {
        try await api { () async throws(ServiceError) in
            try await core.writeFile(principal, id: devboxId, path: path, bytes: bytes, mode: mode)
        }
    }

    /// Runs a core call, reporting its refusal in the API's error shape.
    private func api<T>(_ body: () async throws(ServiceError) -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw DevboxAPIError(status: error.statusCode, code: error.code, message: error.message, field: error.field)
        }
    }
}

/// The core's change subscription as the tools' change feed.
struct CoreChangeFeed: DevboxChangeFeed {
    let subscription: DevboxChangeSubscription

    func next(timeout: Duration) async -> Bool {
        await subscription.next(timeout: timeout) != .shutdown
    }

    func cancel() { subscription.cancel() }
}
