import CDevbox
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

// The warm pool: boxes started ahead of demand, so that a create skips `crun run`.
//
// A pooled box is a cold-created box in every respect (the same bundle, limits, mask
// layer, setup shell, cgroups) whose name is its own (`wp_<random>`) instead of a
// devbox id, and whose environment file is empty. `create` with the pool's limits takes
// an idle one and makes it the devbox's box:
//
//   1. checks that its init still runs in its cgroup and that its root was mounted with
//      the current mask layer (a host change since then would otherwise be visible);
//   2. writes the devbox's env file, `/etc/hostname` and `/etc/hosts` through the host's
//      view of its root (openat2 beneath the root, no symlink followed; nothing from a
//      user has run in the box yet);
//   3. sets the hostname of the box's UTS namespace (setns through a pidfd, refused
//      when that namespace would be the service's own); `config.json` gets it when a
//      `start` after a `stop` runs the box again (`patchBundleHostname`);
//   4. commits by creating the symlink `<state>/<prefix><devbox id>` → `<prefix><name>`.
//
// From then on every call with the devbox id resolves to the box's name (`boxName`):
// container, directory, cgroup, setup shell, init pid. A crash before the symlink leaves
// an unclaimed box that the start-up sweep removes; after it, the devbox owns the box as
// if it had been created cold. `destroy` removes the box and then the symlink.
//
// The pool is refilled one box at a time, by one thread, only after creates have paused
// for `quietNanos`: a burst of creates takes idle boxes and is never slowed by refills.

/// An idle box of the pool.
struct PooledBox: Sendable {
    let name: String
    let limits: BoxLimits
    /// The mask layer its root was mounted with (nil with a base image).
    let maskLayer: String?
}

/// The pool's state, guarded by its condition.
final class WarmPool: @unchecked Sendable {
    /// A condition, not a plain lock: the filler thread waits on it for demand, for creates
    /// to pause and between failed refills (with deadlines), and is woken by changes.
    private let cond = NSCondition()
    private var target = 0
    private var limits: BoxLimits?
    private var idle: [PooledBox] = []
    private var discarded: [String] = []
    private var running = false
    private var stopping = false
    private var lastDemand: UInt64 = 0
    private var finished: [CheckedContinuation<Void, Never>] = []
    /// How long creates must have paused before the pool is refilled.
    private var quietNanos: UInt64 = 300_000_000

    func setQuiet(nanos: UInt64) {
        locked {
            quietNanos = nanos
            cond.broadcast()
        }
    }

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        cond.lock()
        defer { cond.unlock() }
        return try body()
    }

    /// A create is starting: refills wait until creates pause.
    func noteDemand() { locked { lastDemand = monotonicNanos() } }

    /// Takes an idle box of these limits, oldest first.
    func take(limits wanted: BoxLimits) -> PooledBox? {
        locked {
            guard let i = idle.firstIndex(where: { $0.limits == wanted }) else { return nil }
            let box = idle.remove(at: i)
            cond.broadcast()
            return box
        }
    }

    /// A box that must not be used: the filler destroys it.
    func discard(_ name: String) {
        locked {
            discarded.append(name)
            cond.broadcast()
        }
    }

    func idleNames() -> Set<String> { locked { Set(idle.map(\.name)) } }

    var status: WarmPoolStatus { locked { WarmPoolStatus(target: target, idle: idle.count) } }

    /// Sets the size and limits; true when the caller must start the filler thread.
    func configure(size: Int, limits newLimits: BoxLimits) -> Bool {
        locked {
            target = size
            if limits != newLimits {
                discarded += idle.map(\.name)
                idle = []
                limits = newLimits
            }
            cond.broadcast()
            if running || size <= 0 { return false }
            running = true
            stopping = false
            return true
        }
    }

    enum Next {
        case destroy([String])
        case create(BoxLimits)
        case exit
    }

    /// The filler's next job; waits while there is none.
    func next() -> Next {
        locked {
            while true {
                if stopping { return .exit }
                if !discarded.isEmpty {
                    defer { discarded = [] }
                    return .destroy(discarded)
                }
                if let limits, idle.count < target {
                    let now = monotonicNanos()
                    let quietAt = lastDemand &+ quietNanos
                    if now >= quietAt { return .create(limits) }
                    _ = cond.wait(until: Date(timeIntervalSinceNow: Double(quietAt - now) / 1e9))
                    continue
                }
                cond.wait()
            }
        }
    }

    /// Adds a box the filler made; false when the pool no longer wants it.
    func add(_ box: PooledBox) -> Bool {
        locked {
            guard !stopping, box.limits == limits, idle.count < target else { return false }
            idle.append(box)
            return true
        }
    }

    /// Waits (on the filler thread) after a failed refill, unless the pool stops.
    func backOff(seconds: Double) {
        locked {
            if !stopping { _ = cond.wait(until: Date(timeIntervalSinceNow: seconds)) }
        }
    }

    /// Stops the filler; returns the idle boxes to destroy once it has exited.
    func stop() async -> [String] {
        let wasRunning = locked { () -> Bool in
            stopping = true
            cond.broadcast()
            return running
        }
        if wasRunning {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let done = locked { () -> Bool in
                    if !running { return true }
                    finished.append(c)
                    return false
                }
                if done { c.resume() }
            }
        }
        return locked {
            let names = idle.map(\.name) + discarded
            idle = []
            discarded = []
            target = 0
            return names
        }
    }

    /// The filler thread ends.
    func fillerExited() {
        let waiters = locked { () -> [CheckedContinuation<Void, Never>] in
            running = false
            defer { finished = [] }
            return finished
        }
        for w in waiters { w.resume() }
    }
}

/// How full the warm pool is.
public struct WarmPoolStatus: Sendable, Equatable {
    /// Boxes the pool keeps ready (0: no pool).
    public var target: Int
    /// Boxes ready now.
    public var idle: Int
}

extension CrunRuntime {
    static let poolNamePrefix = "wp_"

    /// Keeps `size` boxes of these limits started ahead of demand (0: none). Call after
    /// the start-up sweep; again to change the size.
    public func startWarmPool(size: Int, limits: BoxLimits) {
        guard pool.configure(size: max(0, size), limits: limits) else { return }
        logger.info("warm pool on", metadata: ["size": "\(size)"])
        // Lives until the pool stops; refills yield to the API (WorkPriority.background).
        LoopThread.start(name: "devbox-warmpool", nice: backgroundNice) { [self] in
            fill()
            pool.fillerExited()
        }
    }

    /// Stops refilling and destroys the idle boxes.
    public func stopWarmPool() async {
        let names = await pool.stop()
        guard !names.isEmpty else { return }
        await onDedicatedThread(priority: .background) { [self] in
            for name in names { withBoxLock(name) { destroyBlocking(name) } }
        }
    }

    public var warmPoolStatus: WarmPoolStatus { pool.status }

    /// The filler thread's loop.
    func fill() {
        while true {
            switch pool.next() {
            case .exit:
                return
            case .destroy(let names):
                for name in names { withBoxLock(name) { destroyBlocking(name) } }
            case .create(let limits):
                let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
                let name = Self.poolNamePrefix
                    + String(decoding: (0..<16).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] }, as: UTF8.self)
                do {
                    let layer = try withBoxLock(name) {
                        do {
                            return try createBlocking(name: name, limits: limits, env: [:], setupShell: true)
                        } catch {
                            destroyBlocking(name)
                            throw error
                        }
                    }
                    if !pool.add(PooledBox(name: name, limits: limits, maskLayer: layer)) {
                        withBoxLock(name) { destroyBlocking(name) }
                    }
                } catch {
                    logger.warning("warm pool: starting a box failed", metadata: ["error": .string("\(error)")])
                    pool.backOff(seconds: 5)
                }
            }
        }
    }

    // MARK: aliases

    /// `<state>/<prefix><id>`: the box directory of a cold box, the alias of a warm one.
    func aliasPath(_ id: String) -> String { configuration.stateDirectory + "/" + configuration.idPrefix + id }

    func lstatExists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Reads the aliases left on disk (by an earlier run of the service).
    func loadAliases() {
        let prefix = configuration.idPrefix
        var found: [String: String] = [:]
        for entry in MaskPlan.listDirectory(configuration.stateDirectory) where entry.hasPrefix(prefix) {
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink(configuration.stateDirectory + "/" + entry, &buf, buf.count - 1)
            guard n > 0 else { continue }
            let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let id = String(entry.dropFirst(prefix.count))
            let name = String(target.dropFirst(prefix.count))
            guard target.hasPrefix(prefix), CrunRuntime.isValidComponent(id, max: 64),
                CrunRuntime.isValidComponent(name, max: 64)
            else { continue }
            found[id] = name
        }
        aliases.withLock { $0 = found }
    }

    /// Removes `id`'s alias (after its box is gone).
    func removeAlias(_ id: String) {
        guard aliases.withLock({ $0[id] }) != nil else { return }
        if unlink(aliasPath(id)) != 0 && lastErrno() != ENOENT {
            logger.warning("removing a box alias failed", metadata: ["box": .string(id), "errno": "\(lastErrno())"])
            return
        }
        aliases.withLock { _ = $0.removeValue(forKey: id) }
    }

    // MARK: claim

    /// Makes the pooled `box` devbox `id`'s box (the steps at the top of this file). On a
    /// dedicated thread, with `id`'s box lock held. False (the box discarded) when it
    /// cannot be used: the caller takes another or creates one cold.
    func claimPooled(_ box: PooledBox, id: String, env: [String: String], setupShell: Bool,
                     egress: EgressPolicy = .allowAll) -> Bool {
        do {
            // A box of another image than today's default, or of an older mask layer, is not used.
            let image = BoxImage.read(boxDirectory: boxDirectory(box.name))
            guard image == defaultImage.withLock({ $0 }), try image != nil || maskLayer() == box.maskLayer else {
                logger.info("warm pool: box predates the current image or mask layer", metadata: ["box": .string(box.name)])
                pool.discard(box.name)
                return false
            }
            guard let pid = knownInitPid(box.name) else { throw BoxRuntimeError.notRunning(box.name) }
            // The pidfd pins the process checked; a dead init fails the setns below.
            let pidfd = try pinInit(box.name, pid: pid)
            defer { closeFD(pidfd) }

            let rootFD = try SafeFS.openDirectory(rootfsPath(box.name))
            defer { closeFD(rootFD) }
            try writeEnvFile(box.name, env: env)
            // Both files are the box's own (in its upper dir since it was made): rewritten in place.
            try overwrite(rootFD: rootFD, "etc/hostname", Array("\(id)\n".utf8))
            try overwrite(rootFD: rootFD, "etc/hosts", hostsFile(hostname: id, lowers: image?.lowerDirs))
            let rc = id.withCString { dbx_sethostname_in(pidfd, pid, $0, strlen($0)) }
            if rc != 0 { throw sysError("set the hostname of \(box.name)") }
            // The box got its network when it was made; only a policy other than allow_all is new.
            if egress != .allowAll { try networks?.setPolicy(name: box.name, egress) }
            // (config.json keeps the pool name as hostname until a `start` needs it: patchBundleHostname.)
            // The commit point.
            if symlink(configuration.idPrefix + box.name, aliasPath(id)) != 0 { throw sysError("link \(id) to \(box.name)") }
            aliases.withLock { $0[id] = box.name }
            if !setupShell, let ch = takeSetupChannel(id) { finishSetupShellBlocking(ch) }
            return true
        } catch {
            logger.warning("warm pool: a box could not be taken", metadata: ["box": .string(box.name), "error": .string("\(error)")])
            pool.discard(box.name)
            return false
        }
    }

    /// Replaces the contents of the regular file `path` beneath `rootFD` (no symlink followed).
    func overwrite(rootFD: Int32, _ path: String, _ bytes: [UInt8]) throws {
        let fd = dbx_open_beneath(rootFD, path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_NONBLOCK, 0)
        if fd < 0 { throw sysError("open \(path)") }
        defer { closeFD(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw BoxRuntimeError.invalidArgument("\(path) is not a file") }
        if !writeAll(fd: fd, bytes) { throw sysError("write \(path)") }
    }

    /// A box taken from the pool still has the pool name as hostname in its `config.json`:
    /// replaced by the devbox id before the box runs again. (Both names are plain
    /// identifiers, which the serializer writes unescaped.)
    func patchBundleHostname(_ id: String) throws {
        let name = boxName(id)
        guard name != id else { return }
        let path = boxDirectory(id) + "/config.json"
        guard let bytes = readFileBytes(path) else { throw sysError("read \(path)") }
        let old = Array("\"hostname\":\"\(name)\"".utf8), new = Array("\"hostname\":\"\(id)\"".utf8)
        guard let at = bytes.firstRange(of: old) else { return }
        var patched = bytes
        patched.replaceSubrange(at, with: new)
        try writeHostFile(path, patched)
    }
}
