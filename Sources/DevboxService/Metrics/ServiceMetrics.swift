import CoreMetrics
import DevboxModel
import DevboxRuntime
import Foundation
import GRDB
import Synchronization

/// The service layer's instruments (issue 24), made through swift-metrics' API with the
/// factory the server hands in (Prometheus's registry in `devbox serve`; a no-op one when
/// none is given, as in most tests). Every instrument is made once, here: the hot paths
/// only increment or record. Labels are bounded sets (steps, outcomes), never devbox ids.
public final class ServiceMetrics: Sendable {
    public let factory: any MetricsFactory
    /// `devbox_provision_step_duration_seconds{step}`: each step that ran, by operation kind.
    private let stepDurations: [OperationKind: CoreMetrics.Timer]
    /// `devbox_provisioning_failures_total{step}`: devboxes that failed, by the failed step.
    private let failures: [OperationKind: Counter]
    /// `devbox_create_to_ready_seconds`: from the create's record to `ready`.
    private let createToReady: CoreMetrics.Timer
    /// `devbox_warm_pool_hits_total` / `_misses_total`: creates that took a pooled box or started one.
    private let warmHits: Counter
    private let warmMisses: Counter

    /// `devbox_mcp_tool_calls_total{tool,error}` and `devbox_broker_requests_total{api,status}`,
    /// made on first use of a label set (both sets are bounded: tool names the server knows,
    /// outcomes, two APIs, status codes).
    private let labeled = Mutex<[String: Counter]>([:])
    private let mcpDurations = Mutex<[String: CoreMetrics.Timer]>([:])

    public init(factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.factory = factory
        var steps: [OperationKind: CoreMetrics.Timer] = [:]
        var fails: [OperationKind: Counter] = [:]
        for kind in OperationKind.allCases {
            steps[kind] = CoreMetrics.Timer(
                label: "devbox_provision_step_duration_seconds", dimensions: [("step", kind.rawValue)], factory: factory)
            fails[kind] = Counter(
                label: "devbox_provisioning_failures_total", dimensions: [("step", kind.rawValue)], factory: factory)
        }
        stepDurations = steps
        failures = fails
        createToReady = CoreMetrics.Timer(label: "devbox_create_to_ready_seconds", dimensions: [], factory: factory)
        warmHits = Counter(label: "devbox_warm_pool_hits_total", dimensions: [], factory: factory)
        warmMisses = Counter(label: "devbox_warm_pool_misses_total", dimensions: [], factory: factory)
    }

    func stepRan(_ kind: OperationKind, _ duration: Duration) {
        stepDurations[kind]?.recordNanoseconds(Self.nanoseconds(duration))
    }

    func provisioningFailed(_ kind: OperationKind) { failures[kind]?.increment() }

    func becameReady(createdAt: Date, now: Date = Date()) {
        let seconds = max(0, now.timeIntervalSince(createdAt))
        createToReady.recordNanoseconds(Int64(seconds * 1e9))
    }

    func warmPool(hit: Bool) { (hit ? warmHits : warmMisses).increment() }

    /// One MCP `tools/call`: `tool` is nil for a name the server does not know (counted as
    /// "unknown"); `error` is "none", "tool_error" (a result with isError), "invalid_params"
    /// or "internal".
    public func mcpToolCall(tool: String?, error: String, duration: Duration) {
        let name = tool ?? "unknown"
        counter("devbox_mcp_tool_calls_total", [("tool", name), ("error", error)]).increment()
        let timer = mcpDurations.withLock { t in
            if let found = t[name] { return found }
            let made = CoreMetrics.Timer(
                label: "devbox_mcp_tool_call_duration_seconds", dimensions: [("tool", name)], factory: factory)
            t[name] = made
            return made
        }
        timer.recordNanoseconds(Self.nanoseconds(duration))
    }

    /// One request to the AI-API broker: `api` is "anthropic", "openai" or "other".
    public func brokerRequest(api: String, status: Int) {
        counter("devbox_broker_requests_total", [("api", api), ("status", String(status))]).increment()
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        let key = label + dimensions.map { "|" + $0.0 + "=" + $0.1 }.joined()
        return labeled.withLock { c in
            if let found = c[key] { return found }
            let made = Counter(label: label, dimensions: dimensions, factory: factory)
            c[key] = made
            return made
        }
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }
}

/// What the metrics endpoint reads at scrape time (gauges of the current state, not counted
/// as things happen): cheap reads, one SQL query.
public struct ServiceGauges: Sendable {
    /// Devboxes by state, every state present (0 when none).
    public var devboxesByState: [DevboxState: Int]
    public var warmPoolTarget: Int
    public var warmPoolReady: Int
    /// The database's files (main, WAL) in bytes.
    public var databaseBytes: Int64
    /// Free bytes for an unprivileged writer on the data directory's file system.
    public var dataDirectoryFreeBytes: Int64
}

/// Reads the scrape-time gauges: devboxes by state, the warm pool, the database's size and
/// the data directory's free space.
public struct GaugeReader: Sendable {
    let db: AppDatabase
    let sandbox: any BoxRuntime

    public init(database: AppDatabase, runtime: any BoxRuntime) {
        self.db = database
        self.sandbox = runtime
    }

    /// The current values of the scrape-time gauges.
    public func metricGauges() async throws -> ServiceGauges {
        var byState = Dictionary(uniqueKeysWithValues: DevboxState.allCases.map { ($0, 0) })
        for (state, n) in try await db.devboxCountsByState() { byState[state] = n }
        let pool = sandbox.warmPool()
        let dbPath = db.path
        var dbBytes: Int64 = 0
        for suffix in ["", "-wal"] {
            var st = stat()
            if stat(dbPath + suffix, &st) == 0 { dbBytes += Int64(st.st_size) }
        }
        let dir = (dbPath as NSString).deletingLastPathComponent
        var fs = statvfs()
        let free: Int64 = statvfs(dir, &fs) == 0 ? Int64(fs.f_bavail) * Int64(fs.f_frsize) : 0
        return ServiceGauges(
            devboxesByState: byState, warmPoolTarget: pool.target, warmPoolReady: pool.idle, databaseBytes: dbBytes,
            dataDirectoryFreeBytes: free)
    }
}

extension AppDatabase {
    /// How many devbox records are in each state (destroyed ones until they are purged).
    func devboxCountsByState() async throws -> [(DevboxState, Int)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM devboxes GROUP BY state").compactMap { row in
                guard let s = DevboxState(rawValue: row["state"]) else { return nil }
                return (s, row["n"])
            }
        }
    }
}
