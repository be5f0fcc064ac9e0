import Foundation
import Testing

@testable import Transport

@Suite(.timeLimit(.minutes(1))) struct StdioTransportTests {
    let initParams: JSONValue = ["protocolVersion": "2025-11-25", "capabilities": [:], "clientInfo": ["name": "t", "version": "0"]]

    @Test func handshakeFlowAndOnlyJSONLinesOnStdout() async throws {
        let h = StdioHarness(server: try makeServer())
        h.send(request(1, "initialize", initParams))
        h.send(notification("notifications/initialized"))
        h.send(request("a", "tools/list"))
        h.send(request(3, "tools/call", ["name": "echo", "arguments": ["text": "hello\nworld"]]))
        h.send(request(4, "ping"))
        #expect(await h.response(4) != nil)
        await h.finish()
        let raw = h.raw.withLock { $0 }
        let text = String(decoding: raw, as: UTF8.self)
        #expect(text.hasSuffix("\n"))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 4)
        for l in lines {
            let v = try JSONValue(parsing: String(l))
            #expect(v["jsonrpc"] == "2.0")
            #expect(l.utf8.count == v.serialized().count)  // compact: no whitespace outside strings
        }
        let m = h.messages
        #expect(m.first { $0["id"] == 1 }?["result"]?["protocolVersion"] == "2025-11-25")
        #expect(m.first { $0["id"] == "a" }?["result"]?["tools"] != nil)
        #expect(m.first { $0["id"] == 3 }?["result"]?["content"]?[0]?["text"] == "hello\nworld")
    }

    @Test func discoverProbeThenStatelessCall() async throws {
        let h = StdioHarness(server: try makeServer())
        h.send(request(0, "server/discover", modern()))
        h.send(request(1, "tools/call", modern(["name": "echo", "arguments": ["text": "x"]])))
        let r = try #require(await h.response(1))
        #expect(r["result"]?["resultType"] == "complete")
        #expect(h.messages.first { $0["id"] == 0 }?["result"]?["supportedVersions"]?[0] == "2026-07-28")
        await h.finish()
    }

    @Test func parseErrorAndInvalidRequestGetNullID() async throws {
        let h = StdioHarness(server: try makeServer())
        h.sendRaw("{this is not json\n")
        h.sendRaw("[1,2]\n")
        h.sendRaw("\n   \n")  // blank lines are ignored
        h.send(request(9, "ping"))
        _ = await h.response(9)
        await h.finish()
        let m = h.messages
        #expect(m.count == 3)
        #expect(m[0]["id"] == .null && m[0]["error"]?["code"] == -32700)
        #expect(m[1]["id"] == .null && m[1]["error"]?["code"] == -32600)
    }

    @Test func stringAndNumberIDsAreDistinctAndPreserved() async throws {
        let h = StdioHarness(server: try makeServer())
        h.send(request(1, "initialize", initParams))
        h.send(request("1", "ping"))
        h.send(request(-5, "ping"))
        _ = await h.response("1")
        _ = await h.response(-5)
        await h.finish()
        let raws = h.lines.withLock { $0 }
        #expect(raws.contains(#"{"jsonrpc":"2.0","id":"1","result":{}}"#))
        #expect(raws.contains(#"{"jsonrpc":"2.0","id":-5,"result":{}}"#))
    }

    @Test func slowCallDoesNotBlockOthers() async throws {
        let probe = Probe()
        let h = StdioHarness(server: try makeServer(probe))
        h.send(request(1, "initialize", initParams))
        // The slow call lasts 30 s; the ping must come back well before it (loose bounds for a
        // loaded CI machine, where a polling task may wait seconds for a thread).
        h.send(request(2, "tools/call", ["name": "slow", "arguments": ["seconds": 30]]))
        #expect(await probe.waitFor("slow-start"))
        let t0 = ContinuousClock.now
        h.send(request(3, "ping"))
        #expect(await h.response(3, timeout: .seconds(25)) != nil)
        #expect(ContinuousClock.now - t0 < .seconds(20))
        #expect(h.messages.first { $0["id"] == 2 } == nil)  // still running
        h.send(notification("notifications/cancelled", ["requestId": 2]))
        await h.finish()
    }

    @Test func cancelledNotificationCancelsTheTaskAndSuppressesResponse() async throws {
        let probe = Probe()
        let h = StdioHarness(server: try makeServer(probe))
        h.send(request(1, "initialize", initParams))
        h.send(request("job", "tools/call", ["name": "slow", "arguments": ["seconds": 10], "_meta": ["progressToken": "p"]]))
        #expect(await probe.waitFor("slow-start"))
        // Unknown ids and malformed cancels are ignored.
        h.send(notification("notifications/cancelled", ["requestId": "other"]))
        h.send(notification("notifications/cancelled", ["reason": "no id"]))
        h.send(notification("notifications/cancelled", ["requestId": "job", "reason": "user"]))
        #expect(await probe.waitFor("slow-cancelled"))
        h.send(request(5, "ping"))
        #expect(await h.response(5) != nil)
        await h.finish()
        #expect(!probe.has("slow-done"))
        #expect(h.messages.first { $0["id"] == "job" } == nil)
    }

    @Test func statelessCancellationWorksToo() async throws {
        let probe = Probe()
        let h = StdioHarness(server: try makeServer(probe))
        h.send(request(7, "tools/call", modern(["name": "slow", "arguments": ["seconds": 10]])))
        #expect(await probe.waitFor("slow-start"))
        h.send(notification("notifications/cancelled", ["requestId": 7]))
        #expect(await probe.waitFor("slow-cancelled"))
        await h.finish()
        #expect(h.messages.isEmpty)
    }

    @Test func eofWhileSlowCallInFlightStillWritesItsResponse() async throws {
        let probe = Probe()
        let h = StdioHarness(server: try makeServer(probe))
        h.send(request(1, "initialize", initParams))
        h.send(request(2, "tools/call", ["name": "slow", "arguments": ["seconds": 3]]))
        #expect(await probe.waitFor("slow-start"))
        // Still in flight when stdin ends (what the test is about; not a time, which a late
        // poller would shorten).
        #expect(!probe.has("slow-done"))
        await h.finish()  // closes stdin right away, returns once run() returned
        let r = h.messages.first { $0["id"] == 2 }
        #expect(r?["result"]?["content"]?[0]?["text"] == "slept")
        #expect(probe.has("slow-done"))
    }

    @Test func eofGracePeriodInterruptsButStillAnswers() async throws {
        let probe = Probe()
        var o = MCPStdioTransport.Options()
        o.eofGracePeriod = .milliseconds(100)
        let h = StdioHarness(server: try makeServer(probe), options: o)
        h.send(request(2, "tools/call", modern(["name": "slow", "arguments": ["seconds": 30]])))
        #expect(await probe.waitFor("slow-start"))
        await h.finish()
        #expect(probe.has("slow-cancelled"))
        #expect(h.messages.first { $0["id"] == 2 }?["error"] != nil)
    }

    @Test func lastLineWithoutNewlineIsServed() async throws {
        let h = StdioHarness(server: try makeServer())
        h.sendRaw(request(1, "server/discover", modern()).jsonString)
        await h.finish()
        #expect(h.messages.first?["id"] == 1)
    }

    @Test func progressGoesToStdoutBeforeTheResponse() async throws {
        let h = StdioHarness(server: try makeServer())
        h.send(request(1, "initialize", initParams))
        h.send(request(2, "tools/call", ["name": "progress", "arguments": ["n": 3], "_meta": ["progressToken": 99]]))
        _ = await h.response(2)
        await h.finish()
        let m = h.messages.filter { $0["id"] != 1 }
        #expect(m.count == 4)
        #expect(m[0..<3].allSatisfy { $0["method"] == "notifications/progress" && $0["params"]?["progressToken"] == 99 })
        #expect(m[3]["id"] == 2)
    }

    @Test func listenIsCompletedAtEOF() async throws {
        let h = StdioHarness(server: try makeServer())
        h.send(request("L", "subscriptions/listen", modern(["notifications": ["toolsListChanged": true]])))
        h.send(request(2, "tools/list", modern()))
        _ = await h.response(2)
        await h.finish()
        let m = h.messages
        #expect(m.contains { $0["method"] == "notifications/subscriptions/acknowledged" })
        #expect(m.last?["id"] == "L")
        #expect(m.last?["result"]?["resultType"] == "complete")
    }

    @Test func duplicateInFlightIDIsRejected() async throws {
        let probe = Probe()
        let h = StdioHarness(server: try makeServer(probe))
        h.send(request(1, "tools/call", modern(["name": "slow", "arguments": ["seconds": 3]])))
        #expect(await probe.waitFor("slow-start"))
        // Sent while the first is still in flight (3 s, however late this task resumed).
        #expect(!probe.has("slow-done"))
        h.send(request(1, "tools/list", modern()))
        await h.finish()
        let m = h.messages.filter { $0["id"] == 1 }
        #expect(m.count == 2)
        #expect(m[0]["error"]?["code"] == -32600)
        #expect(m[1]["result"] != nil)
    }
}
