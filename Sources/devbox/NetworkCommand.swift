import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

// MARK: network

struct NetworkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network", abstract: "Show or replace a devbox's egress policy.",
        discussion: """
            Without options, prints the policy. With --deny-all or --allow-all, replaces the \
            whole policy with the one given (an entry not repeated is dropped) and prints it as \
            stored; new connections from the devbox follow it within a second, open ones are \
            kept. Entries are CIDRs (198.51.100.0/24), addresses or domain names; *.example.org \
            matches the names under example.org, not example.org itself. At most 64 of each.

              devbox network ID --deny-all --allow api.example.com --allow '*.example.org'
              devbox network ID --allow-all --deny 198.51.100.0/24
              devbox network ID --allow-all      (the default again: no restriction)

            Whatever the policy, a devbox on its own network (the default; not under \
            DEVBOX_NETWORK=host) never reaches the host, other devboxes, private or link-local \
            addresses.

            \(CLIExit.help)
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String
    @Flag(name: .customLong("deny-all"), help: "New policy: nothing goes out but the --allow entries.") var denyAll = false
    @Flag(name: .customLong("allow-all"), help: "New policy: everything goes out but the --deny entries.") var allowAll = false
    @Option(help: ArgumentHelp("Entry of the new policy's allow-list (repeatable).", valueName: "cidr|domain"))
    var allow: [String] = []
    @Option(help: ArgumentHelp("Entry of the new policy's deny-list (repeatable).", valueName: "cidr|domain"))
    var deny: [String] = []
    @Flag(help: "Print the API's JSON.") var json = false

    func validate() throws {
        if denyAll && allowAll { throw ValidationError("--deny-all and --allow-all cannot be combined") }
        if !denyAll && !allowAll && !(allow.isEmpty && deny.isEmpty) {
            throw ValidationError(
                "--allow/--deny replace the whole policy: say which with --deny-all (an allow-list) or --allow-all (a deny-list)")
        }
    }

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            let path = "/api/v1/devboxes/\(try GetCommand.escape(id))/network"
            guard denyAll || allowAll else {
                if json { return printJSON(try await client.rawRequest("GET", path: path)) }
                return printPolicy(try await client.devboxes.network(id: id))
            }
            let policy = DevboxNetwork(egress: denyAll ? "deny_all" : "allow_all", allow: allow, deny: deny)
            warnIneffectiveAllow(policy)
            try await withPolicyFlagErrors(policy) {
                if json {
                    printJSON(try await client.rawRequest("PATCH", path: path, jsonBody: try DevboxJSON.encoder().encode(policy)))
                } else {
                    printPolicy(try await client.devboxes.setNetwork(id: id, policy))
                }
            }
        }
    }

    func printPolicy(_ n: DevboxNetwork) {
        print("egress: \(n.egress)")
        print("allow:  \(n.allow.isEmpty ? "(none)" : n.allow.joined(separator: ", "))")
        print("deny:   \(n.deny.isEmpty ? "(none)" : n.deny.joined(separator: ", "))")
    }
}

/// `deny_all, allow: a, b; deny: c` (empty lists left out): `devbox get`'s network line.
func networkSummary(_ n: DevboxNetwork) -> String {
    var parts: [String] = []
    if !n.allow.isEmpty { parts.append("allow: \(n.allow.joined(separator: ", "))") }
    if !n.deny.isEmpty { parts.append("deny: \(n.deny.joined(separator: ", "))") }
    return parts.isEmpty ? n.egress : "\(n.egress), \(parts.joined(separator: "; "))"
}

/// Under allow_all everything not denied goes out anyway: say so rather than let an
/// allow-list look like it restricts anything.
func warnIneffectiveAllow(_ n: DevboxNetwork) {
    if n.egress == "allow_all", !n.allow.isEmpty {
        stderrLine("devbox: note: --allow restricts nothing without --deny-all (egress is allow_all)")
    }
}

/// Runs `body`; a 422 naming `network.allow[i]` / `network.deny[i]` is reported with the flag
/// and value it came from (`--allow 10.0.0.0/8`), since the user never typed the field name.
func withPolicyFlagErrors<T>(_ policy: DevboxNetwork, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch DevboxClientError.api(let a) where a.status == 422 {
        guard let field = a.field, let flag = policyFlag(field: field, policy) else { throw DevboxClientError.api(a) }
        throw CLIError.failure("invalid request: \(flag): \(a.message) (field: \(field))", code: CLIExit.apiError)
    }
}

/// `network.allow[2]` → `--allow '<the third value>'`; nil for any other field.
func policyFlag(field: String, _ policy: DevboxNetwork) -> String? {
    for (name, list) in [("allow", policy.allow), ("deny", policy.deny)] {
        let prefix = "network.\(name)["
        guard field.hasPrefix(prefix), field.hasSuffix("]"),
            let i = Int(field.dropFirst(prefix.count).dropLast()), list.indices.contains(i)
        else { continue }
        return "--\(name) '\(list[i])'"
    }
    return nil
}
