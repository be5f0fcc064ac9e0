import DevboxModel
import Foundation
import Synchronization
import Testing
import Transport

@testable import DevboxTools

/// A backend for the snapshot tools: records what they send, answers like the REST API.
final class SnapshotFake: DevboxBackend {
    struct Calls: Sendable {
        var snapshots: [(String, String)] = []
        var forks: [(String, ForkDevboxRequest, InjectionTokens)] = []
        var created: [CreateDevboxRequest] = []
    }
    let calls = Mutex(Calls())
    let profile: CredentialProfile
    let refusal: DevboxAPIError?

    init(profile: CredentialProfile = CredentialProfile(), refusal: DevboxAPIError? = nil) {
        self.profile = profile
        self.refusal = refusal
    }

    static let at = Date(timeIntervalSince1970: 1_760_000_000)

    func box(_ id: String, name: String = "box") -> Devbox {
        Devbox(
            id: id, name: name, plan: "small", state: .requested, repositories: [], envKeys: [], setupCommands: [],
            setupTimeoutSeconds: 900, credentialProfile: profile, createdAt: Self.at, updatedAt: Self.at, readyAt: nil,
            error: nil)
    }

    func snapshot(_ devboxId: String, _ name: String) -> Snapshot {
        Snapshot(id: "snap_1", name: name, devboxId: devboxId, image: "debian", sizeBytes: 3 << 20, createdAt: Self.at)
    }

    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        if let refusal { throw refusal }
        calls.withLock { $0.snapshots.append((devboxId, name)) }
        return snapshot(devboxId, name)
    }

    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        if let refusal { throw refusal }
        calls.withLock { $0.forks.append((id, request, tokens)) }
        return ForkResult(
            snapshot: snapshot(id, request.name ?? "auto"),
            devboxes: (1...request.count).map { box("dbx_f\($0)", name: "\(request.name ?? "auto")-\($0)") })
    }

    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox {
        calls.withLock { $0.created.append(request) }
        return box("dbx_new")
    }
    func devbox(id: String) async throws -> Devbox { box(id) }
    func listDevboxes() async throws -> [Devbox] { [] }
    func deleteDevbox(id: String) async throws {}
    func operations(devboxId: String) async throws -> [DevboxOperation] { [] }
    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession { throw Unsupported() }
    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] { [] }
    func revokeSession(devboxId: String, sessionId: String) async throws {}
    func listRepositories(devboxId: String) async throws -> [DevboxRepository] { [] }
    func setSSHKey(_ publicKey: String) async throws {}
    func profile() async throws -> UserProfile { throw Unsupported() }
    func listGitHubRepos() async throws -> [GitHubRepo] { [] }

    struct Unsupported: Error {}
}

@Suite("MCP snapshot tools")
struct SnapshotToolTests {
    static func call(
        _ backend: SnapshotFake, _ tool: String, _ arguments: JSONValue, credentials: InjectionTokens = InjectionTokens()
    ) async throws -> MCPToolResult {
        let provider = DevboxToolProvider(environment: { _ in DevboxToolEnvironment(backend: backend, credentials: credentials) })
        return try await provider.call(tool, arguments: arguments, context: .testing())
    }

    @Test("snapshot_devbox sends devbox_id and name and returns the snapshot as the API does")
    func snapshot() async throws {
        let fake = SnapshotFake()
        let r = try await Self.call(fake, "snapshot_devbox", ["devbox_id": "dbx_1", "name": "deps"])
        #expect(!r.isError, "\(r.text)")
        #expect(fake.calls.withLock { $0.snapshots.map { "\($0.0)/\($0.1)" } } == ["dbx_1/deps"])
        let expected = try JSONValue(encoding: fake.snapshot("dbx_1", "deps"), encoder: DevboxJSON.encoder())
        #expect(r.structuredContent == expected)
        #expect(r.structuredContent?["size_bytes"] == .int(3 << 20))
    }

    @Test("snapshot_devbox: a name is required; a taken name asks for another")
    func snapshotErrors() async throws {
        let missing = try await Self.call(SnapshotFake(), "snapshot_devbox", ["devbox_id": "dbx_1"])
        #expect(missing.isError && missing.text.contains("name"))
        let taken = SnapshotFake(refusal: DevboxAPIError(status: 409, code: "conflict", message: "you already have a snapshot named 'deps'"))
        let r = try await Self.call(taken, "snapshot_devbox", ["devbox_id": "dbx_1", "name": "deps"])
        #expect(r.isError && r.text.contains("another name") && r.text.contains("deps"))
    }

    @Test("fork_devbox sends count, name and copy_env; count defaults to 1 and is bounded by the schema")
    func fork() async throws {
        let fake = SnapshotFake()
        let r = try await Self.call(fake, "fork_devbox", ["devbox_id": "dbx_1", "count": 3, "name": "try", "copy_env": true])
        #expect(!r.isError, "\(r.text)")
        let sent = try #require(fake.calls.withLock { $0.forks.first })
        #expect(sent.0 == "dbx_1" && sent.1 == ForkDevboxRequest(count: 3, name: "try", copyEnv: true))
        #expect(r.structuredContent?["snapshot"]?["name"] == "try")
        #expect(r.structuredContent?["devboxes"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["try-1", "try-2", "try-3"])
        // The devboxes are the API's devbox objects (get_devbox's shape).
        #expect(r.structuredContent?["devboxes"]?.arrayValue?.first == ToolJSON.devbox(fake.box("dbx_f1", name: "try-1")))

        _ = try await Self.call(fake, "fork_devbox", ["devbox_id": "dbx_1"])
        #expect(fake.calls.withLock { $0.forks.last?.1 } == ForkDevboxRequest(count: 1))
        for bad: JSONValue in [0, 33, 1.5] {
            let refused = try await Self.call(fake, "fork_devbox", ["devbox_id": "dbx_1", "count": bad])
            #expect(refused.isError && refused.text.contains("count"), "\(bad)")
        }
        #expect(fake.calls.withLock { $0.forks.count } == 2)
    }

    @Test("fork_devbox passes this server's AI tokens only for what the original's profile asks for")
    func forkTokens() async throws {
        let held = InjectionTokens(claudeToken: "sk-ant-held-0123456789", codexToken: "sk-codex-held-0123456789")
        let claudeOnly = SnapshotFake(profile: CredentialProfile(injectClaudeToken: true))
        let r = try await Self.call(claudeOnly, "fork_devbox", ["devbox_id": "dbx_1"], credentials: held)
        #expect(!r.isError)
        #expect(claudeOnly.calls.withLock { $0.forks.first?.2 } == InjectionTokens(claudeToken: "sk-ant-held-0123456789"))
        // The held tokens never come back in the result, whatever the service echoed.
        #expect(!r.text.contains("sk-ant-held-0123456789"))

        let none = SnapshotFake()
        _ = try await Self.call(none, "fork_devbox", ["devbox_id": "dbx_1"], credentials: held)
        #expect(none.calls.withLock { $0.forks.first?.2 } == InjectionTokens())
    }

    @Test("create_devbox passes snapshot and image through to the request")
    func createWithSnapshot() async throws {
        let fake = SnapshotFake()
        _ = try await Self.call(fake, "create_devbox", ["name": "n", "snapshot": "deps"])
        _ = try await Self.call(fake, "create_devbox", ["name": "m", "image": "alpine"])
        let sent = fake.calls.withLock { $0.created }
        #expect(sent.map(\.snapshot) == ["deps", nil])
        #expect(sent.map(\.image) == [nil, "alpine"])
    }
}
