import DevboxModel
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Swift client of the devbox REST API; mirrors the seed's TypeScript SDK:
///
/// ```swift
/// let client = DevboxClient(providerToken: token)
/// let devbox = try await client.devboxes.create(CreateDevboxRequest(name: "my-sandbox"))
/// let ready = try await client.devboxes.waitForReady(devbox.id)
/// let session = try await client.devboxes.createSession(ready.id)
/// print(session.command)
/// ```
///
/// Every method throws `DevboxClientError` (or `CancellationError`). Tokens are sent only
/// as headers and never appear in errors or in the client's description.
public struct DevboxClient: Sendable {
    public static let defaultBaseURL = URL(string: "http://127.0.0.1:8080")!

    /// Devboxes, their operations, sessions and repositories.
    public let devboxes: DevboxesAPI
    /// The caller's profile and SSH key.
    public let users: UsersAPI
    /// The GitHub integration.
    public let github: GitHubAPI

    let http: HTTPCore

    public var baseURL: URL { http.baseURL }

    /// - Parameters:
    ///   - providerToken: sent as `X-Provider-Token`.
    ///   - userToken: optional user JWT, sent as `Authorization: Bearer …`.
    ///   - baseURL: the service, default `http://127.0.0.1:8080`; may carry a path prefix.
    ///   - requestTimeout: per-request timeout in seconds.
    ///   - session: the `URLSession` to use (default: an ephemeral one owned by the client).
    public init(
        providerToken: String, userToken: String? = nil, baseURL: URL = DevboxClient.defaultBaseURL,
        requestTimeout: TimeInterval = 60, session: URLSession? = nil
    ) {
        let http = HTTPCore(
            baseURL: baseURL, providerToken: providerToken, userToken: userToken.flatMap { $0.isEmpty ? nil : $0 },
            timeout: requestTimeout, session: session ?? URLSession(configuration: .ephemeral))
        self.http = http
        self.devboxes = DevboxesAPI(http: http)
        self.users = UsersAPI(http: http)
        self.github = GitHubAPI(http: http)
    }

    /// Sends a request to any API path and returns the raw JSON body of a 2xx answer
    /// (empty for 204). Non-2xx answers throw like the typed methods do. For tools that
    /// want to pass the API's JSON through unchanged (e.g. `devbox … --json`).
    public func rawRequest(_ method: String, path: String, jsonBody: Data? = nil) async throws -> Data {
        try await http.send(method, path, body: jsonBody).data
    }
}

extension DevboxClient: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "DevboxClient(\(HTTPCore.display(http.baseURL)))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["baseURL": HTTPCore.display(http.baseURL)]) }
}

/// The one place requests are built, sent and their answers interpreted.
final class HTTPCore: Sendable {
    let baseURL: URL
    private let providerToken: String
    private let userToken: String?
    private let timeout: TimeInterval
    private let session: URLSession

    init(baseURL: URL, providerToken: String, userToken: String?, timeout: TimeInterval, session: URLSession) {
        self.baseURL = baseURL
        self.providerToken = providerToken
        self.userToken = userToken
        self.timeout = timeout
        self.session = session
    }

    struct Answer {
        var status: Int
        var data: Data
        var url: String
        var headers: [String: String] = [:]
    }

    /// A request with the client's headers (Accept JSON unless `headers` says otherwise).
    func makeRequest(
        _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        contentType: String = "application/json", timeout requestTimeout: TimeInterval? = nil
    ) throws -> URLRequest {
        let url = try makeURL(path)
        var request = URLRequest(
            url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: max(timeout, requestTimeout ?? 0))
        request.httpMethod = method
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        request.setValue("devbox-swift-sdk/1", forHTTPHeaderField: "User-Agent")
        request.setValue(providerToken, forHTTPHeaderField: "X-Provider-Token")
        if let userToken { request.setValue("Bearer \(userToken)", forHTTPHeaderField: "Authorization") }
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        if let body {
            request.httpBody = body
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        return request
    }

    /// Sends one request; returns any 2xx answer, throws `.api` for an API error body and
    /// `.badResponse` for anything else.
    func send(
        _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        secrets: [String] = [], contentType: String = "application/json", timeout requestTimeout: TimeInterval? = nil
    ) async throws -> Answer {
        let request = try makeRequest(
            method, path, body: body, headers: headers, contentType: contentType, timeout: requestTimeout)
        let url = request.url ?? baseURL
        let shown = HTTPCore.display(url)

        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch let e as URLError {
            if e.code == .cancelled { throw CancellationError() }
            throw DevboxClientError.unreachable(url: HTTPCore.display(baseURL), reason: redact(HTTPCore.reason(e), secrets))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw DevboxClientError.unreachable(url: HTTPCore.display(baseURL), reason: redact("\(error)", secrets))
        }
        guard let http = response as? HTTPURLResponse else {
            throw DevboxClientError.badResponse(url: shown, status: 0, reason: "not an HTTP response")
        }
        let status = http.statusCode
        if (200..<300).contains(status) {
            var fields: [String: String] = [:]
            for (k, v) in http.allHeaderFields {
                if let k = k as? String, let v = v as? String { fields[k.lowercased()] = v }
            }
            return Answer(status: status, data: data, url: shown, headers: fields)
        }

        if let body = try? DevboxJSON.decoder().decode(APIErrorBody.self, from: data) {
            throw DevboxClientError.api(
                DevboxAPIError(
                    status: status, code: body.error.code, message: redact(body.error.message, secrets),
                    field: body.error.field))
        }
        throw DevboxClientError.badResponse(
            url: shown, status: status, reason: redact("not an API error body: \(HTTPCore.snippet(data))", secrets))
    }

    /// Sends and decodes a JSON answer.
    func json<T: Decodable>(
        _ type: T.Type, _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        secrets: [String] = [], expect: Int? = nil, timeout: TimeInterval? = nil
    ) async throws -> T {
        let answer = try await send(method, path, body: body, headers: headers, secrets: secrets, timeout: timeout)
        return try decode(T.self, answer, secrets: secrets, expect: expect)
    }

    func decode<T: Decodable>(_ type: T.Type, _ answer: Answer, secrets: [String] = [], expect: Int? = nil) throws -> T {
        if let expect, answer.status != expect {
            throw DevboxClientError.badResponse(
                url: answer.url, status: answer.status, reason: "expected HTTP \(expect)")
        }
        do {
            return try DevboxJSON.decoder().decode(T.self, from: answer.data)
        } catch {
            throw DevboxClientError.badResponse(
                url: answer.url, status: answer.status,
                reason: redact("body does not decode as \(T.self): \(HTTPCore.describe(error))", secrets))
        }
    }

    /// Sends and expects an empty 2xx answer (the API's 204s).
    func noContent(_ method: String, _ path: String, body: Data? = nil) async throws {
        _ = try await send(method, path, body: body)
    }

    func encode(_ value: some Encodable) throws -> Data {
        do {
            return try DevboxJSON.encoder().encode(value)
        } catch {
            throw DevboxClientError.invalidArgument("request body could not be encoded: \(error)")
        }
    }

    private func makeURL(_ path: String) throws -> URL {
        var base = baseURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        guard let url = URL(string: base + path), url.scheme == "http" || url.scheme == "https" else {
            throw DevboxClientError.invalidArgument(
                "invalid base URL '\(HTTPCore.display(baseURL))': expected http(s)://HOST[:PORT]")
        }
        return url
    }

    /// Replaces any token that might have been echoed back.
    func redact(_ text: String, _ extra: [String]) -> String {
        var t = text
        for secret in [providerToken] + [userToken].compactMap({ $0 }) + extra where secret.count >= 4 {
            t = t.replacingOccurrences(of: secret, with: "[redacted]")
        }
        return t
    }

    /// One path segment, percent-encoded (so an id cannot walk to another route).
    static func segment(_ s: String) throws -> String {
        guard !s.isEmpty else { throw DevboxClientError.invalidArgument("an id must not be empty") }
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/;?#%")
        let encoded = s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
        if encoded == "." || encoded == ".." { return encoded.replacingOccurrences(of: ".", with: "%2E") }
        return encoded
    }

    /// The URL as shown in messages: without user info, query or fragment.
    static func display(_ url: URL) -> String {
        guard var c = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "(invalid URL)" }
        c.user = nil
        c.password = nil
        c.query = nil
        c.fragment = nil
        return c.string ?? "(invalid URL)"
    }

    static func reason(_ e: URLError) -> String {
        switch e.code {
        case .cannotConnectToHost: "connection refused"
        case .cannotFindHost, .dnsLookupFailed: "host not found"
        case .timedOut: "timed out"
        case .networkConnectionLost: "connection lost"
        case .notConnectedToInternet: "no network"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
            .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot:
            "TLS failure"
        case .unsupportedURL, .badURL: "unsupported URL"
        default: "network error \(e.code.rawValue)"
        }
    }

    static func snippet(_ data: Data) -> String {
        if data.isEmpty { return "(empty body)" }
        let text = String(decoding: data.prefix(200), as: UTF8.self)
            .replacingOccurrences(of: "\n", with: " ")
        return data.count > 200 ? text + "…" : text
    }

    static func describe(_ error: any Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .keyNotFound(let k, let c): return "missing \(path(c.codingPath + [k]))"
        case .typeMismatch(_, let c): return "wrong type at \(path(c.codingPath))"
        case .valueNotFound(_, let c): return "null at \(path(c.codingPath))"
        case .dataCorrupted(let c): return c.codingPath.isEmpty ? "not JSON" : "invalid value at \(path(c.codingPath))"
        @unknown default: return "does not decode"
        }
    }
}
