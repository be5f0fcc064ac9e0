import DevboxModel
import Foundation
import DevboxTestSupport
import Testing

@testable import DevboxClient

/// Issue 23 in the SDK: the snapshot and fork calls' requests and the model's JSON, against a
/// canned server (the live round trip is in Tests/e2e/test_snapshots_clients.py).
@Suite("SDK snapshots")
struct SnapshotClientTests {
    static let snapshotJSON = """
        {"id":"snap_abc","name":"base","devbox_id":"dbx_1","image":"debian","size_bytes":52428800,
        "created_at":"2026-12-07T17:00:00.000Z"}
        """

    @Test("createSnapshot POSTs {name} to the devbox's snapshots and decodes the 201")
    func create() async throws {
        let server = try CannedServer(status: "201 Created", body: Self.snapshotJSON)
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        let s = try await client.devboxes.createSnapshot("dbx_1", name: "base")
        #expect(s.id == "snap_abc" && s.name == "base" && s.devboxId == "dbx_1")
        #expect(s.image == "debian" && s.sizeBytes == 52_428_800)
        #expect(s.createdAt == DevboxJSON.parseDate("2026-12-07T17:00:00.000Z"))
        let req = await server.request()
        #expect(req.hasPrefix("POST /api/v1/devboxes/dbx_1/snapshots HTTP/1.1"))
        #expect(req.hasSuffix(#"{"name":"base"}"#))
    }

    @Test("a 200 where 201 is the contract is .badResponse")
    func createExpects201() async throws {
        let server = try CannedServer(status: "200 OK", body: Self.snapshotJSON)
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        let error = await #expect(throws: DevboxClientError.self) {
            try await client.devboxes.createSnapshot("dbx_1", name: "base")
        }
        guard case .badResponse(_, 200, _) = error else {
            Issue.record("expected .badResponse, got \(String(describing: error))")
            return
        }
    }

    @Test("fork sends count, name and copy_env in the body and the AI token only as a header")
    func fork() async throws {
        let body = #"{"snapshot":\#(Self.snapshotJSON),"devboxes":[\#(ClientUnitTests.devboxJSON)]}"#
        let server = try CannedServer(status: "201 Created", body: body)
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        let r = try await client.devboxes.fork(
            "dbx_1", count: 3, name: "exp", copyEnv: true, tokens: InjectionTokens(claudeToken: "sk-ant-fork"))
        #expect(r.snapshot.id == "snap_abc")
        #expect(r.devboxes.map(\.id) == ["dbx_1"])
        let req = await server.request()
        #expect(req.hasPrefix("POST /api/v1/devboxes/dbx_1/fork HTTP/1.1"))
        #expect(req.lowercased().contains("\r\nx-claude-token: sk-ant-fork\r\n"))
        let sent = try #require(req.components(separatedBy: "\r\n\r\n").last)
        #expect(!sent.contains("sk-ant-fork"))
        let json = try JSONSerialization.jsonObject(with: Data(sent.utf8)) as? [String: Any]
        #expect(json?["count"] as? Int == 3)
        #expect(json?["name"] as? String == "exp")
        #expect(json?["copy_env"] as? Bool == true)
    }

    @Test("fork leaves name and copy_env out when not given; a count outside 1–32 is refused before sending")
    func forkDefaults() async throws {
        let body = #"{"snapshot":\#(Self.snapshotJSON),"devboxes":[]}"#
        let server = try CannedServer(status: "201 Created", body: body)
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        _ = try await client.devboxes.fork("dbx_1")
        #expect(await server.request().hasSuffix(#"{"count":1}"#))
        for bad in [0, 33] {
            await #expect(throws: DevboxClientError.invalidArgument("count must be from 1 to 32")) {
                try await client.devboxes.fork("dbx_1", count: bad)
            }
        }
    }

    @Test("list, get and delete go to /api/v1/snapshots; a name is one encoded segment")
    func listGetDelete() async throws {
        let list = try CannedServer(status: "200 OK", body: #"{"snapshots":[\#(Self.snapshotJSON)]}"#)
        let all = try await DevboxClient(providerToken: "t", baseURL: list.url).snapshots.list()
        #expect(all.map(\.name) == ["base"])
        #expect(await list.request().hasPrefix("GET /api/v1/snapshots HTTP/1.1"))

        let get = try CannedServer(status: "200 OK", body: Self.snapshotJSON)
        _ = try await DevboxClient(providerToken: "t", baseURL: get.url).snapshots.get("my snap/../x")
        #expect(await get.request().hasPrefix("GET /api/v1/snapshots/my%20snap%2F..%2Fx HTTP/1.1"))

        let del = try CannedServer(status: "204 No Content", body: "")
        try await DevboxClient(providerToken: "t", baseURL: del.url).snapshots.delete("base")
        #expect(await del.request().hasPrefix("DELETE /api/v1/snapshots/base HTTP/1.1"))
    }

    @Test("delete of a snapshot in use surfaces the server's 409")
    func deleteInUse() async throws {
        let server = try CannedServer(
            status: "409 Conflict",
            body: #"{"error":{"code":"conflict","message":"snapshot base is used by 2 devboxes"}}"#)
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        let error = await #expect(throws: DevboxClientError.self) { try await client.snapshots.delete("base") }
        guard case .api(let e) = error else {
            Issue.record("expected .api, got \(String(describing: error))")
            return
        }
        #expect(e.status == 409 && e.message.contains("used by"))
    }

    @Test("create with a snapshot sends \"snapshot\"; without one the key is absent")
    func createWithSnapshot() throws {
        let with = try DevboxJSON.encoder().encode(CreateDevboxRequest(name: "n", snapshot: "base"))
        let object = try JSONSerialization.jsonObject(with: with) as? [String: Any]
        #expect(object?["snapshot"] as? String == "base")
        #expect(object?["image"] == nil)
        let without = String(decoding: try DevboxJSON.encoder().encode(CreateDevboxRequest(name: "n")), as: UTF8.self)
        #expect(!without.contains("snapshot"))
        let decoded = try DevboxJSON.decoder().decode(
            CreateDevboxRequest.self, from: Data(#"{"name":"n","snapshot":"snap_abc"}"#.utf8))
        #expect(decoded.snapshot == "snap_abc")
    }

    @Test("Snapshot encodes every key (image null when unknown) and round-trips")
    func modelShape() throws {
        let s = Snapshot(
            id: "snap_1", name: "a", devboxId: "dbx_1", image: nil, sizeBytes: 5_000_000_000,
            createdAt: Date(timeIntervalSince1970: 1_700_000_000))
        let data = try DevboxJSON.encoder().encode(s)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["id", "name", "devbox_id", "image", "size_bytes", "created_at"])
        #expect(object["image"] is NSNull)
        #expect(try DevboxJSON.decoder().decode(Snapshot.self, from: data) == s)
    }

    @Test("ForkDevboxRequest: count defaults to 1, a fractional or string count is refused")
    func forkRequestDecoding() throws {
        let d = DevboxJSON.decoder()
        #expect(try d.decode(ForkDevboxRequest.self, from: Data("{}".utf8)) == ForkDevboxRequest(count: 1))
        #expect(
            try d.decode(ForkDevboxRequest.self, from: Data(#"{"count":4,"copy_env":true,"name":"x"}"#.utf8))
                == ForkDevboxRequest(count: 4, name: "x", copyEnv: true))
        #expect(throws: (any Error).self) { try d.decode(ForkDevboxRequest.self, from: Data(#"{"count":1.5}"#.utf8)) }
        #expect(throws: (any Error).self) { try d.decode(ForkDevboxRequest.self, from: Data(#"{"count":"3"}"#.utf8)) }
    }
}
