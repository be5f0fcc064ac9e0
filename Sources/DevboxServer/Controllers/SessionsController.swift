import DevboxModel
import DevboxService
import Hummingbird

/// `/api/v1/devboxes/:id/access/…`: SSH access sessions.
struct SessionsController {
    let access: AccessService

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/api/v1/devboxes/:id/access/session", use: create)
        router.route(table, .get, "/api/v1/devboxes/:id/access/sessions", use: list)
        router.route(table, .delete, "/api/v1/devboxes/:id/access/session/:session_id", use: revoke)
    }

    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        var ttl: Int?
        if let len = request.headers[.contentLength], len != "0" {
            ttl = try await JSONIO.decode(CreateSessionRequest.self, from: request, limit: 64 * 1024).ttlSeconds
        }
        let session = try await access.createSession(principal, devboxId: id, ttlSeconds: ttl)
        return try JSONIO.response(session, status: .created)
    }

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let sessions = try await access.listSessions(try context.requirePrincipal(), devboxId: id)
        return try JSONIO.response(AccessSessionList(sessions: sessions))
    }

    @Sendable func revoke(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let sid = try context.parameters.require("session_id")
        try await access.revokeSession(try context.requirePrincipal(), devboxId: id, sessionId: sid)
        return JSONIO.noContent()
    }
}
