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
