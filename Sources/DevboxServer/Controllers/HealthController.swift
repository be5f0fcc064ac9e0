import DevboxService
import Foundation
import Hummingbird

/// `GET /healthz` and `GET /openapi.json`, both without auth. Health also says how full
/// the warm pool is (`size` boxes kept started, `ready` of them now).
struct HealthController {
    let core: DevboxCore

    func register(on router: Router<AppRequestContext>) {
        router.get("/healthz") { [core] _, _ in
            let pool = core.warmPool()
            return JSONIO.rawJSON(Data(#"{"status":"ok","warm_pool":{"size":\#(pool.target),"ready":\#(pool.idle)}}"#.utf8))
        }
        router.get("/openapi.json") { _, _ in
            JSONIO.rawJSON(Data(OpenAPIDocument.json.utf8))
        }
    }
}
