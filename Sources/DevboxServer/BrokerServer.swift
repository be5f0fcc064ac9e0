import AsyncHTTPClient
import DevboxService
import Foundation
import HTTPClientSupport
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// Issue 19's AI-API broker: an HTTP listener of its own (0.0.0.0:<port>; nftables lets boxes
/// reach only this port and the resolver's on the host, and the broker answers box addresses
/// only). `/anthropic/…` and `/openai/…` are forwarded to the configured upstreams with the
/// devbox's real key in place of its placeholder; responses (SSE included) are streamed back
/// piece by piece: from `http://` upstreams by the splice relay (BrokerRelay.swift), from
/// `https://` ones through async-http-client. Bodies, keys and auth headers are never logged.
enum BrokerServer {
    /// The broker's port: `DEVBOX_BROKER_PORT`, else the one kept in `<data>/broker-port`
    /// (chosen once: a box's env names it, so a restart must keep it), else a free one.
    static func choosePort(settings: BrokerSettings, dataDirectory: String, logger: Logger) -> Int {
        if let p = settings.port { return p }
        let file = dataDirectory + "/broker-port"
        if let text = try? String(contentsOfFile: file, encoding: .utf8), let p = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)),
           (1...65535).contains(p) {
            if probeBind(p) != nil { return p }
            logger.warning("the broker's port is taken; choosing another (proxy-mode boxes made before must be recreated)",
                           metadata: ["port": "\(p)"])
        }
        let p = probeBind(0) ?? 0
        try? "\(p)\n".write(toFile: file, atomically: true, encoding: .utf8)
        return p
    }

    /// glibc hands freed memory at the top of a thread's arena back to the kernel once more
    /// than 128 KiB is free there (`M_TRIM_THRESHOLD`). A stream through the broker frees and
    /// allocates a 64 KiB receive buffer per read (NIO cannot reuse one still held by the
    /// writer), so the arena's top was returned and faulted in again, zeroed, for every
    /// buffer (perf: 8 % of serve's samples in `exc_page_fault` under `tcp_recvmsg`'s copy;
    /// 50 streams of 10 MiB: 29 k minor faults → 4 k, serve's CPU −12 %). Process-wide: up
    /// to 8 MiB free per arena stay mapped; allocations below 4 MiB come from the arenas (a
    /// fixed trim threshold turns glibc's sliding mmap threshold off, which would otherwise
    /// send every 128 KiB+ buffer to mmap).
    static func keepFreedPages() {
        #if canImport(Glibc)
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 4 << 20)
        _ = glibcMallopt(-1 /* M_TRIM_THRESHOLD */, 8 << 20)
        #endif
    }

    /// Binds 0.0.0.0:`port` (0: any) and closes again; the port that was free, or nil.
    private static func probeBind(_ port: Int) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = 0
        let ok = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { return nil }
        var got = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &got) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: got.sin_port))
    }

    /// The broker's application (a service of the main one); records its port in the broker's
    /// state first, so start-up offers it to boxes and proxy-mode boxes are told it.
    static func make(
        credentials: CredentialBroker, gitBroker: GitBrokerService, metrics: ServiceMetrics, settings: BrokerSettings,
        dataDirectory: String, logger: Logger
    ) -> any Service {
        keepFreedPages()
        let port = choosePort(settings: settings, dataDirectory: dataDirectory, logger: logger)
        credentials.state.setPort(UInt16(port))
        let forwarder = BrokerForwarder(credentials: credentials, gitBroker: gitBroker, settings: settings, logger: logger)
        // Hummingbird's own logging of this listener: only what is critical. When serve stops
        // before it ever ran (the API's port is taken) the group cancels this server, which
        // then logs "Server shutdown error" at error level: noise next to the one line that
        // says why serve stopped. The broker's own events go through `logger`.
        var quiet = logger
        quiet.logLevel = .critical
        return Application(
            responder: CallbackResponder<BrokerRequestContext> { request, context in
                let response = await forwarder.respond(request, peer: context.peer, channel: context.channel)
                let path = request.uri.path
                metrics.brokerRequest(
                    api: path.hasPrefix("/anthropic/") ? "anthropic" : path.hasPrefix("/openai/") ? "openai" : "other",
                    status: response.status.code)
                return response
            },
            configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: nil),
            onServerRunning: { channel in
                logger.notice("AI-API broker listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
            },
            logger: quiet)
    }
}

#if canImport(Glibc)
/// glibc's `mallopt(3)` (<malloc.h> is not in the Glibc module).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// The broker's request context: the connection's source address, and the connection
/// itself (the plain-HTTP relay writes a streamed body straight to its socket).
struct BrokerRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let peer: String?
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress
        channel = source.channel
    }
}

/// Forwards one admitted request and streams the answer back.
struct BrokerForwarder: Sendable {
    let credentials: CredentialBroker
    let gitBroker: GitBrokerService
    let settings: BrokerSettings
    let logger: Logger
    let http = OwnedHTTPClient(configuration: {
        var c = HTTPClient.Configuration.devbox(connectTimeout: 10, readTimeout: 600, followRedirects: false)
        c.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        return c
    }())

    /// The largest request body forwarded (the APIs' own limits are 32 MiB).
    static let requestLimit = 64 << 20

    /// Hop-by-hop headers (RFC 9110 7.6.1) and those the broker sets itself.
    static let dropped: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length", "x-api-key", "authorization",
    ]

    func respond(_ request: Request, peer: String?, channel: (any Channel)? = nil) async -> Response {
        let path = request.uri.path
        if path.hasPrefix("/git/") {
            return await GitBroker(broker: gitBroker, logger: logger, http: http).respond(request, peer: peer)
        }
        let api: BrokerAPI
        let rest: Substring
        if path.hasPrefix("/anthropic/") {
            (api, rest) = (.anthropic, path.dropFirst("/anthropic".count))
        } else if path.hasPrefix("/openai/") {
            (api, rest) = (.openai, path.dropFirst("/openai".count))
        } else {
            return refusal(404, "the broker serves /anthropic/…, /openai/… and /git/… only")
        }
        let presented: String?
        switch api {
        case .anthropic:
            presented = request.headers[HTTPField.Name("x-api-key")!]
        case .openai:
            let auth = request.headers[.authorization] ?? ""
            presented = auth.lowercased().hasPrefix("bearer ") ? String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces) : nil
        }
        let devboxId: String
        let key: String
        switch await credentials.admitBrokerRequest(api: api, peer: peer, presented: presented) {
        case .refuse(let status, let message):
            logger.notice("broker refused a request", metadata: ["api": "\(api.rawValue)", "peer": "\(peer ?? "?")", "status": "\(status)"])
            return refusal(status, message)
        case .forward(let id, let k):
            (devboxId, key) = (id, k)
        }

        let url = settings.upstream(api) + rest + (request.uri.query.map { "?" + $0 } ?? "")
        if settings.relay, let target = BrokerRelay.Target(url), let channel,
           let local = channel.localAddress, let remote = channel.remoteAddress {
            return await relay(request, target: target, api: api, rest: rest, devboxId: devboxId, key: key,
                               channel: channel, local: local, remote: remote)
        }
        var upstream = HTTPClientRequest(url: url)
        upstream.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.dropped.contains(field.name.canonicalName) {
            upstream.headers.add(name: field.name.rawName, value: field.value)
        }
        switch api {
        case .anthropic: upstream.headers.replaceOrAdd(name: "x-api-key", value: key)
        case .openai: upstream.headers.replaceOrAdd(name: "authorization", value: "Bearer " + key)
        }
        if request.method != .get && request.method != .head {
            // Read whole, then sent: streamed, async-http-client could still be reading the
            // request body when the answer's head arrives and the handler returns, while
            // Hummingbird drains the same body: two readers of one NIO stream crash the
            // process (NIOThrowingAsyncSequenceProducer.next, seen under bench/broker_bench.py).
            do {
                upstream.body = .bytes(try await request.body.collect(upTo: Self.requestLimit))
            } catch {
                return refusal(413, "the request body is larger than \(Self.requestLimit >> 20) MiB, or could not be read")
            }
        }
        let response: HTTPClientResponse
        do {
            response = try await http.client.execute(upstream, timeout: .hours(1))
        } catch {
            credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: 502)
            logger.warning("broker upstream failed", metadata: ["devbox": "\(devboxId)", "api": "\(api.rawValue)", "error": "\(HTTPFailure.reason(error))"])
            return refusal(502, "the upstream API could not be reached: \(HTTPFailure.reason(error))")
        }
        let status = Int(response.status.code)
        credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: status)
        logger.info("brokered", metadata: [
            "devbox": "\(devboxId)", "api": "\(api.rawValue)", "method": "\(request.method.rawValue)",
            "path": "\(rest)", "status": "\(status)",
        ])
        var headers = HTTPFields()
        var contentLength: Int?
        var contentType = ""
        for h in response.headers {
            let name = h.name.lowercased()
            if name == "content-length" { contentLength = Int(h.value); continue }
            if name == "content-type" { contentType = h.value.lowercased() }
            if Self.dropped.contains(name) { continue }
            if let n = HTTPField.Name(h.name) { headers.append(HTTPField(name: n, value: h.value)) }
        }
        let body = response.body
        let credentials = self.credentials
        let encoded = response.headers.contains(name: "content-encoding")
        let type = contentType
        return Response(
            status: HTTPResponse.Status(code: status),
            headers: headers,
            body: ResponseBody(contentLength: contentLength) { writer in
                var meter = encoded ? nil : UsageMeter(contentType: type)
                for try await chunk in body {
                    try await writer.write(chunk)
                    meter?.feed(chunk)
                }
                try await writer.finish(nil)
                if let tokens = meter?.finish(), tokens.input > 0 || tokens.output > 0 {
                    credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: nil, inputTokens: tokens.input, outputTokens: tokens.output)
                }
            })
    }

    /// The plain-HTTP upstream path (`BrokerRelay`): the same admission, headers, usage and
    /// logs as the async-http-client path; a body of up to 256 KiB with a length is read whole,
    /// anything else is spliced to the box's socket as it comes.
    func relay(_ request: Request, target: BrokerRelay.Target, api: BrokerAPI, rest: Substring, devboxId: String, key: String,
               channel: any Channel, local: SocketAddress, remote: SocketAddress) async -> Response {
        var head = "\(request.method.rawValue) \(target.path) HTTP/1.1\r\nhost: \(target.authority)\r\n"
        for field in request.headers where !Self.dropped.contains(field.name.canonicalName) && field.name.canonicalName != "expect" {
            head += "\(field.name.rawName): \(field.value)\r\n"
        }
        switch api {
        case .anthropic: head += "x-api-key: \(key)\r\n"
        case .openai: head += "authorization: Bearer \(key)\r\n"
        }
        var body: ByteBuffer?
        if request.method != .get && request.method != .head {
            do {
                body = try await request.body.collect(upTo: Self.requestLimit)
            } catch {
                return refusal(413, "the request body is larger than \(Self.requestLimit >> 20) MiB, or could not be read")
            }
            head += "content-length: \(body?.readableBytes ?? 0)\r\n"
        }
        head += "connection: keep-alive\r\n\r\n"
        let requestHead = Array(head.utf8)
        let sendBody = body
        let isHead = request.method == .head
        let small = 256 << 10
        let exchange: BrokerRelay.Exchange
        let whole: [UInt8]?
        let boxSocket: BrokerRelay.BoxSocket?
        do {
            (exchange, whole, boxSocket) = try await BrokerRelay.onThread { () -> (BrokerRelay.Exchange, [UInt8]?, BrokerRelay.BoxSocket?) in
                let x = try BrokerRelay.exchange(target, head: requestHead, body: sendBody, isHead: isHead)
                switch x.framing {
                case .none:
                    x.release(bodyDone: true)
                    return (x, [], nil)
                case .length(let n) where n <= small:
                    do {
                        var all: [UInt8] = []
                        all.reserveCapacity(n)
                        while let piece = try x.next(max: small) { all += piece }
                        x.release(bodyDone: true)
                        return (x, all, nil)
                    } catch {
                        x.release(bodyDone: false)
                        throw error
                    }
                default:
                    // A body to splice: the box's socket is found here, on this thread, not in
                    // one more trip to a blocking thread once the head is out (time to first byte).
                    return (x, nil, BrokerRelay.boxSocket(local: local, remote: remote).map(BrokerRelay.BoxSocket.init))
                }
            }
        } catch {
            credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: 502)
            logger.warning("broker upstream failed", metadata: ["devbox": "\(devboxId)", "api": "\(api.rawValue)", "error": "\(error)"])
            return refusal(502, "the upstream API could not be reached: \(error)")
        }
        let status = exchange.status
        credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: status)
        logger.info("brokered", metadata: [
            "devbox": "\(devboxId)", "api": "\(api.rawValue)", "method": "\(request.method.rawValue)",
            "path": "\(rest)", "status": "\(status)",
        ])
        var headers = HTTPFields()
        var contentLength: Int?
        var contentType = ""
        var encoded = false
        for (name, value) in exchange.headers {
            let lower = name.lowercased()
            if lower == "content-length" { contentLength = Int(value); continue }
            if lower == "content-type" { contentType = value.lowercased() }
            if lower == "content-encoding" { encoded = true }
            if Self.dropped.contains(lower) { continue }
            if let n = HTTPField.Name(name) { headers.append(HTTPField(name: n, value: value)) }
        }
        let credentials = self.credentials
        if let whole {
            if !encoded {
                var meter = UsageMeter(contentType: contentType)
                whole.withUnsafeBytes { meter.feed($0) }
                let tokens = meter.finish()
                if tokens.input > 0 || tokens.output > 0 {
                    credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: nil, inputTokens: tokens.input, outputTokens: tokens.output)
                }
            }
            if case .none = exchange.framing, let contentLength {
                // HEAD, 204, 304: the upstream's length stands, no body follows.
                headers[.contentLength] = String(contentLength)
            }
            return Response(status: HTTPResponse.Status(code: status), headers: headers,
                            body: whole.isEmpty ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(bytes: whole)))
        }
        let length: Int? = if case .length(let n) = exchange.framing { n } else { nil }
        if length == nil { headers[.transferEncoding] = "chunked" }
        let type = contentType
        let isEncoded = encoded
        let logger = self.logger
        return Response(
            status: HTTPResponse.Status(code: status),
            headers: headers,
            body: ResponseBody(contentLength: length) { writer in
                let metered = isEncoded ? nil : UsageMeter(contentType: type)
                var tokens: (input: Int, output: Int)?
                if let box = boxSocket {
                    // The meter comes back with the error too: usage the upstream reported before
                    // a stream broke is counted. The splice starts on a blocking thread as soon as
                    // the head is in the socket (from the event loop, not via this task).
                    let meter: UsageMeter?
                    let failure: BrokerRelay.Failure?
                    do {
                        (meter, failure) = try await BrokerRelay.afterFlush(channel) { () -> (UsageMeter?, BrokerRelay.Failure?) in
                            var meter = metered
                            defer { box.close() }
                            do {
                                try BrokerRelay.splice(exchange, to: box.fd, chunked: length == nil, meter: &meter)
                                exchange.release(bodyDone: true)
                                return (meter, nil)
                            } catch {
                                exchange.release(bodyDone: false)
                                return (meter, error as? BrokerRelay.Failure ?? BrokerRelay.Failure("\(error)", 0))
                            }
                        }
                    } catch {
                        box.close()
                        exchange.release(bodyDone: false)
                        throw error
                    }
                    var m = meter
                    tokens = m?.finish()
                    if let failure {
                        if let tokens, tokens.input > 0 || tokens.output > 0 {
                            credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: nil, inputTokens: tokens.input, outputTokens: tokens.output)
                        }
                        logger.notice("broker stream ended early", metadata: ["devbox": "\(devboxId)", "error": "\(failure)"])
                        throw failure
                    }
                } else {
                    // The box's socket was not found among serve's: copy through Hummingbird.
                    var meter = metered
                    do {
                        while let piece = try await BrokerRelay.onThread({ try exchange.next(max: 1 << 20) }) {
                            meter?.feed(piece)
                            try await writer.write(ByteBuffer(bytes: piece))
                        }
                        exchange.release(bodyDone: true)
                    } catch {
                        exchange.release(bodyDone: false)
                        throw error
                    }
                    tokens = meter?.finish()
                }
                try await writer.finish(nil)
                if let tokens, tokens.input > 0 || tokens.output > 0 {
                    credentials.recordBrokerUsage(devboxId: devboxId, api: api, status: nil, inputTokens: tokens.input, outputTokens: tokens.output)
                }
            })
    }

    func refusal(_ status: Int, _ message: String) -> Response {
        let quoted = (try? JSONSerialization.data(withJSONObject: [message], options: []))
            .map { String(decoding: $0.dropFirst().dropLast(), as: UTF8.self) } ?? "\"\""
        let json = Array("{\"type\":\"error\",\"error\":{\"type\":\"devbox_broker\",\"message\":\(quoted)}}".utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: json)))
    }
}

/// Reads token usage out of an answer as it passes, without holding the stream up: a JSON
/// answer's `usage` (kept up to 8 MiB), or in server-sent events the `usage` objects of
/// `data:` lines (Anthropic's message_start / message_delta, OpenAI's last chunk or
/// response.completed), the largest value of each count.
struct UsageMeter {
    enum Kind { case json, sse }
    let kind: Kind?
    var buffer: [UInt8] = []
    var input = 0
    var output = 0
    static let jsonLimit = 8 << 20

    init(contentType: String) {
        kind = contentType.contains("text/event-stream") ? .sse : contentType.contains("json") ? .json : nil
    }

    /// A line longer than this (no usage event is) is skipped, not kept.
    static let lineLimit = 1 << 20
    var skippingLine = false

    mutating func feed(_ chunk: ByteBuffer) {
        chunk.withUnsafeReadableBytes { feed($0) }
    }

    mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    mutating func feed(_ raw: UnsafeRawBufferPointer) {
        switch kind {
        case .json:
            if buffer.count + raw.count <= Self.jsonLimit { buffer.append(contentsOf: raw) }
        case .sse:
            // memchr for line ends; a line that lies whole in this piece is scanned where it is,
            // only a line cut by the piece's end is kept (and only while it starts with "data:").
            guard let base = raw.baseAddress else { return }
            var start = 0
            while start < raw.count {
                let nl = memchr(base + start, 0x0A, raw.count - start)
                let end = nl.map { base.distance(to: UnsafeRawPointer($0)) } ?? raw.count
                let part = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                if nl != nil, buffer.isEmpty, !skippingLine {
                    line(part)
                } else {
                    keep(part)
                    if nl != nil {
                        if !skippingLine {
                            let kept = buffer
                            kept.withUnsafeBytes { line($0) }
                        }
                        buffer.removeAll(keepingCapacity: true)
                        skippingLine = false
                    }
                }
                guard nl != nil else { break }
                start = end + 1
            }
        case nil: break
        }
    }

    private mutating func keep(_ bytes: UnsafeRawBufferPointer) {
        guard !skippingLine else { return }
        if buffer.count + bytes.count > Self.lineLimit {
            skippingLine = true
            buffer.removeAll(keepingCapacity: true)
            return
        }
        buffer.append(contentsOf: bytes)
        // Only `data:` lines can carry usage.
        if buffer.count >= Self.dataPrefix.count, !buffer.starts(with: Self.dataPrefix) {
            skippingLine = true
            buffer.removeAll(keepingCapacity: true)
        }
    }

    private mutating func line(_ b: UnsafeRawBufferPointer) {
        guard b.count > 13, let base = b.baseAddress, memcmp(base, Self.dataPrefix, Self.dataPrefix.count) == 0 else { return }
        let key = Self.usageKey
        // memchr to each quote, then compare: no loop per byte in Swift.
        var at = 0
        var hasUsage = false
        while at + key.count <= b.count, let q = memchr(base + at, 0x22, b.count - at) {
            let i = base.distance(to: UnsafeRawPointer(q))
            if i + key.count <= b.count, memcmp(base + i, key, key.count) == 0 { hasUsage = true; break }
            at = i + 1
        }
        guard hasUsage else { return }
        take(Data(UnsafeRawBufferPointer(rebasing: b[5...])), keepMax: true)
    }

    static let dataPrefix = Array("data:".utf8)
    static let usageKey = Array("\"usage\"".utf8)

    private mutating func take(_ data: Data, keepMax: Bool) {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
        var usages: [[String: Any]] = []
        if let u = obj["usage"] as? [String: Any] { usages.append(u) }
        for nested in ["message", "response"] {
            if let m = obj[nested] as? [String: Any], let u = m["usage"] as? [String: Any] { usages.append(u) }
        }
        for u in usages {
            let i = (u["input_tokens"] as? Int) ?? (u["prompt_tokens"] as? Int) ?? 0
            let o = (u["output_tokens"] as? Int) ?? (u["completion_tokens"] as? Int) ?? 0
            if keepMax {
                input = max(input, i)
                output = max(output, o)
            } else {
                input += i
                output += o
            }
        }
    }

    mutating func finish() -> (input: Int, output: Int) {
        if kind == .json, !buffer.isEmpty { take(Data(buffer), keepMax: false) }
        if kind == .sse, !buffer.isEmpty, !skippingLine {
            let kept = buffer
            kept.withUnsafeBytes { line($0) }
        }
        return (input, output)
    }
}
