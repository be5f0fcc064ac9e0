import DevboxModel
import DevboxSecurity
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import DevboxTestSupport
import Testing

@testable import DevboxServer
@testable import DevboxService

@Suite("Dashboard: templates, forms, origins")
struct DashboardPureTests {
    @Test("page timestamps are UTC, whole seconds, RFC 3339; nil is a dash")
    func displayTime() {
        #expect(Display.time(Date(timeIntervalSince1970: 1_760_000_000.9)) == "2025-10-09T08:53:20Z")
        #expect(Display.time(nil) == "—")
    }

    @Test("interpolated strings are escaped; HTML values are not")
    func escaping() {
        let evil = "<script>alert('x')</script> & \"q\""
        let inner: HTML = "<b>\(evil)</b>"
        let page: HTML = "<p title=\"\(evil)\">\(inner)</p>"
        #expect(!page.raw.contains("<script>"))
        #expect(page.raw.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"))
        #expect(page.raw.hasPrefix("<p title=\"&lt;script&gt;") && page.raw.contains("<b>&lt;"))
    }

    @Test("url-encoded forms: plus, percent escapes, repeated names in order, empty values")
    func forms() {
        let f = Form(parsing: "name=my+box&env_key=A&env_value=1%262&env_key=B&env_value=&flag=on&x")
        #expect(f["name"] == "my box")
        #expect(f.all("env_key") == ["A", "B"])
        #expect(f.all("env_value") == ["1&2", ""])
        #expect(f.isOn("flag") && !f.isOn("missing"))
        #expect(f["x"] == "")
    }

    @Test("origins: default ports dropped, case folded, garbage refused")
    func origins() {
        #expect(Web.origin(of: "HTTPS://Devbox.Example.com:443/account?x") == "https://devbox.example.com")
        #expect(Web.origin(of: "http://127.0.0.1:8080/") == "http://127.0.0.1:8080")
        #expect(Web.origin(of: "not a url") == nil)
    }

    func request(_ fields: HTTPFields, authority: String = "127.0.0.1:8080") -> Request {
        Request(
            head: HTTPRequest(method: .post, scheme: "http", authority: authority, path: "/devboxes", headerFields: fields),
            body: RequestBody(buffer: ByteBuffer()))
    }

    @Test("Origin check: our own origin or DEVBOX_PUBLIC_URL's; Referer as fallback; neither is refused")
    func originCheck() {
        let public_ = URL(string: "https://devbox.example.com")
        #expect(Web.originAllowed(request([.origin: "http://127.0.0.1:8080"]), publicURL: nil))
        #expect(!Web.originAllowed(request([.origin: "http://127.0.0.1:8081"]), publicURL: nil))
        #expect(!Web.originAllowed(request([.origin: "null"]), publicURL: nil))
        #expect(!Web.originAllowed(request([:]), publicURL: nil))
        #expect(Web.originAllowed(request([.referer: "http://127.0.0.1:8080/devboxes/new"]), publicURL: nil))
        #expect(!Web.originAllowed(request([.referer: "http://evil.example/x"]), publicURL: nil))
        #expect(Web.originAllowed(request([.origin: "https://devbox.example.com"], authority: "10.0.0.5:8080"), publicURL: public_))
        #expect(!Web.originAllowed(request([.origin: "http://devbox.example.com"], authority: "10.0.0.5:8080"), publicURL: public_))
        // behind a TLS proxy, the addressed origin is https
        #expect(Web.originAllowed(
            request([.origin: "https://box.internal", HTTPField.Name("X-Forwarded-Proto")!: "https"], authority: "box.internal"),
            publicURL: nil))
    }

    @Test("cookies: found among others; set with HttpOnly, SameSite=Strict, Secure only under TLS")
    func cookies() {
        let r = request([.cookie: "a=1; devbox_session=dbs_abc; b=2"])
        #expect(Web.cookie(r, "devbox_session") == "dbs_abc")
        #expect(Web.cookie(r, "missing") == nil)
        #expect(Web.setCookie("n", "v", maxAge: 5, secure: false) == "n=v; Path=/; Max-Age=5; HttpOnly; SameSite=Strict")
        #expect(Web.setCookie("n", "v", maxAge: 5, secure: true).hasSuffix("; Secure"))
        #expect(Web.isTLS(request([:]), publicURL: URL(string: "https://x.example")))
        #expect(!Web.isTLS(request([:]), publicURL: URL(string: "http://x.example")))
    }

    @Test("create form: rows, env, commands, tokens; core fields map back to form controls")
    func parseCreate() {
        let f = Form(parsing: [
            "name=+box+", "plan=small",
            "repo_full_name=", "repo_ref=", "repo_path=",
            "repo_full_name=acme%2Fapi", "repo_ref=dev", "repo_path=%2Fworkspace%2Fapi",
            "env_key=A", "env_value=secret", "env_key=", "env_value=",
            "setup_commands=echo+1%0D%0A%0D%0Aecho+2", "setup_timeout_seconds=60",
            "inject_claude_token=on", "claude_token=tok",
        ].joined(separator: "&"))
        let p = DashboardController.parseCreate(f)
        #expect(p.errors.isEmpty)
        #expect(p.request.name == "box")
        #expect(p.request.repositories == [DevboxRepositoryRequest(fullName: "acme/api", ref: "dev", targetPath: "/workspace/api")])
        #expect(p.request.env == ["A": "secret"])
        #expect(p.request.setupCommands == ["echo 1", "echo 2"])
        #expect(p.request.setupTimeoutSeconds == 60)
        #expect(p.tokens.claudeToken == "tok" && p.tokens.codexToken == nil)
        #expect(DashboardController.formField("repositories[0].ref", p) == "repo_ref_0")
        #expect(DashboardController.formField("repositories[0].full_name", p) == "repo_full_name_0")
        #expect(DashboardController.formField("env.A", p) == "env_key_0")
        #expect(DashboardController.formField("setup_commands[1]", p) == "setup_commands")
        #expect(DashboardController.formField("X-Claude-Token", p) == "claude_token")
        #expect(DashboardController.formField("something_else", p) == "form")

        let bad = DashboardController.parseCreate(Form(parsing: "name=x&env_key=&env_value=v&setup_timeout_seconds=ten&inject_codex_token=on"))
        #expect(bad.errors["env_key_0"] != nil)
        #expect(bad.errors["setup_timeout_seconds"] != nil)
        #expect(bad.errors["codex_token"] != nil)
    }
}

@Suite("Dashboard sessions")
struct DashboardSessionTests {
    @Test("sign-in stores only a hash; the cookie resolves; CSRF is bound; sign-out and revocation end it")
    func lifecycle() async throws {
        try await withFastSystem(onDisk: true) { fast in try await lifecycle(fast.system, fast.runtime.root) }
    }

    private func lifecycle(_ system: DevboxSystem, _ dir: String) async throws {
        let core = system.services
        let token = ProviderToken.generate()
        let info = try await core.reads.db.insertProviderToken(providerName: "p", tokenHash: ProviderToken.hash(token), hint: "x")

        await #expect(throws: ServiceError.unauthorized("invalid provider token")) {
            _ = try await core.dashboard.signInDashboard(providerToken: "dbx_pt_wrong", userToken: nil)
        }
        await #expect(throws: ServiceError.self) { _ = try await core.dashboard.signInDashboard(providerToken: "  ", userToken: nil) }

        let (cookie, session) = try await core.dashboard.signInDashboard(providerToken: token, userToken: nil)
        #expect(cookie.hasPrefix("dbs_") && cookie.count == 56)
        #expect(session.expiresAt.timeIntervalSinceNow <= DashboardAuth.dashboardSessionLifetime)
        let found = try await core.dashboard.dashboardSession(cookie: cookie)
        #expect(found?.principal == session.principal)
        #expect(found.map { DashboardAuth.csrfMatches($0, presented: session.csrfToken) } == true)
        #expect(found.map { DashboardAuth.csrfMatches($0, presented: session.csrfToken + "x") } == false)
        #expect(found.map { DashboardAuth.csrfMatches($0, presented: nil) } == false)
        #expect(try await core.dashboard.dashboardSession(cookie: cookie + "x") == nil)
        #expect(try await core.dashboard.dashboardSession(cookie: "not-a-session") == nil)
        #expect(!session.csrfToken.contains(cookie) && session.csrfToken != cookie)

        let db = try Data(contentsOf: URL(fileURLWithPath: dir + "/devbox.sqlite"))
            + ((try? Data(contentsOf: URL(fileURLWithPath: dir + "/devbox.sqlite-wal"))) ?? Data())
        #expect(db.range(of: Data(cookie.utf8)) == nil, "the session id itself is stored")
        #expect(db.range(of: Data(token.utf8)) == nil, "the provider token is stored")

        try await core.dashboard.signOutDashboard(cookie: cookie)
        #expect(try await core.dashboard.dashboardSession(cookie: cookie) == nil)

        let (second, _) = try await core.dashboard.signInDashboard(providerToken: token, userToken: nil)
        #expect(try await core.dashboard.dashboardSession(cookie: second) != nil)
        #expect(try await core.reads.db.revokeProviderToken(id: info.id))
        #expect(try await core.dashboard.dashboardSession(cookie: second) == nil)
    }

    @Test("migration v4-dashboard is registered after the GitHub one")
    func migration() {
        let m = AppDatabase.migrator.migrations
        #expect(m.contains("v4-dashboard"))
        #expect((m.firstIndex(of: "v2-github") ?? .max) < (m.firstIndex(of: "v4-dashboard") ?? -1))
    }

    @Test("the GitHub allow-list implicitly includes the dashboard's own account page")
    func implicitRedirect() throws {
        let s = GitHubSettings(publicURL: URL(string: "https://devbox.example.com"))
        #expect(s.dashboardReturnURL == "https://devbox.example.com/account")
        #expect(RedirectAllowlist.allows("https://devbox.example.com/account", s.effectiveRedirectAllowlist))
        #expect(!RedirectAllowlist.allows("https://devbox.example.com/other", s.effectiveRedirectAllowlist))
        #expect(GitHubSettings().effectiveRedirectAllowlist.isEmpty)
    }
}
