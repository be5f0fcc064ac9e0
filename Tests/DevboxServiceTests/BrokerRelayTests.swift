import Foundation
import Testing

@testable import DevboxServer

/// Issue 19's AI broker, the parts of its plain-HTTP relay that need no sockets: the upstream
/// URL it accepts, and the usage meter fed the pieces a stream arrives in (a line cut anywhere).
@Suite("Broker relay")
struct BrokerRelayTests {
    @Test func targetsAreHTTPOnlyWithHostPortAndPath() throws {
        let t = try #require(BrokerRelay.Target("http://127.0.0.1:8080/v1/messages?beta=true"))
        #expect(t.host == "127.0.0.1" && t.port == 8080 && t.authority == "127.0.0.1:8080" && t.path == "/v1/messages?beta=true")
        let bare = try #require(BrokerRelay.Target("http://gateway.internal"))
        #expect(bare.port == 80 && bare.path == "/" && bare.endpoint == "gateway.internal:80")
        let v6 = try #require(BrokerRelay.Target("http://[::1]:9000/x"))
        #expect(v6.host == "::1" && v6.port == 9000 && v6.path == "/x")
        // TLS stays with async-http-client; nonsense is refused rather than guessed at.
        for bad in ["https://api.anthropic.com/v1", "http://", "http://user@host/", "http://host:0/", "http://host:99999/", "http://host:x/"] {
            #expect(BrokerRelay.Target(bad) == nil, "\(bad)")
        }
    }

    static let stream = Array((
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
            + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"" + String(repeating: "x", count: 5000)
            + " \\\"usage\\\" in text\"}}\n\n"
            + ": a comment line with \"usage\":{\"input_tokens\":999}\n"
            + "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":17}}\n\n"
    ).utf8)

    @Test(arguments: [1, 7, 64, 4096, 100_000])
    func sseUsageWhateverThePieces(piece: Int) {
        var meter = UsageMeter(contentType: "text/event-stream; charset=utf-8")
        var at = 0
        while at < Self.stream.count {
            let end = min(at + piece, Self.stream.count)
            Self.stream[at..<end].withUnsafeBytes { meter.feed($0) }
            at = end
        }
        let u = meter.finish()
        // The largest value of each count; comment lines and text that mentions usage do not count.
        #expect(u.input == 25 && u.output == 17)
    }

    @Test func sseLastLineWithoutNewlineAndJSONAnswers() {
        var sse = UsageMeter(contentType: "text/event-stream")
        sse.feed(Array("data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}".utf8))
        let s = sse.finish()
        #expect(s.input == 3 && s.output == 4)
        var json = UsageMeter(contentType: "application/json")
        let body = Array("{\"id\":\"msg\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5}}".utf8)
        json.feed(Array(body[..<9]))
        json.feed(Array(body[9...]))
        let j = json.finish()
        #expect(j.input == 10 && j.output == 5)
        var other = UsageMeter(contentType: "text/plain")
        other.feed(body)
        let o = other.finish()
        #expect(o.input == 0 && o.output == 0)
    }
}
