import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird

/// `/api/v1/integrations/github/…`: the OAuth web flow, the connection, listing, grants.
struct GitHubController {
    let github: GitHubService

    /// The routes behind `AuthMiddleware`.
    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/api/v1/integrations/github/connect", use: connect)
        router.route(table, .get, "/api/v1/integrations/github/connection", use: connection)
        router.route(table, .delete, "/api/v1/integrations/github/connection", use: disconnect)
        router.route(table, .get, "/api/v1/integrations/github/repos", use: repos)
        router.route(table, .get, "/api/v1/integrations/github/orgs", use: orgs)
        router.route(table, .put, "/api/v1/integrations/github/org-grants", use: setGrants)
    }

    /// The callback, outside the auth group: the browser arrives from GitHub without a
    /// provider token; the single-use state says whose flow it is.
    func registerCallback(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .get, "/api/v1/integrations/github/callback", use: callback)
    }

    @Sendable func connect(_ request: Request, context: AppRequestContext) async throws -> Response {
        let body = try await JSONIO.decode(GitHubConnectRequest.self, from: request, limit: 64 * 1024)
        let start = try await github.startGitHubOAuth(try context.requirePrincipal(), redirectURL: body.redirectUrl)
        return try JSONIO.response(start)
    }

    /// Produces 302 to the client's redirect URL with the outcome, or 400 for a missing,
    /// unknown, expired or reused state.
    @Sendable func callback(_ request: Request, context: AppRequestContext) async throws -> Response {
        let q = request.uri.queryParameters
        let location = try await github.completeGitHubOAuth(
            code: q["code"].map(String.init), state: q["state"].map(String.init), error: q["error"].map(String.init))
        return Response(
            status: .found,
            headers: [.location: location, .cacheControl: "no-store", HTTPField.Name("Referrer-Policy")!: "no-referrer"])
    }

    @Sendable func connection(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let c = try await github.gitHubConnection(try context.requirePrincipal()) else {
            return JSONIO.rawJSON(Data("null".utf8))
        }
        return try JSONIO.response(c)
    }

    @Sendable func disconnect(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await github.disconnectGitHub(try context.requirePrincipal())
        return JSONIO.noContent()
    }

    @Sendable func repos(_ request: Request, context: AppRequestContext) async throws -> Response {
        try JSONIO.response(GitHubRepoList(repos: try await github.gitHubRepos(try context.requirePrincipal())))
    }

    @Sendable func orgs(_ request: Request, context: AppRequestContext) async throws -> Response {
        try JSONIO.response(GitHubOrgList(orgs: try await github.gitHubOrgs(try context.requirePrincipal())))
    }

    @Sendable func setGrants(_ request: Request, context: AppRequestContext) async throws -> Response {
        let body = try await JSONIO.decode(GitHubOrgGrantsRequest.self, from: request, limit: 64 * 1024)
        try await github.setGitHubOrgGrants(try context.requirePrincipal(), orgs: body.orgs)
        return JSONIO.noContent()
    }
}
