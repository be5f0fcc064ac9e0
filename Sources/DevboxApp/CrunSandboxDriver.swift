import DevboxService
import Foundation
import Logging
import Sandbox

/// The crun runtime as the service's sandbox driver. The runtime names containers
/// `<prefix><devbox id>`; the prefix is derived from the data directory, so two services
/// with different data directories never sweep each other's boxes.
struct CrunSandboxDriver: SandboxDriver {
    let runtime: CrunRuntime
    let prefix: String

    init(dataDirectory: String, baseImage: String?, network: NetworkConfiguration = NetworkConfiguration(),
         logger: Logger) throws {
        let dir = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        prefix = "dx" + Self.tag(dir) + "-"
        let configuration = SandboxConfiguration(
            stateDirectory: dir + "/boxes", idPrefix: prefix, hiddenHostPaths: [dir], baseImage: baseImage,
            network: network.mode, networkRange: network.range, dnsUpstreams: network.dnsUpstreams)
        runtime = CrunRuntime(configuration: configuration, logger: logger)
    }

    /// 8 hex digits of FNV-1a over the path: stable across restarts, distinct per data dir.
    static func tag(_ s: String) -> String {
        var h: UInt32 = 2_166_136_261
        for b in s.utf8 {
            h ^= UInt32(b)
            h = h &* 16_777_619
        }
        return String(format: "%08x", h)
    }

    func prepareHost() async throws { try await runtime.prepareHostOffPool() }

    func diskSpace() -> (free: Int64, total: Int64)? {
        var st = statvfs()
        guard statvfs(runtime.configuration.stateDirectory, &st) == 0 else { return nil }
        return (Int64(st.f_bavail) * Int64(st.f_frsize), Int64(st.f_blocks) * Int64(st.f_frsize))
    }
    func prepareDisks(sizes: [Int64]) { runtime.prepareDisks(sizes: sizes) }

    func create(box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy) async throws -> Bool {
        try await create(box: box, limits: limits, env: env, setupShell: setupShell, egress: egress, image: nil)
    }

    func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool {
        try await runtime.create(
            id: box, limits: SandboxLimits(memoryBytes: limits.memoryBytes, cpus: limits.cpus, pids: limits.pids, diskBytes: limits.diskBytes),
            env: env, setupShell: setupShell, egress: egress, image: image)
    }

    func setDefaultImage(_ image: BoxImage?) { runtime.setDefaultImage(image) }

    func startNetworks(policies: [String: EgressPolicy]) async throws { try await runtime.startNetworks(policies: policies) }
    func setEgressPolicy(box: String, _ policy: EgressPolicy) async throws { try await runtime.setEgressPolicy(id: box, policy) }
    func networkInfo(box: String) -> BoxNetworkInfo? { runtime.networkInfo(id: box) }
    func offerPorts(_ ports: [UInt16]) { runtime.offerPorts(ports) }
    func isBoxAddress(_ address: String) -> Bool { runtime.isBoxAddress(address) }
    func hasEnv(box: String) -> Bool { runtime.hasEnvFile(id: box) }
    var isolatesNetworks: Bool { runtime.configuration.network == .isolated }
    func connectInBox(box: String, port: UInt16) async throws -> Int32? {
        guard runtime.networkInfo(id: box) != nil else { return nil }
        return try await runtime.connectInBox(id: box, port: port)
    }

    func runSetupCommand(box: String, command: String, timeout: Duration, outputLimit: Int) async throws -> BoxExecResult? {
        guard let o = try await runtime.runSetupCommand(id: box, command: command, timeout: timeout, outputLimit: outputLimit)
        else { return nil }
        return BoxExecResult(
            exitCode: o.exitCode, signal: o.signal, stdout: o.stdout, stderr: o.stderr, truncated: o.truncated,
            timedOut: o.timedOut, durationNanos: o.durationNanos)
    }

    func finishSetup(box: String) async { await runtime.finishSetup(id: box) }

    // writeEnv and spawn are synchronous in the runtime (a rootfs mount and file writes; a
    // `crun exec` that waits up to 30 s for the PTY): each runs on a thread of its own rather
    // than holding one of the cooperative pool's threads (two on this machine).
    func writeEnv(box: String, env: [String: String]) async throws {
        try await offCooperativePool { [runtime] in try runtime.writeEnv(id: box, env: env) }
    }

    func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool, onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)?
    ) async throws -> BoxExecResult {
        let o = try await runtime.exec(
            id: box, SandboxProcessSpec(argv: argv, env: env, cwd: cwd), stdin: stdin, timeout: timeout,
            outputLimit: outputLimit, mergeStderr: mergeStderr, onOutput: onOutput)
        return BoxExecResult(
            exitCode: o.exitCode, signal: o.signal, stdout: o.stdout, stderr: o.stderr, truncated: o.truncated,
            timedOut: o.timedOut, durationNanos: o.durationNanos)
    }

    func spawn(box: String, _ spec: SandboxProcessSpec) async throws -> SandboxProcess {
        try await offCooperativePool { [runtime] in try runtime.spawn(id: box, spec) }
    }

    func stop(box: String) async throws { try await runtime.stop(id: box) }
    func start(box: String) async throws { try await runtime.start(id: box) }
    func destroy(box: String) async throws { try await runtime.destroy(id: box) }

    func sweep(keeping: Set<String>) async -> [String] {
        await runtime.sweep(keeping: keeping)
    }

    func releaseIdleResources() async {
        await runtime.stopWarmPool()
        await runtime.releaseIdleResources()
    }
    func startWarmPool(size: Int, limits: BoxLimits) async {
        runtime.startWarmPool(
            size: size, limits: SandboxLimits(memoryBytes: limits.memoryBytes, cpus: limits.cpus, pids: limits.pids, diskBytes: limits.diskBytes))
    }
    func warmPool() -> (target: Int, idle: Int) {
        let s = runtime.warmPoolStatus
        return (s.target, s.idle)
    }
    func isRunning(box: String) async -> Bool { await runtime.isRunning(id: box) }
    func usage(box: String) async -> BoxUsage? { await runtime.usageOffPool(id: box) }
    func workspaceHostPath(box: String) -> String { runtime.workspaceHostPath(id: box) }
    func boxRootOwner(box: String) -> (uid: UInt32, gid: UInt32) {
        let o = runtime.boxRootOwner(id: box)
        return (o.uid, o.gid)
    }
    func adoptTree(box: String, path: String) async throws { try await runtime.adoptTree(id: box, path: path) }

    func readPath(box: String, path: String, maxBytes: Int) async throws -> BoxFileContent {
        try await runtime.readPath(id: box, path: path, maxBytes: maxBytes)
    }
    func writeFile(box: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool {
        try await runtime.writeFile(id: box, path: path, bytes: bytes, mode: mode)
    }
    func deletePath(box: String, path: String, recursive: Bool) async throws {
        try await runtime.deletePath(id: box, path: path, recursive: recursive)
    }
}

/// Runs blocking work on a new thread and resumes the caller with its result (as the
/// runtime's own `prepareHostOffPool` does): a thread costs ~20 µs, far less than what these
/// calls take, and a dedicated one cannot be starved by other blocking calls the way a
/// small shared pool can.
private func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let result: Result<T, any Error> = await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: Result { try body() })
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    return try result.get()
}
