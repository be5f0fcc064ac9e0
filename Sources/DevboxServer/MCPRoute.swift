import DevboxModel
import DevboxService
import DevboxTools
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Transport

/// `/mcp`: the MCP tools over Streamable HTTP (POST, GET, DELETE), behind the same
/// `AuthMiddleware` as the REST API. Produces: 401 (JSON API error) without a valid provider
/// token; 413 for a body over 2 MiB; every other status comes from `MCPHTTPHandler` (400, 403,
/// 404, 405, 406, 415, 503 per the MCP transport rules). On graceful shutdown, open SSE
/// responses end their requests so the server is not held for a wait's whole timeout.
struct MCPController {
    let handler: MCPHTTPHandler
    static let maxBodyBytes = 2 * 1024 * 1024

    init(services: ToolServices, publicURL: URL?, metrics: ServiceMetrics, logger: Logger) {
        var serverOptions = MCPServerOptions()
        serverOptions.logger = logger
        serverOptions.onToolCall = { [metrics] tool, error, duration in
            metrics.mcpToolCall(tool: tool, error: error, duration: duration)
        }
        let server: MCPServer
        do {
            server = try DevboxMCPServer.make(
                environment: { context in
                    guard let principal = context.auth as? Principal else {
                        throw DevboxBackendUnavailable("This request is not authenticated; send X-Provider-Token.")
                    }
                    return DevboxToolEnvironment(
                        backend: CoreToolBackend(
                            services: services, principal: principal,
                            baseURL: publicURL.map { $0.absoluteString }
                                ?? context.headers["host"].map { "http://" + $0 }),
                        credentials: InjectionTokens(
                            claudeToken: context.headers["x-claude-token"].flatMap { $0.isEmpty ? nil : $0 },
                            codexToken: context.headers["x-codex-token"].flatMap { $0.isEmpty ? nil : $0 }))
                }, options: serverOptions)
        } catch {
            // The tool definitions are static and covered by tests; this cannot happen at run time.
            preconditionFailure("invalid MCP tool definitions: \(error)")
        }
        var options = MCPHTTPHandler.Options()
        options.maxBodyBytes = Self.maxBodyBytes
        // A session only serves the token and user that opened it.
        options.sessionOwner = { auth in
            (auth as? Principal).map { "\($0.providerTokenId)/\($0.userId)" }
        }
        self.handler = MCPHTTPHandler(server: server, options: options)
    }

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/mcp", use: handle)
        router.route(table, .get, "/mcp", use: handle)
        router.route(table, .delete, "/mcp", use: handle)
    }

    @Sendable func handle(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        var request = request
        var body = ByteBuffer()
        if request.method == .post {
            do {
                // Collected into the request (not only read from it), so an SSE answer can still
                // watch the connection for the client going away.
                body = try await request.collectBody(upTo: Self.maxBodyBytes)
            } catch is NIOTooManyBytesError {
                return Self.tooLarge()
            } catch let e as HTTPError where e.status == .contentTooLarge {
                return Self.tooLarge()
            }
        }
        let answer = await handler.handle(
            MCPHTTPRequest(
                // The authority (HTTP/1.1 Host) is a pseudo-header here: handed on as `host`, the
                // base of port_url's answer.
                method: request.method.rawValue,
                headerPairs: request.headers.map { ($0.name.canonicalName, $0.value) }
                    + (request.head.authority.map { [("host", $0)] } ?? []),
                body: Array(buffer: body), auth: principal))
        switch answer {
        case .json(let status, let headers, let bytes):
            return Response(
                status: .init(code: status), headers: Self.fields(headers), body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        case .accepted:
            return Response(status: .accepted)
        case .status(let code, let headers, let bytes):
            return Response(
                status: .init(code: code), headers: Self.fields(headers),
                body: bytes.map { .init(byteBuffer: ByteBuffer(bytes: $0)) } ?? .init())
        case .sse(let status, let headers, let sse):
            let handler = self.handler
            let inbound = request.body
            var fields = Self.fields(headers)
            // Watching for the client to go away (below) consumes the connection's input, so the
            // connection closes after this stream.
            fields[.connection] = "close"
            return Response(
                status: .init(code: status), headers: fields,
                body: ResponseBody { writer in
                    // A failed write means the client is gone: cancel its request.
                    defer { sse.cancel() }
                    // The HTTP server drains open responses on SIGTERM; a wait_for_ready could hold
                    // it for its whole timeout. End the MCP requests instead (handshake-era ones
                    // through their sessions, this one directly).
                    try await withGracefulShutdownHandler {
                        // A 2026-07-28 client cancels by closing its stream: notice the close the
                        // moment it happens (Hummingbird does not cancel handlers on disconnect,
                        // and the next keep-alive write is seconds away), so a cancelled
                        // run_command is killed before it does more.
                        try await inbound.consumeWithInboundCloseHandler { _ in
                            for await frame in sse.stream {
                                try await writer.write(ByteBuffer(bytes: frame))
                            }
                        } onInboundClosed: {
                            sse.cancel()
                        }
                    } onGracefulShutdown: {
                        handler.shutdown()
                        sse.cancel()
                    }
                    try await writer.finish(nil)
                })
        }
    }

    static func fields(_ headers: [String: String]) -> HTTPFields {
        var f = HTTPFields()
        for (name, value) in headers {
            if let n = HTTPField.Name(name) { f.append(HTTPField(name: n, value: value)) }
        }
        return f
    }

    static func tooLarge() -> Response {
        let body = #"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Payload Too Large: the body exceeds 2 MiB"}}"#
        return Response(
            status: .contentTooLarge, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
