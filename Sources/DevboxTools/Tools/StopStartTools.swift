import DevboxModel
import Transport

/// `stop_devbox`: stops a ready devbox, keeping its files.
struct StopDevboxTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "stop_devbox",
        title: "Stop devbox",
        description: """
            Stop a ready devbox to free its memory: processes end, /tmp is emptied; files, packages and env stay \
            for start_devbox. Returns {devbox}.
            """,
        inputSchema: Schema.devboxOnly,
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let current = try await call.backend.devbox(id: input.devboxId)
        let box = current.state == .stopped ? current : try await call.backend.stopDevbox(id: input.devboxId)
        return .structured(["devbox": ToolJSON.devbox(box)])
    }
}

/// `start_devbox`: runs a stopped devbox again.
struct StartDevboxTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "start_devbox",
        title: "Start devbox",
        description: """
            Start a stopped devbox on its kept files (nothing set up again, no process restarted). Returns {devbox} \
            once ready.
            """,
        inputSchema: Schema.devboxOnly,
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let box = try await call.backend.startDevbox(id: input.devboxId)
        return .structured(["devbox": ToolJSON.devbox(box)])
    }
}
