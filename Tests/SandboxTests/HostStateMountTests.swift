import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The mount table as the sandbox reads it: the byte-level mountinfo scan, and
/// `isMountPoint` by statx against the table.
/// Serialized: one test reads the mount table while another mounts and unmounts its own
/// tmpfs stacks; in parallel a snapshot of the table can name a mount that is gone.
@Suite(.serialized) struct HostStateMountTests {
    @Test func mountInfoLinesGiveMountPointAndType() {
        let text = """
        22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
        35 22 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:9 master:2 - cgroup cgroup rw,memory
        36 22 0:32 / /tmp/with\\040space rw - tmpfs tmpfs rw
        37 22 0:33 / /tmp/no-optional rw - overlay overlay rw,lowerdir=/a
        broken line
        """
        let entries = HostState.parseMountInfo(Array(text.utf8))
        #expect(entries.map(\.mountPoint) == ["/", "/sys/fs/cgroup/memory", "/tmp/with space", "/tmp/no-optional"])
        #expect(entries.map(\.fsType) == ["ext4", "cgroup", "tmpfs", "overlay"])
    }

    @Test func isMountPointAgreesWithTheTable() throws {
        let table = HostState.mounts()
        #expect(!table.isEmpty)
        // Every mount point this process can look up is one; their parents' plain
        // subdirectories are not.
        for entry in table.prefix(40) where access(entry.mountPoint, F_OK) == 0 {
            if !HostState.isMountPoint(entry.mountPoint) {
                // Tests of other suites mount and unmount in parallel: a mount the snapshot
                // named may be gone by now. Only one still in the table is a disagreement.
                #expect(!HostState.mounts().contains { $0.mountPoint == entry.mountPoint }, "\(entry.mountPoint)")
            }
        }
        #expect(HostState.isMountPoint("/proc"))
        #expect(!HostState.isMountPoint("/proc/self/fd"))
        #expect(!HostState.isMountPoint("/nonexistent-\(getpid())"))
        // A tmpfs of our own: a mount point while mounted, not after.
        let dir = "/tmp/devbox-mountroot-\(getpid())"
        #expect(mkdir(dir, 0o700) == 0)
        defer { _ = rmdir(dir) }
        #expect(!HostState.isMountPoint(dir))
        #expect(mount("tmpfs", dir, "tmpfs", 0, "size=1m") == 0)
        #expect(HostState.isMountPoint(dir))
        #expect(umount(dir) == 0)
        #expect(!HostState.isMountPoint(dir))
        #expect(HostState.cgroupRoots() == HostState.cgroupRoots())
        #expect(HostState.cgroupRoots().allSatisfy { HostState.isMountPoint($0) })
    }

    @Test func unmountStackTakesEveryMountOfAPathWithoutTheTable() throws {
        let dir = "/tmp/devbox-unmountstack-\(getpid())"
        #expect(mkdir(dir, 0o700) == 0)
        defer { _ = rmdir(dir + "/sub"); _ = rmdir(dir) }
        #expect(HostState.unmountStack(dir))  // nothing mounted
        #expect(HostState.unmountStack(dir + "/missing"))  // no such path
        // Three stacked tmpfs, one of them busy (a descriptor open in it): all come off.
        for _ in 0..<3 { #expect(mount("tmpfs", dir, "tmpfs", 0, "size=1m") == 0) }
        #expect(mkdir(dir + "/sub", 0o700) == 0)
        let busy = open(dir + "/sub", O_RDONLY | O_DIRECTORY)
        #expect(busy >= 0)
        defer { close(busy) }
        #expect(HostState.unmountStack(dir))
        #expect(!HostState.isMountPoint(dir))
        #expect(!HostState.mounts().contains { $0.mountPoint == dir })
        // A file bind mount (as a box's user namespace is bound on `<box>/userns`).
        let file = dir + "/file"
        #expect(close(open(file, O_WRONLY | O_CREAT, 0o600)) == 0)
        defer { _ = unlink(file) }
        #expect(mount("/proc/self/ns/user", file, nil, UInt(MS_BIND), nil) == 0)
        #expect(HostState.hasMountPoint(in: dir, within: []))
        #expect(HostState.unmountStack(file))
        #expect(!HostState.hasMountPoint(in: dir, within: []))
        #expect(!HostState.mounts().contains { $0.mountPoint == file })
    }

    @Test func hasMountPointLooksOneLevelIntoTheNamedSubdirectories() throws {
        let dir = "/tmp/devbox-hasmount-\(getpid())"
        for d in [dir, dir + "/a", dir + "/a/b", dir + "/c"] { #expect(mkdir(d, 0o700) == 0) }
        defer { for d in [dir + "/a/b", dir + "/a", dir + "/c", dir] { _ = rmdir(d) } }
        #expect(!HostState.hasMountPoint(in: dir, within: ["a", "missing"]))
        #expect(mount("tmpfs", dir + "/a/b", "tmpfs", 0, "size=1m") == 0)
        #expect(!HostState.hasMountPoint(in: dir, within: []))
        #expect(HostState.hasMountPoint(in: dir, within: ["a"]))
        #expect(umount(dir + "/a/b") == 0)
        #expect(mount("tmpfs", dir + "/c", "tmpfs", 0, "size=1m") == 0)
        #expect(HostState.hasMountPoint(in: dir, within: []))
        #expect(umount(dir + "/c") == 0)
    }

    /// Destroy unmounts a box's own mounts by path; mounts it did not make (what a crash or
    /// someone else left, at any depth, stacked or nested) still go, through the table.
    @Test func destroyLeavesNoMountUnderTheBoxDirectory() async throws {
        try await withHarness("umnt") { h in
            try await h.create("u1")
            try await h.create("u2")
            let d1 = h.runtime.boxDirectory("u1"), d2 = h.runtime.boxDirectory("u2")
            // u1: only its own mounts. u2: a tmpfs stacked on its disk, one at an unknown
            // path with another nested in it.
            #expect(mount("tmpfs", h.runtime.diskMountPath("u2"), "tmpfs", 0, "size=1m") == 0)
            #expect(mkdir(d2 + "/stray", 0o700) == 0)
            #expect(mount("tmpfs", d2 + "/stray", "tmpfs", 0, "size=1m") == 0)
            #expect(mkdir(d2 + "/stray/deeper", 0o700) == 0)
            #expect(mount("tmpfs", d2 + "/stray/deeper", "tmpfs", 0, "size=1m") == 0)
            #expect(HostState.mounts().filter { $0.mountPoint.hasPrefix(d1 + "/") }.count >= 3)
            try await h.runtime.destroy(id: "u1")
            try await h.runtime.destroy(id: "u2")
            let left = HostState.mounts().map(\.mountPoint).filter { $0.hasPrefix(d1) || $0.hasPrefix(d2) || $0.hasPrefix(h.state + "/.trash-") }
            #expect(left == [])
        }
    }
}
