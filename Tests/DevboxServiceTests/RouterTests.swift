import DevboxServer
import DevboxService
import DevboxTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The REST API and `/mcp` through the real router, middleware and controllers, in memory
/// (HummingbirdTesting's `.router`: no socket), over the fast tier's service layer (fake
/// runtime, in-memory database). Runs as any user.
@Suite("Router in memory: REST and /mcp")
struct RouterTests {
    static let token = HTTPField.Name("X-Provider-Token")!
    static let json = [HTTPField.Name.contentType: "application/json"]

    /// The body as a JSON object ([:] when it is not one).
    static func object(_ buffer: ByteBuffer) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any]) ?? [:]
    }

    /// A JSON-RPC answer of `/mcp`: the JSON body, or the last `data:` event of a server-sent
    /// event stream (a slow call streams).
    static func rpc(_ buffer: ByteBuffer) -> [String: Any] {
        let text = String(buffer: buffer)
        guard !text.hasPrefix("{") else { return object(buffer) }
        let data = text.split(separator: "\n").filter { $0.hasPrefix("data:") }.last.map { $0.dropFirst(5) } ?? ""
        return ((try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any]) ?? [:]
    }

    @Test("health and OpenAPI answer without a token; the API refuses a missing or unknown one with JSON 401")
    func authAtTheDoor() async throws {
        try await withFastSystem { fast in
            let app = Application(router: buildRouter(system: fast.system))
            try await app.test(.router) { client in
                try await client.execute(uri: "/healthz", method: .get) { r in
                    #expect(r.status == .ok)
                }
                try await client.execute(uri: "/openapi.json", method: .get) { r in
                    #expect(r.status == .ok)
                    #expect(Self.object(r.body)["openapi"] != nil)
                }
                try await client.execute(uri: "/api/v1/devboxes", method: .get) { r in
                    #expect(r.status == .unauthorized)
                    #expect(r.headers[.contentType]?.hasPrefix("application/json") == true)
                    #expect(Self.object(r.body)["error"] != nil)
                }
                try await client.execute(uri: "/api/v1/devboxes", method: .get, headers: [Self.token: "dbx_pt_nope"]) { r in
                    #expect(r.status == .unauthorized)
                }
                try await client.execute(uri: "/api/v1/nothing-here", method: .get) { r in
                    #expect(r.status == .notFound)
                }
            }
        }
    }

    @Test("create is 202 requested; with the worker it becomes ready; get, list, operations and delete agree")
    func createGetListDelete() async throws {
        try await withFastSystem { fast in
            let token = try await fast.providerToken()
            let app = Application(router: buildRouter(system: fast.system))
            let worker = Task { try await ProvisioningWorker(context: fast.services.provisioning).run() }
            await fast.services.housekeeping.startUp()
            defer { worker.cancel() }
            try await app.test(.router) { client in
                var headers = HTTPFields(Self.json.map { HTTPField(name: $0.key, value: $0.value) })
                headers[Self.token] = token
                let body = #"{"name": "fast", "setup_commands": ["echo hi"], "env": {"GREETING": "hello"}}"#
                let id = try await client.execute(
                    uri: "/api/v1/devboxes", method: .post, headers: headers, body: ByteBuffer(string: body)
                ) { r in
                    #expect(r.status == .accepted)
                    let o = Self.object(r.body)
                    #expect(o["state"] as? String == "requested")
                    #expect(o["env_keys"] as? [String] == ["GREETING"])
                    return try #require(o["id"] as? String)
                }
                var state = ""
                for _ in 0..<500 {
                    state = try await client.execute(uri: "/api/v1/devboxes/\(id)", method: .get, headers: headers) { r in
                        Self.object(r.body)["state"] as? String ?? ""
                    }
                    if state == "ready" || state == "failed" { break }
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(state == "ready")
                #expect(fast.runtime.calls.contains("setup \(id) echo hi"))
                #expect(fast.runtime.boxes[id]?.env["GREETING"] == "hello")
                try await client.execute(uri: "/api/v1/devboxes", method: .get, headers: headers) { r in
                    let list = try #require(Self.object(r.body)["devboxes"] as? [[String: Any]])
                    #expect(list.map { $0["id"] as? String } == [id])
                }
                try await client.execute(uri: "/api/v1/devboxes/\(id)/operations", method: .get, headers: headers) { r in
                    let ops = try #require(Self.object(r.body)["operations"] as? [[String: Any]])
                    #expect(ops.map { $0["status"] as? String } == ["succeeded", "skipped", "skipped", "succeeded", "succeeded"])
                }
                try await client.execute(uri: "/api/v1/devboxes/\(id)", method: .delete, headers: headers) { r in
                    #expect(r.status == .accepted || r.status == .ok || r.status == .noContent)
                }
                #expect(fast.runtime.boxes[id] == nil)
            }
        }
    }

    @Test("bad input is 4xx JSON naming the field, never 500; a stranger's devbox is 404")
    func badInput() async throws {
        try await withFastSystem { fast in
            let token = try await fast.providerToken(provider: "one")
            let other = try await fast.providerToken(provider: "two")
            let app = Application(router: buildRouter(system: fast.system))
            try await app.test(.router) { client in
                var headers = HTTPFields(Self.json.map { HTTPField(name: $0.key, value: $0.value) })
                headers[Self.token] = token
                try await client.execute(
                    uri: "/api/v1/devboxes", method: .post, headers: headers, body: ByteBuffer(string: #"{"name": "x", "plan": "galactic"}"#)
                ) { r in
                    #expect(r.status == .unprocessableContent)
                    #expect((Self.object(r.body)["error"] as? [String: Any])?["field"] as? String == "plan")
                }
                try await client.execute(
                    uri: "/api/v1/devboxes", method: .post, headers: headers, body: ByteBuffer(string: "{not json")
                ) { r in
                    #expect(r.status == .badRequest)
                }
                let id = try await client.execute(
                    uri: "/api/v1/devboxes", method: .post, headers: headers, body: ByteBuffer(string: #"{"name": "mine"}"#)
                ) { r in try #require(Self.object(r.body)["id"] as? String) }
                headers[Self.token] = other
                try await client.execute(uri: "/api/v1/devboxes/\(id)", method: .get, headers: headers) { r in
                    #expect(r.status == .notFound)
                }
            }
        }
    }

    @Test("/mcp: initialize, tools/list and a tool call through the REST faces' auth")
    func mcp() async throws {
        try await withFastSystem { fast in
            let token = try await fast.providerToken()
            let app = Application(router: buildRouter(system: fast.system))
            try await app.test(.router) { client in
                var headers = HTTPFields(Self.json.map { HTTPField(name: $0.key, value: $0.value) })
                headers[.accept] = "application/json, text/event-stream"
                try await client.execute(
                    uri: "/mcp", method: .post, headers: headers,
                    body: ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
                ) { r in
                    #expect(r.status == .unauthorized)
                }
                headers[Self.token] = token
                let initialize = #"""
                    {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}
                    """#
                let session = try await client.execute(
                    uri: "/mcp", method: .post, headers: headers, body: ByteBuffer(string: initialize)
                ) { r in
                    #expect(r.status == .ok)
                    let result = try #require(Self.rpc(r.body)["result"] as? [String: Any])
                    #expect(result["protocolVersion"] as? String == "2025-11-25")
                    return try #require(r.headers[HTTPField.Name("Mcp-Session-Id")!])
                }
                headers[HTTPField.Name("Mcp-Session-Id")!] = session
                headers[HTTPField.Name("MCP-Protocol-Version")!] = "2025-11-25"
                try await client.execute(
                    uri: "/mcp", method: .post, headers: headers,
                    body: ByteBuffer(string: #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
                ) { r in
                    #expect(r.status == .ok)
                    let tools = try #require((Self.rpc(r.body)["result"] as? [String: Any])?["tools"] as? [[String: Any]])
                    #expect(tools.contains { $0["name"] as? String == "create_devbox" })
                }
                try await client.execute(
                    uri: "/mcp", method: .post, headers: headers,
                    body: ByteBuffer(string: #"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_devboxes","arguments":{}}}"#)
                ) { r in
                    #expect(r.status == .ok)
                    let result = try #require(Self.rpc(r.body)["result"] as? [String: Any], "\(String(buffer: r.body))")
                    #expect(result["isError"] as? Bool != true)
                }
            }
        }
    }
}
