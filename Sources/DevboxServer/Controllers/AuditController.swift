import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird

/// `GET /api/v1/audit`: the audit log, newest first, in pages (`limit` 1–500, default 100;
/// `cursor` = a previous answer's `next_cursor`), filtered by `devbox_id`, `action` (a name
/// such as `devbox.create`, or a prefix such as `devbox`) and `since` (RFC 3339). A caller
/// with only a provider token sees its provider's events; with a user bearer token, only
/// that user's. Produces 422 naming the bad parameter.
struct AuditController {
    let auditor: Auditor

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .get, "/api/v1/audit", use: list)
    }

    struct Page: Encodable {
        var events: [AuditEvent]
        var nextCursor: String?
        enum CodingKeys: String, CodingKey { case events, nextCursor = "next_cursor" }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(events, forKey: .events)
            try c.encode(nextCursor, forKey: .nextCursor)
        }
    }

    /// RFC 3339 with a numeric offset or Z, with or without fractions, either case of T/Z.
    static func rfc3339(_ s: String) -> Date? {
        let t = s.uppercased()
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: t) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: t)
    }

    @Sendable func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let q = request.uri.queryParameters
        var limit: Int?
        if let t = q.get("limit") {
            guard let n = Int(t) else {
                throw ServiceError.validation(field: "limit", message: "limit must be a whole number between 1 and 500")
            }
            limit = n
        }
        var since: Date?
        if let t = q.get("since") {
            guard let d = DevboxJSON.parseDate(t) ?? Self.rfc3339(t) else {
                throw ServiceError.validation(field: "since", message: "since must be an RFC 3339 time such as 2026-01-31T12:00:00Z")
            }
            since = d
        }
        if let id = q.get("devbox_id"), id.unicodeScalars.isEmpty || id.unicodeScalars.count > 64 {
            throw ServiceError.validation(field: "devbox_id", message: "devbox_id must be 1 to 64 characters")
        }
        let r = try await auditor.auditEvents(
            principal, userScoped: request.headers[.authorization] != nil, devboxId: q.get("devbox_id"),
            action: q.get("action"), since: since, cursor: q.get("cursor"), limit: limit)
        return try JSONIO.response(Page(events: r.events, nextCursor: r.next))
    }
}
