import DevboxModel
import Transport

/// `get_devbox`: one devbox, as `GET /api/v1/devboxes/:id` returns it.
struct GetDevboxTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "get_devbox",
        title: "Get devbox",
        description: """
            One devbox by id with every field: state, repositories with clone status, env names, the failed step. \
            Does not wait.
            """,
        inputSchema: Schema.devboxOnly,
        outputSchema: Schema.devbox,
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        .structured(ToolJSON.devbox(try await call.backend.devbox(id: input.devboxId)))
    }
}
