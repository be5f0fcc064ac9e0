/// A JSON-RPC request id. MCP allows strings and integers only (never `null`); the type is
/// preserved exactly: `"1"` and `1` are different ids.
public enum JSONRPCID: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case int(Int)

    public var json: JSONValue {
        switch self {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        }
    }

    /// Reads an id (or progress token) from JSON: strings and integral numbers only.
    public init?(json: JSONValue) {
        switch json {
        case .string(let s): self = .string(s)
        case .int(let i): self = .int(i)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .int(let i): return String(i)
        }
    }
}

/// A JSON-RPC error object. Throw it from a tool provider to answer with a JSON-RPC error
/// instead of a tool result.
public struct MCPError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    // JSON-RPC 2.0
    public static let parseErrorCode = -32700
    public static let invalidRequestCode = -32600
    public static let methodNotFoundCode = -32601
    public static let invalidParamsCode = -32602
    public static let internalErrorCode = -32603
    // MCP 2026-07-28 (reserved range -32020...-32099)
    public static let headerMismatchCode = -32020
    public static let missingRequiredClientCapabilityCode = -32021
    public static let unsupportedProtocolVersionCode = -32022

    public static func parseError(_ message: String = "Parse error") -> MCPError {
        MCPError(code: parseErrorCode, message: message)
    }
    public static func invalidRequest(_ message: String = "Invalid Request") -> MCPError {
        MCPError(code: invalidRequestCode, message: message)
    }
    public static func methodNotFound(_ method: String) -> MCPError {
        MCPError(code: methodNotFoundCode, message: "Method not found: \(method)")
    }
    public static func invalidParams(_ message: String, data: JSONValue? = nil) -> MCPError {
        MCPError(code: invalidParamsCode, message: message, data: data)
    }
    public static func internalError(_ message: String = "Internal error") -> MCPError {
        MCPError(code: internalErrorCode, message: message)
    }
    public static func headerMismatch(_ message: String) -> MCPError {
        MCPError(code: headerMismatchCode, message: message)
    }
    public static func unsupportedProtocolVersion(requested: String, supported: [String]) -> MCPError {
        MCPError(
            code: unsupportedProtocolVersionCode, message: "Unsupported protocol version",
            data: ["supported": .array(supported.map { .string($0) }), "requested": .string(requested)])
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["code": .int(code), "message": .string(message)]
        if let data { o["data"] = data }
        return .object(o)
    }

    public var description: String { "MCPError(\(code)): \(message)" }
}

/// One decoded incoming JSON-RPC message.
enum IncomingMessage: Sendable {
    case request(id: JSONRPCID, method: String, params: JSONValue?)
    case notification(method: String, params: JSONValue?)
    /// A response sent by the peer (we never send requests, so these are ignored).
    case response(id: JSONRPCID?)
    /// Not a valid JSON-RPC message. `id` is set when it could be read.
    case invalid(id: JSONRPCID?, error: MCPError)
}

enum JSONRPC {
    /// Classifies an already-parsed JSON value.
    ///
    /// Batches (JSON arrays) were removed from MCP in 2025-06-18 and every revision this server
    /// speaks is 2025-06-18 or later, so an array is answered with one -32600 error (id null).
    static func classify(_ v: JSONValue) -> IncomingMessage {
        guard case .object(let o) = v else {
            if case .array = v {
                return .invalid(id: nil, error: .invalidRequest("Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)"))
            }
            return .invalid(id: nil, error: .invalidRequest("Invalid Request: expected a JSON object"))
        }
        let rawID = o["id"]
        var id: JSONRPCID? = nil
        if let rawID, !rawID.isNull {
            id = JSONRPCID(json: rawID)
            if id == nil {
                return .invalid(id: nil, error: .invalidRequest("Invalid Request: id must be a string or an integer"))
            }
        }
        guard o["jsonrpc"] == .string("2.0") else {
            return .invalid(id: id, error: .invalidRequest("Invalid Request: jsonrpc must be \"2.0\""))
        }
        if let m = o["method"] {
            guard case .string(let method) = m else {
                return .invalid(id: id, error: .invalidRequest("Invalid Request: method must be a string"))
            }
            let params = o["params"]
            if let params {
                switch params {
                case .object: break
                case .array:
                    // JSON-RPC allows by-position params; MCP never uses them.
                    return .invalid(id: id, error: .invalidRequest("Invalid Request: params must be an object"))
                default:
                    return .invalid(id: id, error: .invalidRequest("Invalid Request: params must be an object"))
                }
            }
            if let rawID {
                if rawID.isNull {
                    return .invalid(id: nil, error: .invalidRequest("Invalid Request: id must not be null"))
                }
                return .request(id: id!, method: method, params: params)
            }
            return .notification(method: method, params: params)
        }
        if o["result"] != nil || o["error"] != nil {
            return .response(id: id)
        }
        return .invalid(id: id, error: .invalidRequest("Invalid Request: missing method"))
    }

    /// Parses and classifies raw bytes. Parse failures yield `.invalid(id: nil, -32700)`.
    static func decode(_ bytes: some Collection<UInt8>) -> IncomingMessage {
        do {
            return classify(try JSONValue(parsing: bytes))
        } catch {
            return .invalid(id: nil, error: .parseError("Parse error: \(error.message) at byte \(error.offset)"))
        }
    }

    private static let prefix: [UInt8] = Array(#"{"jsonrpc":"2.0","id":"#.utf8)
    private static let nullIDPrefix: [UInt8] = Array(#"{"jsonrpc":"2.0","id":null"#.utf8)
    private static let resultKey: [UInt8] = Array(#","result":"#.utf8)
    private static let errorKey: [UInt8] = Array(#","error":"#.utf8)
    private static let notificationPrefix: [UInt8] = Array(#"{"jsonrpc":"2.0","method":"#.utf8)
    private static let paramsKey: [UInt8] = Array(#","params":"#.utf8)

    static func encodeResult(id: JSONRPCID, result: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160)
        out.append(contentsOf: prefix)
        JSONWriter.write(id.json, into: &out)
        out.append(contentsOf: resultKey)
        JSONWriter.write(result, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// An error response. `id == nil` writes `"id":null` (parse errors and unreadable ids).
    static func encodeError(id: JSONRPCID?, error: MCPError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        if let id {
            out.append(contentsOf: prefix)
            JSONWriter.write(id.json, into: &out)
        } else {
            out.append(contentsOf: nullIDPrefix)
        }
        out.append(contentsOf: errorKey)
        JSONWriter.write(error.json, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    static func encodeNotification(method: String, params: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        out.append(contentsOf: notificationPrefix)
        JSONWriter.writeString(method, into: &out)
        out.append(contentsOf: paramsKey)
        JSONWriter.write(params, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }
}
