import DevboxModel
import Transport

/// `create_devbox`: every field of `POST /api/v1/devboxes`, the two injection flags, and an
/// optional wait until ready.
struct CreateDevboxTool: DevboxTool {
    struct Repository: Decodable, Sendable {
        var fullName: String
        var repoId: Int64?
        var ref: String?
        var targetPath: String?
        enum CodingKeys: String, CodingKey { case fullName = "full_name", repoId = "repo_id", ref, targetPath = "target_path" }
    }

    struct Input: ToolInput {
        var name: String
        var plan: String?
        var repositories: [Repository]?
        var repository: String?
        var branch: String?
        var env: [String: String]?
        var setupCommands: [String]?
        var setupTimeoutSeconds: Int?
        var idleTimeoutSeconds: Int?
        var ttlSeconds: Int?
        var injectClaudeToken: Bool?
        var injectCodexToken: Bool?
        var wait: Bool?
        var waitTimeoutSeconds: Int?

        enum CodingKeys: String, CodingKey {
            case name, plan, repositories, repository, branch, env, wait
            case setupCommands = "setup_commands"
            case setupTimeoutSeconds = "setup_timeout_seconds"
            case idleTimeoutSeconds = "idle_timeout_seconds"
            case ttlSeconds = "ttl_seconds"
            case injectClaudeToken = "inject_claude_token"
            case injectCodexToken = "inject_codex_token"
            case waitTimeoutSeconds = "wait_timeout_seconds"
        }

        func validate() throws(ToolFailure) {
            if waitTimeoutSeconds != nil && wait != true {
                throw ToolFailure(
                    "Invalid arguments for create_devbox: wait_timeout_seconds only applies with wait: true. Drop it or set wait: true, and call create_devbox again.")
            }
        }

        var request: CreateDevboxRequest {
            let profile: CredentialProfile? =
                injectClaudeToken == nil && injectCodexToken == nil
                ? nil
                : CredentialProfile(injectClaudeToken: injectClaudeToken ?? false, injectCodexToken: injectCodexToken ?? false)
            return CreateDevboxRequest(
                name: name, plan: plan, repository: repository, branch: branch,
                repositories: repositories?.map {
                    DevboxRepositoryRequest(repoId: $0.repoId, fullName: $0.fullName, ref: $0.ref, targetPath: $0.targetPath)
                },
                credentialProfile: profile, env: env, setupCommands: setupCommands, setupTimeoutSeconds: setupTimeoutSeconds,
                idleTimeoutSeconds: idleTimeoutSeconds, ttlSeconds: ttlSeconds)
        }
    }

    let definition = MCPTool(
        name: "create_devbox",
        title: "Create devbox",
        description: """
            Create a new devbox: a disposable Linux development environment with /workspace, reachable over SSH. \
            Use it when you need a place to clone a repository, install dependencies, build, run tests or try commands \
            in isolation. Provisioning runs in steps (provision, inject_credentials, clone_repositories, \
            run_setup_commands, publish_access); setup_commands run in order in /workspace after the clone and the first \
            non-zero exit fails the devbox. By default this returns at once with the devbox in state "requested"; next \
            call wait_for_ready with its id. With wait: true it returns only when the devbox is ready (or reports the \
            failed step, its error and output tail), sending progress notifications meanwhile. \
            Claude/Codex tokens are never arguments: set inject_claude_token / inject_codex_token and the server's own \
            tokens are injected as ANTHROPIC_API_KEY / OPENAI_API_KEY. Each call creates a new devbox; delete_devbox it \
            when done.
            """,
        inputSchema: Schema.object(
            [
                "name": Schema.string("Display name for the devbox (1-64 printable characters).", minLength: 1, maxLength: 64),
                "plan": Schema.string("Size plan (default \"small\"). An unknown plan is refused with the list of plans."),
                "repositories": Schema.array(
                    Schema.object(
                        [
                            "full_name": Schema.string("GitHub repository as owner/name, e.g. \"octocat/hello-world\".", minLength: 1),
                            "repo_id": Schema.integer("GitHub repository id (optional, from list_github_repos)."),
                            "ref": Schema.string("Branch, tag or commit to check out (default \"main\")."),
                            "target_path": Schema.string(
                                "Absolute path inside /workspace to clone into (default /workspace/<repo name>)."),
                        ], required: ["full_name"], description: "A repository to clone."),
                    "Repositories to clone into /workspace before the setup commands run. Private repositories need the user's GitHub connection (see list_github_repos).", maxItems: 16),
                "repository": Schema.string(
                    "Legacy single-repository form: a repository URL or owner/name. Prefer repositories."),
                "branch": Schema.string("Branch for the legacy repository field (default \"main\")."),
                "env": [
                    "type": "object",
                    "description":
                        "Environment variables for the devbox, available to setup_commands and SSH sessions. Names must match ^[A-Z_][A-Z0-9_]*$; at most 64, values up to 32 KiB. Stored encrypted; only the names are ever returned.",
                    "maxProperties": 64,
                    "propertyNames": ["pattern": "^[A-Z_][A-Z0-9_]*$"],
                    "additionalProperties": ["type": "string", "maxLength": 32768],
                ],
                "setup_commands": Schema.array(
                    ["type": "string", "maxLength": 4096],
                    "Shell commands (sh -c) run one after another in /workspace after the clone. The first non-zero exit fails the devbox; their output is readable with list_operations. At most 32, 4 KiB each.",
                    maxItems: 32),
                "setup_timeout_seconds": Schema.integer(
                    "Ceiling in seconds for all setup commands together (30-3600, default 900).", minimum: 30, maximum: 3600),
                "idle_timeout_seconds": Schema.integer(
                    "Stop the devbox after this many seconds without activity (60-2592000; default: never).", minimum: 60,
                    maximum: 2_592_000),
                "ttl_seconds": Schema.integer(
                    "Destroy the devbox this many seconds after creation (60-31536000; default: never).", minimum: 60,
                    maximum: 31_536_000),
                "inject_claude_token": Schema.boolean(
                    "Inject the Claude token this MCP server holds as ANTHROPIC_API_KEY. Fails if the server has none.",
                    default: false),
                "inject_codex_token": Schema.boolean(
                    "Inject the Codex token this MCP server holds as OPENAI_API_KEY. Fails if the server has none.",
                    default: false),
                "wait": Schema.boolean(
                    "Return only when the devbox is ready or has failed (with progress notifications), instead of at once.",
                    default: false),
                "wait_timeout_seconds": Schema.integer(
                    "With wait: true, give up waiting after this many seconds (1-3600, default 120); the devbox keeps provisioning and wait_for_ready can continue the wait.", minimum: 1, maximum: 3600, default: 120),
            ], required: ["name"]),
        outputSchema: Schema.object(
            [
                "devbox": Schema.devbox,
                "next_step": Schema.nextStep,
                "failed_operation": [
                    "type": ["object", "null"], "description": "With wait: true, the step that failed (null otherwise).",
                    "properties": Schema.operation["properties"]!,
                ],
                "waited_seconds": ["type": "number", "description": "With wait: true, how long the call waited."],
            ], required: ["devbox", "next_step"], closed: false),
        annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true))

    func nextStep(after error: DevboxAPIError) -> String? {
        switch error.status {
        case 400, 422: "Fix that argument and call create_devbox again."
        default: nil
        }
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        var tokens = InjectionTokens()
        if input.injectClaudeToken == true {
            guard let t = call.credentials.claudeToken, !t.isEmpty else {
                throw ToolFailure(
                    "inject_claude_token is set, but this MCP server holds no Claude token. Either create the devbox without inject_claude_token, or ask the user to configure one: ANTHROPIC_API_KEY in the environment of `devbox mcp` (stdio), or the X-Claude-Token header (HTTP).")
            }
            tokens.claudeToken = t
        }
        if input.injectCodexToken == true {
            guard let t = call.credentials.codexToken, !t.isEmpty else {
                throw ToolFailure(
                    "inject_codex_token is set, but this MCP server holds no Codex token. Either create the devbox without inject_codex_token, or ask the user to configure one: OPENAI_API_KEY in the environment of `devbox mcp` (stdio), or the X-Codex-Token header (HTTP).")
            }
            tokens.codexToken = t
        }
        let box = try await call.backend.createDevbox(input.request, tokens: tokens)
        guard input.wait == true else {
            return .structured([
                "devbox": ToolJSON.devbox(box),
                "next_step": .string(
                    "Call wait_for_ready with devbox_id \"\(box.id)\"; it returns when the devbox is ready or failed."),
            ])
        }
        let outcome = try await ReadinessWait.run(
            devboxId: box.id, timeout: .seconds(input.waitTimeoutSeconds ?? 120), call: call)
        return try outcome.result(tool: "create_devbox")
    }
}
