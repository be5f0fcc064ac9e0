import DevboxModel
import Transport

/// `create_session`: an SSH session on a ready devbox, with the ready-to-run command.
struct CreateSessionTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var ttlSeconds: Int?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", ttlSeconds = "ttl_seconds" }
    }

    let definition = MCPTool(
        name: "create_session",
        title: "Create SSH session",
        description: """
            SSH access to a ready devbox for a human's shell (you use run_command). Needs set_ssh_key first. Returns \
            session_id, expires_at, an ssh `command` (add -i <private key>) and ssh {host, port, username, workspace_path}.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "ttl_seconds": Schema.integer("Session lifetime.", minimum: 60, maximum: 86400, default: 3600),
            ], required: ["devbox_id"]),
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? {
        guard error.status == 409 else { return nil }
        if error.message.contains("SSH key") { return "Register your public key with set_ssh_key, then call create_session again." }
        return "Call wait_for_ready with this devbox_id first; sessions need a ready devbox."
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let session = try await call.backend.createSession(devboxId: input.devboxId, ttlSeconds: input.ttlSeconds)
        return .structured(try ToolJSON.value(session))
    }
}
