import Foundation

/// What to run: a string runs through `/bin/sh -c`, an array is the argv itself.
public enum ExecCommand: Codable, Sendable, Equatable {
    case shell(String)
    case argv([String])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .shell(s)
        } else if let a = try? c.decode([String].self) {
            self = .argv(a)
        } else {
            throw DecodingError.typeMismatch(
                String.self,
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "a string or an array of strings"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .shell(let s): try c.encode(s)
        case .argv(let a): try c.encode(a)
        }
    }

    /// The argv the box runs.
    public var argv: [String] {
        switch self {
        case .shell(let s): return ["/bin/sh", "-c", s]
        case .argv(let a): return a
        }
    }
}

/// `POST /api/v1/devboxes/:id/exec`.
public struct ExecRequest: Codable, Sendable, Equatable {
    public var command: ExecCommand
    /// Extra environment on top of the devbox's own (`/etc/devbox/env`).
    public var env: [String: String]?
    /// Working directory inside the box (default /workspace).
    public var cwd: String?
    public var timeoutSeconds: Int?
    /// Bytes fed to the command's stdin (UTF-8), then EOF. Absent: stdin is /dev/null.
    public var stdin: String?

    public init(
        command: ExecCommand, env: [String: String]? = nil, cwd: String? = nil, timeoutSeconds: Int? = nil,
        stdin: String? = nil
    ) {
        self.command = command
        self.env = env
        self.cwd = cwd
        self.timeoutSeconds = timeoutSeconds
        self.stdin = stdin
    }

    enum CodingKeys: String, CodingKey {
        case command, env, cwd, stdin
        case timeoutSeconds = "timeout_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        command = try c.decode(ExecCommand.self, forKey: .command)
        // Absent means the default; null is refused (422 naming the field), as the schema says.
        env = try c.decodeNonNullIfPresent([String: String].self, forKey: .env)
        cwd = try c.decodeNonNullIfPresent(String.self, forKey: .cwd)
        if c.contains(.timeoutSeconds), try c.decodeNil(forKey: .timeoutSeconds) {
            throw DecodingError.valueNotFound(
                Int.self, DecodingError.Context(codingPath: c.codingPath + [CodingKeys.timeoutSeconds], debugDescription: "null is not allowed"))
        }
        timeoutSeconds = try c.decodeStrictIntIfPresent(forKey: .timeoutSeconds)
        stdin = try c.decodeNonNullIfPresent(String.self, forKey: .stdin)
    }
}

/// How a command ended. `exit_code` is null when a signal killed it (`signal` then names
/// it by number); `timed_out` says the timeout killed its whole process group.
public struct ExecResult: Codable, Sendable, Equatable {
    public var exitCode: Int?
    public var signal: Int?
    /// stdout and stderr as UTF-8 (invalid bytes replaced); each keeps its last bytes up
    /// to the server's limit, `truncated` says when earlier output was dropped.
    public var stdout: String
    public var stderr: String
    public var truncated: Bool
    public var timedOut: Bool
    public var durationMs: Int

    public init(
        exitCode: Int?, signal: Int?, stdout: String, stderr: String, truncated: Bool, timedOut: Bool, durationMs: Int
    ) {
        self.exitCode = exitCode
        self.signal = signal
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated
        self.timedOut = timedOut
        self.durationMs = durationMs
    }

    enum CodingKeys: String, CodingKey {
        case signal, stdout, stderr, truncated
        case exitCode = "exit_code", timedOut = "timed_out", durationMs = "duration_ms"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(exitCode, forKey: .exitCode)
        try c.encode(signal, forKey: .signal)
        try c.encode(stdout, forKey: .stdout)
        try c.encode(stderr, forKey: .stderr)
        try c.encode(truncated, forKey: .truncated)
        try c.encode(timedOut, forKey: .timedOut)
        try c.encode(durationMs, forKey: .durationMs)
    }
}

/// One piece of output of a streamed exec.
public struct ExecChunk: Sendable, Equatable {
    public enum Stream: String, Sendable { case stdout, stderr }
    public var stream: Stream
    public var bytes: [UInt8]
    public init(stream: Stream, bytes: [UInt8]) {
        self.stream = stream
        self.bytes = bytes
    }
}

/// An entry of a directory listing (`GET …/files?path=<dir>`).
public struct FileEntry: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    /// file, directory, symlink or other.
    public var type: String
    public var size: Int64
    /// Permission bits in octal, e.g. "0644".
    public var mode: String
    public var modifiedAt: Date
    public var linkTarget: String?

    public init(name: String, path: String, type: String, size: Int64, mode: String, modifiedAt: Date, linkTarget: String?) {
        self.name = name
        self.path = path
        self.type = type
        self.size = size
        self.mode = mode
        self.modifiedAt = modifiedAt
        self.linkTarget = linkTarget
    }

    enum CodingKeys: String, CodingKey {
        case name, path, type, size, mode
        case modifiedAt = "modified_at", linkTarget = "link_target"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(path, forKey: .path)
        try c.encode(type, forKey: .type)
        try c.encode(size, forKey: .size)
        try c.encode(mode, forKey: .mode)
        try c.encode(modifiedAt, forKey: .modifiedAt)
        try c.encode(linkTarget, forKey: .linkTarget)
    }
}

/// A directory listing.
public struct FileListing: Codable, Sendable, Equatable {
    public var path: String
    public var entries: [FileEntry]
    /// True when the directory has more entries than the server lists.
    public var truncated: Bool
    public init(path: String, entries: [FileEntry], truncated: Bool) {
        self.path = path
        self.entries = entries
        self.truncated = truncated
    }
}

/// What `GET …/files` found: a file's bytes or a directory listing.
public enum FileContent: Sendable, Equatable {
    case file(bytes: [UInt8], mode: String)
    case directory(FileListing)
}

/// The answer to `PUT …/files`.
public struct FileWriteResult: Codable, Sendable, Equatable {
    public var path: String
    public var size: Int
    public var created: Bool
    public init(path: String, size: Int, created: Bool) {
        self.path = path
        self.size = size
        self.created = created
    }
}

/// The last event of a streamed exec (`event: exit` of `POST …/exec` with
/// `Accept: text/event-stream`): how the command ended. Its output came in the
/// `stdout`/`stderr` events before it. `exit_code` and `signal` are written even when null.
public struct ExecExitEvent: Codable, Sendable, Equatable {
    public var exitCode: Int?
    public var signal: Int?
    public var truncated: Bool
    public var timedOut: Bool
    public var durationMs: Int

    public init(exitCode: Int?, signal: Int?, truncated: Bool, timedOut: Bool, durationMs: Int) {
        self.exitCode = exitCode
        self.signal = signal
        self.truncated = truncated
        self.timedOut = timedOut
        self.durationMs = durationMs
    }

    enum CodingKeys: String, CodingKey {
        case signal, truncated
        case exitCode = "exit_code", timedOut = "timed_out", durationMs = "duration_ms"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(exitCode, forKey: .exitCode)
        try c.encode(signal, forKey: .signal)
        try c.encode(truncated, forKey: .truncated)
        try c.encode(timedOut, forKey: .timedOut)
        try c.encode(durationMs, forKey: .durationMs)
    }
}
