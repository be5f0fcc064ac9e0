import Foundation

/// Protocol revisions this layer speaks.
public enum MCPProtocolVersion {
    /// Stateless era (per-request `_meta`, `server/discover`, no sessions).
    public static let v2026_07_28 = "2026-07-28"
    /// Handshake era (`initialize`, sessions on HTTP).
    public static let v2025_11_25 = "2025-11-25"
    public static let v2025_06_18 = "2025-06-18"

    /// Newest first.
    public static let modern: [String] = [v2026_07_28]
    public static let handshake: [String] = [v2025_11_25, v2025_06_18]
    public static let all: [String] = modern + handshake
    /// What `initialize` answers when the client asks for a version we do not speak.
    public static let latestHandshake = v2025_11_25
    public static let latest = v2026_07_28

    public static func isModern(_ v: String) -> Bool { v == v2026_07_28 }
    public static func isHandshake(_ v: String) -> Bool { v == v2025_11_25 || v == v2025_06_18 }
}

/// Which era a request was served in.
public enum MCPEra: Sendable, Hashable {
    /// `initialize` handshake (2025-06-18, 2025-11-25).
    case handshake
    /// Per-request `_meta` (2026-07-28).
    case stateless
}

/// `Implementation` (serverInfo).
public struct MCPImplementation: Sendable, Hashable {
    public var name: String
    public var version: String
    public var title: String?
    public var description: String?
    public var websiteUrl: String?

    public init(name: String, version: String, title: String? = nil, description: String? = nil, websiteUrl: String? = nil) {
        self.name = name
        self.version = version
        self.title = title
        self.description = description
        self.websiteUrl = websiteUrl
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name), "version": .string(version)]
        if let title { o["title"] = .string(title) }
        if let description { o["description"] = .string(description) }
        if let websiteUrl { o["websiteUrl"] = .string(websiteUrl) }
        return .object(o)
    }
}

/// Tool annotations. All four hints are required by the initializer so every tool sets them
/// deliberately (MCP.md); they are hints only.
public struct MCPToolAnnotations: Sendable, Hashable {
    public var title: String?
    public var readOnlyHint: Bool
    public var destructiveHint: Bool
    public var idempotentHint: Bool
    public var openWorldHint: Bool

    public init(readOnlyHint: Bool, destructiveHint: Bool, idempotentHint: Bool, openWorldHint: Bool, title: String? = nil) {
        self.title = title
        self.readOnlyHint = readOnlyHint
        self.destructiveHint = destructiveHint
        self.idempotentHint = idempotentHint
        self.openWorldHint = openWorldHint
    }

    /// Only the hints that differ from the spec's defaults (readOnly false, destructive true,
    /// idempotent false, openWorld true), and destructive/idempotent only for tools that write
    /// (the spec gives them meaning only when readOnlyHint is false): a client reads the same
    /// hints, and `tools/list` — in every agent's context — is shorter.
    public var json: JSONValue {
        var o: [String: JSONValue] = [:]
        if readOnlyHint {
            o["readOnlyHint"] = true
        } else {
            if !destructiveHint { o["destructiveHint"] = false }
            if idempotentHint { o["idempotentHint"] = true }
        }
        if !openWorldHint { o["openWorldHint"] = false }
        if let title { o["title"] = .string(title) }
        return .object(o)
    }

    /// The hints as a client reads them, spec defaults filled in for absent ones.
    public static func resolved(_ json: JSONValue) -> (readOnly: Bool, destructive: Bool, idempotent: Bool, openWorld: Bool) {
        let readOnly = json["readOnlyHint"]?.boolValue ?? false
        return (
            readOnly, !readOnly && (json["destructiveHint"]?.boolValue ?? true),
            !readOnly ? (json["idempotentHint"]?.boolValue ?? false) : true, json["openWorldHint"]?.boolValue ?? true
        )
    }
}

/// A tool definition as listed by `tools/list`.
public struct MCPTool: Sendable, Hashable {
    /// `[A-Za-z0-9_.-]{1,128}`, unique within the server.
    public var name: String
    public var title: String?
    public var description: String
    /// JSON Schema; the root must be `{"type": "object", ...}`.
    public var inputSchema: JSONValue
    /// JSON Schema for `structuredContent`; when set, results must carry conforming
    /// `structuredContent` (clients such as the Python SDK validate it).
    public var outputSchema: JSONValue?
    public var annotations: MCPToolAnnotations
    /// Tool `_meta`.
    public var meta: JSONValue?

    public init(
        name: String, title: String? = nil, description: String, inputSchema: JSONValue,
        outputSchema: JSONValue? = nil, annotations: MCPToolAnnotations, meta: JSONValue? = nil
    ) {
        self.name = name
        self.title = title
        self.description = description
        self.inputSchema = inputSchema
        self.outputSchema = outputSchema
        self.annotations = annotations
        self.meta = meta
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name), "description": .string(description),
            "inputSchema": inputSchema, "annotations": annotations.json,
        ]
        if let title { o["title"] = .string(title) }
        if let outputSchema { o["outputSchema"] = outputSchema }
        if let meta { o["_meta"] = meta }
        return .object(o)
    }
}

/// One content block of a tool result.
public enum MCPContent: Sendable, Hashable {
    case text(String)
    /// Base64 data + MIME type.
    case image(data: String, mimeType: String)
    /// Any other block (audio, resource_link, embedded resource), passed through verbatim.
    case raw(JSONValue)

    public var json: JSONValue {
        switch self {
        case .text(let t): return ["type": "text", "text": .string(t)]
        case .image(let d, let m): return ["type": "image", "data": .string(d), "mimeType": .string(m)]
        case .raw(let v): return v
        }
    }
}

/// The result of `tools/call`.
public struct MCPToolResult: Sendable, Hashable {
    public var content: [MCPContent]
    public var structuredContent: JSONValue?
    /// `true` for failures of the work itself (bad argument value, not found, …): the agent
    /// sees the message and can correct course. Protocol faults are `MCPError`s instead.
    public var isError: Bool
    public var meta: JSONValue?

    public init(content: [MCPContent], structuredContent: JSONValue? = nil, isError: Bool = false, meta: JSONValue? = nil) {
        self.content = content
        self.structuredContent = structuredContent
        self.isError = isError
        self.meta = meta
    }

    /// A plain text result.
    public static func text(_ text: String, isError: Bool = false) -> MCPToolResult {
        MCPToolResult(content: [.text(text)], isError: isError)
    }

    /// A tool execution error (`isError: true`) with a message for the agent.
    public static func error(_ message: String) -> MCPToolResult {
        MCPToolResult(content: [.text(message)], isError: true)
    }

    /// A structured result; the text block carries the same JSON (or `text`, if given), as the
    /// spec recommends for clients that ignore `structuredContent`.
    public static func structured(_ value: JSONValue, text: String? = nil, isError: Bool = false) -> MCPToolResult {
        MCPToolResult(content: [.text(text ?? value.jsonString)], structuredContent: value, isError: isError)
    }

    func json(stateless: Bool) -> JSONValue {
        var o: [String: JSONValue] = [:]
        var blocks = content.map(\.json)
        if blocks.isEmpty, let structuredContent {
            blocks = [MCPContent.text(structuredContent.jsonString).json]
        }
        o["content"] = .array(blocks)
        if let structuredContent { o["structuredContent"] = structuredContent }
        o["isError"] = .bool(isError)
        if let meta { o["_meta"] = meta }
        return .object(o)
    }
}

/// Thrown by a tool provider when the arguments do not fit the tool's input schema
/// (missing field, wrong type). Answered as JSON-RPC error -32602 naming the field.
public struct MCPToolArgumentError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Dotted path of the offending field (`"repos[0].url"`), nil for the arguments object itself.
    public var field: String?
    public var reason: String

    public init(field: String?, reason: String) {
        self.field = field
        self.reason = reason
    }

    /// Builds a field-naming error from a `DecodingError`.
    public init(_ error: DecodingError) {
        func path(_ p: [any CodingKey]) -> String? {
            var s = ""
            for k in p {
                if let i = k.intValue, k.stringValue.hasPrefix("Index ") || Int(k.stringValue) == i {
                    s += "[\(i)]"
                } else {
                    s += s.isEmpty ? k.stringValue : ".\(k.stringValue)"
                }
            }
            return s.isEmpty ? nil : s
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            let parent = path(ctx.codingPath)
            self.init(field: parent.map { "\($0).\(key.stringValue)" } ?? key.stringValue, reason: "is required")
        case .typeMismatch(let type, let ctx):
            self.init(field: path(ctx.codingPath), reason: "must be of type \(Self.jsonTypeName(type))")
        case .valueNotFound(let type, let ctx):
            self.init(field: path(ctx.codingPath), reason: "must be a non-null \(Self.jsonTypeName(type))")
        case .dataCorrupted(let ctx):
            self.init(field: path(ctx.codingPath), reason: ctx.debugDescription)
        @unknown default:
            self.init(field: nil, reason: "\(error)")
        }
    }

    private static func jsonTypeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "string"
        case is Bool.Type: return "boolean"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt.Type, is UInt64.Type: return "integer"
        case is Double.Type, is Float.Type: return "number"
        default:
            let n = String(describing: t)
            if n.hasPrefix("Array") || n.hasPrefix("[") { return "array" }
            if n.hasPrefix("Dictionary") { return "object" }
            return n
        }
    }

    public var description: String {
        if let field { return "field '\(field)' \(reason)" }
        return reason
    }
}

extension JSONValue {
    /// Decodes tool arguments into `T`, mapping any `DecodingError` to an
    /// `MCPToolArgumentError` that names the offending field.
    public func decodeArguments<T: Decodable>(_ type: T.Type = T.self) throws(MCPToolArgumentError) -> T {
        do {
            return try decode(T.self)
        } catch let e as DecodingError {
            throw MCPToolArgumentError(e)
        } catch {
            throw MCPToolArgumentError(field: nil, reason: "\(error)")
        }
    }
}

/// The tools a server offers. Implemented by the tool layer (DevboxTools).
public protocol MCPToolProvider: Sendable {
    /// The tool definitions. Read once when the server is created (and again on
    /// `MCPServer.reloadTools()`); the order is kept as given (deterministic `tools/list`).
    func tools() -> [MCPTool]

    /// Runs a tool. `arguments` is the `arguments` object of `tools/call` (`{}` if absent).
    ///
    /// - Return `MCPToolResult` (with `isError: true` for failures of the work itself).
    /// - Throw `MCPToolArgumentError` for arguments that do not fit the schema (→ -32602).
    /// - Throw `MCPError` for any other protocol-level error.
    /// - Honour Swift Task cancellation (`try Task.checkCancellation()`, cancellable sleeps):
    ///   `notifications/cancelled` and closed SSE streams cancel the Task running the call.
    /// Any other thrown error becomes an `isError: true` result carrying its description.
    func call(_ name: String, arguments: JSONValue, context: MCPRequestContext) async throws -> MCPToolResult
}
