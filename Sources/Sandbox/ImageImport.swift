import CDevbox
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `devbox image import NAME PATH`: an OCI image layout (directory or tar) or a
/// `docker save` tarball into the store. Each layer blob is unpacked once (by its sha256)
/// with GNU tar as root in canonical ids, its OCI whiteouts turned into overlayfs ones
/// (`.wh.NAME` → a 0/0 character device, `.wh..wh..opq` → the directory's
/// `trusted.overlay.opaque`); boxes stack the layers as read-only overlay lower dirs.
/// The image's config (Env, Cmd, User...) is not used: a box runs its own init.
extension ImageStore {
    public struct ImportError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Imports and returns the image. Blocking (tar, sha256): call off the cooperative pool.
    @discardableResult
    public func importImage(name: String, path: String, progress: (String) -> Void = { _ in }) throws -> Image {
        guard ImageStore.isValidName(name) else {
            throw ImportError("image name must be 1-64 of a-z 0-9 . _ - (starting with a letter or digit), got '\(name)'")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw ImportError("no such file or directory: \(path)") }
        try prepare()
        let work = try makeTemp("import")
        defer { try? HostState.removeTree(work) }
        var dir = path
        if !isDir.boolValue {
            progress("unpacking \(path)")
            dir = work + "/archive"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
            try run("/bin/tar", ["-x", "--no-same-owner", "-f", path, "-C", dir])
        }
        let (blobs, kind) = try layerBlobs(dir)
        guard !blobs.isEmpty else { throw ImportError("the image has no layers") }
        var ids: [String] = []
        for (i, blob) in blobs.enumerated() {
            guard FileManager.default.fileExists(atPath: blob) else { throw ImportError("layer blob missing: \(blob)") }
            let id = "sha256-" + (try sha256(blob))
            ids.append(id)
            if access(layerRoot(id), F_OK) == 0 {
                progress("layer \(i + 1)/\(blobs.count) \(id.prefix(19)): already unpacked")
                continue
            }
            progress("layer \(i + 1)/\(blobs.count) \(id.prefix(19)): unpacking")
            let temp = try makeTemp("layer")
            let rootDir = temp + "/root"
            if mkdir(rootDir, 0o755) != 0 { throw sysError("mkdir \(rootDir)") }
            do {
                try run("/bin/tar", ["-x", "--numeric-owner", "--same-permissions", "--same-owner", "-f", blob, "-C", rootDir])
                try ImageStore.convertWhiteouts(rootDir)
                try withLock { try installLayer(temp: temp, id: id) }
            } catch {
                try? HostState.removeTree(temp)
                throw error
            }
        }
        let image = Image(name: name, layers: ids, createdAt: ISO8601DateFormatter().string(from: Date()), source: "\(kind) \(path)")
        try withLock {
            try writeManifest(image)
            collectGarbageLocked()
        }
        return image
    }

    /// The layer blobs of an OCI layout or a `docker save` directory, bottom first.
    func layerBlobs(_ dir: String) throws -> ([String], String) {
        func json(_ p: String) throws -> Any {
            guard let d = FileManager.default.contents(atPath: p) else { throw ImportError("cannot read \(p)") }
            do { return try JSONSerialization.jsonObject(with: d) } catch { throw ImportError("\(p) is not JSON") }
        }
        func blob(_ digest: String) throws -> String {
            let parts = digest.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["sha256", "sha512"].contains(parts[0]),
                parts[1].utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            else { throw ImportError("bad digest '\(digest)'") }
            return dir + "/blobs/\(parts[0])/\(parts[1])"
        }
        if FileManager.default.fileExists(atPath: dir + "/index.json") {
            // OCI: index → (nested index →) manifest → layers.
            var node = try json(dir + "/index.json") as? [String: Any]
            for _ in 0..<4 {
                guard let manifests = node?["manifests"] as? [[String: Any]] else { break }
                let pick = manifests.first { m in
                    let p = m["platform"] as? [String: Any]
                    return p == nil || (p?["architecture"] as? String) == "amd64"
                } ?? manifests.first
                guard let digest = pick?["digest"] as? String else { throw ImportError("index.json names no manifest") }
                node = try json(try blob(digest)) as? [String: Any]
            }
            guard let layers = node?["layers"] as? [[String: Any]] else { throw ImportError("the OCI manifest has no layers") }
            return (try layers.map { l in
                guard let d = l["digest"] as? String else { throw ImportError("a layer without digest") }
                return try blob(d)
            }, "oci")
        }
        if FileManager.default.fileExists(atPath: dir + "/manifest.json") {
            guard let list = try json(dir + "/manifest.json") as? [[String: Any]], let layers = list.first?["Layers"] as? [String] else {
                throw ImportError("manifest.json (docker save) lists no Layers")
            }
            return (try layers.map { rel in
                guard !rel.hasPrefix("/"), !rel.split(separator: "/").contains("..") else { throw ImportError("bad layer path '\(rel)'") }
                return dir + "/" + rel
            }, "docker-save")
        }
        throw ImportError("neither an OCI image layout (index.json) nor a docker save archive (manifest.json): \(dir)")
    }

    /// OCI whiteouts → overlayfs whiteouts, below `root` (never following symlinks).
    static func convertWhiteouts(_ root: String) throws {
        var stack = [root]
        while let dir = stack.popLast() {
            let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if dfd < 0 { throw sysError("open \(dir)") }
            defer { closeFD(dfd) }
            for name in MaskPlan.listDirectory(dir) {
                var st = stat()
                guard fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                if name == ".wh..wh..opq" {
                    _ = unlinkat(dfd, name, 0)
                    if dbx_set_opaque(dfd) != 0 { throw sysError("set opaque \(dir)") }
                } else if name.hasPrefix(".wh.") {
                    let target = String(name.dropFirst(4))
                    _ = unlinkat(dfd, name, 0)
                    guard !target.isEmpty, target != ".", target != ".." else { continue }
                    if dbx_mkwhiteout_at(dfd, target) != 0 && errno != EEXIST { throw sysError("whiteout \(dir)/\(target)") }
                } else if st.st_mode & S_IFMT == S_IFDIR {
                    stack.append(dir + "/" + name)
                }
            }
        }
    }

    func sha256(_ path: String) throws -> String {
        let out = try run("/usr/bin/sha256sum", [path])
        guard let hex = out.split(separator: " ").first, hex.count == 64 else { throw ImportError("sha256sum failed for \(path)") }
        return String(hex)
    }

    /// Runs a helper (tar, sha256sum) to completion on the sandbox's spawn primitive
    /// (`HostCommand`); its stdout, or an error with the last 2000 bytes of its stderr.
    @discardableResult
    func run(_ tool: String, _ args: [String]) throws -> String {
        let r = try HostCommand.run(tool, args, options: .init(stdoutLimit: 16 << 20, stderrLimit: 2000))
        guard r.status == 0 else {
            throw ImportError("\((tool as NSString).lastPathComponent) failed (\(r.status)): \(r.stderrText)")
        }
        return r.stdoutText
    }
}
