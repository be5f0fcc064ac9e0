import Foundation
import Testing

@testable import DevboxApp
@testable import DevboxServer

/// `devbox image build` takes its Debian mirror from the host's apt sources or `--mirror`,
/// never from an address built into the binary.
@Suite struct BaseImageMirrorTests {
    /// A temporary /etc/apt with the given files (name → content) under sources.list.d,
    /// except "sources.list" itself.
    static func etcApt(_ files: [String: String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-apt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/sources.list.d", withIntermediateDirectories: true)
        for (name, text) in files {
            let path = name == "sources.list" ? dir + "/sources.list" : dir + "/sources.list.d/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        return dir
    }

    static let debian822 = """
        Types: deb
        # http://snapshot.debian.org/archive/debian-security/20250520T000000Z
        URIs: http://security.example/debian-security
        Suites: bookworm-security
        Components: main

        Types: deb
        URIs: http://mirror.example/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        """

    @Test func deb822TakesTheStanzaOfTheSuiteNotSecurity() throws {
        let apt = try Self.etcApt(["debian.sources": Self.debian822])
        defer { try? FileManager.default.removeItem(atPath: apt) }
        let files = BaseImage.hostSourceFiles(etcApt: apt)
        #expect(BaseImage.hostMirror(suite: "bookworm", sourceFiles: files) == "http://mirror.example/debian")
        #expect(try BaseImage.resolveMirror(explicit: nil, suite: "bookworm", sourceFiles: files) == "http://mirror.example/debian")
        // Another suite: the Debian archive serves it too.
        #expect(BaseImage.hostMirror(suite: "trixie", sourceFiles: files) == "http://mirror.example/debian")
    }

    @Test func oneLineSourcesSkipCommentsSourcesAndOptions() throws {
        let apt = try Self.etcApt([
            "sources.list": """
                # deb http://commented.example/debian bookworm main
                deb-src http://src.example/debian bookworm main
                deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://one.example/debian bookworm main contrib
                deb http://security.example/debian-security bookworm-security main
                """,
        ])
        defer { try? FileManager.default.removeItem(atPath: apt) }
        #expect(BaseImage.hostMirror(suite: "bookworm", sourceFiles: BaseImage.hostSourceFiles(etcApt: apt))
            == "https://one.example/debian")
    }

    @Test func thirdPartyAndDisabledSourcesAreNotADebianMirror() throws {
        let apt = try Self.etcApt([
            "a-vendor.sources": "Types: deb\nURIs: https://deb.vendor.example/node_20.x\nSuites: nodistro\nComponents: main\n",
            "b-off.sources": "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n",
            "c.list.disabled": "deb http://disabled.example/debian bookworm main\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: apt) }
        let files = BaseImage.hostSourceFiles(etcApt: apt)
        #expect(BaseImage.hostMirror(suite: "bookworm", sourceFiles: files) == nil)
        #expect(throws: BaseImage.MirrorError.self) {
            try BaseImage.resolveMirror(explicit: nil, suite: "bookworm", sourceFiles: files)
        }
    }

    @Test func noSourcesIsAClearErrorNamingMirror() throws {
        let apt = try Self.etcApt([:])
        defer { try? FileManager.default.removeItem(atPath: apt) }
        do {
            _ = try BaseImage.resolveMirror(explicit: nil, suite: "bookworm", sourceFiles: BaseImage.hostSourceFiles(etcApt: apt))
            Issue.record("a mirror came from nowhere")
        } catch let e as BaseImage.MirrorError {
            #expect(e.description.contains("--mirror") && e.description.contains("bookworm"))
        }
    }

    @Test func anExplicitMirrorWinsAndMustBeAURL() throws {
        let apt = try Self.etcApt(["debian.sources": Self.debian822])
        defer { try? FileManager.default.removeItem(atPath: apt) }
        let files = BaseImage.hostSourceFiles(etcApt: apt)
        #expect(try BaseImage.resolveMirror(explicit: "http://local.example/debian", suite: "bookworm", sourceFiles: files)
            == "http://local.example/debian")
        #expect(try BaseImage.resolveMirror(explicit: "file:///srv/mirror/debian", suite: "bookworm", sourceFiles: files)
            == "file:///srv/mirror/debian")
        #expect(throws: BaseImage.MirrorError.self) {
            try BaseImage.resolveMirror(explicit: "deb.debian.org", suite: "bookworm", sourceFiles: files)
        }
    }
}
