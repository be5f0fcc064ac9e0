import DevboxModel
import Foundation

/// Every failure the SDK reports (besides `CancellationError` when the calling task is
/// cancelled). No case ever carries a provider, user, Claude or Codex token.
public enum DevboxClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with an API error (`{"error": {"code","message","field"}}`).
    case api(DevboxAPIError)
    /// The server could not be reached at all (refused, DNS, TLS, timeout…).
    case unreachable(url: String, reason: String)
    /// The server answered, but not with what the API promises (wrong status, not JSON,
    /// a body that does not decode).
    case badResponse(url: String, status: Int, reason: String)
    /// An argument was rejected before any request was sent (e.g. an empty id).
    case invalidArgument(String)
    /// `waitForReady`: the devbox reached `failed`, `destroyed` or `stopped`.
    case provisioningFailed(ProvisioningFailure)
    /// `waitForReady`: the deadline passed; `lastState` is the state seen last.
    case timedOut(devboxId: String, lastState: DevboxState, waitedMs: Int)

    /// The API error, when this is one.
    public var apiError: DevboxAPIError? {
        if case .api(let e) = self { return e }
        return nil
    }

    /// HTTP status of an API error or a bad response.
    public var status: Int? {
        switch self {
        case .api(let e): e.status
        case .badResponse(_, let s, _): s
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .api(let e):
            "\(e.description) (HTTP \(e.status) \(e.code))"
        case .unreachable(let url, let reason):
            "cannot reach the devbox server at \(url): \(reason)"
        case .badResponse(let url, let status, let reason):
            "unexpected response from \(url) (HTTP \(status)): \(reason)"
        case .invalidArgument(let m):
            m
        case .provisioningFailed(let f):
            f.description
        case .timedOut(let id, let state, let ms):
            "timed out after \(DevboxClientError.seconds(ms)) waiting for devbox \(id) to be ready (last state: \(state.rawValue))"
        }
    }

    static func seconds(_ ms: Int) -> String {
        ms % 1000 == 0 ? "\(ms / 1000) s" : String(format: "%.1f s", Double(ms) / 1000)
    }
}

extension DevboxClientError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Why a devbox did not become ready: its final state, the failing operation (if any),
/// that operation's error and the tail of its output.
public struct ProvisioningFailure: Sendable, Equatable, CustomStringConvertible {
    public var devboxId: String
    public var state: DevboxState
    /// Name of the failed operation (`run_setup_commands`, …), if one failed.
    public var operation: String?
    /// The operation's error (or the devbox's error message).
    public var error: String?
    /// The failed operation's captured output (already a tail on the server side).
    public var output: String
    public var outputTruncated: Bool

    public init(
        devboxId: String, state: DevboxState, operation: String?, error: String?, output: String,
        outputTruncated: Bool = false
    ) {
        self.devboxId = devboxId
        self.state = state
        self.operation = operation
        self.error = error
        self.output = output
        self.outputTruncated = outputTruncated
    }

    /// Builds the failure from a devbox in a terminal state and its operations: the
    /// operation that failed, else the one the devbox's `error` names.
    public init(devbox: Devbox, operations: [DevboxOperation]) {
        let failed =
            operations.last(where: { $0.status == .failed })
            ?? devbox.error.flatMap { e in operations.first(where: { $0.name.rawValue == e.operation }) }
        self.init(
            devboxId: devbox.id, state: devbox.state,
            operation: failed?.name.rawValue ?? devbox.error?.operation,
            error: failed?.error ?? devbox.error?.message,
            output: failed?.output ?? "", outputTruncated: failed?.outputTruncated ?? false)
    }

    /// The last `maxLines` lines of the output (at most `maxBytes` UTF-8 bytes).
    public func tail(maxLines: Int = 20, maxBytes: Int = 4096) -> String {
        ProvisioningFailure.tail(of: output, maxLines: maxLines, maxBytes: maxBytes)
    }

    public static func tail(of text: String, maxLines: Int, maxBytes: Int) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        var out = lines.suffix(maxLines).joined(separator: "\n")
        if out.utf8.count > maxBytes {
            let bytes = Array(out.utf8.suffix(maxBytes))
            out = String(decoding: bytes, as: UTF8.self)
        }
        return out
    }

    /// One line: "devbox ID failed in OPERATION: ERROR", "devbox ID was destroyed", …
    public var summary: String {
        var s: String
        switch state {
        case .failed: s = "devbox \(devboxId) failed"
        case .destroyed: s = "devbox \(devboxId) was destroyed"
        default: s = "devbox \(devboxId) is \(state.rawValue)"
        }
        if let operation { s += " in \(operation)" }
        if let error { s += ": \(error)" }
        return s.replacingOccurrences(of: "\n", with: " ")
    }

    public var description: String {
        var s = summary
        let t = tail()
        if !t.isEmpty { s += "\n--- output tail ---\n\(t)" }
        return s
    }
}
