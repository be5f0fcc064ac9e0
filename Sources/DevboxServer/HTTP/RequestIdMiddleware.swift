import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

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

    /// 32 hex digits: 64 random bits drawn once per process, then a per-process counter
    /// through a keyed bijection (splitmix64's finalizer of counter ^ key): unique within the
    /// process (a bijection of distinct counters), not a sequence a reader of one id can
    /// continue without the key, and no `getrandom` per request (two of them, plus the
    /// strings of two `String(radix:)`, were a few % of the serve's CPU under a read load).
    static func make() -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        var z = n ^ mixKey
        z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
        z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
        z ^= z >> 31
        return String(unsafeUninitializedCapacity: 32) { buf in
            let digits: StaticString = "0123456789abcdef"
            digits.withUTF8Buffer { d in
                for i in 0..<16 {
                    buf[i] = d[Int((prefix >> UInt64(60 - 4 * i)) & 0xf)]
                    buf[16 + i] = d[Int((z >> UInt64(60 - 4 * i)) & 0xf)]
                }
            }
            return 32
        }
    }

    private static let prefix: UInt64 = { var g = SystemRandomNumberGenerator(); return g.next() }()
    private static let mixKey: UInt64 = { var g = SystemRandomNumberGenerator(); return g.next() }()
    private static let counter = Atomic<UInt64>(0)

    static func face(_ path: String) -> String {
        if path == "/mcp" || path.hasPrefix("/mcp/") { return "mcp" }
        if path.hasPrefix("/api/") { return "api" }
        return "dashboard"
    }

    /// `dbx_…` from /api/v1/devboxes/{id}/… or /devboxes/{id}/… (ids are [a-z0-9_]).
    static func devboxId(_ path: String) -> String? {
        // The first four non-empty segments, by index into the UTF-8 bytes (no array of
        // substrings per request).
        let u = path.utf8
        var segs: [Range<String.Index>] = []
        segs.reserveCapacity(4)
        var i = u.startIndex
        while i < u.endIndex && segs.count < 4 {
            while i < u.endIndex && u[i] == UInt8(ascii: "/") { i = u.index(after: i) }
            guard i < u.endIndex else { break }
            let start = i
            while i < u.endIndex && u[i] != UInt8(ascii: "/") { i = u.index(after: i) }
            segs.append(start..<i)
        }
        func seg(_ k: Int) -> Substring { path[segs[k]] }
        let candidate: Substring?
        if segs.count >= 3, seg(0) == "api", seg(2) == "devboxes" {
            candidate = segs.count >= 4 ? seg(3) : nil
        } else if segs.count >= 2, seg(0) == "devboxes" {
            candidate = seg(1)
        } else {
            candidate = nil
        }
        guard let c = candidate, c.hasPrefix("dbx_"), c.utf8.count <= 64,
            c.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || $0 == 0x5F })
        else { return nil }
        return String(c)
    }

    static func address(_ a: SocketAddress?) -> String? {
        guard let a else { return nil }
        return a.ipAddress ?? a.pathname
    }
}
