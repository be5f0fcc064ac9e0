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
            Open SSH access to a ready devbox. Returns a ready-to-run `command` (ssh -p PORT … SESSION@HOST) and the \
            connection details (host, port, username, workspace_path). Run the command with the private key matching \
            the public key you registered with set_ssh_key (add `-i <private key>`); append a command to run it \
            non-interactively, e.g. `<command> 'cd /workspace && make test'`. The devbox must be ready (wait_for_ready) \
            and a key must be set (set_ssh_key). The session expires after ttl_seconds; revoke_session ends it earlier.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "ttl_seconds": Schema.integer(
                    "Session lifetime in seconds (60-86400, default 3600).", minimum: 60, maximum: 86400, default: 3600),
            ], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "session_id": Schema.string("Session id (ses_…); also the SSH user name."),
                "expires_at": Schema.timestamp("When the session stops accepting connections."),
                "command": Schema.string("Ready-to-run ssh command; add -i <private key> if your key is not the default one."),
                "ssh": Schema.sshAccess,
            ], required: ["session_id", "expires_at", "command", "ssh"], closed: false),
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
