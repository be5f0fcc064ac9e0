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
        title: "Wait until a devbox is ready",
        description: """
            Wait until a devbox finishes provisioning. Use it right after create_devbox (or to resume a wait that timed \
            out). Returns as soon as the devbox is ready, with the devbox and the next step (set_ssh_key + \
            create_session). Sends a progress notification at every state and step change when you pass a progress \
            token, and stops when the request is cancelled. If provisioning failed, the result is an error naming the \
            failed step with its error and output tail (list_operations shows all output). If timeout_seconds pass first, \
            the result is an error saying it is still provisioning; call wait_for_ready again to keep waiting. Waiting \
            changes nothing.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "timeout_seconds": Schema.integer(
                    "How long to wait at most, in seconds (1-3600, default 120).", minimum: 1, maximum: 3600, default: 120),
            ], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "devbox": Schema.devbox,
                "failed_operation": [
                    "type": ["object", "null"], "description": "The step that failed, if the devbox failed (else null).",
                    "properties": Schema.operation["properties"]!,
                ],
                "waited_seconds": ["type": "number", "description": "How long this call waited."],
                "next_step": Schema.nextStep,
            ], required: ["devbox", "failed_operation", "waited_seconds", "next_step"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let outcome = try await ReadinessWait.run(
            devboxId: input.devboxId, timeout: .seconds(input.timeoutSeconds ?? 120), call: call)
        return try outcome.result(tool: definition.name)
    }
}
