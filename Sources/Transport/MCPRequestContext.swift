import Synchronization

/// Which transport carried a request.
public enum MCPTransportKind: Sendable, Hashable {
    case stdio
    case http
}

/// Where outgoing notifications for one request go (stdout line, or the request's SSE stream).
typealias NotificationSink = @Sendable ([UInt8]) async -> Void

/// Everything a tool can know about the request it is serving.
///
/// Cancellation is Swift Task cancellation: `notifications/cancelled` (stdio, handshake-era
/// HTTP) and a closed SSE response stream (HTTP) cancel the Task running `call`.
public struct MCPRequestContext: Sendable {
    /// JSON-RPC id of the request.
    public let requestID: JSONRPCID
    /// Protocol revision the request is served under (`_meta` version, or the one negotiated by
    /// `initialize`).
    public let protocolVersion: String
    public let era: MCPEra
    public let transport: MCPTransportKind
    /// HTTP request headers, keys lowercased (`x-claude-token`, `authorization`, …).
    /// Empty for stdio.
    public let headers: [String: String]
    /// Opaque value attached by the HTTP layer (e.g. the authenticated principal). nil on stdio
    /// unless the caller of `MCPStdioTransport.run` passed one.
    public let auth: (any Sendable)?
    /// `clientInfo` (from `initialize`, or `_meta["io.modelcontextprotocol/clientInfo"]`).
    public let clientInfo: JSONValue?
    /// Client capabilities (from `initialize`, or `_meta["io.modelcontextprotocol/clientCapabilities"]`).
    public let clientCapabilities: JSONValue?
    /// The request's `params._meta` object, if any.
    public let meta: JSONValue?
    /// The caller's `_meta.progressToken`, if it asked for progress.
    public var progressToken: JSONRPCID? { progress?.token }

    let progress: ProgressReporter?

    /// Sends `notifications/progress` for this request. A no-op when the caller sent no
    /// `progressToken`, after the request completed, or when `progress` does not increase
    /// (the spec requires strictly increasing values).
    public func reportProgress(progress value: Double, total: Double? = nil, message: String? = nil) async {
        await progress?.report(progress: value, total: total, message: message)
    }

    /// Shorthand for `Task.isCancelled`.
    public var isCancelled: Bool { Task.isCancelled }

    /// A context for unit-testing tool providers directly (no transport, no progress).
    public static func testing(
        requestID: JSONRPCID = .int(1), protocolVersion: String = MCPProtocolVersion.latest,
        era: MCPEra = .stateless, transport: MCPTransportKind = .stdio, headers: [String: String] = [:],
        auth: (any Sendable)? = nil
    ) -> MCPRequestContext {
        MCPRequestContext(
            requestID: requestID, protocolVersion: protocolVersion, era: era, transport: transport,
            headers: headers, auth: auth, clientInfo: nil, clientCapabilities: nil, meta: nil, progress: nil)
    }

    init(
        requestID: JSONRPCID, protocolVersion: String, era: MCPEra, transport: MCPTransportKind,
        headers: [String: String], auth: (any Sendable)?, clientInfo: JSONValue?, clientCapabilities: JSONValue?,
        meta: JSONValue?, progress: ProgressReporter?
    ) {
        self.requestID = requestID
        self.protocolVersion = protocolVersion
        self.era = era
        self.transport = transport
        self.headers = headers
        self.auth = auth
        self.clientInfo = clientInfo
        self.clientCapabilities = clientCapabilities
        self.meta = meta
        self.progress = progress
    }
}

/// Emits `notifications/progress` for one request; stops after `finish()`.
final class ProgressReporter: Sendable {
    let token: JSONRPCID
    private let sink: NotificationSink
    private let state = Mutex<(last: Double?, finished: Bool)>((nil, false))

    init(token: JSONRPCID, sink: @escaping NotificationSink) {
        self.token = token
        self.sink = sink
    }

    func report(progress: Double, total: Double?, message: String?) async {
        guard progress.isFinite else { return }
        let ok = state.withLock { s -> Bool in
            if s.finished { return false }
            if let last = s.last, progress <= last { return false }
            s.last = progress
            return true
        }
        guard ok, !Task.isCancelled else { return }
        var params: [String: JSONValue] = ["progressToken": token.json, "progress": Self.number(progress)]
        if let total, total.isFinite { params["total"] = Self.number(total) }
        if let message { params["message"] = .string(message) }
        await sink(JSONRPC.encodeNotification(method: "notifications/progress", params: .object(params)))
    }

    func finish() { state.withLock { $0.finished = true } }

    var isFinished: Bool { state.withLock { $0.finished } }

    private static func number(_ d: Double) -> JSONValue {
        if d.rounded() == d, let i = Int(exactly: d) { return .int(i) }
        return .double(d)
    }
}
