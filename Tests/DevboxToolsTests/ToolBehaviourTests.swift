import DevboxModel
import Foundation
import Testing
import Transport

@testable import DevboxTools

@Suite("Tool behaviour against a fake backend")
struct ToolBehaviourTests {
    /// Every successful result: structuredContent fits the outputSchema (where the tool has one) and the text
    /// block is the same JSON.
    func expectConforming(_ r: MCPToolResult, _ tool: String, _ h: Harness, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(!r.isError, "\(tool) failed: \(r.text)", sourceLocation: sourceLocation)
        let structured = try #require(r.structuredContent, sourceLocation: sourceLocation)
        if let schema = h.tool(tool)?.outputSchema, let v = SchemaValidator.check(structured, against: schema) {
            Issue.record("\(tool): structuredContent does not fit outputSchema: \(v)", sourceLocation: sourceLocation)
        }
        guard case .text(let text)? = r.content.first else {
            Issue.record("\(tool): no text block", sourceLocation: sourceLocation)
            return
        }
        #expect(try JSONValue(parsing: text) == structured, sourceLocation: sourceLocation)
    }

    @Test("every tool answers with conforming structured content")
    func allToolsConform() async throws {
        let h = Harness()
        let calls: [(String, JSONValue)] = [
            ("create_devbox", ["name": "x", "setup_commands": ["echo hi"]]),
            ("create_devbox", ["name": "x", "wait": true, "wait_timeout_seconds": 5]),
            ("wait_for_ready", ["devbox_id": "dbx_fake"]),
            ("get_devbox", ["devbox_id": "dbx_fake"]),
            ("list_devboxes", [:]),
            ("list_operations", ["devbox_id": "dbx_fake", "tail_bytes": 5]),
            ("delete_devbox", ["devbox_id": "dbx_fake"]),
            ("set_ssh_key", ["public_key": "ssh-ed25519 AAAA test"]),
            ("create_session", ["devbox_id": "dbx_fake"]),
            ("list_sessions", ["devbox_id": "dbx_fake"]),
            ("revoke_session", ["devbox_id": "dbx_fake", "session_id": "ses_1"]),
            ("list_repositories", ["devbox_id": "dbx_fake"]),
            ("list_github_repos", [:]),
            ("run_command", ["devbox_id": "dbx_fake", "command": "make test", "env": ["CI": "1"], "timeout_seconds": 30]),
            ("run_command", ["devbox_id": "dbx_fake", "command": ["python3", "-V"], "stdin": "x"]),
            ("read_file", ["devbox_id": "dbx_fake", "path": "/workspace/a.txt"]),
            ("read_file", ["devbox_id": "dbx_fake", "path": "/workspace/x.bin"]),
            ("write_file", ["devbox_id": "dbx_fake", "path": "/workspace/a.txt", "content": "hi", "mode": "755"]),
            ("write_file", ["devbox_id": "dbx_fake", "path": "/workspace/x.bin", "content": "AAE=", "encoding": "base64"]),
            ("list_files", ["devbox_id": "dbx_fake"]),
            ("stop_devbox", ["devbox_id": "dbx_fake"]),
            ("start_devbox", ["devbox_id": "dbx_fake"]),
            ("set_network", ["devbox_id": "dbx_fake", "egress": "deny_all", "allow": ["api.example.com"]]),
            ("port_url", ["devbox_id": "dbx_fake", "port": 8000]),
            ("get_devbox_stats", ["devbox_id": "dbx_fake"]),
            ("snapshot_devbox", ["devbox_id": "dbx_fake", "name": "deps"]),
            ("fork_devbox", ["devbox_id": "dbx_fake", "count": 2, "name": "try", "copy_env": true]),
        ]
        for (name, args) in calls {
            try expectConforming(try await h.call(name, args), name, h)
        }
        #expect(Set(calls.map(\.0)) == Set(DevboxToolRegistry.all.map(\.name)))
    }

    @Test("file tools: text or base64 as fits, the wrong kind of path is a tool error with the right next tool")
    func fileTools() async throws {
        let h = Harness()
        let text = try await h.call("read_file", ["devbox_id": "dbx_fake", "path": "/workspace/a.txt"])
        #expect(text.structuredContent?["content"] == "hello\n" && text.structuredContent?["encoding"] == "utf-8")
        let bin = try await h.call("read_file", ["devbox_id": "dbx_fake", "path": "/workspace/x.bin"])
        #expect(bin.structuredContent?["content"] == "/wD+" && bin.structuredContent?["encoding"] == "base64")
        let dir = try await h.call("read_file", ["devbox_id": "dbx_fake", "path": "/workspace"])
        #expect(dir.isError && dir.text.contains("list_files"))
        let notDir = try await h.call("list_files", ["devbox_id": "dbx_fake", "path": "/workspace/a.txt"])
        #expect(notDir.isError && notDir.text.contains("read_file"))
        _ = try await h.call("write_file", ["devbox_id": "dbx_fake", "path": "/w/b", "content": "AAE=", "encoding": "base64"])
        #expect(h.backend.written.last?.1 == [0, 1])
        let bad = try await h.call("write_file", ["devbox_id": "dbx_fake", "path": "/w/b", "content": "%%", "encoding": "base64"])
        #expect(bad.isError && bad.text.contains("base64"))
        let mode = try await h.call("write_file", ["devbox_id": "dbx_fake", "path": "/w/b", "content": "", "mode": "9"])
        #expect(mode.isError && mode.text.contains("mode"))
    }

    @Test("run_command: a non-zero exit is a result, not a tool error; a stopped devbox points to start_devbox")
    func runCommand() async throws {
        let h = Harness()
        let r = try await h.call("run_command", ["devbox_id": "dbx_fake", "command": "false"])
        #expect(!r.isError && r.structuredContent?["exit_code"] == 2 && r.structuredContent?["stderr"] == "second\n")
        h.backend.failNext(DevboxAPIError(status: 409, code: "conflict", message: "devbox dbx_fake is stopped; start it"))
        let stopped = try await h.call("run_command", ["devbox_id": "dbx_fake", "command": "true"])
        #expect(stopped.isError && stopped.text.contains("start_devbox"))
        let empty = try await h.call("run_command", ["devbox_id": "dbx_fake", "command": []])
        #expect(empty.isError && empty.text.contains("command"))
    }

    @Test("create_devbox maps every REST field and the flags")
    func createMapsFields() async throws {
        let h = Harness(credentials: InjectionTokens(claudeToken: "sk-ant-secret-123456"))
        let r = try await h.call(
            "create_devbox",
            [
                "name": "n", "plan": "small", "repository": "octo/legacy", "branch": "dev",
                "repositories": [["full_name": "octo/a", "repo_id": 7, "ref": "v1", "target_path": "/workspace/a"]],
                "env": ["FOO": "bar"], "setup_commands": ["make"], "setup_timeout_seconds": 60,
                "idle_timeout_seconds": 600, "ttl_seconds": 3600, "inject_claude_token": true,
            ])
        #expect(!r.isError, "\(r.text)")
        let (req, tokens) = try #require(h.backend.created.first)
        #expect(req.name == "n" && req.plan == "small" && req.repository == "octo/legacy" && req.branch == "dev")
        #expect(req.repositories == [DevboxRepositoryRequest(repoId: 7, fullName: "octo/a", ref: "v1", targetPath: "/workspace/a")])
        #expect(req.env == ["FOO": "bar"] && req.setupCommands == ["make"] && req.setupTimeoutSeconds == 60)
        #expect(req.idleTimeoutSeconds == 600 && req.ttlSeconds == 3600)
        #expect(req.credentialProfile == CredentialProfile(injectClaudeToken: true, injectCodexToken: false))
        #expect(tokens.claudeToken == "sk-ant-secret-123456" && tokens.codexToken == nil)
        #expect(r.structuredContent?["next_step"]?.stringValue?.contains("wait_for_ready") == true)
    }

    @Test("tokens are sent only with their flag, and a flag without a server token is a tool error")
    func tokensOnlyWithFlags() async throws {
        let h = Harness(credentials: InjectionTokens(claudeToken: "sk-ant-secret-123456", codexToken: "sk-codex-secret-1234"))
        _ = try await h.call("create_devbox", ["name": "n"])
        #expect(h.backend.created.first?.1 == InjectionTokens())

        let none = Harness()
        let r = try await none.call("create_devbox", ["name": "n", "inject_codex_token": true])
        #expect(r.isError)
        #expect(r.text.contains("OPENAI_API_KEY") && r.text.contains("X-Codex-Token"))
        #expect(none.backend.created.isEmpty)
    }

    @Test("no argument can carry a token")
    func noTokenArguments() throws {
        let props = try #require(Harness().tool("create_devbox")?.inputSchema["properties"]?.objectValue)
        for key in props.keys { #expect(!key.contains("token") || key.hasPrefix("inject_"), "\(key)") }
    }

    @Test("server-side tokens are scrubbed from results")
    func redaction() async throws {
        let secret = "sk-ant-secret-123456"
        let backend = FakeBackend(script: [
            FakeBackend.Step(state: .ready, operations: [(.runSetupCommands, .succeeded, "key=\(secret)\n")])
        ])
        let h = Harness(backend: backend, credentials: InjectionTokens(claudeToken: secret))
        let r = try await h.call("list_operations", ["devbox_id": "dbx_fake"])
        #expect(!r.text.contains(secret) && !(r.structuredContent?.jsonString.contains(secret) ?? true))
        #expect(r.text.contains("key=[redacted]"))
    }

    struct BadCase: Sendable, CustomTestStringConvertible {
        var tool: String
        var args: JSONValue
        var expected: String
        init(_ tool: String, _ args: JSONValue, _ expected: String) {
            self.tool = tool
            self.args = args
            self.expected = expected
        }
        var testDescription: String { "\(tool) \(args)" }
    }

    static let badCases: [BadCase] = [
        BadCase("get_devbox", [:], "'devbox_id' is required"),
        BadCase("get_devbox", ["devbox_id": 5], "'devbox_id' must be a string"),
        BadCase("get_devbox", ["devbox_id": "dbx_1", "verbose": true], "'verbose' is not an accepted argument"),
        BadCase("list_github_repos", ["x": 1], "'x' is not an accepted argument (this takes none)"),
        BadCase("list_devboxes", ["state": "gone"], "'state' must be one of"),
        BadCase("list_devboxes", ["limit": 0], "'limit' must be at least 1"),
        BadCase("list_devboxes", ["cursor": "not a cursor"], "cursor is not one list_devboxes returned"),
        BadCase("wait_for_ready", ["devbox_id": "dbx_1", "timeout_seconds": 0], "'timeout_seconds' must be at least 1"),
        BadCase("wait_for_ready", ["devbox_id": "dbx_1", "timeout_seconds": 1.5], "'timeout_seconds' must be an integer"),
        BadCase("list_operations", ["devbox_id": "dbx_1", "tail_bytes": 70000], "'tail_bytes' must be at most 65536"),
        BadCase("create_devbox", ["name": "n", "repositories": [["ref": "main"]]], "'repositories[0].full_name' is required"),
        BadCase("create_devbox", ["name": "n", "repositories": [["full_name": "a/b", "url": "x"]]], "'repositories[0].url' is not an accepted"),
        BadCase("create_devbox", ["name": "n", "env": ["A": 1]], "'env.A' must be a string"),
        BadCase("create_devbox", ["name": "n", "claude_token": "sk"], "'claude_token' is not an accepted argument"),
        BadCase("create_devbox", ["name": "n", "wait_timeout_seconds": 5], "only applies with wait: true"),
        BadCase("create_devbox", ["name": ""], "'name' must not be empty"),
    ]

    @Test("arguments that do not fit the schema are tool errors naming the field", arguments: badCases)
    func badArguments(_ c: BadCase) async throws {
        let r = try await Harness().call(c.tool, c.args)
        #expect(r.isError)
        #expect(r.text.contains(c.expected), "\(r.text)")
        #expect(r.text.contains("call \(c.tool) again"))
    }

    @Test("refusals of the service become tool errors with a next step")
    func serviceErrors() async throws {
        let h = Harness()
        var r = try await h.call("get_devbox", ["devbox_id": "nope"])
        #expect(r.isError && r.text.contains("no devbox with id nope") && r.text.contains("list_devboxes"))

        h.backend.failNext(DevboxAPIError(status: 409, code: "conflict", message: "no SSH key is set for this user"))
        r = try await h.call("create_session", ["devbox_id": "dbx_fake"])
        #expect(r.isError && r.text.contains("set_ssh_key"))

        h.backend.failNext(DevboxAPIError(status: 422, code: "validation_failed", message: "unknown plan 'huge'", field: "plan"))
        r = try await h.call("create_devbox", ["name": "n", "plan": "huge"])
        #expect(r.isError && r.text.contains("unknown plan 'huge'") && r.text.contains("create_devbox again"))

        h.backend.failNext(DevboxAPIError(status: 409, code: "github_not_connected", message: "GitHub is not connected"))
        r = try await h.call("list_github_repos")
        #expect(r.isError && r.text.contains("dashboard"))
    }

    @Test("an unreachable backend is a tool error, not a protocol fault")
    func unreachable() async throws {
        let p = DevboxToolProvider(environment: { _ in throw DevboxBackendUnavailable("devbox serve did not start; see serve.log") })
        let r = try await p.call("list_devboxes", arguments: [:], context: .testing())
        #expect(r.isError && r.text == "devbox serve did not start; see serve.log")
    }

    @Test("an unknown tool is a protocol error")
    func unknownTool() async throws {
        await #expect(throws: MCPError.self) { try await Harness().call("make_coffee") }
    }

    @Test("wait_for_ready reports a failed step with its error and output tail")
    func waitFailure() async throws {
        let backend = FakeBackend(script: [
            .init(state: .requested, operations: OperationKind.allCases.map { ($0, .pending, "") }),
            .init(
                state: .failed,
                operations: [
                    (.provision, .succeeded, ""), (.injectCredentials, .skipped, ""), (.cloneRepositories, .skipped, ""),
                    (.runSetupCommands, .failed, "compiling…\nerror: missing semicolon\n"), (.publishAccess, .skipped, ""),
                ], error: DevboxError(operation: "run_setup_commands", message: "command 1 exited with status 3")),
        ])
        let h = Harness(backend: backend)
        let r = try await h.call("wait_for_ready", ["devbox_id": "dbx_fake"])
        #expect(r.isError)
        #expect(r.text.contains("run_setup_commands failed") && r.text.contains("missing semicolon"))
        #expect(r.text.contains("list_operations"))
        let failed = try #require(r.structuredContent?["failed_operation"])
        #expect(failed["name"] == "run_setup_commands" && failed["error"] == "exit status 3")
        let schema = try #require(h.tool("wait_for_ready")?.outputSchema)
        #expect(SchemaValidator.check(r.structuredContent!, against: schema) == nil)
    }

    @Test("wait_for_ready gives up after timeout_seconds with timed_out and a way to continue, not an error")
    func waitTimeout() async throws {
        let backend = FakeBackend(script: [
            .init(state: .provisioning, operations: [(.provision, .running, "")])
        ])
        let h = Harness(backend: backend)
        let r = try await h.call("wait_for_ready", ["devbox_id": "dbx_fake", "timeout_seconds": 1])
        try expectConforming(r, "wait_for_ready", h)
        #expect(r.structuredContent?["timed_out"] == true)
        #expect(r.structuredContent?["next_step"]?.stringValue?.contains("wait_for_ready") == true)
        #expect(r.structuredContent?["devbox"]?["state"] == "provisioning")
    }

    @Test("the service's route hints become tools", arguments: [
        ("no SSH key is set for this user; set one first with PUT /api/v1/users/me/ssh-key (ssh-keygen -t ed25519)",
         "no SSH key is set for this user; call set_ssh_key first (ssh-keygen -t ed25519)"),
        ("devbox dbx_1 is stopped; start it (POST /api/v1/devboxes/dbx_1/start) to run commands",
         "devbox dbx_1 is stopped; call start_devbox to run commands"),
        ("GitHub is not connected for this user; connect it with POST /api/v1/integrations/github/connect",
         "GitHub is not connected for this user"),
        ("a/b belongs to the organisation 'a', which is not granted; grant it with PUT /api/v1/integrations/github/org-grants",
         "a/b belongs to the organisation 'a', which is not granted; the user must grant it to devbox on GitHub"),
        ("something else (PATCH /api/v1/devboxes/x/network) happened", "something else happened"),
    ])
    func routeHints(service: String, agent: String) {
        #expect(ToolErrors.forAgents(service) == agent)
    }

    @Test("wait_for_ready re-reads when the change feed wakes it (polling would take an hour)", .timeLimit(.minutes(1)))
    func waitOnFeed() async throws {
        let feed = FakeFeed(alive: true)
        let backend = FakeBackend(
            script: [
                .init(state: .requested, operations: [(.provision, .pending, "")]),
                .init(state: .provisioning, operations: [(.provision, .running, "")]),
                FakeBackend.readyStep,
            ], pollInterval: .seconds(3600), feed: feed)
        let r = try await Harness(backend: backend).call("wait_for_ready", ["devbox_id": "dbx_fake", "timeout_seconds": 60])
        #expect(!r.isError && r.structuredContent?["devbox"]?["state"] == "ready")
        #expect(feed.used == FakeFeed.Counts(made: 1, waits: 2, cancelled: 1))
    }

    @Test("wait_for_ready polls once the change feed has ended (shutdown)", .timeLimit(.minutes(1)))
    func waitFeedEnded() async throws {
        let feed = FakeFeed(alive: false)
        let backend = FakeBackend(
            script: [
                .init(state: .requested, operations: [(.provision, .pending, "")]),
                .init(state: .provisioning, operations: [(.provision, .running, "")]),
                FakeBackend.readyStep,
            ], feed: feed)
        let r = try await Harness(backend: backend).call("wait_for_ready", ["devbox_id": "dbx_fake", "timeout_seconds": 60])
        #expect(!r.isError && r.structuredContent?["devbox"]?["state"] == "ready")
        #expect(feed.used == FakeFeed.Counts(made: 1, waits: 1, cancelled: 1))
    }

    @Test("wait_for_ready stops when its task is cancelled")
    func waitCancel() async throws {
        let backend = FakeBackend(script: [.init(state: .provisioning, operations: [(.provision, .running, "")])])
        let h = Harness(backend: backend)
        let task = Task { try await h.call("wait_for_ready", ["devbox_id": "dbx_fake", "timeout_seconds": 60]) }
        try await Task.sleep(for: .milliseconds(50))
        let start = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // The wait would last 60 s; 10 s is generous for a loaded machine yet proves the stop.
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test("progress scores increase with every state and step change")
    func progressScore() {
        func box(_ s: DevboxState) -> Devbox { FakeBackend().box("dbx_1", .init(state: s, operations: [])) }
        func ops(_ statuses: [OperationStatus]) -> [DevboxOperation] {
            statuses.enumerated().map { i, s in
                DevboxOperation(
                    id: "\(i)", devboxId: "dbx_1", name: OperationKind.allCases[i], status: s, startedAt: nil,
                    finishedAt: nil, output: "", outputTruncated: false, error: nil)
            }
        }
        let seq = [
            ReadinessWait.score(box(.requested), ops([.pending, .pending, .pending, .pending, .pending])),
            ReadinessWait.score(box(.provisioning), ops([.pending, .pending, .pending, .pending, .pending])),
            ReadinessWait.score(box(.provisioning), ops([.running, .pending, .pending, .pending, .pending])),
            ReadinessWait.score(box(.provisioning), ops([.succeeded, .running, .pending, .pending, .pending])),
            ReadinessWait.score(box(.provisioning), ops([.succeeded, .skipped, .skipped, .running, .pending])),
            ReadinessWait.score(box(.provisioning), ops([.succeeded, .skipped, .skipped, .succeeded, .running])),
            ReadinessWait.score(box(.ready), ops([.succeeded, .skipped, .skipped, .succeeded, .succeeded])),
        ]
        #expect(zip(seq, seq.dropFirst()).allSatisfy { $0 < $1 }, "\(seq)")
        #expect(seq.last == ReadinessWait.totalScore)
    }

    @Test("output tails cut on a character boundary")
    func tails() {
        #expect(OperationView.tail("abc", bytes: 10) == ("abc", false))
        #expect(OperationView.tail("abcdef", bytes: 3) == ("def", true))
        let t = OperationView.tail("xé€", bytes: 4)  // é = 2 bytes, € = 3 bytes
        #expect(t.text == "€" && t.cut)
        #expect(OperationView.tail("abc", bytes: 0) == ("", true))
    }

    @Test("set_ssh_key refuses a private key without sending it")
    func privateKey() async throws {
        let h = Harness()
        let r = try await h.call("set_ssh_key", ["public_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"])
        #expect(r.isError && r.text.contains("private key"))
        #expect(try await h.backend.profile().sshKey == nil)
    }
}

@Suite("Model JSON")
struct ModelJSONTests {
    @Test("the hand-built devbox JSON equals the API's encoding")
    func devboxJSON() throws {
        var full = FakeBackend().box("dbx_1", .init(state: .failed, operations: [], error: DevboxError(operation: "provision", message: "no")))
        full.repositories.append(
            DevboxRepository(repoId: 42, fullName: "a/b", ref: "v1", targetPath: "/workspace/b", status: "failed", commit: nil, error: "denied"))
        full.idleTimeoutSeconds = 600
        full.ttlSeconds = 3600
        full.expiresAt = Date(timeIntervalSince1970: 1_760_000_123.4567)
        full.lastActivityAt = Date(timeIntervalSince1970: 1_760_000_000.9999)
        full.readyAt = Date(timeIntervalSince1970: 1_760_000_000.0005)
        full.credentialProfile = CredentialProfile(injectClaudeToken: true, injectCodexToken: false)
        let bare = FakeBackend().box("dbx_2", .init(state: .requested, operations: []))
        for d in [full, bare] {
            #expect(ToolJSON.devbox(d) == (try JSONValue(encoding: d, encoder: DevboxJSON.encoder())))
            #expect(ToolJSON.devbox(d) == ToolJSON.devbox(d))  // second time from the date cache
            // the REST API's bytes (GET /api/v1/devboxes/:id and the list)
            #expect(try JSONValue(parsing: DevboxWireJSON.devbox(d)) == (try JSONValue(encoding: d, encoder: DevboxJSON.encoder())))
        }
        let list = try JSONValue(parsing: DevboxWireJSON.devboxList([full, bare]))
        #expect(list == (try JSONValue(encoding: DevboxList(devboxes: [full, bare]), encoder: DevboxJSON.encoder())))
    }
}

@Suite("Network tools against a fake backend")
struct NetworkToolTests {
    @Test("set_network passes the whole policy; port_url is the port's path on the service; create_devbox carries network")
    func networkTools() async throws {
        let h = Harness()
        let r = try await h.call("set_network", ["devbox_id": "dbx_fake", "egress": "deny_all", "allow": ["api.example.com"]])
        #expect(!r.isError, "\(r.text)")
        #expect(h.backend.networkSet.withLock { $0 } == DevboxNetwork(egress: "deny_all", allow: ["api.example.com"], deny: []))
        let u = try await h.call("port_url", ["devbox_id": "dbx_fake", "port": 8000])
        #expect(u.structuredContent == ["url": "http://127.0.0.1:8080/api/v1/devboxes/dbx_fake/ports/8000/"])
        let bad = try await h.call("port_url", ["devbox_id": "dbx_fake", "port": 70000])
        #expect(bad.isError)
    }
}
