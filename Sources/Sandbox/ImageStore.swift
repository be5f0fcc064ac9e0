import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The machine-wide store of box root images (issue 18), shared by every data directory:
/// default `/var/lib/devbox/images`, `DEVBOX_IMAGE_DIR` moves it.
///
/// Layout (everything owned by root, canonical ids: a user-namespaced box maps them):
///
///     .lock                  flock(2): builds, imports, removals and GC hold it
///     layers/<id>/root/      one unpacked layer, read-only overlay lower dir of every box
///                            using it; `<id>` is the sha256 of the layer blob (imports) or
///                            `debootstrap-<suite>-<time>` (builds). A layer appears by
///                            rename(2) of a finished temp dir: present means complete.
///     images/<name>.json     {name, layers (bottom first), created_at, source}, replaced by rename
///     refs/<box dir, escaped> symlink to the box directory of each box using an image; the box
///                            dir's `image` file names the image and its lower dirs. A ref whose
///                            box dir is gone is stale (GC removes it).
///     pins/<pin file, escaped> symlink to a snapshot's pin file in a data directory
///                            (`<state>/.snapshots/<id>.json`, SnapshotLayers): its layers
///                            are kept while the file is there (issue 23; Snapshot.swift)
///     .tmp-*                 unfinished builds and imports (removed by the next GC)
public struct ImageStore: Sendable {
    public let root: String
    public static let defaultRoot = "/var/lib/devbox/images"
    /// The image boxes get when a create names none.
    public static let defaultImageName = "debian"

    public init(root: String) { self.root = root }

    /// `DEVBOX_IMAGE_DIR` when set, else `/var/lib/devbox/images`.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> ImageStore {
        ImageStore(root: env["DEVBOX_IMAGE_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultRoot)
    }

    public struct Image: Codable, Sendable, Equatable {
        public var name: String
        /// Layer ids, bottom first.
        public var layers: [String]
        public var createdAt: String
        /// `debootstrap <suite> <mirror>`, `oci <path>`, `docker-save <path>`.
        public var source: String
        public init(name: String, layers: [String], createdAt: String, source: String) {
            self.name = name
            self.layers = layers
            self.createdAt = createdAt
            self.source = source
        }
        enum CodingKeys: String, CodingKey {
            case name, layers, source
            case createdAt = "created_at"
        }
    }

    var layersDir: String { root + "/layers" }
    var imagesDir: String { root + "/images" }
    var refsDir: String { root + "/refs" }
    var pinsDir: String { root + "/pins" }
    public func layerRoot(_ id: String) -> String { layersDir + "/" + id + "/root" }
    /// The layer id of a lower dir of this store (`<root>/layers/<id>/root`), nil for another path.
    public func layerID(ofLowerDir dir: String) -> String? {
        guard dir.hasPrefix(layersDir + "/"), dir.hasSuffix("/root") else { return nil }
        let id = String(dir.dropFirst(layersDir.count + 1).dropLast(5))
        return ImageStore.isValidLayerID(id) ? id : nil
    }

    /// Image names: what a create's `image` field may hold.
    public static func isValidName(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 64, (0x61...0x7A).contains(first) || (0x30...0x39).contains(first)
        else { return false }
        return s.utf8.allSatisfy { b in
            (0x61...0x7A).contains(b) || (0x30...0x39).contains(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
                || b == UInt8(ascii: ".")
        }
    }

    static func isValidLayerID(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128 && s.utf8.allSatisfy { b in
            (0x61...0x7A).contains(b) || (0x30...0x39).contains(b) || b == UInt8(ascii: "-")
        }
    }

    // MARK: reading (no lock: manifests and layers appear by rename)

    /// The image when its manifest and every layer are present.
    public func image(named name: String) -> Image? {
        guard ImageStore.isValidName(name), let bytes = readFileBytes(imagesDir + "/" + name + ".json", limit: 1 << 20),
            let image = try? JSONDecoder().decode(Image.self, from: Data(bytes)), image.name == name, !image.layers.isEmpty,
            image.layers.allSatisfy({ ImageStore.isValidLayerID($0) && access(layerRoot($0), F_OK) == 0 })
        else { return nil }
        return image
    }

    public func list() -> [Image] {
        MaskPlan.listDirectory(imagesDir).filter { $0.hasSuffix(".json") }.sorted()
            .compactMap { image(named: String($0.dropLast(5))) }
    }

    /// Overlay lower dirs of an image, top layer first (overlayfs' order).
    public func lowerDirs(_ image: Image) -> [String] { image.layers.reversed().map(layerRoot) }

    /// Names of the images some existing box directory uses (stale refs skipped).
    public func imagesInUse() -> [String: Int] {
        var out: [String: Int] = [:]
        for ref in MaskPlan.listDirectory(refsDir) {
            guard let target = readLink(refsDir + "/" + ref), let use = BoxImage.read(boxDirectory: target) else { continue }
            out[use.name, default: 0] += 1
        }
        return out
    }

    // MARK: writing (under the lock)

    /// Creates the store's directories (0711: crun and the kernel traverse them, nobody lists them).
    public func prepare() throws {
        for dir in [root, layersDir, imagesDir, refsDir, pinsDir] {
            if mkdir(dir, 0o711) != 0 && errno != EEXIST {
                // Parents (e.g. /var/lib/devbox) on first use.
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            }
        }
    }

    /// Runs `body` holding the store's exclusive flock (blocking until other builds,
    /// imports or removals, of any serve or CLI on the machine, are done).
    public func withLock<T>(_ body: () throws -> T) throws -> T {
        try prepare()
        let fd = open(root + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("open \(root)/.lock") }
        defer { closeFD(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw sysError("flock \(root)/.lock") }
        }
        return try body()
    }

    /// A fresh temp directory in the store (same filesystem as the layers: rename works).
    func makeTemp(_ what: String) throws -> String {
        let path = root + "/.tmp-\(what)-\(getpid())-\(UInt64.random(in: 0...UInt64.max) & 0xffffff)"
        if mkdir(path, 0o700) != 0 { throw sysError("mkdir \(path)") }
        return path
    }

    /// A temp dir for a build (`<temp>/root` becomes the layer); the caller holds the lock.
    public func makeBuildTemp() throws -> String { try makeTemp("build") }
    /// Installs a built `<temp>/root` as layer `id`; the caller holds the lock.
    public func installBuiltLayer(temp: String, id: String) throws {
        guard ImageStore.isValidLayerID(id) else { throw BoxRuntimeError.invalidArgument("invalid layer id '\(id)'") }
        try installLayer(temp: temp, id: id)
    }

    /// Moves a finished layer root (`<temp>/root`) into place as layer `id`; if the layer
    /// already exists (unpacked once, by anyone) the temp is dropped.
    func installLayer(temp: String, id: String) throws {
        let target = layersDir + "/" + id
        if access(target, F_OK) == 0 {
            try? HostState.removeTree(temp)
            return
        }
        _ = chmod(temp, 0o711)
        if rename(temp, target) != 0 { throw sysError("install layer \(id)") }
    }

    /// Writes (atomically replaces) an image's manifest.
    public func writeManifest(_ image: Image) throws {
        guard ImageStore.isValidName(image.name) else { throw BoxRuntimeError.invalidArgument("invalid image name '\(image.name)'") }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let tmp = imagesDir + "/.\(image.name).json.\(getpid())"
        try enc.encode(image).write(to: URL(fileURLWithPath: tmp))
        if rename(tmp, imagesDir + "/" + image.name + ".json") != 0 { throw sysError("write manifest \(image.name)") }
    }

    public enum RemoveError: Error, CustomStringConvertible {
        case notFound(String)
        case inUse(String, boxes: Int)
        public var description: String {
            switch self {
            case .notFound(let n): "no image '\(n)'"
            case .inUse(let n, let boxes): "image '\(n)' is used by \(boxes) devbox(es); destroy them first"
            }
        }
    }

    /// Removes an image (refused while a box directory uses it), then its unused layers.
    public func remove(name: String) throws {
        try withLock {
            guard image(named: name) != nil || access(imagesDir + "/" + name + ".json", F_OK) == 0, ImageStore.isValidName(name)
            else { throw RemoveError.notFound(name) }
            if let n = imagesInUse()[name], n > 0 { throw RemoveError.inUse(name, boxes: n) }
            if unlink(imagesDir + "/" + name + ".json") != 0 { throw sysError("remove manifest \(name)") }
            collectGarbageLocked()
        }
    }

    /// Removes stale refs, unfinished temp dirs, and layers no manifest and no box uses.
    /// Call holding the lock.
    public func collectGarbageLocked() {
        var used = Set<String>()
        for ref in MaskPlan.listDirectory(refsDir) {
            if let target = readLink(refsDir + "/" + ref), let use = BoxImage.read(boxDirectory: target) {
                for dir in use.lowerDirs + (use.workspaceLowerDirs ?? []) where dir.hasPrefix(layersDir + "/") {
                    used.insert(String(dir.dropFirst(layersDir.count + 1).split(separator: "/").first ?? ""))
                }
            } else {
                _ = unlink(refsDir + "/" + ref)
            }
        }
        for pin in MaskPlan.listDirectory(pinsDir) {
            if let target = readLink(pinsDir + "/" + pin), let bytes = readFileBytes(target, limit: 1 << 20),
                let layers = try? JSONDecoder().decode(SnapshotLayers.self, from: Data(bytes))
            {
                used.formUnion((layers.rootLowerDirs + layers.workspaceLowerDirs).compactMap(layerID(ofLowerDir:)))
            } else {
                _ = unlink(pinsDir + "/" + pin)
            }
        }
        for name in MaskPlan.listDirectory(imagesDir) where name.hasSuffix(".json") {
            if let bytes = readFileBytes(imagesDir + "/" + name), let image = try? JSONDecoder().decode(Image.self, from: Data(bytes)) {
                used.formUnion(image.layers)
            }
        }
        for id in MaskPlan.listDirectory(layersDir) where !used.contains(id) {
            // Renamed first: a layer is never half there under its own name.
            let doomed = root + "/.tmp-gc-\(id)"
            if rename(layersDir + "/" + id, doomed) == 0 { try? HostState.removeTree(doomed) }
        }
        // debootstrap mounts proc and sys inside its target: a killed build leaves them.
        let temps = root + "/.tmp-"
        let hasTemps = MaskPlan.listDirectory(root).contains { $0.hasPrefix(".tmp-") }  // else no table to read
        for m in (hasTemps ? HostState.mounts() : []).map(\.mountPoint).filter({ $0.hasPrefix(temps) }).sorted(by: { $0.count > $1.count }) {
            let parts = m.dropFirst(temps.count).split(separator: "/").first?.split(separator: "-") ?? []
            if parts.count >= 3, let pid = Int32(parts[parts.count - 2]), kill(pid, 0) == 0 { continue }
            _ = dbx_umount(m, Int32(MNT_DETACH))
        }
        for name in MaskPlan.listDirectory(root) where name.hasPrefix(".tmp-") {
            // Only temps of processes that are gone (another builder's are live).
            let parts = name.split(separator: "-")
            if parts.count >= 3, let pid = Int32(parts[parts.count - 2]), kill(pid, 0) == 0 || errno == EPERM, name.hasPrefix(".tmp-gc-") == false {
                continue
            }
            try? HostState.removeTree(root + "/" + name)
        }
    }

    // MARK: refs (box create and destroy; no lock: one symlink each)

    func refPath(boxDirectory: String) -> String {
        refsDir + "/" + boxDirectory.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
    }

    func addRef(boxDirectory: String) {
        let path = refPath(boxDirectory: boxDirectory)
        if symlink(boxDirectory, path) != 0 && errno == ENOENT {
            try? prepare()
            _ = symlink(boxDirectory, path)
        }
    }

    func removeRef(boxDirectory: String) { _ = unlink(refPath(boxDirectory: boxDirectory)) }

    func pinPath(_ file: String) -> String {
        pinsDir + "/" + file.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
    }

    func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A box's image (DevboxRuntime) is kept in the box directory's `image` file, so stop/start
/// and a restarted service mount the same layers.
extension BoxImage {
    static let fileName = "image"

    static func read(boxDirectory: String) -> BoxImage? {
        guard let bytes = readFileBytes(boxDirectory + "/" + fileName, limit: 65536) else { return nil }
        return try? JSONDecoder().decode(BoxImage.self, from: Data(bytes))
    }

    var isValid: Bool {
        !lowerDirs.isEmpty && (lowerDirs + (workspaceLowerDirs ?? [])).allSatisfy { $0.hasPrefix("/") && !$0.contains(",") && !$0.contains(":") }
    }
}
