import Foundation

/// The optional debootstrapped base image for boxes (`devbox image build`).
public enum BaseImage {
    public static let packages = [
        "bash", "ca-certificates", "curl", "git", "less", "openssh-client", "openssh-sftp-server", "procps", "python3",
    ]

    public static func path(dataDirectory: String, suite: String = "bookworm") -> String {
        dataDirectory + "/images/debian-\(suite)"
    }

    /// The built image when it is complete, else nil.
    public static func built(dataDirectory: String, suite: String = "bookworm") -> String? {
        let p = path(dataDirectory: dataDirectory, suite: suite)
        return FileManager.default.fileExists(atPath: p + "/.devbox-image") ? p : nil
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
