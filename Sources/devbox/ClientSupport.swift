import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Exit codes of the client commands (listed in `devbox --help` of each command).
enum CLIExit {
    static let apiError: Int32 = 1  // the server refused the request, or answered unexpectedly
    static let unreachable: Int32 = 3  // the server could not be reached
    static let notReady: Int32 = 4  // the devbox failed / was destroyed / the wait timed out
    static let usage: Int32 = 64  // bad arguments or configuration (argument-parser's EX_USAGE)
    static let sshMissing: Int32 = 127  // `devbox ssh`: no OpenSSH client on PATH

    static let help = """
        Exit codes: 0 success; 1 API error (the server refused the request: message and \
        field on stderr); 3 server unreachable; 4 the devbox failed, was destroyed or the \
        wait timed out; 64 usage error. `devbox ssh` exits with ssh's own status (127 when \
        ssh is not installed).
        """
}

/// How client commands reach the service: flags first, then the environment.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("url"), help: "Service URL (env DEVBOX_URL; default http://127.0.0.1:8080).")
    var url: String?

    @Option(
        name: .customLong("provider-token"),
        help: "Provider token (env DEVBOX_PROVIDER_TOKEN; prefer the variable: arguments are visible to other users).")
    var providerToken: String?

    @Option(name: .customLong("user-token"), help: "User JWT sent as a bearer token (env DEVBOX_USER_TOKEN).")
    var userToken: String?

    func makeClient(environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> DevboxClient {
        let rawURL = url ?? env["DEVBOX_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? DevboxClient.defaultBaseURL.absoluteString
        guard let base = URL(string: rawURL), let scheme = base.scheme?.lowercased(), scheme == "http" || scheme == "https",
            base.host?.isEmpty == false
        else {
            throw CLIError.usage("invalid service URL '\(rawURL)': expected http(s)://HOST[:PORT]")
        }
        guard let token = providerToken ?? env["DEVBOX_PROVIDER_TOKEN"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw CLIError.usage("no provider token: set DEVBOX_PROVIDER_TOKEN (or pass --provider-token)")
        }
        let user = userToken ?? env["DEVBOX_USER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return DevboxClient(providerToken: token, userToken: user, baseURL: base)
    }
}

/// A failure of the command line itself (not of the API).
enum CLIError: Error {
    case usage(String)
    case failure(String, code: Int32)
}

/// Runs a client command: any error becomes one line on stderr and its exit code.
func runClient(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as DevboxClientError {
        switch e {
        case .provisioningFailed(let f):
            printFailure(f)
            throw ExitCode(CLIExit.notReady)
        case .timedOut:
            stderrLine("devbox: error: \(e.description)")
            throw ExitCode(CLIExit.notReady)
        default:
            stderrLine("devbox: error: \(errorLine(e))")
            throw ExitCode(exitCode(e))
        }
    } catch let e as CLIError {
        switch e {
        case .usage(let m):
            stderrLine("devbox: error: \(m)")
            throw ExitCode(CLIExit.usage)
        case .failure(let m, let code):
            stderrLine("devbox: error: \(m)")
            throw ExitCode(code)
        }
    }
}

func exitCode(_ e: DevboxClientError) -> Int32 {
    switch e {
    case .api, .badResponse: CLIExit.apiError
    case .unreachable: CLIExit.unreachable
    case .invalidArgument: CLIExit.usage
    case .provisioningFailed, .timedOut: CLIExit.notReady
    }
}

/// One line: what went wrong and what to do about it.
func errorLine(_ e: DevboxClientError) -> String {
    let line: String
    switch e {
    case .api(let a) where a.status == 401:
        if a.message.lowercased().contains("bearer") {
            line = "user token rejected (HTTP 401): \(a.message); check DEVBOX_USER_TOKEN / --user-token"
        } else {
            line = "provider token rejected (HTTP 401): \(a.message); check DEVBOX_PROVIDER_TOKEN / --provider-token"
        }
    case .api(let a) where a.status == 422 || a.status == 400:
        line = "invalid request: \(a.message)" + (a.field.map { " (field: \($0))" } ?? "")
    case .api(let a) where a.status == 404:
        line = "not found: \(a.message)"
    case .api(let a):
        line = "\(a.description) (HTTP \(a.status))"
    case .unreachable(let url, let reason):
        line = "cannot reach the devbox server at \(url) (\(reason)); is it running? set DEVBOX_URL or --url"
    default:
        line = e.description
    }
    return line.replacingOccurrences(of: "\n", with: " ")
}

func printFailure(_ f: ProvisioningFailure) {
    stderrLine("devbox: error: \(f.summary)")
    let tail = f.tail(maxLines: 20, maxBytes: 8192)
    if !tail.isEmpty {
        stderrLine("--- output tail\(f.outputTruncated ? " (older output dropped)" : "") ---")
        stderrLine(tail)
        stderrLine("---")
    }
}

// MARK: Output

func stderrWrite(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
func stderrLine(_ s: String) { stderrWrite(s + "\n") }

/// Writes to stdout (through stdio, so it stays ordered with `print`).
func stdoutWrite(_ s: String) {
    print(s, terminator: "")
    fflush(nil)
}

func printJSON(_ data: Data) {
    var s = String(decoding: data, as: UTF8.self)
    if !s.hasSuffix("\n") { s += "\n" }
    stdoutWrite(s)
}

func printJSON(_ value: some Encodable) throws {
    printJSON(try DevboxJSON.encoder().encode(value))
}

var stderrIsTTY: Bool { isatty(STDERR_FILENO) == 1 }
var stdinIsTTY: Bool { isatty(STDIN_FILENO) == 1 }

/// "3m ago", "in 5m", "just now".
func relative(_ date: Date, now: Date = Date()) -> String {
    let d = now.timeIntervalSince(date)
    let a = abs(d)
    let s: String
    switch a {
    case ..<5: return "just now"
    case ..<60: s = "\(Int(a))s"
    case ..<3600: s = "\(Int(a / 60))m"
    case ..<86400: s = "\(Int(a / 3600))h"
    default: s = "\(Int(a / 86400))d"
    }
    return d >= 0 ? "\(s) ago" : "in \(s)"
}

/// "0.8s", "12s", "3m05s".
func duration(_ seconds: TimeInterval) -> String {
    let t = max(0, seconds)
    if t < 10 { return String(format: "%.1fs", t) }
    if t < 60 { return "\(Int(t))s" }
    return String(format: "%dm%02ds", Int(t) / 60, Int(t) % 60)
}

/// Left-aligned columns separated by two spaces.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    var widths = [Int](repeating: 0, count: header.count)
    for r in all { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    return all.map { r in
        r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }.joined(separator: "\n")
}

// MARK: Operations display

extension DevboxOperation {
    var elapsed: TimeInterval? {
        guard let startedAt else { return nil }
        return (finishedAt ?? Date()).timeIntervalSince(startedAt)
    }

    /// "run_setup_commands  failed 2.1s: setup command 1 (exit 3) exited with code 3"
    var statusLine: String { statusLine(elapsedWhileRunning: true) }

    func statusLine(elapsedWhileRunning: Bool) -> String {
        var s = "\(name.rawValue)  \(status.rawValue)"
        if status.isFinished || (status == .running && elapsedWhileRunning), status != .skipped, let e = elapsed {
            s += " \(duration(e))"
        }
        if let error { s += ": \(error)" }
        return s
    }
}

/// Prints the new part of each operation's output as it grows. The server keeps only a
/// tail of each output, so when the window has moved on, the overlap is found again.
struct OutputFollower {
    private var shown: [OperationKind: String] = [:]
    private var headed: Set<OperationKind> = []
    private var finished: Set<OperationKind> = []
    private(set) var atLineStart = true

    mutating func update(_ ops: [DevboxOperation], write: (String) -> Void) {
        for op in ops where op.status != .pending {
            if !headed.contains(op.name) {
                headed.insert(op.name)
                newline(write)
                write("==> \(op.status.isFinished ? op.statusLine : "\(op.name.rawValue)  running")\n")
                if op.status.isFinished { finished.insert(op.name) }
            }
            let delta = Self.delta(old: shown[op.name] ?? "", new: op.output)
            shown[op.name] = op.output
            if !delta.isEmpty {
                write(delta)
                atLineStart = delta.hasSuffix("\n")
            }
            if op.status.isFinished, !finished.contains(op.name) {
                finished.insert(op.name)
                newline(write)
                write("==> \(op.statusLine)\n")
            }
        }
    }

    mutating func newline(_ write: (String) -> Void) {
        if !atLineStart {
            write("\n")
            atLineStart = true
        }
    }

    static func delta(old: String, new: String) -> String {
        if old.isEmpty || new == old { return old.isEmpty ? new : "" }
        if new.hasPrefix(old) { return String(new.dropFirst(old.count)) }
        // The tail window moved: find where the last bit we showed sits in the new text.
        let anchor = String(old.suffix(256))
        if let r = new.range(of: anchor, options: .backwards) { return String(new[r.upperBound...]) }
        return "[… output skipped …]\n" + new
    }
}
