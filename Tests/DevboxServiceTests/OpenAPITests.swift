import Foundation
import Logging
import DevboxTestSupport
import Testing

@testable import DevboxServer

@Suite("OpenAPI document")
struct OpenAPITests {
    @Test("every registered route is documented and every documented route exists")
    func routesMatchDocument() async throws {
        try await withFastSystem { fast in try check(fast.system) }
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

        // The answers every operation of a kind gives are documented (schemathesis checks the
        // rest against a running server: Tests/e2e/test_openapi_fuzz.py).
        let defaultSecurity = (doc?["security"] as? [Any]) ?? []
        var missing: [String] = []
        for (path, item) in paths {
            for (method, value) in item where ["get", "post", "put", "delete", "patch", "head", "options"].contains(method) {
                guard let op = value as? [String: Any], let responses = op["responses"] as? [String: Any] else {
                    missing.append("\(method) \(path): responses"); continue
                }
                let security = (op["security"] as? [Any]) ?? defaultSecurity
                if !security.isEmpty, responses["401"] == nil { missing.append("\(method) \(path): 401") }
                if path.contains("{id}"), responses["404"] == nil { missing.append("\(method) \(path): 404") }
                let body = (op["requestBody"] as? [String: Any])?["content"] as? [String: Any]
                if body?["application/json"] != nil, path != "/mcp" {
                    if responses["400"] == nil { missing.append("\(method) \(path): 400") }
                    if responses["422"] == nil { missing.append("\(method) \(path): 422") }
                }
            }
        }
        #expect(missing.isEmpty, "undocumented answers: \(missing.sorted())")
    }

    @Test("an unknown method on a known path is 405 with Allow; an unknown path stays 404")
    func methodNotAllowed() async throws {
        try await withFastSystem { fast in
            let system = fast.system
            _ = buildRouter(system: system)
            #expect(system.routes.methods(forPath: "/healthz") == ["GET"])
            #expect(system.routes.methods(forPath: "/api/v1/devboxes") == ["GET", "POST"])
            #expect(system.routes.methods(forPath: "/api/v1/devboxes/dbx_1") == ["DELETE", "GET"])
            #expect(system.routes.methods(forPath: "/api/v1/devboxes/dbx_1/network/") == ["GET", "PATCH"])
            #expect(system.routes.methods(forPath: "/api/v1/devboxes/dbx_1/ports/80/a/b").contains("POST"))
            #expect(system.routes.methods(forPath: "/api/v1/nothing").isEmpty)
            #expect(system.routes.methods(forPath: "/api/v1/devboxes/dbx_1/nothing").isEmpty)
        }
    }
}
