import Foundation
import Testing

@testable import DevboxServer

@Suite("Request ids: made without a getrandom per request, unique; the devbox id found in the path")
struct RequestIdTests {
    @Test("32 lowercase hex digits, all distinct over 100,000, shared prefix, no visible counter")
    func madeIds() {
        var seen = Set<String>()
        var last = ""
        for _ in 0..<100_000 {
            let id = RequestIdMiddleware.make()
            #expect(id.utf8.count == 32 && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            seen.insert(id)
            last = id
        }
        #expect(seen.count == 100_000)
        // The process's random prefix, then a mixed counter: consecutive ids differ in many digits.
        let a = RequestIdMiddleware.make(), b = RequestIdMiddleware.make()
        #expect(a.prefix(16) == last.prefix(16) && b.prefix(16) == a.prefix(16))
        let differing = zip(a.suffix(16), b.suffix(16)).filter { $0 != $1 }.count
        #expect(differing >= 6)
    }

    @Test("devbox id from /api/v1/devboxes/{id}/… and /devboxes/{id}/…, nothing else")
    func devboxIds() {
        let cases: [(String, String?)] = [
            ("/api/v1/devboxes/dbx_abc", "dbx_abc"),
            ("/api/v1/devboxes/dbx_abc/files/x/y", "dbx_abc"),
            ("/api/v2/devboxes/dbx_A1_b/", "dbx_A1_b"),
            ("//api//v1/devboxes//dbx_z", "dbx_z"),
            ("/devboxes/dbx_q/terminal", "dbx_q"),
            ("/devboxes/dbx_q", "dbx_q"),
            ("/api/v1/devboxes", nil),
            ("/api/v1/devboxes/", nil),
            ("/api/v1/devboxes/abc", nil),
            ("/api/v1/devboxes/dbx_a-b", nil),
            ("/api/v1/devboxes/dbx_é", nil),
            ("/api/v1/devboxes/dbx_" + String(repeating: "a", count: 61), nil),
            ("/api/v1/other/dbx_a", nil),
            ("/mcp", nil),
            ("/", nil),
            ("", nil),
        ]
        for (path, want) in cases { #expect(RequestIdMiddleware.devboxId(path) == want, "\(path)") }
    }
}
