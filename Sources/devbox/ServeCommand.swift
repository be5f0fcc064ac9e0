import ArgumentParser
import DevboxApp
import DevboxServer
import DevboxService
import Foundation
import Synchronization
import Hummingbird
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Options shared by every command that opens the data directory.
struct DataDirOptions: ParsableArguments {
    @Option(name: .long, help: "Data directory (env DEVBOX_DATA_DIR; default $XDG_DATA_HOME/devbox or ~/.local/share/devbox).")
    var dataDir: String?

    var resolved: String {
        if let dataDir { return dataDir }
        if let env = ProcessInfo.processInfo.environment["DEVBOX_DATA_DIR"], !env.isEmpty { return env }
        return ServerConfiguration.defaultDataDirectory()
    }
}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the service: REST API, MCP over HTTP, dashboard, SSH gateway and workers.")

    @OptionGroup var data: DataDirOptions
    @Option(name: .long, help: "HTTP listen address HOST:PORT (env DEVBOX_HTTP_ADDR; default 127.0.0.1:8080).")
    var http: String?
    @Option(name: .long, help: "SSH gateway listen address HOST:PORT (env DEVBOX_SSH_ADDR; default 127.0.0.1:2222).")
    var ssh: String?

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let logger = makeLogger(env)
        let configuration: ServerConfiguration
        do {
            configuration = try Self.configuration(data: data.resolved, http: http, ssh: ssh, env: env)
        } catch let e as ConfigurationError {
            fail(e.description)
        }
        // A SIGTERM before the service group has its handlers (while the host is being
        // prepared: mask layer, box networks) is remembered instead of killing the process
        // halfway, and delivered again once the group can shut down gracefully (which gives
        // back what preparing the host took).
        EarlyTermination.install()
        do {
            let dataDirectory = configuration.dataDirectory
            // The first token is made once the HTTP port is bound: its curl example then names
            // the address that really answers, and a serve that cannot bind creates no token
            // it would never show.
            SystemdNotify.send("STATUS=preparing the host (mask layer, box networks, database)")
            let app = try await buildApplication(configuration: configuration, logger: logger) { host, port in
                await Self.ensureFirstToken(
                    dataDirectory: dataDirectory, url: "http://\(ServeState.dialHost(host)):\(port)", logger: logger)
                // Type=notify: ready once both listeners are bound and start-up has run.
                SystemdNotify.send("READY=1\nSTATUS=serving HTTP on \(host):\(port), SSH on \(configuration.sshHost):\(configuration.sshPort)")
            }
            // serve.json tells `devbox mcp` (and anyone else) where this data dir's service listens.
            let dir = configuration.dataDirectory
            let state = ServeState(
                pid: getpid(),
                http: "http://\(ServeState.dialHost(configuration.httpHost)):\(configuration.httpPort)",
                ssh: "\(configuration.sshHost):\(configuration.sshPort)", startedAt: Date())
            do { try state.write(dir) } catch { logger.warning("could not write \(ServeState.path(dir)): \(error)") }
            defer { ServeState.remove(dir, ifPid: state.pid) }
            EarlyTermination.redeliverSoon()
            try await runApplication(app, configuration: configuration, logger: logger)
            await AuditLog.flushAll()
        } catch let e as ConfigurationError {
            fail(e.description)
        } catch let e as ListenFailure {
            // One line and a non-zero status at once; the exit releases serve.lock.
            fail(e.description)
        }
    }

    static func configuration(data: String, http: String?, ssh: String?, env: [String: String]) throws -> ServerConfiguration {
        let httpAddr = try ServerConfiguration.parseAddress(
            http ?? env["DEVBOX_HTTP_ADDR"] ?? "127.0.0.1:8080", name: "--http / DEVBOX_HTTP_ADDR")
        let sshAddr = try ServerConfiguration.parseAddress(
            ssh ?? env["DEVBOX_SSH_ADDR"] ?? "127.0.0.1:2222", name: "--ssh / DEVBOX_SSH_ADDR")
        var core = CoreConfiguration()
        if let plans = env["DEVBOX_PLANS"], !plans.isEmpty { core.plans = try Plan.parse(plans) }
        if let floor = env["DEVBOX_MIN_FREE_DISK"], !floor.isEmpty { core.minFreeDisk = try DiskFloor.parse(floor) }
        if let quota = env["DEVBOX_SNAPSHOT_QUOTA"], !quota.isEmpty {
            guard let bytes = SnapshotSettings.parseQuota(quota) else {
                throw ConfigurationError("DEVBOX_SNAPSHOT_QUOTA '\(quota)' is not a size (bytes, or e.g. 512M, 50G)")
            }
            core.snapshots.quotaBytes = bytes
        }
        if let d = env["DEVBOX_DEFAULT_PLAN"], !d.isEmpty {
            guard core.plans.contains(where: { $0.name == d }) else {
                throw ConfigurationError("DEVBOX_DEFAULT_PLAN '\(d)' is not one of the configured plans")
            }
            core.defaultPlan = d
        }
        core.github = try GitHubSettings.fromEnvironment(env)
        try applyRuntimeSettings(&core, env: env)
        core.images = try ImageSettings.fromEnvironment(env)
        var sshPublicPort: Int?
        if let p = env["DEVBOX_SSH_PUBLIC_PORT"], !p.isEmpty {
            guard let port = Int(p), (1...65535).contains(port) else {
                throw ConfigurationError("DEVBOX_SSH_PUBLIC_PORT must be a port number, got '\(p)'")
            }
            sshPublicPort = port
        }
        var configuration = ServerConfiguration(
            dataDirectory: data, httpHost: httpAddr.host, httpPort: httpAddr.port, sshHost: sshAddr.host,
            sshPort: sshAddr.port, sshPublicHost: env["DEVBOX_SSH_PUBLIC_HOST"].flatMap { $0.isEmpty ? nil : $0 },
            sshPublicPort: sshPublicPort, encryptionKeys: env["DEVBOX_ENCRYPTION_KEY"].flatMap { $0.isEmpty ? nil : $0 },
            userJWTSecret: env["DEVBOX_USER_JWT_SECRET"].flatMap { $0.isEmpty ? nil : $0 },
            userJWKSFile: env["DEVBOX_USER_JWKS_FILE"].flatMap { $0.isEmpty ? nil : $0 }, core: core,
            baseImage: env["DEVBOX_BASE_IMAGE"].flatMap { $0.isEmpty ? nil : $0 },
            logLevel: Logger.Level(rawValue: env["DEVBOX_LOG_LEVEL"] ?? "info") ?? .info)
        configuration.network = try NetworkConfiguration.fromEnvironment(env)
        if let m = env["DEVBOX_METRICS_ADDR"], !m.isEmpty {
            configuration.metricsAddress = try ServerConfiguration.parseAddress(m, name: "DEVBOX_METRICS_ADDR")
        }
        configuration.userOIDC = try ServerConfiguration.userOIDC(environment: env)
        return configuration
    }

    /// Lifetimes, exec and files settings (docs/ARCHITECTURE.md, "Lifetimes"):
    /// DEVBOX_DEFAULT_IDLE_TIMEOUT and DEVBOX_DEFAULT_TTL (seconds, 0 = off),
    /// DEVBOX_LIFETIME_MIN_SECONDS, DEVBOX_LIFETIME_CHECK_SECONDS, DEVBOX_EXEC_OUTPUT_LIMIT
    /// and DEVBOX_FILE_SIZE_LIMIT (bytes), DEVBOX_WARM_POOL (boxes started ahead of demand).
    static func applyRuntimeSettings(_ core: inout CoreConfiguration, env: [String: String]) throws {
        func number(_ name: String, min: Int) throws -> Int? {
            guard let raw = env[name], !raw.isEmpty else { return nil }
            guard let v = Int(raw), v >= min else {
                throw ConfigurationError("\(name) must be a whole number of at least \(min), got '\(raw)'")
            }
            return v
        }
        if let v = try number("DEVBOX_LIFETIME_MIN_SECONDS", min: 1) { core.lifetimes.minimumSeconds = v }
        if let v = try number("DEVBOX_LIFETIME_CHECK_SECONDS", min: 1) { core.lifetimes.checkInterval = .seconds(v) }
        if let v = try number("DEVBOX_DESTROYED_RETENTION", min: 0) { core.lifetimes.destroyedRetentionSeconds = v == 0 ? nil : v }
        if let v = try number("DEVBOX_AUDIT_RETENTION", min: 0) { core.audit.retentionSeconds = v == 0 ? nil : v }
        if let v = env["DEVBOX_AUDIT_LOG"], !v.isEmpty {
            guard v == "stderr" || v == "off" else {
                throw ConfigurationError("DEVBOX_AUDIT_LOG must be 'stderr' or 'off', got '\(v)'")
            }
            core.audit.toStderr = v == "stderr"
        }
        if let v = try number("DEVBOX_DEFAULT_IDLE_TIMEOUT", min: 0) {
            guard v == 0 || v >= core.lifetimes.minimumSeconds else {
                throw ConfigurationError("DEVBOX_DEFAULT_IDLE_TIMEOUT must be 0 (off) or at least \(core.lifetimes.minimumSeconds)")
            }
            core.lifetimes.defaultIdleTimeoutSeconds = v == 0 ? nil : v
        }
        if let v = try number("DEVBOX_DEFAULT_TTL", min: 0) {
            guard v == 0 || v >= core.lifetimes.minimumSeconds else {
                throw ConfigurationError("DEVBOX_DEFAULT_TTL must be 0 (off) or at least \(core.lifetimes.minimumSeconds)")
            }
            core.lifetimes.defaultTTLSeconds = v == 0 ? nil : v
        }
        if let v = try number("DEVBOX_EXEC_OUTPUT_LIMIT", min: 1024) { core.execOutputLimit = v }
        if let v = try number("DEVBOX_FILE_SIZE_LIMIT", min: 1) { core.fileSizeLimit = v }
        if let v = try number("DEVBOX_WARM_POOL", min: 0) {
            guard v <= 256 else { throw ConfigurationError("DEVBOX_WARM_POOL must be 0-256, got '\(v)'") }
            core.warmPoolSize = v
        }
        do { core.broker = try BrokerSettings(environment: env) } catch { throw ConfigurationError(error.description) }
    }

    /// On the very first start there is no token: create one and print it once.
    /// stdout is a file, a pipe or a journal as often as a terminal, and there stdio buffers
    /// it (4 KiB, flushed only at exit — which a killed serve never reaches): a token that
    /// is shown only once is written straight to the descriptor.
    static func ensureFirstToken(dataDirectory: String, url: String, logger: Logger) async {
        do {
            let db = try AppDatabase(path: dataDirectory + "/devbox.sqlite")
            guard try await !db.hasLiveProviderToken() else { return }
            let token = try await TokenCommand.create(db: db, name: "default")
            writeUnbuffered(Self.firstTokenMessage(token: token, url: url))
        } catch {
            logger.error("could not create the first provider token (make one with `devbox token create`): \(error)")
        }
    }

    static func firstTokenMessage(token: String, url: String) -> String {
        """
        No provider token existed, so one was created. It is shown only this once:

            X-Provider-Token: \(token)

        Try: curl -s -H 'X-Provider-Token: \(token)' \(url)/api/v1/users/me

        """
    }
}

/// Writes to stdout with write(2), after whatever stdio still holds, so the text is out
/// when this returns whatever stdout is.
func writeUnbuffered(_ text: String) {
    fflush(nil)  // all streams: naming the C global `stdout` is an error in Swift 6 mode
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        bytes = bytes.dropFirst(n)
    }
}

/// `DEVBOX_LOG_LEVEL` (default info) and `DEVBOX_LOG_FORMAT`: `text` (default, swift-log's
/// stream lines) or `json` (`JSONLogHandler`: one object per line). Both add the request id
/// (and devbox id) of the request a line is logged for.
func makeLogger(_ env: [String: String]) -> Logger {
    let level = Logger.Level(rawValue: env["DEVBOX_LOG_LEVEL"] ?? "info") ?? .info
    let format = env["DEVBOX_LOG_FORMAT"] ?? "text"
    guard format == "text" || format == "json" || format.isEmpty else {
        fail("DEVBOX_LOG_FORMAT must be 'text' or 'json', got '\(format)'")
    }
    if format == "json" {
        LoggingSystem.bootstrap(
            { label, provider in
                var h = JSONLogHandler(label: label, metadataProvider: provider)
                h.logLevel = level
                return h
            }, metadataProvider: requestMetadataProvider)
    } else {
        LoggingSystem.bootstrap(
            { label, provider in
                var h = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                h.logLevel = level
                return h
            }, metadataProvider: requestMetadataProvider)
    }
    var logger = Logger(label: "devbox")
    logger.logLevel = level
    return logger
}

/// Prints one clear line to stderr and exits non-zero (no stack trace).
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("devbox: error: \(message)\n".utf8))
    exit(1)
}

/// SIGTERM/SIGINT that arrive before ServiceLifecycle handles them (see `ServeCommand.run`).
enum EarlyTermination {
    static let received = Atomic<Int32>(0)

    static func install() {
        // Storing to an atomic is async-signal-safe; nothing else happens in the handler.
        _ = signal(SIGTERM) { sig in EarlyTermination.received.store(sig, ordering: .relaxed) }
        _ = signal(SIGINT) { sig in EarlyTermination.received.store(sig, ordering: .relaxed) }
    }

    /// Once the service group runs (its handlers replace ours), sends a remembered signal again.
    static func redeliverSoon() {
        Task.detached {
            try? await Task.sleep(for: .milliseconds(200))
            let sig = received.load(ordering: .relaxed)
            if sig != 0 { _ = kill(getpid(), sig) }
        }
    }
}
