import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The crun runtime behind the service's runtime seam (DevboxRuntime's `BoxRuntime`).
/// `CrunRuntime` names containers `<prefix><devbox id>`; the prefix is derived from the data
/// directory, so two services with different data directories never sweep each other's boxes.
public struct CrunBoxRuntime: BoxRuntime {
    public let runtime: CrunRuntime
    public let prefix: String

    public init(
        dataDirectory: String, baseImage: String?, network: SandboxNetwork = .isolated, networkRange: IPv4Range? = nil,
        dnsUpstreams: [(address: String, port: UInt16)] = [], logger: Logger
    ) {
        let dir = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        prefix = "dx" + Self.tag(dir) + "-"
        let configuration = SandboxConfiguration(
            stateDirectory: dir + "/boxes", idPrefix: prefix, hiddenHostPaths: [dir], baseImage: baseImage,
            network: network, networkRange: networkRange, dnsUpstreams: dnsUpstreams)
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

    // MARK: BoxLifecycle

    public func prepareHost() async throws { try await runtime.prepareHostOffPool() }

    public func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool {
        try await runtime.create(id: box, limits: limits, env: env, setupShell: setupShell, egress: egress, image: image)
    }

    public func stop(box: String) async throws { try await runtime.stop(id: box) }
    public func start(box: String) async throws { try await runtime.start(id: box) }
    public func destroy(box: String) async throws { try await runtime.destroy(id: box) }
    public func isRunning(box: String) async -> Bool { await runtime.isRunning(id: box) }
    public func sweep(keeping: Set<String>) async -> [String] { await runtime.sweep(keeping: keeping) }

    public func releaseIdleResources() async {
        await runtime.stopWarmPool()
        await runtime.releaseIdleResources()
    }

    // MARK: BoxProvisioning

    // writeEnv and spawn are synchronous in the runtime (a rootfs mount and file writes; a
    // `crun exec` that waits up to 30 s for the PTY): each runs on a thread of its own rather
    // than holding one of the cooperative pool's threads (two on this machine).
    public func writeEnv(box: String, env: [String: String]) async throws {
        try await onDedicatedThread { [runtime] in try runtime.writeEnv(id: box, env: env) }
    }

    public func hasEnv(box: String) -> Bool { runtime.hasEnvFile(id: box) }

    public func runSetupCommand(box: String, command: String, timeout: Duration, outputLimit: Int) async throws -> BoxExecResult? {
        try await runtime.runSetupCommand(id: box, command: command, timeout: timeout, outputLimit: outputLimit)
    }

    public func finishSetup(box: String) async { await runtime.finishSetup(id: box) }
    public func workspaceHostPath(box: String) -> String { runtime.workspaceHostPath(id: box) }

    public func boxRootOwner(box: String) -> (uid: UInt32, gid: UInt32) {
        let o = runtime.boxRootOwner(id: box)
        return (o.uid, o.gid)
    }

    public func adoptTree(box: String, path: String) async throws { try await runtime.adoptTree(id: box, path: path) }

    // MARK: BoxExec

    public func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool, onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)?
    ) async throws -> BoxExecResult {
        try await runtime.exec(
            id: box, BoxProcessSpec(argv: argv, env: env, cwd: cwd), stdin: stdin, timeout: timeout,
            outputLimit: outputLimit, mergeStderr: mergeStderr, onOutput: onOutput)
    }

    public func spawn(box: String, _ spec: BoxProcessSpec) async throws -> any BoxProcess {
        try await onDedicatedThread { [runtime] in try runtime.spawn(id: box, spec) }
    }

    // MARK: BoxFiles

    public func readPath(box: String, path: String, maxBytes: Int) async throws -> BoxFileContent {
        try await runtime.readPath(id: box, path: path, maxBytes: maxBytes)
    }

    public func writeFile(box: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool {
        try await runtime.writeFile(id: box, path: path, bytes: bytes, mode: mode)
    }

    public func deletePath(box: String, path: String, recursive: Bool) async throws {
        try await runtime.deletePath(id: box, path: path, recursive: recursive)
    }

    // MARK: BoxNetworking

    public func startNetworks(policies: [String: EgressPolicy]) async throws { try await runtime.startNetworks(policies: policies) }
    public func offerPorts(_ ports: [UInt16]) { runtime.offerPorts(ports) }
    public func isBoxAddress(_ address: String) -> Bool { runtime.isBoxAddress(address) }
    public func setEgressPolicy(box: String, _ policy: EgressPolicy) async throws { try await runtime.setEgressPolicy(id: box, policy) }
    public var isolatesNetworks: Bool { runtime.configuration.network == .isolated }
    public func networkInfo(box: String) -> BoxNetworkInfo? { runtime.networkInfo(id: box) }

    public func connectInBox(box: String, port: UInt16) async throws -> Int32? {
        guard runtime.networkInfo(id: box) != nil else { return nil }
        return try await runtime.connectInBox(id: box, port: port)
    }

    // MARK: BoxPool

    public func startWarmPool(size: Int, limits: BoxLimits) async { runtime.startWarmPool(size: size, limits: limits) }

    public func warmPool() -> (target: Int, idle: Int) {
        let s = runtime.warmPoolStatus
        return (s.target, s.idle)
    }

    public func diskSpace() -> (free: Int64, total: Int64)? {
        var st = statvfs()
        guard statvfs(runtime.configuration.stateDirectory, &st) == 0 else { return nil }
        return (Int64(st.f_bavail) * Int64(st.f_frsize), Int64(st.f_blocks) * Int64(st.f_frsize))
    }

    public func prepareDisks(sizes: [Int64]) { runtime.prepareDisks(sizes: sizes) }
    public func setDefaultImage(_ image: BoxImage?) { runtime.setDefaultImage(image) }

    // MARK: BoxStats

    public func usage(box: String) async -> BoxUsage? { await runtime.usageOffPool(id: box) }
}

/// The machine's image store as the service's catalog of images.
extension ImageStore: BoxImageCatalog {
    public var location: String { root }
    public func isValidName(_ name: String) -> Bool { Self.isValidName(name) }
    public func imageNames() -> [String] { list().map(\.name) }
    public func boxImage(named name: String) -> BoxImage? {
        guard let found = image(named: name) else { return nil }
        return BoxImage(name: found.name, lowerDirs: lowerDirs(found), store: root)
    }
}
