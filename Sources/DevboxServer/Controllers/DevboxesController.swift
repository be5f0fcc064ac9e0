import DevboxModel
import DevboxService
import DevboxTools
import HTTPTypes
import Hummingbird

/// `/api/v1/devboxes`: create, list, get, wait, delete, operations.
struct DevboxesController {
    let reads: DevboxReads
    let commands: DevboxCommands
    let runtime: RuntimeService

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/api/v1/devboxes", use: create)
        router.route(table, .get, "/api/v1/devboxes", use: list)
        router.route(table, .get, "/api/v1/devboxes/:id", use: get)
        router.route(table, .get, "/api/v1/devboxes/:id/wait", use: wait)
        router.route(table, .delete, "/api/v1/devboxes/:id", use: delete)
        router.route(table, .get, "/api/v1/devboxes/:id/operations", use: operations)
        router.route(table, .get, "/api/v1/devboxes/:id/repositories", use: repositories)
        router.route(table, .get, "/api/v1/devboxes/:id/network", use: network)
        router.route(table, .patch, "/api/v1/devboxes/:id/network", use: setNetwork)
    }

    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let body = try await JSONIO.decode(
            CreateDevboxRequest.self, from: request, limit: CreateValidation.maxRequestBodyBytes)
        let tokens = InjectionTokens(
            claudeToken: request.headers[HTTPField.Name("X-Claude-Token")!],
            codexToken: request.headers[HTTPField.Name("X-Codex-Token")!])
        let devbox = try await commands.createDevbox(principal, body, tokens: tokens)
        return try JSONIO.response(devbox, status: .accepted)
    }

    /// Every devbox (the seed's answer), or with `state` (repeatable), `limit` (1–500) or
    /// `cursor` a page, newest first, with `next_cursor` (null on the last page).
    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let q = request.uri.queryParameters
        let stateValues: [String] = q.getAll("state")
        let limitText = q.get("limit")
        let cursorText = q.get("cursor")
        if stateValues.isEmpty && limitText == nil && cursorText == nil {
            return JSONIO.rawJSON(DevboxWireJSON.devboxList(try await reads.listDevboxes(principal)))
        }
        var page = DevboxPageRequest()
        if !stateValues.isEmpty {
            var states = Set<DevboxState>()
            for v in stateValues.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }) {
                guard let s = DevboxState(rawValue: v) else {
                    throw ServiceError.validation(
                        field: "state", message: "unknown state '\(v)'; states: \(DevboxState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                states.insert(s)
            }
            page.states = states
        }
        if let limitText {
            guard let n = Int(limitText) else {
                throw ServiceError.validation(field: "limit", message: "limit must be a whole number between 1 and 500")
            }
            page.limit = n
        }
        if let cursorText {
            guard let c = DevboxCursor(encoded: cursorText) else {
                throw ServiceError.validation(field: "cursor", message: "cursor is not one this server gave out (next_cursor)")
            }
            page.after = c
        }
        return JSONIO.rawJSON(try await reads.listDevboxesJSON(principal, page: page) { DevboxWireJSON.devboxPage($0, next: $1) })
    }

    @Sendable func get(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        // A cached devbox's bytes are kept encoded (the hottest answer of the service).
        return JSONIO.rawJSON(try await reads.devboxJSON(try context.requirePrincipal(), id: id, encode: DevboxWireJSON.devbox))
    }

    /// Long-poll until the devbox settles (not `requested`/`provisioning`) or `timeout_seconds`
    /// (0–300, default 60) pass: 200 with the devbox either way; the client checks `state`.
    /// A client that disconnects ends the wait; so does graceful shutdown (the devbox as it is).
    @Sendable func wait(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        var timeout: Int?
        if let raw = request.uri.queryParameters.get("timeout_seconds") {
            guard let n = Int(raw) else {
                throw ServiceError.validation(
                    field: "timeout_seconds", message: "timeout_seconds must be a whole number from 0 to 300")
            }
            timeout = n
        }
        // Refusals (422, 404) and an answer that needs no waiting keep the connection.
        let seconds = try DevboxReads.waitTimeout(timeout)
        let current = try await reads.devbox(principal, id: id)
        if !current.state.isSettling || seconds == 0 {
            return JSONIO.rawJSON(DevboxWireJSON.devbox(current))
        }
        let reads = self.reads
        // The request's inbound side closing (the client went away) cancels the wait. Watching
        // it consumes the connection's input, so the connection closes after this answer.
        let box = try await request.body.consumeWithCancellationOnInboundClose { _ in
            try await reads.waitForDevbox(principal, id: id, timeoutSeconds: seconds)
        }
        var response = JSONIO.rawJSON(DevboxWireJSON.devbox(box))
        response.headers[.connection] = "close"
        return response
    }

    @Sendable func delete(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        try await commands.deleteDevbox(try context.requirePrincipal(), id: id)
        return JSONIO.noContent()
    }

    /// The devbox's egress policy.
    @Sendable func network(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return try JSONIO.response(try await reads.network(try context.requirePrincipal(), id: id))
    }

    /// Replaces the egress policy (the whole object; absent fields take their defaults).
    @Sendable func setNetwork(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let body = try await JSONIO.decode(DevboxNetwork.self, from: request)
        return try JSONIO.response(try await runtime.setNetwork(principal, id: id, body))
    }

    @Sendable func operations(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let ops = try await reads.operations(try context.requirePrincipal(), id: id)
        return try JSONIO.response(OperationList(operations: ops))
    }

    @Sendable func repositories(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let repos = try await reads.devboxRepositories(try context.requirePrincipal(), id: id)
        return try JSONIO.response(RepositoryList(repositories: repos))
    }
}
