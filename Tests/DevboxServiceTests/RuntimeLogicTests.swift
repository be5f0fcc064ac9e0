import DevboxModel
import Foundation
import DevboxRuntime
import Testing

@testable import DevboxService

@Suite("Lifetimes (no I/O)")
struct LifetimeTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func clock(_ state: DevboxState = .ready, idle: Int? = 600, expires: Date? = nil, activity: TimeInterval? = 0) -> LifetimePolicy.Clock {
        LifetimePolicy.Clock(
            state: state, idleTimeoutSeconds: idle, expiresAt: expires, lastActivityAt: activity.map { t0 + $0 },
            readyAt: t0, createdAt: t0 - 30)
    }

    @Test("idle: stops a ready devbox once the timeout has fully passed since the last activity")
    func idle() {
        #expect(LifetimePolicy.decide(clock(), now: t0 + 599, liveConnections: 0) == .none)
        #expect(LifetimePolicy.decide(clock(), now: t0 + 600, liveConnections: 0) == .stop)
        #expect(LifetimePolicy.decide(clock(activity: 500), now: t0 + 700, liveConnections: 0) == .none)
        #expect(LifetimePolicy.decide(clock(idle: nil), now: t0 + 1e6, liveConnections: 0) == .none)
        // No activity recorded yet: the clock starts when it became ready.
        #expect(LifetimePolicy.decide(clock(activity: nil), now: t0 + 600, liveConnections: 0) == .stop)
    }

    @Test("an open SSH connection is activity: never idle-stopped, its clock restarts")
    func liveConnection() {
        #expect(LifetimePolicy.decide(clock(), now: t0 + 10_000, liveConnections: 1) == .touch)
    }

    @Test("only ready devboxes idle-stop; expiry destroys in any live state and wins over idleness")
    func states() {
        for s in [DevboxState.requested, .provisioning, .stopped, .failed] {
            #expect(LifetimePolicy.decide(clock(s), now: t0 + 10_000, liveConnections: 0) == .none, "\(s)")
            #expect(LifetimePolicy.decide(clock(s, expires: t0 + 5), now: t0 + 5, liveConnections: 0) == .destroy, "\(s)")
        }
        #expect(LifetimePolicy.decide(clock(expires: t0 + 5), now: t0 + 4, liveConnections: 0) == .none)
        #expect(LifetimePolicy.decide(clock(expires: t0 + 5), now: t0 + 10_000, liveConnections: 3) == .destroy)
        #expect(LifetimePolicy.decide(clock(.destroyed, expires: t0), now: t0 + 10, liveConnections: 0) == .none)
    }

    @Test("create values: absent takes the default, 0 turns off, otherwise within bounds naming the field")
    func resolve() throws {
        var s = LifetimeSettings()
        #expect(s.defaultIdleTimeoutSeconds == 3600 && s.defaultTTLSeconds == nil)
        #expect(try s.resolve(nil, default: 3600, max: 100_000, field: "idle_timeout_seconds") == 3600)
        #expect(try s.resolve(0, default: 3600, max: 100_000, field: "idle_timeout_seconds") == nil)
        #expect(try s.resolve(60, default: nil, max: 100_000, field: "ttl_seconds") == 60)
        for bad in [-1, 59, 100_001] {
            #expect(throws: ServiceError.validation(field: "ttl_seconds", message: "ttl_seconds must be 0 (off) or between 60 and 100000 seconds")) {
                try s.resolve(bad, default: nil, max: 100_000, field: "ttl_seconds")
            }
        }
        s.minimumSeconds = 2
        #expect(try s.resolve(2, default: nil, max: 100, field: "ttl_seconds") == 2)
    }

    @Test("create validation applies the lifetime defaults")
    func createDefaults() throws {
        var s = LifetimeSettings()
        s.defaultTTLSeconds = 86400
        let v = try CreateValidation.validate(CreateDevboxRequest(name: "a"), plans: Plan.defaults, defaultPlan: "small", lifetimes: s)
        #expect(v.idleTimeoutSeconds == 3600 && v.ttlSeconds == 86400)
        let off = try CreateValidation.validate(
            CreateDevboxRequest(name: "a", idleTimeoutSeconds: 0, ttlSeconds: 0), plans: Plan.defaults, defaultPlan: "small",
            lifetimes: s)
        #expect(off.idleTimeoutSeconds == nil && off.ttlSeconds == nil)
    }

    @Test("activity writes are debounced per devbox")
    func debounce() {
        let d = ActivityDebounce()
        #expect(d.shouldWrite("a", now: t0, interval: 2))
        #expect(!d.shouldWrite("a", now: t0 + 1, interval: 2))
        #expect(d.shouldWrite("b", now: t0 + 1, interval: 2))
        #expect(d.shouldWrite("a", now: t0 + 2, interval: 2))
        d.forget("a")
        #expect(d.shouldWrite("a", now: t0 + 2.5, interval: 2))
    }
}

@Suite("Box paths (no I/O)")
struct BoxPathTests {
    @Test("absolute paths normalize; '.' and empty components drop")
    func normalize() throws {
        #expect(try RuntimeService.checkPath("/workspace//a/./b/", allowRoot: false) == "/workspace/a/b")
        #expect(try RuntimeService.checkPath("/", allowRoot: true) == "/")
        #expect(try BoxPath.components("/") == [])
    }

    @Test("'..', relative paths, NUL, the root for writes and over-long paths are 422 naming path",
          arguments: ["/workspace/../etc/shadow", "..", "/..", "workspace/a", "", "/a\u{0}b", "/", "/" + String(repeating: "a", count: 256), "/" + String(repeating: "a/", count: 2100)])
    func refused(path: String) {
        do {
            _ = try RuntimeService.checkPath(path, allowRoot: false)
            Issue.record("accepted \(path)")
        } catch {
            #expect(error.statusCode == 422 && error.field == "path")
        }
    }

    @Test("octal modes print with four digits")
    func octal() {
        #expect(RuntimeService.octal(0o644) == "0644" && RuntimeService.octal(0o4755) == "4755")
    }
}

@Suite("Exec validation (no I/O)")
struct ExecValidationTests {
    @Test("a string runs through /bin/sh -c, an array is the argv")
    func argv() {
        #expect(ExecCommand.shell("echo hi").argv == ["/bin/sh", "-c", "echo hi"])
        #expect(ExecCommand.argv(["ls", "-l"]).argv == ["ls", "-l"])
    }

    @Test("command decodes from a string or an array and nothing else")
    func decode() throws {
        let d = DevboxJSON.decoder()
        #expect(try d.decode(ExecRequest.self, from: Data(#"{"command":"x"}"#.utf8)).command == .shell("x"))
        #expect(try d.decode(ExecRequest.self, from: Data(#"{"command":["a","b"]}"#.utf8)).command == .argv(["a", "b"]))
        #expect(throws: DecodingError.self) { try d.decode(ExecRequest.self, from: Data(#"{"command":5}"#.utf8)) }
        #expect(throws: DecodingError.self) { try d.decode(ExecRequest.self, from: Data(#"{"command":"x","timeout_seconds":1.5}"#.utf8)) }
    }
}

@Suite("Lifetimes storage")
struct LifetimeStorageTests {
    @Test("v3-lifetimes follows v2-github")
    func migrationOrder() {
        let m = AppDatabase.migrator.migrations
        #expect(m.firstIndex(of: "v3-lifetimes") == m.firstIndex(of: "v2-github").map { $0 + 1 })
    }
}

@Suite("In-flight execs (no I/O)")
struct InFlightTests {
    @Test("counts per devbox and never goes below zero")
    func counts() {
        let f = InFlight()
        f.begin("a"); f.begin("a"); f.begin("b")
        #expect(f.count("a") == 2 && f.count("b") == 1)
        f.end("a"); f.end("a"); f.end("a")
        #expect(f.count("a") == 0 && f.count("b") == 1 && f.count("c") == 0)
    }
}
