import CDevbox
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

// Per-box disk quotas: every box with a disk size (`BoxLimits.diskBytes` > 0) keeps its
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
// box writes (plus ~250 KiB of ext4 metadata), so sizes may overcommit the host's disk; the
// service's free-disk floor (`DEVBOX_MIN_FREE_DISK`) refuses creates before it fills up.
//
// Speed: `mkfs.ext4` (lazy inode-table and journal init, no discard) takes ~10-30 ms, a
// process of its own that syncs what it wrote; binding a loop device and mounting ext4
// another ~5-35 ms (loading the journal flushes the device: the image's dirty pages are
// synced to the host's disk). Too much for a create (~30 ms cold). So:
// - each size is formatted once, into a template (`<state>/.disks/template-<bytes>.img`);
//   an image is a copy of the template's data extents (~250 KiB, holes stay holes:
//   ~0.3 ms, `makeImage`);
// - a pool of ready disks per size — copied, bound and mounted at `<state>/.disks/<bytes>-*`
//   by a background thread — is taken by a rename of the image and a second mount of the
//   already mounted device (it shares the superblock: no I/O), then the pool's mount is
//   detached. The pool refills as soon as a disk is taken, creates still running, and
//   grows (bounded) when a burst of creates outran it (`DiskImagePool`). Boxes of the warm
//   pool get theirs when they are made.
// Mounted with `noinit_itable`: ext4's lazy-init thread would otherwise zero every inode
// table, writing ~1.5 % of the size.
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
///
/// How many: `minPerSize` of each wanted size at first; every create that finds none of its
/// size (a burst outran the pool) keeps one more ready from then on, up to `maxPerSize`, so
/// the next burst of that size is served from the pool. One filler at a time (a job of the
/// blocking executor at the background nice of box teardown) refills whenever a size is short, while creates are
/// still running: a ready disk is a copy of the size's template (no mkfs process) plus a
/// loop device and a mount, so the refill no longer waits for creates to pause.
final class DiskImagePool: @unchecked Sendable {
    /// Guards the state below; a condition, not a plain lock, because `drain` waits for the
    /// filler to end.
    private let cond = NSCondition()
    private var ready: [Int64: [ReadyDisk]] = [:]
    private var wanted: Set<Int64> = []
    /// Images to keep ready, per size (`minPerSize` unless creates found none).
    private var targets: [Int64: Int] = [:]
    private var filling = false
    /// Bumped by `drain`: an image the filler was making for an earlier generation is unwanted.
    private var generation = 0
    /// Images kept ready per size at first, and at most (a burst larger than that formats
    /// the rest inline; each costs a loop device, a mount and ~250 KiB of the data dir).
    static let minPerSize = 2
    static let maxPerSize = 24

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        cond.lock()
        defer { cond.unlock() }
        return try body()
    }

    private func short(_ bytes: Int64) -> Bool { (ready[bytes]?.count ?? 0) < (targets[bytes] ?? Self.minPerSize) }

    /// A ready disk of this size, removed from the pool. None ready: the pool of this size
    /// grows by one (the caller then wants the size, which starts the filler).
    func take(bytes: Int64) -> ReadyDisk? {
        locked {
            if let disk = ready[bytes]?.popLast() { return disk }
            if wanted.contains(bytes) { targets[bytes] = min(Self.maxPerSize, (targets[bytes] ?? Self.minPerSize) + 1) }
            return nil
        }
    }

    /// Keeps images of this size ready from now on; true when the caller must start a filler.
    func want(_ bytes: Int64) -> Bool {
        locked {
            wanted.insert(bytes)
            guard !filling, short(bytes) else { return false }
            filling = true
            return true
        }
    }

    /// The next size to make an image of; nil (and the filler ends) when all are full.
    func nextJob() -> (bytes: Int64, generation: Int)? {
        locked {
            if let size = wanted.sorted().first(where: short) { return (size, generation) }
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

    /// Forgets every image, size and target and waits for the filler to end; returns the
    /// images (the caller deletes them).
    func drain() -> [ReadyDisk] {
        locked {
            generation += 1
            wanted = []
            targets = [:]
            cond.broadcast()
            while filling { cond.wait() }
            defer { ready = [:] }
            return ready.values.flatMap { $0 }
        }
    }

    var readyCount: Int { locked { ready.values.reduce(0) { $0 + $1.count } } }
    /// Images kept ready of this size now (tests).
    func target(_ bytes: Int64) -> Int { locked { targets[bytes] ?? Self.minPerSize } }
}

extension CrunRuntime {
    /// `<state>/.disks`: ready disks (image `<bytes>-<pid>-<n>.img`, mounted at `<bytes>-<pid>-<n>`)
    /// and each size's template (`template-<bytes>.img`).
    var diskDirectory: String { configuration.stateDirectory + "/.disks" }
    func diskTemplatePath(_ bytes: Int64) -> String { diskDirectory + "/template-\(bytes).img" }

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
                try makeImage(at: diskImagePath(name), bytes: diskBytes)
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

    /// Keeps images of this size ready: the filler is a job of the blocking executor nobody
    /// waits for, which ends once every wanted size is full (not a loop of its own).
    func wantDiskImages(_ bytes: Int64) {
        guard bytes > 0, diskImages.want(bytes) else { return }
        // At the pools' background nice whichever thread asks (a create may run at 0).
        BlockingExecutor.shared.execute(nice: backgroundNice) { [self] in fillDiskImages() }
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
                try makeDiskTemplate(bytes: bytes)
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
        try makeImage(at: image, bytes: bytes)
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

    /// Formats the template of this size once (`template-<bytes>.img`; the filler's first job
    /// of a size, again after a restart).
    func makeDiskTemplate(bytes: Int64) throws {
        let template = diskTemplatePath(bytes)
        if access(template, F_OK) == 0 { return }
        let scratch = diskDirectory + "/.template-\(bytes)-\(getpid())-\(counterNext())"
        try formatImage(at: scratch, bytes: bytes)
        if rename(scratch, template) != 0 { let e = sysError("rename \(scratch)"); _ = unlink(scratch); throw e }
    }

    /// A new empty ext4 image of `bytes` at `path`: a copy of the size's template when there
    /// is one (its ~250 KiB of metadata, the rest stays a hole: ~0.3 ms, against ~10-30 ms
    /// for `mkfs.ext4`, a process of its own that syncs the file), formatted otherwise.
    /// Every copy has the template's filesystem UUID; nothing here reads it (the kernel
    /// mounts filesystems of equal UUIDs side by side; boxes see their disk only as `/`'s
    /// upper layer and `/workspace`).
    func makeImage(at path: String, bytes: Int64) throws {
        let template = diskTemplatePath(bytes)
        guard access(template, F_OK) == 0 else { return try formatImage(at: path, bytes: bytes) }
        do {
            try copySparse(from: template, to: path)
        } catch {
            logger.warning("copying a disk template failed; formatting", metadata: ["error": .string("\(error)")])
            _ = unlink(path)
            try formatImage(at: path, bytes: bytes)
        }
    }

    /// Copies `source` to a new file `path` (0600) of the same size, writing only the
    /// source's data extents (SEEK_DATA/SEEK_HOLE): holes stay holes.
    func copySparse(from source: String, to path: String) throws {
        let src = open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if src < 0 { throw sysError("open \(source)") }
        defer { closeFD(src) }
        var st = stat()
        if fstat(src, &st) != 0 { throw sysError("stat \(source)") }
        let dst = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if dst < 0 { throw sysError("create \(path)") }
        defer { closeFD(dst) }
        if ftruncate(dst, st.st_size) != 0 { throw sysError("size \(path)") }
        let seekData: Int32 = 3, seekHole: Int32 = 4  // Linux's SEEK_DATA, SEEK_HOLE
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while offset < st.st_size {
            let start = lseek(src, offset, seekData)
            if start < 0 {
                if lastErrno() == ENXIO { break }  // only a hole after `offset`
                throw sysError("seek \(source)")
            }
            let end = lseek(src, start, seekHole)
            if end < 0 { throw sysError("seek \(source)") }
            var at = start
            while at < end {
                let want = Int(min(Int64(buffer.count), Int64(end - at)))
                let n = buffer.withUnsafeMutableBytes { pread(src, $0.baseAddress, want, at) }
                if n < 0 && lastErrno() == EINTR { continue }
                if n <= 0 { throw sysError("read \(source)") }
                var done = 0
                while done < n {
                    let w = buffer.withUnsafeBytes { pwrite(dst, $0.baseAddress! + done, n - done, at + off_t(done)) }
                    if w < 0 && lastErrno() == EINTR { continue }
                    if w <= 0 { throw sysError("write \(path)") }
                    done += w
                }
                at += off_t(n)
            }
            offset = end
        }
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
        // Lazy inode tables and journal, no discard: nothing but metadata is written. No
        // resize inode: its reserved descriptor blocks (for growing the filesystem 1024-fold
        // while mounted) were 4 MiB of zeros written per 10 GiB image, 95 % of what mkfs wrote
        // and the first mount then synced; an offline resize2fs can still grow the image.
        let r = try runCommandBlocking(mkfs, ["mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", "-L", "devbox",
                                              "-O", "^resize_inode",
                                              "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", path])
        guard r.status == 0 else {
            _ = unlink(path)
            throw BoxRuntimeError.commandFailed("mkfs.ext4", status: r.status, message: r.stderrText)
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
