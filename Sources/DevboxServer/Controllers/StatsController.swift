import DevboxModel
import DevboxService
import Hummingbird

/// `GET /api/v1/devboxes/:id/stats` (issue 24): what the devbox uses now (`DevboxStats`).
/// Produces 404 for an unknown devbox or another user's.
struct StatsController {
    let runtime: RuntimeService

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .get, "/api/v1/devboxes/:id/stats", use: stats)
    }

    @Sendable func stats(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return try JSONIO.response(try await runtime.devboxStats(try context.requirePrincipal(), id: id))
    }
}
