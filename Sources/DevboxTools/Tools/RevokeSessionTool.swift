import DevboxModel
import Transport

/// `revoke_session`: ends an SSH session and closes its connections.
struct RevokeSessionTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var sessionId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", sessionId = "session_id" }
    }

    let definition = MCPTool(
        name: "revoke_session",
        title: "Revoke SSH session",
        description: """
            Revoke an SSH session of a devbox: it stops accepting logins and its open connections are closed. The devbox \
            itself keeps running. Use it when you no longer need the access; create_session opens a new one.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "session_id": Schema.string("The session to revoke (ses_…), from create_session or list_sessions.", minLength: 1),
            ], required: ["devbox_id", "session_id"]),
        outputSchema: Schema.object(
            [
                "devbox_id": Schema.string("The devbox."),
                "session_id": Schema.string("The revoked session."),
                "revoked": ["type": "boolean", "enum": [true], "description": "Always true."],
            ], required: ["devbox_id", "session_id", "revoked"], closed: false),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? {
        error.status == 404 ? "It may already be revoked or expired: list_sessions shows the active ones." : nil
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        try await call.backend.revokeSession(devboxId: input.devboxId, sessionId: input.sessionId)
        return .structured(["devbox_id": .string(input.devboxId), "session_id": .string(input.sessionId), "revoked": true])
    }
}
