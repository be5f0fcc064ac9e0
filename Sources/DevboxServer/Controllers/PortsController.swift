import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// `/api/v1/devboxes/:id/ports/:port[/<path>]`: HTTP to a port inside a devbox (issue 17,
/// "Exposed ports"). The connection is made from inside the box's network namespace
/// (`RuntimeService.connectPort`), so an app bound to the box's 127.0.0.1 answers and nothing
/// of the host's is reachable.
///
/// Authentication: the API's (`X-Provider-Token`, optional user bearer) or the dashboard's
/// session cookie, so the dashboard can link here. Not behind `AuthMiddleware` for that
/// reason; `authenticate` does the same checks.
///
/// What the app in the box sees: the path after the prefix, the query, the caller's headers
/// without its credentials (`Authorization`, `X-Provider-Token`, `Cookie`, the AI-token and
/// CSRF headers) and without hop-by-hop headers; `Host: 127.0.0.1:<port>` and
/// `X-Forwarded-Prefix: /api/v1/devboxes/<id>/ports/<port>`.
///
/// What the caller gets: the app's status, headers (hop-by-hop removed) and body, streamed
/// both ways. The app is hostile by assumption and its pages are served from the
/// dashboard's origin, so every response carries `Content-Security-Policy: sandbox …`
/// without `allow-same-origin`: in a browser the page runs in an opaque origin, its scripts
/// cannot read the dashboard or the API, and the dashboard's SameSite=Strict cookie is not
/// sent with its own requests. Its `Set-Cookie` headers are dropped (its cookies would
/// land on the dashboard's origin, and none reach it anyway: `Cookie` is stripped).
///
/// WebSocket (any HTTP/1.1 `Upgrade`: `Connection: upgrade` and `Upgrade`) goes the same way:
/// same authentication, and with the cookie the same Origin check as a state-changing method
/// (a browser sends `Origin` on a WebSocket handshake; another site's page cannot open one
/// as the user), same header rules (`Upgrade` and `Connection: Upgrade` kept, `Host`
/// rewritten); the app's answer comes back as it is unless it is a 101, which switches the
/// caller's connection to a byte relay with the app's (`PortRelay`). A refusal before the
/// upgrade is the usual JSON error, and the connection closes after any answer but a 101.
struct PortsController {
    let authenticator: Authenticator
    let reads: DevboxReads
    let runtime: RuntimeService
    let dashboard: DashboardAuth
    /// `DEVBOX_PUBLIC_URL`: the dashboard's origin.
    let publicURL: URL?

    static let methods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete, .head, .options]

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        for method in Self.methods {
            // openapi.json (and its test) describe get/post/put/patch/delete; HEAD and
            // OPTIONS are routed the same way and named in the path's description.
            if ![.head, .options].contains(method) {
                table.record(method, "/api/v1/devboxes/:id/ports/:port")
                table.record(method, "/api/v1/devboxes/:id/ports/:port/:path")
            }
            router.on(RouterPath("/api/v1/devboxes/:id/ports/:port"), method: method, use: proxy)
            router.on(RouterPath("/api/v1/devboxes/:id/ports/:port/**"), method: method, use: proxy)
        }
        // The dashboard's "open port" form (GET with ?port=N) lands here.
        table.record(.get, "/api/v1/devboxes/:id/ports")
        router.on(RouterPath("/api/v1/devboxes/:id/ports"), method: .get, use: redirectToPort)
    }

    // MARK: Authentication

    /// The API's credentials when the request carries any; else the dashboard's session cookie.
    /// With the cookie, a state-changing method must come from this service's own origin, as
    /// the dashboard's forms must (`Web.originAllowed`): another site on this host (same
    /// site, so the SameSite=Strict cookie goes along) cannot post to a box's app as the user.
    func authenticate(_ request: Request) async throws -> Principal {
        let apiCredentials =
            request.headers[HTTPField.Name("X-Provider-Token")!] != nil || request.headers[.authorization] != nil
        if !apiCredentials, let cookie = Web.cookie(request, Web.sessionCookie) {
            guard let session = try await dashboard.dashboardSession(cookie: cookie) else {
                throw ServiceError.unauthorized("the dashboard session has expired; sign in again")
            }
            if ![.get, .head, .options].contains(request.method) || PortHeaders.isUpgrade(request.headers),
                !Web.originAllowed(request, publicURL: publicURL)
            {
                throw CrossOrigin()
            }
            return session.principal
        }
        if !apiCredentials {
            throw ServiceError.unauthorized("missing X-Provider-Token header (or a dashboard session cookie)")
        }
        return try await AuthMiddleware.authenticate(request, authenticator: authenticator)
    }

    static func port(_ raw: String?) throws(ServiceError) -> UInt16 {
        guard let raw, raw.utf8.count <= 5, raw.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(raw),
            (1...65535).contains(n)
        else {
            throw .validation(field: "port", message: "port must be a number from 1 to 65535")
        }
        return UInt16(n)
    }

    // MARK: Routes

    @Sendable func redirectToPort(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try await authenticate(request)
        let id = try context.parameters.require("id")
        let port = try Self.port(request.uri.queryParameters["port"].map(String.init))
        _ = try await reads.devbox(principal, id: id)
        return Response(status: .seeOther, headers: [.location: "/api/v1/devboxes/\(id)/ports/\(port)/"])
    }

    struct CrossOrigin: Error {}

    @Sendable func proxy(_ request: Request, context: AppRequestContext) async throws -> Response {
        let upgrading = PortHeaders.isUpgrade(request.headers)
        if upgrading {
            // The HTTP decoder stops at an upgrade request, so nothing more can be read as
            // HTTP: the connection closes after the answer (a 101 is never finished).
            PortUpgrade.clientChannel?.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let principal: Principal
        do {
            principal = try await authenticate(request)
        } catch is CrossOrigin {
            let what = upgrading ? "an upgrade (WebSocket)" : "a \(request.method)"
            return try JSONIO.response(
                APIErrorBody(
                    code: "forbidden",
                    message: "\(what) with the dashboard's cookie must come from this service's own pages (Origin check)"),
                status: .forbidden)
        }
        let id = try context.parameters.require("id")
        let rawPort = context.parameters.get("port")
        let port = try Self.port(rawPort)
        let prefix = "/api/v1/devboxes/\(id)/ports/\(rawPort ?? "\(port)")"

        if upgrading {
            return try await upgrade(request, principal: principal, id: id, port: port, prefix: prefix)
        }

        let fd: Int32?
        do {
            fd = try await runtime.connectPort(principal, id: id, port: port)
        } catch let e as PortUnreachable {
            return try Self.badGateway(port: port, "nothing answers on port \(port) in devbox \(id) (\(e.reason))")
        }

        let upstream: PortProxy.Upstream
        do {
            upstream = try await PortProxy.connect(fd: fd, port: Int(port))
        } catch {
            return try Self.badGateway(port: port, "nothing answers on port \(port) in devbox \(id)")
        }

        let (head, hasBody) = PortHeaders.requestHead(request, port: port, prefix: prefix)
        let answer: PortProxy.Answer
        switch try await Self.exchange(upstream, head: head, body: hasBody ? request.body : nil, port: port, id: id) {
        case .answer(let a): answer = a
        case .refused(let response): return response
        }

        if answer.head.status == .switchingProtocols {
            answer.exchange.finish()
            return try Self.badGateway(port: port, "the app on port \(port) in devbox \(id) switched protocols without being asked")
        }
        return Self.relayed(answer)
    }

    /// The app's answer as the caller gets it (not a 101).
    static func relayed(_ answer: PortProxy.Answer) -> Response {
        let (headers, contentLength) = PortHeaders.responseFields(answer.head.headers)
        let status = HTTPResponse.Status(code: Int(answer.head.status.code), reasonPhrase: answer.head.status.reasonPhrase)
        return Response(status: status, headers: headers, body: PortProxy.responseBody(answer, contentLength: contentLength))
    }

    /// An upgrade request (see the type's comment): checks and limits, the handshake with the
    /// app, then either its answer or, on 101, the relay as the response's body.
    func upgrade(_ request: Request, principal: Principal, id: String, port: UInt16, prefix: String) async throws -> Response {
        guard let clientChannel = PortUpgrade.clientChannel else {
            // Only when the server was built without `http1WithPortUpgrades` (never in serve).
            try await runtime.checkPortAccess(principal, id: id)
            return try JSONIO.response(
                APIErrorBody(code: "not_implemented", message: "protocol upgrades are not proxied by this server"),
                status: .notImplemented)
        }
        try await runtime.checkPortAccess(principal, id: id)
        guard let slot = PortRelaySlots.shared.acquire(user: principal.userId) else {
            return try JSONIO.response(
                APIErrorBody(
                    code: "too_many_connections",
                    message:
                        "too many WebSocket (upgraded) connections open: at most \(PortUpgrade.maxOpenPerUser) per user and \(PortUpgrade.maxOpen) in all; close some and retry"
                ),
                status: .serviceUnavailable)
        }
        let fd: Int32?
        do {
            fd = try await runtime.connectPort(principal, id: id, port: port)
        } catch let e as PortUnreachable {
            return try Self.badGateway(port: port, "nothing answers on port \(port) in devbox \(id) (\(e.reason))")
        }
        let relay = PortRelay(eventLoop: clientChannel.eventLoop)
        let upstream: PortProxy.Upstream
        do {
            upstream = try await PortProxy.connect(fd: fd, port: Int(port), upgrade: relay)
        } catch {
            return try Self.badGateway(port: port, "nothing answers on port \(port) in devbox \(id)")
        }
        let (head, hasBody) = PortHeaders.requestHead(request, port: port, prefix: prefix, upgrade: true)
        let answer: PortProxy.Answer
        switch try await Self.exchange(upstream, head: head, body: hasBody ? request.body : nil, port: port, id: id) {
        case .answer(let a): answer = a
        case .refused(let response): return response
        }
        guard answer.head.status == .switchingProtocols else {
            return Self.relayed(answer)  // the app declined (or wants something else): its answer
        }
        guard let upgradeTo = answer.head.headers.first(name: "upgrade"), !upgradeTo.isEmpty else {
            answer.exchange.finish()
            return try Self.badGateway(port: port, "the app on port \(port) in devbox \(id) answered 101 without an Upgrade header")
        }
        do {
            try await relay.attachClient(clientChannel)
        } catch {
            answer.exchange.finish()
            throw CancellationError()  // the caller went away
        }
        var (headers, _) = PortHeaders.responseFields(answer.head.headers)
        headers[HTTPField.Name("Content-Security-Policy")!] = nil
        headers[.connection] = "Upgrade"
        headers[.upgrade] = upgradeTo
        let appChannel = upstream.channel
        let exchange = answer.exchange
        // Held until the relay ends: a dropped inbound stream would stop reads on the app's
        // connection for good (NIOAsyncChannel's handler holds them once its consumer is gone).
        let inbound = answer.body
        return Response(
            status: .switchingProtocols, headers: headers,
            body: ResponseBody { _ in
                defer {
                    withExtendedLifetime(inbound) { exchange.finish() }
                    slot.release()
                }
                try await relay.run(client: clientChannel, app: appChannel)
            })
    }

    enum Exchanged {
        case answer(PortProxy.Answer)
        /// What the caller gets instead: 504 when the app sent no response head in time, else 502.
        case refused(Response)
    }

    /// Sends the request to the app and waits for its response head.
    static func exchange(
        _ upstream: PortProxy.Upstream, head: HTTPRequestHead, body: RequestBody?, port: UInt16, id: String
    ) async throws -> Exchanged {
        do {
            return .answer(try await PortProxy.exchange(on: upstream, head: head, body: body))
        } catch let e as PortProxy.Failure {
            if case .timedOut = e {
                return .refused(try JSONIO.response(
                    APIErrorBody(code: "gateway_timeout", message: "the app on port \(port) in devbox \(id) \(e)", field: "port"),
                    status: .gatewayTimeout))
            }
            return .refused(try Self.badGateway(port: port, "the app on port \(port) in devbox \(id) \(e)"))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return .refused(try Self.badGateway(port: port, "the connection to port \(port) in devbox \(id) failed before a response"))
        }
    }

    static func badGateway(port: UInt16, _ message: String) throws -> Response {
        try JSONIO.response(APIErrorBody(code: "bad_gateway", message: message, field: "port"), status: .badGateway)
    }
}

/// Header rules of the port proxy.
enum PortHeaders {
    /// Never forwarded to the app: the caller's credentials.
    static let credentials: Set<String> = [
        "authorization", "proxy-authorization", "x-provider-token", "cookie", "x-claude-token", "x-codex-token", "x-csrf-token",
    ]
    /// Hop-by-hop (RFC 9110 §7.6.1), plus framing NIO sets itself and `Expect` (the body is
    /// streamed up at once; an interim 100 from the app is dropped).
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "http2-settings",
    ]
    /// Dropped from the app's response (see `PortsController`): cookies for the dashboard's
    /// origin, headers that would bind the whole host (HSTS) or wipe the dashboard's data, and
    /// auth challenges (a browser would ask for a password on the dashboard's origin, and
    /// `Authorization` never reaches the app anyway).
    static let refusedResponse: Set<String> = [
        "set-cookie", "set-cookie2", "strict-transport-security", "clear-site-data", "content-security-policy-report-only",
        "www-authenticate",
    ]
    static let sandboxPolicy = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"

    /// An HTTP/1.1 upgrade request: `Upgrade` and the `upgrade` option in `Connection` (as
    /// the HTTP parser decides; with only one of them the request is plain HTTP, and both are
    /// hop-by-hop).
    static func isUpgrade(_ headers: HTTPFields) -> Bool {
        headers[.upgrade] != nil && connectionTokens(headers[values: .connection]).contains("upgrade")
    }

    /// Names listed in `Connection` (hop-by-hop by declaration).
    static func connectionTokens(_ values: [String]) -> Set<String> {
        var out = Set<String>()
        for v in values {
            for t in v.split(separator: ",") { out.insert(t.trimmingCharacters(in: .whitespaces).lowercased()) }
        }
        return out
    }

    /// The request as the app gets it, and whether it has a body to stream up. An upgrade
    /// keeps its `Upgrade` and asks for it (`Connection: Upgrade`) instead of `close`.
    static func requestHead(_ request: Request, port: UInt16, prefix: String, upgrade: Bool = false) -> (HTTPRequestHead, Bool) {
        let drop = connectionTokens(request.headers[values: .connection])
        var headers = HTTPHeaders()
        var contentLength: String?
        var chunked = false
        for field in request.headers {
            let name = field.name.canonicalName
            switch name {
            case "content-length": contentLength = field.value
            case "transfer-encoding": chunked = chunked || field.value.lowercased().contains("chunked")
            case "host", "expect", "x-forwarded-prefix": continue
            default:
                if credentials.contains(name) || hopByHop.contains(name) || drop.contains(name) { continue }
                headers.add(name: field.name.rawName, value: field.value)
            }
        }
        headers.add(name: "Host", value: "127.0.0.1:\(port)")
        headers.add(name: "X-Forwarded-Prefix", value: prefix)
        if upgrade, let to = request.headers[.upgrade] {
            headers.add(name: "Connection", value: "Upgrade")
            headers.add(name: "Upgrade", value: to)
        } else {
            headers.add(name: "Connection", value: "close")
        }
        let method = HTTPMethod(rawValue: request.method.rawValue)
        var hasBody = false
        if let contentLength {
            headers.add(name: "Content-Length", value: contentLength)
            hasBody = contentLength != "0"
        } else if chunked {
            headers.add(name: "Transfer-Encoding", value: "chunked")
            hasBody = true
        } else if [.POST, .PUT, .PATCH].contains(method) {
            headers.add(name: "Content-Length", value: "0")
        }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path(request, prefixSegments: 7), headers: headers)
        return (head, hasBody)
    }

    /// The target without `/api/v1/devboxes/<id>/ports/<port>`, as the caller wrote it
    /// (still percent-encoded, query kept); "/" when nothing follows the prefix.
    static func path(_ request: Request, prefixSegments: Int) -> String {
        var raw = request.head.path ?? "/"
        if !raw.hasPrefix("/") {  // absolute-form target: the parsed path and query
            raw = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        }
        let queryStart = raw.firstIndex(of: "?") ?? raw.endIndex
        let segments = raw[..<queryStart].split(separator: "/", omittingEmptySubsequences: false)
        let rest = segments.dropFirst(prefixSegments).joined(separator: "/")
        return "/" + rest + raw[queryStart...]
    }

    /// The app's response headers as the caller gets them, and its Content-Length if any.
    static func responseFields(_ headers: HTTPHeaders) -> (HTTPFields, Int?) {
        let drop = connectionTokens(headers[canonicalForm: "connection"].map(String.init))
        var out = HTTPFields()
        var contentLength: Int?
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "content-length" {
                contentLength = Int(value)
                continue
            }
            if hopByHop.contains(lower) || drop.contains(lower) || refusedResponse.contains(lower) { continue }
            guard let n = HTTPField.Name(name) else { continue }
            out.append(HTTPField(name: n, value: value))
        }
        out.append(HTTPField(name: HTTPField.Name("Content-Security-Policy")!, value: sandboxPolicy))
        return (out, contentLength)
    }

    /// Trailers as HTTPFields (names NIO accepted but HTTPTypes refuses are dropped).
    static func fields(_ headers: HTTPHeaders) -> HTTPFields {
        var out = HTTPFields()
        for (name, value) in headers {
            guard let n = HTTPField.Name(name) else { continue }
            out.append(HTTPField(name: n, value: value))
        }
        return out
    }
}
