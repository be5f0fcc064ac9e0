import AsyncHTTPClient
import DevboxClient
import DevboxModel
import DevboxServer
import DevboxService
import DevboxTools
import Foundation
import HTTPClientSupport
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// How `devbox mcp` without `--server` reaches the data directory's service.
///
/// Only `devbox serve` runs provisioning workers and the SSH gateway, so `devbox mcp` is a
/// client of it: it finds the running serve through `<data>/serve.json` (pid + addresses,
/// written by the serve), or starts one in the background (its own session, log in
/// `<data>/serve.log`) under `<data>/serve-start.lock`, so concurrent `devbox mcp`
/// processes start at most one. It authenticates with a provider token it creates once
/// in the database and keeps in `<data>/mcp-token` (0600). Reads skip the HTTP round trip
/// and query the database directly (`LocalReadBackend`). All of this happens on the first
/// tool call, so `initialize` and `tools/list` never wait for it.
actor LocalService {
    struct Connection: Sendable {
        /// Everything that changes state (and session listings, whose live connection counts
        /// only the serve knows) goes through the serve's REST API.
        var serve: ClientToolBackend
        /// Reads come straight from the data dir's database: no HTTP round trip, no load on the
        /// serve while an agent polls.
        var reader: any DevboxBackend
        var token: String
        /// Set when the token was just created: the serve's token cache may not know it for ~2 s.
        var tokenCreated: ContinuousClock.Instant?
        var servePid: Int32
    }

    let dataDir: String
    let logger: Logger
    private var current: Connection?
    private var lastLivenessCheck = ContinuousClock.now
    private var readCore: LocalReadBackend?

    init(dataDir: String, logger: Logger) {
        self.dataDir = dataDir
        self.logger = logger
    }

    var tokenPath: String { dataDir + "/mcp-token" }
    var logPath: String { dataDir + "/serve.log" }

    /// The connection to the running serve, starting it first if none runs.
    func connect() async throws -> Connection {
        if let current {
            // Reads do not talk to the serve, so notice a serve that went away (it would leave
            // wait_for_ready polling a devbox nobody provisions): at most one check a second.
            let now = ContinuousClock.now
            if now - lastLivenessCheck < .seconds(1) { return current }
            lastLivenessCheck = now
            if let s = ServeState.read(dataDir), s.pid == current.servePid, s.processIsAlive { return current }
            logger.warning("the local devbox serve went away; looking for it again")
            self.current = nil
        }
        try FileManager.default.createDirectory(
            atPath: dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // Token first: a serve started below then finds a live token and prints none into its log.
        let (token, created) = try await ensureToken()
        let (url, pid) = try await ensureServe()
        if readCore == nil { readCore = try LocalReadBackend(dataDirectory: dataDir, logger: logger) }
        let c = Connection(
            serve: ClientToolBackend(client: DevboxClient(providerToken: token, baseURL: url)),
            reader: try await readCore!.backend(providerToken: token), token: token,
            tokenCreated: created ? ContinuousClock.now : nil, servePid: pid)
        current = c
        lastLivenessCheck = ContinuousClock.now
        return c
    }

    /// Forgets the connection (the serve went away); the next `connect` looks again.
    func invalidate() { current = nil }

    /// The token was refused although it is old: replace it (someone revoked it).
    func replaceToken(_ refused: String) async throws {
        current = nil
        try await withFileLock(dataDir + "/mcp-token.lock") {
            if (try? String(contentsOfFile: tokenPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == refused {
                unlink(tokenPath)
            }
        }
    }

    // MARK: Token

    private func ensureToken() async throws -> (String, Bool) {
        try await withFileLock(dataDir + "/mcp-token.lock") {
            if let t = try? String(contentsOfFile: tokenPath, encoding: .utf8) {
                let token = t.trimmingCharacters(in: .whitespacesAndNewlines)
                if !token.isEmpty { return (token, false) }
            }
            // "default" is the provider `devbox serve` creates first, so the CLI with that
            // provider's token sees the same devboxes as the agent.
            let db = try AppDatabase(path: dataDir + "/devbox.sqlite")
            let token = try await TokenCommand.create(db: db, name: "default")
            try Self.writePrivate(token + "\n", to: tokenPath)
            logger.info("created the local MCP provider token", metadata: ["file": "\(tokenPath)"])
            return (token, true)
        }
    }

    /// Writes a 0600 file atomically (temporary file + rename).
    static func writePrivate(_ text: String, to path: String) throws {
        let tmp = path + ".\(getpid()).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard n == bytes.count, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw POSIXError(.EIO)
        }
    }

    // MARK: Serve

    private func ensureServe() async throws -> (URL, Int32) {
        if let found = try await runningServe() { return found }
        return try await withFileLock(dataDir + "/serve-start.lock") {
            if let found = try await runningServe() { return found }
            return try await startServe()
        }
    }

    /// The serve of `serve.json` once it answers; nil when none runs. A serve that is
    /// still starting is waited for rather than duplicated.
    private func runningServe() async throws -> (URL, Int32)? {
        guard let state = ServeState.read(dataDir), state.processIsAlive, Self.isServe(pid: state.pid),
            let url = URL(string: state.http)
        else { return nil }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if await Self.healthy(url) { return (url, state.pid) }
            guard ServeState.read(dataDir)?.pid == state.pid, state.processIsAlive else { return nil }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DevboxBackendUnavailable(
            "The local devbox serve (pid \(state.pid)) does not answer at \(state.http). Ask the user to check \(logPath) or restart it.")
    }

    /// A live pid from `serve.json` could have been reused by an unrelated process.
    static func isServe(pid: Int32) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return true }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains("serve")
    }

    /// `GET /healthz` answers 200 within 2 s (a refused connection is false at once).
    static func healthy(_ base: URL) async -> Bool {
        let request = HTTPClientRequest(url: base.appendingPathComponent("healthz").absoluteString)
        let status = try? await HTTPClient.withHTTPClient(
            configuration: .devbox(connectTimeout: 2, readTimeout: 2, followRedirects: false)
        ) { client in
            let response = try await client.execute(request, timeout: .seconds(2))
            _ = try await response.body.collect(upTo: 64 * 1024)
            return response.status.code
        }
        return status == 200
    }

    private func startServe() async throws -> (URL, Int32) {
        let env = ProcessInfo.processInfo.environment
        var args = ["serve", "--data-dir", dataDir]
        // Defaults when free (the address the CLI expects), else any free port; an address the
        // user configured in the environment is the serve's to use (or fail on).
        if (env["DEVBOX_HTTP_ADDR"] ?? "").isEmpty {
            args += ["--http", "127.0.0.1:\(try Ports.preferred(8080))"]
        }
        if (env["DEVBOX_SSH_ADDR"] ?? "").isEmpty {
            args += ["--ssh", "127.0.0.1:\(try Ports.preferred(2222))"]
        }
        // The AI tokens and client credentials of this process are not the serve's business.
        let hidden: Set<String> = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DEVBOX_PROVIDER_TOKEN", "DEVBOX_USER_TOKEN"]
        let childEnv = env.filter { !hidden.contains($0.key) }.map { "\($0.key)=\($0.value)" }
        let exe = Self.executablePath()
        logger.notice("starting devbox serve in the background", metadata: ["data": "\(dataDir)", "log": "\(logPath)"])
        let pid = try Spawn.detached(exe, args, environment: childEnv, logPath: logPath)

        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw DevboxBackendUnavailable(
                    "The local devbox serve could not start (exit status \(status >> 8)): \(Self.tail(logPath)). Ask the user to check \(logPath).")
            }
            if let s = ServeState.read(dataDir), s.pid == pid, let url = URL(string: s.http), await Self.healthy(url) {
                logger.notice("devbox serve is up", metadata: ["pid": "\(pid)", "http": "\(s.http)", "ssh": "\(s.ssh)"])
                return (url, pid)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DevboxBackendUnavailable(
            "The local devbox serve (pid \(pid)) did not come up within 90 s. Ask the user to check \(logPath).")
    }

    static func executablePath() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 { return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CommandLine.arguments[0]
    }

    /// The last lines of the serve log, on one line, for an error message.
    static func tail(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "no log" }
        let lines = String(decoding: data.suffix(2000), as: UTF8.self).split(separator: "\n").suffix(3)
        return lines.joined(separator: " | ")
    }
}

/// Runs `body` holding an exclusive `flock` on `path` (other processes wait their turn).
func withFileLock<T>(
    _ path: String, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T
) async throws -> T {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    let deadline = ContinuousClock.now + .seconds(120)
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
        guard errno == EWOULDBLOCK || errno == EINTR, ContinuousClock.now < deadline else {
            throw DevboxBackendUnavailable("Could not lock \(path); another devbox process holds it.")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    defer { flock(fd, LOCK_UN) }
    return try await body()
}

/// Local TCP ports for a background serve.
enum Ports {
    static func bind(_ port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if ok != 0 {
            close(fd)
            return nil
        }
        return fd
    }

    static func isFree(_ port: UInt16) -> Bool {
        guard let fd = bind(port) else { return false }
        close(fd)
        return true
    }

    /// `port` when it is free, else any free port.
    static func preferred(_ port: UInt16) throws -> UInt16 {
        if isFree(port) { return port }
        return try pick()
    }

    static func pick() throws -> UInt16 {
        guard let fd = bind(0) else { throw POSIXError(.EADDRINUSE) }
        defer { close(fd) }
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UInt16(bigEndian: addr.sin_port)
    }
}

/// Starts a process in its own session (so signals to the agent's process group do not
/// reach it), stdin from /dev/null, stdout and stderr appended to `logPath` (0600).
enum Spawn {
    static func detached(_ path: String, _ args: [String], environment: [String], logPath: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // SIGPIPE is ignored in this process (stdio transport); the serve starts with defaults.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        // POSIX_SPAWN_SETSID (glibc >= 2.26; not exported to Swift) | SETSIGDEF | SETSIGMASK.
        let setsid: Int32 = 0x80
        posix_spawnattr_setflags(&attr, Int16(setsid | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        return pid
    }
}
