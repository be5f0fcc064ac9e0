import DevboxModel
import Foundation

/// Snapshots (issue 23): a devbox's file system frozen as a read-only layer that creates can
/// start from (`CreateDevboxRequest.snapshot`).
extension DevboxesAPI {
    /// `POST /api/v1/devboxes/:id/snapshots {name}` → 201: freezes the devbox's changes (its
    /// writable layer and `/workspace`) as a snapshot. A running box is paused for the copy.
    public func createSnapshot(_ id: String, name: String) async throws -> Snapshot {
        try await http.json(
            Snapshot.self, "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/snapshots",
            body: try http.encode(CreateSnapshotRequest(name: name)), expect: 201,
            timeout: DevboxesAPI.snapshotTimeout)
    }

    /// `POST /api/v1/devboxes/:id/fork {count, name?, copy_env?}` → 201: a snapshot of the
    /// devbox and `count` (1–32) new devboxes started from it (in `requested`; wait for each).
    /// Env values are copied only with `copyEnv`; AI tokens only from `tokens` (headers).
    public func fork(
        _ id: String, count: Int = 1, name: String? = nil, copyEnv: Bool? = nil,
        tokens: InjectionTokens = InjectionTokens()
    ) async throws -> ForkResult {
        guard (1...32).contains(count) else { throw DevboxClientError.invalidArgument("count must be from 1 to 32") }
        var headers: [String: String] = [:]
        if let t = tokens.claudeToken { headers["X-Claude-Token"] = t }
        if let t = tokens.codexToken { headers["X-Codex-Token"] = t }
        return try await http.json(
            ForkResult.self, "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/fork",
            body: try http.encode(ForkDevboxRequest(count: count, name: name, copyEnv: copyEnv)), headers: headers,
            secrets: [tokens.claudeToken, tokens.codexToken].compactMap { $0 }, expect: 201,
            timeout: DevboxesAPI.snapshotTimeout)
    }

    /// A snapshot copies the box's changes while the box is paused: on a file system without
    /// reflinks that is a real copy, so allow minutes for gigabytes.
    static let snapshotTimeout: TimeInterval = 600
}

/// `client.snapshots`: `/api/v1/snapshots` — the caller's snapshots.
public struct SnapshotsAPI: Sendable {
    let http: HTTPCore

    /// `GET /api/v1/snapshots`: the caller's snapshots with their sizes.
    public func list() async throws -> [Snapshot] {
        try await http.json(SnapshotList.self, "GET", "/api/v1/snapshots").snapshots
    }

    /// `GET /api/v1/snapshots/:id` (an id or a name).
    public func get(_ idOrName: String) async throws -> Snapshot {
        try await http.json(Snapshot.self, "GET", "/api/v1/snapshots/\(try HTTPCore.segment(idOrName))")
    }

    /// `DELETE /api/v1/snapshots/:id` (an id or a name) → 204.
    public func delete(_ idOrName: String) async throws {
        try await http.noContent("DELETE", "/api/v1/snapshots/\(try HTTPCore.segment(idOrName))")
    }
}

extension DevboxClient {
    /// The caller's snapshots (take one with `devboxes.createSnapshot` or `devboxes.fork`).
    public var snapshots: SnapshotsAPI { SnapshotsAPI(http: http) }
}
