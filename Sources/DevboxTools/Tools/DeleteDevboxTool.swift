import DevboxModel
import Transport

/// `delete_devbox`: destroys a devbox.
struct DeleteDevboxTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "delete_devbox",
        title: "Delete devbox",
        description: """
            Destroy a devbox and everything in it (files lost, SSH sessions end). Returns {devbox_id, state: \
            "destroyed"}, also if already destroyed.
            """,
        inputSchema: Schema.devboxOnly,
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        try await call.backend.deleteDevbox(id: input.devboxId)
        return .structured(["devbox_id": .string(input.devboxId), "state": "destroyed"])
    }
}
