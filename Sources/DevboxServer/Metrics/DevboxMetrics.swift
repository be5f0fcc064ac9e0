import CoreMetrics
import DevboxModel
import DevboxService
import Foundation
import Prometheus
import SSHGateway
import Synchronization

/// The service's Prometheus metrics (issue 24): one registry per running service (not
/// swift-metrics' process-wide bootstrap, so tests can run several services in one process).
/// Instruments are made through swift-metrics' API with `factory`; `GET /metrics` and the
/// `DEVBOX_METRICS_ADDR` listener render the registry in Prometheus's text format.
///
/// Counters and histograms move as things happen (HTTP middleware, provisioning, MCP, broker);
/// the gauges of current state (devboxes by state, warm pool, SSH connections, database size,
/// free disk) are read when a scrape asks, so no hot path pays for them.
public final class DevboxMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: DocumentedPrometheusFactory

    private let byState: [DevboxState: CoreMetrics.Gauge]
    private let warmTarget: CoreMetrics.Gauge
    private let warmReady: CoreMetrics.Gauge
    private let sshOpen: CoreMetrics.Gauge
    private let sshAccepted: CoreMetrics.Counter
    private let databaseBytes: CoreMetrics.Gauge
    private let freeBytes: CoreMetrics.Gauge
    /// The SSH gateway's counts, once it exists; and the accepted count last mirrored into the counter.
    private let ssh = Mutex<(read: (@Sendable () -> (open: Int, accepted: UInt64))?, mirrored: UInt64)>((nil, 0))

    public init() {
        let registry = PrometheusCollectorRegistry()
        let factory = DocumentedPrometheusFactory(registry: registry)
        self.registry = registry
        self.factory = factory
        byState = Dictionary(uniqueKeysWithValues: DevboxState.allCases.map { s in
            (s, CoreMetrics.Gauge(label: "devbox_devboxes", dimensions: [("state", s.rawValue)], factory: factory))
        })
        warmTarget = CoreMetrics.Gauge(label: "devbox_warm_pool_size", factory: factory)
        warmReady = CoreMetrics.Gauge(label: "devbox_warm_pool_ready", factory: factory)
        sshOpen = CoreMetrics.Gauge(label: "devbox_ssh_connections", factory: factory)
        sshAccepted = CoreMetrics.Counter(label: "devbox_ssh_connections_total", factory: factory)
        databaseBytes = CoreMetrics.Gauge(label: "devbox_database_size_bytes", factory: factory)
        freeBytes = CoreMetrics.Gauge(label: "devbox_data_dir_free_bytes", factory: factory)
    }

    /// The service layer's instruments, made with this registry's factory.
    public func serviceMetrics() -> ServiceMetrics { ServiceMetrics(factory: factory) }

    public func attach(sshGateway gateway: SSHGateway) {
        ssh.withLock { $0.read = { [weak gateway] in gateway?.connectionCounts ?? (0, 0) } }
    }

    /// Reads the gauges of current state, then renders every metric in the text format.
    public func render(gauges: GaugeReader) async -> [UInt8] {
        if let g = try? await gauges.metricGauges() {
            for (state, gauge) in byState { gauge.record(g.devboxesByState[state] ?? 0) }
            warmTarget.record(g.warmPoolTarget)
            warmReady.record(g.warmPoolReady)
            databaseBytes.record(g.databaseBytes)
            freeBytes.record(g.dataDirectoryFreeBytes)
        }
        let delta: UInt64? = ssh.withLock { s in
            guard let read = s.read else { return nil }
            let now = read()
            sshOpen.record(now.open)
            let d = now.accepted >= s.mirrored ? now.accepted - s.mirrored : 0
            s.mirrored = max(s.mirrored, now.accepted)
            return d
        }
        if let delta, delta > 0 { sshAccepted.increment(by: Int64(delta)) }
        return registry.emitToBuffer()
    }

    /// The registry's current text, without refreshing the scrape-time gauges (tests).
    func exposition() -> String { registry.emitToString() }

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// swift-prometheus's registry as a swift-metrics factory, as `PrometheusMetricsFactory` is,
/// plus each metric's `# HELP` text and histogram buckets (both from the tables below, by
/// name). Timers are duration histograms in seconds; recorders with `aggregate` value
/// histograms, without it gauges.
public struct DocumentedPrometheusFactory: MetricsFactory, Sendable {
    let registry: PrometheusCollectorRegistry

    static let help: [String: String] = [
        "devbox_http_requests_total": "HTTP requests answered, by method, route pattern and status.",
        "devbox_http_request_duration_seconds": "Time to the response's head, by method, route pattern and status.",
        "devbox_devboxes": "Devbox records by state (destroyed ones until they are purged).",
        "devbox_provision_step_duration_seconds": "Duration of each provisioning step that ran, by step.",
        "devbox_create_to_ready_seconds": "From a devbox's create to its ready state.",
        "devbox_provisioning_failures_total": "Devboxes whose provisioning failed, by the step that failed.",
        "devbox_warm_pool_size": "Boxes the warm pool keeps started (its target).",
        "devbox_warm_pool_ready": "Started boxes waiting in the warm pool now.",
        "devbox_warm_pool_hits_total": "Creates that took a box from the warm pool.",
        "devbox_warm_pool_misses_total": "Creates that started a box because the warm pool had none.",
        "devbox_ssh_connections": "Open TCP connections to the SSH gateway.",
        "devbox_ssh_connections_total": "TCP connections the SSH gateway accepted.",
        "devbox_mcp_tool_calls_total": "MCP tools/call requests, by tool and error (none, tool_error, invalid_params, internal).",
        "devbox_mcp_tool_call_duration_seconds": "Duration of MCP tools/call requests, by tool.",
        "devbox_broker_requests_total": "Requests to the AI-API broker, by API and status.",
        "devbox_database_size_bytes": "Size of the SQLite database (main file and WAL).",
        "devbox_data_dir_free_bytes": "Free bytes on the data directory's file system.",
    ]

    static let requestBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    static let stepBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(120), .seconds(300),
    ]

    /// The metric's name as given (no unit suffix added) and its help line.
    static func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? "")
    }

    static func buckets(_ name: String) -> [Duration] {
        name == "devbox_http_request_duration_seconds" ? requestBuckets : stepBuckets
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(
            descriptor: Self.descriptor(label), labels: dimensions, buckets: [0.001, 0.01, 0.1, 1, 10, 100, 1000])
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: Self.descriptor(label), labels: dimensions, buckets: Self.buckets(label))
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }
    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        if let h = handler as? ValueHistogram { registry.unregisterValueHistogram(h) }
    }
    public func destroyMeter(_ handler: any MeterHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
    }
    public func destroyTimer(_ handler: any TimerHandler) {
        if let h = handler as? DurationHistogram { registry.unregisterDurationHistogram(h) }
    }
}
