// The runtime seam: what the service needs from whatever runs its boxes. The crun
// runtime implements it (Sources/Sandbox/CrunBoxRuntime.swift); a Kubernetes or gVisor
// runtime would be another implementation (docs/ARCHITECTURE.md, "Runtimes"), and so is
// a fake for tests. A box is named by the devbox id; the runtime maps it to its own
// names. Errors: `BoxRuntimeError` and, for files, `BoxFileError`; the service matches on
// those, anything else is an outage (503, logged).
//
// The requirements are split by concern; `BoxRuntime` is all of them. Blocking work is
// the runtime's to keep off the cooperative pool: every `async` requirement may be called
// from it.

/// Create, stop, start, destroy: a box's life.
public protocol BoxLifecycle: Sendable {
    /// Prepares the host once at start-up (before the sweep).
    func prepareHost() async throws
    /// Creates and starts a box. `setupShell`: the box will take setup commands through
    /// `runSetupCommand`. `image`: nil for the default (`BoxPool.setDefaultImage`).
    /// Returns true when the box came from the warm pool (already running).
    @discardableResult
    func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool
    /// Stops every process of the box; its files stay (`start` runs it again).
    func stop(box: String) async throws
    func start(box: String) async throws
    /// Removes the box and everything it holds. No error when it is already gone.
    func destroy(box: String) async throws
    func isRunning(box: String) async -> Bool
    /// Removes the runtime's boxes not in `keeping` (start-up); returns the ones removed.
    func sweep(keeping: Set<String>) async -> [String]
    /// Releases shared host state no box uses any more (called at shutdown, no creates running).
    func releaseIdleResources() async
}

/// What provisioning does to a new box besides running commands: its env file, its setup
/// shell, and trees the host makes for it (a clone).
public protocol BoxProvisioning: Sendable {
    /// Writes the box's env file (seen by every later process in the box).
    func writeEnv(box: String, env: [String: String]) async throws
    /// False when the box's env file is gone (crun keeps it on a tmpfs: a host reboot empties it).
    func hasEnv(box: String) -> Bool
    /// Runs one setup command (`/bin/sh -c`, in /workspace, with the box env, output
    /// merged) through the box's setup shell; nil when the box has none open here (then
    /// use `exec`). Killed with the box on timeout: the caller fails the devbox.
    func runSetupCommand(box: String, command: String, timeout: Duration, outputLimit: Int) async throws -> BoxExecResult?
    /// Ends the setup shell (it becomes the box's pause process). No-op without one.
    func finishSetup(box: String) async
    /// The host directory that is the box's /workspace (a clone is made there).
    func workspaceHostPath(box: String) -> String
    /// The host uid/gid of the box's root (user namespaces: its own range).
    func boxRootOwner(box: String) -> (uid: UInt32, gid: UInt32)
    /// Gives a tree the host made for the box (a clone) the box's ids.
    func adoptTree(box: String, path: String) async throws
}

/// Commands inside a running box.
public protocol BoxExec: Sendable {
    /// Runs a command to completion (the box env, plus `env`). `onOutput` sees the output as
    /// it comes; the result keeps the last `outputLimit` bytes of each stream.
    func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool, onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)?
    ) async throws -> BoxExecResult
    /// Starts an interactive process (SSH sessions, sftp) and returns at once.
    func spawn(box: String, _ spec: BoxProcessSpec) async throws -> any BoxProcess
}

/// Files inside a running box (crun: see Sandbox/BoxFiles.swift for the resolution rules).
/// Paths are absolute and normalized (`BoxPath.components`). Throws `BoxFileError`.
public protocol BoxFiles: Sendable {
    func readPath(box: String, path: String, maxBytes: Int) async throws -> BoxFileContent
    /// Writes a file (parents created); returns whether it was created.
    func writeFile(box: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool
    func deletePath(box: String, path: String, recursive: Bool) async throws
}

/// The boxes' networks: egress policies, addresses, connections into a box.
public protocol BoxNetworking: Sendable {
    /// Starts the boxes' resolver and network policy with the egress policies of the
    /// devboxes that outlived the last run (devbox id → policy). After the sweep, before creates.
    func startNetworks(policies: [String: EgressPolicy]) async throws
    /// Ports of the host boxes may connect to besides the resolver's; before `startNetworks`.
    func offerPorts(_ ports: [UInt16])
    /// True when `address` is the own address of one of this runtime's boxes.
    func isBoxAddress(_ address: String) -> Bool
    /// Replaces the egress policy of a running or stopped box.
    func setEgressPolicy(box: String, _ policy: EgressPolicy) async throws
    /// True when every box has a network of its own (egress policies can be enforced).
    var isolatesNetworks: Bool { get }
    /// The box's address and gateway; nil when boxes share the host's network.
    func networkInfo(box: String) -> BoxNetworkInfo?
    /// A TCP connection made from inside the box's network (its 127.0.0.1:`port`), as a
    /// host descriptor; nil when boxes share the host's network (connect to the host's loopback then).
    func connectInBox(box: String, port: UInt16) async throws -> Int32?
}

/// Capacity ahead of demand: the warm pool, disks, the default image, free space.
public protocol BoxPool: Sendable {
    /// Keeps `size` boxes of `limits` started ahead of demand (0: none); after the start-up sweep.
    func startWarmPool(size: Int, limits: BoxLimits) async
    /// How many boxes the pool keeps and how many are ready.
    func warmPool() -> (target: Int, idle: Int)
    /// Free (available) and total bytes of the filesystem boxes live on; nil: unknown.
    func diskSpace() -> (free: Int64, total: Int64)?
    /// Sizes of box disks worth formatting ahead of creates (the plans').
    func prepareDisks(sizes: [Int64])
    /// The image of boxes created without one, and of the warm pool (nil: the configured base).
    func setDefaultImage(_ image: BoxImage?)
}

/// What a box uses now.
public protocol BoxStats: Sendable {
    /// CPU, memory, pids, disk, network (crun: Sandbox/BoxUsage.swift); nil: not measured.
    func usage(box: String) async -> BoxUsage?
}

/// Everything the service needs from a runtime.
public protocol BoxRuntime: BoxLifecycle, BoxProvisioning, BoxExec, BoxFiles, BoxNetworking, BoxPool, BoxStats {}

// MARK: Defaults for runtimes without the feature

extension BoxProvisioning {
    /// Default: the env file is kept wherever the runtime keeps it.
    public func hasEnv(box: String) -> Bool { true }
    /// (0, 0): a runtime without user namespaces.
    public func boxRootOwner(box: String) -> (uid: UInt32, gid: UInt32) { (0, 0) }
    /// Default: nothing to do.
    public func adoptTree(box: String, path: String) async throws {}
}

extension BoxNetworking {
    /// Default: none.
    public func offerPorts(_ ports: [UInt16]) {}
    /// Default: no address is a box's.
    public func isBoxAddress(_ address: String) -> Bool { false }
}

extension BoxPool {
    /// Default: unknown.
    public func diskSpace() -> (free: Int64, total: Int64)? { nil }
    /// Default: nothing to do.
    public func prepareDisks(sizes: [Int64]) {}
    /// Runtimes without images run every box on their one root.
    public func setDefaultImage(_ image: BoxImage?) {}
}

extension BoxStats {
    /// Default: not measured.
    public func usage(box: String) async -> BoxUsage? { nil }
}

extension BoxLifecycle {
    /// `create` on the default image.
    @discardableResult
    public func create(box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy) async throws -> Bool {
        try await create(box: box, limits: limits, env: env, setupShell: setupShell, egress: egress, image: nil)
    }
}

extension BoxExec {
    /// `exec` without streaming.
    public func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool
    ) async throws -> BoxExecResult {
        try await exec(
            box: box, argv: argv, env: env, cwd: cwd, stdin: stdin, timeout: timeout, outputLimit: outputLimit,
            mergeStderr: mergeStderr, onOutput: nil)
    }
}
