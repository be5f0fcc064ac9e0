import DevboxModel
import DevboxService
import DevboxTools
import HTTPTypes
import Hummingbird

/// `/api/v1/devboxes`: create, list, get, delete, operations.
struct DevboxesController {
    let core: DevboxCore

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/api/v1/devboxes", use: create)
        router.route(table, .get, "/api/v1/devboxes", use: list)
        router.route(table, .get, "/api/v1/devboxes/:id", use: get)
        router.route(table, .delete, "/api/v1/devboxes/:id", use: delete)
        router.route(table, .get, "/api/v1/devboxes/:id/operations", use: operations)
        router.route(table, .get, "/api/v1/devboxes/:id/repositories", use: repositories)
    }

    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let body = try await JSONIO.decode(CreateDevboxRequest.self, from: request)
        let tokens = InjectionTokens(
            claudeToken: request.headers[HTTPField.Name("X-Claude-Token")!],
            codexToken: request.headers[HTTPField.Name("X-Codex-Token")!])
        let devbox = try await core.createDevbox(principal, body, tokens: tokens)
        return try JSONIO.response(devbox, status: .accepted)
    }

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        JSONIO.rawJSON(DevboxWireJSON.devboxList(try await core.listDevboxes(try context.requirePrincipal())))
    }

    @Sendable func get(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return JSONIO.rawJSON(DevboxWireJSON.devbox(try await core.devbox(try context.requirePrincipal(), id: id)))
    }

    @Sendable func delete(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        try await core.deleteDevbox(try context.requirePrincipal(), id: id)
        return JSONIO.noContent()
    }

    @Sendable func operations(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let ops = try await core.operations(try context.requirePrincipal(), id: id)
        return try JSONIO.response(OperationList(operations: ops))
    }

    @Sendable func repositories(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let repos = try await core.devboxRepositories(try context.requirePrincipal(), id: id)
        return try JSONIO.response(RepositoryList(repositories: repos))
    }
}
