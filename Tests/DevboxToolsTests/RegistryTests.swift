import Foundation
import Testing
import Transport

@testable import DevboxTools

@Suite("Tool registry")
struct RegistryTests {
    static let tools = DevboxToolRegistry.all.map(\.definition)

    @Test("exactly the issue's tools, each name once")
    func names() {
        let names = Self.tools.map(\.name)
        #expect(Set(names).count == names.count, "duplicate tool names: \(names)")
        #expect(
            Set(names) == [
                "create_devbox", "get_devbox", "list_devboxes", "wait_for_ready", "delete_devbox", "list_operations",
                "create_session", "list_sessions", "revoke_session", "list_repositories", "set_ssh_key", "list_github_repos",
                "run_command", "read_file", "write_file", "list_files", "stop_devbox", "start_devbox",
                "set_network", "port_url", "get_devbox_stats", "snapshot_devbox", "fork_devbox",
            ])
    }

    @Test("the MCP server accepts the registry")
    func serverAccepts() throws {
        let server = try DevboxMCPServer.make(environment: { _ in DevboxToolEnvironment(backend: FakeBackend()) })
        #expect(server.tools.count == Self.tools.count)
        #expect(server.instructions?.contains("wait_for_ready") == true)
    }

    @Test("every tool has a title, a substantial description and hints that read back as set", arguments: tools)
    func metadata(tool: MCPTool) {
        #expect(tool.title?.isEmpty == false)
        // Long enough to say when to use the tool; the budget test below keeps them from growing back.
        #expect(tool.description.count >= 60, "\(tool.name): description too short for a model")
        // Hints at the spec's defaults are not serialized; a client filling in the defaults
        // must read what the tool declares.
        let a = tool.annotations
        let r = MCPToolAnnotations.resolved(a.json)
        #expect(r.readOnly == a.readOnlyHint && r.openWorld == a.openWorldHint, "\(tool.name)")
        if !a.readOnlyHint { #expect(r.destructive == a.destructiveHint && r.idempotent == a.idempotentHint, "\(tool.name)") }
        #expect(!(tool.annotations.readOnlyHint && tool.annotations.destructiveHint), "\(tool.name): read-only yet destructive")
    }

    @Test("inputs are closed objects whose every property is described", arguments: tools)
    func inputSchema(tool: MCPTool) {
        #expect(tool.inputSchema["type"] == "object")
        #expect(tool.inputSchema["additionalProperties"] == false)
        for problem in Self.schemaProblems(tool.inputSchema, path: "inputSchema", requireClosed: true) {
            Issue.record("\(tool.name): \(problem)")
        }
    }

    /// Outputs are typed but described only where a property's name does not say enough: every
    /// description there is paid for in tokens by every agent (see `ListBudgetTests`). Tools whose
    /// result is an acknowledgment or a short listing have none; their description names the fields.
    static let withOutputSchema: Set = [
        "create_devbox", "wait_for_ready", "get_devbox", "list_devboxes", "run_command",
    ]

    @Test("outputs are object schemas whose every property has a type", arguments: tools)
    func outputSchema(tool: MCPTool) throws {
        guard Self.withOutputSchema.contains(tool.name) else {
            #expect(tool.outputSchema == nil, "\(tool.name): add it to withOutputSchema")
            return
        }
        let schema = try #require(tool.outputSchema, "\(tool.name) has no outputSchema")
        #expect(schema["type"] == "object")
        for problem in Self.schemaProblems(schema, path: "outputSchema", requireClosed: false) {
            Issue.record("\(tool.name): \(problem)")
        }
    }

    /// Inputs: undescribed properties and objects that accept unknown keys. Outputs: untyped properties.
    static func schemaProblems(_ schema: JSONValue, path: String, requireClosed: Bool) -> [String] {
        var out: [String] = []
        let types = schema["type"].map { $0.stringValue.map { [$0] } ?? ($0.arrayValue ?? []).compactMap(\.stringValue) } ?? []
        if let props = schema["properties"]?.objectValue {
            if requireClosed && schema["additionalProperties"] == nil {
                out.append("\(path) does not set additionalProperties")
            }
            for (k, sub) in props {
                // devbox_id is the one input whose name is its whole description (see Schema.devboxIDInput).
                if requireClosed && k != "devbox_id" && sub["description"]?.stringValue?.isEmpty != false {
                    out.append("\(path).\(k) has no description")
                }
                if sub["type"] == nil { out.append("\(path).\(k) has no type") }
                out += schemaProblems(sub, path: "\(path).\(k)", requireClosed: requireClosed)
            }
        } else if requireClosed && types.contains("object") && schema["additionalProperties"] == nil {
            out.append("\(path) is an object schema without properties or additionalProperties")
        }
        if let items = schema["items"] { out += schemaProblems(items, path: "\(path)[]", requireClosed: requireClosed) }
        return out
    }
}

/// What `tools/list` costs an agent: the whole serialized list is in its context on every
/// session. The budget is 16 KiB (≈ 4k tokens) for the final tool set; today's list stays
/// well under it so the tools still to come (network, broker, snapshots) fit.
@Suite("tools/list budget")
struct ListBudgetTests {
    static let budgetBytes = 16 * 1024

    /// The `tools/list` response line exactly as a stdio client receives it.
    static func listBytes() async throws -> Int {
        let server = try DevboxMCPServer.make(environment: { _ in DevboxToolEnvironment(backend: FakeBackend()) })
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        // The response goes to a file, so its size never depends on a pipe's buffer.
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("tools-list-\(UUID().uuidString).jsonl")
        let outFD = open(out.path, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        defer {
            close(outFD)
            try? FileManager.default.removeItem(at: out)
        }
        let input = """
            {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}
            {"jsonrpc":"2.0","id":2,"method":"tools/list"}

            """
        _ = input.utf8CString.withUnsafeBufferPointer { write(fds[1], $0.baseAddress!, input.utf8.count) }
        close(fds[1])
        await MCPStdioTransport.run(server: server, input: fds[0], output: outFD)
        close(fds[0])
        let lines = try String(contentsOf: out, encoding: .utf8).split(separator: "\n")
        let list = try #require(lines.first { $0.contains("\"id\":2") })
        let r = try JSONValue(parsing: String(list))
        #expect(r["result"]?["tools"]?.arrayValue?.count == RegistryTests.tools.count)
        return list.utf8.count
    }

    @Test("the serialized tools/list fits the token budget")
    func fits() async throws {
        let bytes = try await Self.listBytes()
        #expect(bytes <= Self.budgetBytes, "tools/list is \(bytes) bytes, over the budget of \(Self.budgetBytes)")
    }

    @Test("no tool alone takes more than a quarter of the budget", arguments: RegistryTests.tools)
    func perTool(tool: MCPTool) {
        let bytes = tool.json.serialized().count
        #expect(bytes <= Self.budgetBytes / 4, "\(tool.name) is \(bytes) bytes")
    }
}

/// `tool-schemas/<tool>.json` must match the code; `UPDATE_TOOL_SCHEMAS=1` rewrites them.
@Suite("Tool schema snapshots")
struct SnapshotTests {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tool-schemas")

    static func snapshot(_ t: MCPTool) -> JSONValue {
        [
            "name": .string(t.name), "title": t.title.map { .string($0) } ?? .null, "description": .string(t.description),
            "inputSchema": t.inputSchema, "outputSchema": t.outputSchema ?? .null, "annotations": t.annotations.json,
        ]
    }

    @Test("every tool's snapshot matches, and no snapshot is stale")
    func snapshots() throws {
        let update = ProcessInfo.processInfo.environment["UPDATE_TOOL_SCHEMAS"] == "1"
        let fm = FileManager.default
        if update { try fm.createDirectory(at: Self.directory, withIntermediateDirectories: true) }
        var expected = Set<String>()
        for tool in RegistryTests.tools {
            let file = Self.directory.appendingPathComponent("\(tool.name).json")
            expected.insert(file.lastPathComponent)
            let current = Self.snapshot(tool)
            if update {
                try Data((prettyJSON(current) + "\n").utf8).write(to: file, options: .atomic)
                continue
            }
            guard let data = fm.contents(atPath: file.path) else {
                Issue.record("missing snapshot tool-schemas/\(tool.name).json; run UPDATE_TOOL_SCHEMAS=1 swift test --filter SnapshotTests")
                continue
            }
            let stored = try JSONValue(parsing: Array(data))
            if stored != current {
                Issue.record(
                    "tool-schemas/\(tool.name).json differs from the code at \(Self.firstDifference(stored, current, path: "$") ?? "?"); if the change is intended, run UPDATE_TOOL_SCHEMAS=1 swift test --filter SnapshotTests and commit the file")
            }
        }
        let present = Set((try? fm.contentsOfDirectory(atPath: Self.directory.path)) ?? []).filter { $0.hasSuffix(".json") }
        for stale in present.subtracting(expected).sorted() {
            if update {
                try fm.removeItem(at: Self.directory.appendingPathComponent(stale))
            } else {
                Issue.record("tool-schemas/\(stale) belongs to no tool; delete it (UPDATE_TOOL_SCHEMAS=1 does)")
            }
        }
    }

    static func firstDifference(_ a: JSONValue, _ b: JSONValue, path: String) -> String? {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            for k in Set(x.keys).union(y.keys).sorted() {
                guard let xv = x[k], let yv = y[k] else { return "\(path).\(k)" }
                if let d = firstDifference(xv, yv, path: "\(path).\(k)") { return d }
            }
            return nil
        case (.array(let x), .array(let y)):
            if x.count != y.count { return "\(path) (length)" }
            for (i, (xv, yv)) in zip(x, y).enumerated() {
                if let d = firstDifference(xv, yv, path: "\(path)[\(i)]") { return d }
            }
            return nil
        default:
            return a == b ? nil : path
        }
    }
}
