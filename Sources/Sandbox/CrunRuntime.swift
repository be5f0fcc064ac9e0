import CDevbox
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Boxes run by crun from OCI bundles (see Bundle.swift for what a box sees).
///
/// Layout: `<stateDirectory>/<idPrefix><id>/` holds `config.json` (the bundle), `upper/`
/// and `work/` (overlay), `rootfs/` (the merged root, mounted while the box runs),
/// `workspace/` (bind-mounted at /workspace) and `run/` (console sockets, made on first use).
/// crun container id: `<idPrefix><id>`; cgroup: `/<parent>/<idPrefix><id>` in every
/// hierarchy, `<parent>` being the prefix without its trailing punctuation ("devbox").
///
/// Threading: every blocking call (crun, mount, waitid, poll) runs in a job of the blocking
/// executor (`onDedicatedThread`), never on Swift's cooperative pool; the synchronous
/// `prepareHost`, `writeEnv` and `spawn` are called in such a job (`CrunBoxRuntime`).
public final class CrunRuntime: Sendable {
    public let configuration: SandboxConfiguration
    let logger: Logger
    let crun: String
    /// One lock per box, held across that box's blocking lifecycle work (`withBoxLock`).
    private let boxLocks = Mutex<[String: BoxLock]>([:])
    /// The init pid of each running box this process started (removed when it exits):
    /// lets `isRunning` answer from /proc instead of spawning `crun state`.
    let inits = Mutex<[String: pid_t]>([:])
    /// The init pid this process recorded for the box (no `crun state`), if it runs.
    func knownInitPid(_ id: String) -> pid_t? {
        let name = boxName(id)
        return inits.withLock { $0[name] }
    }
    let maskCache = Mutex<(plan: MaskPlan, at: UInt64, layer: String?)?>(nil)
    /// Set while one caller rescans a stale mask plan (the others keep the current layer).
    let maskRescanning = Atomic<Bool>(false)
    /// Host scans for the mask plan so far (tests).
    let maskScans = Atomic<Int>(0)
    /// Serializes mounting and unmounting the mask tmpfs: checked and mounted without it, a
    /// burst of creates on a fresh data dir stacked several tmpfs mounts on `.mask`.
    let maskMount = Mutex<Void>(())
    /// How long a mask plan is used before the host is scanned again.
    static let maskMaxAgeNanos: UInt64 = 30_000_000_000
    /// Open setup shells (SetupShell.swift) of boxes this process created, until setup ends.
    private let setupChannels = Mutex<[String: SetupChannel]>([:])
    private let counter = Atomic<UInt64>(0)
    /// Devbox id → name of the box it took from the warm pool (WarmPool.swift). On disk:
    /// the symlink `<state>/<prefix><id>` → `<prefix><name>`, read back at start.
    let aliases = Mutex<[String: String]>([:])
    let pool = WarmPool()
    /// Cold starts admitted a few at a time, in order (CreateGate.swift).
    let createGate = CreateGate(limit: CreateGate.configuredLimit())
    /// Box name → its host ids (UserNamespace.swift), read from `<box>/ids` once.
    let idMaps = Mutex<[String: BoxIDMap]>([:])
    /// The machine-wide claims of id ranges.
    let idRegistry: IDRangeRegistry
    /// Formatted disk images ready for creates (BoxDisk.swift).
    let diskImages = DiskImagePool()
    /// Per-box networks (`SandboxNetwork.isolated`), nil otherwise.
    let networks: BoxNetworks?
    /// Ports of the host boxes may connect to besides the resolver's (`offerPorts`).
    let offered = OfferedPorts()
    /// The image of boxes created without one, the warm pool's (ImageStore.swift); nil: `baseImage` or the host root.
    let defaultImage = Mutex<BoxImage?>(nil)
    public func setDefaultImage(_ image: BoxImage?) { defaultImage.withLock { $0 = image } }
    func counterNext() -> UInt64 { counter.wrappingAdd(1, ordering: .relaxed).newValue }

    public init(configuration: SandboxConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.crun = resolveExecutable(configuration.crunPath)
        self.idRegistry = IDRangeRegistry(directory: configuration.idRangeRegistry)
        if configuration.network == .isolated {
            let trimmed = configuration.idPrefix.trimmingCharacters(in: CharacterSet(charactersIn: "-_."))
            networks = BoxNetworks(
                stateDirectory: configuration.stateDirectory, cgroupParent: trimmed.isEmpty ? "devbox" : trimmed,
                requestedRange: configuration.networkRange, upstreams: configuration.dnsUpstreams,
                offeredPorts: { [offered] in offered.ports }, logger: logger)
        } else {
            networks = nil
        }
        // Needed for exec/spawn to work at all (the box's processes are re-parented to
        // us) and harmless to repeat; prepareHost does it too.
        _ = dbx_set_child_subreaper()
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        loadAliases()
        loadNetworkSlots()
    }

    // MARK: names and paths

    var cgroupParent: String {
        let trimmed = configuration.idPrefix.trimmingCharacters(in: CharacterSet(charactersIn: "-_."))
        return trimmed.isEmpty ? "devbox" : trimmed
    }
    /// The name of the box behind `id`: its own, or the pooled box it was given.
    func boxName(_ id: String) -> String { aliases.withLock { $0[id] } ?? id }
    func containerName(_ id: String) -> String { configuration.idPrefix + boxName(id) }
    func boxDirectory(_ id: String) -> String { configuration.stateDirectory + "/" + containerName(id) }
    func rootfsPath(_ id: String) -> String { boxDirectory(id) + "/rootfs" }
    public func workspaceHostPath(id: String) -> String { writableRoot(id) + "/workspace" }
    func cgroupsPath(_ id: String) -> String { "/\(cgroupParent)/\(containerName(id))" }

    static func isValidComponent(_ s: String, max: Int) -> Bool {
        guard !s.isEmpty, s.utf8.count <= max, s != ".", s != ".." else { return false }
        return s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
        }
    }

    func validate(_ id: String) throws {
        guard CrunRuntime.isValidComponent(id, max: 64), CrunRuntime.isValidComponent(configuration.idPrefix, max: 32) else {
            throw BoxRuntimeError.invalidID(id)
        }
        let st = configuration.stateDirectory
        guard st.hasPrefix("/"), !st.contains(","), !st.contains(":"), MaskPlan.normalize(st) != "" else {
            throw BoxRuntimeError.invalidArgument("stateDirectory must be an absolute path without ',' or ':'")
        }
        if let image = configuration.baseImage, !image.hasPrefix("/") || image.contains(",") || image.contains(":") {
            throw BoxRuntimeError.invalidArgument("baseImage must be an absolute path without ',' or ':'")
        }
    }

    /// A box's lock: a plain mutex in a class, so the map can hand it out.
    final class BoxLock: Sendable {
        let mutex = Mutex(())
    }

    /// Runs `body` holding the box's lock (its create, destroy, stop, start, claim).
    func withBoxLock<T, E: Error>(_ id: String, _ body: () throws(E) -> T) throws(E) -> T {
        let lock = boxLocks.withLock { locks -> BoxLock in
            if let l = locks[id] { return l }
            let l = BoxLock()
            locks[id] = l
            return l
        }
        var result: Result<T, E>?
        lock.mutex.withLock { _ in result = Result { () throws(E) -> T in try body() } }
        guard let result else { preconditionFailure("withLock ran no body") }
        return try result.get()
    }

    // MARK: host

    /// Applies the cgroup-hybrid fix if needed (logged), makes the service a child
    /// subreaper, creates the state directory.
    public func prepareHost() throws {
        if dbx_set_child_subreaper() != 0 { throw sysError("PR_SET_CHILD_SUBREAPER") }
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        let moved = try HostState.fixHybridCgroups()
        if !moved.isEmpty {
            logger.notice("cgroup hybrid layout: moved controllers from cgroup v2 to v1 so crun can run",
                          metadata: ["controllers": .string(moved.joined(separator: ","))])
        }
        try makeDirectories(configuration.stateDirectory, mode: 0o711)
        // Each box directory is an unrelated tree, created and deleted all the time: spread
        // them over ext4's block groups (Orlov, as for top-level directories) instead of
        // packing them into this directory's group. Without a journal, ext4 skips inodes freed
        // in the last 60-300 s when it allocates (`recently_deleted`), and scans them from
        // the start of the group for every new inode: under create/delete churn that scan
        // was a quarter of the service's CPU in a burst of creates. Best effort (other
        // filesystems have no such flag).
        if dbx_set_topdir(configuration.stateDirectory) != 0 {
            logger.debug("cannot mark the box directory FS_TOPDIR_FL", metadata: ["errno": "\(lastErrno())"])
        }
        guard access(configuration.catatoniPath, X_OK) == 0 else {
            throw BoxRuntimeError.invalidArgument("catatonit not found at \(configuration.catatoniPath)")
        }
        guard access(crun, X_OK) == 0 else { throw BoxRuntimeError.invalidArgument("crun not found at \(crun)") }
        // The range first: a clash refuses the start before anything is mounted.
        try networks?.prepare()
        loadDiskImages()
        do {
            _ = try maskLayer(refresh: true)
        } catch {
            networks?.shutdown()
            throw error
        }
    }

    /// `prepareHost` on a thread of its own: its mounts and host scan would otherwise hold one
    /// of the cooperative pool's threads (two on this machine) for tens of milliseconds.
    public func prepareHostOffPool() async throws {
        try await onDedicatedThread { [self] in try prepareHost() }
    }

    func makeDirectories(_ path: String, mode: mode_t) throws {
        var current = ""
        for comp in path.split(separator: "/") {
            current += "/" + comp
            if mkdir(current, mode) != 0 && lastErrno() != EEXIST { throw sysError("mkdir \(current)") }
        }
    }

    func setupChannel(_ id: String) -> SetupChannel? {
        let name = boxName(id)
        return setupChannels.withLock { $0[name] }
    }
    func takeSetupChannel(_ id: String) -> SetupChannel? {
        let name = boxName(id)
        return setupChannels.withLock { $0.removeValue(forKey: name) }
    }

    // MARK: lifecycle

    /// Creates the bundle, mounts the root, writes the env file and runs the box.
    /// Returns once the box's init runs. With `setupShell` the box's init runs a shell
    /// that takes the setup commands (`runSetupCommand`, then `finishSetup`).
    ///
    /// A box of the warm pool's limits is taken from the pool when one is idle (no
    /// `crun run` then); the result says whether it was.
    @discardableResult
    public func create(id: String, limits: BoxLimits, env: [String: String], setupShell: Bool = false,
                       egress: EgressPolicy = .allowAll, image: BoxImage? = nil) async throws -> Bool {
        try validate(id)
        if let image, !image.isValid { throw BoxRuntimeError.invalidArgument("image layers must be absolute paths without ',' or ':'") }
        // The pool holds boxes of the default image only.
        let poolable = image == nil || image == defaultImage.withLock({ $0 })
        try EnvFile.validate(env)
        guard limits.memoryBytes > 0, limits.pids > 0 else { throw BoxRuntimeError.invalidArgument("limits must be positive") }
        pool.noteDemand()
        // The task's cancellation (a DELETE of the devbox) reaches the blocking create: one not
        // begun yet is not made at all, one waiting for a slot stops waiting, one under way stops
        // before its disk, its network and `crun run` (issue 21: under create/delete churn most
        // boxes were deleted while their create waited, and were then built only to be torn down).
        let cancellation = CreateCancellation()
        let warm = try await withTaskCancellationHandler {
            try await onDedicatedThread(priority: .create) { [self] () -> Bool in
                try withBoxLock(id) {
                    if cancellation.isCancelled { throw CancellationError() }
                    if lstatExists(aliasPath(id)) { throw BoxRuntimeError.alreadyExists(id) }
                    while poolable, let box = pool.take(limits: limits) {
                        if claimPooled(box, id: id, env: env, setupShell: setupShell, egress: egress) { return true }
                    }
                    var began = false
                    do {
                        try createGate.withSlot(unless: cancellation) {
                            began = true
                            try createBlocking(
                                name: id, limits: limits, env: env, setupShell: setupShell, egress: egress, image: image,
                                cancellation: cancellation)
                        }
                    } catch {
                        // Cancelled before it began: nothing was made.
                        guard began else { throw error }
                        if error is CancellationError {
                            logger.info("create cancelled, cleaning up", metadata: ["box": .string(id)])
                        } else {
                            logger.error("create failed, cleaning up", metadata: ["box": .string(id), "error": .string("\(error)")])
                        }
                        destroyBlocking(id)
                        throw error
                    }
                    return false
                }
            }
        } onCancel: {
            cancellation.cancel()
        }
        logger.info("box created", metadata: ["box": .string(id), "warm": .stringConvertible(warm)])
        return warm
    }

    /// The blocking part of a cold create: box directory, bundle, root, env file, `crun run`.
    /// Returns the mask layer the root was mounted with. Leaves a partial box on error, and on
    /// `cancellation` (checked before the disk, the network and `crun run`: CancellationError).
    @discardableResult
    func createBlocking(name: String, limits: BoxLimits, env: [String: String], setupShell: Bool,
                        egress: EgressPolicy = .allowAll, image: BoxImage? = nil,
                        cancellation: CreateCancellation? = nil) throws -> String? {
        let dir = boxDirectory(name)
        if access(dir, F_OK) == 0 { throw BoxRuntimeError.alreadyExists(name) }
        try makeDirectories(configuration.stateDirectory, mode: 0o711)
        if mkdir(dir, 0o700) != 0 { throw sysError("mkdir \(dir)") }
        // Its own id range first: everything below is made for the box's root.
        if configuration.userNamespaces { _ = try claimIDs(name: name) }
        // (`run`, for console sockets, is made when a terminal session first needs it.)
        if mkdir(dir + "/rootfs", 0o755) != 0 { throw sysError("mkdir rootfs") }
        _ = chmod(dir + "/rootfs", 0o755)
        if cancellation?.isCancelled == true { throw CancellationError() }
        try makeWritableTree(name, diskBytes: limits.diskBytes)
        if let image = image ?? defaultImage.withLock({ $0 }) {
            // Which layers this box mounts, for every later mount (start, env writes, a restart).
            try writeHostFile(dir + "/" + BoxImage.fileName, Array(try JSONEncoder().encode(image)))
            if let store = image.store { ImageStore(root: store).addRef(boxDirectory: dir) }
        }
        if cancellation?.isCancelled == true { throw CancellationError() }
        if let networks {
            _ = try networks.allocate(name: name, directory: dir)
            // In force before the box's first process runs.
            if egress != .allowAll { try networks.setPolicy(name: name, egress) }
        }
        try writeBundle(name: name, hostname: name, limits: limits, setupShell: setupShell)
        let layer = try mountRootfs(name)
        try writeEnvFile(name, env: env)
        if cancellation?.isCancelled == true { throw CancellationError() }
        if setupShell {
            try writeHostFile(dir + "/" + SetupShell.marker, [])
            let channel = try runBoxWithSetupShell(name)
            setupChannels.withLock { $0[name] = channel }
        } else {
            try runBox(name)
        }
        return layer
    }

    /// Writes the box's `config.json`.
    func writeBundle(name: String, hostname: String, limits: BoxLimits, setupShell: Bool) throws {
        // In its user namespace crun resolves paths as the box's root, who may not traverse the
        // data dir: paths relative to the bundle (crun's working directory) instead.
        let inUserNamespace = idMap(name) != nil
        let path = { (p: String) in inUserNamespace ? self.bundleRelative(p, name: name) : p }
        let config = BundleSpec.config(
            hostname: hostname, rootfs: path(rootfsPath(name)), workspace: path(workspaceHostPath(id: name)),
            catatonit: configuration.catatoniPath, cgroupsPath: cgroupsPath(name), limits: limits,
            network: configuration.network, setupShell: setupShell, envDirectory: path(envDirectory(name)),
            userNamespace: inUserNamespace ? path(userNamespaceFile(name)) : nil)
        try writeHostFile(boxDirectory(name) + "/config.json", config.serialized())
    }

    /// (Re)writes the box env file: `env` is the full environment.
    public func writeEnv(id: String, env: [String: String]) throws {
        try validate(id)
        try EnvFile.validate(env)
        try withBoxLock(id) {
            guard access(boxDirectory(id), F_OK) == 0 else { throw BoxRuntimeError.notFound(id) }
            try writeEnvFile(id, env: env)
        }
    }

    /// Stops the box: every process ends, its memory and cgroups go; the upper dir,
    /// the workspace and the env file stay.
    public func stop(id: String) async throws {
        try validate(id)
        try await onDedicatedThread(priority: .background) { [self] in
            try withBoxLock(id) {
                guard access(boxDirectory(id), F_OK) == 0 else { throw BoxRuntimeError.notFound(id) }
                _ = takeSetupChannel(id)
                try deleteContainer(id)
                networks?.detach(name: boxName(id))
                unmountRootfs(id)
                unmountDisk(id)
            }
        }
        logger.info("box stopped", metadata: ["box": .string(id)])
    }

    /// Runs a stopped box again on the same filesystem. No-op if it runs.
    public func start(id: String) async throws {
        try validate(id)
        try await onDedicatedThread(priority: .background) { [self] in
            try withBoxLock(id) {
                guard access(boxDirectory(id) + "/config.json", F_OK) == 0 else { throw BoxRuntimeError.notFound(id) }
                if containerStatus(id) == "running" { return }
                try deleteContainer(id)  // a stale record (crashed box) blocks `crun run`
                try patchBundleHostname(id)
                try prepareEnvDirectory(id)  // the source of its /etc/devbox (gone after a reboot)
                if !HostState.isMountPoint(rootfsPath(id)) {
                    try mountDisk(id)
                    try mountRootfs(id)
                }
                if access(boxDirectory(id) + "/" + SetupShell.marker, F_OK) == 0 {
                    try runBoxWithSetupShell(id, script: SetupShell.pauseLine)
                } else {
                    try runBox(id)
                }
            }
        }
        logger.info("box started", metadata: ["box": .string(id)])
    }

    /// Deletes the container, unmounts, removes the per-box dir and cgroups. Idempotent.
    public func destroy(id: String) async throws {
        try validate(id)
        await onDedicatedThread(priority: .background) { [self] in
            withBoxLock(id) { destroyBlocking(id) }
        }
        logger.info("box destroyed", metadata: ["box": .string(id)])
    }

    /// Unmounts shared host state (the mask layer) when no box uses it. Call when no create
    /// can run concurrently, e.g. at service shutdown.
    public func releaseIdleResources() async {
        await onDedicatedThread { [self] in
            releaseMaskIfUnused()
            releaseEnvIfUnused()
            networks?.shutdown()
            removeReadyDiskImages()
        }
    }

    /// Destroys every container, mount, cgroup and directory named with our prefix whose
    /// id is not in `keeping` (including what a killed service left). Returns those ids.
    public func sweep(keeping: Set<String>) async -> [String] {
        let removed = await onDedicatedThread { [self] () -> [String] in
            var ids: Set<String> = []
            let prefix = configuration.idPrefix
            // What is kept: the devboxes, the pooled boxes they were given, the idle pool.
            let kept = keeping.union(aliases.withLock { a in keeping.compactMap { a[$0] } }).union(pool.idleNames())
            func idOf(_ name: String) -> String? {
                guard name.hasPrefix(prefix), name.count > prefix.count else { return nil }
                let id = String(name.dropFirst(prefix.count))
                return kept.contains(id) || !CrunRuntime.isValidComponent(id, max: 64) ? nil : id
            }
            if let list = try? runCommandBlocking(crun, ["crun", "list", "-q"]) {
                for line in list.stdoutText.split(separator: "\n") { if let id = idOf(String(line)) { ids.insert(id) } }
            }
            for name in MaskPlan.listDirectory(configuration.stateDirectory) { if let id = idOf(name) { ids.insert(id) } }
            let base = configuration.stateDirectory + "/"
            for m in HostState.mounts() where m.mountPoint.hasPrefix(base) {
                let name = m.mountPoint.dropFirst(base.count).split(separator: "/").first.map(String.init) ?? ""
                if let id = idOf(name) { ids.insert(id) }
            }
            for root in HostState.cgroupRoots() {
                for name in MaskPlan.listDirectory(root + "/" + cgroupParent) { if let id = idOf(name) { ids.insert(id) } }
            }
            for id in ids.sorted() { withBoxLock(id) { destroyBlocking(id) } }
            if let networks {
                networks.forget(keeping: Set(kept.map { boxName($0) }).union(kept))
                let links = networks.sweepLinks()
                if !links.isEmpty { logger.notice("swept leftover box links", metadata: ["links": .string(links.joined(separator: ","))]) }
            }
            removeTrash()
            releaseMaskIfUnused()
            releaseEnvIfUnused()
            if keeping.isEmpty {
                removeReadyDiskImages()
                for root in HostState.cgroupRoots() { _ = rmdir(root + "/" + cgroupParent) }
            }
            return ids.sorted()
        }
        if !removed.isEmpty { logger.notice("swept leftover boxes", metadata: ["boxes": .string(removed.joined(separator: ","))]) }
        return removed
    }

    public func isRunning(id: String) async -> Bool {
        guard (try? validate(id)) != nil else { return false }
        // Fast path: the init we started is alive (not a zombie) and in the box's cgroup.
        if let pid = knownInitPid(id), let stat = readSmallFile("/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: ")"), stat[stat.index(after: close)...].dropFirst().first != "Z",
            let cgroup = readSmallFile("/proc/\(pid)/cgroup"), cgroup.contains("/" + containerName(id) + "\n")
                || cgroup.hasSuffix("/" + containerName(id))
        {
            return true
        }
        return await onDedicatedThread { [self] in containerStatus(id) == "running" }
    }

    // MARK: blocking internals (dedicated threads, box lock held)

    func writeHostFile(_ path: String, _ bytes: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("open \(path)") }
        defer { closeFD(fd) }
        if !writeAll(fd: fd, bytes) { throw sysError("write \(path)") }
    }

    /// Runs a box whose process is the setup shell. With `script` (start after stop) the
    /// shell gets those bytes and EOF, and nil is returned; otherwise the channel to it.
    @discardableResult
    func runBoxWithSetupShell(_ id: String, script: [UInt8]? = nil) throws -> SetupChannel? {
        var scriptP: [Int32] = [-1, -1], outP: [Int32] = [-1, -1], statusP: [Int32] = [-1, -1]
        if let script {
            // A pipe holds 64 KiB: the pause line fits, nothing blocks.
            guard dbx_pipe(&scriptP, 0, 0) == 0 else { throw sysError("pipe") }
            defer { closeFD(scriptP[0]) }
            let ok = script.count < 4096 && writeAll(fd: scriptP[1], script)
            closeFD(scriptP[1])
            guard ok else { throw sysError("write setup script") }
            try runBox(id, stdin: scriptP[0], preserved: [-1, -1])
            return nil
        }
        guard dbx_pipe(&scriptP, 0, 1) == 0 else { throw sysError("pipe") }
        guard dbx_pipe(&outP, 1, 0) == 0 else { for fd in scriptP { closeFD(fd) }; throw sysError("pipe") }
        guard dbx_pipe(&statusP, 1, 0) == 0 else { for fd in scriptP + outP { closeFD(fd) }; throw sysError("pipe") }
        // The channel owns (and closes) our ends; the box's ends close once crun has run.
        let channel = SetupChannel(script: scriptP[1], output: outP[0], status: statusP[0])
        defer { for fd in [scriptP[0], outP[1], statusP[1]] { closeFD(fd) } }
        try runBox(id, stdin: scriptP[0], preserved: [outP[1], statusP[1]])
        return channel
    }

    /// `crun run -d`; registers the init with the reaper. `stdin` and `preserved` (fds
    /// 3, 4, ... of the box's process; -1 = /dev/null) are handed to the box.
    func runBox(_ id: String, stdin: Int32 = -1, preserved: [Int32] = []) throws {
        var pidP: [Int32] = [-1, -1]
        guard dbx_pipe(&pidP, 1, 0) == 0 else { throw sysError("pipe") }
        defer { closeFD(pidP[0]) }
        let result: CommandResult
        var argv = ["crun", "run", "-d", "--bundle", boxDirectory(id)]
        if !preserved.isEmpty { argv += ["--preserve-fds", "\(preserved.count)"] }
        argv += ["--pid-file", "/proc/self/fd/\(3 + preserved.count)", containerName(id)]
        do {
            result = try runCommandBlocking(crun, argv, extraFDs: preserved + [pidP[1]], stdinFD: stdin)
        } catch {
            closeFD(pidP[1]); throw error
        }
        closeFD(pidP[1])
        Reaper.shared.kick()
        guard result.status == 0 else {
            throw BoxRuntimeError.commandFailed("crun run", status: result.status, message: result.stderrText)
        }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { read(pidP[0], $0.baseAddress, $0.count) }
        guard n > 0, let pid = pid_t(String(decoding: buf[0..<n], as: UTF8.self)), pid > 1 else {
            if networks != nil { throw BoxRuntimeError.commandFailed("crun run", status: 0, message: "no pid of the box's init") }
            return
        }
        // Nothing of a user's runs in the box yet (its init waits for setup commands or sleeps).
        // A background thread's `crun` gave the init its nice value: the box runs at 0.
        resetNice(ofTree: pid)
        try networks?.attach(name: boxName(id), initPid: pid)
        let pidfd = dbx_pidfd_open(pid)
        guard pidfd >= 0 else { return }
        let logger = self.logger
        let name = boxName(id)
        inits.withLock { $0[name] = pid }
        Reaper.shared.watch(pid: pid, pidfd: pidfd) { [self] fd in
            inits.withLock { if $0[name] == pid { $0[name] = nil } }
            let st = Reaper.collect(pidfd: fd)
            logger.debug("box init exited", metadata: ["box": .string(id), "code": "\(st.exitCode ?? -1)", "signal": "\(st.signal ?? 0)"])
        }
    }

    /// `crun state` status ("running", "stopped", ...) or nil when crun has no such box.
    func containerStatus(_ id: String) -> String? {
        guard let r = try? runCommandBlocking(crun, ["crun", "state", containerName(id)]), r.status == 0 else { return nil }
        let text = r.stdoutText
        guard let range = text.range(of: "\"status\"") else { return nil }
        let rest = text[range.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "\t" }
        guard rest.first == "\"" else { return nil }
        return String(rest.dropFirst().prefix { $0 != "\"" })
    }

    /// `crun delete -f`: kills every process of the box, removes its cgroups and crun state.
    func deleteContainer(_ id: String) throws {
        let r = try runCommandBlocking(crun, ["crun", "delete", "-f", containerName(id)])
        if r.status != 0 {
            let msg = r.stderrText
            if msg.contains("does not exist") || msg.contains("No such file") { return }
            throw BoxRuntimeError.commandFailed("crun delete", status: r.status, message: msg)
        }
    }

    func destroyBlocking(_ id: String) {
        defer { removeAlias(id) }
        let name = boxName(id)
        inits.withLock { $0[name] = nil }
        _ = takeSetupChannel(id)
        do { try deleteContainer(id) } catch {
            logger.warning("crun delete failed", metadata: ["box": .string(id), "error": .string("\(error)")])
        }
        networks?.release(name: name)
        removeEnvDirectory(id)
        let dir = boxDirectory(id)
        unmountRootfs(id)  // the overlay before the idmapped layers under it
        releaseIDs(id)
        if let image = BoxImage.read(boxDirectory: dir), let root = image.store {
            let store = ImageStore(root: root)
            store.removeRef(boxDirectory: dir)
            // A deleted snapshot's layers go with the last box made from it (Snapshot.swift).
            if image.workspaceLowerDirs != nil { collectSnapshotLayers(store) }
        }
        unmountBoxDirectory(id)  // the disk; any mount at or below the box dir (what a crash left)
        for root in HostState.cgroupRoots() {
            let path = root + cgroupsPath(id)
            if access(path, F_OK) == 0 { HostState.removeCgroup(path) }
        }
        // Freeing blocks is slow on this host (ext4 mounted with `discard`: ~3 ms per
        // file or directory), so the directory is renamed out of the way at once and
        // deleted on a background thread; `sweep` finishes any such trash a crash left.
        let trash = configuration.stateDirectory + "/" + CrunRuntime.trashMarker + containerName(id) + "-\(getpid())-\(counterNext())"
        if access(dir, F_OK) != 0 { return }
        if rename(dir, trash) == 0 {
            let logger = self.logger
            // At this thread's nice (a destroy's is `backgroundNice`), as a thread it started would be.
            BlockingExecutor.shared.execute {
                do { try HostState.removeTree(trash) } catch {
                    logger.warning("removing box directory failed", metadata: ["box": .string(id), "error": .string("\(error)")])
                }
            }
            return
        }
        do { try HostState.removeTree(dir) } catch {
            logger.warning("removing box directory failed", metadata: ["box": .string(id), "error": .string("\(error)")])
        }
    }

    static let trashMarker = ".trash-"

    /// Deletes trash directories of ours (left by a crash during a background delete).
    func removeTrash() {
        for name in MaskPlan.listDirectory(configuration.stateDirectory)
        where name.hasPrefix(CrunRuntime.trashMarker + configuration.idPrefix) {
            try? HostState.removeTree(configuration.stateDirectory + "/" + name)
        }
    }
}
