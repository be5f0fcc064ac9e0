import DevboxModel
import Foundation
import Transport

/// `read_file`: a file's contents from inside a ready devbox.
struct ReadFileTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var path: String
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", path }
    }

    static let maxReturnedBytes = 256 * 1024

    let definition = MCPTool(
        name: "read_file",
        title: "Read a file",
        description: """
            Read a file in a ready devbox, up to 256 KiB (run_command with head reads more). Returns {path, content, \
            encoding (utf-8, or base64 for binary), size, mode}.
            """,
        inputSchema: Schema.object(
            ["devbox_id": Schema.devboxIDInput, "path": FileSchemas.pathInput], required: ["devbox_id", "path"]),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? { FileSchemas.nextStep(error, tool: "read_file") }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        switch try await FileSchemas.naming(input.path, tool: "read_file", await call.backend.readPath(devboxId: input.devboxId, path: input.path)) {
        case .directory:
            throw ToolFailure("\(input.path) is a directory. Call list_files with this path to see its entries.")
        case .file(let bytes, let mode):
            guard bytes.count <= Self.maxReturnedBytes else {
                throw ToolFailure(
                    "\(input.path) has \(bytes.count) bytes, more than read_file returns (256 KiB). Use run_command with head, tail, sed -n or grep to read parts of it.")
            }
            let text = String(validating: bytes, as: UTF8.self)
            return .structured([
                "path": .string(input.path),
                "content": .string(text ?? Data(bytes).base64EncodedString()),
                "encoding": .string(text == nil ? "base64" : "utf-8"),
                "size": .int(bytes.count),
                "mode": .string(mode),
            ])
        }
    }
}

/// `write_file`: creates or replaces a file inside a ready devbox.
struct WriteFileTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var path: String
        var content: String
        var encoding: String?
        var mode: String?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", path, content, encoding, mode }

        func validate() throws(ToolFailure) {
            if let mode, !(3...4).contains(mode.count) || mode.contains(where: { !("0"..."7").contains($0) }) {
                throw ToolFailure("mode must be octal permission bits such as \"644\" or \"755\". Fix it and call write_file again.")
            }
            if encoding == "base64", Data(base64Encoded: content) == nil {
                throw ToolFailure("content is not valid base64. Fix it or pass encoding \"utf-8\" for text, and call write_file again.")
            }
        }
    }

    let definition = MCPTool(
        name: "write_file",
        title: "Write a file",
        description: """
            Create or atomically replace a whole file in a ready devbox (parents created). An existing file keeps its \
            mode unless `mode` is given; new ones get 0644. Returns {path, size, created}.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "path": FileSchemas.pathInput,
                "content": Schema.string("The whole new content."),
                "encoding": ["type": "string", "enum": ["utf-8", "base64"], "description": "base64 for binary content."],
                "mode": ["type": "string", "pattern": "^[0-7]{3,4}$", "description": "Octal permission bits, e.g. \"755\"."],
            ], required: ["devbox_id", "path", "content"]),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? { FileSchemas.nextStep(error, tool: "write_file") }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let bytes: [UInt8]
        if input.encoding == "base64" {
            bytes = [UInt8](Data(base64Encoded: input.content) ?? Data())
        } else {
            bytes = Array(input.content.utf8)
        }
        let r = try await call.backend.writeFile(devboxId: input.devboxId, path: input.path, bytes: bytes, mode: input.mode)
        return .structured(["path": .string(r.path), "size": .int(r.size), "created": .bool(r.created)])
    }
}

/// `list_files`: the entries of a directory inside a ready devbox.
struct ListFilesTool: DevboxTool {
    struct Input: ToolInput {
        var devboxId: String
        var path: String?
        enum CodingKeys: String, CodingKey { case devboxId = "devbox_id", path }
    }

    let definition = MCPTool(
        name: "list_files",
        title: "List a directory",
        description: """
            List a directory in a ready devbox, not recursive: {path, entries [{name, path, type, size, mode, \
            modified_at, link_target}], truncated}.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "path": Schema.string("Absolute directory path (default /workspace)."),
            ], required: ["devbox_id"]),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? { FileSchemas.nextStep(error, tool: "list_files") }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let path = input.path ?? "/workspace"
        switch try await FileSchemas.naming(path, tool: "list_files", await call.backend.readPath(devboxId: input.devboxId, path: path)) {
        case .file:
            throw ToolFailure("\(path) is a file, not a directory. Call read_file with this path to read it.")
        case .directory(let listing):
            return .structured(try ToolJSON.value(listing))
        }
    }
}

enum FileSchemas {
    static let pathInput = Schema.string("Absolute path, e.g. /workspace/README.md.")

    /// A missing path named in the message (the service's says only "no such file or
    /// directory in devbox …", as a REST client knows the path it asked for).
    static func naming<T>(_ path: String, tool: String, _ body: @autoclosure () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let e as DevboxAPIError where e.status == 404 && e.message.contains("no such file") {
            throw ToolFailure(
                "\(path) does not exist in the devbox. Check the path with list_files (e.g. on its parent directory) and call \(tool) again.")
        }
    }

    static func nextStep(_ error: DevboxAPIError, tool: String) -> String? {
        switch error.status {
        case 404 where error.message.contains("no such file"):
            return "Check the path with list_files (e.g. on its parent directory) and call \(tool) again."
        case 409 where error.message.contains("stopped"):
            return "Call start_devbox with this devbox_id, then \(tool) again."
        case 413:
            return "The file is too large for this tool; use run_command (head, split, compression) instead."
        default:
            return nil
        }
    }
}
