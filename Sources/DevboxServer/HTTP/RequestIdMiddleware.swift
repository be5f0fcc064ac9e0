import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The outermost middleware: gives every request an id and an origin.
///
/// - `X-Request-Id`: a sane incoming value (1–128 of `A-Z a-z 0-9 - _ . : @ / + =`) is kept,
///   anything else is replaced by a new random one; the id is answered in `X-Request-Id` on
///   every response, errors included (it sits outside `JSONErrorMiddleware`).
/// - `RequestOrigin.current` (a task-local) holds the id, the peer's address and the face
///   (`mcp` for /mcp, `api` for /api/…, else `dashboard`): the audit log records them and
///   the log handlers add `request_id` to each line the request logs.
struct RequestIdMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    static let header = HTTPField.Name("X-Request-Id")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = Self.accepted(request.headers[Self.header]) ?? Self.make()
        let path = request.uri.path
        let origin = RequestOrigin(
            face: Self.face(path), source: Self.address(context.remoteAddress), requestId: id, devboxId: Self.devboxId(path))
        do {
            var response = try await RequestOrigin.$current.withValue(origin) { try await next(request, context) }
            response.headers[Self.header] = id
            return response
        } catch let e as HTTPError {
            // An error no inner middleware turned into a response (it never happens behind
            // JSONErrorMiddleware, but a 4xx from the server itself still carries the id).
            var headers = e.headers
            headers[Self.header] = id
            throw HTTPError(e.status, headers: headers, message: e.body)
        }
    }

    static func accepted(_ value: String?) -> String? {
        guard let value, (1...128).contains(value.utf8.count) else { return nil }
        let ok = value.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || [UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "@"),
                    UInt8(ascii: "/"), UInt8(ascii: "+"), UInt8(ascii: "=")].contains(c)
        }
        return ok ? value : nil
    }

    /// 16 random bytes as 32 hex digits.
    static func make() -> String {
        var g = SystemRandomNumberGenerator()
        let a = g.next() as UInt64
        let b = g.next() as UInt64
        return hex(a) + hex(b)
    }

    private static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func face(_ path: String) -> String {
        if path == "/mcp" || path.hasPrefix("/mcp/") { return "mcp" }
        if path.hasPrefix("/api/") { return "api" }
        return "dashboard"
    }

    /// `dbx_…` from /api/v1/devboxes/{id}/… or /devboxes/{id}/… (ids are [a-z0-9_]).
    static func devboxId(_ path: String) -> String? {
        let segs = path.split(separator: "/", maxSplits: 4)
        let candidate: Substring?
        if segs.count >= 3, segs[0] == "api", segs[2] == "devboxes" {
            candidate = segs.count >= 4 ? segs[3] : nil
        } else if segs.count >= 2, segs[0] == "devboxes" {
            candidate = segs[1]
        } else {
            candidate = nil
        }
        guard let c = candidate, c.hasPrefix("dbx_"), c.count <= 64,
            c.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x5F })
        else { return nil }
        return String(c.split(separator: "/").first ?? c)
    }

    static func address(_ a: SocketAddress?) -> String? {
        guard let a else { return nil }
        return a.ipAddress ?? a.pathname
    }
}
