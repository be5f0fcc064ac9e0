import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The mount table as the sandbox reads it: the byte-level mountinfo scan, and
/// `isMountPoint` by statx against the table.
@Suite struct HostStateMountTests {
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
            #expect(HostState.isMountPoint(entry.mountPoint), "\(entry.mountPoint)")
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
}
