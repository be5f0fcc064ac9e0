import DevboxModel
import Foundation
import Synchronization
import Transport

/// `Devbox` as JSON without a round trip through `JSONEncoder` and the parser: `get_devbox`,
/// `list_devboxes` and every poll of `wait_for_ready` build one. The output equals
/// `JSONValue(encoding:)` with `DevboxJSON.encoder()` (a test holds them together).
extension ToolJSON {
    static func devbox(_ d: Devbox) -> JSONValue {
        .object([
            "id": .string(d.id),
            "name": .string(d.name),
            "plan": .string(d.plan),
            "state": .string(d.state.rawValue),
            "repositories": .array(d.repositories.map(repository)),
            "env_keys": .array(d.envKeys.map { .string($0) }),
            "setup_commands": .array(d.setupCommands.map { .string($0) }),
            "setup_timeout_seconds": .int(d.setupTimeoutSeconds),
            "credential_profile": [
                "inject_claude_token": .bool(d.credentialProfile.injectClaudeToken),
                "inject_codex_token": .bool(d.credentialProfile.injectCodexToken),
            ],
            "created_at": date(d.createdAt),
            "updated_at": date(d.updatedAt),
            "ready_at": date(d.readyAt),
            "error": d.error.map { ["operation": .string($0.operation), "message": .string($0.message)] } ?? .null,
            "idle_timeout_seconds": d.idleTimeoutSeconds.map { .int($0) } ?? .null,
            "ttl_seconds": d.ttlSeconds.map { .int($0) } ?? .null,
            "expires_at": date(d.expiresAt),
            "last_activity_at": date(d.lastActivityAt),
            "network": [
                "egress": .string(d.network.egress),
                "allow": .array(d.network.allow.map { .string($0) }),
                "deny": .array(d.network.deny.map { .string($0) }),
            ],
            "credential_mode": .string(d.credentialMode),
            "image": d.image.map { .string($0) } ?? .null,
        ])
    }

    static func repository(_ r: DevboxRepository) -> JSONValue {
        [
            "repo_id": r.repoId.map { .int(Int($0)) } ?? .null,
            "full_name": .string(r.fullName), "ref": .string(r.ref), "target_path": .string(r.targetPath),
            "status": .string(r.status),
            "commit": r.commit.map { .string($0) } ?? .null,
            "error": r.error.map { .string($0) } ?? .null,
            "push_branches": .array(r.pushBranches.map { .string($0) }),
        ]
    }

    /// RFC 3339 with milliseconds, as the API writes it. The same few timestamps come back on
    /// every poll, so formatted ones are remembered (formatting is the costly part).
    static func date(_ d: Date?) -> JSONValue {
        guard let d else { return .null }
        let key = d.timeIntervalSinceReferenceDate
        if let s = dateCache.withLock({ $0[key] }) { return .string(s) }
        let s = DevboxJSON.formatDate(d)
        dateCache.withLock { cache in
            if cache.count >= 4096 { cache.removeAll(keepingCapacity: true) }
            cache[key] = s
        }
        return .string(s)
    }

    private static let dateCache = Mutex<[Double: String]>([:])
}

/// The devbox JSON of the REST API, built directly (the same bytes' meaning as `JSONEncoder`
/// with `DevboxJSON.encoder()`, keys sorted): `GET /api/v1/devboxes/:id` and the list are the
/// service's hottest responses, and the encoder was a tenth of their cost.
public enum DevboxWireJSON {
    public static func devbox(_ d: Devbox) -> [UInt8] { ToolJSON.devbox(d).serialized() }

    /// `{"devboxes": [...]}`
    public static func devboxList(_ list: [Devbox]) -> [UInt8] {
        JSONValue.object(["devboxes": .array(list.map(ToolJSON.devbox))]).serialized()
    }

    /// `{"devboxes": [...], "next_cursor": "…" | null}`: a page of the list.
    public static func devboxPage(_ list: [Devbox], next: String?) -> [UInt8] {
        JSONValue.object(["devboxes": .array(list.map(ToolJSON.devbox)), "next_cursor": next.map { .string($0) } ?? .null])
            .serialized()
    }
}
