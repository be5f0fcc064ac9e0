import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard's HTTP plumbing: cookies, forms, the Origin check, HTML responses.
enum Web {
    static let sessionCookie = "devbox_session"
    /// Double-submit token of the sign-in form (there is no session yet to bind a token to).
    static let loginCookie = "devbox_login_csrf"
    static let csrfField = "csrf_token"
    static let formLimit = 256 * 1024

    /// The value of cookie `name`, from every `Cookie` header.
    static func cookie(_ request: Request, _ name: String) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces)
                if let eq = kv.firstIndex(of: "="), kv[..<eq] == name {
                    return String(kv[kv.index(after: eq)...])
                }
            }
        }
        return nil
    }

    /// Served over TLS: `DEVBOX_PUBLIC_URL` is https, or a proxy says `X-Forwarded-Proto: https`.
    static func isTLS(_ request: Request, publicURL: URL?) -> Bool {
        if publicURL?.scheme?.lowercased() == "https" { return true }
        return request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    static func setCookie(_ name: String, _ value: String, maxAge: Int, secure: Bool) -> String {
        "\(name)=\(value); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    static func clearCookie(_ name: String, secure: Bool) -> String {
        "\(name)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    /// A state-changing request must come from one of our own pages: `Origin` (or, when a
    /// browser sends none, `Referer`) must be `DEVBOX_PUBLIC_URL`'s origin or the origin the
    /// request was addressed to (its `Host`, https when TLS). Neither header → refused.
    static func originAllowed(_ request: Request, publicURL: URL?) -> Bool {
        var allowed: Set<String> = []
        if let publicURL, let o = origin(of: publicURL.absoluteString) { allowed.insert(o) }
        if let host = request.head.authority, !host.isEmpty {
            allowed.insert((isTLS(request, publicURL: publicURL) ? "https://" : "http://") + host.lowercased())
        }
        if let o = request.headers[.origin] {
            return allowed.contains(o.lowercased())
        }
        if let r = request.headers[.referer], let o = origin(of: r) {
            return allowed.contains(o)
        }
        return false
    }

    /// `scheme://host[:port]` of a URL, lowercased, default ports omitted.
    static func origin(of s: String) -> String? {
        guard let c = URLComponents(string: s), let scheme = c.scheme?.lowercased(), let host = c.host?.lowercased(),
            !host.isEmpty
        else { return nil }
        let h = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        if let port = c.port, !(scheme == "http" && port == 80), !(scheme == "https" && port == 443) {
            return "\(scheme)://\(h):\(port)"
        }
        return "\(scheme)://\(h)"
    }

    /// An HTML page with the dashboard's security headers.
    static func html(
        _ page: HTML, status: HTTPResponse.Status = .ok, cookies: [String] = [], formTargets: [String] = []
    ) -> Response {
        var headers = securityHeaders(formTargets: formTargets)
        headers[.contentType] = "text/html; charset=utf-8"
        for c in cookies { headers.append(HTTPField(name: .setCookie, value: c)) }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: page.raw)))
    }

    /// 303 See Other (after a form post, or to the sign-in page).
    static func redirect(_ location: String, cookies: [String] = []) -> Response {
        var headers = securityHeaders()
        headers[.location] = location
        for c in cookies { headers.append(HTTPField(name: .setCookie, value: c)) }
        return Response(status: .seeOther, headers: headers)
    }

    /// `formTargets`: origins a form of the page may be redirected to (GitHub's, for connect).
    static func securityHeaders(formTargets: [String] = []) -> HTTPFields {
        [
            .cacheControl: "no-store",
            HTTPField.Name("Content-Security-Policy")!:
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                + "form-action 'self'\(formTargets.map { " " + $0 }.joined()); frame-ancestors 'none'; base-uri 'none'; "
                + "object-src 'none'",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            HTTPField.Name("X-Frame-Options")!: "DENY",
            // same-origin keeps `Origin` on our own form posts (no-referrer would make it "null").
            HTTPField.Name("Referrer-Policy")!: "same-origin",
        ]
    }

    /// Reads an `application/x-www-form-urlencoded` body (bounded, 256 KiB).
    static func form(_ request: Request) async throws -> Form {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        // Anything else carries no fields (an X-CSRF-Token header may still authorise it).
        guard type.hasPrefix("application/x-www-form-urlencoded") else { return Form(parsing: "") }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: formLimit)
        } catch is NIOTooManyBytesError {
            throw ServiceError.payloadTooLarge("the form is larger than \(formLimit / 1024) KiB")
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw ServiceError.payloadTooLarge("the form is larger than \(formLimit / 1024) KiB")
        }
        return Form(parsing: String(buffer: buffer))
    }
}

/// A decoded form: ordered name/value pairs (repeated names keep their order).
struct Form: Sendable {
    var pairs: [(String, String)]

    init(parsing body: String) {
        pairs = body.split(separator: "&", omittingEmptySubsequences: true).map { item in
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let plus = s.replacingOccurrences(of: "+", with: " ")
                return plus.removingPercentEncoding ?? plus
            }
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        }
    }

    subscript(_ name: String) -> String? { pairs.first { $0.0 == name }?.1 }
    func all(_ name: String) -> [String] { pairs.filter { $0.0 == name }.map(\.1) }
    func isOn(_ name: String) -> Bool { ["on", "true", "1", "yes"].contains(self[name] ?? "") }
}
