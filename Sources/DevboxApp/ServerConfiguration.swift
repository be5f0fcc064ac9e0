import DevboxSecurity
import DevboxService
import Foundation
import Logging

/// Everything `devbox serve` reads from flags and the environment, validated once.
public struct ServerConfiguration: Sendable {
    public var dataDirectory: String
    public var httpHost: String
    public var httpPort: Int
    public var sshHost: String
    public var sshPort: Int
    public var sshPublicHost: String?
    public var sshPublicPort: Int?
    public var encryptionKeys: String?
    public var userJWTSecret: String?
    public var userJWKSFile: String?
    /// User tokens verified with an OpenID provider's keys (`DEVBOX_USER_OIDC_*`); exclusive
    /// with `userJWTSecret` / `userJWKSFile`.
    public var userOIDC: OIDCSettings?
    public var core: CoreConfiguration
    public var baseImage: String?
    public var logLevel: Logger.Level
    /// Box networks (`DEVBOX_NETWORK`, `DEVBOX_NETWORK_CIDR`, `DEVBOX_DNS_UPSTREAM`).
    public var network = NetworkConfiguration()
    /// `DEVBOX_METRICS_ADDR`: a listener of its own serving `GET /metrics` without auth; nil: none
    /// (the API's `/metrics`, behind the provider token, is always there).
    public var metricsAddress: (host: String, port: Int)?

    public init(
        dataDirectory: String, httpHost: String = "127.0.0.1", httpPort: Int = 8080, sshHost: String = "127.0.0.1",
        sshPort: Int = 2222, sshPublicHost: String? = nil, sshPublicPort: Int? = nil, encryptionKeys: String? = nil,
        userJWTSecret: String? = nil, userJWKSFile: String? = nil, core: CoreConfiguration = CoreConfiguration(),
        baseImage: String? = nil, logLevel: Logger.Level = .info
    ) {
        self.dataDirectory = dataDirectory
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.sshHost = sshHost
        self.sshPort = sshPort
        self.sshPublicHost = sshPublicHost
        self.sshPublicPort = sshPublicPort
        self.encryptionKeys = encryptionKeys
        self.userJWTSecret = userJWTSecret
        self.userJWKSFile = userJWKSFile
        self.core = core
        self.baseImage = baseImage
        self.logLevel = logLevel
    }

    /// `DEVBOX_USER_OIDC_ISSUER`, `DEVBOX_USER_OIDC_AUDIENCE`, `DEVBOX_USER_OIDC_MIN_REFRESH_SECONDS`
    /// (see `OIDCSettings.fromEnvironment`); nil without an issuer.
    public static func userOIDC(environment: [String: String]) throws -> OIDCSettings? {
        do {
            return try OIDCSettings.fromEnvironment(environment)
        } catch {
            throw ConfigurationError(error.description)
        }
    }

    /// The default data directory: `$XDG_DATA_HOME/devbox`, else `~/.local/share/devbox`.
    public static func defaultDataDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty { return xdg + "/devbox" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/share/devbox"
    }

    /// Parses `HOST:PORT` (`[::1]:PORT` for IPv6).
    public static func parseAddress(_ s: String, name: String) throws -> (host: String, port: Int) {
        var host: Substring
        var portPart: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else {
                throw ConfigurationError("\(name) must be HOST:PORT, got '\(s)'")
            }
            host = s[s.index(after: s.startIndex)..<close]
            portPart = s[s.index(close, offsetBy: 2)...]
        } else {
            guard let colon = s.lastIndex(of: ":") else { throw ConfigurationError("\(name) must be HOST:PORT, got '\(s)'") }
            host = s[..<colon]
            portPart = s[s.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portPart), (0...65535).contains(port) else {
            throw ConfigurationError("\(name) must be HOST:PORT with a port 0-65535, got '\(s)'")
        }
        return (String(host), port)
    }
}
