import DevboxModel
import Transport

/// `list_github_repos`: the repositories the user's GitHub connection can reach.
struct ListGitHubReposTool: DevboxTool {
    typealias Input = NoInput

    let definition = MCPTool(
        name: "list_github_repos",
        title: "List GitHub repositories",
        description: """
            List the GitHub repositories the user's connected GitHub account can reach (id, owner/name, private or not, \
            default branch). Use it to pick repositories for create_devbox (pass full_name and optionally repo_id). \
            If GitHub is not connected, the user must connect it in the devbox dashboard first; public repositories can \
            be cloned without a connection.
            """,
        inputSchema: Schema.noArguments,
        outputSchema: Schema.object(
            [
                "repositories": Schema.array(
                    Schema.object(
                        [
                            "id": Schema.integer("GitHub repository id (repo_id in create_devbox)."),
                            "full_name": Schema.string("owner/name (full_name in create_devbox)."),
                            "private": Schema.boolean("Whether the repository is private."),
                            "default_branch": Schema.nullableString("Default branch."),
                            "html_url": Schema.nullableString("Web address."),
                        ], required: ["id", "full_name", "private"], description: "A repository.", closed: false),
                    "Repositories the connection can reach.")
            ], required: ["repositories"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true))

    func nextStep(after error: DevboxAPIError) -> String? {
        switch error.status {
        case 404, 409, 412:
            "GitHub is not connected for this user: ask the user to connect it in the devbox dashboard (or `devbox github connect`). Public repositories can still be passed to create_devbox by full_name."
        default: nil
        }
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let repos = try await call.backend.listGitHubRepos()
        return .structured(["repositories": .array(try repos.map { try ToolJSON.value($0) })])
    }
}
