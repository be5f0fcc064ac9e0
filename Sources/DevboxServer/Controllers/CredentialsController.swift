import DevboxModel
import DevboxService
import DevboxTools
import Foundation
import HTTPTypes
import Hummingbird

/// Issue 19: `GET /api/v1/devboxes/:id/usage` (what the AI-API broker forwarded for the
/// devbox) and `PATCH /api/v1/devboxes/:id/credentials` (replace or remove a proxy-mode
/// devbox's keys: `X-Claude-Token`, `X-Codex-Token`; an empty value removes).
struct CredentialsController {
    let credentials: CredentialBroker

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .get, "/api/v1/devboxes/:id/usage", use: usage)
        router.route(table, .patch, "/api/v1/devboxes/:id/credentials", use: replace)
    }

    @Sendable func usage(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let (box, usage) = try await credentials.brokerUsage(try context.requirePrincipal(), id: id)
        return JSONIO.rawJSON(Array(Self.usageJSON(box, usage).utf8))
    }

    @Sendable func replace(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let box = try await credentials.replaceCredentials(
            principal, id: id,
            claudeToken: request.headers[HTTPField.Name("X-Claude-Token")!],
            codexToken: request.headers[HTTPField.Name("X-Codex-Token")!])
        return JSONIO.rawJSON(DevboxWireJSON.devbox(box))
    }

    /// `{"devbox_id", "credential_mode", "requests", "input_tokens", "output_tokens",
    ///   "apis": {"anthropic": {...}, "openai": {...}}}`; counts since the service started.
    static func usageJSON(_ box: Devbox, _ usage: [BrokerAPI: BrokerUsageCounts]) -> String {
        func api(_ c: BrokerUsageCounts) -> String {
            let codes = c.statusCodes.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ")
            return "{\"requests\": \(c.requests), \"status_codes\": {\(codes)}, \"input_tokens\": \(c.inputTokens), \"output_tokens\": \(c.outputTokens)}"
        }
        let all = BrokerAPI.allCases.map { usage[$0] ?? BrokerUsageCounts() }
        let apis = BrokerAPI.allCases.map { "\"\($0.rawValue)\": \(api(usage[$0] ?? BrokerUsageCounts()))" }.joined(separator: ", ")
        return """
            {"devbox_id": "\(box.id)", "credential_mode": "\(box.credentialMode)", \
            "requests": \(all.map(\.requests).reduce(0, +)), \
            "input_tokens": \(all.map(\.inputTokens).reduce(0, +)), "output_tokens": \(all.map(\.outputTokens).reduce(0, +)), \
            "apis": {\(apis)}}
            """
    }
}
