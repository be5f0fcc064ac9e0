import Hummingbird

/// Records every API route as it is registered, so a test can hold the router and
/// `openapi.json` to each other.
public final class RouteTable: @unchecked Sendable {
    public struct Entry: Hashable, Sendable {
        public var method: String
        /// OpenAPI spelling: `/api/v1/devboxes/{id}`.
        public var path: String
    }
    public private(set) var entries: [Entry] = []
    /// The dashboard's HTML pages, forms, assets and cookie-authenticated JSON: not part of
    /// the API, deliberately absent from `openapi.json` (docs/DASHBOARD.md lists them).
    public private(set) var dashboardEntries: [Entry] = []

    func recordDashboard(_ method: HTTPRequest.Method, _ path: String) {
        record(method, path)
        dashboardEntries.append(entries.removeLast())
    }

    func record(_ method: HTTPRequest.Method, _ path: String) {
        let openAPIPath = path.split(separator: "/").map { seg -> String in
            seg.hasPrefix(":") ? "{\(seg.dropFirst())}" : String(seg)
        }.joined(separator: "/")
        entries.append(Entry(method: method.rawValue.lowercased(), path: "/" + openAPIPath))
    }
}

extension RouterMethods {
    /// Registers a route and records it in `table`.
    @discardableResult
    func route(
        _ table: RouteTable, _ method: HTTPRequest.Method, _ path: String,
        use handler: @Sendable @escaping (Request, Context) async throws -> Response
    ) -> Self {
        table.record(method, path)
        return on(RouterPath(path), method: method, use: handler)
    }
}

extension RouterMethods {
    /// Registers a dashboard route and records it in `table` as a non-API route.
    @discardableResult
    func dashboardRoute(
        _ table: RouteTable, _ method: HTTPRequest.Method, _ path: String,
        use handler: @Sendable @escaping (Request, Context) async throws -> Response
    ) -> Self {
        table.recordDashboard(method, path)
        return on(RouterPath(path), method: method, use: handler)
    }
}
