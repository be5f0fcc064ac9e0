import Foundation
import Sandbox

/// Resource limits handed to the sandbox runtime.
public struct BoxLimits: Sendable, Equatable {
    public var memoryBytes: Int64
    public var cpus: Double
    public var pids: Int
    /// Size of the box's own disk (writable layer and /workspace); 0: none.
    public var diskBytes: Int64
    public init(memoryBytes: Int64, cpus: Double, pids: Int, diskBytes: Int64 = 0) {
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
        self.diskBytes = diskBytes
    }
}

/// The result of a command run to completion inside a box.
public struct BoxExecResult: Sendable {
    public var exitCode: Int32?
    public var signal: Int32?
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var truncated: Bool
    public var timedOut: Bool
    public var durationNanos: UInt64
    public init(
        exitCode: Int32?, signal: Int32?, stdout: [UInt8], stderr: [UInt8], truncated: Bool, timedOut: Bool,
        durationNanos: UInt64
    ) {
        self.exitCode = exitCode
        self.signal = signal
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated
        self.timedOut = timedOut
        self.durationNanos = durationNanos
    }
}

/// What the service needs from a sandbox runtime. The crun runtime implements it; a
/// Kubernetes or microVM backend would be another implementation.
public protocol SandboxDriver: Sendable {
    func prepareHost() async throws
    /// `setupShell`: the box will take setup commands through `runSetupCommand`.
    /// True when the box came from the warm pool (already running).
    @discardableResult
    func create(box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy) async throws -> Bool
    /// `create` on another image than the default (nil: the default, the warm pool's).
    @discardableResult
    func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool
    /// The image of boxes created without one, and of the warm pool (nil: the configured base).
    func setDefaultImage(_ image: BoxImage?)
    /// Starts the boxes' resolver and network policy with the egress policies of the
    /// devboxes that outlived the last run (devbox id → policy). After the sweep, before creates.
    func startNetworks(policies: [String: EgressPolicy]) async throws
    /// Ports of the host boxes may connect to besides the resolver's; before `startNetworks`.
    func offerPorts(_ ports: [UInt16])
    /// True when `address` is the own address of one of this driver's boxes.
    func isBoxAddress(_ address: String) -> Bool
    /// Replaces the egress policy of a running or stopped box.
    func setEgressPolicy(box: String, _ policy: EgressPolicy) async throws
    /// True when every box has a network of its own (egress policies can be enforced).
    var isolatesNetworks: Bool { get }
    /// The box's address and gateway; nil when boxes share the host's network.
    func networkInfo(box: String) -> BoxNetworkInfo?
    /// A TCP connection made from inside the box's network (its 127.0.0.1:`port`); nil when
    /// boxes share the host's network (connect to the host's loopback then).
    func connectInBox(box: String, port: UInt16) async throws -> Int32?
    func writeEnv(box: String, env: [String: String]) async throws
    /// False when the box's env file is gone (it lives on a tmpfs: a host reboot empties it).
    func hasEnv(box: String) -> Bool
    func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool, onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)?
    ) async throws -> BoxExecResult
    /// Runs one setup command (`/bin/sh -c`, in /workspace, with the box env, output
    /// merged) through the box's setup shell; nil when the box has none open here (then
    /// use `exec`). Killed with the box on timeout: the caller fails the devbox.
    func runSetupCommand(box: String, command: String, timeout: Duration, outputLimit: Int) async throws -> BoxExecResult?
    /// Ends the setup shell (it becomes the box's pause process). No-op without one.
    func finishSetup(box: String) async
    func spawn(box: String, _ spec: SandboxProcessSpec) async throws -> SandboxProcess
    func stop(box: String) async throws
    func start(box: String) async throws
    func destroy(box: String) async throws
    func sweep(keeping: Set<String>) async -> [String]
    /// Releases shared host state no box uses any more (called at shutdown, no creates running).
    func releaseIdleResources() async
    /// Keeps `size` boxes of `limits` started ahead of demand (0: none); after the start-up sweep.
    func startWarmPool(size: Int, limits: BoxLimits) async
    /// Free (available) and total bytes of the filesystem boxes live on; nil: unknown.
    func diskSpace() -> (free: Int64, total: Int64)?
    /// Sizes of box disks worth formatting ahead of creates (the plans').
    func prepareDisks(sizes: [Int64])
    /// How many boxes the pool keeps and how many are ready.
    func warmPool() -> (target: Int, idle: Int)
    func isRunning(box: String) async -> Bool
    /// What the box uses now (cgroups, disk, network; Sandbox/BoxUsage.swift). Default: nil (not measured).
    func usage(box: String) async -> BoxUsage?
    func workspaceHostPath(box: String) -> String
    /// The host uid/gid of the box's root (user namespaces: its own range).
    func boxRootOwner(box: String) -> (uid: UInt32, gid: UInt32)
    /// Gives a tree the host made for the box (a clone) the box's ids.
    func adoptTree(box: String, path: String) async throws
    /// Files inside a running box (see Sandbox/BoxFiles.swift for the resolution rules).
    func readPath(box: String, path: String, maxBytes: Int) async throws -> BoxFileContent
    func writeFile(box: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool
    func deletePath(box: String, path: String, recursive: Bool) async throws
}

extension SandboxDriver {
    /// The host uid/gid of the box's root (its own id range); (0, 0): a driver without user namespaces.
    public func boxRootOwner(box: String) -> (uid: UInt32, gid: UInt32) { (0, 0) }
    /// Gives a tree the host made for the box (a clone, before it moves into the workspace)
    /// the box's ids. Default: nothing to do.
    public func adoptTree(box: String, path: String) async throws {}
    /// Free (available) and total bytes of the filesystem boxes live on; nil: unknown. Default: unknown.
    public func diskSpace() -> (free: Int64, total: Int64)? { nil }
    /// Sizes of box disks worth formatting ahead of creates (the plans'). Default: nothing to do.
    public func prepareDisks(sizes: [Int64]) {}
    /// Drivers without images run every box on their one root.
    @discardableResult
    public func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool {
        try await create(box: box, limits: limits, env: env, setupShell: setupShell, egress: egress)
    }
    public func setDefaultImage(_ image: BoxImage?) {}
    /// Ports of the host boxes may connect to besides the resolver's (the AI-API broker's);
    /// called before `startNetworks`. Default: none.
    public func offerPorts(_ ports: [UInt16]) {}
    /// True when `address` is the own address of one of this driver's boxes. Default: none is.
    public func isBoxAddress(_ address: String) -> Bool { false }
    /// What the box uses now. Default: not measured.
    public func usage(box: String) async -> BoxUsage? { nil }
    /// Default: the env file is kept wherever the driver keeps it.
    public func hasEnv(box: String) -> Bool { true }

    func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool
    ) async throws -> BoxExecResult {
        try await exec(
            box: box, argv: argv, env: env, cwd: cwd, stdin: stdin, timeout: timeout, outputLimit: outputLimit,
            mergeStderr: mergeStderr, onOutput: nil)
    }
}
