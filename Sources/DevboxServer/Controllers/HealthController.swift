import Foundation
import Hummingbird

/// `GET /healthz` and `GET /openapi.json`, both without auth.
struct HealthController {
    func register(on router: Router<AppRequestContext>) {
        router.get("/healthz") { _, _ in
            JSONIO.rawJSON(Data(#"{"status":"ok"}"#.utf8))
        }
        router.get("/openapi.json") { _, _ in
            JSONIO.rawJSON(Data(OpenAPIDocument.json.utf8))
        }
    }
}
