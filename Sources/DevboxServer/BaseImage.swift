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

    /// The first Debian mirror of the host's apt sources (deb822 or one-line format).
    public static func hostMirror() -> String? {
        for file in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.hasPrefix("URIs:") {
                    return l.dropFirst(5).split(separator: " ").first.map(String.init)
                }
                if l.hasPrefix("deb "), let url = l.split(separator: " ").first(where: { $0.hasPrefix("http") }) {
                    return String(url)
                }
            }
        }
        return nil
    }
}
