import DevboxModel
import Transport

/// `list_github_repos`: the repositories the user's GitHub connection can reach.
struct ListGitHubReposTool: DevboxTool {
    typealias Input = NoInput

    let definition = MCPTool(
        name: "list_github_repos",
        title: "List GitHub repositories",
        description: """
            GitHub repositories the user's account can reach, for create_devbox: repositories [{id, full_name, \
            private, default_branch, html_url}]. Public ones need no connection.
            """,
        inputSchema: Schema.noArguments,
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true))

    func nextStep(after error: DevboxAPIError) -> String? {
        switch error.status {
        case 404, 409, 412:
            "Ask the user to connect GitHub in the devbox dashboard (or `devbox github connect`); public repositories can be passed to create_devbox by full_name without it."
        default: nil
        }
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let repos = try await call.backend.listGitHubRepos()
        return .structured(["repositories": .array(try repos.map { try ToolJSON.value($0) })])
    }
}
