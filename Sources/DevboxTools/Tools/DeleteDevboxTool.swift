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
            Destroy a devbox: stops any provisioning in progress, ends its SSH sessions and deletes the environment with \
            everything in it (files in /workspace are lost). Use it when you are done with a devbox or it failed. \
            Deleting an already destroyed devbox succeeds and changes nothing. Returns the id and the state "destroyed".
            """,
        inputSchema: Schema.object(["devbox_id": Schema.devboxIDInput], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "devbox_id": Schema.string("The devbox that was destroyed."),
                "state": ["type": "string", "enum": ["destroyed"], "description": "Always \"destroyed\"."],
            ], required: ["devbox_id", "state"], closed: false),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        try await call.backend.deleteDevbox(id: input.devboxId)
        return .structured(["devbox_id": .string(input.devboxId), "state": "destroyed"])
    }
}
