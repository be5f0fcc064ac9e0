import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// MARK: exec

struct ExecCommandLine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a command in a ready devbox and print its output.",
        discussion: """
            One argument runs through /bin/sh -c inside the devbox (devbox exec ID 'make && make test'); \
            several are the argv itself (devbox exec ID -- ls -la /workspace). The command gets the devbox's \
            environment plus --env, in --cwd (default /workspace). Its stdout and stderr are printed as they \
            come (with --json: the API's result once it ended, the last 1 MiB of each stream).

            Exit status: the command's own; 128+N when signal N ended it; 124 when --timeout killed it. \
            Otherwise the client exit codes: \(CLIExit.help)
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "The command: one shell line, or an argv after --.")
    var command: [String] = []
    @Option(name: .customLong("cwd"), help: "Working directory inside the devbox.") var cwd: String?
    @Option(name: .customLong("env"), help: ArgumentHelp("Environment variable K=V (repeatable).", valueName: "K=V"))
    var env: [String] = []
    @Option(name: .customLong("timeout"), help: ArgumentHelp("Kill the command after this long (default 600 s).", valueName: "s"))
    var timeout: Int?
    @Flag(name: .customLong("stdin"), help: "Send this process's standard input to the command.") var stdin = false
    @Flag(help: "Print the API's JSON result instead of the output.") var json = false

    func run() async throws {
        var code: Int32 = 0
        try await runClient {
            var argv = command
            if argv.first == "--" { argv.removeFirst() }
            guard !argv.isEmpty else { throw CLIError.usage("give the command to run, e.g. devbox exec \(id) 'ls -la'") }
            var vars: [String: String] = [:]
            for e in env {
                guard let eq = e.firstIndex(of: "="), eq != e.startIndex else { throw CLIError.usage("--env takes K=V, got '\(e)'") }
                vars[String(e[..<eq])] = String(e[e.index(after: eq)...])
            }
            var input: String? = nil
            if stdin { input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
            let request = ExecRequest(
                command: argv.count == 1 ? .shell(argv[0]) : .argv(argv), env: vars.isEmpty ? nil : vars, cwd: cwd,
                timeoutSeconds: timeout, stdin: input)
            let client = try connection.makeClient()
            let r: ExecResult
            if json {
                r = try await client.devboxes.exec(id, request)
                try printJSON(r)
            } else {
                // Output as it comes (server-sent events).
                var ended: ExecResult? = nil
                for try await event in client.devboxes.execStream(id, request) {
                    switch event {
                    case .stdout(let t): FileHandle.standardOutput.write(Data(t.utf8))
                    case .stderr(let t): stderrWrite(t)
                    case .exit(let e): ended = e
                    }
                }
                guard let ended else { throw CLIError.failure("the command's end was not reported", code: CLIExit.apiError) }
                r = ended
            }
            code = r.timedOut ? 124 : r.signal.map { Int32(128 + $0) } ?? Int32(r.exitCode ?? 1)
        }
        if code != 0 { throw ExitCode(code) }
    }
}

// MARK: stop / start

struct StopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop a ready devbox: processes end, memory is freed, files stay.",
        discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String

    func run() async throws {
        try await runClient {
            let d = try await connection.makeClient().devboxes.stop(id)
            print("\(d.state.rawValue) \(d.id)")
        }
    }
}

struct StartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a stopped devbox again on its kept files.", discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String

    func run() async throws {
        try await runClient {
            let d = try await connection.makeClient().devboxes.start(id)
            print("\(d.state.rawValue) \(d.id)")
        }
    }
}

// MARK: files

struct FilesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "files", abstract: "Read, write, list and delete files inside a ready devbox.",
        subcommands: [Get.self, Put.self, List.self, Remove.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "get", abstract: "Print a file of the devbox (or save it with -o).", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Devbox id.") var id: String
        @Argument(help: "Absolute path inside the devbox.") var path: String
        @Option(name: .shortAndLong, help: "Write to this local file instead of stdout.") var output: String?

        func run() async throws {
            try await runClient {
                let bytes = try await connection.makeClient().devboxes.readFile(id, path: path)
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: Data(bytes)) else {
                        throw CLIError.failure("cannot write \(output)", code: CLIExit.usage)
                    }
                } else {
                    FileHandle.standardOutput.write(Data(bytes))
                }
            }
        }
    }

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "put", abstract: "Write a local file (or stdin with -) to a path in the devbox.",
            discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Devbox id.") var id: String
        @Argument(help: "Absolute path inside the devbox.") var path: String
        @Argument(help: "Local file to send; - for stdin.") var source: String = "-"
        @Option(help: "Permission bits in octal, e.g. 755.") var mode: String?

        func run() async throws {
            try await runClient {
                let data: Data
                if source == "-" {
                    data = FileHandle.standardInput.readDataToEndOfFile()
                } else {
                    guard let d = FileManager.default.contents(atPath: source) else {
                        throw CLIError.usage("cannot read \(source)")
                    }
                    data = d
                }
                let r = try await connection.makeClient().devboxes.writeFile(id, path: path, contents: [UInt8](data), mode: mode)
                print("\(r.created ? "created" : "replaced") \(r.path) (\(r.size) bytes)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List a directory of the devbox.", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Devbox id.") var id: String
        @Argument(help: "Absolute path of the directory.") var path: String = "/workspace"
        @Flag(help: "Print the API's JSON.") var json = false

        func run() async throws {
            try await runClient {
                let listing = try await connection.makeClient().devboxes.listFiles(id, path: path)
                if json { try printJSON(listing); return }
                for e in listing.entries {
                    let suffix = e.type == "directory" ? "/" : e.linkTarget.map { " -> \($0)" } ?? ""
                    print("\(e.mode)  \(String(e.size).leftPad(10))  \(e.name)\(suffix)")
                }
                if listing.truncated { stderrLine("devbox: listing truncated") }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Delete a file or directory of the devbox.", discussion: CLIExit.help)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Devbox id.") var id: String
        @Argument(help: "Absolute path inside the devbox.") var path: String
        @Flag(name: .shortAndLong, help: "Delete a directory with its contents.") var recursive = false

        func run() async throws {
            try await runClient {
                try await connection.makeClient().devboxes.deleteFile(id, path: path, recursive: recursive)
                print("deleted \(path)")
            }
        }
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
