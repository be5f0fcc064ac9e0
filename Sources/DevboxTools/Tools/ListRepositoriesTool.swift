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
        title: "List a devbox's repositories",
        description: """
            List the repositories cloned into a devbox: full name, ref, target path inside /workspace, clone status \
            (pending, cloning, cloned, failed), the commit checked out and any clone error. Use it to find where a \
            repository lives in the devbox or why a clone failed.
            """,
        inputSchema: Schema.object(["devbox_id": Schema.devboxIDInput], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "devbox_id": Schema.string("The devbox."),
                "repositories": Schema.array(Schema.repository, "The repositories, in the order given on create."),
            ], required: ["devbox_id", "repositories"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let repos = try await call.backend.listRepositories(devboxId: input.devboxId)
        return .structured([
            "devbox_id": .string(input.devboxId), "repositories": .array(repos.map(ToolJSON.repository)),
        ])
    }
}
