import AsyncHTTPClient
import DevboxModel
import Foundation
import HTTPClientSupport
import Logging
import NIOCore
import NIOHTTP1

/// What went wrong talking to GitHub. Messages never contain a token.
enum GitHubError: Error, Equatable, CustomStringConvertible {
    /// No answer (connection refused, DNS, timeout).
    case unreachable(String)
    /// GitHub refused the token (401): revoked or expired.
    case tokenRejected
    /// The resource does not exist or the token cannot see it (404).
    case notFound
    /// Any other non-success status, with GitHub's `message`.
    case status(Int, String)
    /// The OAuth token endpoint answered with `{"error": ...}`.
    case oauth(String)
    /// An answer that is not what GitHub sends.
    case invalidResponse(String)

    var description: String {
        switch self {
        case .unreachable(let why): "GitHub is unreachable: \(why)"
        case .tokenRejected: "GitHub rejected the token"
        case .notFound: "not found on GitHub"
        case .status(let code, let message): "GitHub answered \(code): \(message)"
        case .oauth(let error): "GitHub refused the authorization code: \(error)"
        case .invalidResponse(let why): "unexpected answer from GitHub: \(why)"
        }
    }
}

/// The GitHub user behind a token.
struct GitHubUser: Decodable, Sendable, Equatable {
    var id: Int64
    var login: String
}

/// A repository as GitHub's REST API describes it (the fields we use).
struct GitHubAPIRepo: Decodable, Sendable, Equatable {
    struct Owner: Decodable, Sendable, Equatable {
        var login: String
        var type: String?
    }
    var id: Int64
    var fullName: String
    var isPrivate: Bool
    var defaultBranch: String?
    var htmlUrl: String?
    var owner: Owner

    enum CodingKeys: String, CodingKey {
        case id, owner
        case fullName = "full_name", isPrivate = "private", defaultBranch = "default_branch", htmlUrl = "html_url"
    }

    var isOrganisation: Bool { owner.type == "Organization" }

    var model: GitHubRepo {
        GitHubRepo(id: id, fullName: fullName, isPrivate: isPrivate, defaultBranch: defaultBranch, htmlUrl: htmlUrl)
    }
}

/// An organisation as `GET /user/orgs` lists it.
struct GitHubAPIOrg: Decodable, Sendable, Equatable {
    var id: Int64
    var login: String
}

/// The answer of `POST /login/oauth/access_token`.
struct GitHubTokenGrant: Sendable {
    var accessToken: String
    var scopes: [String]
}

/// A small GitHub REST and OAuth client on async-http-client: no cookie store, no cache,
/// bounded timeouts, redirects not followed (a token is never replayed to another host),
/// `Link: rel="next"` followed only on the API's own origin. Tokens travel in headers only
/// and never reach a log line or an error message.
final class GitHubClient: Sendable {
    let settings: GitHubSettings
    /// Shut down when this client goes away (with its core).
    private let http: OwnedHTTPClient
    static let maxPages = 100
    /// The largest answer read (a page of 100 repositories is a few hundred KiB).
    static let maxBody = 32 * 1024 * 1024

    init(settings: GitHubSettings) {
        self.settings = settings
        // `requestTimeout` to connect and between two reads, the answer's head within four
        // times that (what URLSession's request and resource timeouts were).
        http = OwnedHTTPClient(
            configuration: .devbox(
                connectTimeout: settings.requestTimeout, readTimeout: settings.requestTimeout, followRedirects: false))
    }

    /// One GitHub request (URLRequest's shape, so the call sites read the same).
    struct Request {
        var url: URL
        var method: String
        var headers: [(String, String)] = []
        var body: Data?

        mutating func setValue(_ value: String, forHTTPHeaderField name: String) {
            headers.removeAll { $0.0.lowercased() == name.lowercased() }
            headers.append((name, value))
        }
    }

    /// An answer: status, headers, body.
    struct Response {
        var statusCode: Int
        var headers: HTTPHeaders

        func value(forHTTPHeaderField name: String) -> String? {
            let values = headers[name]
            return values.isEmpty ? nil : values.joined(separator: ", ")
        }
    }

    // MARK: OAuth

    /// `<web>/login/oauth/authorize?client_id&redirect_uri&scope&state`.
    func authorizationURL(state: String) -> String? {
        guard let clientId = settings.clientId, let callback = settings.callbackURL else { return nil }
        let query = FormEncoding.encode([
            ("client_id", clientId), ("redirect_uri", callback), ("scope", settings.scopes.joined(separator: " ")),
            ("state", state), ("allow_signup", "false"),
        ])
        return GitHubSettings.join(settings.webURL, "/login/oauth/authorize") + "?" + query
    }

    /// Exchanges an authorization code for a token (`Accept: application/json`; GitHub
    /// reports a bad code as 200 with `{"error": ...}`).
    func exchange(code: String) async throws(GitHubError) -> GitHubTokenGrant {
        guard let clientId = settings.clientId, let secret = settings.clientSecret,
            let url = URL(string: GitHubSettings.join(settings.webURL, "/login/oauth/access_token"))
        else { throw .invalidResponse("OAuth is not configured") }
        var form = [("client_id", clientId), ("client_secret", secret), ("code", code)]
        if let cb = settings.callbackURL { form.append(("redirect_uri", cb)) }
        var req = Request(url: url, method: "POST")
        req.setValue("application/json", forHTTPHeaderField: "Accept")
        req.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        req.body = Data(FormEncoding.encode(form).utf8)
        let (data, response) = try await send(req)
        guard response.statusCode == 200 else { throw Self.failure(response, data) }
        struct Answer: Decodable {
            var access_token: String?
            var scope: String?
            var error: String?
        }
        guard let a = try? JSONDecoder().decode(Answer.self, from: data) else {
            throw .invalidResponse("the token endpoint did not answer JSON")
        }
        if let e = a.error { throw .oauth(Self.safeWord(e)) }
        guard let token = a.access_token, !token.isEmpty else { throw .invalidResponse("no access_token") }
        return GitHubTokenGrant(accessToken: token, scopes: Self.scopes(a.scope ?? ""))
    }

    /// `DELETE /applications/{client_id}/grant` with the app's basic auth: revokes every
    /// token of this app for the token's owner.
    func revokeGrant(token: String) async throws(GitHubError) {
        guard let clientId = settings.clientId, let secret = settings.clientSecret else { return }
        let encodedId = FormEncoding.escape(clientId)
        guard let url = URL(string: GitHubSettings.join(settings.apiURL, "/applications/\(encodedId)/grant")) else { return }
        var req = apiRequest(url, method: "DELETE")
        req.setValue("Basic " + Data("\(clientId):\(secret)".utf8).base64EncodedString(), forHTTPHeaderField: "Authorization")
        req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        req.body = try? JSONEncoder().encode(["access_token": token])
        let (data, response) = try await send(req)
        guard (200..<300).contains(response.statusCode) || response.statusCode == 404 else {
            throw Self.failure(response, data)
        }
    }

    // MARK: REST

    /// `GET /user`, with the scopes GitHub reports in `X-OAuth-Scopes`.
    func user(token: String) async throws(GitHubError) -> (user: GitHubUser, scopes: [String]?) {
        let (data, response) = try await get("/user", token: token)
        guard let u = try? JSONDecoder().decode(GitHubUser.self, from: data) else {
            throw .invalidResponse("GET /user did not describe a user")
        }
        let header = response.value(forHTTPHeaderField: "X-OAuth-Scopes")
        return (u, header.map(Self.scopes))
    }

    /// `GET /repos/{owner}/{name}`.
    func repository(fullName: String, token: String) async throws(GitHubError) -> GitHubAPIRepo {
        let (data, _) = try await get("/repos/\(fullName)", token: token)
        guard let r = try? JSONDecoder().decode(GitHubAPIRepo.self, from: data) else {
            throw .invalidResponse("GET /repos/\(fullName) did not describe a repository")
        }
        return r
    }

    /// Every page of `GET /user/repos`.
    func repositories(token: String) async throws(GitHubError) -> [GitHubAPIRepo] {
        try await allPages("/user/repos?per_page=100&sort=full_name", token: token)
    }

    /// Every page of `GET /user/orgs`.
    func organisations(token: String) async throws(GitHubError) -> [GitHubAPIOrg] {
        try await allPages("/user/orgs?per_page=100", token: token)
    }

    /// Follows `Link: <…>; rel="next"` until the last page (at most `maxPages`), only
    /// while the next URL stays on the API's origin and under its base path.
    func allPages<T: Decodable>(_ pathAndQuery: String, token: String) async throws(GitHubError) -> [T] {
        guard var url = URL(string: GitHubSettings.join(settings.apiURL, pathAndQuery)) else {
            throw .invalidResponse("bad path \(pathAndQuery)")
        }
        var items: [T] = []
        for _ in 0..<Self.maxPages {
            let (data, response) = try await send(authorized(apiRequest(url, method: "GET"), token: token))
            guard response.statusCode == 200 else { throw Self.failure(response, data) }
            do {
                items += try JSONDecoder().decode([T].self, from: data)
            } catch {
                throw .invalidResponse("a page of \(url.path) is not a JSON array of the expected objects")
            }
            guard let next = LinkHeader.next(response.value(forHTTPHeaderField: "Link")) else { return items }
            guard let nextURL = URL(string: next), sameAPIOrigin(nextURL) else {
                throw .invalidResponse("the next page link leaves the API origin")
            }
            url = nextURL
        }
        throw .invalidResponse("more than \(Self.maxPages) pages")
    }

    func sameAPIOrigin(_ url: URL) -> Bool {
        let base = settings.apiURL
        guard url.scheme?.lowercased() == base.scheme?.lowercased(), url.host?.lowercased() == base.host?.lowercased(),
            (url.port ?? Self.defaultPort(url)) == (base.port ?? Self.defaultPort(base))
        else { return false }
        let basePath = base.path.hasSuffix("/") ? base.path : base.path + "/"
        return basePath == "/" || url.path.hasPrefix(basePath)
    }

    static func defaultPort(_ url: URL) -> Int { url.scheme?.lowercased() == "http" ? 80 : 443 }

    private func get(_ path: String, token: String) async throws(GitHubError) -> (Data, Response) {
        guard let url = URL(string: GitHubSettings.join(settings.apiURL, path)) else {
            throw .invalidResponse("bad path \(path)")
        }
        let (data, response) = try await send(authorized(apiRequest(url, method: "GET"), token: token))
        guard response.statusCode == 200 else { throw Self.failure(response, data) }
        return (data, response)
    }

    private func apiRequest(_ url: URL, method: String) -> Request {
        var req = Request(url: url, method: method)
        req.setValue("application/vnd.github+json", forHTTPHeaderField: "Accept")
        req.setValue("2022-11-28", forHTTPHeaderField: "X-GitHub-Api-Version")
        return req
    }

    private func authorized(_ request: Request, token: String) -> Request {
        var r = request
        r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        return r
    }

    private func send(_ request: Request) async throws(GitHubError) -> (Data, Response) {
        var req = request
        req.setValue("devbox", forHTTPHeaderField: "User-Agent")
        var outgoing = HTTPClientRequest(url: req.url.absoluteString)
        outgoing.method = HTTPMethod(rawValue: req.method)
        for (name, value) in req.headers { outgoing.headers.add(name: name, value: value) }
        if let body = req.body { outgoing.body = .bytes(body) }
        // The URL is ours (no token in it); the reason says enough.
        let what = "\(req.method) \(req.url.host ?? "?")"
        do {
            let response = try await http.client.execute(
                outgoing, timeout: .fractionalSeconds(settings.requestTimeout * 4))
            let body = try await response.body.collect(upTo: Self.maxBody)
            return (Data(body.readableBytesView), Response(statusCode: Int(response.status.code), headers: response.headers))
        } catch is NIOTooManyBytesError {
            throw .invalidResponse("\(what): the answer is larger than \(Self.maxBody / 1024 / 1024) MiB")
        } catch {
            throw .unreachable("\(what): \(HTTPFailure.reason(error))")
        }
    }

    static func failure(_ response: Response, _ data: Data) -> GitHubError {
        switch response.statusCode {
        case 401: return .tokenRejected
        case 404: return .notFound
        default:
            struct Message: Decodable { var message: String? }
            let m = (try? JSONDecoder().decode(Message.self, from: data))?.message ?? "no message"
            return .status(response.statusCode, String(m.prefix(200)))
        }
    }

    /// `repo,read:org` or `repo, read:org` → ["repo", "read:org"].
    static func scopes(_ s: String) -> [String] {
        s.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init).filter { !$0.isEmpty }
    }

    /// Keeps only `[a-z0-9_]` of an OAuth error code (it ends up in a redirect URL).
    static func safeWord(_ s: String) -> String {
        let w = String(s.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == "_" }.prefix(64))
        return w.isEmpty ? "unknown_error" : w
    }
}

/// RFC 8288 `Link` header, as GitHub sends it for pagination.
enum LinkHeader {
    /// The URL of `rel="next"`, if any.
    static func next(_ header: String?) -> String? {
        guard let header else { return nil }
        for link in split(header) {
            guard let open = link.firstIndex(of: "<"), let close = link.firstIndex(of: ">"), open < close else { continue }
            let target = String(link[link.index(after: open)..<close])
            let params = link[link.index(after: close)...].split(separator: ";")
            for p in params {
                let kv = p.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2, kv[0].lowercased() == "rel" else { continue }
                let rels = kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")).split(separator: " ")
                if rels.contains(where: { $0.lowercased() == "next" }) { return target }
            }
        }
        return nil
    }

    /// Splits on commas outside `<…>` (URLs may contain commas).
    static func split(_ header: String) -> [Substring] {
        var parts: [Substring] = []
        var inside = false
        var start = header.startIndex
        for i in header.indices {
            switch header[i] {
            case "<": inside = true
            case ">": inside = false
            case "," where !inside:
                parts.append(header[start..<i])
                start = header.index(after: i)
            default: break
            }
        }
        parts.append(header[start...])
        return parts
    }
}

/// `application/x-www-form-urlencoded` with every byte but the unreserved ones escaped
/// (URLComponents leaves `&`, `=` and `+` in values alone).
enum FormEncoding {
    static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { escape($0.0) + "=" + escape($0.1) }.joined(separator: "&")
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }
}
