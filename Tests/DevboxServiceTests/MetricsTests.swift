import Foundation
import HTTPTypes
import Testing

@testable import DevboxServer
@testable import DevboxService

/// Issue 24: the Prometheus registry as the middleware and the service layer fill it, and
/// what one request costs the hot path.
@Suite("Metrics")
struct MetricsTests {
    @Test("HTTP requests are counted by method, route pattern and status; invented methods fold into OTHER")
    func httpCounts() {
        let metrics = DevboxMetrics()
        let http = HTTPInstruments(factory: metrics.factory)
        for _ in 0..<3 {
            http.record(method: .post, route: "/api/v1/devboxes", status: 202, elapsed: .milliseconds(3))
        }
        http.record(method: .get, route: "/api/v1/devboxes/{id}", status: 404, elapsed: .microseconds(400))
        http.record(method: HTTPRequest.Method("BREW")!, route: nil, status: 405, elapsed: .microseconds(100))
        http.record(method: HTTPRequest.Method("MEOW")!, route: nil, status: 405, elapsed: .microseconds(100))
        let text = metrics.exposition()
        #expect(text.contains(#"devbox_http_requests_total{method="POST",route="/api/v1/devboxes",status="202"} 3"#))
        #expect(text.contains(#"devbox_http_requests_total{method="GET",route="/api/v1/devboxes/{id}",status="404"} 1"#))
        #expect(text.contains(#"devbox_http_requests_total{method="OTHER",route="unmatched",status="405"} 2"#))
        #expect(!text.contains("BREW") && !text.contains("MEOW"))
        #expect(text.contains(#"devbox_http_request_duration_seconds_bucket{method="POST",route="/api/v1/devboxes",status="202",le="0.005"} 3"#))
        #expect(text.contains("# HELP devbox_http_requests_total "))
        #expect(text.contains("# TYPE devbox_http_request_duration_seconds histogram"))
    }

    @Test("provisioning, MCP and broker instruments land in the same registry")
    func serviceInstruments() {
        let metrics = DevboxMetrics()
        let s = metrics.serviceMetrics()
        s.stepRan(.provision, .milliseconds(12))
        s.provisioningFailed(.runSetupCommands)
        s.warmPool(hit: true)
        s.warmPool(hit: false)
        s.warmPool(hit: false)
        s.becameReady(createdAt: Date(timeIntervalSinceNow: -0.2))
        s.mcpToolCall(tool: "get_devbox", error: "none", duration: .milliseconds(2))
        s.mcpToolCall(tool: nil, error: "invalid_params", duration: .milliseconds(1))
        s.brokerRequest(api: "anthropic", status: 200)
        let text = metrics.exposition()
        #expect(text.contains(#"devbox_provision_step_duration_seconds_count{step="provision"} 1"#))
        #expect(text.contains(#"devbox_provision_step_duration_seconds_count{step="clone_repositories"} 0"#))
        #expect(text.contains(#"devbox_provisioning_failures_total{step="run_setup_commands"} 1"#))
        #expect(text.contains("devbox_warm_pool_hits_total 1"))
        #expect(text.contains("devbox_warm_pool_misses_total 2"))
        #expect(text.contains("devbox_create_to_ready_seconds_bucket{le=\"0.25\"} 1"))
        #expect(text.contains(#"devbox_mcp_tool_calls_total{tool="get_devbox",error="none"} 1"#))
        #expect(text.contains(#"devbox_mcp_tool_calls_total{tool="unknown",error="invalid_params"} 1"#))
        #expect(text.contains(#"devbox_broker_requests_total{api="anthropic",status="200"} 1"#))
    }

    @Test("two registries never share figures (one per service, not a process-wide bootstrap)")
    func separateRegistries() {
        let a = DevboxMetrics(), b = DevboxMetrics()
        _ = b.serviceMetrics()
        a.serviceMetrics().warmPool(hit: true)
        #expect(a.exposition().contains("devbox_warm_pool_hits_total 1"))
        #expect(b.exposition().contains("devbox_warm_pool_hits_total 0"))
    }

    /// What the middleware adds to one request: a cached label set's counter and histogram.
    /// Printed for the report; the bound is loose (a debug build on a shared 2-core machine).
    @Test("one request's bookkeeping costs microseconds at most")
    func hotPathCost() {
        let http = HTTPInstruments(factory: DevboxMetrics().factory)
        let n = 200_000
        let clock = ContinuousClock()
        let took = clock.measure {
            for i in 0..<n {
                http.record(method: .get, route: "/api/v1/devboxes/{id}", status: i % 50 == 0 ? 404 : 200, elapsed: .microseconds(i % 900))
            }
        }
        let ns = Double(took.components.seconds) * 1e9 + Double(took.components.attoseconds) / 1e9
        print("metrics: HTTPInstruments.record \(String(format: "%.0f", ns / Double(n))) ns per request (\(n) requests)")
        #expect(ns / Double(n) < 20_000)
    }
}
