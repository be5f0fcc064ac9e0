import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Snapshots (issue 23): a box's file system changes frozen as read-only layers of the
// machine's image store, which new boxes stack instead of copying.
//
// Taking one (`snapshot(id:snapshotID:)`, box lock held):
//   1. the box's upper dir and its workspace (or, for a box itself made from a snapshot,
//      its workspace overlay's upper dir) are copied into a temp dir of the store, in
//      canonical ids (LayerCopy), while the box runs: the bulk of the bytes;
//   2. the box's cgroup is frozen (cgroup freezer: v1 `freezer.state`, v2 `cgroup.freeze`),
//      the copy is brought up to date (only what changed since step 1, plus a walk of the
//      tree's metadata), and the box is thawed: the pause. A write in flight when the
//      freezer stops a task completes first, so a line-oriented log is never torn;
//   3. the two trees are installed as layers `snap-<id>-root` and `snap-<id>-ws` by
//      rename, and pinned, under the store's lock: a pin file `<state>/.snapshots/<id>.json`
//      (SnapshotLayers: the layer chain) and its symlink in the store's `pins/`, which the
//      store's GC honours while the file exists (a deleted data dir frees its layers).
// Never copied: the env file and AI tokens (on the service's tmpfs, bind-mounted at
// /etc/devbox, never in the upper dir), the per-box /etc/hostname, /etc/hosts and
// /etc/resolv.conf, /tmp and /run (tmpfs), processes and SSH sessions.
//
// Using one: a box made from it gets a `BoxImage` whose lower dirs are the snapshot's
// root layer over the layers it was taken on, and whose `workspaceLowerDirs` are its
// workspace layers: `/workspace` becomes an overlay of those under `<disk>/wsupper` (on the
// box's own disk, so its quota applies), mounted at `<disk>/workspace`. Nothing is copied:
// a create from a snapshot costs two more idmapped mounts and one more overlay mount.
//
// Releasing one: the pin goes; the layers stay as long as a box's ref names them (boxes
// made from the snapshot keep working), and the GC after the last such box's destroy
// removes them.

/// Snapshot ids become layer ids (`[a-z0-9-]`).
func snapshotLayerStem(_ snapshotID: String) -> String? {
    let stem = snapshotID.lowercased().replacingOccurrences(of: "_", with: "-")
    return ImageStore.isValidLayerID(stem + "-root") && stem.utf8.count <= 100 ? stem : nil
}

extension CrunRuntime {
    var snapshotPinDirectory: String { configuration.stateDirectory + "/.snapshots" }

    /// Per-box files every box gets anew (and never the env file's mount point).
    static let snapshotSkips: Set<String> = ["etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/devbox", ".devbox"]

    /// Takes a snapshot of the box (running: frozen for the final pass; stopped: its disk
    /// mounted for the copy). The box must run on an image of the store.
    public func snapshot(id: String, snapshotID: String) async throws -> (layers: SnapshotLayers, timing: SnapshotTiming) {
        try validate(id)
        guard let stem = snapshotLayerStem(snapshotID) else { throw BoxRuntimeError.invalidArgument("invalid snapshot id") }
        return try await onDedicatedThread { [self] in
            try withBoxLock(id) { try snapshotBlocking(id, snapshotID: snapshotID, stem: stem) }
        }
    }

    func snapshotBlocking(_ id: String, snapshotID: String, stem: String) throws -> (layers: SnapshotLayers, timing: SnapshotTiming) {
        let dir = boxDirectory(id)
        guard access(dir, F_OK) == 0 else { throw BoxRuntimeError.notFound(id) }
        guard let image = BoxImage.read(boxDirectory: dir), let storeRoot = image.store else {
            throw BoxRuntimeError.invalidArgument("only a box on an image of the image store can be snapshotted (not DEVBOX_BASE_IMAGE=host or a path)")
        }
        let store = ImageStore(root: storeRoot)
        let parentLowers = image.lowerDirs + (image.workspaceLowerDirs ?? [])
        guard parentLowers.allSatisfy({ store.layerID(ofLowerDir: $0) != nil }) else {
            throw BoxRuntimeError.invalidArgument("the box's layers are not all in the image store")
        }
        // A stopped box's disk is mounted for the copy only.
        let diskWasMounted = HostState.isMountPoint(diskMountPath(id)) || access(diskImagePath(id), F_OK) != 0
        if !diskWasMounted { try mountDisk(id) }
        defer { if !diskWasMounted { unmountDisk(id) } }
        let writable = writableRoot(id)
        let workspaceSource = image.workspaceLowerDirs == nil ? writable + "/workspace" : writable + "/wsupper"
        let started = monotonicNanos()
        try store.prepare()
        let temp = try store.makeTemp("snap")
        var installed = false
        defer { if !installed { try? HostState.removeTree(temp) } }
        let rootTemp = temp + "/root-layer", wsTemp = temp + "/ws-layer"
        for d in [rootTemp, wsTemp] where mkdir(d, 0o711) != 0 { throw sysError("mkdir \(d)") }
        var rootCopy = LayerCopy(map: idMap(id), skip: CrunRuntime.snapshotSkips)
        var wsCopy = LayerCopy(map: idMap(id))
        // 1. While the box runs.
        try rootCopy.sync(source: writable + "/upper", dest: rootTemp + "/root")
        if access(workspaceSource, F_OK) == 0 { try wsCopy.sync(source: workspaceSource, dest: wsTemp + "/root") }
        else if mkdir(wsTemp + "/root", 0o755) != 0 { throw sysError("mkdir \(wsTemp)/root") }
        // 2. Frozen: what changed meanwhile.
        let freezer = try freeze(id)
        let pauseStart = monotonicNanos()
        var pauseEnd = pauseStart
        do {
            defer {
                freezer?.thaw()
                pauseEnd = monotonicNanos()
            }
            try rootCopy.sync(source: writable + "/upper", dest: rootTemp + "/root")
            if access(workspaceSource, F_OK) == 0 { try wsCopy.sync(source: workspaceSource, dest: wsTemp + "/root") }
        }
        let size = LayerCopy.diskUsage(rootTemp + "/root") + LayerCopy.diskUsage(wsTemp + "/root")
        // 3. Installed and pinned under the store's lock (its GC cannot run in between).
        let layers = SnapshotLayers(
            id: snapshotID, image: image.name, store: store.root,
            rootLowerDirs: [store.layerRoot(stem + "-root")] + image.lowerDirs,
            workspaceLowerDirs: [store.layerRoot(stem + "-ws")] + (image.workspaceLowerDirs ?? []), sizeBytes: size)
        try store.withLock {
            try pinSnapshot(layers, store: store)
            try store.installLayer(temp: rootTemp, id: stem + "-root")
            try store.installLayer(temp: wsTemp, id: stem + "-ws")
            // Layers of snapshots whose data dir is gone (a test's, a deleted serve's) go now.
            store.collectGarbageLocked()
        }
        installed = true
        try? HostState.removeTree(temp)
        let timing = SnapshotTiming(
            totalNanos: monotonicNanos() - started, pauseNanos: pauseEnd - pauseStart,
            pausedFiles: rootCopy.copiedFiles + wsCopy.copiedFiles, pausedBytes: rootCopy.copiedBytes + wsCopy.copiedBytes)
        logger.info("snapshot taken", metadata: [
            "box": .string(id), "snapshot": .string(snapshotID), "bytes": "\(size)",
            "ms": "\(timing.totalNanos / 1_000_000)", "pause_ms": "\(Double(timing.pauseNanos / 1000) / 1000)",
        ])
        return (layers, timing)
    }

    /// Writes the snapshot's pin file and its symlink in the store (the caller holds the store's lock).
    func pinSnapshot(_ layers: SnapshotLayers, store: ImageStore) throws {
        try makeDirectories(snapshotPinDirectory, mode: 0o700)
        let file = snapshotPinDirectory + "/" + layers.id + ".json"
        try writeHostFile(file, Array(try JSONEncoder().encode(layers)))
        let link = store.pinPath(file)
        _ = unlink(link)
        if symlink(file, link) != 0 { throw sysError("pin snapshot \(layers.id)") }
    }

    /// The pinned layers of a snapshot of this data dir; nil when it has no pin (deleted, or
    /// its layers lost with the image store).
    public func snapshotLayers(snapshotID: String) -> SnapshotLayers? {
        guard snapshotLayerStem(snapshotID) != nil,
            let bytes = readFileBytes(snapshotPinDirectory + "/" + snapshotID + ".json", limit: 1 << 20),
            let layers = try? JSONDecoder().decode(SnapshotLayers.self, from: Data(bytes))
        else { return nil }
        return layers
    }

    /// Unpins a snapshot; its layers go with the store's GC once no box uses them.
    public func releaseSnapshot(snapshotID: String) async {
        guard let layers = snapshotLayers(snapshotID: snapshotID) else { return }
        let file = snapshotPinDirectory + "/" + snapshotID + ".json"
        let store = ImageStore(root: layers.store)
        await onDedicatedThread(priority: .background) { [self] in
            _ = try? store.withLock {
                _ = unlink(store.pinPath(file))
                _ = unlink(file)
                store.collectGarbageLocked()
            }
            logger.info("snapshot released", metadata: ["snapshot": .string(snapshotID)])
        }
    }

    // MARK: the freezer

    struct Freezer {
        let file: String
        let thawed: String
        func thaw() {
            let fd = open(file, O_WRONLY | O_CLOEXEC)
            if fd >= 0 { _ = writeAll(fd: fd, Array(thawed.utf8)); closeFD(fd) }
        }
    }

    /// Freezes every process of the box and waits until they are; nil when the box has no
    /// cgroup (not running). Thrown (thawed again) when the freeze takes over 10 s.
    func freeze(_ id: String) throws -> Freezer? {
        let path = cgroupsPath(id)
        for root in HostState.cgroupRoots() {
            let v1 = root + path + "/freezer.state", v2 = root + path + "/cgroup.freeze"
            let freezer: Freezer, frozen: () -> Bool
            if access(v1, W_OK) == 0 {
                freezer = Freezer(file: v1, thawed: "THAWED")
                frozen = { readSmallFile(v1, limit: 64)?.hasPrefix("FROZEN") == true }
                try writeSmall(v1, "FROZEN")
            } else if access(v2, W_OK) == 0 {
                freezer = Freezer(file: v2, thawed: "0")
                let events = root + path + "/cgroup.events"
                frozen = { readSmallFile(events, limit: 4096)?.contains("frozen 1") == true }
                try writeSmall(v2, "1")
            } else {
                continue
            }
            let deadline = monotonicNanos() + 10_000_000_000
            while !frozen() {
                if monotonicNanos() > deadline {
                    freezer.thaw()
                    throw BoxRuntimeError.commandFailed("freeze", status: 1, message: "the box's processes did not freeze within 10 s")
                }
                // v1 moves FREEZING → FROZEN only when asked again.
                if access(v1, W_OK) == 0 { try? writeSmall(v1, "FROZEN") }
                usleep(200)
            }
            return freezer
        }
        return nil
    }

    private func writeSmall(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw sysError("open \(path)") }
        defer { closeFD(fd) }
        if !writeAll(fd: fd, Array(text.utf8)) { throw sysError("write \(path)") }
    }
}

extension CrunRuntime {
    /// The store's GC in a job of the blocking executor nobody waits for (a destroy of a box
    /// made from a snapshot).
    func collectSnapshotLayers(_ store: ImageStore) {
        BlockingExecutor.shared.execute { _ = try? store.withLock { store.collectGarbageLocked() } }
    }
}

extension CrunBoxRuntime: BoxSnapshots {
    public func snapshot(box: String, snapshotID: String) async throws -> (layers: SnapshotLayers, timing: SnapshotTiming) {
        try await runtime.snapshot(id: box, snapshotID: snapshotID)
    }
    public func releaseSnapshot(snapshotID: String) async { await runtime.releaseSnapshot(snapshotID: snapshotID) }
}
