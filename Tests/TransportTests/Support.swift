import Foundation
import Synchronization
import Testing

@testable import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// Records what the fake tools observed.
final class Probe: Sendable {
    let events = Mutex<[String]>([])
    func record(_ e: String) { events.withLock { $0.append(e) } }
    func has(_ e: String) -> Bool { events.withLock { $0.contains(e) } }

    /// Polls until `e` was recorded (or the timeout passes; long, since a full run can keep
    /// a polling task waiting seconds for a thread).
    func waitFor(_ e: String, timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if has(e) { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return has(e)
    }
}

struct TypedArgs: Decodable {
    struct Repo: Decodable { var url: String }
    var count: Int
    var name: String
    var repos: [Repo]?
}

/// Small fake tool provider, for tests only.
struct FakeTools: MCPToolProvider {
    let probe: Probe

    static let hints = MCPToolAnnotations(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false)

    func tools() -> [MCPTool] {
        [
            MCPTool(
                name: "echo", title: "Echo", description: "Echo text.",
                inputSchema: ["type": "object", "properties": ["text": ["type": "string"]], "required": ["text"]],
                annotations: Self.hints),
            MCPTool(
                name: "slow", description: "Sleeps `seconds`, reporting progress every 50 ms.",
                inputSchema: ["type": "object", "properties": ["seconds": ["type": "number"]]],
                annotations: Self.hints),
            MCPTool(
                name: "progress", description: "Reports progress n times, then returns.",
                inputSchema: ["type": "object", "properties": ["n": ["type": "integer"]]],
                outputSchema: ["type": "object", "properties": ["done": ["type": "integer"]]],
                annotations: Self.hints),
            MCPTool(
                name: "fail", description: "Tool execution error.",
                inputSchema: ["type": "object"], annotations: Self.hints),
            MCPTool(
                name: "typed", description: "Typed arguments.",
                inputSchema: [
                    "type": "object",
                    "properties": ["count": ["type": "integer"], "name": ["type": "string"], "repos": ["type": "array"]],
                    "required": ["count", "name"],
                ],
                annotations: Self.hints),
            MCPTool(
                name: "whoami", description: "Reads headers and auth.",
                inputSchema: ["type": "object"], annotations: Self.hints),
            MCPTool(
                name: "region", description: "x-mcp-header mirror.",
                inputSchema: [
                    "type": "object",
                    "properties": ["region": ["type": "string", "x-mcp-header": "Region"]],
                ],
                annotations: Self.hints),
            MCPTool(
                name: "boom", description: "Throws a plain Swift error.",
                inputSchema: ["type": "object"], annotations: Self.hints),
        ]
    }

    func call(_ name: String, arguments: JSONValue, context: MCPRequestContext) async throws -> MCPToolResult {
        switch name {
        case "echo":
            return .text(arguments["text"]?.stringValue ?? "")
        case "slow":
            let seconds = arguments["seconds"]?.doubleValue ?? 1
            probe.record("slow-start")
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            var step = 0.0
            do {
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    step += 1
                    await context.reportProgress(progress: step, total: nil, message: "tick")
                }
            } catch {
                probe.record("slow-cancelled")
                throw error
            }
            probe.record("slow-done")
            return .text("slept")
        case "progress":
            let n = arguments["n"]?.intValue ?? 3
            for i in 1...n {
                await context.reportProgress(progress: Double(i), total: Double(n), message: "step \(i)")
            }
            // Not increasing: must be dropped.
            await context.reportProgress(progress: 1, total: Double(n), message: "stale")
            return .structured(["done": .int(n)])
        case "fail":
            return .error("It failed; try again with other arguments.")
        case "typed":
            let a = try arguments.decodeArguments(TypedArgs.self)
            return .text("\(a.name)x\(a.count)")
        case "whoami":
            return .structured([
                "token": context.headers["x-claude-token"].map(JSONValue.string) ?? .null,
                "auth": (context.auth as? String).map(JSONValue.string) ?? .null,
                "version": .string(context.protocolVersion),
                "era": .string(context.era == .stateless ? "stateless" : "handshake"),
            ])
        case "region":
            return .text(arguments["region"]?.stringValue ?? "")
        case "boom":
            struct Boom: Error {}
            throw Boom()
        default:
            throw MCPError.invalidParams("Unknown tool: \(name)")
        }
    }
}

func makeServer(_ probe: Probe = Probe(), options: MCPServerOptions = MCPServerOptions()) throws -> MCPServer {
    try MCPServer(
        serverInfo: MCPImplementation(name: "test-server", version: "1.2.3", title: "Test Server"),
        instructions: "Use the tools.", tools: FakeTools(probe: probe), options: options)
}

let modernMeta: JSONValue = [
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": [:],
    "io.modelcontextprotocol/clientInfo": ["name": "t", "version": "0"],
]

/// Params with the 2026-07-28 envelope merged in.
func modern(_ params: JSONValue = [:], extraMeta: JSONValue = [:]) -> JSONValue {
    var p = params.objectValue ?? [:]
    var meta = modernMeta.objectValue!
    for (k, v) in p["_meta"]?.objectValue ?? [:] { meta[k] = v }
    for (k, v) in extraMeta.objectValue ?? [:] { meta[k] = v }
    p["_meta"] = .object(meta)
    return .object(p)
}

func request(_ id: JSONValue, _ method: String, _ params: JSONValue? = nil) -> JSONValue {
    var o: [String: JSONValue] = ["jsonrpc": "2.0", "id": id, "method": .string(method)]
    if let params { o["params"] = params }
    return .object(o)
}

func notification(_ method: String, _ params: JSONValue? = nil) -> JSONValue {
    var o: [String: JSONValue] = ["jsonrpc": "2.0", "method": .string(method)]
    if let params { o["params"] = params }
    return .object(o)
}

/// Runs the stdio transport over pipes.
final class StdioHarness: Sendable {
    let inRead: Int32, inWrite: Int32, outRead: Int32, outWrite: Int32
    let lines = Mutex<[String]>([])
    let raw = Mutex<[UInt8]>([])
    let closedInput = Mutex(false)
    let runTask: Task<Void, Never>
    let readerDone = Mutex(false)

    init(server: MCPServer, options: MCPStdioTransport.Options = MCPStdioTransport.Options()) {
        var a: [Int32] = [0, 0]
        var b: [Int32] = [0, 0]
        _ = pipe(&a)
        _ = pipe(&b)
        inRead = a[0]
        inWrite = a[1]
        outRead = b[0]
        outWrite = b[1]
        let (ir, ow) = (a[0], b[1])
        runTask = Task { await MCPStdioTransport.run(server: server, input: ir, output: ow, options: options) }
        let outRead = b[0]
        let thread = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 65536)
            var pending: [UInt8] = []
            while true {
                let n = buf.withUnsafeMutableBytes { read(outRead, $0.baseAddress!, 65536) }
                if n <= 0 { break }
                raw.withLock { $0.append(contentsOf: buf[0..<n]) }
                pending.append(contentsOf: buf[0..<n])
                while let i = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<i], as: UTF8.self)
                    pending.removeSubrange(...i)
                    lines.withLock { $0.append(line) }
                }
            }
            readerDone.withLock { $0 = true }
        }
        thread.start()
    }

    func send(_ v: JSONValue) { sendRaw(v.jsonString + "\n") }

    func sendRaw(_ s: String) {
        let bytes = Array(s.utf8)
        bytes.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = write(inWrite, p.baseAddress! + off, p.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }

    func closeInput() {
        closedInput.withLock { c in
            if !c { close(inWrite); c = true }
        }
    }

    /// Closes stdin and waits for `run` to return; then closes stdout so the reader ends.
    func finish() async {
        closeInput()
        await runTask.value
        close(outWrite)
        close(inRead)
        let deadline = ContinuousClock.now + .seconds(5)
        while !readerDone.withLock({ $0 }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        close(outRead)
    }

    var messages: [JSONValue] { lines.withLock { $0 }.compactMap { try? JSONValue(parsing: $0) } }

    /// Waits for a response with this id (and looks once more after the deadline: a poller
    /// that resumed late may find it there).
    func response(_ id: JSONValue, timeout: Duration = .seconds(30)) async -> JSONValue? {
        let deadline = ContinuousClock.now + timeout
        func found() -> JSONValue? {
            messages.first(where: { $0["id"] == id && ($0["result"] != nil || $0["error"] != nil) })
        }
        while ContinuousClock.now < deadline {
            if let m = found() { return m }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return found()
    }
}
