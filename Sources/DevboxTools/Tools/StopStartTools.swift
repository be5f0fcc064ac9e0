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
            Stop a ready devbox to free its memory while keeping its files: every process in it ends (running \
            commands, servers, SSH connections), /tmp is emptied; /workspace, /root, /home, installed packages and \
            its environment stay. start_devbox brings it back without cloning or setting up again. Stopping an \
            already stopped devbox changes nothing. Devboxes also stop by themselves after their idle timeout. \
            Returns the devbox (state "stopped").
            """,
        inputSchema: Schema.object(["devbox_id": Schema.devboxIDInput], required: ["devbox_id"]),
        outputSchema: Schema.object(["devbox": Schema.devbox], required: ["devbox"], closed: false),
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
            Start a stopped devbox again (stopped by stop_devbox or by its idle timeout). Its files, installed \
            packages and environment are as they were; nothing is cloned or set up again, but processes that ran \
            before the stop are not restarted. Returns when it is ready (usually within a second or two) with the \
            devbox. Starting a ready devbox changes nothing.
            """,
        inputSchema: Schema.object(["devbox_id": Schema.devboxIDInput], required: ["devbox_id"]),
        outputSchema: Schema.object(["devbox": Schema.devbox], required: ["devbox"], closed: false),
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let box = try await call.backend.startDevbox(id: input.devboxId)
        return .structured(["devbox": ToolJSON.devbox(box)])
    }
}
