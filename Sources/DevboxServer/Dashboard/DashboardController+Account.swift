import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird

/// Account page: SSH key, GitHub connection and organisation grants.
extension DashboardController {
    func accountModel(_ s: DashboardSession) async throws(ServiceError) -> AccountPage.Model {
        let profile = try await reads.profile(s.principal)
        let connection = try await github.gitHubConnection(s.principal)
        var orgs: [GitHubOrg]?
        var orgsError: String?
        if connection != nil {
            do { orgs = try await github.gitHubOrgs(s.principal) } catch { orgsError = error.message }
        }
        return AccountPage.Model(
            profile: profile, sessionExpires: s.expiresAt, oauthAvailable: github.gitHubOAuthAvailable,
            connection: connection, orgs: orgs, orgsError: orgsError)
    }

    func renderAccount(_ m: AccountPage.Model, _ s: DashboardSession, notice: String?, status: HTTPResponse.Status = .ok) -> Response {
        // The connect form is redirected to GitHub: its origin joins the page's form-action.
        let github = Web.origin(of: github.gitHubWebURL.absoluteString).map { [$0] } ?? []
        return Web.html(AccountPage.render(m, csrf: s.csrfToken, notice: notice), status: status, formTargets: github)
    }

    @Sendable func account(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let s = try await signedIn(request) else {
            // Back from GitHub: a SameSite=Strict cookie is not sent on a navigation another
            // site started. One hop from our own page makes it same-site; then sign-in if need be.
            let q = request.uri.queryParameters
            if q["github"] != nil, q["hop"] == nil {
                var items: [(String, String)] = [("hop", "1")]
                for key: Substring in ["github", "login", "error"] { if let v = q[key] { items.append((String(key), String(v))) } }
                let target = "/account?" + items.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }
                    .joined(separator: "&")
                return Web.html("""
                    <!doctype html><html lang="en"><head><meta charset="utf-8">
                    <meta http-equiv="refresh" content="0;url=\(target)"><title>devbox</title></head>
                    <body><p><a href="\(target)">Continue to your account</a></p></body></html>
                    """)
            }
            return Web.redirect("/login")
        }
        return try await page(s.csrfToken) {
            var notice = Self.notice(request)
            let q = request.uri.queryParameters
            // Shown only in the shapes the callback produces (anyone can craft this URL).
            if q["github"] == "connected", let login = q["login"].map(String.init), Self.isWord(login, extra: "-") {
                notice = "GitHub connected as \(login)."
            } else if q["github"] == "error", let word = q["error"].map(String.init), Self.isWord(word, extra: "_") {
                notice = "GitHub was not connected: \(word)."
            }
            return renderAccount(try await accountModel(s), s, notice: notice)
        }
    }

    /// 1 to 64 ASCII letters, digits or `extra`.
    static func isWord(_ s: String, extra: Character) -> Bool {
        (1...64).contains(s.count) && s.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == extra }
    }

    /// Runs an account form: the gate, then `body`; a validation error re-renders the page
    /// with the message next to `field`.
    func accountPost(
        _ request: Request, field: String,
        _ body: (DashboardSession, Form) async throws(ServiceError) -> Response
    ) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let failure: ServiceError
            do {
                return try await body(s, form)
            } catch let e as ServiceError {
                failure = e
            }
            let status: HTTPResponse.Status
            var m = try await accountModel(s)
            switch failure {
            case .validation(let f, let message):
                m.errors = [f.hasPrefix("orgs") ? "orgs" : field: message]
                if field == "public_key" { m.sshKeyDraft = form["public_key"] ?? "" }
                status = .unprocessableContent
            case .conflict(let message):
                m.errors = [field: message]
                status = .conflict
            case .unavailable(let message):
                m.errors = [field: message]
                status = .serviceUnavailable
            default:
                throw failure
            }
            return renderAccount(m, s, notice: nil, status: status)
        }
    }

    @Sendable func setSSHKey(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await accountPost(request, field: "public_key") { (s: DashboardSession, form: Form) async throws(ServiceError) -> Response in
            try await access.setSSHKey(s.principal, publicKey: form["public_key"] ?? "")
            return Web.redirect("/account?notice=key_saved#ssh-key")
        }
    }

    @Sendable func deleteSSHKey(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await accountPost(request, field: "public_key") { (s: DashboardSession, _: Form) async throws(ServiceError) -> Response in
            try await access.deleteSSHKey(s.principal)
            return Web.redirect("/account?notice=key_removed#ssh-key")
        }
    }

    @Sendable func connectGitHub(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await accountPost(request, field: "github") { (s: DashboardSession, _: Form) async throws(ServiceError) -> Response in
            guard let back = github.dashboardGitHubReturnURL else {
                throw .unavailable("GitHub OAuth needs DEVBOX_PUBLIC_URL on this server")
            }
            let start = try await github.startGitHubOAuth(s.principal, redirectURL: back)
            return Web.redirect(start.authorizationUrl)
        }
    }

    @Sendable func disconnectGitHub(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await accountPost(request, field: "github") { (s: DashboardSession, _: Form) async throws(ServiceError) -> Response in
            try await github.disconnectGitHub(s.principal)
            return Web.redirect("/account?notice=github_disconnected#github")
        }
    }

    @Sendable func setOrgGrants(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await accountPost(request, field: "orgs") { (s: DashboardSession, form: Form) async throws(ServiceError) -> Response in
            try await github.setGitHubOrgGrants(s.principal, orgs: form.all("org"))
            return Web.redirect("/account?notice=grants_saved#github")
        }
    }
}
