import DevboxModel
import DevboxSecurity
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// The web dashboard (docs/DASHBOARD.md): HTML pages and forms at `/`, cookie sessions,
/// CSRF tokens, and the small JSON endpoints its script polls. Calls the same services as
/// the REST API, in process (and signs in through `DashboardAuth`).
struct DashboardController: Sendable {
    let dashboard: DashboardAuth
    let reads: DevboxReads
    let commands: DevboxCommands
    let runtime: RuntimeService
    let access: AccessService
    let github: GitHubService
    let credentials: CredentialBroker
    let snapshots: SnapshotService
    let logger: Logger

    /// `DEVBOX_PUBLIC_URL`, when set (origin checks, the Secure cookie flag).
    var publicURL: URL? { github.publicURL }

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.dashboardRoute(table, .get, "/", use: list)
        router.dashboardRoute(table, .get, "/login", use: loginPage)
        router.dashboardRoute(table, .post, "/login", use: login)
        router.dashboardRoute(table, .post, "/logout", use: logout)
        router.dashboardRoute(table, .get, "/devboxes/new", use: newDevbox)
        router.dashboardRoute(table, .post, "/devboxes", use: create)
        router.dashboardRoute(table, .get, "/devboxes/:id", use: show)
        router.dashboardRoute(table, .post, "/devboxes/:id/destroy", use: destroy)
        router.dashboardRoute(table, .post, "/devboxes/:id/sessions", use: createSession)
        router.dashboardRoute(table, .post, "/devboxes/:id/sessions/:session/revoke", use: revokeSession)
        router.dashboardRoute(table, .post, "/devboxes/:id/network", use: setNetwork)
        router.dashboardRoute(table, .post, "/devboxes/:id/snapshots", use: createSnapshot)
        router.dashboardRoute(table, .post, "/devboxes/:id/fork", use: forkDevbox)
        router.dashboardRoute(table, .get, "/snapshots", use: snapshots)
        router.dashboardRoute(table, .post, "/snapshots/:id/delete", use: deleteSnapshot)
        router.dashboardRoute(table, .get, "/account", use: account)
        router.dashboardRoute(table, .post, "/account/ssh-key", use: setSSHKey)
        router.dashboardRoute(table, .post, "/account/ssh-key/delete", use: deleteSSHKey)
        router.dashboardRoute(table, .post, "/account/github/connect", use: connectGitHub)
        router.dashboardRoute(table, .post, "/account/github/disconnect", use: disconnectGitHub)
        router.dashboardRoute(table, .post, "/account/github/org-grants", use: setOrgGrants)
        router.dashboardRoute(table, .get, "/dashboard/api/devboxes", use: listJSON)
        router.dashboardRoute(table, .get, "/dashboard/api/devboxes/:id", use: devboxJSON)
        router.dashboardRoute(table, .get, "/dashboard/api/devboxes/:id/stats", use: statsJSON)
        router.dashboardRoute(table, .get, "/dashboard/assets/app.css", use: { _, _ in Assets.response(Assets.css, type: "text/css") })
        router.dashboardRoute(table, .get, "/dashboard/assets/app.js", use: { _, _ in Assets.response(Assets.js, type: "text/javascript") })
    }

    // MARK: Sessions and gates

    /// The live session of the request's cookie, if any.
    func signedIn(_ request: Request) async throws(ServiceError) -> DashboardSession? {
        guard let cookie = Web.cookie(request, Web.sessionCookie) else { return nil }
        return try await dashboard.dashboardSession(cookie: cookie)
    }

    enum Gate {
        case ok(DashboardSession, Form)
        case refused(Response)
    }

    /// Every state-changing request: same Origin, a live session, and the session's CSRF
    /// token in the form (or `X-CSRF-Token`), compared in constant time.
    func post(_ request: Request) async throws -> Gate {
        guard Web.originAllowed(request, publicURL: publicURL) else {
            logger.warning("dashboard post refused: cross-origin", metadata: ["path": "\(request.uri.path)"])
            return .refused(forbidden("This request did not come from a page of this dashboard (Origin check)."))
        }
        guard let session = try await signedIn(request) else { return .refused(Web.redirect("/login")) }
        let form = try await Web.form(request)
        let presented = form[Web.csrfField] ?? request.headers[HTTPField.Name("X-CSRF-Token")!]
        guard DashboardAuth.csrfMatches(session, presented: presented) else {
            logger.warning("dashboard post refused: CSRF token missing or wrong", metadata: ["path": "\(request.uri.path)"])
            return .refused(forbidden("This form is missing its security token or it has expired. Reload the page and try again."))
        }
        return .ok(session, form)
    }

    func forbidden(_ message: String) -> Response {
        Web.html(Layout.errorPage(title: "Refused", message: message, csrf: nil), status: .forbidden)
    }

    /// Runs a page handler; a service error becomes an HTML error page with its status.
    func page(_ csrf: String?, _ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let e as ServiceError {
            let title: String
            switch e {
            case .notFound: title = "Not found"
            case .unauthorized: return Web.redirect("/login")
            case .unavailable: title = "Unavailable"
            default: title = "Cannot do that"
            }
            return Web.html(
                Layout.errorPage(title: title, message: e.message, csrf: csrf),
                status: HTTPResponse.Status(code: e.statusCode))
        }
    }

    static let notices: [String: String] = [
        "created": "Devbox created. Provisioning has started.",
        "destroyed": "Devbox destroyed.",
        "session_created": "SSH session created.",
        "session_revoked": "SSH session revoked.",
        "network_saved": "Network policy saved. New connections follow it within a second.",
        "key_saved": "SSH key saved.",
        "key_removed": "SSH key removed.",
        "github_disconnected": "GitHub disconnected.",
        "grants_saved": "Organisation grants saved.",
        "signed_out": "You are signed out.",
        "snapshot_created": "Snapshot taken.",
        "snapshot_deleted": "Snapshot deleted.",
        "forked": "Devbox forked. The new devboxes are starting from its snapshot.",
    ]

    static func notice(_ request: Request) -> String? {
        request.uri.queryParameters["notice"].flatMap { notices[String($0)] }
    }

    static func param(_ context: AppRequestContext, _ name: String) -> String {
        context.parameters.get(name) ?? ""
    }

    // MARK: Sign in / out

    @Sendable func loginPage(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            if try await signedIn(request) != nil { return Web.redirect("/") }
            return renderLogin(request, errors: [:], status: .ok)
        }
    }

    func renderLogin(_ request: Request, errors: [String: String], status: HTTPResponse.Status) -> Response {
        let token = Identifier.make("", length: 32)
        let secure = Web.isTLS(request, publicURL: publicURL)
        let page = LoginPage.render(
            loginCSRF: token, errors: errors, userTokensAccepted: dashboard.acceptsUserTokens,
            notice: errors.isEmpty ? Self.notice(request) : nil)
        return Web.html(page, status: status, cookies: [Web.setCookie(Web.loginCookie, token, maxAge: 3600, secure: secure)])
    }

    @Sendable func login(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            guard Web.originAllowed(request, publicURL: publicURL) else {
                return forbidden("This request did not come from a page of this dashboard (Origin check).")
            }
            let form = try await Web.form(request)
            guard let expected = Web.cookie(request, Web.loginCookie), !expected.isEmpty,
                ConstantTime.equals(Array(expected.utf8), Array((form[Web.csrfField] ?? "").utf8))
            else {
                return renderLogin(request, errors: ["form": "The sign-in form expired. Please try again."], status: .forbidden)
            }
            let secure = Web.isTLS(request, publicURL: publicURL)
            do {
                let (cookie, session) = try await dashboard.signInDashboard(
                    providerToken: form["provider_token"] ?? "", userToken: form["user_token"])
                // A browser signing in again leaves no older session behind.
                if let previous = Web.cookie(request, Web.sessionCookie) { try? await dashboard.signOutDashboard(cookie: previous) }
                let maxAge = max(1, Int(session.expiresAt.timeIntervalSinceNow))
                return Web.redirect(
                    "/",
                    cookies: [
                        Web.setCookie(Web.sessionCookie, cookie, maxAge: maxAge, secure: secure),
                        Web.clearCookie(Web.loginCookie, secure: secure),
                    ])
            } catch ServiceError.validation(let field, let message) {
                return renderLogin(request, errors: [field: message], status: .unprocessableContent)
            } catch ServiceError.unauthorized(let message) {
                let field = message.contains("bearer") || message.contains("user") ? "user_token" : "provider_token"
                let shown = field == "user_token" ? "This user token is not valid here (signature, expiry or issuer)." : "This provider token is not valid."
                return renderLogin(request, errors: [field: shown], status: .unauthorized)
            }
        }
    }

    @Sendable func logout(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            if case .refused(let r) = try await post(request) { return r }
            if let cookie = Web.cookie(request, Web.sessionCookie) { try await dashboard.signOutDashboard(cookie: cookie) }
            let secure = Web.isTLS(request, publicURL: publicURL)
            return Web.redirect("/login?notice=signed_out", cookies: [Web.clearCookie(Web.sessionCookie, secure: secure)])
        }
    }

    // MARK: List and JSON

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            guard let s = try await signedIn(request) else { return Web.redirect("/login") }
            let boxes = try await reads.listDevboxes(s.principal)
            return Web.html(ListPage.render(devboxes: boxes, csrf: s.csrfToken, notice: Self.notice(request)))
        }
    }

    struct DevboxDetail: Encodable {
        var devbox: Devbox
        var operations: [DevboxOperation]
    }

    @Sendable func listJSON(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let s = try await signedIn(request) else { throw ServiceError.unauthorized("not signed in to the dashboard") }
        return try JSONIO.response(DevboxList(devboxes: try await reads.listDevboxes(s.principal)))
    }

    @Sendable func devboxJSON(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let s = try await signedIn(request) else { throw ServiceError.unauthorized("not signed in to the dashboard") }
        let id = Self.param(context, "id")
        let d = try await reads.devbox(s.principal, id: id)
        return try JSONIO.response(DevboxDetail(devbox: d, operations: try await reads.operations(s.principal, id: id)))
    }

    /// The devbox's usage now, for the devbox page's Resources chart (`DevboxStats`).
    @Sendable func statsJSON(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let s = try await signedIn(request) else { throw ServiceError.unauthorized("not signed in to the dashboard") }
        return try JSONIO.response(try await runtime.devboxStats(s.principal, id: Self.param(context, "id")))
    }
}
