import DevboxModel
import Foundation
import Synchronization
import Testing
import Transport

@testable import DevboxTools

/// A scripted backend: the devbox walks through `script` (one step per `devbox(id:)` call).
final class FakeBackend: DevboxBackend {
    struct Step: Sendable {
        var state: DevboxState
        var operations: [(OperationKind, OperationStatus, String)]
        var error: DevboxError? = nil
    }

    private let lock = Mutex<State>(State())
    struct State: Sendable {
        var script: [Step] = []
        var position = 0
        var created: [(CreateDevboxRequest, InjectionTokens)] = []
        var deleted: [String] = []
        var sshKey: String?
        var failNext: DevboxAPIError?
        var written: [(String, [UInt8], String?)] = []
    }

    let pollInterval: Duration
    /// Handed out by `changeFeed` (nil: the backend offers none, like a remote server).
    let feed: FakeFeed?

    init(script: [Step] = [FakeBackend.readyStep], pollInterval: Duration = .milliseconds(5), feed: FakeFeed? = nil) {
        self.pollInterval = pollInterval
        self.feed = feed
        lock.withLock { $0.script = script }
    }

    func changeFeed(devboxId: String) -> (any DevboxChangeFeed)? {
        feed?.made()
        return feed
    }

    static let readyStep = Step(
        state: .ready,
        operations: OperationKind.allCases.map { ($0, .succeeded, $0 == .runSetupCommands ? "hello from setup\n" : "") })

    var created: [(CreateDevboxRequest, InjectionTokens)] { lock.withLock { $0.created } }
    var deleted: [String] { lock.withLock { $0.deleted } }
    func failNext(_ e: DevboxAPIError) { lock.withLock { $0.failNext = e } }

    private func maybeFail() throws {
        if let e = lock.withLock({ s -> DevboxAPIError? in
            defer { s.failNext = nil }
            return s.failNext
        }) { throw e }
    }

    private var current: Step {
        lock.withLock { $0.script[min($0.position, $0.script.count - 1)] }
    }

    static let epoch = Date(timeIntervalSince1970: 1_760_000_000)

    func box(_ id: String, _ step: Step) -> Devbox {
        Devbox(
            id: id, name: "box", plan: "small", state: step.state,
            repositories: [
                DevboxRepository(
                    repoId: nil, fullName: "octo/hello", ref: "main", targetPath: "/workspace/hello", status: "cloned",
                    commit: "abc", error: nil)
            ], envKeys: ["FOO"], setupCommands: ["echo hello"], setupTimeoutSeconds: 900,
            credentialProfile: CredentialProfile(), createdAt: Self.epoch, updatedAt: Self.epoch,
            readyAt: step.state == .ready ? Self.epoch : nil, error: step.error)
    }

    func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws
        -> ExecResult
    {
        try maybeFail()
        onOutput?(ExecChunk(stream: .stdout, bytes: Array("first\n".utf8)))
        onOutput?(ExecChunk(stream: .stderr, bytes: Array("second\n".utf8)))
        return ExecResult(
            exitCode: 2, signal: nil, stdout: "first\n", stderr: "second\n", truncated: false, timedOut: false,
            durationMs: 12)
    }

    func stopDevbox(id: String) async throws -> Devbox {
        try maybeFail()
        return box(id, Step(state: .stopped, operations: []))
    }

    func startDevbox(id: String) async throws -> Devbox {
        try maybeFail()
        return box(id, Self.readyStep)
    }

    let networkSet = Mutex<DevboxNetwork?>(nil)

    func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        try maybeFail()
        networkSet.withLock { $0 = network }
        return network
    }

    func portURL(devboxId: String, port: Int) async throws -> String {
        try maybeFail()
        return PortURL.make(base: "http://127.0.0.1:8080/", devboxId: devboxId, port: port)
    }

    func stats(devboxId: String) async throws -> DevboxStats {
        try maybeFail()
        return DevboxStats(
            devboxId: devboxId, state: .ready, running: true, sampledAt: Date(timeIntervalSince1970: 1_700_000_000),
            cpuSeconds: 1.5, memoryBytes: 4 << 20, memoryPeakBytes: 8 << 20, memoryLimitBytes: 1 << 30, pids: 3,
            diskUsedBytes: 1 << 20, networkInBytes: 100, networkOutBytes: 200)
    }

    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        try maybeFail()
        return Snapshot(id: "snap_fake", name: name, devboxId: devboxId, image: "debian", sizeBytes: 1 << 20, createdAt: Self.epoch)
    }

    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        let snapshot = try await createSnapshot(devboxId: id, name: request.name ?? "fork")
        return ForkResult(snapshot: snapshot, devboxes: (1...request.count).map { box("dbx_fork\($0)", Step(state: .requested, operations: [])) })
    }

    func readPath(devboxId: String, path: String) async throws -> FileContent {
        try maybeFail()
        if path == "/workspace" {
            return .directory(
                FileListing(
                    path: path,
                    entries: [
                        FileEntry(
                            name: "a.txt", path: "/workspace/a.txt", type: "file", size: 6, mode: "0644",
                            modifiedAt: Self.epoch, linkTarget: nil),
                        FileEntry(
                            name: "l", path: "/workspace/l", type: "symlink", size: 5, mode: "0777",
                            modifiedAt: Self.epoch, linkTarget: "a.txt"),
                    ], truncated: false))
        }
        if path.hasSuffix(".bin") { return .file(bytes: [0xff, 0x00, 0xfe], mode: "0600") }
        return .file(bytes: Array("hello\n".utf8), mode: "0644")
    }

    func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult {
        try maybeFail()
        lock.withLock { $0.written.append((path, bytes, mode)) }
        return FileWriteResult(path: path, size: bytes.count, created: true)
    }

    var written: [(String, [UInt8], String?)] { lock.withLock { $0.written } }

    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox {
        try maybeFail()
        lock.withLock { $0.created.append((request, tokens)) }
        return box("dbx_fake", Step(state: .requested, operations: []))
    }

    func devbox(id: String) async throws -> Devbox {
        try maybeFail()
        guard id.hasPrefix("dbx_") else { throw DevboxAPIError(status: 404, code: "not_found", message: "no devbox with id \(id)") }
        let step = lock.withLock { s -> Step in
            let st = s.script[min(s.position, s.script.count - 1)]
            s.position += 1
            return st
        }
        return box(id, step)
    }

    func listDevboxes() async throws -> [Devbox] {
        try maybeFail()
        return [box("dbx_fake", current)]
    }

    func deleteDevbox(id: String) async throws {
        try maybeFail()
        lock.withLock { $0.deleted.append(id) }
    }

    func operations(devboxId: String) async throws -> [DevboxOperation] {
        try maybeFail()
        let step = lock.withLock { $0.script[min(max($0.position - 1, 0), $0.script.count - 1)] }
        return step.operations.enumerated().map { i, o in
            DevboxOperation(
                id: "op_\(i)", devboxId: devboxId, name: o.0, status: o.1,
                startedAt: o.1 == .pending ? nil : Self.epoch, finishedAt: o.1.isFinished ? Self.epoch : nil,
                output: o.2, outputTruncated: false, error: o.1 == .failed ? "exit status 3" : nil)
        }
    }

    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession {
        try maybeFail()
        return AccessSession(
            sessionId: "ses_1", expiresAt: Self.epoch, command: "ssh -p 2222 ses_1@127.0.0.1",
            ssh: SSHAccess(host: "127.0.0.1", port: 2222, username: "ses_1", workspacePath: "/workspace"))
    }

    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] {
        try maybeFail()
        return [
            AccessSessionInfo(
                sessionId: "ses_1", devboxId: devboxId, createdAt: Self.epoch, expiresAt: Self.epoch, connections: 0,
                ssh: SSHAccess(host: "127.0.0.1", port: 2222, username: "ses_1", workspacePath: "/workspace"))
        ]
    }

    func revokeSession(devboxId: String, sessionId: String) async throws { try maybeFail() }

    func listRepositories(devboxId: String) async throws -> [DevboxRepository] {
        try maybeFail()
        return box(devboxId, current).repositories
    }

    func setSSHKey(_ publicKey: String) async throws {
        try maybeFail()
        lock.withLock { $0.sshKey = publicKey }
    }

    func profile() async throws -> UserProfile {
        try maybeFail()
        let key = lock.withLock { $0.sshKey }
        return UserProfile(
            id: "usr_1", externalId: nil, providerTokenId: "ptk_1", createdAt: Self.epoch,
            sshKey: key.map { SSHKeyInfo(type: "ssh-ed25519", fingerprint: "SHA256:abc", publicKey: $0, updatedAt: Self.epoch) })
    }

    func listGitHubRepos() async throws -> [GitHubRepo] {
        try maybeFail()
        return [GitHubRepo(id: 1, fullName: "octo/hello", isPrivate: false, defaultBranch: "main")]
    }
}

/// A change feed that wakes at once (`alive`) or has ended, and counts its use.
final class FakeFeed: DevboxChangeFeed {
    struct Counts: Sendable, Equatable {
        var made = 0
        var waits = 0
        var cancelled = 0
    }
    let alive: Bool
    private let counts = Mutex(Counts())

    init(alive: Bool) { self.alive = alive }

    var used: Counts { counts.withLock { $0 } }
    func made() { counts.withLock { $0.made += 1 } }

    func next(timeout: Duration) async -> Bool {
        counts.withLock { $0.waits += 1 }
        return alive
    }

    func cancel() { counts.withLock { $0.cancelled += 1 } }
}

/// Calls tools directly through the provider.
struct Harness {
    let backend: FakeBackend
    let provider: DevboxToolProvider

    init(backend: FakeBackend = FakeBackend(), credentials: InjectionTokens = InjectionTokens()) {
        self.backend = backend
        self.provider = DevboxToolProvider(environment: { _ in
            DevboxToolEnvironment(backend: backend, credentials: credentials)
        })
    }

    func call(_ name: String, _ arguments: JSONValue = [:]) async throws -> MCPToolResult {
        try await provider.call(name, arguments: arguments, context: .testing())
    }

    func tool(_ name: String) -> MCPTool? { provider.tools().first { $0.name == name } }
}

extension MCPToolResult {
    var text: String {
        content.compactMap { if case .text(let t) = $0 { return t } else { return nil } }.joined(separator: "\n")
    }
}

/// Pretty JSON with sorted keys and two-space indentation (the snapshot format).
func prettyJSON(_ v: JSONValue, indent: String = "") -> String {
    let inner = indent + "  "
    switch v {
    case .object(let o):
        if o.isEmpty { return "{}" }
        let members = o.keys.sorted().map { "\(inner)\(JSONValue.string($0).jsonString): \(prettyJSON(o[$0]!, indent: inner))" }
        return "{\n" + members.joined(separator: ",\n") + "\n\(indent)}"
    case .array(let a):
        if a.isEmpty { return "[]" }
        return "[\n" + a.map { inner + prettyJSON($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
    default:
        return v.jsonString
    }
}

extension MCPTool: CustomTestStringConvertible {
    public var testDescription: String { name }
}
