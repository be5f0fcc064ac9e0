import DevboxModel
import Transport

/// `wait_for_ready`: blocks until a devbox is ready or failed, with progress notifications.
struct WaitForReadyTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var timeoutSeconds: Int?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", timeoutSeconds = "timeout_seconds" }
    }

    let definition = MCPTool(
        name: "wait_for_ready",
        title: "Wait for ready",
        description: """
            Wait until a devbox has finished provisioning, with progress. If it failed, the error names the failed \
            step, its error and output tail; if timeout_seconds pass first, timed_out is true.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "timeout_seconds": Schema.integer("Longest wait.", minimum: 1, maximum: 3600, default: 120),
            ], required: ["devbox_id"]),
        outputSchema: ReadinessWait.outputSchema(),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let outcome = try await ReadinessWait.run(
            devboxId: input.devboxId, timeout: .seconds(input.timeoutSeconds ?? 120), call: call)
        return try outcome.result(tool: definition.name)
    }
}
