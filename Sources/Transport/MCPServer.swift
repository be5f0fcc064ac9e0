import Foundation
import Logging
import Synchronization

/// Server configuration beyond identity and tools.
public struct MCPServerOptions: Sendable {
    /// `ttlMs` on cacheable 2026-07-28 results (`tools/list`, `server/discover`). Must be >= 0.
    public var cacheTTLMilliseconds: Int = 300_000
    /// `cacheScope` on cacheable results: "public" (same for every caller) or "private".
    public var cacheScope: String = "public"
    /// Page size for `tools/list`; nil = all tools in one page.
    public var toolsPageSize: Int? = nil
    /// Stamp `_meta["io.modelcontextprotocol/serverInfo"]` on every 2026-07-28 result (spec SHOULD).
    public var stampServerInfo: Bool = true
    public var logger: Logger = Logger(label: "devbox.mcp")
    /// Called after each `tools/call` (metrics): the tool's name (nil when the server has no
    /// such tool), the outcome ("none", "tool_error" for a result with `isError`,
    /// "invalid_params", "internal") and how long it took.
    public var onToolCall: (@Sendable (_ tool: String?, _ error: String, _ duration: Duration) -> Void)? = nil

    public init() {}
}

/// Configuration mistakes found when the server is created.
public struct MCPServerConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Transport-independent MCP server: JSON-RPC dispatch, the handshake era (`initialize`)
/// and the stateless era (per-request `_meta`, `server/discover`), tools.
///
/// Use it through `MCPStdioTransport` or `MCPHTTPHandler`.
public final class MCPServer: Sendable {
    public let serverInfo: MCPImplementation
    public let instructions: String?
    public let options: MCPServerOptions
    let provider: any MCPToolProvider
    let logger: Logger

    struct ToolTable: Sendable {
        var tools: [MCPTool]
        var index: [String: Int]
        var listJSON: [JSONValue]
        /// Tool name → `x-mcp-header` mirrors (header name lowercased → property path, type).
        var paramHeaders: [String: [ParamHeader]]
    }

    struct ParamHeader: Sendable {
        var headerName: String  // "mcp-param-region"
        var path: [String]
        var type: String?
    }

    private let table: Mutex<ToolTable>
    private let serverInfoJSON: JSONValue
    private let capabilitiesJSON: JSONValue = ["tools": ["listChanged": false]]

    public init(
        serverInfo: MCPImplementation, instructions: String? = nil, tools provider: any MCPToolProvider,
        options: MCPServerOptions = MCPServerOptions()
    ) throws {
        self.serverInfo = serverInfo
        self.instructions = instructions
        self.provider = provider
        self.options = options
        self.logger = options.logger
        self.serverInfoJSON = serverInfo.json
        guard options.cacheTTLMilliseconds >= 0 else {
            throw MCPServerConfigurationError(description: "cacheTTLMilliseconds must be >= 0")
        }
        guard options.cacheScope == "public" || options.cacheScope == "private" else {
            throw MCPServerConfigurationError(description: "cacheScope must be \"public\" or \"private\"")
        }
        self.table = Mutex(try Self.buildTable(provider.tools()))
    }

    /// Re-reads `tools()` from the provider (the server advertises `listChanged: false`, so
    /// clients only see the change on their next `tools/list`).
    public func reloadTools() throws {
        let t = try Self.buildTable(provider.tools())
        table.withLock { $0 = t }
    }

    /// The tool definitions currently served.
    public var tools: [MCPTool] { table.withLock { $0.tools } }

    static func buildTable(_ tools: [MCPTool]) throws -> ToolTable {
        var index: [String: Int] = [:]
        var headers: [String: [ParamHeader]] = [:]
        for (i, t) in tools.enumerated() {
            let n = t.name.utf8
            guard (1...128).contains(n.count),
                n.allSatisfy({ c in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D || c == 0x2E
                })
            else { throw MCPServerConfigurationError(description: "invalid tool name '\(t.name)' (want [A-Za-z0-9_.-]{1,128})") }
            guard index[t.name] == nil else {
                throw MCPServerConfigurationError(description: "duplicate tool name '\(t.name)'")
            }
            guard t.inputSchema["type"] == .string("object") else {
                throw MCPServerConfigurationError(description: "tool '\(t.name)': inputSchema root must have \"type\": \"object\"")
            }
            index[t.name] = i
            let h = collectParamHeaders(t.inputSchema, path: [])
            if !h.isEmpty { headers[t.name] = h }
        }
        return ToolTable(tools: tools, index: index, listJSON: tools.map(\.json), paramHeaders: headers)
    }

    /// `x-mcp-header` annotations on properties reachable through `properties` chains.
    static func collectParamHeaders(_ schema: JSONValue, path: [String]) -> [ParamHeader] {
        guard case .object(let props)? = schema["properties"] else { return [] }
        var out: [ParamHeader] = []
        for (k, sub) in props {
            if case .string(let h)? = sub["x-mcp-header"] {
                out.append(ParamHeader(headerName: "mcp-param-" + h.lowercased(), path: path + [k], type: sub["type"]?.stringValue))
            }
            out.append(contentsOf: collectParamHeaders(sub, path: path + [k]))
        }
        return out
    }

    func paramHeaders(forTool name: String) -> [ParamHeader] {
        table.withLock { $0.paramHeaders[name] ?? [] }
    }

    // MARK: - Request model

    /// How a request reached the server.
    struct Environment: Sendable {
        var transport: MCPTransportKind
        var headers: [String: String] = [:]
        var auth: (any Sendable)? = nil
        /// The handshake-era conversation (stdio process or HTTP session); nil for stateless HTTP.
        var connection: MCPConnection?
        /// Ends `subscriptions/listen` gracefully when fired.
        var shutdown: ShutdownSignal?
        /// Where notifications for this request go.
        var sink: NotificationSink
    }

    enum Outcome: Sendable {
        case result(JSONValue)
        case error(MCPError)
        /// Nothing to send (the request was cancelled).
        case none
    }

    /// Per-request `_meta` of the stateless era.
    struct ModernEnvelope: Sendable {
        var protocolVersion: String
        var clientInfo: JSONValue?
        var clientCapabilities: JSONValue
    }

    static let metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
    static let metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
    static let metaClientInfo = "io.modelcontextprotocol/clientInfo"
    static let metaServerInfo = "io.modelcontextprotocol/serverInfo"
    static let metaSubscriptionID = "io.modelcontextprotocol/subscriptionId"

    /// nil: the request is not stateless-era shaped (no `io.modelcontextprotocol/*` envelope keys).
    /// Otherwise the envelope, or the error for a malformed one (-32602). The version is not
    /// checked here (`checkVersion`), so HTTP can compare headers first as the spec orders it.
    static func modernEnvelope(_ params: JSONValue?) -> Result<ModernEnvelope, MCPError>? {
        guard case .object(let meta)? = params?["_meta"] else { return nil }
        let v = meta[metaProtocolVersion]
        let caps = meta[metaClientCapabilities]
        if v == nil && caps == nil { return nil }
        var missing: [String] = []
        if v == nil { missing.append(metaProtocolVersion) }
        if caps == nil { missing.append(metaClientCapabilities) }
        if !missing.isEmpty {
            return .failure(.invalidParams("params._meta is missing the required key(s): \(missing.joined(separator: ", "))"))
        }
        guard case .string(let version)? = v else {
            return .failure(.invalidParams("params._meta[\"\(metaProtocolVersion)\"] must be a string"))
        }
        guard case .object? = caps else {
            return .failure(.invalidParams("params._meta[\"\(metaClientCapabilities)\"] must be an object"))
        }
        return .success(ModernEnvelope(protocolVersion: version, clientInfo: meta[metaClientInfo], clientCapabilities: caps!))
    }

    static func checkVersion(_ env: ModernEnvelope) -> MCPError? {
        if MCPProtocolVersion.isModern(env.protocolVersion) { return nil }
        return .unsupportedProtocolVersion(requested: env.protocolVersion, supported: MCPProtocolVersion.all)
    }

    /// Methods the stateless era serves.
    static let statelessMethods: Set<String> = ["server/discover", "tools/list", "tools/call", "subscriptions/listen"]
    /// Methods the handshake era serves.
    static let handshakeMethods: Set<String> = ["initialize", "ping", "tools/list", "tools/call"]

    // MARK: - Dispatch

    /// Serves one request. Never throws; protocol faults come back as `.error`.
    func handle(id: JSONRPCID, method: String, params: JSONValue?, env: Environment) async -> Outcome {
        if method == "initialize", let connection = env.connection {
            return initialize(params, connection: connection)
        }
        let era: MCPEra
        let version: String
        let clientInfo: JSONValue?
        let clientCaps: JSONValue?
        switch Self.modernEnvelope(params) {
        case .some(.failure(let e)):
            return .error(e)
        case .some(.success(let m)):
            if let e = Self.checkVersion(m) { return .error(e) }
            era = .stateless
            version = m.protocolVersion
            clientInfo = m.clientInfo
            clientCaps = m.clientCapabilities
            guard Self.statelessMethods.contains(method) else { return .error(.methodNotFound(method)) }
        case .none:
            if method == "server/discover" {
                return .error(.invalidParams("server/discover requires params._meta with \"\(Self.metaProtocolVersion)\" and \"\(Self.metaClientCapabilities)\""))
            }
            guard let n = env.connection?.negotiated else {
                // Handshake-era ping is allowed before initialize.
                if method == "ping" { return .result(.object([:])) }
                return .error(.invalidParams(
                    "Missing params._meta[\"\(Self.metaProtocolVersion)\"] and [\"\(Self.metaClientCapabilities)\"] (protocol \(MCPProtocolVersion.v2026_07_28)); handshake-era clients must send initialize first"))
            }
            era = .handshake
            version = n.protocolVersion
            clientInfo = n.clientInfo
            clientCaps = n.clientCapabilities
            guard Self.handshakeMethods.contains(method) else { return .error(.methodNotFound(method)) }
        }

        let outcome: Outcome
        switch method {
        case "ping":
            outcome = .result(.object([:]))
        case "server/discover":
            outcome = .result(discoverResult())
        case "tools/list":
            outcome = listTools(params, stateless: era == .stateless)
        case "tools/call":
            outcome = await callTool(
                id: id, params: params, era: era, version: version, clientInfo: clientInfo, clientCaps: clientCaps, env: env)
        case "subscriptions/listen":
            outcome = await listen(id: id, env: env)
        default:
            outcome = .error(.methodNotFound(method))
        }
        if era == .stateless, case .result(let r) = outcome {
            return .result(stamp(r))
        }
        return outcome
    }

    /// Handles a client notification.
    func notify(method: String, params: JSONValue?, connection: MCPConnection?) {
        switch method {
        case "notifications/cancelled":
            guard let raw = params?["requestId"], let rid = JSONRPCID(json: raw) else { return }
            logger.debug("cancel requested", metadata: ["id": "\(rid)", "reason": "\(params?["reason"]?.stringValue ?? "")"])
            connection?.cancel(rid)
        case "notifications/initialized":
            connection?.markInitializedNotified()
        default:
            // notifications/progress, roots/list_changed, unknown: ignored.
            break
        }
    }

    // MARK: - Methods

    func initialize(_ params: JSONValue?, connection: MCPConnection?) -> Outcome {
        guard case .string(let requested)? = params?["protocolVersion"] else {
            return .error(.invalidParams("initialize requires params.protocolVersion (string)"))
        }
        let version = MCPProtocolVersion.isHandshake(requested) ? requested : MCPProtocolVersion.latestHandshake
        connection?.setNegotiated(.init(
            protocolVersion: version, clientInfo: params?["clientInfo"], clientCapabilities: params?["capabilities"]))
        var r: [String: JSONValue] = [
            "protocolVersion": .string(version),
            "capabilities": capabilitiesJSON,
            "serverInfo": serverInfoJSON,
        ]
        if let instructions { r["instructions"] = .string(instructions) }
        return .result(.object(r))
    }

    func discoverResult() -> JSONValue {
        var r: [String: JSONValue] = [
            "supportedVersions": .array(MCPProtocolVersion.all.map { .string($0) }),
            "capabilities": capabilitiesJSON,
            "ttlMs": .int(options.cacheTTLMilliseconds),
            "cacheScope": .string(options.cacheScope),
            "_meta": [Self.metaServerInfo: serverInfoJSON],
        ]
        if let instructions { r["instructions"] = .string(instructions) }
        return .object(r)
    }

    func listTools(_ params: JSONValue?, stateless: Bool) -> Outcome {
        let all = table.withLock { $0.listJSON }
        var start = 0
        if let c = params?["cursor"], !c.isNull {
            guard case .string(let s) = c, let n = Int(s), n >= 0, n <= all.count else {
                return .error(.invalidParams("Invalid cursor"))
            }
            start = n
        }
        var end = all.count
        if let size = options.toolsPageSize, size > 0 { end = min(all.count, start + size) }
        var r: [String: JSONValue] = ["tools": .array(Array(all[start..<end]))]
        if end < all.count { r["nextCursor"] = .string(String(end)) }
        if stateless {
            r["ttlMs"] = .int(options.cacheTTLMilliseconds)
            r["cacheScope"] = .string(options.cacheScope)
        }
        return .result(.object(r))
    }

    func callTool(
        id: JSONRPCID, params: JSONValue?, era: MCPEra, version: String, clientInfo: JSONValue?, clientCaps: JSONValue?,
        env: Environment
    ) async -> Outcome {
        guard let report = options.onToolCall else {
            return await runTool(id: id, params: params, era: era, version: version, clientInfo: clientInfo, clientCaps: clientCaps, env: env)
        }
        let start = ContinuousClock.now
        let outcome = await runTool(
            id: id, params: params, era: era, version: version, clientInfo: clientInfo, clientCaps: clientCaps, env: env)
        var tool: String? = nil
        if case .string(let name)? = params?["name"], table.withLock({ $0.index[name] != nil }) { tool = name }
        let error: String
        switch outcome {
        case .result(let r):
            if case .bool(true)? = r["isError"] { error = "tool_error" } else { error = "none" }
        case .error(let e): error = e.code == MCPError.invalidParamsCode ? "invalid_params" : "internal"
        case .none: error = "internal"
        }
        report(tool, error, ContinuousClock.now - start)
        return outcome
    }

    private func runTool(
        id: JSONRPCID, params: JSONValue?, era: MCPEra, version: String, clientInfo: JSONValue?, clientCaps: JSONValue?,
        env: Environment
    ) async -> Outcome {
        guard case .string(let name)? = params?["name"] else {
            return .error(.invalidParams("tools/call requires params.name (string)"))
        }
        guard table.withLock({ $0.index[name] != nil }) else {
            return .error(.invalidParams("Unknown tool: \(name)"))
        }
        let arguments = params?["arguments"] ?? .object([:])
        switch arguments {
        case .object: break
        case .null:
            break
        default:
            return .error(.invalidParams("tools/call params.arguments must be an object"))
        }
        let args: JSONValue = arguments.isNull ? .object([:]) : arguments
        let meta = params?["_meta"]
        var reporter: ProgressReporter? = nil
        if let t = meta?["progressToken"], let token = JSONRPCID(json: t) {
            reporter = ProgressReporter(token: token, sink: env.sink)
        }
        let ctx = MCPRequestContext(
            requestID: id, protocolVersion: version, era: era, transport: env.transport, headers: env.headers,
            auth: env.auth, clientInfo: clientInfo, clientCapabilities: clientCaps, meta: meta, progress: reporter)
        defer { reporter?.finish() }
        do {
            let result = try await provider.call(name, arguments: args, context: ctx)
            return .result(result.json(stateless: era == .stateless))
        } catch let e as MCPToolArgumentError {
            return .error(.invalidParams("Invalid arguments for tool '\(name)': \(e.description)"))
        } catch let e as MCPError {
            return .error(e)
        } catch is CancellationError {
            return .error(MCPError(code: MCPError.internalErrorCode, message: "Request cancelled"))
        } catch {
            if Task.isCancelled {
                return .error(MCPError(code: MCPError.internalErrorCode, message: "Request cancelled"))
            }
            logger.warning("tool failed", metadata: ["tool": "\(name)", "error": "\(error)"])
            return .result(MCPToolResult.error("Tool '\(name)' failed: \(error)").json(stateless: era == .stateless))
        }
    }

    /// `subscriptions/listen`: this server emits no change notifications (`listChanged: false`),
    /// so it acknowledges with an empty filter and holds the request open until the client
    /// cancels it (no response) or the transport shuts down (graceful completion result).
    func listen(id: JSONRPCID, env: Environment) async -> Outcome {
        let ack = JSONRPC.encodeNotification(
            method: "notifications/subscriptions/acknowledged",
            params: ["_meta": [Self.metaSubscriptionID: id.json], "notifications": .object([:])])
        await env.sink(ack)
        guard let signal = env.shutdown, await signal.wait() else { return .none }
        return .result(["_meta": [Self.metaSubscriptionID: id.json]])
    }

    /// Adds `resultType` and the serverInfo stamp to a stateless-era result.
    func stamp(_ r: JSONValue) -> JSONValue {
        guard case .object(var o) = r else { return r }
        o["resultType"] = .string("complete")
        if options.stampServerInfo {
            if case .object(var m)? = o["_meta"] {
                m[Self.metaServerInfo] = serverInfoJSON
                o["_meta"] = .object(m)
            } else {
                o["_meta"] = [Self.metaServerInfo: serverInfoJSON]
            }
        }
        return .object(o)
    }
}
