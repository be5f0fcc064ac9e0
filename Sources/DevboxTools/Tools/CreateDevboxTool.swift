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
        var pushBranches: [String]?
        enum CodingKeys: String, CodingKey {
            case fullName = "full_name", repoId = "repo_id", ref, targetPath = "target_path", pushBranches = "push_branches"
        }
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
        var network: Network?
        var credentialMode: String?
        var image: String?
        var snapshot: String?

        struct Network: Decodable, Sendable {
            var egress: String?
            var allow: [String]?
            var deny: [String]?
        }

        enum CodingKeys: String, CodingKey {
            case name, plan, repositories, repository, branch, env, wait, network, image, snapshot
            case setupCommands = "setup_commands"
            case setupTimeoutSeconds = "setup_timeout_seconds"
            case idleTimeoutSeconds = "idle_timeout_seconds"
            case ttlSeconds = "ttl_seconds"
            case injectClaudeToken = "inject_claude_token"
            case injectCodexToken = "inject_codex_token"
            case waitTimeoutSeconds = "wait_timeout_seconds"
            case credentialMode = "credential_mode"
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
                    DevboxRepositoryRequest(
                        repoId: $0.repoId, fullName: $0.fullName, ref: $0.ref, targetPath: $0.targetPath, pushBranches: $0.pushBranches)
                },
                credentialProfile: profile, env: env, setupCommands: setupCommands, setupTimeoutSeconds: setupTimeoutSeconds,
                idleTimeoutSeconds: idleTimeoutSeconds, ttlSeconds: ttlSeconds,
                network: network.map { DevboxNetwork(egress: $0.egress ?? "allow_all", allow: $0.allow ?? [], deny: $0.deny ?? []) },
                credentialMode: credentialMode, image: image, snapshot: snapshot)
        }
    }

    let definition = MCPTool(
        name: "create_devbox",
        title: "Create devbox",
        description: """
            Create a Linux devbox: repositories are cloned into /workspace, then setup_commands run there in order \
            (a non-zero exit fails it). Returns in state "requested": call wait_for_ready (or pass wait: true). AI \
            tokens are never arguments: use inject_*. delete_devbox it when done.
            """,
        inputSchema: Schema.object(
            [
                "name": Schema.string("Display name.", minLength: 1, maxLength: 64),
                "plan": Schema.string("Size plan (default small)."),
                "repositories": Schema.array(
                    Schema.object(
                        [
                            "full_name": Schema.string("owner/name on GitHub."),
                            "repo_id": Schema.integer("GitHub id, from list_github_repos."),
                            "ref": Schema.string("Branch, tag or commit (default main)."),
                            "target_path": Schema.string("Default /workspace/<name>."),
                            "push_branches": Schema.array(["type": "string"], "Globs (agent/*) git push may update.", maxItems: 32),
                        ], required: ["full_name"]),
                    "Repositories to clone.", maxItems: 16),
                "repository": Schema.string("Legacy."),
                "branch": Schema.string("Legacy."),
                "env": [
                    "type": "object", "additionalProperties": ["type": "string"],
                    "description": "Environment variables.",
                ],
                "setup_commands": Schema.array(
                    ["type": "string", "maxLength": 4096],
                    "Shell lines run in order.", maxItems: 32),
                "setup_timeout_seconds": Schema.integer("For all setup commands.", minimum: 30, maximum: 3600, default: 900),
                "idle_timeout_seconds": Schema.integer("Stop when idle this long.", minimum: 60, maximum: 2_592_000),
                "ttl_seconds": Schema.integer("Destroy this long after creation.", minimum: 60, maximum: 31_536_000),
                "inject_claude_token": Schema.boolean("ANTHROPIC_API_KEY: the server's Claude token."),
                "inject_codex_token": Schema.boolean("OPENAI_API_KEY: the server's Codex token."),
                "credential_mode": ["type": "string", "enum": ["env", "proxy"], "description": "proxy: tokens stay out of the box."],
                "image": Schema.string("Root image (default debian)."),
                "snapshot": Schema.string("Snapshot id or name to start from."),
                "network": Schema.object(NetworkSchema.properties, description: "Egress policy (default allow_all)."),
                "wait": Schema.boolean("Return when ready or failed."),
                "wait_timeout_seconds": Schema.integer("With wait: longest wait.", minimum: 1, maximum: 3600, default: 120),
            ], required: ["name"]),
        outputSchema: Schema.output(
            ["devbox": Schema.devboxRef, "next_step": Schema.nextStep], description: "With wait: true, as wait_for_ready returns."),
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
