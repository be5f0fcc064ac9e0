import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird

/// Snapshots (issue 23): the list with sizes and delete, and the devbox page's snapshot and
/// fork forms. The same service calls as `/api/v1`, in process.
extension DashboardController {
    @Sendable func snapshots(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let s = try await signedIn(request) else { return Web.redirect("/login") }
        return try await page(s.csrfToken) {
            Web.html(SnapshotsPage.render(snapshots: try await snapshots.listSnapshots(s.principal), csrf: s.csrfToken, notice: Self.notice(request)))
        }
    }

    @Sendable func deleteSnapshot(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let s: DashboardSession
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, _): s = a
            }
            do {
                try await snapshots.deleteSnapshot(s.principal, idOrName: Self.param(context, "id"))
            } catch let error as ServiceError where error.statusCode == 409 {
                let list = try await snapshots.listSnapshots(s.principal)
                return Web.html(
                    SnapshotsPage.render(snapshots: list, csrf: s.csrfToken, notice: nil, error: error.message), status: .conflict)
            }
            return Web.redirect("/snapshots?notice=snapshot_deleted")
        }
    }

    @Sendable func createSnapshot(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let id = Self.param(context, "id")
            let name = (form["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            do {
                _ = try await snapshots.createSnapshot(s.principal, devboxId: id, name: name)
                return Web.redirect("/snapshots?notice=snapshot_created")
            } catch let error as ServiceError where [400, 409, 422, 503, 507].contains(error.statusCode) {
                // A taken name (409 naming it) belongs to the name field too.
                let aboutName = error.field == "name" || (error.statusCode == 409 && error.message.contains("'\(name)'"))
                let field = aboutName ? "snapshot_name" : "snapshot"
                return try await devboxPageAgain(s, id: id, errors: [field: error.message], status: error.statusCode)
            }
        }
    }

    @Sendable func forkDevbox(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let id = Self.param(context, "id")
            guard let count = Int((form["count"] ?? "").trimmingCharacters(in: .whitespaces)) else {
                return try await devboxPageAgain(
                    s, id: id, errors: ["fork_count": "Enter how many devboxes to fork (1 to 32)."], status: 422)
            }
            let name = (form["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            let fork = ForkDevboxRequest(count: count, name: name.isEmpty ? nil : name, copyEnv: form.isOn("copy_env"))
            do {
                // The dashboard sends no AI tokens: the forks get none (never the original's).
                _ = try await commands.forkDevbox(s.principal, devboxId: id, fork, tokens: InjectionTokens())
                return Web.redirect("/?notice=forked")
            } catch let error as ServiceError where [400, 409, 422, 503, 507].contains(error.statusCode) {
                let field: String
                switch error.field {
                case "count": field = "fork_count"
                case "name": field = "fork_name"
                default: field = "snapshot"
                }
                return try await devboxPageAgain(s, id: id, errors: [field: error.message], status: error.statusCode)
            }
        }
    }

    func devboxPageAgain(_ s: DashboardSession, id: String, errors: [String: String], status: Int) async throws -> Response {
        var m = try await devboxModel(s, id: id)
        m.errors = errors
        return Web.html(DevboxPage.render(m, csrf: s.csrfToken, notice: nil), status: HTTPResponse.Status(code: status))
    }
}
