import DevboxService
import Foundation
import Logging
import Sandbox

/// The default Debian image of boxes (issue 18): debootstrapped once per machine into the
/// image store (`ImageStore`, `/var/lib/devbox/images`), by `devbox image build`, `make
/// run`/`make test`, or a `serve` that finds none.
public enum BaseImage {
    /// What boxes and the e2e tests use inside a box: shell, git, ssh/sftp server binaries,
    /// curl, CA certificates, procps, iproute2, python3.
    public static let packages = [
        "bash", "ca-certificates", "curl", "git", "less", "openssh-client", "openssh-sftp-server", "procps", "python3",
        "iproute2", "iputils-ping", "netcat-openbsd", "xz-utils",
    ]
    public static let defaultSuite = "bookworm"

    public struct BuildError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Builds the default image into `store` unless it is there (`ifMissing`), holding the
    /// store's lock: concurrent serves and CLIs on one machine build it once, the others
    /// wait and find it. debootstrap writes into a temp dir of the store; the layer and the
    /// manifest appear by rename. `progress` gets debootstrap's lines. Blocking (a minute or
    /// two): call it off the cooperative pool (a blocking executor's job).
    @discardableResult
    public static func build(
        store: ImageStore, name: String = ImageStore.defaultImageName, suite: String = defaultSuite, mirror: String? = nil,
        include: [String] = [], ifMissing: Bool, progress: @escaping (String) -> Void
    ) throws -> ImageStore.Image {
        if ifMissing, let image = store.image(named: name) { return image }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/debootstrap") else {
            throw BuildError(description: "debootstrap is not installed (apt-get install debootstrap)")
        }
        let source: String
        do { source = try resolveMirror(explicit: mirror, suite: suite) } catch let e as MirrorError {
            throw BuildError(description: e.description)
        }
        return try store.withLock {
            if ifMissing, let image = store.image(named: name) { return image }  // built while we waited
            store.collectGarbageLocked()
            let temp = try store.makeBuildTemp()
            let target = temp + "/root"
            // setpriv --pdeathsig: a serve stopped mid-build takes its debootstrap with it (the
            // next builder's GC removes the temp dir and its mounts).
            let status = try runStreaming(
                "/usr/bin/setpriv", ["--pdeathsig", "KILL", "/usr/sbin/debootstrap", "--variant=minbase", "--include=\((packages + include).joined(separator: ","))", suite, target, source],
                progress: progress)
            guard status == 0 else {
                try? FileManager.default.removeItem(atPath: temp)
                throw BuildError(description: "debootstrap failed with exit code \(status) (mirror \(source))")
            }
            // Nothing of the build host's package caches in the image (apt-get update fetches lists).
            for junk in ["/var/cache/apt/archives", "/var/lib/apt/lists"] {
                if let names = try? FileManager.default.contentsOfDirectory(atPath: target + junk) {
                    for n in names where n != "partial" && n != "lock" { try? FileManager.default.removeItem(atPath: target + junk + "/" + n) }
                }
            }
            // No machine identity baked in: each box gets an empty one (systemd's convention).
            try? Data().write(to: URL(fileURLWithPath: target + "/etc/machine-id"))
            let id = "debootstrap-\(suite)-\(String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 16))"
            try store.installBuiltLayer(temp: temp, id: id)
            let image = ImageStore.Image(
                name: name, layers: [id], createdAt: ISO8601DateFormatter().string(from: Date()),
                source: "debootstrap \(suite) \(source)")
            try store.writeManifest(image)
            store.collectGarbageLocked()
            return image
        }
    }

    /// At start-up: makes the store's default image the sandbox's default when it is there
    /// (creates are taken at once), else marks it building and returns its name (the caller
    /// then calls `buildInBackground`). Other modes are ready as they are.
    public static func prepareDefault(settings: ImageSettings, store: ImageStore, sandbox: any BoxRuntime, logger: Logger) -> String? {
        switch settings.mode {
        case .host:
            logger.notice("box base image: the host's root, private trees hidden (DEVBOX_BASE_IMAGE=host: weaker isolation)")
        case .path(let p):
            logger.notice("box base image", metadata: ["path": "\(p)"])
        case .store(let name):
            if let image = store.image(named: name) {
                sandbox.setDefaultImage(BoxImage(name: name, lowerDirs: store.lowerDirs(image), store: store.root))
                logger.notice("box base image", metadata: ["image": "\(name)", "store": "\(store.root)", "layers": "\(image.layers.joined(separator: ","))"])
            } else {
                settings.readiness.set(.building(progress: "waiting to build"))
                return name
            }
        }
        settings.readiness.set(.ready)
        return nil
    }

    /// Builds the missing default image in a job of the blocking executor (a minute or two of
    /// debootstrap) while the service already answers (`/healthz` and creates say 503
    /// meanwhile); then hands it to the sandbox.
    public static func buildInBackground(name: String, store: ImageStore, images: ImageService, logger: Logger) {
        let settings = images.imageSettings
        BlockingExecutor.shared.execute {
            guard name == ImageStore.defaultImageName else {
                let msg = "no image '\(name)' in \(store.root); import it with `devbox image import \(name) PATH`"
                logger.critical("box base image missing: \(msg)")
                settings.readiness.set(.failed(msg))
                return
            }
            logger.notice("box base image '\(name)' missing from \(store.root): building it (debootstrap, about a minute); creates answer 503 until it is done")
            let started = Date()
            do {
                let image = try build(store: store, name: name, ifMissing: true) { line in
                    settings.readiness.progress(line)
                    logger.info("image build: \(line)")
                }
                logger.notice("box base image built", metadata: ["image": "\(name)", "seconds": "\(Int(Date().timeIntervalSince(started)))"])
                let box = BoxImage(name: name, lowerDirs: store.lowerDirs(image), store: store.root)
                Task { await images.defaultImageBuilt(box) }
            } catch {
                logger.critical("box base image could not be built: \(error)")
                settings.readiness.set(.failed("\(error)"))
            }
        }
    }

    /// Runs `tool` (debootstrap) on the sandbox's spawn primitive (`HostCommand`), stdin on
    /// /dev/null, its stdout and stderr merged and handed to `progress` line by line; its
    /// exit status (128 + signal when killed).
    static func runStreaming(_ tool: String, _ args: [String], progress: @escaping (String) -> Void) throws -> Int32 {
        try HostCommand.run(tool, args, options: .init(mergeStderr: true, stdoutLimit: 64 << 10), onLine: progress).status
    }

    /// The apt source files in the order apt reads them: sources.list, then sources.list.d.
    public static func hostSourceFiles(etcApt: String = "/etc/apt") -> [String] {
        let dir = etcApt + "/sources.list.d"
        let listed = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasSuffix(".list") || $0.hasSuffix(".sources") }.sorted()
        return [etcApt + "/sources.list"] + listed.map { dir + "/" + $0 }
    }

    /// One enabled `deb` source: its URIs and suites.
    struct AptSource: Equatable {
        var uris: [String]
        var suites: [String]
    }

    /// The enabled binary (`deb`) sources of one file: deb822 stanzas (`.sources`) or
    /// one-line entries (`deb [options] uri suite components…`).
    static func aptSources(file: String, text: String) -> [AptSource] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var out: [AptSource] = []
        if file.hasSuffix(".sources") {
            var fields: [String: String] = [:]
            func endStanza() {
                defer { fields = [:] }
                let types = (fields["types"] ?? "").split(separator: " ").map(String.init)
                guard types.contains("deb"), (fields["enabled"] ?? "yes").lowercased() != "no" else { return }
                let uris = (fields["uris"] ?? "").split(separator: " ").map(String.init)
                let suites = (fields["suites"] ?? "").split(separator: " ").map(String.init)
                if !uris.isEmpty { out.append(AptSource(uris: uris, suites: suites)) }
            }
            for line in lines + [""] {
                if line.hasPrefix("#") { continue }
                if line.trimmingCharacters(in: .whitespaces).isEmpty {
                    endStanza()
                    continue
                }
                if line.first == " " || line.first == "\t" { continue }  // a continuation line
                guard let colon = line.firstIndex(of: ":") else { continue }
                let key = line[..<colon].lowercased()
                fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    .split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            }
            return out
        }
        for line in lines {
            var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.first == "deb" else { continue }  // deb-src, comments and the rest
            words.removeFirst()
            if words.first?.hasPrefix("[") == true {  // [arch=amd64 signed-by=…]
                while let w = words.first, !w.hasSuffix("]") { words.removeFirst() }
                if !words.isEmpty { words.removeFirst() }
            }
            guard words.count >= 2 else { continue }
            out.append(AptSource(uris: [words[0]], suites: [words[1]]))
        }
        return out
    }

    /// The host's Debian mirror for `suite`: the first enabled `deb` source that lists that
    /// suite, else the first whose URI is a Debian archive (path ending in `/debian`: it
    /// serves every suite). Security and third-party sources (`bookworm-security`, a vendor's
    /// `nodistro`) match neither. Only http(s) URIs. nil when none.
    public static func hostMirror(suite: String, sourceFiles: [String] = hostSourceFiles()) -> String? {
        let sources = sourceFiles.flatMap { file -> [AptSource] in
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
            return aptSources(file: file, text: text)
        }
        func web(_ uri: String) -> Bool { uri.hasPrefix("http://") || uri.hasPrefix("https://") }
        if let s = sources.first(where: { $0.suites.contains(suite) && $0.uris.contains(where: web) }) {
            return s.uris.first(where: web)
        }
        let archive = sources.flatMap(\.uris).first { uri in
            web(uri) && (uri.hasSuffix("/debian") || uri.hasSuffix("/debian/"))
        }
        return archive
    }

    public struct MirrorError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The mirror `devbox image build` uses: `--mirror` when given (an http(s) or file URL),
    /// else the host's (`hostMirror`). No built-in default: an address baked into the binary
    /// may be unreachable or unwanted where it runs, and debootstrap would fail (or fetch from
    /// the internet) far from the cause.
    public static func resolveMirror(
        explicit: String?, suite: String, sourceFiles: [String] = hostSourceFiles()
    ) throws -> String {
        if let explicit {
            guard let url = URL(string: explicit), ["http", "https", "file"].contains(url.scheme ?? ""),
                url.host != nil || url.scheme == "file"
            else {
                throw MirrorError(description: "--mirror must be an http(s):// or file:// URL, got '\(explicit)'")
            }
            return explicit
        }
        if let host = hostMirror(suite: suite, sourceFiles: sourceFiles) { return host }
        throw MirrorError(description: """
            no Debian mirror for \(suite) in the host's apt sources (\(sourceFiles.joined(separator: ", "))); \
            pass one with --mirror, e.g. --mirror http://deb.debian.org/debian
            """)
    }
}

extension ImageSettings {
    /// `DEVBOX_BASE_IMAGE` (unset: the store's default image; `host`: the host's masked root;
    /// an absolute path: that root directory), `DEVBOX_DEFAULT_IMAGE` (the store image boxes
    /// get by default, `debian`), `DEVBOX_IMAGE_DIR` (the store, `/var/lib/devbox/images`).
    public static func fromEnvironment(_ env: [String: String]) throws -> ImageSettings {
        let store = ImageStore.fromEnvironment(env)
        guard store.root.hasPrefix("/"), !store.root.contains(":"), !store.root.contains(",") else {
            throw ConfigurationError("DEVBOX_IMAGE_DIR must be an absolute path without ':' or ',', got '\(store.root)'")
        }
        let mode: BaseImageMode
        switch env["DEVBOX_BASE_IMAGE"] ?? "" {
        case "":
            let name = env["DEVBOX_DEFAULT_IMAGE"].flatMap { $0.isEmpty ? nil : $0 } ?? ImageStore.defaultImageName
            guard ImageStore.isValidName(name) else { throw ConfigurationError("DEVBOX_DEFAULT_IMAGE '\(name)' is not an image name") }
            mode = .store(defaultImage: name)
        case "host": mode = .host
        case let p where p.hasPrefix("/") && !p.contains(":") && !p.contains(","):
            guard FileManager.default.fileExists(atPath: p + "/usr") else {
                throw ConfigurationError("DEVBOX_BASE_IMAGE '\(p)' is not a root filesystem (no usr in it)")
            }
            mode = .path(p)
        case let other:
            throw ConfigurationError("DEVBOX_BASE_IMAGE must be 'host' or an absolute path without ':' or ',', got '\(other)'")
        }
        return ImageSettings(store: store, mode: mode)
    }
}
