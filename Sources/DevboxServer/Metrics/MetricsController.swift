import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// `GET /metrics` (issue 24), Prometheus's text format, in two places:
/// - on the API listener, behind the provider token like the rest of the API (the figures
///   are the whole service's, every provider's: give the token of an operator's provider);
/// - on `DEVBOX_METRICS_ADDR` (e.g. 127.0.0.1:9464), a listener of its own with no auth and
///   nothing else on it, for a Prometheus on the same host or network (bind it to loopback
///   or a private interface: anyone who reaches it reads the figures).
struct MetricsController {
    let gauges: GaugeReader
    let metrics: DevboxMetrics

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .get, "/metrics", use: scrape)
    }

    @Sendable func scrape(_ request: Request, context: AppRequestContext) async throws -> Response {
        _ = try context.requirePrincipal()
        return await Self.exposition(gauges: gauges, metrics: metrics)
    }

    static func exposition(gauges: GaugeReader, metrics: DevboxMetrics) async -> Response {
        let bytes = await metrics.render(gauges: gauges)
        return Response(
            status: .ok, headers: [.contentType: DevboxMetrics.contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The unauthenticated listener of `DEVBOX_METRICS_ADDR`: `/metrics` only (404 otherwise).
    static func listener(
        gauges: GaugeReader, metrics: DevboxMetrics, host: String, port: Int, logger: Logger
    ) -> some Service {
        let router = Router()
        router.get("/metrics") { _, _ in await exposition(gauges: gauges, metrics: metrics) }
        var quiet = logger
        quiet.logLevel = .critical
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                logger.notice("metrics listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
            },
            logger: quiet)
    }
}
