import CDevbox
import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Snapshot layers (LayerCopy.swift, issue 23): a box's writable tree copied in canonical
/// ids with everything overlay needs, and the incremental second pass the freezer waits for.
@Suite(.serialized)
struct LayerCopyTests {
    let map = BoxIDMap(block: 7)!

    func tempDir() throws -> String {
        var t = Array("/tmp/devbox-layercopy-XXXXXX".utf8CString)
        guard let p = t.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw BoxRuntimeError.system("mkdtemp", errno: errno) }
        return String(cString: p)
    }

    func write(_ path: String, _ text: String) { _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) }

    func st(_ path: String) -> stat {
        var s = stat()
        _ = lstat(path, &s)
        return s
    }

    @Test func copiesInCanonicalIdsWithEverythingOverlayNeeds() throws {
        let tmp = try tempDir()
        defer { try? HostState.removeTree(tmp) }
        let src = tmp + "/src", dst = tmp + "/dst"
        mkdir(src, 0o755)
        mkdir(src + "/dir", 0o750)
        write(src + "/dir/file", "hello")
        chown(src + "/dir/file", map.base + 1000, map.base + 1000)
        chown(src + "/dir", map.base, map.base)
        write(src + "/suid", "x")
        chown(src + "/suid", map.base, map.base)
        chmod(src + "/suid", 0o4755)
        write(src + "/outside", "y")
        chown(src + "/outside", 4242, 4242)
        link(src + "/dir/file", src + "/hardlink")
        symlink("dir/file", src + "/sym")
        mknod(src + "/whiteout", S_IFCHR | 0o000, 0)
        mkdir(src + "/opaque", 0o755)
        #expect(dbx_lsetxattr(src + "/opaque", "trusted.overlay.opaque", "y", 1) == 0)
        #expect(dbx_lsetxattr(src + "/opaque", "trusted.overlay.origin", "zz", 2) == 0)
        // A 64 MiB file with 4 KiB of data at its end: holes stay holes.
        let fd = open(src + "/sparse", O_WRONLY | O_CREAT, 0o644)
        _ = ftruncate(fd, 64 << 20)
        _ = pwrite(fd, [UInt8](repeating: 7, count: 4096), 4096, (64 << 20) - 4096)
        close(fd)
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 5), timespec(tv_sec: 1_000_000_000, tv_nsec: 5)]
        _ = utimensat(AT_FDCWD, src + "/dir/file", &times, 0)
        mkdir(src + "/etc", 0o755)
        write(src + "/etc/hostname", "box\n")

        var copy = LayerCopy(map: map, skip: ["etc/hostname"])
        try copy.sync(source: src, dest: dst)

        let f = st(dst + "/dir/file")
        #expect(f.st_uid == 1000 && f.st_gid == 1000)
        #expect(f.st_mtim.tv_sec == 1_000_000_000 && f.st_mtim.tv_nsec == 5)
        #expect(st(dst + "/dir").st_uid == 0 && st(dst + "/dir").st_mode & 0o777 == 0o750)
        #expect(st(dst + "/suid").st_uid == 0 && st(dst + "/suid").st_mode & 0o7777 == 0o4755)
        #expect(st(dst + "/outside").st_uid == 4242)
        #expect(st(dst + "/hardlink").st_ino == f.st_ino)
        #expect(String(cString: realpath(dst + "/sym", nil)) == dst + "/dir/file")
        #expect(st(dst + "/whiteout").st_mode & S_IFMT == S_IFCHR && st(dst + "/whiteout").st_rdev == 0)
        var buf = [UInt8](repeating: 0, count: 16)
        #expect(dbx_lgetxattr(dst + "/opaque", "trusted.overlay.opaque", &buf, 16) == 1)
        #expect(dbx_lgetxattr(dst + "/opaque", "trusted.overlay.origin", &buf, 16) < 0)
        #expect(st(dst + "/sparse").st_size == 64 << 20 && st(dst + "/sparse").st_blocks * 512 <= 64 << 10)
        #expect(access(dst + "/etc/hostname", F_OK) != 0 && access(dst + "/etc", F_OK) == 0)
        #expect(try String(contentsOfFile: dst + "/dir/file", encoding: .utf8) == "hello")
    }

    @Test func theSecondPassCopiesOnlyWhatChanged() throws {
        let tmp = try tempDir()
        defer { try? HostState.removeTree(tmp) }
        let src = tmp + "/src", dst = tmp + "/dst"
        mkdir(src, 0o755)
        for i in 0..<50 { write(src + "/f\(i)", String(repeating: "a", count: 1000)) }
        mkdir(src + "/gone", 0o755)
        write(src + "/gone/x", "x")
        mkdir(src + "/d2", 0o755)
        write(src + "/d2/y", "y")
        var copy = LayerCopy(map: nil)
        try copy.sync(source: src, dest: dst)
        #expect(copy.copiedFiles == 52)
        try HostState.removeTree(src + "/d2")
        write(src + "/d2", "now a file")
        // Changed, added, removed (a file and a directory), replaced by another type.
        write(src + "/f3", "changed")
        write(src + "/new", "new")
        unlink(src + "/f4")
        try HostState.removeTree(src + "/gone")
        unlink(src + "/f5")
        mkdir(src + "/f5", 0o700)
        try copy.sync(source: src, dest: dst)
        #expect(copy.copiedFiles == 3)
        #expect(try String(contentsOfFile: dst + "/d2", encoding: .utf8) == "now a file")
        #expect(try String(contentsOfFile: dst + "/f3", encoding: .utf8) == "changed")
        #expect(try String(contentsOfFile: dst + "/new", encoding: .utf8) == "new")
        #expect(access(dst + "/f4", F_OK) != 0 && access(dst + "/gone", F_OK) != 0)
        #expect(st(dst + "/f5").st_mode & S_IFMT == S_IFDIR)
        let names = try FileManager.default.contentsOfDirectory(atPath: dst).sorted()
        #expect(names == (try FileManager.default.contentsOfDirectory(atPath: src).sorted()))
    }

    @Test func aNamespacedFileCapabilityBecomesAPlainOne() {
        // v3: magic 0x03000001 (effective), permitted/inheritable x2, root id.
        let v3: [UInt8] = [1, 0, 0, 3, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
        let v2 = LayerCopy.canonicalCapability(v3)
        #expect(v2.count == 20 && v2[0...3] == [1, 0, 0, 2] && v2[4...19] == v3[4...19])
        let plain: [UInt8] = [1, 0, 0, 2] + [UInt8](repeating: 0, count: 16)
        #expect(LayerCopy.canonicalCapability(plain) == plain)
    }
}
