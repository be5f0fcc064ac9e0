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
        title: "Run command",
        description: """
            Run a command in a ready devbox and wait: a string runs with sh -c, an array is the argv; as root in \
            /workspace with the devbox's env. Returns exit_code (null and `signal` if killed) and the last 32 KiB of \
            stdout and stderr; a non-zero exit is no tool error.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "command": [
                    "type": ["string", "array"], "items": ["type": "string"], "minLength": 1, "minItems": 1,
                    "description": "Shell line or argv.",
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
        var forwarder: ProgressForwarder? = nil
        if call.request.progressToken != nil {
            let f = ProgressForwarder(context: call.request)
            onOutput = { f.append($0.bytes) }
            forwarder = f
        }
        let result: ExecResult
        do {
            result = try await call.backend.exec(devboxId: input.devboxId, request, onOutput: onOutput)
        } catch {
            await forwarder?.finish()
            throw error
        }
        // Output still buffered goes out before the response (notifications must precede it).
        await forwarder?.finish()
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
}

/// Sends a command's output as progress messages while it runs: output is sent within
/// `interval` of arriving — at once after a quiet spell, batched while it streams (at most one
/// message per interval, each with the last 4 KiB of what arrived since the previous one);
/// progress = bytes of output so far. A message waited for the next chunk before, so a line
/// printed before a long pause arrived only after the pause.
final class ProgressForwarder: Sendable {
    static let interval: Duration = .milliseconds(100)
    static let maxMessageBytes = 4096

    private struct State {
        var pending: [UInt8] = []
        var finished = false
    }
    /// Shared by the producer (`append`) and the flusher task.
    private final class Buffer: Sendable {
        let state = Mutex(State())
    }
    private let buffer: Buffer
    /// One tick per burst: the flusher wakes when the first bytes arrive into an empty buffer.
    private let ticks: AsyncStream<Void>.Continuation
    private let flusher: Task<Void, Never>

    init(context: MCPRequestContext) {
        let (stream, ticks) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.ticks = ticks
        let buffer = Buffer()
        self.buffer = buffer
        flusher = Task {
            var total = 0
            var last: ContinuousClock.Instant? = nil
            func flush(final: Bool) async {
                let bytes = buffer.state.withLock { s -> [UInt8] in
                    // Hold back a UTF-8 sequence cut at the end until the rest arrives.
                    let keep = final ? 0 : ProgressForwarder.incompleteTail(s.pending)
                    let out = Array(s.pending.dropLast(keep))
                    s.pending.removeFirst(out.count)
                    return out
                }
                guard !bytes.isEmpty else { return }
                total += bytes.count
                last = .now
                let text = String(decoding: bytes.suffix(ProgressForwarder.maxMessageBytes), as: UTF8.self)
                await context.reportProgress(progress: Double(total), message: text)
            }
            for await _ in stream {
                if let last, case let wait = ProgressForwarder.interval - (ContinuousClock.now - last), wait > .zero {
                    try? await Task.sleep(for: wait)
                }
                await flush(final: false)
            }
            await flush(final: true)
        }
    }

    func append(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let wake = buffer.state.withLock { s -> Bool in
            if s.finished { return false }
            s.pending += bytes
            return true
        }
        if wake { ticks.yield(()) }
    }

    /// Sends what is left and waits until every message is out.
    func finish() async {
        buffer.state.withLock { $0.finished = true }
        ticks.finish()
        await flusher.value
    }

    /// Bytes at the end of `b` that start a UTF-8 sequence not yet complete (0 when none).
    static func incompleteTail(_ b: [UInt8]) -> Int {
        var i = b.count - 1
        var back = 0
        while i >= 0 && back < 3 && b[i] & 0xC0 == 0x80 {
            i -= 1
            back += 1
        }
        guard i >= 0 else { return 0 }
        let lead = b[i]
        let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        return need > back + 1 ? back + 1 : 0
    }
}
