import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

/// `devbox audit`: the audit log, newest first (GET /api/v1/audit).
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Show the audit log: who did what to which devbox, newest first.",
        discussion: CLIExit.help)
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Only events of this devbox.") var devbox: String?
    @Option(help: "Only this action (devbox.create) or family (devbox).") var action: String?
    @Option(help: "Only events at or after this RFC 3339 time.") var since: String?
    @Option(help: "At most this many events (1-500).") var limit = 50
    @Flag(help: "Print the API's JSON.") var json = false

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            var sinceDate: Date?
            if let since {
                guard let d = DevboxJSON.parseDate(since) else { throw DevboxClientError.invalidArgument("--since must be an RFC 3339 time") }
                sinceDate = d
            }
            if json {
                var q = URLComponents()
                q.queryItems = [URLQueryItem(name: "limit", value: String(limit))]
                    + (devbox.map { [URLQueryItem(name: "devbox_id", value: $0)] } ?? [])
                    + (action.map { [URLQueryItem(name: "action", value: $0)] } ?? [])
                    + (since.map { [URLQueryItem(name: "since", value: $0)] } ?? [])
                let query = q.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B") ?? ""
                return printJSON(try await client.rawRequest("GET", path: "/api/v1/audit?" + query))
            }
            let page = try await client.audit.list(devboxId: devbox, action: action, since: sinceDate, limit: limit)
            guard !page.events.isEmpty else { return print("no audit events") }
            print(
                table(
                    ["TIME", "FACE", "ACTION", "DEVBOX", "RESULT", "USER", "SOURCE"],
                    page.events.map {
                        [DevboxJSON.formatDate($0.time), $0.face, $0.action, $0.devboxId ?? "-", $0.result, $0.userId ?? "-",
                         $0.source ?? "-"]
                    }))
        }
    }
}
