import AsyncHTTPClient
import DevboxModel
import Foundation
import HTTPClientSupport
import NIOCore
import NIOHTTP1

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
    ///   - requestTimeout: per-request timeout in seconds: the longest wait for the answer and
    ///     between two pieces of it (longer for calls that wait on purpose, like exec).
    ///   - httpClient: the `HTTPClient` to send with; the caller keeps it running while it
    ///     uses this client and shuts it down itself. Default: the client's own (a refused
    ///     connection fails at once, redirects not followed, TLS verified against the
    ///     system's trust roots), shut down when the last copy of this client is gone. The
    ///     API never redirects; following one would send `X-Provider-Token` and the AI token
    ///     headers to whatever host it names (async-http-client drops only `Authorization`
    ///     and cookies on a cross-origin redirect), so a 3xx is reported as a bad response.
    public init(
        providerToken: String, userToken: String? = nil, baseURL: URL = DevboxClient.defaultBaseURL,
        requestTimeout: TimeInterval = 60, httpClient: HTTPClient? = nil
    ) {
        let http = HTTPCore(
            baseURL: baseURL, providerToken: providerToken, userToken: userToken.flatMap { $0.isEmpty ? nil : $0 },
            timeout: requestTimeout, httpClient: httpClient)
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
    private let sender: Sender

    /// The caller's client, or ours: made on first use, shut down when this core goes away.
    private enum Sender: Sendable {
        case caller(HTTPClient)
        case own(OwnedHTTPClient)
    }

    private var client: HTTPClient {
        switch sender {
        case .caller(let client): client
        case .own(let owned): owned.client
        }
    }

    init(baseURL: URL, providerToken: String, userToken: String?, timeout: TimeInterval, httpClient: HTTPClient?) {
        self.baseURL = baseURL
        self.providerToken = providerToken
        self.userToken = userToken
        self.timeout = timeout
        sender =
            httpClient.map { .caller($0) }
            ?? .own(OwnedHTTPClient(configuration: .devbox(connectTimeout: timeout, followRedirects: false)))
    }

    struct Answer {
        var status: Int
        var data: Data
        var url: String
        var headers: [String: String] = [:]
    }

    /// A request ready to send, with the URL it goes to and its idle timeout in seconds.
    struct Prepared: Sendable {
        var request: HTTPClientRequest
        var url: URL
        var timeout: TimeInterval
    }

    /// A request with the client's headers (Accept JSON unless `headers` says otherwise).
    func makeRequest(
        _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        contentType: String = "application/json", timeout requestTimeout: TimeInterval? = nil
    ) throws -> Prepared {
        let url = try makeURL(path)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        request.headers.replaceOrAdd(name: "Accept", value: "application/json")
        request.headers.replaceOrAdd(name: "User-Agent", value: "devbox-swift-sdk/1")
        request.headers.replaceOrAdd(name: "X-Provider-Token", value: providerToken)
        if let userToken { request.headers.replaceOrAdd(name: "Authorization", value: "Bearer \(userToken)") }
        for (k, v) in headers { request.headers.replaceOrAdd(name: k, value: v) }
        if let body {
            request.body = .bytes(body)
            request.headers.replaceOrAdd(name: "Content-Type", value: contentType)
        }
        return Prepared(request: request, url: url, timeout: max(timeout, requestTimeout ?? 0))
    }

    /// Sends `prepared` and hands the answer to `handle`, which reads the body and calls
    /// `alive` for every piece: the request fails when nothing arrives for its timeout.
    /// Failures to get an answer throw `.unreachable` (cancellation stays `CancellationError`).
    func perform<T: Sendable>(
        _ prepared: Prepared, secrets: [String],
        _ handle: @escaping @Sendable (HTTPClientResponse, _ alive: @escaping @Sendable () -> Void) async throws -> T
    ) async throws -> T {
        let client = self.client
        do {
            return try await withIdleTimeout(.milliseconds(Int64(prepared.timeout * 1000))) { alive in
                let response = try await client.execute(prepared.request, timeout: .fractionalSeconds(prepared.timeout))
                alive()
                return try await handle(response, alive)
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw DevboxClientError.unreachable(
                url: HTTPCore.display(baseURL), reason: redact(HTTPFailure.reason(error), secrets))
        }
    }

    /// Sends one request; returns any 2xx answer, throws `.api` for an API error body and
    /// `.badResponse` for anything else.
    func send(
        _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:],
        secrets: [String] = [], contentType: String = "application/json", timeout requestTimeout: TimeInterval? = nil
    ) async throws -> Answer {
        let prepared = try makeRequest(
            method, path, body: body, headers: headers, contentType: contentType, timeout: requestTimeout)
        let shown = HTTPCore.display(prepared.url)

        let (status, headers, data) = try await perform(prepared, secrets: secrets) { response, alive in
            var data = Data()
            for try await chunk in response.body {
                alive()
                data.append(contentsOf: chunk.readableBytesView)
            }
            return (Int(response.status.code), response.headers, data)
        }
        if (200..<300).contains(status) {
            var fields: [String: String] = [:]
            for (name, value) in headers {
                let k = name.lowercased()
                fields[k] = fields[k].map { $0 + ", " + value } ?? value
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
