import Foundation

/// How the service reaches GitHub (github.com or a GitHub Enterprise Server), already
/// validated by the executable. Without a client id and secret the OAuth endpoints answer
/// 503; public repositories still clone.
public struct GitHubSettings: Sendable {
    public var clientId: String?
    public var clientSecret: String?
    /// Web base: `/login/oauth/*` and the clone URLs `<web>/<owner>/<name>.git`.
    public var webURL: URL
    /// REST base: `https://api.github.com`, or `https://HOST/api/v3` on GitHub Enterprise Server.
    public var apiURL: URL
    /// The service's external base URL; the OAuth callback is `<public>/api/v1/integrations/github/callback`.
    public var publicURL: URL?
    /// URL prefixes a client may ask to be sent back to after the OAuth round trip.
    public var redirectAllowlist: [RedirectAllowlist.Prefix]
    /// `repo` to clone private repositories, `read:org` to list organisation memberships.
    public var scopes: [String]
    public var stateLifetime: TimeInterval
    public var requestTimeout: TimeInterval
    public var cloneTimeout: Duration

    public init(
        clientId: String? = nil, clientSecret: String? = nil,
        webURL: URL = URL(string: "https://github.com")!, apiURL: URL = URL(string: "https://api.github.com")!,
        publicURL: URL? = nil, redirectAllowlist: [RedirectAllowlist.Prefix] = [], scopes: [String] = ["repo", "read:org"],
        stateLifetime: TimeInterval = 600, requestTimeout: TimeInterval = 15, cloneTimeout: Duration = .seconds(1800)
    ) {
        self.clientId = clientId
        self.clientSecret = clientSecret
        self.webURL = webURL
        self.apiURL = apiURL
        self.publicURL = publicURL
        self.redirectAllowlist = redirectAllowlist
        self.scopes = scopes
        self.stateLifetime = stateLifetime
        self.requestTimeout = requestTimeout
        self.cloneTimeout = cloneTimeout
    }

    var oauthConfigured: Bool { clientId != nil && clientSecret != nil }

    /// Reads `DEVBOX_GITHUB_CLIENT_ID`, `DEVBOX_GITHUB_CLIENT_SECRET`, `DEVBOX_GITHUB_URL`,
    /// `DEVBOX_GITHUB_API_URL`, `DEVBOX_PUBLIC_URL` and `DEVBOX_OAUTH_REDIRECT_ALLOWLIST`.
    public static func fromEnvironment(_ env: [String: String]) throws -> GitHubSettings {
        func value(_ key: String) -> String? {
            env[key].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        var s = GitHubSettings()
        s.clientId = value("DEVBOX_GITHUB_CLIENT_ID")
        s.clientSecret = value("DEVBOX_GITHUB_CLIENT_SECRET")
        guard (s.clientId == nil) == (s.clientSecret == nil) else {
            throw ConfigurationError("DEVBOX_GITHUB_CLIENT_ID and DEVBOX_GITHUB_CLIENT_SECRET must be set together")
        }
        if let u = value("DEVBOX_GITHUB_URL") { s.webURL = try parseBaseURL(u, name: "DEVBOX_GITHUB_URL") }
        if let u = value("DEVBOX_GITHUB_API_URL") { s.apiURL = try parseBaseURL(u, name: "DEVBOX_GITHUB_API_URL") }
        if let u = value("DEVBOX_PUBLIC_URL") { s.publicURL = try parseBaseURL(u, name: "DEVBOX_PUBLIC_URL") }
        if let list = value("DEVBOX_OAUTH_REDIRECT_ALLOWLIST") { s.redirectAllowlist = try RedirectAllowlist.parse(list) }
        return s
    }

    /// `<public>/api/v1/integrations/github/callback`.
    var callbackURL: String? {
        publicURL.map { Self.join($0, "/api/v1/integrations/github/callback") }
    }

    /// Where the dashboard's account page sends the browser back after the OAuth round trip.
    public static let dashboardReturnPath = "/account"

    /// `<public>/account`: the dashboard's own return address.
    public var dashboardReturnURL: String? {
        publicURL.map { Self.join($0, Self.dashboardReturnPath) }
    }

    /// The configured allow-list plus the dashboard's own return address (implicit: the
    /// service's own page is never an open redirect).
    var effectiveRedirectAllowlist: [RedirectAllowlist.Prefix] {
        redirectAllowlist + (dashboardReturnURL.flatMap(RedirectAllowlist.components).map { [$0] } ?? [])
    }

    /// `<web>/<owner>/<name>.git`.
    func cloneURL(fullName: String) -> String { Self.join(webURL, "/\(fullName).git") }

    static func join(_ base: URL, _ path: String) -> String {
        var s = base.absoluteString
        while s.hasSuffix("/") { s.removeLast() }
        return s + path
    }

    /// Parses a base URL setting: absolute http(s) with a host, no query, fragment or
    /// credentials; a trailing slash is dropped.
    public static func parseBaseURL(_ s: String, name: String) throws -> URL {
        guard let c = URLComponents(string: s), let scheme = c.scheme?.lowercased(), scheme == "https" || scheme == "http",
            let host = c.host, !host.isEmpty, c.user == nil, c.password == nil, c.query == nil, c.fragment == nil
        else {
            throw ConfigurationError("\(name) must be an absolute http(s) URL without credentials or query, got '\(s)'")
        }
        var t = s
        while t.hasSuffix("/") { t.removeLast() }
        guard let url = URL(string: t) else { throw ConfigurationError("\(name) is not a valid URL: '\(s)'") }
        return url
    }
}

/// The allow-list of redirect targets after the OAuth round trip (no open redirect).
/// A target matches a prefix when scheme, host and port are equal and its path starts with
/// the prefix's path at a segment boundary: `https://app.example.com/cb` allows
/// `https://app.example.com/cb?x=1` and `/cb/done`, not `/cbx` nor `app.example.com.evil.net`.
public enum RedirectAllowlist {
    public struct Prefix: Sendable, Equatable {
        var scheme: String
        var host: String
        var port: Int
        var path: String
    }

    /// Parses `DEVBOX_OAUTH_REDIRECT_ALLOWLIST` (comma-separated URL prefixes).
    public static func parse(_ list: String) throws -> [Prefix] {
        try list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { s in
            guard let p = components(s) else {
                throw ConfigurationError(
                    "DEVBOX_OAUTH_REDIRECT_ALLOWLIST entries must be absolute http(s) URLs with a host, got '\(s)'")
            }
            return p
        }
    }

    /// True when `candidate` is an absolute http(s) URL under one of `prefixes`.
    public static func allows(_ candidate: String, _ prefixes: [Prefix]) -> Bool {
        guard let c = components(candidate) else { return false }
        return prefixes.contains { p in
            guard p.scheme == c.scheme, p.host == c.host, p.port == c.port else { return false }
            if p.path.isEmpty || p.path == "/" || c.path == p.path { return true }
            let boundary = p.path.hasSuffix("/") ? p.path : p.path + "/"
            return c.path.hasPrefix(boundary)
        }
    }

    /// Scheme, host, effective port and percent-encoded path of a URL that a browser and
    /// Foundation read the same way: no backslashes, whitespace or control characters,
    /// no credentials, no dot segments.
    static func components(_ s: String) -> Prefix? {
        guard s.count <= 2048,
            !s.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7f || $0 == "\\" || $0.value > 0x7e })
        else { return nil }
        guard let c = URLComponents(string: s), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = c.host?.lowercased(), !host.isEmpty, c.user == nil, c.password == nil
        else { return nil }
        // `https:/x` or `https:x` are not absolute URLs with an authority.
        guard s.lowercased().hasPrefix(scheme + "://") else { return nil }
        let path = c.percentEncodedPath
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !segments.contains(where: { seg in
            let d = seg.lowercased()
            return d == "." || d == ".." || d.contains("%2e") || d.contains("%2f") || d.contains("%5c")
        }) else { return nil }
        return Prefix(scheme: scheme, host: host, port: c.port ?? (scheme == "https" ? 443 : 80), path: path)
    }
}
