import DevboxModel
import DevboxService
import DevboxTools
import Foundation
import HTTPTypes
import Hummingbird

/// Snapshots (issue 23): `POST /api/v1/devboxes/:id/snapshots`, `GET /api/v1/snapshots`,
/// `GET|DELETE /api/v1/snapshots/:id` (id or name), `POST /api/v1/devboxes/:id/fork`.
struct SnapshotsController {
    let commands: DevboxCommands
    let snapshots: SnapshotService

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/api/v1/devboxes/:id/snapshots", use: create)
        router.route(table, .post, "/api/v1/devboxes/:id/fork", use: fork)
        router.route(table, .get, "/api/v1/snapshots", use: list)
        router.route(table, .get, "/api/v1/snapshots/:id", use: get)
        router.route(table, .delete, "/api/v1/snapshots/:id", use: delete)
    }

    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let body = try await JSONIO.decode(CreateSnapshotRequest.self, from: request, limit: 64 * 1024)
        let snapshot = try await snapshots.createSnapshot(principal, devboxId: id, name: body.name)
        return try JSONIO.response(snapshot, status: .created)
    }

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        try JSONIO.response(SnapshotList(snapshots: try await snapshots.listSnapshots(try context.requirePrincipal())))
    }

    @Sendable func get(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return try JSONIO.response(try await snapshots.snapshot(try context.requirePrincipal(), idOrName: id))
    }

    @Sendable func delete(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        try await snapshots.deleteSnapshot(try context.requirePrincipal(), idOrName: id)
        return JSONIO.noContent()
    }

    /// 201 `{"snapshot": {...}, "devboxes": [...]}`: the devboxes as GET answers them (state requested).
    @Sendable func fork(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let body = try await JSONIO.decode(ForkDevboxRequest.self, from: request, limit: 64 * 1024)
        let tokens = InjectionTokens(
            claudeToken: request.headers[HTTPField.Name("X-Claude-Token")!],
            codexToken: request.headers[HTTPField.Name("X-Codex-Token")!])
        let r = try await commands.forkDevbox(principal, devboxId: id, body, tokens: tokens)
        var out = Array(#"{"snapshot":"#.utf8)
        out += Array(try JSONIO.encoder.encode(r.snapshot))
        out += Array(#","devboxes":["#.utf8)
        for (i, d) in r.devboxes.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += DevboxWireJSON.devbox(d)
        }
        out += Array("]}".utf8)
        return JSONIO.rawJSON(out, status: .created)
    }
}
