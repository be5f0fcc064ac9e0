import DevboxModel
import Transport

/// `list_repositories`: the repositories of a devbox with their clone status.
struct ListRepositoriesTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id" }
    }

    let definition = MCPTool(
        name: "list_repositories",
        title: "List repositories",
        description: """
            A devbox's repositories with their clone status: repositories [{full_name, ref, target_path, status, \
            commit, error}].
            """,
        inputSchema: Schema.devboxOnly,
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let repos = try await call.backend.listRepositories(devboxId: input.devboxId)
        return .structured([
            "devbox_id": .string(input.devboxId), "repositories": .array(repos.map(ToolJSON.repository)),
        ])
    }
}
