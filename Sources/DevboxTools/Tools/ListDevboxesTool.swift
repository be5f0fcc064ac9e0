import DevboxModel
import Transport

/// `list_devboxes`: the caller's devboxes.
struct ListDevboxesTool: DevboxTool {
    typealias Input = NoInput

    let definition = MCPTool(
        name: "list_devboxes",
        title: "List devboxes",
        description: """
            List your devboxes (including failed and destroyed ones) with their state, newest first. Use it to find a \
            devbox id or to see what is still running.
            """,
        inputSchema: Schema.noArguments,
        outputSchema: Schema.output(["devboxes": Schema.array(Schema.devboxRef)]),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let boxes = try await call.backend.listDevboxes()
        return .structured(["devboxes": .array(boxes.map(ToolJSON.devbox))])
    }
}
