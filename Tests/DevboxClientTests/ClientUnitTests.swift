import DevboxModel
import Foundation
import DevboxTestSupport
import Testing

@testable import DevboxClient

#if canImport(Glibc)
    import Glibc
#endif

@Suite("SDK without a server")
struct ClientUnitTests {
    static let devboxJSON = """
        {"id":"dbx_1","name":"n","plan":"small","state":"requested","repositories":[],"env_keys":[],
        "setup_commands":[],"setup_timeout_seconds":900,"credential_profile":{"inject_claude_token":true,
        "inject_codex_token":false},"created_at":"2025-01-01T00:00:00.000Z","updated_at":"2025-01-01T00:00:00.000Z",
        "ready_at":null,"error":null,"idle_timeout_seconds":null,"ttl_seconds":null,"expires_at":null,
        "last_activity_at":null}
        """

    @Test("create sends the tokens only as headers, with the provider and user tokens")
    func createHeaders() async throws {
        let server = try CannedServer(status: "202 Accepted", headers: ["Content-Type: application/json"], body: Self.devboxJSON)
        let client = DevboxClient(providerToken: "dbx_pt_prov", userToken: "jwt.user.token", baseURL: server.url)
        let d = try await client.devboxes.create(
            CreateDevboxRequest(name: "n", credentialProfile: CredentialProfile(injectClaudeToken: true)),
            tokens: InjectionTokens(claudeToken: "sk-ant-secret"))
        #expect(d.id == "dbx_1")
        let req = await server.request()
        let lines = req.components(separatedBy: "\r\n")
        #expect(lines.first == "POST /api/v1/devboxes HTTP/1.1")
        let headers = Set(lines.map { $0.lowercased() })
        #expect(headers.contains("x-provider-token: dbx_pt_prov"))
        #expect(headers.contains("authorization: bearer jwt.user.token"))
        #expect(headers.contains("x-claude-token: sk-ant-secret"))
        #expect(!headers.contains { $0.hasPrefix("x-codex-token") })
        let body = try #require(req.components(separatedBy: "\r\n\r\n").last)
        #expect(!body.contains("sk-ant-secret"))
        #expect(body.contains(#""inject_claude_token":true"#))
    }

    @Test("an API error body becomes .api with status, code, message and field")
    func apiError() async throws {
        let server = try CannedServer(
            status: "422 Unprocessable Entity",
            body: #"{"error":{"code":"validation_failed","message":"name must be 1 to 64 characters","field":"name"}}"#)
        let client = DevboxClient(providerToken: "t0ken-value", baseURL: server.url)
        let error = await #expect(throws: DevboxClientError.self) { try await client.devboxes.list() }
        #expect(error == .api(DevboxAPIError(status: 422, code: "validation_failed", message: "name must be 1 to 64 characters", field: "name")))
    }

    @Test("a non-API error body (a proxy's HTML) is .badResponse, with echoed tokens redacted")
    func badResponse() async throws {
        let server = try CannedServer(status: "502 Bad Gateway", body: "<html>upstream said t0ken-value</html>")
        let client = DevboxClient(providerToken: "t0ken-value", baseURL: server.url)
        let error = await #expect(throws: DevboxClientError.self) { try await client.users.getProfile() }
        guard case .badResponse(let url, let status, let reason) = error else {
            Issue.record("expected .badResponse, got \(String(describing: error))")
            return
        }
        #expect(status == 502)
        #expect(url.hasSuffix("/api/v1/users/me"))
        #expect(reason.contains("[redacted]") && !reason.contains("t0ken-value"))
    }

    @Test("a 2xx body that does not decode is .badResponse naming the type")
    func undecodable() async throws {
        let server = try CannedServer(status: "200 OK", body: #"{"devboxes": [{"id": 1}]}"#)
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        let error = await #expect(throws: DevboxClientError.self) { try await client.devboxes.list() }
        guard case .badResponse(_, 200, let reason) = error else {
            Issue.record("expected .badResponse, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("DevboxList"))
    }

    @Test("getConnection maps null to nil")
    func nullConnection() async throws {
        let server = try CannedServer(status: "200 OK", body: "null")
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        #expect(try await client.github.getConnection() == nil)
        #expect(await server.request().hasPrefix("GET /api/v1/integrations/github/connection HTTP/1.1"))
    }

    @Test("org grants are PUT as {orgs: [...]}")
    func orgGrants() async throws {
        let server = try CannedServer(status: "204 No Content", body: "")
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        try await client.github.updateOrgGrants(["my-org", "other-org"])
        let req = await server.request()
        #expect(req.hasPrefix("PUT /api/v1/integrations/github/org-grants HTTP/1.1"))
        #expect(req.hasSuffix(#"{"orgs":["my-org","other-org"]}"#))
    }

    @Test("a base URL with a path prefix is kept")
    func pathPrefix() async throws {
        let server = try CannedServer(status: "200 OK", body: #"{"devboxes":[]}"#)
        let client = DevboxClient(providerToken: "t", baseURL: server.url.appendingPathComponent("devbox/"))
        #expect(try await client.devboxes.list().isEmpty)
        #expect(await server.request().hasPrefix("GET /devbox/api/v1/devboxes HTTP/1.1"))
    }

    @Test("a closed port is .unreachable with the URL and without the token")
    func unreachable() async throws {
        let port = try freeLoopbackPort()
        let client = DevboxClient(providerToken: "dbx_pt_do-not-show", baseURL: URL(string: "http://127.0.0.1:\(port)")!)
        let error = await #expect(throws: DevboxClientError.self) { try await client.devboxes.list() }
        guard case .unreachable(let url, _) = error else {
            Issue.record("expected .unreachable, got \(String(describing: error))")
            return
        }
        #expect(url == "http://127.0.0.1:\(port)")
        #expect(!(error?.description.contains("do-not-show") ?? true))
    }

    @Test("the client never shows its tokens")
    func noTokenInDescription() {
        let client = DevboxClient(providerToken: "dbx_pt_hidden", userToken: "user-hidden")
        var dumped = ""
        dump(client, to: &dumped)
        for text in [client.description, String(reflecting: client), dumped] {
            #expect(!text.contains("hidden"), "\(text)")
        }
    }

    @Test("ids are one encoded path segment; empty ids are refused")
    func segments() throws {
        #expect(try HTTPCore.segment("dbx_abc") == "dbx_abc")
        #expect(try HTTPCore.segment("../users/me") == "..%2Fusers%2Fme")
        #expect(try HTTPCore.segment("..") == "%2E%2E")
        #expect(try HTTPCore.segment("a?b#c") == "a%3Fb%23c")
        #expect(throws: DevboxClientError.self) { try HTTPCore.segment("") }
    }

    @Test("lists decode bare or wrapped")
    func listed() throws {
        let d = DevboxJSON.decoder()
        let bare = try d.decode(Listed<GitHubOrg>.self, from: Data(#"[{"id":1,"login":"a","granted":true}]"#.utf8))
        #expect(bare.items == [GitHubOrg(id: 1, login: "a", granted: true)])
        let wrapped = try d.decode(
            Listed<GitHubRepo>.self, from: Data(#"{"repos":[{"id":2,"full_name":"o/r","private":true}]}"#.utf8))
        #expect(wrapped.items.map(\.fullName) == ["o/r"])
        #expect(wrapped.items.first?.isPrivate == true)
    }

    @Test("a provisioning failure names the failed operation and keeps the tail")
    func failureFromOperations() throws {
        var devbox = try DevboxJSON.decoder().decode(Devbox.self, from: Data(Self.devboxJSON.utf8))
        devbox.state = .failed
        devbox.error = DevboxError(operation: "run_setup_commands", message: "exited with code 3")
        let now = Date()
        let output = (1...50).map { "line \($0)" }.joined(separator: "\n") + "\n"
        let ops = OperationKind.allCases.map { kind in
            DevboxOperation(
                id: "op_\(kind.rawValue)", devboxId: devbox.id, name: kind,
                status: kind == .runSetupCommands ? .failed : kind == .publishAccess ? .skipped : .succeeded,
                startedAt: now, finishedAt: now, output: kind == .runSetupCommands ? output : "",
                outputTruncated: false, error: kind == .runSetupCommands ? "setup command 1 exited with code 3" : nil)
        }
        let f = ProvisioningFailure(devbox: devbox, operations: ops)
        #expect(f.operation == "run_setup_commands")
        #expect(f.error == "setup command 1 exited with code 3")
        #expect(f.tail(maxLines: 3) == "line 48\nline 49\nline 50")
        #expect(f.tail(maxLines: 100, maxBytes: 7) == "line 50")
        #expect(f.summary == "devbox dbx_1 failed in run_setup_commands: setup command 1 exited with code 3")
        #expect(f.description.contains("line 50") && !f.description.contains("line 30\n"))

        // Destroyed with no failed operation: the state alone.
        devbox.state = .destroyed
        devbox.error = nil
        let g = ProvisioningFailure(devbox: devbox, operations: [])
        #expect(g.operation == nil && g.description == "devbox dbx_1 was destroyed")
    }
}
