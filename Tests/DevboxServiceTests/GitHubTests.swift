import DevboxModel
import Foundation
import Testing

@testable import DevboxService

@Suite("GitHub integration: pure parts")
struct GitHubPureTests {
    func prefixes(_ s: String) throws -> [RedirectAllowlist.Prefix] { try RedirectAllowlist.parse(s) }

    @Test("redirect allow-list: same origin and a path under the prefix at a segment boundary")
    func allowList() throws {
        let p = try prefixes("https://app.example.com/cb, http://127.0.0.1:5173/")
        for ok in [
            "https://app.example.com/cb", "https://app.example.com/cb?x=1", "https://app.example.com/cb/done",
            "https://APP.example.com/cb#frag", "http://127.0.0.1:5173/anything", "https://app.example.com:443/cb",
        ] {
            #expect(RedirectAllowlist.allows(ok, p), "\(ok)")
        }
        for bad in [
            "https://app.example.com/cbx", "https://app.example.com.evil.net/cb", "https://evil.net/cb",
            "http://app.example.com/cb", "https://app.example.com:8443/cb", "https://user@app.example.com/cb",
            "https://app.example.com/cb/../admin", "https://app.example.com/cb/%2e%2e/admin", "https:\\\\evil.net/cb",
            "//evil.net/cb", "javascript:alert(1)", "https://app.example.com/cb\nLocation: x", "http://127.0.0.1:5174/",
            "https:app.example.com/cb", "", "https://app.example.com/c%62",
        ] {
            #expect(!RedirectAllowlist.allows(bad, p), "\(bad)")
        }
        #expect(!RedirectAllowlist.allows("https://app.example.com/cb", []))
        #expect(throws: ConfigurationError.self) { try prefixes("not a url") }
    }

    @Test("settings from the environment: defaults, GitHub Enterprise bases, pairing of id and secret")
    func settings() throws {
        let d = try GitHubSettings.fromEnvironment([:])
        #expect(d.webURL.absoluteString == "https://github.com")
        #expect(d.apiURL.absoluteString == "https://api.github.com")
        #expect(!d.oauthConfigured)
        let s = try GitHubSettings.fromEnvironment([
            "DEVBOX_GITHUB_CLIENT_ID": "id", "DEVBOX_GITHUB_CLIENT_SECRET": "secret",
            "DEVBOX_GITHUB_URL": "https://ghe.example.com/", "DEVBOX_GITHUB_API_URL": "https://ghe.example.com/api/v3",
            "DEVBOX_PUBLIC_URL": "https://devbox.example.com", "DEVBOX_OAUTH_REDIRECT_ALLOWLIST": "https://app.example.com/",
        ])
        #expect(s.oauthConfigured)
        #expect(s.cloneURL(fullName: "acme/api") == "https://ghe.example.com/acme/api.git")
        #expect(s.callbackURL == "https://devbox.example.com/api/v1/integrations/github/callback")
        #expect(throws: ConfigurationError.self) { try GitHubSettings.fromEnvironment(["DEVBOX_GITHUB_CLIENT_ID": "id"]) }
        #expect(throws: ConfigurationError.self) {
            try GitHubSettings.fromEnvironment(["DEVBOX_GITHUB_URL": "https://user:pw@github.com"])
        }
        #expect(throws: ConfigurationError.self) { try GitHubSettings.fromEnvironment(["DEVBOX_PUBLIC_URL": "ftp://x"]) }
    }

    @Test("authorization URL carries client id, callback, scopes and state, all escaped")
    func authorizationURL() throws {
        let client = GitHubClient(settings: GitHubSettings(
            clientId: "Iv1.abc", clientSecret: "s", publicURL: URL(string: "https://devbox.example.com")))
        let url = try #require(client.authorizationURL(state: "st&ate"))
        let c = try #require(URLComponents(string: url))
        #expect(c.host == "github.com" && c.path == "/login/oauth/authorize")
        let q = Dictionary(uniqueKeysWithValues: (c.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(q["client_id"] == "Iv1.abc")
        #expect(q["state"] == "st&ate")
        #expect(q["scope"] == "repo read:org")
        #expect(q["redirect_uri"] == "https://devbox.example.com/api/v1/integrations/github/callback")
    }

    @Test("Link header: rel=next found among others, commas inside URLs, absent on the last page")
    func linkHeader() {
        let h = #"<https://api.github.com/user/repos?page=2&per_page=100>; rel="next", <https://api.github.com/user/repos?page=5>; rel="last""#
        #expect(LinkHeader.next(h) == "https://api.github.com/user/repos?page=2&per_page=100")
        #expect(LinkHeader.next(#"<https://x/a?q=1,2>; rel="prev", <https://x/b?q=3,4>; rel="next""#) == "https://x/b?q=3,4")
        #expect(LinkHeader.next(#"<https://api.github.com/user/repos?page=1>; rel="first""#) == nil)
        #expect(LinkHeader.next(nil) == nil)
        let client = GitHubClient(settings: GitHubSettings(apiURL: URL(string: "https://ghe.example.com/api/v3")!))
        #expect(client.sameAPIOrigin(URL(string: "https://ghe.example.com/api/v3/user/repos?page=2")!))
        #expect(!client.sameAPIOrigin(URL(string: "https://evil.example.com/api/v3/user/repos?page=2")!))
        #expect(!client.sameAPIOrigin(URL(string: "https://ghe.example.com/other/user/repos")!))
    }

    @Test("callback outcome is appended to the client's URL, before a fragment")
    func appendQuery() {
        #expect(GitHubService.appendQuery("https://a.example/cb", [("github", "connected")]) == "https://a.example/cb?github=connected")
        #expect(GitHubService.appendQuery("https://a.example/cb?x=1#top", [("github", "error"), ("error", "a b&c")])
            == "https://a.example/cb?x=1&github=error&error=a%20b%26c#top")
        #expect(GitHubClient.safeWord("access_denied<script>") == "access_deniedscript")
    }

    @Test("organisation logins")
    func logins() {
        for ok in ["acme", "Acme-Corp", "a", String(repeating: "a", count: 39)] { #expect(GitHubService.isGitHubLogin(ok)) }
        for bad in ["", "-acme", "acme-", "ac--me", "ac me", "acme/x", String(repeating: "a", count: 40)] {
            #expect(!GitHubService.isGitHubLogin(bad), "\(bad)")
        }
    }

    @Test("the token reaches git only in GIT_CONFIG_* variables, scoped to the GitHub origin")
    func gitEnvironment() {
        let token = "gho_" + String(repeating: "x", count: 36)
        let header = RepositoryCloner.authorizationHeader(token)
        #expect(header == "Authorization: Basic " + Data("x-access-token:\(token)".utf8).base64EncodedString())
        let env = RepositoryCloner.environment(home: "/tmp/h", header: header, webURL: URL(string: "https://ghe.example.com")!)
        #expect(env["GIT_CONFIG_COUNT"] == "6")
        let pairs = (0..<6).map { (env["GIT_CONFIG_KEY_\($0)"] ?? "", env["GIT_CONFIG_VALUE_\($0)"] ?? "") }
        #expect(pairs.contains { $0.0 == "http.https://ghe.example.com/.extraHeader" && $0.1 == header })
        #expect(pairs.contains { $0.0 == "http.followRedirects" && $0.1 == "false" })
        #expect(env["GIT_CONFIG_NOSYSTEM"] == "1" && env["GIT_CONFIG_GLOBAL"] == "/dev/null" && env["HOME"] == "/tmp/h")
        #expect(env["GIT_TERMINAL_PROMPT"] == "0")
        let plain = RepositoryCloner.environment(home: "/tmp/h", header: nil, webURL: URL(string: "https://github.com")!)
        #expect(!plain.values.contains { $0.contains("Authorization") })
    }

    @Test("scrubbing removes the token, the header and any Authorization line")
    func scrub() {
        let token = "gho_secretsecretsecret"
        let header = RepositoryCloner.authorizationHeader(token)
        var s = Scrubber(secrets: [token, header, "x-access-token:" + token])
        s.replacements = [("/data/boxes/x/.clone-1/repo", "/workspace/app")]
        let out = s.scrub("""
            Cloning into '/data/boxes/x/.clone-1/repo'...
            > \(header)
            fatal: token \(token) refused
            > authorization: Bearer something-else
            """)
        #expect(!out.contains(token))
        #expect(!out.contains(String(header.dropFirst("Authorization: Basic ".count))))
        #expect(!out.contains("something-else"))
        #expect(out.contains("Cloning into '/workspace/app'..."))
    }

    @Test("git errors become one sentence naming the repository")
    func explain() {
        let r = CloneRequest(fullName: "acme/app", ref: "main", targetPath: "/workspace/app", token: nil, anonymousHint: "connect GitHub")
        #expect(RepositoryCloner.explain("fatal: could not read Username for 'https://github.com': terminal prompts disabled", r)
            == "acme/app needs authentication: it is private or does not exist; connect GitHub")
        var t = r
        t.token = "x"
        #expect(RepositoryCloner.explain("fatal: Authentication failed for 'https://github.com/acme/app.git/'", t).contains("reconnect"))
        #expect(RepositoryCloner.explain("remote: Repository not found.\nfatal: repository 'x' not found", t) == "acme/app was not found")
    }
}

@Suite("GitHub integration: repository validation")
struct RepositoryValidationTests {
    func field(_ r: CreateDevboxRequest) -> String? {
        do {
            _ = try CreateValidation.validate(r, plans: Plan.defaults, defaultPlan: "small")
            return nil
        } catch {
            return error.field
        }
    }

    @Test("target paths may not nest: each clone lands with one rename of its own directory")
    func nestedTargets() {
        #expect(field(CreateDevboxRequest(name: "n", repositories: [
            DevboxRepositoryRequest(fullName: "a/app"), DevboxRepositoryRequest(fullName: "b/lib", targetPath: "/workspace/app/lib"),
        ])) == "repositories[1].target_path")
        #expect(field(CreateDevboxRequest(name: "n", repository: "a/app", repositories: [
            DevboxRepositoryRequest(fullName: "b/lib", targetPath: "/workspace/app/x"),
        ])) == "repositories[0].target_path")
        #expect(field(CreateDevboxRequest(name: "n", repositories: [
            DevboxRepositoryRequest(fullName: "a/app", targetPath: "/workspace/x/app"),
            DevboxRepositoryRequest(fullName: "b/app", targetPath: "/workspace/x/app2"),
        ])) == nil)
    }
}

@Suite("GitHub integration: git runner")
struct GitRunnerTests {
    let env = ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"]

    @Test("a git that hangs is killed with its helpers at the deadline")
    func deadline() async throws {
        let start = ContinuousClock.now
        let r = try await GitRunner.run(["-c", "alias.hang=!sleep 30", "hang"], environment: env, timeout: .seconds(1))
        #expect(r.timedOut)
        #expect(r.status != 0)
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test("output is returned even when a helper outlives git and holds the pipe")
    func straggler() async throws {
        let start = ContinuousClock.now
        let r = try await GitRunner.run(
            ["-c", "alias.bg=!echo hello; sleep 30 & exit 0", "bg"], environment: env, timeout: .seconds(20))
        #expect(r.status == 0 && !r.timedOut)
        #expect(r.text.contains("hello"))
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test("git sees only the environment it is given")
    func environment() async throws {
        let r = try await GitRunner.run(
            ["-c", "alias.env=!env", "env"], environment: env.merging(["ONLY_THIS": "1"]) { a, _ in a }, timeout: .seconds(20))
        #expect(r.text.contains("ONLY_THIS=1"))
        #expect(!r.text.contains("DEVBOX_"))
    }
}

@Suite("GitHub integration: workspace placement")
struct WorkspacePlacementTests {
    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-place-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d + "/workspace", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: d + "/src/repo", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: d + "/src/repo/README", contents: Data("hi".utf8))
        return d
    }

    @Test("a clone lands at a nested target, creating the directories")
    func nested() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try WorkspacePlacement.move(d + "/src/repo", workspace: d + "/workspace", target: "/workspace/a/b/app")
        #expect(FileManager.default.contents(atPath: d + "/workspace/a/b/app/README") == Data("hi".utf8))
    }

    @Test("a symlink planted in the workspace is never followed")
    func symlinks() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try FileManager.default.createDirectory(atPath: d + "/outside", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: d + "/workspace/a", withDestinationPath: d + "/outside")
        #expect(throws: WorkspacePlacement.Failure.self) {
            try WorkspacePlacement.move(d + "/src/repo", workspace: d + "/workspace", target: "/workspace/a/app")
        }
        try FileManager.default.createSymbolicLink(atPath: d + "/workspace/app", withDestinationPath: d + "/outside")
        #expect(throws: WorkspacePlacement.Failure.self) {
            try WorkspacePlacement.move(d + "/src/repo", workspace: d + "/workspace", target: "/workspace/app")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: d + "/outside").isEmpty)
        #expect(FileManager.default.fileExists(atPath: d + "/src/repo/README"))
    }

    @Test("an existing non-empty directory is not replaced; an empty one is")
    func existing() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try FileManager.default.createDirectory(atPath: d + "/workspace/app", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: d + "/workspace/app/mine", contents: Data())
        #expect(throws: WorkspacePlacement.Failure.self) {
            try WorkspacePlacement.move(d + "/src/repo", workspace: d + "/workspace", target: "/workspace/app")
        }
        try FileManager.default.createDirectory(atPath: d + "/workspace/empty", withIntermediateDirectories: true)
        try WorkspacePlacement.move(d + "/src/repo", workspace: d + "/workspace", target: "/workspace/empty")
        #expect(FileManager.default.fileExists(atPath: d + "/workspace/empty/README"))
    }
}

@Suite("GitHub integration: storage")
struct GitHubStorageTests {
    func database() throws -> (AppDatabase, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-ghdb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (try AppDatabase(path: dir + "/devbox.sqlite"), dir)
    }

    func user(_ db: AppDatabase) async throws -> String {
        let token = try await db.insertProviderToken(providerName: "p", tokenHash: UUID().uuidString, hint: "x")
        let providerId = try #require(try await db.liveTokenHashes().first { $0.id == token.id }?.providerId)
        return try await db.resolveUser(providerId: providerId, subject: "")
    }

    @Test("migration v2-github comes after the frozen v1-core")
    func migrationOrder() {
        // Later migrations (v3-lifetimes, v4-dashboard, ...) append; these two never move.
        #expect(Array(AppDatabase.migrator.migrations.prefix(2)) == ["v1-core", "v2-github"])
        #expect(AppDatabase.encryptedColumns.contains { $0.table == "github_connections" && $0.column == "token_encrypted" })
    }

    @Test("an OAuth state is spent by its first use")
    func stateSingleUse() async throws {
        let (db, dir) = try database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let uid = try await user(db)
        let now = Date()
        try await db.insertOAuthState(hash: "h1", userId: uid, redirectURL: "https://a/cb", now: now, expiresAt: now + 600)
        let first = try await db.consumeOAuthState(hash: "h1")
        #expect(first?.userId == uid && first?.redirectURL == "https://a/cb")
        #expect(try await db.consumeOAuthState(hash: "h1") == nil)
    }

    @Test("grants survive a reconnect of the same account, not of another one; disconnect removes them")
    func grants() async throws {
        let (db, dir) = try database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let uid = try await user(db)
        #expect(try await db.setOrgGrants(userId: uid, orgs: ["acme"]) == false)
        var r = GitHubConnectionRecord(
            userId: uid, githubUserId: 1, login: "alice", scopes: "repo read:org", tokenEncrypted: "t1", connectedAt: Date())
        try await db.upsertGitHubConnection(r)
        #expect(try await db.setOrgGrants(userId: uid, orgs: ["acme", "globex", "acme"]))
        #expect(try await db.orgGrants(userId: uid) == ["acme", "globex"])
        r.tokenEncrypted = "t2"
        try await db.upsertGitHubConnection(r)
        #expect(try await db.orgGrants(userId: uid) == ["acme", "globex"])
        #expect(try await db.gitHubConnection(userId: uid)?.tokenEncrypted == "t2")
        r.githubUserId = 2
        try await db.upsertGitHubConnection(r)
        #expect(try await db.orgGrants(userId: uid).isEmpty)
        #expect(try await db.deleteGitHubConnection(userId: uid)?.tokenEncrypted == "t2")
        #expect(try await db.gitHubConnection(userId: uid) == nil)
        #expect(try await db.deleteGitHubConnection(userId: uid) == nil)
    }
}
