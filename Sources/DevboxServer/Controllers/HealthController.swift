import DevboxService
import Foundation
import Hummingbird

/// `GET /healthz` and `GET /openapi.json`, both without auth. Health also says how full
/// the warm pool is (`size` boxes kept started, `ready` of them now).
struct HealthController {
    let images: ImageService

    func register(on router: Router<AppRequestContext>) {
        router.get("/healthz") { [images] _, _ in
            let pool = images.warmPool()
            // Readiness: 503 while the default image is still being built (or could not be).
            let image = images.imageHealth()
            var imageJSON: [String: String] = ["name": image.name, "state": image.state]
            if let d = image.detail { imageJSON["detail"] = d }
            let imageText = String(decoding: (try? JSONEncoder().encode(imageJSON)) ?? Data("{}".utf8), as: UTF8.self)
            let status = image.state == "ready" ? "ok" : image.state == "building" ? "building_image" : "image_failed"
            return JSONIO.rawJSON(
                Data(#"{"status":"\#(status)","image":\#(imageText),"warm_pool":{"size":\#(pool.target),"ready":\#(pool.idle)}}"#.utf8),
                status: image.state == "ready" ? .ok : .serviceUnavailable)
        }
        router.get("/openapi.json") { _, _ in
            JSONIO.rawJSON(Data(OpenAPIDocument.json.utf8))
        }
    }
}
