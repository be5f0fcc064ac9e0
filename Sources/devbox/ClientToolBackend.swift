import DevboxClient
import DevboxModel
import DevboxTools
import Foundation
import Synchronization

/// The MCP tools' backend over the client SDK: a devbox server reached over HTTP (the
/// local `devbox serve`, or a remote deployment with `devbox mcp --server`).
struct ClientToolBackend: DevboxBackend {
    let client: DevboxClient

    func createDevbox(_ request: CreateDevboxRequest, tokens: InjectionTokens) async throws -> Devbox {
        try await sdk { try await client.devboxes.create(request, tokens: tokens) }
    }

    func devbox(id: String) async throws -> Devbox {
        try await sdk { try await client.devboxes.get(id) }
    }

    func listDevboxes() async throws -> [Devbox] {
        try await sdk { try await client.devboxes.list() }
    }

    func deleteDevbox(id: String) async throws {
        try await sdk { try await client.devboxes.delete(id) }
    }

    func operations(devboxId: String) async throws -> [DevboxOperation] {
        try await sdk { try await client.devboxes.listOperations(devboxId) }
    }

    func createSession(devboxId: String, ttlSeconds: Int?) async throws -> AccessSession {
        try await sdk { try await client.devboxes.createSession(devboxId, ttlSeconds: ttlSeconds) }
    }

    func listSessions(devboxId: String) async throws -> [AccessSessionInfo] {
        try await sdk { try await client.devboxes.listSessions(devboxId) }
    }

    func revokeSession(devboxId: String, sessionId: String) async throws {
        try await sdk { try await client.devboxes.revokeSession(devboxId, sessionId) }
    }

    func listRepositories(devboxId: String) async throws -> [DevboxRepository] {
        // The devbox carries its repositories with clone status; every server version has that route.
        try await sdk { try await client.devboxes.get(devboxId).repositories }
    }

    func setSSHKey(_ publicKey: String) async throws {
        try await sdk { try await client.users.setSshKey(publicKey) }
    }

    func profile() async throws -> UserProfile {
        try await sdk { try await client.users.getProfile() }
    }

    func listGitHubRepos() async throws -> [GitHubRepo] {
        try await sdk { try await client.github.listRepos() }
    }

    func exec(devboxId: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)?) async throws
        -> ExecResult
    {
        // Always streamed, even without a progress token: the server watches a streamed exec's
        // connection and kills the command the moment the client goes away (the tool call was
        // cancelled, or `devbox mcp` is exiting); a plain JSON exec would run on to the end.
        // The stream also lets the tool report output as progress; the result keeps each tail.
        return try await sdk {
            var out = OutputTail(), err = OutputTail()
            for try await event in client.devboxes.execStream(devboxId, request) {
                switch event {
                case .stdout(let t):
                    out.append(t)
                    onOutput?(ExecChunk(stream: .stdout, bytes: Array(t.utf8)))
                case .stderr(let t):
                    err.append(t)
                    onOutput?(ExecChunk(stream: .stderr, bytes: Array(t.utf8)))
                case .exit(var r):
                    r.stdout = out.text
                    r.stderr = err.text
                    r.truncated = r.truncated || out.cut || err.cut
                    return r
                }
            }
            throw DevboxBackendUnavailable("The devbox server ended the command's stream without its exit status.")
        }
    }

    /// `wait_for_ready` wakes on the server's long-poll instead of finding "ready" at its next
    /// poll, up to a second late; the steps' progress is still read every `pollInterval`.
    func changeFeed(devboxId: String) -> (any DevboxChangeFeed)? {
        let client = self.client
        return LongPollFeed(tick: pollInterval) { seconds in try await client.devboxes.wait(devboxId, timeoutSeconds: seconds) }
    }

    func stopDevbox(id: String) async throws -> Devbox { try await sdk { try await client.devboxes.stop(id) } }
    func network(devboxId: String) async throws -> DevboxNetwork { try await sdk { try await client.devboxes.network(id: devboxId) } }
    func setNetwork(devboxId: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        try await sdk { try await client.devboxes.setNetwork(id: devboxId, network) }
    }
    func stats(devboxId: String) async throws -> DevboxStats { try await sdk { try await client.devboxes.stats(devboxId) } }
    func createSnapshot(devboxId: String, name: String) async throws -> Snapshot {
        try await sdk { try await client.devboxes.createSnapshot(devboxId, name: name) }
    }
    func forkDevbox(id: String, _ request: ForkDevboxRequest, tokens: InjectionTokens) async throws -> ForkResult {
        try await sdk {
            try await client.devboxes.fork(id, count: request.count, name: request.name, copyEnv: request.copyEnv, tokens: tokens)
        }
    }
    func portURL(devboxId: String, port: Int) async throws -> String {
        let box = try await devbox(id: devboxId)
        return PortURL.make(base: client.baseURL.absoluteString, devboxId: box.id, port: port)
    }
    func startDevbox(id: String) async throws -> Devbox { try await sdk { try await client.devboxes.start(id) } }

    func readPath(devboxId: String, path: String) async throws -> FileContent {
        try await sdk { try await client.devboxes.readPath(devboxId, path: path) }
    }

    func writeFile(devboxId: String, path: String, bytes: [UInt8], mode: String?) async throws -> FileWriteResult {
        try await sdk { try await client.devboxes.writeFile(devboxId, path: path, contents: bytes, mode: mode) }
    }

    /// SDK errors in the tools' terms: API refusals as `DevboxAPIError`, an unreachable
    /// server as `ServerUnreachable`, anything else as `DevboxBackendUnavailable`.
    private func sdk<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let e as DevboxClientError {
            switch e {
            case .api(let a):
                throw a
            case .unreachable(let url, let reason):
                throw ServerUnreachable(url: url, reason: reason)
            case .invalidArgument(let m):
                throw DevboxAPIError(status: 400, code: "bad_request", message: m)
            case .badResponse, .provisioningFailed, .timedOut:
                throw DevboxBackendUnavailable("The devbox server answered unexpectedly: \(e.description). Try again in a moment.")
            }
        }
    }
}

/// The devbox server could not be reached at all.
struct ServerUnreachable: Error, CustomStringConvertible {
    var url: String
    var reason: String
    var description: String { "cannot reach the devbox server at \(url): \(reason)" }
}

/// The last 1 MiB of a stream's text.
struct OutputTail {
    static let limit = 1 << 20
    private(set) var text = ""
    private(set) var cut = false

    mutating func append(_ t: String) {
        text += t
        if text.utf8.count > Self.limit * 2 {
            var start = text.utf8.index(text.utf8.endIndex, offsetBy: -Self.limit)
            while start < text.utf8.endIndex, text.utf8[start] & 0xC0 == 0x80 { start = text.utf8.index(after: start) }
            text = String(text[start...])
            cut = true
        }
    }
}

/// A `wait_for_ready` change feed over the REST long-poll `GET …/wait`: the wait wakes the
/// moment the server sees the devbox settle (ready, failed, …), and otherwise every `tick`, so
/// the steps' progress is still reported as it was when the wait polled. One long-poll runs
/// for the whole wait (renewed each minute); it ends when the feed is cancelled.
///
/// If the long-poll fails (an older server without `/wait`, a lost connection), the feed ends
/// and the wait falls back to polling.
final class LongPollFeed: DevboxChangeFeed {
    private struct State {
        var settled = false
        var ended = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }
    private final class Shared: Sendable {
        let state = Mutex(State())

        /// Marks the feed settled or ended and wakes every waiter.
        func fire(ended: Bool) {
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                if ended { s.ended = true } else { s.settled = true }
                defer { s.waiters.removeAll() }
                return Array(s.waiters.values)
            }
            for w in waiters { w.resume() }
        }

        /// Returns when the feed fired, or when the calling task is cancelled.
        func fired() async {
            let id = state.withLock { s -> Int in
                s.nextID += 1
                return s.nextID
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s -> Bool in
                        if s.settled || s.ended { return true }
                        s.waiters[id] = c
                        return false
                    }
                    if now { c.resume() }
                }
            } onCancel: {
                state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            }
        }
    }

    private let shared = Shared()
    private let tick: Duration
    private let poll: Task<Void, Never>

    /// `wait(seconds)`: the server's long-poll for this devbox, answering when it settles or after `seconds`.
    init(tick: Duration, wait: @escaping @Sendable (Int) async throws -> Devbox) {
        self.tick = tick
        let shared = shared
        poll = Task {
            while !Task.isCancelled {
                do {
                    let box = try await wait(60)
                    if box.state != .requested && box.state != .provisioning {
                        shared.fire(ended: false)
                        return
                    }
                } catch {
                    shared.fire(ended: true)
                    return
                }
            }
        }
    }

    func next(timeout: Duration) async -> Bool {
        let tick = self.tick
        let shared = self.shared
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: min(timeout, tick)) }
            group.addTask { await shared.fired() }
            await group.next()
            group.cancelAll()
        }
        return !shared.state.withLock { $0.ended }
    }

    func cancel() { poll.cancel() }
}
