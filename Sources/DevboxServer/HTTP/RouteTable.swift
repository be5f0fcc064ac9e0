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

    /// Registered outside the table (`HealthController`): known here so an unknown method on
    /// them answers 405 too.
    static let unrecorded: [Entry] = [Entry(method: "get", path: "/healthz"), Entry(method: "get", path: "/openapi.json")]

    /// The methods registered for a concrete request path (upper case, sorted), or none when
    /// no route has that path. `{name}` matches one segment; a trailing `{path}` (the port
    /// proxy's catch-all) matches one or more.
    public func methods(forPath requestPath: String) -> [String] {
        let segs = requestPath.split(separator: "/", omittingEmptySubsequences: true)
        var found = Set<String>()
        for e in entries + dashboardEntries + Self.unrecorded where Self.matches(e.path, segs) {
            found.insert(e.method.uppercased())
        }
        return found.sorted()
    }

    static func matches(_ pattern: String, _ segs: [Substring]) -> Bool {
        let pat = pattern.split(separator: "/", omittingEmptySubsequences: true)
        if let last = pat.last, last == "{path}", pat.count >= 1, segs.count >= pat.count {
            return zip(pat.dropLast(), segs).allSatisfy { p, s in p.hasPrefix("{") || p == s }
        }
        guard pat.count == segs.count else { return false }
        return zip(pat, segs).allSatisfy { p, s in p.hasPrefix("{") || p == s }
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
