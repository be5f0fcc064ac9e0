import DevboxModel
import Transport

/// `list_operations`: the provisioning steps of a devbox with their output tails.
struct ListOperationsTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var tailBytes: Int?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", tailBytes = "tail_bytes" }
    }

    static let defaultTail = 4000

    let definition = MCPTool(
        name: "list_operations",
        title: "List provisioning steps",
        description: """
            A devbox's provisioning steps, for setup output after a failure or during a long setup: operations \
            [{name, status, started_at, finished_at, error, output_tail}].
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "tail_bytes": Schema.integer("Output bytes per step, from the end.", minimum: 0, maximum: 65536, default: 4000),
            ], required: ["devbox_id"]),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let ops = try await call.backend.operations(devboxId: input.devboxId)
        let tail = input.tailBytes ?? Self.defaultTail
        return .structured([
            "devbox_id": .string(input.devboxId),
            "operations": .array(ops.map { OperationView.json($0, tailBytes: tail) }),
        ])
    }
}
