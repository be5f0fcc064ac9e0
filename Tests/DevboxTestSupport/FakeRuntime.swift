import DevboxRuntime
import Foundation
import Synchronization

/// A box runtime for the fast tier: no crun, no root, no host state beyond one temporary
/// directory (the boxes' workspaces, for the clone step). Boxes are records in memory; setup
/// commands and execs answer what `hooks` say (default: exit 0). Every fault a real runtime
/// can show the service — a create, env write, setup command or destroy that fails, a box that
/// stops on its own, a command killed, timed out or with a lost status — is one hook away, so
/// the provisioning pipeline's branches can be driven one by one.
///
/// The fake is for the fast tier only: each branch a fast test drives this way keeps a test
/// against real crun in the integration tier (named in the fast test's comment).
public final class FakeRuntime: BoxRuntime, Sendable {
    /// A fault the fake was told to raise.
    public struct Fault: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(_ d: String) { description = d }
    }

    /// What the fake does, settable at any time (`fake.hooks.withLock { $0.create = … }`).
    public struct Hooks: Sendable {
        /// Before a create; throw to fail it.
        public var create: @Sendable (_ box: String) throws -> Void = { _ in }
        /// Before an env write; throw to fail it.
        public var writeEnv: @Sendable (_ box: String, _ env: [String: String]) throws -> Void = { _, _ in }
        /// A setup command's result (through the setup shell, or `exec` for a box without one);
        /// throw: it could not be started. May take its time (`Task.sleep`: a cancelled job
        /// cancels it, as killing a real command).
        public var setupCommand: @Sendable (_ box: String, _ command: String) async throws -> BoxExecResult = { _, _ in
            FakeRuntime.exited(0, "ok\n")
        }
        /// Before a destroy; throw to fail it.
        public var destroy: @Sendable (_ box: String) throws -> Void = { _ in }
        /// Overrides whether a box runs (nil: as the fake's records say).
        public var isRunning: (@Sendable (_ box: String) -> Bool?)? = nil
        /// Setup commands run through the box's setup shell when it was created with one
        /// (false: `runSetupCommand` answers nil, as for a box of an earlier serve, and the
        /// pipeline falls back to `exec`).
        public var setupShell = true
        /// Boxes get a network of their own (10.99.0.2, gateway 10.99.0.1; nothing is wired):
        /// egress policies and credential_mode proxy are accepted.
        public var isolatesNetworks = false
        public init() {}
    }

    /// One box as the fake keeps it.
    public struct Box: Sendable, Equatable {
        public var running: Bool
        public var env: [String: String]
        public var setupShell: Bool
        public var limits: BoxLimits
        public var files: [String: [UInt8]] = [:]
    }

    public let hooks = Mutex(Hooks())
    private let state = Mutex<(boxes: [String: Box], calls: [String])>(([:], []))
    /// The boxes' workspaces live here (one directory per box); `removeFiles()` deletes it.
    public let root: String

    public init() {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-fake-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    /// Removes the fake's temporary directory.
    public func removeFiles() { try? FileManager.default.removeItem(atPath: root) }

    /// Every call the service made, in order, as "verb box[ detail]" (e.g. "create dbx_…").
    public var calls: [String] { state.withLock { $0.calls } }
    /// The boxes that exist now.
    public var boxes: [String: Box] { state.withLock { $0.boxes } }
    /// Marks a box stopped (its processes gone) or running, as if something outside the
    /// service had done it.
    public func setRunning(_ box: String, _ running: Bool) {
        state.withLock { $0.boxes[box]?.running = running }
    }

    /// A command's result: exit code `code` with `output` (merged).
    public static func exited(_ code: Int32, _ output: String = "") -> BoxExecResult {
        BoxExecResult(
            exitCode: code, signal: nil, stdout: Array(output.utf8), stderr: [], truncated: false, timedOut: false,
            durationNanos: 1000)
    }

    private func record(_ call: String) { state.withLock { $0.calls.append(call) } }

    // MARK: BoxRuntime

    public func prepareHost() async throws { record("prepareHost") }

    public func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool {
        record("create \(box)")
        try hooks.withLock { $0.create }(box)
        try? FileManager.default.createDirectory(atPath: workspaceHostPath(box: box), withIntermediateDirectories: true)
        state.withLock { $0.boxes[box] = Box(running: true, env: env, setupShell: setupShell, limits: limits) }
        return false
    }

    public func writeEnv(box: String, env: [String: String]) async throws {
        record("writeEnv \(box) \(env.keys.sorted().joined(separator: ","))")
        try hooks.withLock { $0.writeEnv }(box, env)
        state.withLock { $0.boxes[box]?.env = env }
    }

    public func hasEnv(box: String) -> Bool { state.withLock { $0.boxes[box] != nil } }

    public func runSetupCommand(box: String, command: String, timeout: Duration, outputLimit: Int) async throws -> BoxExecResult? {
        let (viaShell, run) = hooks.withLock { ($0.setupShell, $0.setupCommand) }
        guard viaShell, state.withLock({ $0.boxes[box]?.setupShell == true }) else { return nil }
        record("setup \(box) \(command)")
        return try await run(box, command)
    }

    public func finishSetup(box: String) async { record("finishSetup \(box)") }

    public func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool, onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)?
    ) async throws -> BoxExecResult {
        record("exec \(box) \(argv.joined(separator: " "))")
        guard state.withLock({ $0.boxes[box]?.running == true }) else { throw BoxRuntimeError.notRunning(box) }
        let result: BoxExecResult
        if argv.count == 3, argv[0] == "/bin/sh", argv[1] == "-c" {
            result = try await hooks.withLock { $0.setupCommand }(box, argv[2])
        } else {
            result = Self.exited(0)
        }
        onOutput?(false, result.stdout)
        return result
    }

    public func spawn(box: String, _ spec: BoxProcessSpec) async throws -> any BoxProcess {
        throw Fault("the fake runtime runs no interactive processes")
    }

    public func stop(box: String) async throws {
        record("stop \(box)")
        state.withLock { $0.boxes[box]?.running = false }
    }

    public func start(box: String) async throws {
        record("start \(box)")
        guard state.withLock({ $0.boxes[box] != nil }) else { throw BoxRuntimeError.notFound(box) }
        state.withLock { $0.boxes[box]?.running = true }
    }

    public func destroy(box: String) async throws {
        record("destroy \(box)")
        try hooks.withLock { $0.destroy }(box)
        state.withLock { _ = $0.boxes.removeValue(forKey: box) }
        try? FileManager.default.removeItem(atPath: root + "/" + box)
    }

    public func isRunning(box: String) async -> Bool {
        if let override = hooks.withLock({ $0.isRunning }), let answer = override(box) { return answer }
        return state.withLock { $0.boxes[box]?.running == true }
    }

    public func sweep(keeping: Set<String>) async -> [String] {
        record("sweep")
        return state.withLock { s in
            let gone = s.boxes.keys.filter { !keeping.contains($0) }.sorted()
            for b in gone { s.boxes.removeValue(forKey: b) }
            return gone
        }
    }

    public func startNetworks(policies: [String: EgressPolicy]) async throws {}
    public func setEgressPolicy(box: String, _ policy: EgressPolicy) async throws {}
    public func networkInfo(box: String) -> BoxNetworkInfo? {
        guard isolatesNetworks, state.withLock({ $0.boxes[box] != nil }) else { return nil }
        return BoxNetworkInfo(address: "10.99.0.2", gateway: "10.99.0.1", hostInterface: "fake0")
    }
    public var isolatesNetworks: Bool { hooks.withLock { $0.isolatesNetworks } }
    public func connectInBox(box: String, port: UInt16) async throws -> Int32? { nil }
    public func releaseIdleResources() async {}
    public func startWarmPool(size: Int, limits: BoxLimits) async {}
    public func warmPool() -> (target: Int, idle: Int) { (0, 0) }
    public func workspaceHostPath(box: String) -> String { root + "/" + box + "/workspace" }

    public func readPath(box: String, path: String, maxBytes: Int) async throws -> BoxFileContent {
        guard let bytes = state.withLock({ $0.boxes[box]?.files[path] }) else { throw BoxFileError.notFound }
        return .file(bytes: Array(bytes.prefix(maxBytes)), mode: 0o644)
    }

    public func writeFile(box: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool {
        try state.withLock { s in
            guard s.boxes[box]?.running == true else { throw BoxRuntimeError.notRunning(box) }
            let created = s.boxes[box]?.files[path] == nil
            s.boxes[box]?.files[path] = bytes
            return created
        }
    }

    public func deletePath(box: String, path: String, recursive: Bool) async throws {
        try state.withLock { s in
            guard s.boxes[box]?.files.removeValue(forKey: path) != nil else { throw BoxFileError.notFound }
        }
    }
}
