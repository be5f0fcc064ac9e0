import ArgumentParser
import DevboxApp
import DevboxServer
import Foundation
import Sandbox

/// `devbox image build|import|list|rm`: the machine's image store (Sandbox/ImageStore.swift),
/// `/var/lib/devbox/images` or `DEVBOX_IMAGE_DIR`, shared by every data directory.
struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Root images of devboxes (the machine-wide image store).",
        discussion: """
            Images live in /var/lib/devbox/images (DEVBOX_IMAGE_DIR moves it), shared by every data
            directory on the machine. Boxes get the image "debian" unless a create names another.
            """,
        subcommands: [Build.self, Import.self, List.self, Remove.self])

    static var store: ImageStore { ImageStore.fromEnvironment() }

    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "debootstrap the default Debian image into the store (about a minute).",
            discussion: """
                The image holds what boxes need (bash, git, ssh/sftp server binaries, curl, CA
                certificates, procps, iproute2, python3) and the apt sources of the mirror it was
                built from. Rebuilding replaces it atomically; running boxes keep the layer they
                were created on. Safe with concurrent serves and builds (the store's lock).
                """)
        @Option(help: "Debian suite.") var suite = BaseImage.defaultSuite
        @Option(help: "Debian mirror URL (default: the host's apt sources' mirror for the suite; required without one).")
        var mirror: String?
        @Option(help: "Extra packages, comma-separated.") var include: String?
        @Option(help: "Image name.") var name = ImageStore.defaultImageName
        @Flag(name: .customLong("if-missing"), help: "Do nothing when the store already has the image (make run / make test).")
        var ifMissing = false

        func run() async throws {
            let store = ImageCommand.store
            let extra = include.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } } ?? []
            let started = Date()
            let already = ifMissing && store.image(named: name) != nil
            do {
                let image = try BaseImage.build(
                    store: store, name: name, suite: suite, mirror: mirror, include: extra, ifMissing: ifMissing
                ) { line in
                    FileHandle.standardError.write(Data("\(line)\n".utf8))
                }
                if !already {
                    FileHandle.standardError.write(Data(String(format: "image %@ ready in %.0f s\n", name, Date().timeIntervalSince(started)).utf8))
                }
                print(store.lowerDirs(image).joined(separator: ":"))
            } catch let e as BaseImage.BuildError {
                fail(e.description)
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import an OCI image layout (directory or tar) or a `docker save` tarball as NAME.",
            discussion: """
                Each layer is unpacked once (keyed by its sha256) and shared read-only by every box
                using it; OCI whiteouts become overlayfs whiteouts. Importing under an existing name
                replaces that image for new boxes.
                """)
        @Argument(help: "Image name (a-z 0-9 . _ -, at most 64).") var name: String
        @Argument(help: "OCI layout directory or tar, or docker save tarball.") var path: String

        func run() async throws {
            do {
                let image = try ImageCommand.store.importImage(name: name, path: path) { line in
                    FileHandle.standardError.write(Data("\(line)\n".utf8))
                }
                print("\(image.name): \(image.layers.count) layer(s)")
            } catch let e as ImageStore.ImportError {
                fail(e.description)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The images of the store.")
        @Flag(help: "JSON output.") var json = false

        func run() async throws {
            let store = ImageCommand.store
            let images = store.list()
            let inUse = store.imagesInUse()
            if json {
                let rows: [[String: Any]] = images.map {
                    ["name": $0.name, "layers": $0.layers, "created_at": $0.createdAt, "source": $0.source, "devboxes": inUse[$0.name] ?? 0]
                }
                let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            if images.isEmpty {
                print("no images in \(store.root) (devbox image build)")
                return
            }
            let w = max(4, images.map(\.name.count).max() ?? 4)
            print("NAME".padding(toLength: w, withPad: " ", startingAt: 0) + "  LAYERS  DEVBOXES  CREATED               SOURCE")
            for i in images {
                print(
                    i.name.padding(toLength: w, withPad: " ", startingAt: 0) + "  "
                        + "\(i.layers.count)".padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                        + "\(inUse[i.name] ?? 0)".padding(toLength: 8, withPad: " ", startingAt: 0) + "  "
                        + i.createdAt.padding(toLength: 20, withPad: " ", startingAt: 0) + "  " + i.source)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove an image (refused while a devbox, running or stopped, uses it).")
        @Argument(help: "Image name.") var name: String

        func run() async throws {
            do {
                try ImageCommand.store.remove(name: name)
                print("removed \(name)")
            } catch let e as ImageStore.RemoveError {
                fail(e.description)
            }
        }
    }
}
