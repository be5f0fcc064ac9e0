import DevboxModel
import Transport

/// `list_sessions`: the active SSH sessions of a devbox.
struct ListSessionsTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "list_sessions",
        title: "List SSH sessions",
        description: """
            A devbox's active SSH sessions: sessions [{session_id, created_at, expires_at, connections, ssh}], to \
            reuse or revoke.
            """,
        inputSchema: Schema.devboxOnly,
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let sessions = try await call.backend.listSessions(devboxId: input.devboxId)
        return .structured([
            "devbox_id": .string(input.devboxId), "sessions": .array(try sessions.map { try ToolJSON.value($0) }),
        ])
    }
}
