import Foundation
import Logging
import Synchronization

/// One HTTP request to the MCP endpoint, as handed over by the web framework.
public struct MCPHTTPRequest: Sendable {
    /// "GET", "POST", "DELETE", …
    public var method: String
    /// Header names lowercased. Repeated headers should be joined with ", ".
    public var headers: [String: String]
    public var body: [UInt8]
    /// Opaque value the caller attached after its own authentication; reaches tools as
    /// `MCPRequestContext.auth`.
    public var auth: (any Sendable)?

    public init(method: String, headers: [String: String], body: [UInt8], auth: (any Sendable)? = nil) {
        self.method = method.uppercased()
        var h: [String: String] = [:]
        h.reserveCapacity(headers.count)
        for (k, v) in headers { h[k.lowercased()] = v }
        self.headers = h
        self.body = body
        self.auth = auth
    }

    /// Builds the header dictionary from name/value pairs (repeats joined with ", ").
    public init(method: String, headerPairs: some Sequence<(String, String)>, body: [UInt8], auth: (any Sendable)? = nil) {
        var h: [String: String] = [:]
        for (k, v) in headerPairs {
            let key = k.lowercased()
            if let old = h[key] { h[key] = old + ", " + v } else { h[key] = v }
        }
        self.init(method: method, headers: h, body: body, auth: auth)
    }
}

/// A streamed `text/event-stream` body: `event: message\ndata: <json>\n\n` frames (plus
/// `: keepalive` comments), ending after the JSON-RPC response.
public struct MCPSSEBody: Sendable {
    /// The frames, ready to write as-is.
    public let stream: AsyncStream<[UInt8]>
    /// Call when the client went away (write failed / connection closed): cancels the request
    /// (see `MCPHTTPHandler.Options`). Idempotent; dropping the stream has the same effect.
    public let cancel: @Sendable () -> Void
}

/// What to answer. Header names in `headers` are in canonical case.
public enum MCPHTTPResponse: Sendable {
    /// `Content-Type: application/json` body.
    case json(status: Int, headers: [String: String], body: [UInt8])
    /// 202 Accepted, no body (notifications, client responses).
    case accepted
    /// Any other status (405, 404, 200 for DELETE, …), optional body.
    case status(code: Int, headers: [String: String], body: [UInt8]?)
    /// `Content-Type: text/event-stream`.
    case sse(status: Int, headers: [String: String], body: MCPSSEBody)

    public var statusCode: Int {
        switch self {
        case .json(let s, _, _): return s
        case .accepted: return 202
        case .status(let c, _, _): return c
        case .sse(let s, _, _): return s
        }
    }
}

/// Framework-agnostic Streamable HTTP endpoint (mount it at `/mcp`), dual-era:
///
/// - Handshake era (2025-06-18, 2025-11-25): `initialize` mints an `Mcp-Session-Id`; later
///   requests need it (400 without, 404 unknown/expired/deleted); `DELETE` ends it.
/// - Stateless era (2026-07-28): selected by `MCP-Protocol-Version` (or a body `_meta` envelope);
///   no sessions; `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` checked against
///   the body (400/-32020), unsupported version 400/-32022, unknown method 404/-32601.
/// - `GET` → 405 (no server-initiated stream; `subscriptions/listen` is served as a POST stream).
/// - Requests other than `tools/call`/`subscriptions/listen` are answered as JSON; `tools/call`
///   is answered as JSON when it completes within `jsonResponseWindow` without emitting a
///   notification, otherwise as an SSE stream (progress notifications, then the response).
public final class MCPHTTPHandler: Sendable {
    public struct Options: Sendable {
        /// Extra allowed `Origin` values, exact match after lowercasing ("https://app.example.com").
        public var allowedOrigins: Set<String> = []
        /// Allow `Origin`s on loopback hosts (localhost, 127.0.0.0/8, [::1]).
        public var allowLoopbackOrigins = true
        /// Allow an `Origin` whose host[:port] equals the request's `Host` header.
        public var allowSameHostOrigin = true
        /// Handshake-era sessions idle longer than this are forgotten (then 404).
        public var sessionIdleTimeout: Duration = .seconds(30 * 60)
        /// At most this many sessions; when full, the least recently used idle one is dropped
        /// (503 if all are busy).
        public var maxSessions = 1024
        /// `tools/call` that finishes within this window without notifications is answered as
        /// `application/json`; otherwise the answer becomes an SSE stream. `.zero` = always SSE.
        public var jsonResponseWindow: Duration = .milliseconds(50)
        /// Interval of `: keepalive` comments on open SSE streams (nil = none). Besides keeping
        /// proxies from timing out idle streams, these writes are how a disconnected client is
        /// noticed when the web framework does not cancel the handler on disconnect (Hummingbird 2
        /// does not): the first write after the peer closed fails, the consumer stops, the
        /// request is cancelled. So this is also the worst-case cancellation latency.
        public var sseKeepAliveInterval: Duration? = .seconds(2)
        /// Whether a closed SSE stream cancels a *handshake-era* request. The 2025-06-18/11-25
        /// spec says a disconnect SHOULD NOT be read as cancellation (clients send
        /// `notifications/cancelled`); 2026-07-28 says it MUST, which is always done there.
        public var cancelHandshakeRequestsOnDisconnect = false
        /// Largest accepted body (413 above).
        public var maxBodyBytes = 16 << 20
        /// Optional: derives an identity from the request's `auth`; a session then only
        /// serves requests with the same identity as its `initialize` (others get 404).
        public var sessionOwner: (@Sendable ((any Sendable)?) -> String?)? = nil

        public init() {}
    }

    public let server: MCPServer
    public let options: Options
    private let sessions = Mutex<[String: HTTPSession]>([:])
    private let shutdownSignal = ShutdownSignal()
    private let logger: Logger

    public init(server: MCPServer, options: Options = Options()) {
        self.server = server
        self.options = options
        self.logger = server.logger
    }

    /// Number of live handshake-era sessions.
    public var sessionCount: Int { sessions.withLock { $0.count } }

    /// Drops sessions idle longer than `sessionIdleTimeout` (also done lazily on requests).
    public func expireIdleSessions() {
        let now = ContinuousClock.now
        let dead = sessions.withLock { table -> [HTTPSession] in
            var out: [HTTPSession] = []
            for (k, s) in table where s.isExpired(now: now, idle: options.sessionIdleTimeout) {
                out.append(s)
                table[k] = nil
            }
            return out
        }
        for s in dead { s.connection.close() }
    }

    /// Ends every session and open `subscriptions/listen` stream (graceful completion).
    public func shutdown() {
        shutdownSignal.fire()
        let all = sessions.withLock { t -> [HTTPSession] in
            defer { t.removeAll() }
            return Array(t.values)
        }
        for s in all {
            s.connection.shutdown.fire()
            s.connection.close()
        }
    }

    // MARK: - Entry point

    public func handle(_ request: MCPHTTPRequest) async -> MCPHTTPResponse {
        if let origin = request.headers["origin"], !originAllowed(origin, host: request.headers["host"]) {
            return errorJSON(403, id: nil, .invalidRequest("Forbidden: Origin \(origin) is not allowed"))
        }
        switch request.method {
        case "POST":
            return await post(request)
        case "DELETE":
            guard let sid = request.headers["mcp-session-id"] else {
                return .status(code: 405, headers: ["Allow": "POST"], body: nil)
            }
            let s = sessions.withLock { $0.removeValue(forKey: sid) }
            guard let s, ownerMatches(s, request) else {
                if let s { sessions.withLock { $0[sid] = s } }
                return errorJSON(404, id: nil, .invalidRequest("Session not found"))
            }
            s.connection.close()
            return .status(code: 200, headers: [:], body: nil)
        default:
            return .status(code: 405, headers: ["Allow": "POST, DELETE"], body: nil)
        }
    }

    // MARK: - POST

    private func post(_ request: MCPHTTPRequest) async -> MCPHTTPResponse {
        let accept = request.headers["accept"] ?? ""
        guard Self.accepts(accept, "application/json"), Self.accepts(accept, "text/event-stream") else {
            return errorJSON(406, id: nil, .invalidRequest("Not Acceptable: Accept must list application/json and text/event-stream"))
        }
        if let ct = request.headers["content-type"], !ct.lowercased().hasPrefix("application/json") {
            return errorJSON(415, id: nil, .invalidRequest("Unsupported Media Type: Content-Type must be application/json"))
        }
        guard request.body.count <= options.maxBodyBytes else {
            return errorJSON(413, id: nil, .invalidRequest("Payload Too Large"))
        }
        let message = JSONRPC.decode(request.body)
        if case .invalid(let id, let e) = message {
            return errorJSON(400, id: id, e)
        }
        let pv = request.headers["mcp-protocol-version"]
        let hasSession = request.headers["mcp-session-id"] != nil
        var hasEnvelope = false
        if case .request(_, let method, let params) = message {
            hasEnvelope = method != "initialize" && MCPServer.modernEnvelope(params) != nil
        }
        let stateless: Bool
        if let pv, MCPProtocolVersion.isHandshake(pv) {
            // A 2026 request (`_meta` envelope, no session) whose header names a 2025 version is
            // a header mismatch (-32020) for the stateless checks to report, not a session
            // request that lacks its session id.
            stateless = !hasSession && hasEnvelope
        } else if let pv, !MCPProtocolVersion.isModern(pv) {
            // A version we do not speak. On a session the session's checks name it (400); without
            // one, the stateless checks answer in the spec's order (envelope, headers, version).
            stateless = !hasSession
        } else if pv != nil {
            stateless = true
        } else {
            stateless = !hasSession && hasEnvelope
        }
        return stateless ? await postStateless(request, message) : await postHandshake(request, message)
    }

    private func postStateless(_ request: MCPHTTPRequest, _ message: IncomingMessage) async -> MCPHTTPResponse {
        switch message {
        case .notification, .response:
            // 2026-07-28 defines no client notifications over HTTP (closing the stream cancels);
            // accept and ignore them. Clients MUST NOT send responses.
            if case .response = message {
                return errorJSON(400, id: nil, .invalidRequest("Invalid Request: clients must not send JSON-RPC responses"))
            }
            return .accepted
        case .invalid(let id, let e):
            return errorJSON(400, id: id, e)
        case .request(let id, let method, let params):
            // 1. envelope present and well-formed
            guard let envResult = MCPServer.modernEnvelope(params) else {
                return errorJSON(400, id: id, .invalidParams(
                    "params._meta must carry \"\(MCPServer.metaProtocolVersion)\" and \"\(MCPServer.metaClientCapabilities)\""))
            }
            let envelope: MCPServer.ModernEnvelope
            switch envResult {
            case .failure(let e): return errorJSON(400, id: id, e)
            case .success(let m): envelope = m
            }
            // 2. headers mirror the body
            if let e = checkRoutingHeaders(request.headers, method: method, params: params, version: envelope.protocolVersion) {
                return errorJSON(400, id: id, e)
            }
            // 3. version
            if let e = MCPServer.checkVersion(envelope) { return errorJSON(400, id: id, e) }
            // 4. method
            guard MCPServer.statelessMethods.contains(method) else {
                return errorJSON(404, id: id, .methodNotFound(method))
            }
            // 5. Mcp-Param-* (x-mcp-header)
            if method == "tools/call", case .string(let tool)? = params?["name"],
                let e = checkParamHeaders(request.headers, tool: tool, arguments: params?["arguments"])
            {
                return errorJSON(400, id: id, e)
            }
            return await serve(
                id: id, method: method, params: params, request: request, connection: nil, session: nil, stateless: true)
        }
    }

    private func postHandshake(_ request: MCPHTTPRequest, _ message: IncomingMessage) async -> MCPHTTPResponse {
        if case .request(let id, "initialize", let params) = message {
            return await initialize(id: id, params: params, request: request)
        }
        guard let sid = request.headers["mcp-session-id"] else {
            var id: JSONRPCID? = nil
            if case .request(let rid, _, _) = message { id = rid }
            return errorJSON(400, id: id, .invalidRequest("Bad Request: Mcp-Session-Id header is required (send initialize first)"))
        }
        guard let session = acquireSession(sid, request) else {
            var id: JSONRPCID? = nil
            if case .request(let rid, _, _) = message { id = rid }
            return errorJSON(404, id: id, .invalidRequest("Session not found (expired or terminated); send initialize again"))
        }
        if let pv = request.headers["mcp-protocol-version"] {
            var id: JSONRPCID? = nil
            if case .request(let rid, _, _) = message { id = rid }
            if !MCPProtocolVersion.isHandshake(pv) {
                session.release()
                return errorJSON(400, id: id, Self.unsupportedVersion(pv))
            }
            // The header must repeat what initialize negotiated for this session (spec: the
            // version in use), so a client cannot drift between revisions mid-session.
            if let negotiated = session.connection.negotiated?.protocolVersion, negotiated != pv {
                session.release()
                return errorJSON(
                    400, id: id,
                    .invalidRequest(
                        "Bad Request: MCP-Protocol-Version \(pv) differs from \(negotiated), the version this session negotiated"))
            }
        }
        switch message {
        case .notification(let method, let params):
            server.notify(method: method, params: params, connection: session.connection)
            session.release()
            return .accepted
        case .response:
            session.release()
            return .accepted
        case .invalid(let id, let e):
            session.release()
            return errorJSON(400, id: id, e)
        case .request(let id, let method, let params):
            return await serve(
                id: id, method: method, params: params, request: request, connection: session.connection,
                session: session, stateless: false)
        }
    }

    private func initialize(id: JSONRPCID, params: JSONValue?, request: MCPHTTPRequest) async -> MCPHTTPResponse {
        let connection = MCPConnection()
        let env = MCPServer.Environment(
            transport: .http, headers: request.headers, auth: request.auth, connection: connection,
            shutdown: connection.shutdown, sink: { _ in })
        let outcome = await server.handle(id: id, method: "initialize", params: params, env: env)
        guard case .result(let r) = outcome else {
            if case .error(let e) = outcome { return errorJSON(400, id: id, e) }
            return errorJSON(400, id: id, .invalidRequest())
        }
        let session = HTTPSession(id: Self.newSessionID(), connection: connection, owner: options.sessionOwner?(request.auth))
        guard insertSession(session) else {
            return errorJSON(503, id: id, MCPError(code: MCPError.internalErrorCode, message: "Too many MCP sessions; try again later"))
        }
        return .json(
            status: 200,
            headers: ["Content-Type": "application/json", "Mcp-Session-Id": session.id],
            body: JSONRPC.encodeResult(id: id, result: r))
    }

    // MARK: - Serving a request

    private func serve(
        id: JSONRPCID, method: String, params: JSONValue?, request: MCPHTTPRequest, connection: MCPConnection?,
        session: HTTPSession?, stateless: Bool
    ) async -> MCPHTTPResponse {
        var inFlight: InFlightRequest? = nil
        if let connection {
            inFlight = connection.begin(id)
            if inFlight == nil {
                session?.release()
                return errorJSON(400, id: id, .invalidRequest("Invalid Request: id \(id) is already in use by a request in flight"))
            }
        }
        let handle = inFlight ?? InFlightRequest()
        let streaming = method == "tools/call" || method == "subscriptions/listen"
        let exchange = ResponseExchange(keepAlive: options.sseKeepAliveInterval)
        let env = MCPServer.Environment(
            transport: .http, headers: request.headers, auth: request.auth, connection: connection,
            shutdown: connection?.shutdown ?? shutdownSignal,
            sink: { bytes in
                if !handle.isCancelled { exchange.notification(bytes) }
            })
        let server = self.server
        let task = Task {
            let outcome = await server.handle(id: id, method: method, params: params, env: env)
            switch outcome {
            case .result(let r):
                exchange.complete(JSONRPC.encodeResult(id: id, result: r), errorCode: nil, suppressed: handle.isCancelled)
            case .error(let e):
                exchange.complete(JSONRPC.encodeError(id: id, error: e), errorCode: e.code, suppressed: handle.isCancelled)
            case .none:
                exchange.complete(nil, errorCode: nil, suppressed: true)
            }
            if let inFlight { connection?.end(id, inFlight) }
            session?.release()
        }
        handle.attach(task)
        let cancelOnDisconnect = stateless || options.cancelHandshakeRequestsOnDisconnect
        if cancelOnDisconnect {
            exchange.onConsumerGone = { @Sendable in handle.interrupt() }
        }

        if method == "subscriptions/listen" || (streaming && options.jsonResponseWindow <= .zero) {
            exchange.forceStream()
        } else if streaming {
            let window = options.jsonResponseWindow
            exchange.startTimer(window)
        }
        let decision = await withTaskCancellationHandler {
            await exchange.decision()
        } onCancel: {
            handle.interrupt()
        }
        switch decision {
        case .json(let body, let code):
            let status = code.map { stateless ? Self.statelessStatus($0) : Self.handshakeStatus($0) } ?? 200
            return .json(status: status, headers: ["Content-Type": "application/json"], body: body)
        case .cancelled:
            return errorJSON(200, id: id, MCPError(code: MCPError.internalErrorCode, message: "Request cancelled"))
        case .stream:
            return .sse(
                status: 200,
                headers: ["Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"],
                body: MCPSSEBody(stream: exchange.stream, cancel: { exchange.consumerGone() }))
        }
    }

    /// The 400 answer to an `MCP-Protocol-Version` header we do not speak, naming it and ours.
    static func unsupportedVersion(_ pv: String) -> MCPError {
        .invalidRequest(
            "Bad Request: unsupported MCP-Protocol-Version \(pv); supported: \(MCPProtocolVersion.all.joined(separator: ", "))")
    }

    /// HTTP status for a JSON-RPC error code in the stateless era (spec: header/version/_meta
    /// faults 400, unknown method 404).
    static func statelessStatus(_ code: Int) -> Int {
        switch code {
        case MCPError.methodNotFoundCode: return 404
        case MCPError.parseErrorCode, MCPError.invalidRequestCode, MCPError.invalidParamsCode,
            MCPError.headerMismatchCode, MCPError.missingRequiredClientCapabilityCode,
            MCPError.unsupportedProtocolVersionCode:
            return 400
        default: return 200
        }
    }

    static func handshakeStatus(_ code: Int) -> Int {
        switch code {
        case MCPError.parseErrorCode, MCPError.invalidRequestCode: return 400
        default: return 200
        }
    }

    // MARK: - Sessions

    static func newSessionID() -> String {
        var g = SystemRandomNumberGenerator()
        var s = ""
        s.reserveCapacity(32)
        for _ in 0..<2 {
            let v = g.next() as UInt64
            let hex = String(v, radix: 16)
            s += String(repeating: "0", count: 16 - hex.count) + hex
        }
        return s
    }

    private func ownerMatches(_ s: HTTPSession, _ request: MCPHTTPRequest) -> Bool {
        guard let owner = s.owner else { return true }
        return options.sessionOwner?(request.auth) == owner
    }

    /// Looks a session up and marks it busy; nil if unknown, expired or owned by someone else.
    private func acquireSession(_ id: String, _ request: MCPHTTPRequest) -> HTTPSession? {
        let now = ContinuousClock.now
        var expired: HTTPSession? = nil
        let s = sessions.withLock { t -> HTTPSession? in
            guard let s = t[id] else { return nil }
            if s.isExpired(now: now, idle: options.sessionIdleTimeout) {
                t[id] = nil
                expired = s
                return nil
            }
            return s
        }
        expired?.connection.close()
        guard let s, ownerMatches(s, request) else { return nil }
        s.acquire()
        return s
    }

    private func insertSession(_ session: HTTPSession) -> Bool {
        let now = ContinuousClock.now
        var dropped: [HTTPSession] = []
        let ok = sessions.withLock { t -> Bool in
            for (k, s) in t where s.isExpired(now: now, idle: options.sessionIdleTimeout) {
                dropped.append(s)
                t[k] = nil
            }
            if t.count >= options.maxSessions {
                // Evict the least recently used idle session.
                var victim: HTTPSession? = nil
                var oldest = now
                for s in t.values {
                    let (last, active) = s.snapshot
                    if active == 0 && last <= oldest {
                        oldest = last
                        victim = s
                    }
                }
                guard let victim else { return false }
                t[victim.id] = nil
                dropped.append(victim)
            }
            t[session.id] = session
            return true
        }
        for s in dropped { s.connection.close() }
        return ok
    }

    private func errorJSON(_ status: Int, id: JSONRPCID?, _ e: MCPError) -> MCPHTTPResponse {
        .json(status: status, headers: ["Content-Type": "application/json"], body: JSONRPC.encodeError(id: id, error: e))
    }
}
