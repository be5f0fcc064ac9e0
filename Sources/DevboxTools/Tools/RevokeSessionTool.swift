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
            End an SSH session of a devbox: no more logins, open connections closed. The devbox keeps running.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "session_id": Schema.string("Session id (ses_…)."),
            ], required: ["devbox_id", "session_id"]),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? {
        error.status == 404 ? "It may already be revoked or expired: list_sessions shows the active ones." : nil
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        try await call.backend.revokeSession(devboxId: input.devboxId, sessionId: input.sessionId)
        return .structured(["devbox_id": .string(input.devboxId), "session_id": .string(input.sessionId), "revoked": true])
    }
}
