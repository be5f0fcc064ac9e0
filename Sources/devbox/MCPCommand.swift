import ArgumentParser
import DevboxClient
import DevboxModel
import DevboxTools
import Foundation
import Logging
import Transport

/// `devbox mcp`: the devbox MCP tools over stdio, for Claude Code, Codex or any MCP client.
struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve the devbox tools over MCP (stdio) for AI agents.",
        discussion: """
            Without --server it works on the local data directory: it connects to the `devbox serve` of that \
            directory (found through <data>/serve.json) or starts one in the background (log: <data>/serve.log), \
            authenticating with a provider token it creates once in <data>/mcp-token. With --server it drives a \
            remote devbox deployment through the REST API.

            The Claude/Codex tokens that create_devbox can inject come from this process's ANTHROPIC_API_KEY and \
            OPENAI_API_KEY. stdout carries only MCP messages; logs go to stderr (DEVBOX_LOG_LEVEL, default warning).
            """)

    @OptionGroup var data: DataDirOptions

    @Option(help: "Drive the devbox server at this URL (e.g. https://devbox.example.com) instead of the local data dir.")
    var server: String?

    @Option(
        name: .customLong("provider-token"),
        help: "Provider token for --server (env DEVBOX_PROVIDER_TOKEN; prefer the variable: arguments are visible to other users).")
    var providerToken: String?

    @Option(name: .customLong("user-token"), help: "User JWT for --server, sent as a bearer token (env DEVBOX_USER_TOKEN).")
    var userToken: String?

    func run() async throws {
        var env = ProcessInfo.processInfo.environment
        if (env["DEVBOX_LOG_LEVEL"] ?? "").isEmpty { env["DEVBOX_LOG_LEVEL"] = "warning" }
        let logger = makeLogger(env)
        let credentials = InjectionTokens(
            claudeToken: env["ANTHROPIC_API_KEY"].flatMap { $0.isEmpty ? nil : $0 },
            codexToken: env["OPENAI_API_KEY"].flatMap { $0.isEmpty ? nil : $0 })

        let backend: any DevboxBackend
        if let server {
            guard let url = URL(string: server), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                url.host?.isEmpty == false
            else { fail("--server must be an http(s) URL, got '\(server)'") }
            guard let token = providerToken ?? env["DEVBOX_PROVIDER_TOKEN"].flatMap({ $0.isEmpty ? nil : $0 }) else {
                fail("--server needs a provider token: set DEVBOX_PROVIDER_TOKEN (or pass --provider-token)")
            }
            let user = userToken ?? env["DEVBOX_USER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            backend = ClientToolBackend(client: DevboxClient(providerToken: token, userToken: user, baseURL: url))
        } else {
            backend = LocalBackend(service: LocalService(dataDir: data.resolved, logger: logger))
        }

        var options = MCPServerOptions()
        options.logger = logger
        let mcp = try DevboxMCPServer.make(
            environment: { _ in DevboxToolEnvironment(backend: backend, credentials: credentials) }, options: options)
        var stdio = MCPStdioTransport.Options()
        // stdin closing means the agent is gone (it exited, or was killed mid-call): cancel what
        // is still running — a run_command's command is killed, a wait ends — and exit, rather
        // than live on as an orphan for up to a tool's whole timeout. The moment of grace lets
        // a client that only closed its end of stdin still read quick answers.
        stdio.eofGracePeriod = .milliseconds(500)
        await MCPStdioTransport.run(server: mcp, options: stdio)
    }
}

/// The local data directory as a backend: state changes through its serve (found or started
/// on first use, found again when it went away), reads from its database; a provider token
/// someone revoked is replaced.
struct LocalBackend: DevboxBackend {
    let service: LocalService

    // Writes through the serve. Not retried after a lost connection: the first attempt may have worked.
    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox {
        try await local(retry: false) { try await $0.serve.createDevbox(request, tokens: tokens) }
    }
    func deleteDevbox(id: String) async throws { try await local { try await $0.serve.deleteDevbox(id: id) } }
    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession {
        try await local(retry: false) { try await $0.serve.createSession(devboxId: devboxId, ttlSeconds: ttlSeconds) }
    }
    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] {
        try await local { try await $0.serve.listSessions(devboxId: devboxId) }
    }
    func revokeSession(devboxId: String, sessionId: String) async throws {
        try await local { try await $0.serve.revokeSession(devboxId: devboxId, sessionId: sessionId) }
    }
    func setSSHKey(_ publicKey: String) async throws { try await local { try await $0.serve.setSSHKey(publicKey) } }
    func listGitHubRepos() async throws -> [GitHubRepo] { try await local { try await $0.serve.listGitHubRepos() } }
    func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws
        -> ExecResult
    {
        try await local(retry: false) { try await $0.serve.exec(devboxId: devboxId, request, onOutput: onOutput) }
    }
    func stopDevbox(id: String) async throws -> Devbox { try await local { try await $0.serve.stopDevbox(id: id) } }
    func network(devboxId: String) async throws -> DevboxNetwork { try await local { try await $0.reader.network(devboxId: devboxId) } }
    func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        try await local(retry: false) { try await $0.serve.setNetwork(devboxId: devboxId, network) }
    }
    func stats(devboxId: String) async throws -> DevboxStats { try await local { try await $0.serve.stats(devboxId: devboxId) } }
    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        try await local(retry: false) { try await $0.serve.createSnapshot(devboxId: devboxId, name: name) }
    }
    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        try await local(retry: false) { try await $0.serve.forkDevbox(id: id, request, tokens: tokens) }
    }
    func portURL(devboxId: String, port: Int) async throws -> String {
        try await local { try await $0.serve.portURL(devboxId: devboxId, port: port) }
    }
    func startDevbox(id: String) async throws -> Devbox { try await local { try await $0.serve.startDevbox(id: id) } }
    func readPath(devboxId: String, path: String) async throws -> FileContent {
        try await local { try await $0.serve.readPath(devboxId: devboxId, path: path) }
    }
    func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult {
        try await local { try await $0.serve.writeFile(devboxId: devboxId, path: path, bytes: bytes, mode: mode) }
    }

    // Reads from the database.
    func devbox(id: String) async throws -> Devbox { try await local { try await $0.reader.devbox(id: id) } }
    func listDevboxes() async throws -> [Devbox] { try await local { try await $0.reader.listDevboxes() } }
    func operations(devboxId: String) async throws -> [DevboxOperation] {
        try await local { try await $0.reader.operations(devboxId: devboxId) }
    }
    func listRepositories(devboxId: String) async throws -> [DevboxRepository] {
        try await local { try await $0.reader.listRepositories(devboxId: devboxId) }
    }
    func profile() async throws -> UserProfile { try await local { try await $0.reader.profile() } }

    /// Reads are local database queries: poll often so progress is prompt.
    var pollInterval: Duration { .milliseconds(250) }

    /// The serve's change notifications do not reach this process, but its long-poll does:
    /// `wait_for_ready` wakes the moment the devbox settles, as it does over `/mcp`, instead of
    /// at the next poll; the steps' progress is still read every `pollInterval`.
    func changeFeed(devboxId: String) -> (any DevboxChangeFeed)? {
        let service = self.service
        return LongPollFeed(tick: pollInterval) { seconds in
            try await service.connect().serve.client.devboxes.wait(devboxId, timeoutSeconds: seconds)
        }
    }

    private func local<T>(retry: Bool = true, _ body: (LocalService.Connection) async throws -> T) async throws -> T {
        var reconnected = false
        var tokenReplaced = false
        while true {
            let c = try await service.connect()
            do {
                return try await body(c)
            } catch let e as ServerUnreachable {
                await service.invalidate()
                guard retry, !reconnected else {
                    throw DevboxBackendUnavailable(
                        "The local devbox serve stopped answering (\(e.reason)). Call the tool again: it will be found or restarted.")
                }
                reconnected = true
            } catch let e as DevboxAPIError where e.status == 401 {
                if let created = c.tokenCreated, ContinuousClock.now - created < .seconds(5) {
                    // A token created a moment ago reaches the serve's token cache within ~2 s.
                    try await Task.sleep(for: .milliseconds(250))
                    continue
                }
                guard !tokenReplaced else { throw e }
                try await service.replaceToken(c.token)
                tokenReplaced = true
            }
        }
    }
}
