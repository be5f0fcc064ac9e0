import Foundation
import Synchronization
import Testing

@testable import Transport

/// Drives `MCPServer.handle` directly (no transport).
final class Driver: Sendable {
    let server: MCPServer
    let connection: MCPConnection?
    let notes = Mutex<[JSONValue]>([])

    init(_ server: MCPServer, connection: MCPConnection? = MCPConnection()) {
        self.server = server
        self.connection = connection
    }

    func call(_ id: JSONRPCID = .int(1), _ method: String, _ params: JSONValue? = nil) async -> MCPServer.Outcome {
        let env = MCPServer.Environment(
            transport: .stdio, connection: connection, shutdown: connection?.shutdown,
            sink: { bytes in
                if let v = try? JSONValue(parsing: bytes) { self.notes.withLock { $0.append(v) } }
            })
        return await server.handle(id: id, method: method, params: params, env: env)
    }

    func result(_ method: String, _ params: JSONValue? = nil) async -> JSONValue? {
        if case .result(let r) = await call(.int(1), method, params) { return r }
        return nil
    }

    func error(_ method: String, _ params: JSONValue? = nil) async -> MCPError? {
        if case .error(let e) = await call(.int(1), method, params) { return e }
        return nil
    }
}

@Suite struct HandshakeTests {
    @Test(arguments: ["2025-06-18", "2025-11-25"])
    func initializeEchoesSupportedVersion(_ version: String) async throws {
        let d = Driver(try makeServer())
        let r = try #require(await d.result("initialize", ["protocolVersion": .string(version), "capabilities": [:], "clientInfo": ["name": "c", "version": "1"]]))
        #expect(r["protocolVersion"] == .string(version))
        #expect(r["capabilities"] == ["tools": ["listChanged": false]])
        #expect(r["serverInfo"] == ["name": "test-server", "version": "1.2.3", "title": "Test Server"])
        #expect(r["instructions"] == "Use the tools.")
        #expect(r["resultType"] == nil)
        // Handshake-era results carry no 2026 fields.
        let list = try #require(await d.result("tools/list"))
        #expect(list["ttlMs"] == nil && list["resultType"] == nil)
        #expect(list["tools"]?.arrayValue?.count == 8)
        #expect(await d.result("ping") == [:])
    }

    @Test(arguments: ["2024-11-05", "2025-03-26", "1999-01-01", "2026-07-28"])
    func initializeAnswersLatestHandshakeVersionOtherwise(_ version: String) async throws {
        let d = Driver(try makeServer())
        let r = try #require(await d.result("initialize", ["protocolVersion": .string(version), "capabilities": [:]]))
        #expect(r["protocolVersion"] == "2025-11-25")
    }

    @Test func initializeNeedsProtocolVersion() async throws {
        let d = Driver(try makeServer())
        #expect(await d.error("initialize", ["capabilities": [:]])?.code == -32602)
    }

    @Test func requestsBeforeInitializeWithoutMetaAreRejected() async throws {
        let d = Driver(try makeServer())
        #expect(await d.error("tools/list")?.code == -32602)
        #expect(await d.result("ping") == [:])  // ping is allowed before initialize
    }

    @Test func toolListShape() async throws {
        let d = Driver(try makeServer())
        _ = await d.result("initialize", ["protocolVersion": "2025-11-25", "capabilities": [:]])
        let list = try #require(await d.result("tools/list"))
        let echo = try #require(list["tools"]?[0])
        #expect(echo["name"] == "echo")
        #expect(echo["title"] == "Echo")
        #expect(echo["inputSchema"]?["type"] == "object")
        // Hints at the spec's defaults are left out (destructive/idempotent mean nothing for a read-only tool).
        #expect(echo["annotations"] == ["readOnlyHint": true, "openWorldHint": false])
        let writer = MCPToolAnnotations(readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true)
        #expect(writer.json == ["destructiveHint": false, "idempotentHint": true])
        let r = MCPToolAnnotations.resolved(writer.json)
        #expect(!r.readOnly && !r.destructive && r.idempotent && r.openWorld)
        #expect(MCPToolAnnotations(readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true).json == [:])
        #expect(list["tools"]?[2]?["outputSchema"] != nil)
        #expect(list["nextCursor"] == nil)
    }

    @Test func pagination() async throws {
        var o = MCPServerOptions()
        o.toolsPageSize = 3
        let d = Driver(try makeServer(options: o))
        _ = await d.result("initialize", ["protocolVersion": "2025-11-25", "capabilities": [:]])
        var names: [String] = []
        var cursor: JSONValue? = nil
        repeat {
            let r = try #require(await d.result("tools/list", cursor.map { ["cursor": $0] }))
            names += r["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
            cursor = r["nextCursor"]
        } while cursor != nil
        #expect(names == ["echo", "slow", "progress", "fail", "typed", "whoami", "region", "boom"])
        #expect(await d.error("tools/list", ["cursor": "zzz"])?.code == -32602)
    }

    @Test func unknownMethodsAndRemovedOnes() async throws {
        let d = Driver(try makeServer())
        _ = await d.result("initialize", ["protocolVersion": "2025-11-25", "capabilities": [:]])
        #expect(await d.error("resources/list")?.code == -32601)
        #expect(await d.error("nope")?.code == -32601)
        // Stateless methods need the envelope.
        #expect(await d.error("server/discover")?.code == -32602)
    }
}

@Suite struct ToolCallTests {
    func ready() async throws -> Driver {
        let d = Driver(try makeServer())
        _ = await d.result("initialize", ["protocolVersion": "2025-11-25", "capabilities": [:]])
        return d
    }

    @Test func echo() async throws {
        let d = try await ready()
        let r = try #require(await d.result("tools/call", ["name": "echo", "arguments": ["text": "hi"]]))
        #expect(r == ["content": [["type": "text", "text": "hi"]], "isError": false])
    }

    @Test func unknownToolIsInvalidParams() async throws {
        let d = try await ready()
        let e = try #require(await d.error("tools/call", ["name": "nope", "arguments": [:]]))
        #expect(e.code == -32602)
        #expect(e.message.contains("nope"))
        #expect(await d.error("tools/call", ["arguments": [:]])?.code == -32602)
        #expect(await d.error("tools/call", ["name": "echo", "arguments": [1]])?.code == -32602)
    }

    @Test func argumentErrorsNameTheField() async throws {
        let d = try await ready()
        let e = try #require(await d.error("tools/call", ["name": "typed", "arguments": ["count": "x", "name": "n"]]))
        #expect(e.code == -32602)
        #expect(e.message.contains("'count'"))
        let e2 = try #require(await d.error("tools/call", ["name": "typed", "arguments": ["count": 1]]))
        #expect(e2.message.contains("'name'"))
        #expect(await d.result("tools/call", ["name": "typed", "arguments": ["count": 2, "name": "n"]])?["content"]?[0]?["text"] == "nx2")
    }

    @Test func executionErrorsAreResults() async throws {
        let d = try await ready()
        let r = try #require(await d.result("tools/call", ["name": "fail"]))
        #expect(r["isError"] == true)
        let b = try #require(await d.result("tools/call", ["name": "boom"]))
        #expect(b["isError"] == true)
        #expect(b["content"]?[0]?["text"]?.stringValue?.contains("boom") == true)
    }

    @Test func structuredResultCarriesTextCopy() async throws {
        let d = try await ready()
        let r = try #require(await d.result("tools/call", ["name": "progress", "arguments": ["n": 1]]))
        #expect(r["structuredContent"] == ["done": 1])
        #expect(r["content"]?[0]?["text"] == #"{"done":1}"#)
    }

    @Test func progressOnlyWithTokenAndIncreasing() async throws {
        let d = try await ready()
        _ = await d.result("tools/call", ["name": "progress", "arguments": ["n": 3]])
        #expect(d.notes.withLock { $0.isEmpty })
        _ = await d.result("tools/call", ["name": "progress", "arguments": ["n": 3], "_meta": ["progressToken": "tok"]])
        let notes = d.notes.withLock { $0 }
        #expect(notes.count == 3)
        #expect(notes.allSatisfy { $0["method"] == "notifications/progress" && $0["params"]?["progressToken"] == "tok" })
        #expect(notes.map { $0["params"]?["progress"] } == [1, 2, 3])
        #expect(notes[0]["params"]?["total"] == 3)
        #expect(notes[0]["params"]?["message"] == "step 1")
    }

    @Test func integerProgressTokenKeepsType() async throws {
        let d = try await ready()
        _ = await d.result("tools/call", ["name": "progress", "arguments": ["n": 1], "_meta": ["progressToken": 42]])
        #expect(d.notes.withLock { $0.first?["params"]?["progressToken"] } == .int(42))
    }

    @Test func contextCarriesEra() async throws {
        let d = try await ready()
        let r = try #require(await d.result("tools/call", ["name": "whoami"]))
        #expect(r["structuredContent"]?["era"] == "handshake")
        #expect(r["structuredContent"]?["version"] == "2025-11-25")
    }
}

@Suite struct StatelessTests {
    @Test func discover() async throws {
        let d = Driver(try makeServer(), connection: nil)
        let r = try #require(await d.result("server/discover", modern()))
        #expect(r["resultType"] == "complete")
        #expect(r["supportedVersions"] == ["2026-07-28", "2025-11-25", "2025-06-18"])
        #expect(r["capabilities"] == ["tools": ["listChanged": false]])
        #expect(r["instructions"] == "Use the tools.")
        #expect(r["_meta"]?["io.modelcontextprotocol/serverInfo"] == ["name": "test-server", "version": "1.2.3", "title": "Test Server"])
        #expect(r["ttlMs"] == 300_000)
        #expect(r["cacheScope"] == "public")
    }

    @Test func everyResultIsStamped() async throws {
        let d = Driver(try makeServer(), connection: nil)
        let list = try #require(await d.result("tools/list", modern()))
        #expect(list["resultType"] == "complete")
        #expect(list["ttlMs"] == 300_000 && list["cacheScope"] == "public")
        let call = try #require(await d.result("tools/call", modern(["name": "whoami"])))
        #expect(call["resultType"] == "complete")
        #expect(call["_meta"]?["io.modelcontextprotocol/serverInfo"]?["name"] == "test-server")
        #expect(call["structuredContent"]?["era"] == "stateless")
        #expect(call["structuredContent"]?["version"] == "2026-07-28")
    }

    @Test func missingEnvelopeKeys() async throws {
        let d = Driver(try makeServer(), connection: nil)
        let onlyVersion: JSONValue = ["_meta": ["io.modelcontextprotocol/protocolVersion": "2026-07-28"]]
        let e = try #require(await d.error("tools/list", onlyVersion))
        #expect(e.code == -32602)
        #expect(e.message.contains("clientCapabilities"))
        let onlyCaps: JSONValue = ["_meta": ["io.modelcontextprotocol/clientCapabilities": [:]]]
        #expect(await d.error("tools/list", onlyCaps)?.message.contains("protocolVersion") == true)
        #expect(await d.error("server/discover", [:])?.code == -32602)
        #expect(await d.error("tools/list", ["_meta": ["io.modelcontextprotocol/protocolVersion": 5, "io.modelcontextprotocol/clientCapabilities": [:]]])?.code == -32602)
    }

    @Test func unsupportedVersion() async throws {
        let d = Driver(try makeServer(), connection: nil)
        let p: JSONValue = ["_meta": ["io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": [:]]]
        let e = try #require(await d.error("server/discover", p))
        #expect(e.code == -32022)
        #expect(e.data == ["supported": ["2026-07-28", "2025-11-25", "2025-06-18"], "requested": "2099-01-01"])
    }

    @Test func pingAndInitializeAreNotStatelessMethods() async throws {
        let d = Driver(try makeServer(), connection: nil)
        #expect(await d.error("ping", modern())?.code == -32601)
        #expect(await d.error("resources/list", modern())?.code == -32601)
    }

    @Test func statelessAndHandshakeMixOnOneConnection() async throws {
        let d = Driver(try makeServer())
        _ = await d.result("initialize", ["protocolVersion": "2025-06-18", "capabilities": [:]])
        #expect(await d.result("tools/list")?["resultType"] == nil)
        #expect(await d.result("tools/list", modern())?["resultType"] == "complete")
    }

    @Test func listenAcknowledgesThenCompletesOnShutdown() async throws {
        let conn = MCPConnection()
        let d = Driver(try makeServer(), connection: conn)
        let t = Task { await d.call(.string("sub"), "subscriptions/listen", modern(["notifications": ["toolsListChanged": true]])) }
        let deadline = ContinuousClock.now + .seconds(5)
        while d.notes.withLock({ $0.isEmpty }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let ack = try #require(d.notes.withLock { $0.first })
        #expect(ack["method"] == "notifications/subscriptions/acknowledged")
        #expect(ack["params"]?["_meta"]?["io.modelcontextprotocol/subscriptionId"] == "sub")
        #expect(ack["params"]?["notifications"] == [:])
        conn.shutdown.fire()
        guard case .result(let r) = await t.value else { Issue.record("no result"); return }
        #expect(r["resultType"] == "complete")
        #expect(r["_meta"]?["io.modelcontextprotocol/subscriptionId"] == "sub")
    }
}
