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
        title: "Read a file in a devbox",
        description: """
            Read a file inside a ready devbox. `path` is absolute (e.g. /workspace/app/main.py); '..' is refused and \
            symlinks are followed only while they stay inside the devbox. Returns the content as text (encoding \
            "utf-8") or, for binary files, as base64 (encoding "base64"), with size and mode. Files over 256 KiB are \
            refused: use run_command (head, sed -n, grep) for parts of them. For a directory use list_files. Reading \
            changes nothing.
            """,
        inputSchema: Schema.object(
            ["devbox_id": Schema.devboxIDInput, "path": FileSchemas.pathInput], required: ["devbox_id", "path"]),
        outputSchema: Schema.object(
            [
                "path": Schema.string("The absolute path read."),
                "content": Schema.string("The file's content, as text or base64 (see encoding)."),
                "encoding": ["type": "string", "enum": ["utf-8", "base64"], "description": "How content is encoded."],
                "size": Schema.integer("Size in bytes."),
                "mode": Schema.string("Permission bits in octal, e.g. 0644."),
            ], required: ["path", "content", "encoding", "size", "mode"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? { FileSchemas.nextStep(error, tool: "read_file") }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        switch try await call.backend.readPath(devboxId: input.devboxId, path: input.path) {
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
        title: "Write a file in a devbox",
        description: """
            Create or replace a file inside a ready devbox with the given content (the whole file; missing parent \
            directories are created). `path` is absolute; '..' is refused and a symlink at the path is refused (write \
            to its target). Pass text with encoding "utf-8" (default) or bytes as base64 with encoding "base64". An \
            existing file keeps its mode unless `mode` is given (octal, e.g. "755" for a script); new files get 0644. \
            The replacement is atomic: readers see the old or the new file. Returns the path, size and whether the file \
            was created.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "path": FileSchemas.pathInput,
                "content": Schema.string("The whole new content of the file."),
                "encoding": [
                    "type": "string", "enum": ["utf-8", "base64"], "default": "utf-8",
                    "description": "How content is encoded: text (utf-8) or base64 for binary files.",
                ],
                "mode": [
                    "type": "string", "pattern": "^[0-7]{3,4}$",
                    "description": "Permission bits in octal, e.g. \"644\" or \"755\" (default: kept, 0644 for a new file).",
                ],
            ], required: ["devbox_id", "path", "content"]),
        outputSchema: Schema.object(
            [
                "path": Schema.string("The absolute path written."),
                "size": Schema.integer("Bytes written."),
                "created": Schema.boolean("True when the file did not exist before."),
            ], required: ["path", "size", "created"], closed: false),
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
        title: "List a directory in a devbox",
        description: """
            List the entries of a directory inside a ready devbox (default /workspace, where repositories are cloned): \
            name, absolute path, type (file, directory, symlink, other), size, mode and modification time, sorted by \
            name. Not recursive: call it again on a subdirectory, or use run_command with find for a tree. Listing \
            changes nothing.
            """,
        inputSchema: Schema.object(
            [
                "devbox_id": Schema.devboxIDInput,
                "path": Schema.string("Absolute path of the directory (default /workspace).", minLength: 1, maxLength: 4096),
            ], required: ["devbox_id"]),
        outputSchema: Schema.object(
            [
                "path": Schema.string("The directory listed."),
                "entries": Schema.array(
                    Schema.object(
                        [
                            "name": Schema.string("Entry name."),
                            "path": Schema.string("Absolute path of the entry."),
                            "type": ["type": "string", "enum": ["file", "directory", "symlink", "other"], "description": "Entry type."],
                            "size": Schema.integer("Size in bytes."),
                            "mode": Schema.string("Permission bits in octal."),
                            "modified_at": Schema.timestamp("Last modification."),
                            "link_target": Schema.nullableString("Where a symlink points (as stored), else null."),
                        ], required: ["name", "path", "type", "size", "mode", "modified_at", "link_target"],
                        description: "A directory entry.", closed: false),
                    "The entries, sorted by name."),
                "truncated": Schema.boolean("True when the directory has more entries than were listed."),
            ], required: ["path", "entries", "truncated"], closed: false),
        annotations: .init(readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? { FileSchemas.nextStep(error, tool: "list_files") }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        let path = input.path ?? "/workspace"
        switch try await call.backend.readPath(devboxId: input.devboxId, path: path) {
        case .file:
            throw ToolFailure("\(path) is a file, not a directory. Call read_file with this path to read it.")
        case .directory(let listing):
            return .structured(try ToolJSON.value(listing))
        }
    }
}

enum FileSchemas {
    static let pathInput = Schema.string(
        "Absolute path inside the devbox, e.g. /workspace/README.md ('..' is refused).", minLength: 1, maxLength: 4096)

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
