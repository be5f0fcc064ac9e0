import DevboxModel
import Foundation
import Transport

/// `get_devbox_stats` (issue 24): what a devbox uses now, as `GET /api/v1/devboxes/:id/stats`.
struct StatsTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "get_devbox_stats",
        title: "Devbox usage",
        description: "A devbox's CPU seconds, memory (now, peak, limit), pids, disk and network bytes; null while stopped.",
        inputSchema: Schema.devboxOnly,
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        .structured(Self.json(try await call.backend.stats(devboxId: input.devboxId)))
    }

    static func json(_ s: DevboxStats) -> JSONValue {
        func int(_ v: Int64?) -> JSONValue { v.map { .int(Int($0)) } ?? .null }
        return [
            "devbox_id": .string(s.devboxId), "state": .string(s.state.rawValue), "running": .bool(s.running),
            "sampled_at": ToolJSON.date(s.sampledAt),
            "cpu_seconds": s.cpuSeconds.map { .double(($0 * 1000).rounded() / 1000) } ?? .null,
            "memory_bytes": int(s.memoryBytes), "memory_peak_bytes": int(s.memoryPeakBytes),
            "memory_limit_bytes": int(s.memoryLimitBytes), "pids": s.pids.map { .int($0) } ?? .null,
            "disk_used_bytes": .int(Int(s.diskUsedBytes)), "disk_used_complete": .bool(s.diskUsedComplete),
            "network_in_bytes": int(s.networkInBytes), "network_out_bytes": int(s.networkOutBytes),
        ]
    }
}
