import DevboxModel
import Foundation
import Testing
import Transport

@testable import DevboxTools

@Suite("Progress over a real transport")
struct ProgressTests {
    /// Polling (no feed) and woken by a change feed (polling would take an hour) alike.
    @Test(
        "wait_for_ready sends increasing progress at each change, before its response", .timeLimit(.minutes(1)),
        arguments: [false, true])
    func progressOverStdio(withFeed: Bool) async throws {
        let feed = withFeed ? FakeFeed(alive: true) : nil
        let backend = FakeBackend(
            script: [
            .init(state: .requested, operations: OperationKind.allCases.map { ($0, .pending, "") }),
            .init(state: .provisioning, operations: [(.provision, .running, "")] + OperationKind.allCases.dropFirst().map { ($0, .pending, "") }),
            .init(state: .provisioning, operations: [(.provision, .running, "")] + OperationKind.allCases.dropFirst().map { ($0, .pending, "") }),
            .init(
                state: .provisioning,
                operations: [(.provision, .succeeded, ""), (.injectCredentials, .skipped, ""), (.cloneRepositories, .skipped, ""),
                    (.runSetupCommands, .running, ""), (.publishAccess, .pending, "")]),
            FakeBackend.readyStep,
        ], pollInterval: withFeed ? .seconds(3600) : .milliseconds(5), feed: feed)
        let server = try DevboxMCPServer.make(environment: { _ in DevboxToolEnvironment(backend: backend) })
        let input = Pipe()
        let output = Pipe()
        let lines = [
            #"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
            #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wait_for_ready","arguments":{"devbox_id":"dbx_fake"},"_meta":{"progressToken":"p1"}}}"#,
        ]
        input.fileHandleForWriting.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try input.fileHandleForWriting.close()
        await MCPStdioTransport.run(
            server: server, input: input.fileHandleForReading.fileDescriptor, output: output.fileHandleForWriting.fileDescriptor)
        try output.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let messages = try text.split(separator: "\n").map { try JSONValue(parsing: String($0)) }

        let progress = messages.filter { $0["method"] == "notifications/progress" }
        let values = progress.compactMap { $0["params"]?["progress"]?.doubleValue }
        #expect(values.count >= 4, "\(text)")
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 })
        #expect(progress.allSatisfy { $0["params"]?["progressToken"] == "p1" && $0["params"]?["total"] == 12 })
        #expect(progress.last?["params"]?["message"]?.stringValue?.contains("ready") == true)
        let responseIndex = try #require(messages.firstIndex { $0["id"] == 1 })
        #expect(messages[responseIndex]["result"]?["isError"] == false)
        #expect(messages.lastIndex { $0["method"] == "notifications/progress" }! < responseIndex)
        if let feed {
            // One wake-up per script step after the first read; released at the end.
            #expect(feed.used == FakeFeed.Counts(made: 1, waits: 4, cancelled: 1))
        }
    }

    @Test("run_command progress holds back only a UTF-8 sequence cut at the end")
    func utf8TailIsHeldBack() {
        let e = Array("é".utf8), euro = Array("€".utf8), emoji = Array("🙂".utf8)
        #expect(ProgressForwarder.incompleteTail(Array("ab".utf8)) == 0)
        #expect(ProgressForwarder.incompleteTail(Array("a".utf8) + e) == 0)
        #expect(ProgressForwarder.incompleteTail(Array("a".utf8) + e.prefix(1)) == 1)
        #expect(ProgressForwarder.incompleteTail(euro.prefix(2) + []) == 2)
        #expect(ProgressForwarder.incompleteTail(emoji.prefix(3) + []) == 3)
        #expect(ProgressForwarder.incompleteTail(emoji) == 0)
        #expect(ProgressForwarder.incompleteTail([]) == 0)
    }
}
