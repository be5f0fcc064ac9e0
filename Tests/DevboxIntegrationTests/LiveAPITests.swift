import DevboxClient
import DevboxModel
import DevboxTestSupport
import Foundation
import Testing

/// The SDK against a real `devbox serve` (crun sandboxes, the embedded SSH gateway).
@Suite("SDK against a live server", .serialized)
struct LiveAPITests {
    @Test("create → waitForReady → operations → session → ssh → revoke → delete")
    func fullLifecycle() async throws {
        try await withLiveServer { server in
            let client = server.client()
            let created = try await client.devboxes.create(
                CreateDevboxRequest(
                    name: "sdk-e2e", env: ["GREETING": "hello-from-env"],
                    setupCommands: ["echo setup-says-$GREETING", "echo second > /workspace/marker"]))
            #expect(created.state == .requested)
            #expect(created.envKeys == ["GREETING"])

            let listed = try await client.devboxes.list()
            #expect(listed.contains { $0.id == created.id })

            // The SDK waits on the server: no polling at its (here one-minute) interval.
            let ready = try await client.devboxes.waitForReady(created.id, intervalMs: 60_000, timeoutMs: 120_000)
            #expect(ready.state == .ready)
            #expect(ready.id == created.id)
            #expect(ready.readyAt != nil)
            let log = server.log()
            // Request lines: `… path=<path> request_id=<id> status=<code> …`.
            let lines = log.split(separator: "\n")
            #expect(lines.contains { $0.contains("path=/api/v1/devboxes/\(created.id)/wait ") && $0.contains("status=200") })
            #expect(!lines.contains { $0.contains("path=/api/v1/devboxes/\(created.id) ") }, "waitForReady polled GET")

            let ops = try await client.devboxes.listOperations(created.id)
            #expect(ops.map(\.name) == OperationKind.allCases)
            let setup = try #require(ops.first { $0.name == .runSetupCommands })
            #expect(setup.status == .succeeded)
            #expect(setup.output.contains("setup-says-hello-from-env"), "setup output: \(setup.output)")
            #expect(ops.first { $0.name == .cloneRepositories }?.status == .skipped)

            // SSH key and a session.
            let keyDir = server.dir.appendingPathComponent("key")
            try FileManager.default.createDirectory(at: keyDir, withIntermediateDirectories: true)
            let keyPath = keyDir.appendingPathComponent("id_ed25519").path
            try LiveServer.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "sdk@test", "-f", keyPath])
            let pub = try String(contentsOfFile: keyPath + ".pub", encoding: .utf8)
            try await client.users.setSshKey(pub.trimmingCharacters(in: .whitespacesAndNewlines))
            let profile = try await client.users.getProfile()
            #expect(profile.sshKey?.type == "ssh-ed25519")

            let session = try await client.devboxes.createSession(created.id)
            #expect(session.ssh.port == server.sshPort)
            #expect(session.ssh.username == session.sessionId)
            #expect(session.command.contains("-p \(server.sshPort)"))
            let sessions = try await client.devboxes.listSessions(created.id)
            #expect(sessions.map(\.sessionId).contains(session.sessionId))

            func ssh(_ command: String) throws -> (status: Int32, stdout: String, stderr: String) {
                try LiveServer.runStatus(
                    "/usr/bin/ssh",
                    [
                        "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                        "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-i", keyPath, "-p",
                        String(session.ssh.port), "\(session.ssh.username)@\(session.ssh.host)", command,
                    ])
            }
            // TODO(lead): drop this guard once the SSH gateway is on main.
            let gateway = server.sshGatewayAnswers()
            if gateway {
                let r = try ssh("echo hi; cat /workspace/marker; echo $GREETING")
                #expect(r.status == 0, "ssh failed: \(r.stderr)")
                #expect(r.stdout == "hi\nsecond\nhello-from-env\n", "ssh stdout: \(r.stdout) stderr: \(r.stderr)")
            }

            try await client.devboxes.revokeSession(created.id, session.sessionId)
            #expect(try await client.devboxes.listSessions(created.id).isEmpty)
            if gateway {
                let r = try ssh("echo hi")
                #expect(r.status != 0, "a revoked session still logs in")
            }
            // Revoking twice is a typed 404.
            let again = await #expect(throws: DevboxClientError.self) {
                try await client.devboxes.revokeSession(created.id, session.sessionId)
            }
            #expect(again?.status == 404)

            try await client.devboxes.delete(created.id)
            let gone = try await client.devboxes.get(created.id)
            #expect(gone.state == .destroyed)
            let destroyed = await #expect(throws: DevboxClientError.self) {
                try await client.devboxes.waitForReady(created.id, intervalMs: 100, timeoutMs: 5000)
            }
            guard case .provisioningFailed(let f) = destroyed else {
                Issue.record("expected provisioningFailed, got \(String(describing: destroyed))")
                return
            }
            #expect(f.state == .destroyed)
        }
    }

    @Test("waitForReady on a failing setup throws with the operation, its error and the output tail")
    func failingSetup() async throws {
        try await withLiveServer { server in
            let client = server.client()
            let d = try await client.devboxes.create(
                CreateDevboxRequest(name: "will-fail", setupCommands: ["echo before-the-failure; exit 3"]))
            do {
                let r = try await client.devboxes.waitForReady(d.id, intervalMs: 200, timeoutMs: 120_000)
                let ops = try await client.devboxes.listOperations(d.id)
                throw TestFailure("waitForReady returned a \(r.state) devbox for a failing setup; operations: \(ops)")
            } catch DevboxClientError.provisioningFailed(let f) {
                #expect(f.devboxId == d.id)
                #expect(f.state == .failed)
                #expect(f.operation == "run_setup_commands")
                #expect(f.error?.contains("3") == true, "error: \(f.error ?? "nil")")
                #expect(f.tail().contains("before-the-failure"), "tail: \(f.tail())")
                let text = DevboxClientError.provisioningFailed(f).description
                #expect(text.contains("run_setup_commands") && text.contains("before-the-failure"))
            }
        }
    }

    @Test("waitForReady times out naming the last state")
    func waitTimeout() async throws {
        try await withLiveServer { server in
            let client = server.client()
            let d = try await client.devboxes.create(CreateDevboxRequest(name: "slow", setupCommands: ["sleep 60"]))
            let start = ContinuousClock.now
            do {
                _ = try await client.devboxes.waitForReady(d.id, intervalMs: 100, timeoutMs: 700)
                throw TestFailure("waitForReady returned for a devbox that cannot be ready yet")
            } catch DevboxClientError.timedOut(let id, let state, let waited) {
                #expect(id == d.id)
                #expect(state == .requested || state == .provisioning)
                #expect(waited >= 700)
                let text = DevboxClientError.timedOut(devboxId: id, lastState: state, waitedMs: waited).description
                #expect(text.contains("last state: \(state.rawValue)"))
            }
            #expect(ContinuousClock.now - start < .seconds(10))
            try await client.devboxes.delete(d.id)
        }
    }

    @Test("typed errors: 401, 422 with field, 404, unreachable; no token in any message")
    func typedErrors() async throws {
        try await withLiveServer { server in
            let bad = server.client(token: "dbx_pt_not-a-real-token-0123456789")
            do {
                _ = try await bad.devboxes.list()
                throw TestFailure("a bad token was accepted")
            } catch let e as DevboxClientError {
                let api = try #require(e.apiError)
                #expect(api.status == 401)
                #expect(api.code == "unauthorized")
                #expect(!"\(e)".contains("not-a-real-token"))
            }

            let client = server.client()
            do {
                _ = try await client.devboxes.create(CreateDevboxRequest(name: "x", setupTimeoutSeconds: 5))
                throw TestFailure("setup_timeout_seconds 5 was accepted")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 422)
                #expect(api.code == "validation_failed")
                #expect(api.field == "setup_timeout_seconds")
                #expect(api.message.contains("30"))
            }
            do {
                _ = try await client.devboxes.create(CreateDevboxRequest(name: "x", env: ["lower": "v"]))
                throw TestFailure("a lower-case env key was accepted")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 422)
                #expect(api.field == "env.lower")
            }
            do {
                _ = try await client.devboxes.get("dbx_doesnotexist")
                throw TestFailure("an unknown devbox was found")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 404)
            }
            do {
                try await client.users.setSshKey("ssh-ed25519 garbage")
                throw TestFailure("a garbage key was accepted")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 422 && api.field == "public_key")
            }
            // An id cannot walk to another route.
            do {
                _ = try await client.devboxes.get("../users/me")
                throw TestFailure("'../users/me' was resolved as a path")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 404)
            }
            // Session on a box without an SSH key / not ready: 409 with the server's message.
            let d = try await client.devboxes.create(CreateDevboxRequest(name: "nokey", setupCommands: ["sleep 60"]))
            do {
                _ = try await client.devboxes.createSession(d.id)
                throw TestFailure("a session was created for a devbox that is not ready")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 409)
            }
            try await client.devboxes.delete(d.id)

            let port = try freeLoopbackPort()
            let token = "dbx_pt_secret-value-that-must-not-leak"
            let nowhere = DevboxClient(providerToken: token, baseURL: URL(string: "http://127.0.0.1:\(port)")!)
            do {
                _ = try await nowhere.devboxes.list()
                throw TestFailure("a closed port answered")
            } catch let e as DevboxClientError {
                guard case .unreachable(let url, _) = e else {
                    Issue.record("expected .unreachable, got \(e)")
                    return
                }
                #expect(url.contains("127.0.0.1:\(port)"))
                #expect(!e.description.contains("secret-value"))
            }
        }
    }

    @Test("egress policy: create with one, read it, replace it live, 422s name the field")
    func networkPolicy() async throws {
        try await withLiveServer { server in
            let client = server.client()
            let policy = DevboxNetwork(
                egress: "deny_all", allow: ["API.Example.com", "*.example.org", "198.51.100.7"], deny: [])
            let created = try await client.devboxes.create(CreateDevboxRequest(name: "sdk-net", network: policy))
            // Stored normalised: names lower-cased, a bare address as a /32.
            let stored = DevboxNetwork(
                egress: "deny_all", allow: ["api.example.com", "*.example.org", "198.51.100.7/32"], deny: [])
            #expect(created.network == stored)
            let ready = try await client.devboxes.waitForReady(created.id, intervalMs: 100, timeoutMs: 120_000)
            #expect(ready.network == stored)
            #expect(try await client.devboxes.network(id: created.id) == stored)

            // PATCH replaces the whole policy: the allow-list not sent is gone.
            let denyList = DevboxNetwork(egress: "allow_all", deny: ["198.51.100.0/24", "*.example.net"])
            let replaced = try await client.devboxes.setNetwork(id: created.id, denyList)
            #expect(replaced == denyList)
            #expect(try await client.devboxes.network(id: created.id) == denyList)
            #expect(try await client.devboxes.get(created.id).network == denyList)

            // A bad entry: 422 naming it, and the policy stays as it was.
            do {
                _ = try await client.devboxes.setNetwork(
                    id: created.id, DevboxNetwork(egress: "deny_all", allow: ["ok.example.com", "10.0.0.0/8"]))
                throw TestFailure("a private range was accepted in an allow-list")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 422 && api.code == "validation_failed")
                #expect(api.field == "network.allow[1]", "field: \(api.field ?? "nil")")
            }
            do {
                _ = try await client.devboxes.setNetwork(id: created.id, DevboxNetwork(egress: "deny_some"))
                throw TestFailure("egress deny_some was accepted")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 422 && api.field == "network.egress")
            }
            #expect(try await client.devboxes.network(id: created.id) == denyList)

            // The same on create: nothing is made.
            do {
                _ = try await client.devboxes.create(
                    CreateDevboxRequest(name: "sdk-bad-net", network: DevboxNetwork(deny: ["example.org", "169.254.169.254"])))
                throw TestFailure("a link-local deny entry was accepted")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 422 && api.field == "network.deny[1]")
            }
            #expect(try await !client.devboxes.list().contains { $0.name == "sdk-bad-net" })

            // An unknown devbox: a typed 404.
            do {
                _ = try await client.devboxes.network(id: "dbx_doesnotexist")
                throw TestFailure("an unknown devbox has a network")
            } catch DevboxClientError.api(let api) {
                #expect(api.status == 404)
            }
            try await client.devboxes.delete(created.id)
        }
    }

    @Test("GitHub methods reach the seed's paths (typed API error until issue 4 lands)")
    func githubPaths() async throws {
        try await withLiveServer { server in
            let client = server.client()
            do {
                let connection = try await client.github.getConnection()
                #expect(connection == nil)  // a fresh server: nobody is connected
            } catch DevboxClientError.api(let api) {
                // Without the integration the route does not exist yet; still a typed API error.
                #expect(api.status == 404 || api.status == 503 || api.status == 501)
            }
        }
    }

    @Test("exec, files, stop (waitForReady treats stopped as terminal), start, through the SDK")
    func execFilesStopStart() async throws {
        try await withLiveServer { server in
            let client = server.client()
            let d = try await client.devboxes.create(CreateDevboxRequest(name: "sdk-runtime", env: ["WHO": "sdk"]))
            defer { Task { try? await client.devboxes.delete(d.id) } }
            _ = try await client.devboxes.waitForReady(d.id, intervalMs: 100, timeoutMs: 120_000)

            let r = try await client.devboxes.exec(d.id, "echo hi-$WHO; echo err >&2; exit 3")
            #expect(r.exitCode == 3 && r.signal == nil && !r.timedOut)
            #expect(r.stdout == "hi-sdk\n" && r.stderr == "err\n")

            let bytes: [UInt8] = [0, 1, 2, 255, 10]
            _ = try await client.devboxes.writeFile(d.id, path: "/workspace/sdk/dir/blob", contents: bytes, mode: "0600")
            #expect(try await client.devboxes.readFile(d.id, path: "/workspace/sdk/dir/blob") == bytes)
            let listing = try await client.devboxes.listFiles(d.id, path: "/workspace/sdk/dir")
            #expect(listing.entries.map(\.name) == ["blob"] && listing.entries.first?.mode == "0600")
            do {
                _ = try await client.devboxes.readFile(d.id, path: "/workspace/../etc/shadow")
                Issue.record("a path with .. was read")
            } catch let DevboxClientError.api(e) {
                #expect(e.status == 422 && e.field == "path")
            }

            let stopped = try await client.devboxes.stop(d.id)
            #expect(stopped.state == .stopped)
            // stopped is terminal for waitForReady: it throws at once rather than polling to the timeout
            let t0 = ContinuousClock.now
            do {
                _ = try await client.devboxes.waitForReady(d.id, intervalMs: 100, timeoutMs: 60_000)
                Issue.record("waitForReady returned for a stopped devbox")
            } catch DevboxClientError.provisioningFailed(let f) {
                #expect(f.state == .stopped && f.devboxId == d.id)
            }
            #expect(ContinuousClock.now - t0 < .seconds(30))

            let started = try await client.devboxes.start(d.id)
            #expect(started.state == .ready)
            #expect(try await client.devboxes.readFile(d.id, path: "/workspace/sdk/dir/blob") == bytes)
            try await client.devboxes.deleteFile(d.id, path: "/workspace/sdk", recursive: true)
            #expect(try await client.devboxes.exec(d.id, "test -e /workspace/sdk").exitCode == 1)
        }
    }
}
