import DevboxModel
import Foundation
import Transport

/// One MCP tool: its definition (name, title, description, schemas, annotations) and its
/// handler over a typed input. One tool per file in `Tools/`; `DevboxToolRegistry.all`
/// lists them.
public protocol DevboxTool: Sendable {
    associatedtype Input: ToolInput
    var definition: MCPTool { get }
    /// Runs the tool. Throw `DevboxAPIError` (from the backend) or `ToolFailure`; both
    /// become `isError: true` results with a next step.
    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult
    /// What the agent should do after the service refused with `error` (nil: a generic hint).
    func nextStep(after error: DevboxAPIError) -> String?
}

extension DevboxTool {
    public func nextStep(after error: DevboxAPIError) -> String? { nil }
    public var name: String { definition.name }
}

/// A tool's arguments, decoded once after they passed the tool's `inputSchema`; `validate`
/// checks what a schema cannot express.
public protocol ToolInput: Decodable, Sendable {
    func validate() throws(ToolFailure)
}

extension ToolInput {
    public func validate() throws(ToolFailure) {}
}

/// Tools that take no arguments.
public struct NoInput: ToolInput {}

/// Everything a tool handler gets for one call.
public struct ToolCall: Sendable {
    public let backend: any DevboxBackend
    public let credentials: InjectionTokens
    /// The MCP request (progress, cancellation, protocol details).
    public let request: MCPRequestContext

    public init(backend: any DevboxBackend, credentials: InjectionTokens, request: MCPRequestContext) {
        self.backend = backend
        self.credentials = credentials
        self.request = request
    }
}

/// A failure of the work, shown to the agent with `isError: true`. The message says what went
/// wrong and what to do next.
public struct ToolFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// Optional structured details (conforming to the tool's output schema).
    public var structured: JSONValue?

    public init(_ message: String, structured: JSONValue? = nil) {
        self.message = message
        self.structured = structured
    }

    public var description: String { message }

    var result: MCPToolResult {
        if let structured {
            return MCPToolResult(content: [.text(message), .text(structured.jsonString)], structuredContent: structured, isError: true)
        }
        return .error(message)
    }
}

/// JSON conversions of the tools (the API's date format and key spelling).
enum ToolJSON {
    static let encoder = DevboxJSON.encoder()
    static let decoder = DevboxJSON.decoder()

    static func value(_ v: some Encodable) throws -> JSONValue {
        try JSONValue(encoding: v, encoder: encoder)
    }

}

extension DevboxTool {
    /// Schema check → decode → validate → run; every failure of the work becomes an
    /// `isError` result. Only cancellation propagates.
    func invoke(_ arguments: JSONValue, request: MCPRequestContext, environment: DevboxToolEnvironment) async throws -> MCPToolResult {
        let input: Input
        do {
            if let v = SchemaValidator.check(arguments, against: definition.inputSchema) {
                throw ToolFailure("Invalid arguments for \(name): \(v.description). Fix the argument and call \(name) again.")
            }
            do {
                input = try arguments.decode(Input.self, decoder: ToolJSON.decoder)
            } catch let e as DecodingError {
                throw ToolFailure(
                    "Invalid arguments for \(name): \(MCPToolArgumentError(e).description). Fix the argument and call \(name) again.")
            } catch {
                throw ToolFailure("Invalid arguments for \(name): \(error). Fix the argument and call \(name) again.")
            }
            try input.validate()
        } catch let f as ToolFailure {
            return f.result
        }
        let call = ToolCall(backend: environment.backend, credentials: environment.credentials, request: request)
        do {
            return try await run(input, call)
        } catch let f as ToolFailure {
            return f.result
        } catch let e as DevboxAPIError {
            return .error(ToolErrors.message(for: e, tool: name, nextStep: nextStep(after: e)))
        } catch let e as DevboxBackendUnavailable {
            return .error(e.message)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            return .error("The devbox service is unavailable (\(error)). Try \(name) again in a moment.")
        }
    }
}

/// Turns the service's refusals into messages an agent can act on.
enum ToolErrors {
    static func message(for e: DevboxAPIError, tool: String, nextStep: String?) -> String {
        var what = forAgents(e.message)
        if let f = e.field, !what.contains(f) { what += " (field: \(f))" }
        if !what.hasSuffix(".") { what += "." }
        let next: String
        if e.status == 409, let end = e.message.firstMatch(of: #/devbox \S+ is (destroyed|failed)/#) {
            // Whatever the tool, nothing will make this devbox usable again: say so instead of
            // sending the agent to wait or retry.
            next =
                end.1 == "destroyed"
                ? "Create a new devbox with create_devbox."
                : "Read why with list_operations, then create a new devbox with create_devbox."
        } else if let nextStep {
            next = nextStep
        } else {
            switch e.status {
            case 400, 422: next = "Fix the argument and call \(tool) again."
            case 401, 403:
                next = "The devbox server rejected this MCP server's credentials; the user must fix the provider token configured for it."
            case 404: next = "Check the id: list_devboxes shows your devboxes."
            case 409: next = "Check the devbox's state with get_devbox: the call needs another state."
            case 429, 503: next = "The service is busy or unavailable; try \(tool) again in a moment."
            default: next = "Try \(tool) again; if it keeps failing, report the message above."
            }
        }
        return "\(what) \(next)"
    }

    /// The service's messages are written for REST clients and point at routes; an agent can
    /// only call tools (or ask its user), so a route becomes the tool or the user's step that
    /// does the same, and any other route mention is dropped.
    static func forAgents(_ message: String) -> String {
        var m = message
        m.replace(#/set one first with PUT /api/v1/users/me/ssh-key/#, with: "call set_ssh_key first")
        m.replace(#/start it \(POST /api/v1/devboxes/[^/)\s]+/start\)/#, with: "call start_devbox")
        // list_github_repos says how to connect in its next step.
        m.replace(#/; connect it with POST /api/v1/integrations/github/connect/#, with: "")
        m.replace(
            #/connect GitHub first \(POST /api/v1/integrations/github/connect\)/#,
            with: "the user must connect GitHub first (devbox dashboard or `devbox github connect`)")
        m.replace(#/grant (it|the organisation '[^']*') with PUT /api/v1/integrations/github/org-grants/#) { match in
            "the user must grant \(match.1) to devbox on GitHub"
        }
        m.replace(#/ ?\((?:GET|POST|PUT|PATCH|DELETE) /api/v1/[^)]*\)/#, with: "")
        m.replace(#/ (?:with|via|using) (?:GET|POST|PUT|PATCH|DELETE) /api/v1/\S+/#, with: "")
        return m
    }
}
