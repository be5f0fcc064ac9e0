import DevboxModel
import Foundation

/// Exec, files and stop/start on `client.devboxes`.
extension DevboxesAPI {
    /// `POST /api/v1/devboxes/:id/exec`: runs a command in a ready devbox and returns how it
    /// ended with its output (the tail of each stream; `truncated` says when output was dropped).
    /// The HTTP request waits as long as the command may run.
    public func exec(_ id: String, _ request: ExecRequest) async throws -> ExecResult {
        let wait = TimeInterval((request.timeoutSeconds ?? 600) + 30)
        return try await http.json(
            ExecResult.self, "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/exec", body: try http.encode(request),
            secrets: Array((request.env ?? [:]).values), timeout: wait)
    }

    /// Shorthand: a shell command line (`/bin/sh -c`).
    public func exec(_ id: String, _ command: String, timeoutSeconds: Int? = nil) async throws -> ExecResult {
        try await exec(id, ExecRequest(command: .shell(command), timeoutSeconds: timeoutSeconds))
    }

    /// `POST /api/v1/devboxes/:id/stop` → the devbox, `stopped`.
    public func stop(_ id: String) async throws -> Devbox {
        try await http.json(Devbox.self, "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/stop")
    }

    /// `POST /api/v1/devboxes/:id/start` → the devbox, `ready` (returns once it runs again).
    public func start(_ id: String) async throws -> Devbox {
        try await http.json(Devbox.self, "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/start", timeout: 300)
    }

    /// `GET /api/v1/devboxes/:id/files?path=`: a file's bytes or a directory listing.
    public func readPath(_ id: String, path: String) async throws -> FileContent {
        let answer = try await http.send(
            "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/files?path=\(try HTTPCore.query(path))")
        if answer.headers["x-devbox-file-type"] == "directory" {
            return .directory(try http.decode(FileListing.self, answer))
        }
        return .file(bytes: [UInt8](answer.data), mode: answer.headers["x-devbox-file-mode"] ?? "")
    }

    /// The bytes of a file (throws `.invalidArgument` for a directory).
    public func readFile(_ id: String, path: String) async throws -> [UInt8] {
        guard case .file(let bytes, _) = try await readPath(id, path: path) else {
            throw DevboxClientError.invalidArgument("\(path) is a directory; use listFiles")
        }
        return bytes
    }

    /// A directory's entries (throws `.invalidArgument` for a file).
    public func listFiles(_ id: String, path: String = "/workspace") async throws -> FileListing {
        guard case .directory(let listing) = try await readPath(id, path: path) else {
            throw DevboxClientError.invalidArgument("\(path) is a file; use readFile")
        }
        return listing
    }

    /// `PUT /api/v1/devboxes/:id/files?path=[&mode=]`: creates or replaces a file (parents created).
    /// `mode`: octal permission bits such as "755" (default: kept, 0644 for a new file).
    public func writeFile(_ id: String, path: String, contents: [UInt8], mode: String? = nil) async throws -> FileWriteResult {
        var target = "/api/v1/devboxes/\(try HTTPCore.segment(id))/files?path=\(try HTTPCore.query(path))"
        if let mode { target += "&mode=\(try HTTPCore.query(mode))" }
        let answer = try await http.send(
            "PUT", target, body: Data(contents), contentType: "application/octet-stream", timeout: 300)
        return try http.decode(FileWriteResult.self, answer)
    }

    /// `DELETE /api/v1/devboxes/:id/files?path=[&recursive=true]` → 204.
    public func deleteFile(_ id: String, path: String, recursive: Bool = false) async throws {
        var target = "/api/v1/devboxes/\(try HTTPCore.segment(id))/files?path=\(try HTTPCore.query(path))"
        if recursive { target += "&recursive=true" }
        _ = try await http.send("DELETE", target)
    }
}

extension HTTPCore {
    /// One query value, percent-encoded.
    static func query(_ s: String) throws -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&+=?#%;")
        guard let encoded = s.addingPercentEncoding(withAllowedCharacters: allowed) else {
            throw DevboxClientError.invalidArgument("cannot encode \(s) for a URL")
        }
        return encoded
    }
}
