import Foundation
import Testing
@testable import Sandbox
import CDevbox
#if canImport(Glibc)
import Glibc
#endif

/// The image store's bookkeeping (issue 18), on a temporary store: names, whiteouts, refs,
/// removal refused while a box directory uses an image, garbage collection of layers.
@Suite struct ImageStoreTests {
    func tempDir(_ tag: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-imgtest-\(tag)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func namesAreStrict() {
        for good in ["debian", "py3.12", "a", "e2e-oci_x"] { #expect(ImageStore.isValidName(good)) }
        for bad in ["", "Debian", "../x", "a/b", "-x", ".x", "a:b", "a,b", String(repeating: "a", count: 65)] {
            #expect(!ImageStore.isValidName(bad))
        }
    }

    @Test func ociWhiteoutsBecomeOverlayWhiteouts() throws {
        let root = try tempDir("wh")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/etc/old", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/etc/.wh.gone", contents: Data())
        _ = FileManager.default.createFile(atPath: root + "/etc/old/.wh..wh..opq", contents: Data())
        _ = FileManager.default.createFile(atPath: root + "/etc/old/kept", contents: Data("k".utf8))
        try ImageStore.convertWhiteouts(root)
        var st = stat()
        #expect(lstat(root + "/etc/gone", &st) == 0 && st.st_mode & S_IFMT == S_IFCHR && st.st_rdev == 0)
        #expect(access(root + "/etc/.wh.gone", F_OK) != 0)
        #expect(access(root + "/etc/old/.wh..wh..opq", F_OK) != 0)
        let dfd = open(root + "/etc/old", O_RDONLY | O_DIRECTORY)
        #expect(dfd >= 0 && dbx_is_opaque(dfd) == 1)
        close(dfd)
        #expect(FileManager.default.contents(atPath: root + "/etc/old/kept") == Data("k".utf8))
    }

    @Test func removeIsRefusedWhileABoxDirectoryUsesTheImageAndCollectsItsLayers() throws {
        let base = try tempDir("rm")
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = ImageStore(root: base + "/store")
        try store.prepare()
        // Two layers, the base one shared by two images.
        for id in ["sha256-aa", "sha256-bb"] {
            let temp = try store.makeBuildTemp()
            try FileManager.default.createDirectory(atPath: temp + "/root/usr", withIntermediateDirectories: true)
            try store.withLock { try store.installBuiltLayer(temp: temp, id: id) }
        }
        try store.writeManifest(.init(name: "one", layers: ["sha256-aa", "sha256-bb"], createdAt: "now", source: "test"))
        try store.writeManifest(.init(name: "two", layers: ["sha256-aa"], createdAt: "now", source: "test"))
        #expect(store.list().map(\.name) == ["one", "two"])
        #expect(store.lowerDirs(store.image(named: "one")!) == [store.layerRoot("sha256-bb"), store.layerRoot("sha256-aa")])
        #expect(store.image(named: "three") == nil)

        // A box directory on "one": its image file and the ref.
        let box = base + "/boxes/dx-b1"
        try FileManager.default.createDirectory(atPath: box, withIntermediateDirectories: true)
        let use = BoxImage(name: "one", lowerDirs: store.lowerDirs(store.image(named: "one")!), store: store.root)
        try JSONEncoder().encode(use).write(to: URL(fileURLWithPath: box + "/image"))
        store.addRef(boxDirectory: box)
        #expect(store.imagesInUse() == ["one": 1])
        #expect(throws: ImageStore.RemoveError.self) { try store.remove(name: "one") }
        #expect(store.image(named: "one") != nil)

        // "two" goes; its layer stays (used by "one").
        try store.remove(name: "two")
        #expect(access(store.layerRoot("sha256-aa"), F_OK) == 0)

        // The box directory goes (destroy renames it away): the ref is stale, rm works, and
        // both layers go with the last manifest naming them.
        try FileManager.default.removeItem(atPath: box)
        try store.remove(name: "one")
        #expect(store.list().isEmpty)
        #expect(access(store.layerRoot("sha256-aa"), F_OK) != 0 && access(store.layerRoot("sha256-bb"), F_OK) != 0)
        #expect(MaskPlan.listDirectory(store.root + "/refs").isEmpty)
        #expect(throws: ImageStore.RemoveError.self) { try store.remove(name: "one") }
    }
}
