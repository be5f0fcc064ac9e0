import Foundation
import Testing

@testable import Transport

let acceptBoth = "application/json, text/event-stream"

func post(
    _ h: MCPHTTPHandler, _ body: JSONValue, headers: [String: String] = [:], auth: (any Sendable)? = nil
) async -> MCPHTTPResponse {
    var hd = ["accept": acceptBoth, "content-type": "application/json", "host": "127.0.0.1:8080"]
    for (k, v) in headers { hd[k.lowercased()] = v }
    return await h.handle(MCPHTTPRequest(method: "POST", headers: hd, body: body.serialized(), auth: auth))
}

/// Headers a 2026-07-28 client sends for `body`.
func modernHeaders(_ body: JSONValue, extra: [String: String] = [:]) -> [String: String] {
    var h = ["MCP-Protocol-Version": "2026-07-28", "Mcp-Method": body["method"]?.stringValue ?? ""]
    if let name = body["params"]?["name"]?.stringValue { h["Mcp-Name"] = name }
    for (k, v) in extra { h[k] = v }
    return h
}

extension MCPHTTPResponse {
    var jsonBody: JSONValue? {
        if case .json(_, _, let b) = self { return try? JSONValue(parsing: b) }
        if case .status(_, _, let b?) = self { return try? JSONValue(parsing: b) }
        return nil
    }
    var headers: [String: String] {
        switch self {
        case .json(_, let h, _), .status(_, let h, _), .sse(_, let h, _): return h
        case .accepted: return [:]
        }
    }
    var sseBody: MCPSSEBody? {
        if case .sse(_, _, let b) = self { return b }
        return nil
    }
}

/// Collects SSE frames until the stream ends.
func collect(_ body: MCPSSEBody) async -> String {
    var s = ""
    for await f in body.stream { s += String(decoding: f, as: UTF8.self) }
    return s
}

/// Parses `event: message` frames.
func sseMessages(_ text: String) -> [JSONValue] {
    text.components(separatedBy: "\n\n").compactMap { frame -> JSONValue? in
        let lines = frame.split(separator: "\n")
        guard lines.contains("event: message"), let d = lines.first(where: { $0.hasPrefix("data: ") }) else { return nil }
        return try? JSONValue(parsing: String(d.dropFirst(6)))
    }
}

@Suite(.timeLimit(.minutes(1))) struct HTTPHandshakeTests {
    let initBody = request(1, "initialize", ["protocolVersion": "2025-11-25", "capabilities": [:], "clientInfo": ["name": "c", "version": "1"]])

    func session(_ h: MCPHTTPHandler) async throws -> String {
        let r = await post(h, initBody)
        #expect(r.statusCode == 200)
        return try #require(r.headers["Mcp-Session-Id"])
    }

    /// The version header's edge cases name what is wrong, in the era the request is really in.
    @Test func versionHeaderEdges() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let r0 = await post(h, request(1, "initialize", ["protocolVersion": "2025-06-18", "capabilities": [:]]))
        let sid = try #require(r0.headers["Mcp-Session-Id"])
        #expect(r0.jsonBody?["result"]?["protocolVersion"] == "2025-06-18")

        // An unknown version on a session: 400 naming it (not a complaint about params._meta).
        let unknown = await post(h, request(2, "tools/list"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2099-01-01"])
        #expect(unknown.statusCode == 400)
        let message = unknown.jsonBody?["error"]?["message"]?.stringValue ?? ""
        #expect(message.contains("2099-01-01") && !message.contains("_meta"), "\(message)")
        #expect(unknown.jsonBody?["id"] == 2)

        // A supported version other than the one this session negotiated: rejected.
        let drift = await post(h, request(3, "tools/list"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"])
        #expect(drift.statusCode == 400)
        #expect(drift.jsonBody?["error"]?["message"]?.stringValue?.contains("2025-06-18") == true)
        let same = await post(h, request(4, "tools/list"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"])
        #expect(same.statusCode == 200)

        // A 2026 request (body _meta, no session) with a 2025 header: a header mismatch.
        let mixed = request(5, "tools/list", modern())
        let r5 = await post(h, mixed, headers: modernHeaders(mixed, extra: ["MCP-Protocol-Version": "2025-11-25"]))
        #expect(r5.statusCode == 400)
        #expect(r5.jsonBody?["error"]?["code"] == -32020, "\(r5.jsonBody?.jsonString ?? "")")
    }

    @Test func initializeMintsSessionAndSessionIsRequired() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let r = await post(h, initBody)
        guard case .json(200, let hd, _) = r else { Issue.record("\(r)"); return }
        let sid = try #require(hd["Mcp-Session-Id"])
        #expect(sid.count == 32 && sid.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E })
        #expect(r.jsonBody?["result"]?["protocolVersion"] == "2025-11-25")
        #expect(h.sessionCount == 1)

        let n = await post(h, notification("notifications/initialized"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"])
        #expect(n.statusCode == 202)

        let missing = await post(h, request(2, "tools/list"), headers: ["MCP-Protocol-Version": "2025-11-25"])
        #expect(missing.statusCode == 400)
        #expect(missing.jsonBody?["id"] == 2)

        let unknown = await post(h, request(3, "tools/list"), headers: ["Mcp-Session-Id": "nope", "MCP-Protocol-Version": "2025-11-25"])
        #expect(unknown.statusCode == 404)

        let ok = await post(h, request(4, "tools/list"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"])
        #expect(ok.statusCode == 200)
        #expect(ok.jsonBody?["result"]?["tools"]?.arrayValue?.isEmpty == false)
        #expect(ok.headers["Content-Type"] == "application/json")

        let badVersion = await post(h, request(5, "ping"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2024-01-01"])
        #expect(badVersion.statusCode == 400)

        let del = await h.handle(MCPHTTPRequest(method: "DELETE", headers: ["mcp-session-id": sid], body: []))
        #expect(del.statusCode == 200)
        #expect(h.sessionCount == 0)
        let after = await post(h, request(6, "ping"), headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"])
        #expect(after.statusCode == 404)
        let delAgain = await h.handle(MCPHTTPRequest(method: "DELETE", headers: ["mcp-session-id": sid], body: []))
        #expect(delAgain.statusCode == 404)
    }

    @Test func initializeWithoutVersionHeaderAndResponsesAreAccepted() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let sid = try await session(h)
        let resp = await post(h, ["jsonrpc": "2.0", "id": 9, "result": [:]], headers: ["Mcp-Session-Id": sid])
        #expect(resp.statusCode == 202)
        // Without MCP-Protocol-Version the session's version applies.
        let r = await post(h, request(2, "ping"), headers: ["Mcp-Session-Id": sid])
        #expect(r.jsonBody?["result"] == [:])
    }

    @Test func acceptContentTypeAndMethods() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let r1 = await post(h, initBody, headers: ["Accept": "application/json"])
        #expect(r1.statusCode == 406)
        let r2 = await post(h, initBody, headers: ["Accept": "text/event-stream"])
        #expect(r2.statusCode == 406)
        let r3 = await post(h, initBody, headers: ["Accept": "*/*"])
        #expect(r3.statusCode == 200)
        let r4 = await post(h, initBody, headers: ["Content-Type": "text/plain"])
        #expect(r4.statusCode == 415)
        let get = await h.handle(MCPHTTPRequest(method: "GET", headers: ["accept": "text/event-stream"], body: []))
        #expect(get.statusCode == 405)
        #expect(get.headers["Allow"] != nil)
        let put = await h.handle(MCPHTTPRequest(method: "PUT", headers: [:], body: []))
        #expect(put.statusCode == 405)
    }

    @Test func parseErrorIs400WithNullID() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let r = await h.handle(MCPHTTPRequest(method: "POST", headers: ["accept": acceptBoth], body: Array("{oops".utf8)))
        #expect(r.statusCode == 400)
        #expect(r.jsonBody?["id"] == .null)
        #expect(r.jsonBody?["error"]?["code"] == -32700)
        let batch = await h.handle(MCPHTTPRequest(method: "POST", headers: ["accept": acceptBoth], body: Array("[]".utf8)))
        #expect(batch.statusCode == 400)
        #expect(batch.jsonBody?["error"]?["code"] == -32600)
    }

    @Test(arguments: [
        ("http://localhost:3000", true), ("http://127.0.0.1:9", true), ("http://[::1]:80", true),
        ("https://evil.example", false), ("null", false), ("http://127.0.0.1.evil.example", false),
        ("http://api.devbox.test:8080", true),  // same host as the Host header below
        ("https://app.allowed.test", true),  // configured
    ])
    func origins(_ origin: String, _ allowed: Bool) async throws {
        var o = MCPHTTPHandler.Options()
        o.allowedOrigins = ["https://app.allowed.test"]
        let h = MCPHTTPHandler(server: try makeServer(), options: o)
        let r = await post(h, initBody, headers: ["Origin": origin, "Host": "api.devbox.test:8080"])
        #expect((r.statusCode != 403) == allowed, "\(origin)")
        if !allowed { #expect(r.jsonBody?["error"] != nil) }
    }

    @Test func sessionsExpireAndAreBounded() async throws {
        // Eviction, on a handler whose sessions do not expire meanwhile (the default idle
        // timeout): a loaded machine cannot turn an eviction check into an expiry.
        var o = MCPHTTPHandler.Options()
        o.maxSessions = 2
        let h = MCPHTTPHandler(server: try makeServer(), options: o)
        let s1 = try await session(h)
        let s2 = try await session(h)
        _ = await post(h, request(2, "ping"), headers: ["Mcp-Session-Id": s1])  // s1 more recent
        let s3 = try await session(h)  // evicts s2 (least recently used)
        #expect(h.sessionCount == 2)
        #expect(await post(h, request(3, "ping"), headers: ["Mcp-Session-Id": s2]).statusCode == 404)
        #expect(await post(h, request(3, "ping"), headers: ["Mcp-Session-Id": s3]).statusCode == 200)
        #expect(await post(h, request(3, "ping"), headers: ["Mcp-Session-Id": s1]).statusCode == 200)
        // Expiry, on a handler of its own with a short idle timeout.
        var e = MCPHTTPHandler.Options()
        e.sessionIdleTimeout = .seconds(1)
        let he = MCPHTTPHandler(server: try makeServer(), options: e)
        let x = try await session(he)
        try await Task.sleep(for: .milliseconds(1300))
        #expect(await post(he, request(4, "ping"), headers: ["Mcp-Session-Id": x]).statusCode == 404)
        he.expireIdleSessions()
        #expect(he.sessionCount == 0)
    }

    @Test func sessionOwnerIsEnforced() async throws {
        var o = MCPHTTPHandler.Options()
        o.sessionOwner = { $0 as? String }
        let h = MCPHTTPHandler(server: try makeServer(), options: o)
        let r = await post(h, initBody, auth: "alice")
        let sid = try #require(r.headers["Mcp-Session-Id"])
        #expect(await post(h, request(2, "ping"), headers: ["Mcp-Session-Id": sid], auth: "bob").statusCode == 404)
        #expect(await post(h, request(2, "ping"), headers: ["Mcp-Session-Id": sid], auth: "alice").statusCode == 200)
    }

    @Test func progressStreamsOnTheRequestsOwnSSEStream() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let sid = try await session(h)
        let r = await post(
            h, request(7, "tools/call", ["name": "slow", "arguments": ["seconds": 0.3], "_meta": ["progressToken": "pt"]]),
            headers: ["Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"])
        guard case .sse(200, let hd, let body) = r else { Issue.record("expected SSE, got \(r)"); return }
        #expect(hd["Content-Type"] == "text/event-stream")
        #expect(hd["X-Accel-Buffering"] == "no")
        let text = await collect(body)
        #expect(text.hasPrefix("event: message\ndata: {"))
        #expect(text.hasSuffix("}\n\n"))
        let msgs = sseMessages(text)
        #expect(msgs.count >= 2)  // at least one progress notification, then the response
        #expect(msgs.dropLast().allSatisfy { $0["method"] == "notifications/progress" && $0["params"]?["progressToken"] == "pt" })
        #expect(msgs.last?["id"] == 7)
        #expect(msgs.last?["result"]?["content"]?[0]?["text"] == "slept")
    }

    @Test func fastToolCallIsPlainJSON() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let sid = try await session(h)
        let r = await post(h, request("e", "tools/call", ["name": "echo", "arguments": ["text": "hi"]]), headers: ["Mcp-Session-Id": sid])
        guard case .json(200, _, _) = r else { Issue.record("\(r)"); return }
        #expect(r.jsonBody?["id"] == "e")
        #expect(r.jsonBody?["result"]?["content"]?[0]?["text"] == "hi")
    }

    @Test func cancelledNotificationOverSessionCancelsTask() async throws {
        let probe = Probe()
        let h = MCPHTTPHandler(server: try makeServer(probe))
        let sid = try await session(h)
        let r = await post(h, request(11, "tools/call", ["name": "slow", "arguments": ["seconds": 10]]), headers: ["Mcp-Session-Id": sid])
        let body = try #require(r.sseBody)
        #expect(await probe.waitFor("slow-start"))
        let c = await post(h, notification("notifications/cancelled", ["requestId": 11]), headers: ["Mcp-Session-Id": sid])
        #expect(c.statusCode == 202)
        #expect(await probe.waitFor("slow-cancelled"))
        let text = await collect(body)
        #expect(sseMessages(text).allSatisfy { $0["id"] == nil })  // no response after cancel
    }

    @Test func handshakeDisconnectDoesNotCancelByDefault() async throws {
        let probe = Probe()
        // Stream at once: on a loaded machine a 0.3 s call can outlast the JSON window's timer.
        var o = MCPHTTPHandler.Options()
        o.jsonResponseWindow = .zero
        let h = MCPHTTPHandler(server: try makeServer(probe), options: o)
        let sid = try await session(h)
        let r = await post(h, request(12, "tools/call", ["name": "slow", "arguments": ["seconds": 0.3]]), headers: ["Mcp-Session-Id": sid])
        let body = try #require(r.sseBody)
        body.cancel()
        #expect(await probe.waitFor("slow-done"))
        #expect(!probe.has("slow-cancelled"))
    }
}

@Suite(.timeLimit(.minutes(1))) struct HTTPStatelessTests {
    @Test func discoverProbeAndCall() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let d = request(1, "server/discover", modern())
        let r = await post(h, d, headers: modernHeaders(d))
        #expect(r.statusCode == 200)
        #expect(r.headers["Mcp-Session-Id"] == nil)
        #expect(r.jsonBody?["result"]?["supportedVersions"]?[0] == "2026-07-28")
        let c = request(2, "tools/call", modern(["name": "whoami"]))
        let r2 = await post(h, c, headers: modernHeaders(c, extra: ["X-Claude-Token": "tok-123"]), auth: "principal")
        let res = try #require(r2.jsonBody?["result"])
        #expect(res["resultType"] == "complete")
        #expect(res["structuredContent"]?["token"] == "tok-123")
        #expect(res["structuredContent"]?["auth"] == "principal")
        #expect(res["structuredContent"]?["era"] == "stateless")
        #expect(h.sessionCount == 0)
    }

    @Test func sessionHeaderIsIgnored() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let c = request(2, "tools/list", modern())
        let r = await post(h, c, headers: modernHeaders(c, extra: ["Mcp-Session-Id": "whatever"]))
        #expect(r.statusCode == 200)
    }

    @Test func getAndDeleteAre405() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let g = await h.handle(MCPHTTPRequest(method: "GET", headers: ["mcp-protocol-version": "2026-07-28"], body: []))
        #expect(g.statusCode == 405)
        let d = await h.handle(MCPHTTPRequest(method: "DELETE", headers: ["mcp-protocol-version": "2026-07-28"], body: []))
        #expect(d.statusCode == 405)
    }

    @Test func headerMismatches() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let c = request(3, "tools/call", modern(["name": "echo", "arguments": ["text": "x"]]))
        let cases: [[String: String]] = [
            modernHeaders(c, extra: ["Mcp-Method": "tools/list"]),
            modernHeaders(c, extra: ["Mcp-Name": "other"]),
            modernHeaders(c).filter { $0.key != "Mcp-Name" },
            modernHeaders(c).filter { $0.key != "Mcp-Method" },
        ]
        for hd in cases {
            let r = await post(h, c, headers: hd)
            #expect(r.statusCode == 400, "\(hd)")
            #expect(r.jsonBody?["error"]?["code"] == -32020, "\(hd)")
            #expect(r.jsonBody?["id"] == 3)
        }
        // Body version differs from header version (both the header's value is modern).
        let other = request(4, "tools/list", modern(extraMeta: ["io.modelcontextprotocol/protocolVersion": "2099-01-01"]))
        let r = await post(h, other, headers: modernHeaders(other))
        #expect(r.statusCode == 400)
        #expect(r.jsonBody?["error"]?["code"] == -32020)
        // Envelope in the body but no version header at all.
        let noHeader = request(5, "tools/list", modern())
        let r2 = await post(h, noHeader, headers: ["Mcp-Method": "tools/list"])
        #expect(r2.jsonBody?["error"]?["code"] == -32020)
    }

    @Test func base64MirroredName() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let c = request(3, "tools/call", modern(["name": "echo", "arguments": ["text": "x"]]))
        let enc = "=?base64?" + Data("echo".utf8).base64EncodedString() + "?="
        let r = await post(h, c, headers: modernHeaders(c, extra: ["Mcp-Name": enc]))
        #expect(r.statusCode == 200)
    }

    @Test func paramHeaders() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let c = request(3, "tools/call", modern(["name": "region", "arguments": ["region": "us-west1"]]))
        #expect(await post(h, c, headers: modernHeaders(c, extra: ["Mcp-Param-Region": "us-west1"])).statusCode == 200)
        let missing = await post(h, c, headers: modernHeaders(c))
        #expect(missing.jsonBody?["error"]?["code"] == -32020)
        let wrong = await post(h, c, headers: modernHeaders(c, extra: ["Mcp-Param-Region": "eu"]))
        #expect(wrong.jsonBody?["error"]?["code"] == -32020)
        let absent = request(4, "tools/call", modern(["name": "region", "arguments": [:]]))
        #expect(await post(h, absent, headers: modernHeaders(absent)).statusCode == 200)
    }

    @Test func unsupportedVersionAndUnknownMethodAndMissingMeta() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let v = request(1, "server/discover", modern(extraMeta: ["io.modelcontextprotocol/protocolVersion": "2099-01-01"]))
        let r = await post(h, v, headers: modernHeaders(v, extra: ["MCP-Protocol-Version": "2099-01-01"]))
        #expect(r.statusCode == 400)
        #expect(r.jsonBody?["error"]?["code"] == -32022)
        #expect(r.jsonBody?["error"]?["data"]?["requested"] == "2099-01-01")
        #expect(r.jsonBody?["error"]?["data"]?["supported"]?[0] == "2026-07-28")

        let m = request(2, "prompts/list", modern())
        let r2 = await post(h, m, headers: modernHeaders(m))
        #expect(r2.statusCode == 404)
        #expect(r2.jsonBody?["error"]?["code"] == -32601)

        let ping = request(3, "ping", modern())
        #expect(await post(h, ping, headers: modernHeaders(ping)).statusCode == 404)

        let noMeta = request(4, "tools/list", [:])
        let r3 = await post(h, noMeta, headers: modernHeaders(noMeta))
        #expect(r3.statusCode == 400)
        #expect(r3.jsonBody?["error"]?["code"] == -32602)

        let unknownTool = request(5, "tools/call", modern(["name": "nope"]))
        let r4 = await post(h, unknownTool, headers: modernHeaders(unknownTool))
        #expect(r4.statusCode == 400)
        #expect(r4.jsonBody?["error"]?["code"] == -32602)
    }

    @Test func notificationsAre202ResponsesAre400() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let n = notification("notifications/cancelled", ["requestId": 1])
        #expect(await post(h, n, headers: ["MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "notifications/cancelled"]).statusCode == 202)
        let resp: JSONValue = ["jsonrpc": "2.0", "id": 1, "result": [:]]
        #expect(await post(h, resp, headers: ["MCP-Protocol-Version": "2026-07-28"]).statusCode == 400)
    }

    @Test func closingTheSSEStreamCancelsTheTask() async throws {
        let probe = Probe()
        let h = MCPHTTPHandler(server: try makeServer(probe))
        let c = request(5, "tools/call", modern(["name": "slow", "arguments": ["seconds": 10], "_meta": ["progressToken": 1]]))
        let r = await post(h, c, headers: modernHeaders(c))
        let body = try #require(r.sseBody)
        // Read the first progress frame, then walk away (as a disconnected client would).
        var it = body.stream.makeAsyncIterator()
        let first = await it.next()
        #expect(first.map { String(decoding: $0, as: UTF8.self) }?.contains("notifications/progress") == true)
        body.cancel()
        #expect(await probe.waitFor("slow-cancelled"))
    }

    @Test func droppingTheStreamCancelsTheTask() async throws {
        let probe = Probe()
        var o = MCPHTTPHandler.Options()
        o.jsonResponseWindow = .zero
        let h = MCPHTTPHandler(server: try makeServer(probe), options: o)
        let c = request(6, "tools/call", modern(["name": "slow", "arguments": ["seconds": 10]]))
        do {
            let r = await post(h, c, headers: modernHeaders(c))
            #expect(r.sseBody != nil)
            #expect(await probe.waitFor("slow-start"))
            let t = Task { for await _ in r.sseBody!.stream {} }
            try await Task.sleep(for: .milliseconds(50))
            t.cancel()  // consumer task cancelled → onTermination(.cancelled)
        }
        #expect(await probe.waitFor("slow-cancelled"))
    }

    @Test func listenStreamAcknowledgesAndEndsOnShutdown() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let c = request("s1", "subscriptions/listen", modern(["notifications": ["toolsListChanged": true]]))
        let r = await post(h, c, headers: modernHeaders(c))
        let body = try #require(r.sseBody)
        let reader = Task { await collect(body) }
        try await Task.sleep(for: .milliseconds(50))
        h.shutdown()
        let msgs = sseMessages(await reader.value)
        #expect(msgs.first?["method"] == "notifications/subscriptions/acknowledged")
        #expect(msgs.last?["id"] == "s1")
        #expect(msgs.last?["result"]?["resultType"] == "complete")
    }

    @Test func keepAliveComments() async throws {
        var o = MCPHTTPHandler.Options()
        o.sseKeepAliveInterval = .milliseconds(30)
        o.jsonResponseWindow = .zero
        let h = MCPHTTPHandler(server: try makeServer(), options: o)
        let c = request(8, "tools/call", modern(["name": "slow", "arguments": ["seconds": 0.2]]))
        let r = await post(h, c, headers: modernHeaders(c))
        let text = await collect(try #require(r.sseBody))
        #expect(text.contains(": keepalive\n\n"))
        #expect(sseMessages(text).last?["id"] == 8)
    }

    @Test func probeThenHandshakeFallbackIsImmediate() async throws {
        // A dual-era client that only knows a future modern version: the probe fails with -32022
        // naming handshake versions too, so it falls back to initialize at once.
        let h = MCPHTTPHandler(server: try makeServer())
        let probe = request(0, "server/discover", modern(extraMeta: ["io.modelcontextprotocol/protocolVersion": "2030-01-01"]))
        let r = await post(h, probe, headers: modernHeaders(probe, extra: ["MCP-Protocol-Version": "2030-01-01"]))
        #expect(r.statusCode == 400)
        #expect(r.jsonBody?["error"]?["data"]?["supported"]?.arrayValue?.contains("2025-11-25") == true)
        let i = await post(h, request(1, "initialize", ["protocolVersion": "2025-11-25", "capabilities": [:]]))
        #expect(i.statusCode == 200)
        #expect(i.headers["Mcp-Session-Id"] != nil)
    }

    @Test func initializeUnderTheModernHeaderIsRejectedAsStateless() async throws {
        let h = MCPHTTPHandler(server: try makeServer())
        let i = request(1, "initialize", ["protocolVersion": "2025-11-25", "capabilities": [:]])
        let r = await post(h, i, headers: ["MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "initialize"])
        #expect(r.statusCode == 400)
        #expect(h.sessionCount == 0)
    }

    @Test func duplicateHeadersAreJoined() {
        let r = MCPHTTPRequest(method: "post", headerPairs: [("Mcp-Method", "a"), ("mcp-method", "b")], body: [])
        #expect(r.method == "POST")
        #expect(r.headers["mcp-method"] == "a, b")
    }
}
