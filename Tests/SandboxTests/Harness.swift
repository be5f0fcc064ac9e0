import Foundation
import Logging
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// One runtime per test, with its own id prefix and state directory, so tests can run
/// in parallel and each sweeps exactly what it made.
struct Harness {
    static let runTag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    let runtime: CrunRuntime
    let prefix: String
    let state: String

    init(_ tag: String, hidden: [String] = []) throws {
        prefix = "dbxt\(Harness.runTag)\(tag)-"
        state = "/var/lib/\(prefix)state"
        var logger = Logger(label: "sandbox-test")
        logger.logLevel = .warning
        runtime = CrunRuntime(configuration: SandboxConfiguration(stateDirectory: state, idPrefix: prefix, hiddenHostPaths: hidden),
                              logger: logger)
        try runtime.prepareHost()
    }

    static let limits = BoxLimits(memoryBytes: 256 << 20, cpus: 1, pids: 256)

    func create(_ id: String, env: [String: String] = [:], limits: BoxLimits = Harness.limits) async throws {
        try await runtime.create(id: id, limits: limits, env: env)
    }

    func sh(_ id: String, _ script: String, stdin: [UInt8]? = nil, timeout: Duration? = .seconds(20),
            limit: Int = 1 << 20, merge: Bool = false, env: [String: String] = [:]) async throws -> BoxExecResult {
        try await runtime.exec(id: id, BoxProcessSpec(argv: ["/bin/sh", "-c", script], env: env), stdin: stdin,
                               timeout: timeout, outputLimit: limit, mergeStderr: merge)
    }

    /// Sweeps everything with our prefix and checks nothing is left anywhere.
    func cleanup() async {
        await runtime.stopWarmPool()
        _ = await runtime.sweep(keeping: [])
        let left = await onDedicatedThread { [self] () -> [String] in
            _ = rmdir(state)
            return leftovers()
        }
        #expect(left == [], "leftovers after sweep")
    }

    func leftovers() -> [String] {
        var found: [String] = []
        if let list = try? runCommandBlocking(runtime.crun, ["crun", "list", "-q"]) {
            found += list.stdoutText.split(separator: "\n").map(String.init).filter { $0.hasPrefix(prefix) }.map { "crun:\($0)" }
        }
        found += HostState.mounts().map(\.mountPoint).filter { $0.contains(prefix) }.map { "mount:\($0)" }
        for root in HostState.cgroupRoots() {
            let parent = root + "/" + runtime.cgroupParent
            guard access(parent, F_OK) == 0 else { continue }
            found.append("cgroupparent:\(parent)")
            for name in MaskPlan.listDirectory(parent) where name.hasPrefix(prefix) { found.append("cgroup:\(parent)/\(name)") }
        }
        if access(state, F_OK) == 0 { found += MaskPlan.listDirectory(state).map { "dir:\($0)" } }
        return found
    }
}

/// The harness is built (`prepareHost`: mounts, a host scan) and checked for leftovers
/// (`crun list`) on a thread of its own: blocking calls on Swift's cooperative pool (two
/// threads here) would stall every other test's tasks, and timing tests with them.
func withHarness(_ tag: String, hidden: [String] = [], _ body: (Harness) async throws -> Void) async throws {
    let h = try await onDedicatedThread { try Harness(tag, hidden: hidden) }
    do {
        try await body(h)
    } catch {
        await h.cleanup()
        throw error
    }
    await h.cleanup()
}

extension BoxExecResult {
    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
}
