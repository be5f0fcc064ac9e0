import DevboxModel
import Transport

/// The egress policy's arguments, shared by `create_devbox` and `set_network`.
enum NetworkSchema {
    static let egress = Schema.enumeration(["allow_all", "deny_all"], "deny_all: only `allow` goes out.")
    static let entries = Schema.array(
        Schema.str, "CIDRs, domains or *.domains.", maxItems: 64)
    static let denied = Schema.array(Schema.str, "As allow.", maxItems: 64)
    static let properties: [String: JSONValue] = ["egress": egress, "allow": entries, "deny": denied]
}

/// `set_network`: replaces the egress policy of a live devbox.
struct SetNetworkTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var egress: String?
        var allow: [String]?
        var deny: [String]?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", egress, allow, deny }
    }

    let definition = MCPTool(
        name: "set_network",
        title: "Set network policy",
        description: """
            Replace a devbox's whole egress policy; new connections follow it at once. Private, link-local and host \
            addresses stay unreachable. Returns {network}.
            """,
        inputSchema: Schema.object(
            ["devbox_id": Schema.devboxIDInput].merging(NetworkSchema.properties) { a, _ in a }, required: ["devbox_id"]),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? {
        error.status == 422 ? "Fix that entry and call set_network again." : nil
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let n = DevboxNetwork(egress: input.egress ?? "allow_all", allow: input.allow ?? [], deny: input.deny ?? [])
        let now = try await call.backend.setNetwork(devboxId: input.devboxId, n)
        return .structured([
            "network": ["egress": .string(now.egress), "allow": .array(now.allow.map { .string($0) }),
                        "deny": .array(now.deny.map { .string($0) })],
        ])
    }
}

/// `port_url`: where a port of a ready devbox answers over HTTP.
struct PortURLTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var port: Int
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", port }

        func validate() throws(ToolFailure) {
            guard (1...65535).contains(port) else {
                throw ToolFailure("Invalid arguments for port_url: port must be between 1 and 65535.")
            }
        }
    }

    let definition = MCPTool(
        name: "port_url",
        title: "Port URL",
        description: """
            The HTTP URL of a devbox port (an app on its 127.0.0.1 answers), for the user or requests with the same \
            X-Provider-Token. Returns {url}.
            """,
        inputSchema: Schema.object(
            ["devbox_id": Schema.devboxIDInput, "port": Schema.integer("TCP port in the box.", minimum: 1, maximum: 65535)],
            required: ["devbox_id", "port"]),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let url = try await call.backend.portURL(devboxId: input.devboxId, port: input.port)
        return .structured(["url": .string(url)])
    }
}
