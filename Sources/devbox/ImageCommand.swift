import ArgumentParser
import DevboxServer
import Foundation

/// `devbox image build`: a debootstrapped Debian root for boxes, built once per machine.
/// When it exists, `serve` uses it as the boxes' base instead of the host's root.
struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Build the Debian base image for devboxes.", subcommands: [Build.self])

    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "debootstrap a minimal Debian into <data-dir>/images/debian-<suite> (about 1-2 minutes).",
            discussion: """
                The image holds what boxes need (shell, git, ssh/sftp server binaries, curl, CA
                certificates, procps). Once built, `devbox serve` uses it unless DEVBOX_BASE_IMAGE is set.
                Rebuilding replaces the image atomically; running boxes keep the old one until restarted.
                """)
        @OptionGroup var data: DataDirOptions
        @Option(help: "Debian suite.") var suite = "bookworm"
        @Option(help: "Debian mirror URL (default: the host's apt sources' mirror for the suite; required without one).")
        var mirror: String?
        @Option(help: "Extra packages, comma-separated.") var include: String?

        func run() async throws {
            guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/debootstrap") else {
                fail("debootstrap is not installed (apt-get install debootstrap)")
            }
            let source: String
            do {
                source = try BaseImage.resolveMirror(explicit: mirror, suite: suite)
            } catch let e as BaseImage.MirrorError {
                fail(e.description)
            }
            let images = data.resolved + "/images"
            try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let target = BaseImage.path(dataDirectory: data.resolved, suite: suite)
            let building = images + "/.build-\(suite)-\(ProcessInfo.processInfo.processIdentifier)"
            try? FileManager.default.removeItem(atPath: building)
            var packages = BaseImage.packages
            if let include { packages += include.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            let status = try run(
                "/usr/sbin/debootstrap",
                ["--variant=minbase", "--include=\(packages.joined(separator: ","))", suite, building, source])
            guard status == 0 else {
                try? FileManager.default.removeItem(atPath: building)
                fail("debootstrap failed with exit code \(status)")
            }
            // Nothing of the build host's identity or package caches in the image.
            for junk in ["/var/cache/apt/archives", "/var/lib/apt/lists"] {
                _ = try? run("/bin/sh", ["-c", "rm -rf '\(building)\(junk)'/* 2>/dev/null; true"])
            }
            try Data().write(to: URL(fileURLWithPath: building + "/.devbox-image"))
            if FileManager.default.fileExists(atPath: target) {
                let old = images + "/.old-\(suite)-\(ProcessInfo.processInfo.processIdentifier)"
                try FileManager.default.moveItem(atPath: target, toPath: old)
                try FileManager.default.moveItem(atPath: building, toPath: target)
                try? FileManager.default.removeItem(atPath: old)
            } else {
                try FileManager.default.moveItem(atPath: building, toPath: target)
            }
            print(target)
        }

        func run(_ tool: String, _ args: [String]) throws -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            p.standardOutput = FileHandle.standardError
            p.standardError = FileHandle.standardError
            try p.run()
            p.waitUntilExit()
            return p.terminationStatus
        }
    }
}
