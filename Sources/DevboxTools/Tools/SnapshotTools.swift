import DevboxModel
import Transport

/// `snapshot_devbox` (issue 23): a devbox's files frozen as a named snapshot that
/// `create_devbox` (`snapshot`) and `fork_devbox` start new devboxes from.
struct SnapshotDevboxTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var name: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", name }
    }

    let definition = MCPTool(
        name: "snapshot_devbox",
        title: "Snapshot devbox",
        description: "Save a devbox's files (no processes, env values or AI tokens) as a snapshot for create_devbox's snapshot.",
        inputSchema: Schema.object(
            ["devbox_id": Schema.devboxIDInput, "name": Schema.string("Unique among yours.")],
            required: ["devbox_id", "name"]),
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? {
        error.status == 409 && error.message.contains("name")
            ? "Pick another name and call snapshot_devbox again." : nil
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        .structured(try ToolJSON.value(try await call.backend.createSnapshot(devboxId: input.devboxId, name: input.name)))
    }
}

/// `fork_devbox`: a snapshot of a devbox and `count` new devboxes from it, in one call. The
/// new boxes get AI tokens only from this MCP server (never from the original, never as
/// arguments): the ones the original's credential profile asks for.
struct ForkDevboxTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var count: Int?
        var name: String?
        var copyEnv: Bool?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", count, name, copyEnv = "copy_env" }
    }

    let definition = MCPTool(
        name: "fork_devbox",
        title: "Fork devbox",
        description: "Snapshot a devbox and create count devboxes from it. Returns {snapshot, devboxes}; wait_for_ready each.",
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "count": Schema.integer("New devboxes.", minimum: 1, maximum: 32, default: 1),
                "name": Schema.string("Snapshot name; new names' prefix."),
                "copy_env": Schema.boolean("Copy env values too."),
            ], required: ["devbox_id"]),
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let original = try await call.backend.devbox(id: input.devboxId)
        var tokens = InjectionTokens()
        if original.credentialProfile.injectClaudeToken { tokens.claudeToken = call.credentials.claudeToken }
        if original.credentialProfile.injectCodexToken { tokens.codexToken = call.credentials.codexToken }
        let r = try await call.backend.forkDevbox(
            id: input.devboxId, ForkDevboxRequest(count: input.count ?? 1, name: input.name, copyEnv: input.copyEnv),
            tokens: tokens)
        return .structured([
            "snapshot": try ToolJSON.value(r.snapshot),
            "devboxes": .array(r.devboxes.map(ToolJSON.devbox)),
        ])
    }
}
