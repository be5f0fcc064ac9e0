import Foundation
import Logging
import Testing

@testable import DevboxServer

@Suite("OpenAPI document")
struct OpenAPITests {
    @Test("every registered route is documented and every documented route exists")
    func routesMatchDocument() async throws {
        try await withTestSystem("openapi") { system, _ in try check(system) }
    }

    private func check(_ system: DevboxSystem) throws {
        _ = buildRouter(system: system)
        var registered = Set(system.routes.entries.map { "\($0.method) \($0.path)" })
        registered.insert("get /healthz")
        registered.insert("get /openapi.json")

        let doc = try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any]
        let paths = try #require(doc?["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, item) in paths {
            for method in item.keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                documented.insert("\(method) \(path)")
            }
        }
        #expect(registered.subtracting(documented).isEmpty, "undocumented routes: \(registered.subtracting(documented).sorted())")
        #expect(documented.subtracting(registered).isEmpty, "documented but missing: \(documented.subtracting(registered).sorted())")
        #expect((doc?["openapi"] as? String)?.hasPrefix("3.1") == true)

        // Dashboard routes are explicitly not API: none is documented, none is under /api/ or /mcp.
        let dashboard = Set(system.routes.dashboardEntries.map { "\($0.method) \($0.path)" })
        #expect(dashboard.contains("get /") && dashboard.contains("post /login") && dashboard.contains("get /devboxes/{id}"))
        #expect(dashboard.isDisjoint(with: documented), "dashboard routes in openapi.json: \(dashboard.intersection(documented).sorted())")
        #expect(dashboard.isDisjoint(with: registered))
        #expect(!system.routes.dashboardEntries.contains { $0.path.hasPrefix("/api/") || $0.path.hasPrefix("/mcp") })
    }
}
