import DevboxModel
import Transport

/// `list_devboxes`: the caller's devboxes.
struct ListDevboxesTool: DevboxTool {
    typealias Input = NoInput

    let definition = MCPTool(
        name: "list_devboxes",
        title: "List devboxes",
        description: """
            List all of your devboxes (including failed and destroyed ones) with their state. Use it to find a devbox id \
            you lost track of, or to see what is still running before creating more; delete_devbox the ones you no \
            longer need.
            """,
        inputSchema: Schema.noArguments,
        outputSchema: Schema.object(
            ["devboxes": Schema.array(Schema.devbox, "Your devboxes, newest first.")], required: ["devboxes"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let boxes = try await call.backend.listDevboxes()
        return .structured(["devboxes": .array(boxes.map(ToolJSON.devbox))])
    }
}
