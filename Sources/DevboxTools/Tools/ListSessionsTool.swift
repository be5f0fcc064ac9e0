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
            List the active (unexpired, unrevoked) SSH sessions of a devbox, with their expiry, number of open \
            connections and connection details. Use it to find a session to reuse or to revoke with revoke_session.
            """,
        inputSchema: Schema.object(["devbox_id": Schema.devboxIDInput], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "devbox_id": Schema.string("The devbox."),
                "sessions": Schema.array(
                    Schema.object(
                        [
                            "session_id": Schema.string("Session id (ses_…); also the SSH user name."),
                            "devbox_id": Schema.string("The devbox."),
                            "created_at": Schema.timestamp("When the session was created."),
                            "expires_at": Schema.timestamp("When it stops accepting connections."),
                            "connections": Schema.integer("Open SSH connections right now."),
                            "ssh": Schema.sshAccess,
                        ], required: ["session_id", "devbox_id", "created_at", "expires_at", "connections", "ssh"],
                        description: "An active session.", closed: false),
                    "Active sessions."),
            ], required: ["devbox_id", "sessions"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let sessions = try await call.backend.listSessions(devboxId: input.devboxId)
        return .structured([
            "devbox_id": .string(input.devboxId), "sessions": .array(try sessions.map { try ToolJSON.value($0) }),
        ])
    }
}
