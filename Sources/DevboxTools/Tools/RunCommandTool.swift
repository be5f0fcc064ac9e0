import DevboxModel
import Foundation
import Synchronization
import Transport

/// `run_command`: runs a command inside a ready devbox and returns its exit status and output.
struct RunCommandTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var command: ExecCommand
        var env: [String: String]?
        var cwd: String?
        var timeoutSeconds: Int?
        var stdin: String?
        enum CodingKeys: String, CodingKey {
            case devboxId = "devbox_id", command, env, cwd, stdin, timeoutSeconds = "timeout_seconds"
        }
    }

    /// Output kept per stream in the tool result (the tail); the REST API keeps more.
    static let resultTailBytes = 32 * 1024

    let definition = MCPTool(
        name: "run_command",
        title: "Run a command in a devbox",
        description: """
            Run a command in a ready devbox and wait for it: a string runs with /bin/sh -c, an array is the argv. Runs \
            as root in /workspace with the devbox's env. Returns exit_code (null and `signal` if killed), the last 32 \
            KiB of stdout and stderr; a non-zero exit is not a tool error. On timeout the command and its children are \
            killed. With a progress token, output streams as progress.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "command": [
                    "type": ["string", "array"], "items": ["type": "string"], "minLength": 1, "minItems": 1,
                    "description": "Shell line, or argv such as [\"python3\", \"-V\"].",
                ],
                "env": ["type": "object", "additionalProperties": ["type": "string"], "description": "Extra environment variables."],
                "cwd": Schema.string("Absolute working directory."),
                "timeout_seconds": Schema.integer("Kill it after this long.", minimum: 1, maximum: 3600, default: 120),
                "stdin": Schema.string("Text for standard input."),
            ], required: ["devbox_id", "command"]),
        outputSchema: Schema.output(
            [
                "exit_code": Schema.nullableInt, "signal": Schema.nullableInt,
                "stdout": Schema.str, "stderr": Schema.str,
                "truncated": Schema.typed("boolean", "Earlier output was dropped."),
                "timed_out": Schema.bool, "duration_ms": Schema.int,
            ]),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true))

    func nextStep(after error: DevboxAPIError) -> String? {
        guard error.status == 409 else { return nil }
        if error.message.contains("stopped") { return "Call start_devbox with this devbox_id, then run_command again." }
        return "Call wait_for_ready with this devbox_id first; commands need a ready devbox."
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let request = ExecRequest(
            command: input.command, env: input.env, cwd: input.cwd, timeoutSeconds: input.timeoutSeconds ?? 120,
            stdin: input.stdin)
        var onOutput: (@Sendable (ExecChunk) -> Void)? = nil
        var pump: Task<Void, Never>? = nil
        var finish: (() -> Void)? = nil
        if call.request.progressToken != nil {
            let (stream, continuation) = AsyncStream.makeStream(of: ExecChunk.self, bufferingPolicy: .bufferingNewest(256))
            onOutput = { continuation.yield($0) }
            finish = { continuation.finish() }
            let context = call.request
            pump = Task { await Self.forward(stream, to: context) }
        }
        let result: ExecResult
        do {
            result = try await call.backend.exec(devboxId: input.devboxId, request, onOutput: onOutput)
        } catch {
            finish?()
            await pump?.value
            throw error
        }
        finish?()
        await pump?.value
        let out = OperationView.tail(result.stdout, bytes: Self.resultTailBytes)
        let err = OperationView.tail(result.stderr, bytes: Self.resultTailBytes)
        return .structured([
            "exit_code": result.exitCode.map { .int($0) } ?? .null,
            "signal": result.signal.map { .int($0) } ?? .null,
            "stdout": .string(out.text),
            "stderr": .string(err.text),
            "truncated": .bool(result.truncated || out.cut || err.cut),
            "timed_out": .bool(result.timedOut),
            "duration_ms": .int(result.durationMs),
        ])
    }

    /// Sends output as progress messages: batched (at most ~4 per second, 4 KiB each),
    /// progress = bytes of output so far.
    static func forward(_ stream: AsyncStream<ExecChunk>, to context: MCPRequestContext) async {
        var pending: [UInt8] = []
        var total = 0
        var last = ContinuousClock.now
        func flush() async {
            guard !pending.isEmpty else { return }
            let text = String(decoding: pending.suffix(4096), as: UTF8.self)
            total += pending.count
            pending = []
            last = .now
            await context.reportProgress(progress: Double(total), message: text)
        }
        for await chunk in stream {
            pending += chunk.bytes
            if ContinuousClock.now - last >= .milliseconds(250) || pending.count >= 4096 { await flush() }
        }
        await flush()
    }
}
