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
        title: "List provisioning steps and their output",
        description: """
            List the provisioning steps of a devbox in order (provision, inject_credentials, clone_repositories, \
            run_setup_commands, publish_access), each with its status, start and finish times, error and the tail of its \
            output. This is how you read the setup commands' stdout/stderr: use it when a devbox failed, or to watch \
            progress of a long setup. Raise tail_bytes to see more output (the service keeps the last 64 KiB per step).
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "tail_bytes": Schema.integer(
                    "How many bytes from the end of each step's output to return (0-65536, default 4000).", minimum: 0,
                    maximum: 65536, default: 4000),
            ], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "devbox_id": Schema.string("The devbox."),
                "operations": Schema.array(Schema.operation, "The steps, in the order they run."),
            ], required: ["devbox_id", "operations"], closed: false),
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
