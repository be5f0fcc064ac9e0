import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: create

struct CreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a devbox (and with --wait, follow it until it is ready).",
        discussion: """
            Claude and Codex tokens are never taken from arguments: --claude injects \
            ANTHROPIC_API_KEY and --codex injects OPENAI_API_KEY from your environment.

            Egress: --deny-all lets nothing out but the --allow entries (an allow-list); \
            without it everything goes out but the --deny entries. Entries are CIDRs, \
            addresses or domain names (*.example.org: the names under example.org). With \
            none of these the server's default applies. Change it later with devbox network.

            \(CLIExit.help)
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Display name of the devbox.") var name: String
    @Option(help: "Size plan (server default: small).") var plan: String?
    @Option(
        name: .customLong("repo"),
        help: ArgumentHelp("Repository to clone: OWNER/NAME[@REF][:PATH] (repeatable).", valueName: "spec"))
    var repos: [String] = []
    @Option(
        name: .customLong("push"),
        help: ArgumentHelp(
            "Git broker: let the box push branches matching GLOB to a --repo, without a token in the box: OWNER/NAME=GLOB[,GLOB] (repeatable).",
            valueName: "spec"))
    var push: [String] = []
    @Option(
        name: .customLong("env"),
        help: ArgumentHelp("Environment variable K=V, or K to pass your own value of K (repeatable).", valueName: "K=V"))
    var env: [String] = []
    @Option(name: .customLong("setup"), help: ArgumentHelp("Setup command run in /workspace (repeatable).", valueName: "cmd"))
    var setup: [String] = []
    @Option(name: .customLong("setup-timeout"), help: ArgumentHelp("Ceiling for all setup commands (30-3600 s).", valueName: "s"))
    var setupTimeout: Int?
    @Option(help: ArgumentHelp("Let the devbox reach this CIDR or domain under --deny-all (repeatable).", valueName: "cidr|domain"))
    var allow: [String] = []
    @Option(help: ArgumentHelp("Keep the devbox from reaching this CIDR or domain (repeatable).", valueName: "cidr|domain"))
    var deny: [String] = []
    @Flag(name: .customLong("deny-all"), help: "Egress deny_all: nothing goes out but the --allow entries.")
    var denyAll = false
    @Flag(help: "Inject ANTHROPIC_API_KEY from your environment into the devbox.") var claude = false
    @Flag(help: "Inject OPENAI_API_KEY from your environment into the devbox.") var codex = false
    @Option(
        name: .customLong("credential-mode"),
        help: ArgumentHelp("env: the tokens go into the box's environment; proxy: the box gets a placeholder and the server's broker adds the token (server default: env).", valueName: "env|proxy"))
    var credentialMode: String?
    @Option(help: ArgumentHelp("Root image of the box, from `devbox image list` (server default: debian).", valueName: "name"))
    var image: String?
    @Option(help: ArgumentHelp("Start from this snapshot (id or name, from `devbox snapshots`) instead of an image.", valueName: "snapshot"))
    var snapshot: String?
    @Flag(help: "Wait until the devbox is ready, showing the provisioning steps.") var wait = false
    @Option(name: .customLong("wait-timeout"), help: ArgumentHelp("Give up waiting after this long (default: setup timeout + 5 min).", valueName: "s"))
    var waitTimeout: Int?
    @Flag(help: "Print the devbox as the API's JSON.") var json = false

    func run() async throws {
        try await runClient {
            let environment = ProcessInfo.processInfo.environment
            let request = try makeRequest(environment: environment)
            var tokens = InjectionTokens()
            if claude {
                guard let t = environment["ANTHROPIC_API_KEY"], !t.isEmpty else {
                    throw CLIError.usage("--claude needs ANTHROPIC_API_KEY in the environment (it is never taken from arguments)")
                }
                tokens.claudeToken = t
            }
            if codex {
                guard let t = environment["OPENAI_API_KEY"], !t.isEmpty else {
                    throw CLIError.usage("--codex needs OPENAI_API_KEY in the environment (it is never taken from arguments)")
                }
                tokens.codexToken = t
            }
            let client = try connection.makeClient(environment: environment)
            if let network = request.network { warnIneffectiveAllow(network) }
            let devbox = try await withPolicyFlagErrors(request.network ?? .allowAll) {
                try await client.devboxes.create(request, tokens: tokens)
            }
            guard wait else {
                if json {
                    try printJSON(devbox)
                } else {
                    print("created \(devbox.id) (\(devbox.name), plan \(devbox.plan), \(devbox.state.rawValue))")
                }
                return
            }
            if !json { stderrLine("created \(devbox.id) (\(devbox.name), plan \(devbox.plan)); waiting for it to be ready") }
            let timeout = waitTimeout ?? ((setupTimeout ?? 900) + 300)
            let ready = try await ProgressWaiter(client: client, id: devbox.id, tty: stderrIsTTY).run(timeoutSeconds: timeout)
            if json {
                printJSON(try await client.rawRequest("GET", path: "/api/v1/devboxes/\(ready.id)"))
            } else {
                print("ready \(ready.id)  (connect: devbox ssh \(ready.id))")
            }
        }
    }

    func makeRequest(environment: [String: String]) throws -> CreateDevboxRequest {
        var vars: [String: String] = [:]
        for item in env {
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq])
                guard !key.isEmpty else { throw CLIError.usage("--env '\(item)': expected K=V") }
                vars[key] = String(item[item.index(after: eq)...])
            } else {
                guard let value = environment[item] else {
                    throw CLIError.usage("--env \(item): \(item) is not set in your environment (use K=V to give a value)")
                }
                vars[item] = value
            }
        }
        return CreateDevboxRequest(
            name: name, plan: plan, repositories: repos.isEmpty ? nil : try Self.withPush(repos.map(Self.parseRepo), push),
            credentialProfile: (claude || codex) ? CredentialProfile(injectClaudeToken: claude, injectCodexToken: codex) : nil,
            env: vars.isEmpty ? nil : vars, setupCommands: setup.isEmpty ? nil : setup, setupTimeoutSeconds: setupTimeout,
            network: network, credentialMode: credentialMode, image: image, snapshot: snapshot)
    }

    /// The egress policy of the flags; nil (the server's default) when none is given.
    var network: DevboxNetwork? {
        guard denyAll || !allow.isEmpty || !deny.isEmpty else { return nil }
        return DevboxNetwork(egress: denyAll ? "deny_all" : "allow_all", allow: allow, deny: deny)
    }

    /// `--push OWNER/NAME=GLOB[,GLOB]`: the push_branches of the --repo with that name.
    static func withPush(_ repos: [DevboxRepositoryRequest], _ specs: [String]) throws -> [DevboxRepositoryRequest] {
        var out = repos
        for spec in specs {
            guard let eq = spec.firstIndex(of: "=") else { throw CLIError.usage("--push '\(spec)': expected OWNER/NAME=GLOB[,GLOB]") }
            let name = spec[..<eq].lowercased()
            let globs = spec[spec.index(after: eq)...].split(separator: ",").map(String.init)
            guard let i = out.firstIndex(where: { $0.fullName.lowercased() == name }), !globs.isEmpty else {
                throw CLIError.usage("--push '\(spec)': OWNER/NAME must be one of the --repo repositories, with at least one GLOB")
            }
            out[i].pushBranches = (out[i].pushBranches ?? []) + globs
        }
        return out
    }

    /// `OWNER/NAME[@REF][:PATH]` (a git ref cannot contain ':', so the first ':' starts the path).
    static func parseRepo(_ spec: String) throws -> DevboxRepositoryRequest {
        var rest = Substring(spec)
        var path: String?
        var ref: String?
        if let colon = rest.firstIndex(of: ":") {
            path = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        if let at = rest.firstIndex(of: "@") {
            ref = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, ref != "", path != "" else {
            throw CLIError.usage("--repo '\(spec)': expected OWNER/NAME[@REF][:PATH]")
        }
        return DevboxRepositoryRequest(fullName: String(rest), ref: ref, targetPath: path)
    }
}

/// Polls a devbox and shows its operations advancing: on a terminal one line per step,
/// redrawn in place; otherwise one plain line per status change.
struct ProgressWaiter {
    let client: DevboxClient
    let id: String
    let tty: Bool
    var interval: Duration = .milliseconds(500)

    func run(timeoutSeconds: Int) async throws -> Devbox {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(timeoutSeconds)
        var seen: [OperationKind: OperationStatus] = [:]
        var live: OperationKind?  // the step whose line is drawn without a newline
        let total = OperationKind.allCases.count
        var frame = 0
        func index(_ k: OperationKind) -> Int { (OperationKind.allCases.firstIndex(of: k) ?? 0) + 1 }
        func finishLive() {
            if live != nil { stderrWrite("\n") }
            live = nil
        }
        while true {
            let devbox = try await client.devboxes.get(id)
            let ops = try await client.devboxes.listOperations(id)
            for op in ops {
                let changed = seen[op.name] != op.status
                seen[op.name] = op.status
                let label = "[\(index(op.name))/\(total)] \(op.statusLine(elapsedWhileRunning: tty))"
                if tty {
                    switch op.status {
                    case .pending: continue
                    case .running:
                        if live != op.name { finishLive() }
                        live = op.name
                        let spin = ["|", "/", "-", "\\"][frame % 4]
                        stderrWrite("\r\u{1B}[K\(spin) \(label)")
                    case .succeeded, .failed, .skipped:
                        guard changed else { continue }
                        if live != nil, live != op.name { finishLive() }
                        let mark = op.status == .succeeded ? "✓" : op.status == .failed ? "✗" : "-"
                        stderrWrite("\r\u{1B}[K\(mark) \(label)\n")
                        if live == op.name { live = nil }
                    }
                } else if changed, op.status != .pending {
                    stderrLine(label)
                }
            }
            frame += 1
            if devbox.state == .ready {
                finishLive()
                return devbox
            }
            if devbox.state.isTerminalFailure {
                finishLive()
                throw DevboxClientError.provisioningFailed(ProvisioningFailure(devbox: devbox, operations: ops))
            }
            if clock.now >= deadline {
                finishLive()
                throw DevboxClientError.timedOut(devboxId: id, lastState: devbox.state, waitedMs: timeoutSeconds * 1000)
            }
            try await Task.sleep(for: interval)
        }
    }
}

// MARK: list / get / delete

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List your devboxes (destroyed ones only with --all).", discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the API's JSON.") var json = false
    @Flag(help: "Also show destroyed devboxes (the server keeps them for DEVBOX_DESTROYED_RETENTION).") var all = false

    static let live: [DevboxState] = DevboxState.allCases.filter { $0 != .destroyed }

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            if json {
                let path = all ? "/api/v1/devboxes" : "/api/v1/devboxes?" + Self.live.map { "state=\($0.rawValue)" }.joined(separator: "&")
                return printJSON(try await client.rawRequest("GET", path: path))
            }
            let boxes = all ? try await client.devboxes.list() : try await client.devboxes.listAll(states: Self.live)
            guard !boxes.isEmpty else { return print("no devboxes") }
            print(
                table(
                    ["ID", "NAME", "STATE", "PLAN", "CREATED"],
                    boxes.map { [$0.id, $0.name, $0.state.rawValue, $0.plan, relative($0.createdAt)] }))
        }
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Show one devbox.", discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String
    @Flag(help: "Print the API's JSON.") var json = false

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            if json {
                return printJSON(try await client.rawRequest("GET", path: "/api/v1/devboxes/\(try Self.escape(id))"))
            }
            let d = try await client.devboxes.get(id)
            var rows: [(String, String)] = [
                ("id", d.id), ("name", d.name), ("state", d.state.rawValue), ("plan", d.plan),
                ("created", "\(relative(d.createdAt)) (\(DevboxJSON.formatDate(d.createdAt)))"),
            ]
            if let r = d.readyAt { rows.append(("ready", relative(r))) }
            if let e = d.error { rows.append(("error", "\(e.operation): \(e.message)")) }
            if !d.envKeys.isEmpty { rows.append(("env", d.envKeys.joined(separator: ", "))) }
            for (i, c) in d.setupCommands.enumerated() { rows.append((i == 0 ? "setup" : "", c)) }
            if !d.setupCommands.isEmpty { rows.append(("setup timeout", "\(d.setupTimeoutSeconds)s")) }
            for (i, r) in d.repositories.enumerated() {
                var s = "\(r.fullName)@\(r.ref) → \(r.targetPath)  \(r.status)"
                if let c = r.commit { s += " \(c.prefix(12))" }
                if let e = r.error { s += ": \(e)" }
                rows.append((i == 0 ? "repositories" : "", s))
            }
            var inject: [String] = []
            if d.credentialProfile.injectClaudeToken { inject.append("claude") }
            if d.credentialProfile.injectCodexToken { inject.append("codex") }
            if !inject.isEmpty { rows.append(("credentials", inject.joined(separator: ", ") + (d.credentialMode == "proxy" ? " (proxy)" : ""))) }
            if let x = d.expiresAt { rows.append(("expires", relative(x))) }
            rows.append(("network", networkSummary(d.network)))
            if let image = d.image { rows.append(("image", image)) }
            let w = rows.map(\.0.count).max() ?? 0
            for (k, v) in rows { print(k.isEmpty ? String(repeating: " ", count: w + 2) + v : "\(k):".padding(toLength: w + 2, withPad: " ", startingAt: 0) + v) }
        }
    }

    /// An id as one path segment (for the raw JSON requests).
    static func escape(_ id: String) throws -> String {
        guard !id.isEmpty else { throw CLIError.usage("the devbox id must not be empty") }
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/;?#%.")
        return id.addingPercentEncoding(withAllowedCharacters: allowed) ?? id
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Destroy a devbox.", discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String

    func run() async throws {
        try await runClient {
            try await connection.makeClient().devboxes.delete(id)
            print("deleted \(id)")
        }
    }
}

// MARK: logs

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print the output of a devbox's provisioning steps.",
        discussion: """
            With --follow, keeps printing new output until the devbox is ready, failed, \
            stopped or destroyed; exits 0 when it is ready and 4 otherwise.

            \(CLIExit.help)
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String
    @Flag(name: [.short, .long], help: "Keep printing new output as it arrives.") var follow = false
    @Flag(help: "Print the API's operations JSON.") var json = false

    func validate() throws {
        if json && follow { throw ValidationError("--json and --follow cannot be combined") }
    }

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            if json {
                return printJSON(
                    try await client.rawRequest("GET", path: "/api/v1/devboxes/\(try GetCommand.escape(id))/operations"))
            }
            var follower = OutputFollower()
            guard follow else {
                follower.update(try await client.devboxes.listOperations(id), write: stdoutWrite)
                follower.newline(stdoutWrite)
                return
            }
            while true {
                let devbox = try await client.devboxes.get(id)
                follower.update(try await client.devboxes.listOperations(id), write: stdoutWrite)
                if devbox.state == .ready || devbox.state.isTerminalFailure {
                    follower.newline(stdoutWrite)
                    stderrLine("devbox \(devbox.id) is \(devbox.state.rawValue)")
                    if devbox.state != .ready { throw ExitCode(CLIExit.notReady) }
                    return
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}

// MARK: ssh

struct SSHCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh", abstract: "Open an SSH session to a devbox with the OpenSSH client.",
        discussion: """
            Creates an access session, runs `ssh -p PORT -o StrictHostKeyChecking=accept-new \
            USER@HOST [CMD…]` with its details, and revokes the session when ssh exits. Your \
            SSH key must be registered first (devbox ssh-key set ~/.ssh/id_ed25519.pub).

            \(CLIExit.help)
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(name: [.short, .customLong("identity")], help: "Private key file passed to ssh -i.") var identity: String?
    @Option(name: .customLong("ttl"), help: ArgumentHelp("Session lifetime (60-86400 s; server default 3600).", valueName: "s"))
    var ttl: Int?
    @Argument(help: "Devbox id.") var id: String
    @Argument(parsing: .postTerminator, help: "Command to run instead of a shell (after --).") var command: [String] = []

    func run() async throws {
        let status: Int32 = try await {
            var result: Int32 = 0
            try await runClient {
                let client = try connection.makeClient()
                let session: AccessSession
                do {
                    session = try await client.devboxes.createSession(id, ttlSeconds: ttl)
                } catch let e as DevboxClientError where e.status == 409 && (e.apiError?.message.contains("SSH key") ?? false) {
                    throw CLIError.failure(
                        "\(e.apiError?.message ?? "no SSH key"); e.g. devbox ssh-key set ~/.ssh/id_ed25519.pub",
                        code: CLIExit.apiError)
                }
                var args = ["ssh", "-p", String(session.ssh.port), "-o", "StrictHostKeyChecking=accept-new"]
                if let identity { args += ["-i", identity] }
                let host = session.ssh.host.contains(":") ? "[\(session.ssh.host)]" : session.ssh.host
                args += ["--", "\(session.ssh.username)@\(host)"] + command
                fflush(nil)
                let spawned = spawnAndWait(args)
                try? await client.devboxes.revokeSession(id, session.sessionId)
                switch spawned {
                case .exited(let code): result = code
                case .notFound:
                    throw CLIError.failure("the OpenSSH client 'ssh' was not found on PATH", code: CLIExit.sshMissing)
                case .failed(let err):
                    throw CLIError.failure("could not run ssh: \(String(cString: strerror(err)))", code: CLIExit.sshMissing)
                }
            }
            return result
        }()
        if status != 0 { throw ExitCode(status) }
    }

    enum Spawned { case exited(Int32), notFound, failed(Int32) }

    /// Runs argv in the foreground (same process group, inherited terminal) and returns its
    /// exit status (128+signal when killed). Interrupts go to ssh, not to us, meanwhile.
    func spawnAndWait(_ argv: [String]) -> Spawned {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGQUIT)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF))
        let oldInt = signal(SIGINT, SIG_IGN)
        let oldQuit = signal(SIGQUIT, SIG_IGN)
        defer {
            signal(SIGINT, oldInt)
            signal(SIGQUIT, oldQuit)
        }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], nil, &attr, &cargs, environ)
        if rc == ENOENT { return .notFound }
        if rc != 0 { return .failed(rc) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .failed(errno) }
        }
        let sig = status & 0x7f
        if sig == 0 { return .exited((status >> 8) & 0xff) }
        return .exited(128 + sig)
    }
}

// MARK: ssh-key

struct SSHKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh-key", abstract: "Manage your SSH public key (used by devbox ssh).",
        subcommands: [SetKey.self, Remove.self])

    struct SetKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Register your SSH public key (ed25519 or ECDSA).", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Public key file, or - to read it from stdin (e.g. ~/.ssh/id_ed25519.pub).") var file: String

        func run() async throws {
            try await runClient {
                let data: Data
                if file == "-" {
                    data = FileHandle.standardInput.readDataToEndOfFile()
                } else {
                    guard let d = FileManager.default.contents(atPath: file) else {
                        throw CLIError.usage("cannot read \(file)")
                    }
                    data = d
                }
                let key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if key.contains("PRIVATE KEY") {
                    throw CLIError.usage("\(file == "-" ? "stdin" : file) holds a PRIVATE key; pass the public one (the .pub file)")
                }
                let client = try connection.makeClient()
                try await client.users.setSshKey(key)
                let profile = try await client.users.getProfile()
                if let k = profile.sshKey {
                    print("SSH key set: \(k.type) \(k.fingerprint)")
                } else {
                    print("SSH key set")
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove your SSH public key.", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                try await connection.makeClient().users.deleteSshKey()
                print("SSH key removed")
            }
        }
    }
}

// MARK: github

struct GitHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "github", abstract: "Connect your GitHub account (for cloning private repositories).",
        subcommands: [Connect.self, Status.self, Disconnect.self])

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the GitHub OAuth flow: prints the URL to open in a browser.", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Option(name: .customLong("redirect-url"), help: "Where GitHub sends the browser back to (default: the service URL).")
        var redirectURL: String?
        @Flag(help: "Print the API's JSON.") var json = false

        func run() async throws {
            try await runClient {
                let client = try connection.makeClient()
                let start = try await client.github.startOAuth(redirectURL ?? client.baseURL.absoluteString)
                if json { return try printJSON(start) }
                print("Open this URL in a browser to connect GitHub:\n\(start.authorizationUrl)")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the GitHub connection.", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print the API's JSON.") var json = false

        func run() async throws {
            try await runClient {
                let client = try connection.makeClient()
                if json {
                    return printJSON(try await client.rawRequest("GET", path: "/api/v1/integrations/github/connection"))
                }
                guard let c = try await client.github.getConnection() else { return print("GitHub: not connected") }
                let scopes = c.scopes.isEmpty ? "" : ", scopes \(c.scopes.joined(separator: ","))"
                print("GitHub: connected as \(c.login) (since \(relative(c.connectedAt))\(scopes))")
            }
        }
    }

    struct Disconnect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disconnect GitHub (deletes the stored token and revokes the grant).", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                try await connection.makeClient().github.disconnect()
                print("GitHub disconnected")
            }
        }
    }
}
