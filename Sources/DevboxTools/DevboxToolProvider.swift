import DevboxModel
import Transport

/// The explicit list of tools, in the order `tools/list` shows them.
public enum DevboxToolRegistry {
    public static let all: [any DevboxTool] = [
        CreateDevboxTool(),
        WaitForReadyTool(),
        GetDevboxTool(),
        ListDevboxesTool(),
        ListOperationsTool(),
        RunCommandTool(),
        ReadFileTool(),
        WriteFileTool(),
        ListFilesTool(),
        SetNetworkTool(),
        PortURLTool(),
        StatsTool(),
        SnapshotDevboxTool(),
        ForkDevboxTool(),
        StopDevboxTool(),
        StartDevboxTool(),
        DeleteDevboxTool(),
        SetSSHKeyTool(),
        CreateSessionTool(),
        ListSessionsTool(),
        RevokeSessionTool(),
        ListRepositoriesTool(),
        ListGitHubReposTool(),
    ]
}

/// Serves the registry's tools over MCP. `environment` resolves, per call, the backend that
/// acts for the caller and the server-side AI tokens (HTTP: from the authenticated request;
/// stdio: fixed for the process).
public struct DevboxToolProvider: MCPToolProvider {
    public typealias Resolve = @Sendable (MCPRequestContext) async throws -> DevboxToolEnvironment

    let registry: [any DevboxTool]
    let index: [String: any DevboxTool]
    let resolve: Resolve

    public init(tools: [any DevboxTool] = DevboxToolRegistry.all, environment: @escaping Resolve) {
        self.registry = tools
        var index: [String: any DevboxTool] = [:]
        for t in tools { index[t.name] = t }
        self.index = index
        self.resolve = environment
    }

    public func tools() -> [MCPTool] { registry.map(\.definition) }

    public func call(_ name: String, arguments: JSONValue, context: MCPRequestContext) async throws -> MCPToolResult {
        guard let tool = index[name] else { throw MCPError.invalidParams("Unknown tool: \(name)") }
        let environment: DevboxToolEnvironment
        do {
            environment = try await resolve(context)
        } catch let e as DevboxBackendUnavailable {
            return .error(e.message)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return .error("The devbox service is unavailable (\(error)). Try \(name) again in a moment.")
        }
        let result = try await tool.invoke(arguments, request: context, environment: environment)
        return Redaction.scrub(result, secrets: [environment.credentials.claudeToken, environment.credentials.codexToken])
    }
}

/// The server-side AI tokens never leave through a tool result, even if a setup command
/// printed one: every occurrence is replaced before the result is sent.
enum Redaction {
    static let placeholder = "[redacted]"

    static func scrub(_ result: MCPToolResult, secrets: [String?]) -> MCPToolResult {
        let s = secrets.compactMap { $0 }.filter { $0.count >= 8 }
        if s.isEmpty { return result }
        var r = result
        r.content = r.content.map { block in
            if case .text(let t) = block { return .text(scrub(t, s)) }
            return block
        }
        r.structuredContent = r.structuredContent.map { scrub($0, s) }
        return r
    }

    static func scrub(_ text: String, _ secrets: [String]) -> String {
        var t = text
        for secret in secrets where t.contains(secret) {
            t = t.replacingOccurrences(of: secret, with: placeholder)
        }
        return t
    }

    static func scrub(_ value: JSONValue, _ secrets: [String]) -> JSONValue {
        switch value {
        case .string(let t): return .string(scrub(t, secrets))
        case .array(let a): return .array(a.map { scrub($0, secrets) })
        case .object(let o): return .object(o.mapValues { scrub($0, secrets) })
        default: return value
        }
    }
}

/// Builds the MCP server that offers the devbox tools.
public enum DevboxMCPServer {
    public static let serverInfo = MCPImplementation(
        name: "devbox", version: "1.0.0", title: "Devbox",
        description: "On-demand Linux development environments (sandboxes) with setup commands, env, AI tokens and SSH.")

    public static let instructions = """
        Devbox gives you disposable Linux development environments ("devboxes") reachable over SSH.
        Typical flow:
        1. create_devbox with a name, the repositories to clone and setup_commands (e.g. install dependencies, build). \
        It returns at once with state "requested" (or pass wait: true to block until ready).
        2. wait_for_ready with the devbox_id: returns when the devbox is ready (timed_out: true if its timeout passed \
        first: call it again); progress is reported while it provisions.
        3. If it failed: the result names the failed step, its error and output tail; call list_operations for the full \
        setup output, fix the commands and create a new devbox (delete_devbox the failed one).
        4. To work inside it: run_command runs a command and returns its output; read_file, write_file and list_files \
        work on its files. For an interactive shell: set_ssh_key once with your public key, then create_session and run \
        the returned ssh command (add -i <private key>).
        5. stop_devbox frees its memory and keeps its files (it also stops by itself after its idle timeout); \
        start_devbox brings it back. delete_devbox when you are done.
        Claude/Codex tokens are never passed as arguments: set inject_claude_token / inject_codex_token and the server \
        injects the tokens it holds as ANTHROPIC_API_KEY / OPENAI_API_KEY.
        """

    public static func make(environment: @escaping DevboxToolProvider.Resolve, options: MCPServerOptions = MCPServerOptions()) throws
        -> MCPServer
    {
        var options = options
        // tools/list is the same for every caller.
        options.cacheScope = "public"
        return try MCPServer(
            serverInfo: serverInfo, instructions: instructions, tools: DevboxToolProvider(environment: environment),
            options: options)
    }
}
