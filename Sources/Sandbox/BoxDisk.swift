import CDevbox
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

// Per-box disk quotas: every box with a disk size (`SandboxLimits.diskBytes` > 0) keeps its
// writable tree — overlay `upper/` and `work/`, and `workspace/` — on an ext4 filesystem of
// its own: a sparse image file `<box>/disk.img`, bound to a loop device (LOOP_CONFIGURE
// with autoclear, loop.c: no `losetup` process) and mounted at `<box>/disk`. Past its size a
// write in the box fails with ENOSPC; the box, the host's filesystem and other boxes carry
// on. `df` in the box shows that filesystem (overlayfs reports its upper layer's).
//
// Why an image: the data dir's filesystem is ext4 without project quotas (and this kernel
// has no quota format), so neither project nor user quotas are available; XFS or btrfs
// subvolumes would need a filesystem of their own; a size-capped tmpfs would count
// against memory and vanish at reboot. A sparse image costs the host only the blocks the
// box writes (plus ~4 MiB of ext4 metadata), so sizes may overcommit the host's disk; the
// service's free-disk floor (`DEVBOX_MIN_FREE_DISK`) refuses creates before it fills up.
//
// Speed: formatting takes ~30-50 ms (`mkfs.ext4` with lazy inode-table and journal init,
// no discard), binding a loop device and mounting ext4 another ~5-20 ms (the mount writes
// the superblock through the loop device): too much for a create (~34 ms cold). A small
// pool of ready disks per size — formatted, bound and mounted at `<state>/.disks/<bytes>-*`
// by a background thread — is taken by a rename of the image and a second mount of the
// already mounted device (it shares the superblock: no I/O), then the pool's mount is
// detached. Boxes of the warm pool get theirs when they are made. Mounted with
// `noinit_itable`: ext4's lazy-init thread would otherwise zero every inode table, writing
// ~1.5 % of the size.
//
// Lifetime: `stop` unmounts it (the loop device unbinds itself), `start` mounts it again,
// as does the revival after a reboot; `destroy` and the start-up sweep unmount it and
// delete the box directory with its image. A loop device is never shared between serves:
// LOOP_CTL_GET_FREE + LOOP_CONFIGURE fails with EBUSY for a device another process bound
// in between, and loop.c then takes the next free one.

/// A formatted image, bound to a loop device and mounted, ready for a box.
struct ReadyDisk: Sendable {
    let image: String
    let mountPoint: String
    let device: String
}

/// Ready disks, per size in bytes.
final class DiskImagePool: @unchecked Sendable {
    private let cond = NSCondition()
    private var ready: [Int64: [ReadyDisk]] = [:]
    private var wanted: Set<Int64> = []
    private var filling = false
    /// Bumped by `drain`: an image the filler was making for an earlier generation is unwanted.
    private var generation = 0
    /// When a create last took a disk: the filler waits until creates pause for `quietNanos`
    /// (its mkfs and mount would otherwise compete with them for the CPU, as the warm pool's
    /// refills would).
    private var lastDemand: UInt64 = 0
    static let quietNanos: UInt64 = 300_000_000
    /// Images kept ready per size.
    static let perSize = 2

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        cond.lock()
        defer { cond.unlock() }
        return try body()
    }

    /// A ready disk of this size, removed from the pool.
    func take(bytes: Int64) -> ReadyDisk? {
        locked {
            lastDemand = monotonicNanos()
            return ready[bytes]?.popLast()
        }
    }

    /// Keeps images of this size ready from now on; true when the caller must start a filler.
    func want(_ bytes: Int64) -> Bool {
        locked {
            wanted.insert(bytes)
            guard !filling, (ready[bytes]?.count ?? 0) < Self.perSize else { return false }
            filling = true
            return true
        }
    }

    /// The next size to make an image of; nil (and the filler ends) when all are full.
    func nextJob() -> (bytes: Int64, generation: Int)? {
        locked {
            while let size = wanted.sorted().first(where: { (ready[$0]?.count ?? 0) < Self.perSize }) {
                let now = monotonicNanos(), quietAt = lastDemand &+ Self.quietNanos
                if lastDemand == 0 || now >= quietAt { return (size, generation) }
                _ = cond.wait(until: Date(timeIntervalSinceNow: Double(quietAt - now) / 1e9))
            }
            filling = false
            cond.broadcast()
            return nil
        }
    }

    /// Adds an image the filler made; false when it is no longer wanted (the filler deletes it).
    func add(bytes: Int64, disk: ReadyDisk, generation made: Int) -> Bool {
        locked {
            if made != generation { return false }
            ready[bytes, default: []].append(disk)
            return true
        }
    }

    /// The filler failed: it stops, the sizes stay wanted (the next create asks again).
    func fillerFailed() { locked { filling = false; cond.broadcast() } }

    /// Forgets every image and size and waits for the filler to end; returns the images
    /// (the caller deletes them).
    func drain() -> [ReadyDisk] {
        locked {
            generation += 1
            wanted = []
            cond.broadcast()
            while filling { cond.wait() }
            defer { ready = [:] }
            return ready.values.flatMap { $0 }
        }
    }

    var readyCount: Int { locked { ready.values.reduce(0) { $0 + $1.count } } }
}

extension CrunRuntime {
    /// `<state>/.disks`: ready disks (image `<bytes>-<pid>-<n>.img`, mounted at `<bytes>-<pid>-<n>`).
    var diskDirectory: String { configuration.stateDirectory + "/.disks" }

    func diskImagePath(_ id: String) -> String { boxDirectory(id) + "/disk.img" }
    func diskMountPath(_ id: String) -> String { boxDirectory(id) + "/disk" }

    /// Where the box's writable tree (`upper`, `work`, `workspace`) lives: `<box>/disk`,
    /// or the box directory itself for a box made before disk quotas.
    func writableRoot(_ id: String) -> String {
        let dir = boxDirectory(id)
        return access(dir + "/upper", F_OK) == 0 ? dir : dir + "/disk"
    }

    /// Makes the box's writable tree in a new box directory: the disk (if it has a size),
    /// then `upper`, `work` and `workspace` in it. Every directory a box writes to is made
    /// here.
    func makeWritableTree(_ name: String, diskBytes: Int64) throws {
        let root = diskMountPath(name)
        if mkdir(root, 0o700) != 0 { throw sysError("mkdir disk") }
        if diskBytes > 0 {
            defer { wantDiskImages(diskBytes) }
            if !adoptReadyDisk(name, bytes: diskBytes) {
                try formatImage(at: diskImagePath(name), bytes: diskBytes)
                try mountDisk(name, fresh: true)
            }
        }
        for (sub, mode) in [("upper", 0o755), ("work", 0o700), ("workspace", 0o755)] as [(String, mode_t)] {
            if mkdir(root + "/" + sub, mode) != 0 { throw sysError("mkdir \(sub)") }
            _ = chmod(root + "/" + sub, mode)
        }
    }

    // MARK: images

    /// Gives the box a ready disk of the pool: its image is renamed to `<box>/disk.img`, its
    /// filesystem (mounted in the pool) mounted at `<box>/disk` as well — a second mount of a
    /// mounted device shares its superblock: no I/O — and the pool's mount detached. False
    /// when the pool has none of this size (the caller formats one).
    func adoptReadyDisk(_ name: String, bytes: Int64) -> Bool {
        while let ready = diskImages.take(bytes: bytes) {
            if rename(ready.image, diskImagePath(name)) == 0 {
                if dbx_mount(ready.device, diskMountPath(name), "ext4", 0, "noinit_itable") == 0 {
                    releaseReadyMount(ready.mountPoint)
                    return true
                }
                logger.warning("mounting a ready disk failed", metadata: ["device": .string(ready.device), "errno": "\(lastErrno())"])
                releaseReadyMount(ready.mountPoint)
                _ = unlink(diskImagePath(name))
            } else {
                logger.warning("a ready disk image is gone", metadata: ["image": .string(ready.image), "errno": "\(lastErrno())"])
                releaseReadyMount(ready.mountPoint)
            }
        }
        return false
    }

    /// Unmounts a pool mount point (its device unbinds itself once no mount holds it) and removes it.
    func releaseReadyMount(_ path: String) {
        if dbx_umount(path, 0) != 0 && lastErrno() == EBUSY { _ = dbx_umount(path, Int32(MNT_DETACH)) }
        _ = rmdir(path)
    }

    /// Keeps images of this size ready (formatting them on a background thread).
    func wantDiskImages(_ bytes: Int64) {
        guard bytes > 0, diskImages.want(bytes) else { return }
        let thread = Thread { [self] in fillDiskImages() }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Sizes whose images should be ready before the first create of each (the plans').
    public func prepareDisks(sizes: [Int64]) {
        for s in Set(sizes) where s > 0 { wantDiskImages(s) }
    }

    /// Ready disks now (tests).
    var readyDiskImages: Int { diskImages.readyCount }

    func fillDiskImages() {
        while let (bytes, generation) = diskImages.nextJob() {
            do {
                try makeDirectories(diskDirectory, mode: 0o700)
                let n = counterNext()
                let base = diskDirectory + "/\(bytes)-\(getpid())-\(n)"
                let disk = try makeReadyDisk(image: base + ".img", mountPoint: base, bytes: bytes)
                if !diskImages.add(bytes: bytes, disk: disk, generation: generation) {
                    releaseReadyMount(disk.mountPoint)
                    _ = unlink(disk.image)
                }
            } catch {
                logger.warning("making a ready disk image failed", metadata: ["error": .string("\(error)")])
                diskImages.fillerFailed()
                return
            }
        }
    }

    /// Formats an image at `image`, binds it and mounts it at `mountPoint`.
    func makeReadyDisk(image: String, mountPoint: String, bytes: Int64) throws -> ReadyDisk {
        try formatImage(at: image, bytes: bytes)
        do {
            if mkdir(mountPoint, 0o700) != 0 { throw sysError("mkdir \(mountPoint)") }
            let device = try attachAndMount(image: image, at: mountPoint)
            return ReadyDisk(image: image, mountPoint: mountPoint, device: device)
        } catch {
            _ = rmdir(mountPoint)
            _ = unlink(image)
            throw error
        }
    }

    /// Removes what an earlier run left in `<state>/.disks` (start-up): ready disks are
    /// cheap to make again.
    func loadDiskImages() {
        let base = diskDirectory + "/"
        for m in HostState.mounts().map(\.mountPoint) where m.hasPrefix(base) { releaseReadyMount(m) }
        for name in MaskPlan.listDirectory(diskDirectory) {
            let path = diskDirectory + "/" + name
            if unlink(path) != 0 { _ = rmdir(path) }
        }
    }

    /// Deletes the ready disks (service shutdown, sweep of an empty service).
    func removeReadyDiskImages() {
        for disk in diskImages.drain() {
            releaseReadyMount(disk.mountPoint)
            _ = unlink(disk.image)
        }
        loadDiskImages()
        _ = rmdir(diskDirectory)
    }

    /// A sparse file of `bytes` with an empty ext4 filesystem on it.
    func formatImage(at path: String, bytes: Int64) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("create \(path)") }
        let sized = ftruncate(fd, off_t(bytes)) == 0
        closeFD(fd)
        if !sized { let e = sysError("size \(path)"); _ = unlink(path); throw e }
        let mkfs = resolveExecutable("mkfs.ext4")
        // -m 0: no blocks reserved for root (the box's root would get them anyway). -b 4096:
        // the loop device's block size (a small image would get 1 KiB blocks and not mount).
        // Lazy inode tables and journal, no discard: nothing but metadata is written.
        let r = try runCommandBlocking(mkfs, ["mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", "-L", "devbox",
                                              "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path])
        guard r.status == 0 else {
            _ = unlink(path)
            throw SandboxError.commandFailed("mkfs.ext4", status: r.status, message: r.stderrText)
        }
    }

    // MARK: mounting

    /// Mounts the box's disk image at `<box>/disk` unless it is mounted (or the box has none).
    /// `fresh`: an image just formatted there (a create): neither mounted nor bound.
    func mountDisk(_ id: String, fresh: Bool = false) throws {
        let image = diskImagePath(id), target = diskMountPath(id)
        if !fresh {
            guard access(image, F_OK) == 0, !HostState.isMountPoint(target) else { return }
            // A device still bound to this image (its filesystem lazily unmounted but busy) must
            // be the one mounted: a second device would mount the same ext4 twice.
            if let dev = loopDevice(backing: image) {
                if dbx_mount(dev, target, "ext4", 0, "noinit_itable") == 0 { return }
            }
        }
        _ = try attachAndMount(image: image, at: target)
    }

    /// Binds `image` to a free loop device and mounts its ext4 at `target`; returns the device.
    func attachAndMount(image: String, at target: String) throws -> String {
        let imageFD = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if imageFD < 0 { throw sysError("open \(image)") }
        defer { closeFD(imageFD) }
        var number: Int32 = -1
        let loopFD = dbx_loop_attach(imageFD, &number)
        if loopFD < 0 { throw sysError("attach a loop device to \(image)") }
        // Held open until the mount holds the device (autoclear unbinds it at the last close).
        defer { closeFD(loopFD) }
        let device = "/dev/loop\(number)"
        if dbx_mount(device, target, "ext4", 0, "noinit_itable") != 0 { throw sysError("mount \(image)") }
        return device
    }

    /// Unmounts the box's disk (its loop device unbinds itself). Lazily if it is busy.
    func unmountDisk(_ id: String) {
        let target = diskMountPath(id)
        for _ in 0..<3 where HostState.isMountPoint(target) {
            if dbx_umount(target, 0) == 0 { continue }
            if lastErrno() == EBUSY { _ = dbx_umount(target, Int32(MNT_DETACH)) } else { break }
        }
    }

    /// `/dev/loopN` bound to `image`, if any (sysfs: `/sys/block/loopN/loop/backing_file`).
    func loopDevice(backing image: String) -> String? {
        for name in MaskPlan.listDirectory("/sys/block") where name.hasPrefix("loop") {
            guard let file = readSmallFile("/sys/block/\(name)/loop/backing_file", limit: 4096) else { continue }
            if file.trimmingCharacters(in: .newlines) == image { return "/dev/" + name }
        }
        return nil
    }

    /// Loop devices bound to a box's image under the state directory (`losetup -a`'s view);
    /// `ready`: those of the pool's ready disks instead.
    public func boundLoopDevices(ready: Bool = false) -> [String] {
        let base = configuration.stateDirectory + "/", pool = diskDirectory + "/"
        return MaskPlan.listDirectory("/sys/block").filter { name in
            guard name.hasPrefix("loop"), let file = readSmallFile("/sys/block/\(name)/loop/backing_file", limit: 4096),
                  file.hasPrefix(base) else { return false }
            return file.hasPrefix(pool) == ready
        }
    }
}
