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
            Get one devbox by id: its state (requested, provisioning, ready, failed, stopped, destroyed), plan, \
            repositories with clone status, environment variable names, setup commands, timestamps and, when failed, \
            the failed step and error. Use it to check on a devbox without waiting; to block until it is ready use \
            wait_for_ready, and for setup output use list_operations.
            """,
        inputSchema: Schema.object(["devbox_id": Schema.devboxIDInput], required: ["devbox_id"]),
        outputSchema: Schema.devbox,
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        .structured(ToolJSON.devbox(try await call.backend.devbox(id: input.devboxId)))
    }
}
