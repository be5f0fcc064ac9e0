import CoreMetrics
import HTTPTypes
import Hummingbird
import Synchronization

/// Counts every HTTP request and records its latency (issue 24):
/// `devbox_http_requests_total` and `devbox_http_request_duration_seconds`, labelled with the
/// method, the route *pattern* the router matched (`/api/v1/devboxes/{id}`, never the raw
/// path, so ids never become labels; "unmatched" when no route matched) and the status.
/// (A method the HTTP parser does not know never gets here: NIO answers 400 itself.)
/// Outermost middleware: it sees the status the error middleware chose. The duration is
/// the time to the response's head (a streamed body is not waited for).
///
/// Cost on the hot path: one clock read at each end, one lock-protected dictionary lookup
/// of the label set's (counter, histogram) pair, an atomic add and a histogram record.
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let instruments: HTTPInstruments

    init(metrics: DevboxMetrics) { instruments = HTTPInstruments(factory: metrics.factory) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            instruments.record(
                method: request.method, route: context.endpointPath, status: response.status.code,
                elapsed: ContinuousClock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            instruments.record(
                method: request.method, route: context.endpointPath, status: status, elapsed: ContinuousClock.now - start)
            throw error
        }
    }
}

/// The (counter, histogram) pair of each label set, made once.
final class HTTPInstruments: Sendable {
    struct Key: Hashable, Sendable {
        var method: String
        var route: String
        var status: Int
    }
    struct Pair: Sendable {
        let count: CoreMetrics.Counter
        let duration: CoreMetrics.Timer
    }
    let factory: any MetricsFactory
    private let pairs = Mutex<[Key: Pair]>([:])

    init(factory: any MetricsFactory) { self.factory = factory }

    /// Methods outside the standard ones are counted as "OTHER" (a client picks the method:
    /// it must not pick new series).
    static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    func record(method: HTTPRequest.Method, route: String?, status: Int, elapsed: Duration) {
        let m = method.rawValue
        // No route matched: Hummingbird leaves the path nil or says "NotFound".
        let pattern = route.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        let key = Key(method: Self.methods.contains(m) ? m : "OTHER", route: pattern, status: status)
        let pair = pairs.withLock { p in
            if let found = p[key] { return found }
            let dims = [("method", key.method), ("route", key.route), ("status", String(key.status))]
            let made = Pair(
                count: CoreMetrics.Counter(label: "devbox_http_requests_total", dimensions: dims, factory: factory),
                duration: CoreMetrics.Timer(label: "devbox_http_request_duration_seconds", dimensions: dims, factory: factory))
            p[key] = made
            return made
        }
        pair.count.increment()
        let c = elapsed.components
        pair.duration.recordNanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }
}
