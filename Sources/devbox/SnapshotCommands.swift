import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

// MARK: snapshot (issue 23)

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Save a devbox's files as a snapshot (devbox snapshot ID NAME), show or remove one.",
        discussion: """
            A snapshot holds the devbox's file system changes (its writable layer and \
            /workspace) over its image: never its processes, env values or AI tokens. A \
            running devbox is paused while its changes are copied. Start devboxes from it \
            with devbox create --snapshot NAME; list them with devbox snapshots.

            \(CLIExit.help)
            """,
        subcommands: [Create.self, Show.self, Remove.self], defaultSubcommand: Create.self)

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create", abstract: "Snapshot a devbox (the default: devbox snapshot ID NAME).", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Devbox id.") var id: String
        @Argument(help: "Snapshot name (unique among yours).") var name: String
        @Flag(help: "Print the snapshot as the API's JSON.") var json = false

        func run() async throws {
            try await runClient {
                let s = try await connection.makeClient().devboxes.createSnapshot(id, name: name)
                if json { return try printJSON(s) }
                print("snapshot \(s.id) (\(s.name)) of \(s.devboxId): \(StatsCommand.bytes(s.sizeBytes))")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "get", abstract: "Show one snapshot.", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Snapshot id or name.") var snapshot: String
        @Flag(help: "Print the API's JSON.") var json = false

        func run() async throws {
            try await runClient {
                let client = try connection.makeClient()
                if json {
                    return printJSON(try await client.rawRequest("GET", path: "/api/v1/snapshots/\(try GetCommand.escape(snapshot))"))
                }
                let s = try await client.snapshots.get(snapshot)
                let rows: [(String, String)] = [
                    ("id", s.id), ("name", s.name), ("devbox", s.devboxId), ("image", s.image ?? "-"),
                    ("size", StatsCommand.bytes(s.sizeBytes)),
                    ("created", "\(relative(s.createdAt)) (\(DevboxJSON.formatDate(s.createdAt)))"),
                ]
                let w = rows.map(\.0.count).max() ?? 0
                for (k, v) in rows { print("\(k):".padding(toLength: w + 2, withPad: " ", startingAt: 0) + v) }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Delete a snapshot (its files stay while devboxes made from it exist).", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Snapshot id or name.") var snapshot: String

        func run() async throws {
            try await runClient {
                try await connection.makeClient().snapshots.delete(snapshot)
                print("deleted snapshot \(snapshot)")
            }
        }
    }
}

struct SnapshotsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots", abstract: "List your snapshots with their sizes.", discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print the API's JSON.") var json = false

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            if json { return printJSON(try await client.rawRequest("GET", path: "/api/v1/snapshots")) }
            let list = try await client.snapshots.list()
            guard !list.isEmpty else { return print("no snapshots") }
            print(
                table(
                    ["ID", "NAME", "DEVBOX", "IMAGE", "SIZE", "CREATED"],
                    list.map { [$0.id, $0.name, $0.devboxId, $0.image ?? "-", StatsCommand.bytes($0.sizeBytes), relative($0.createdAt)] }))
            let total = list.reduce(Int64(0)) { $0 + $1.sizeBytes }
            print("\(list.count) snapshot\(list.count == 1 ? "" : "s"), \(StatsCommand.bytes(total))")
        }
    }
}

// MARK: fork

struct ForkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fork", abstract: "Snapshot a devbox and create devboxes from it (devbox fork ID -n 3).",
        discussion: """
            Files only: processes are not forked, env values are copied only with \
            --copy-env, and AI tokens only from your environment (--claude, --codex), never \
            from the original. With --wait, follows every new devbox until it is ready.

            \(CLIExit.help)
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String
    @Option(name: [.customShort("n"), .customLong("count")], help: "How many devboxes to create (1-32).") var count = 1
    @Option(help: "Name of the snapshot and prefix of the new devboxes' names (server default otherwise).") var name: String?
    @Flag(name: .customLong("copy-env"), help: "Give the new devboxes the original's env values.") var copyEnv = false
    @Flag(help: "Inject ANTHROPIC_API_KEY from your environment into the new devboxes.") var claude = false
    @Flag(help: "Inject OPENAI_API_KEY from your environment into the new devboxes.") var codex = false
    @Flag(help: "Wait until every new devbox is ready.") var wait = false
    @Option(name: .customLong("wait-timeout"), help: ArgumentHelp("Give up waiting after this long (default 1200).", valueName: "s"))
    var waitTimeout: Int?
    @Flag(help: "Print the API's JSON ({snapshot, devboxes}).") var json = false

    func validate() throws {
        guard (1...32).contains(count) else { throw ValidationError("-n/--count must be from 1 to 32") }
    }

    func run() async throws {
        try await runClient {
            let environment = ProcessInfo.processInfo.environment
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
            var result = try await client.devboxes.fork(
                id, count: count, name: name, copyEnv: copyEnv ? true : nil, tokens: tokens)
            if !json || wait {
                let s = result.snapshot
                let line = "snapshot \(s.id) (\(s.name)) of \(s.devboxId): \(StatsCommand.bytes(s.sizeBytes))"
                if json { stderrLine(line) } else { print(line) }
                for d in result.devboxes {
                    let created = "created \(d.id) (\(d.name), \(d.state.rawValue))"
                    if json { stderrLine(created) } else { print(created) }
                }
            }
            if wait {
                fflush(nil)
                result.devboxes = try await Self.waitAll(client, result.devboxes, timeoutSeconds: waitTimeout ?? 1200, quiet: json)
            }
            if json { try printJSON(result) }
        }
    }

    /// Waits for every devbox at once; one line each as it becomes ready. Any failure: exit 4
    /// after all have settled, naming each failed one.
    static func waitAll(_ client: DevboxClient, _ boxes: [Devbox], timeoutSeconds: Int, quiet: Bool) async throws -> [Devbox] {
        var ready: [String: Devbox] = [:]
        var failures: [String] = []
        await withTaskGroup(of: (String, Result<Devbox, any Error>).self) { group in
            for box in boxes {
                group.addTask {
                    do {
                        return (box.id, .success(try await client.devboxes.waitForReady(box.id, timeoutMs: timeoutSeconds * 1000)))
                    } catch {
                        return (box.id, .failure(error))
                    }
                }
            }
            for await (id, outcome) in group {
                switch outcome {
                case .success(let d):
                    ready[id] = d
                    if quiet { stderrLine("ready \(id)") } else { print("ready \(id)  (connect: devbox ssh \(id))") }
                    fflush(nil)
                case .failure(let e as DevboxClientError):
                    failures.append("\(id): \(errorLine(e))")
                case .failure(let e):
                    failures.append("\(id): \(e)")
                }
            }
        }
        if !failures.isEmpty {
            throw CLIError.failure(
                "\(failures.count) of \(boxes.count) devboxes did not become ready: " + failures.sorted().joined(separator: "; "),
                code: CLIExit.notReady)
        }
        return boxes.map { ready[$0.id] ?? $0 }
    }
}
