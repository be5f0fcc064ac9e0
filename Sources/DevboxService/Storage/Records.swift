import DevboxModel
import Foundation
import GRDB

struct ProviderRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "providers"
    var id: String
    var name: String
    var createdAt: Date
    enum CodingKeys: String, CodingKey { case id, name, createdAt = "created_at" }
}

struct ProviderTokenRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "provider_tokens"
    var id: String
    var providerId: String
    var tokenHash: String
    var hint: String
    var createdAt: Date
    var revokedAt: Date?
    enum CodingKeys: String, CodingKey {
        case id, hint
        case providerId = "provider_id", tokenHash = "token_hash", createdAt = "created_at", revokedAt = "revoked_at"
    }
}

struct UserRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "users"
    var id: String
    var providerId: String
    var subject: String
    var createdAt: Date
    var sshKeyType: String?
    var sshKeyFingerprint: String?
    var sshPublicKey: String?
    var sshKeyUpdatedAt: Date?
    enum CodingKeys: String, CodingKey {
        case id, subject
        case providerId = "provider_id", createdAt = "created_at"
        case sshKeyType = "ssh_key_type", sshKeyFingerprint = "ssh_key_fingerprint"
        case sshPublicKey = "ssh_public_key", sshKeyUpdatedAt = "ssh_key_updated_at"
    }
}

struct DevboxRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "devboxes"
    var id: String
    var userId: String
    var name: String
    var plan: String
    var state: DevboxState
    var envKeys: [String]
    var setupCommands: [String]
    var setupTimeoutSeconds: Int
    var injectClaudeToken: Bool
    var injectCodexToken: Bool
    var createdAt: Date
    var updatedAt: Date
    var readyAt: Date?
    var destroyedAt: Date?
    var errorOperation: String?
    var errorMessage: String?
    var idleTimeoutSeconds: Int?
    var ttlSeconds: Int?
    var expiresAt: Date?
    var lastActivityAt: Date?
    /// The egress policy, JSON (`DevboxNetwork`); nil: allow_all.
    var network: String? = nil
    /// `env` or `proxy` (issue 19's broker).
    var credentialMode: String = "env"
    /// The root image (issue 18); nil for devboxes from before images.
    var image: String? = nil
    /// The snapshot the devbox was made from (issue 23, `snapshots.id`); nil: its image alone.
    var snapshotId: String? = nil
    var leaseOwner: String?
    var leaseExpiresAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, plan, state
        case userId = "user_id", envKeys = "env_keys", setupCommands = "setup_commands"
        case setupTimeoutSeconds = "setup_timeout_seconds"
        case injectClaudeToken = "inject_claude_token", injectCodexToken = "inject_codex_token"
        case createdAt = "created_at", updatedAt = "updated_at", readyAt = "ready_at", destroyedAt = "destroyed_at"
        case errorOperation = "error_operation", errorMessage = "error_message"
        case idleTimeoutSeconds = "idle_timeout_seconds", ttlSeconds = "ttl_seconds", expiresAt = "expires_at"
        case lastActivityAt = "last_activity_at", leaseOwner = "lease_owner", leaseExpiresAt = "lease_expires_at"
        case network
        case credentialMode = "credential_mode"
        case image
        case snapshotId = "snapshot_id"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let userId = Column(CodingKeys.userId)
        static let state = Column(CodingKeys.state)
        static let createdAt = Column(CodingKeys.createdAt)
        static let leaseExpiresAt = Column(CodingKeys.leaseExpiresAt)
    }
}

extension DevboxState: DatabaseValueConvertible {}
extension OperationStatus: DatabaseValueConvertible {}
extension OperationKind: DatabaseValueConvertible {}

struct OperationRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "operations"
    var id: String
    var devboxId: String
    var position: Int
    var name: OperationKind
    var status: OperationStatus
    var startedAt: Date?
    var finishedAt: Date?
    var output: String
    var outputTruncated: Bool
    var error: String?
    enum CodingKeys: String, CodingKey {
        case id, position, name, status, output, error
        case devboxId = "devbox_id", startedAt = "started_at", finishedAt = "finished_at"
        case outputTruncated = "output_truncated"
    }

    var model: DevboxOperation {
        DevboxOperation(
            id: id, devboxId: devboxId, name: name, status: status, startedAt: startedAt,
            finishedAt: finishedAt, output: output, outputTruncated: outputTruncated, error: error)
    }
}

struct EnvRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "devbox_env"
    var devboxId: String
    var key: String
    var valueEncrypted: String
    enum CodingKeys: String, CodingKey { case key, devboxId = "devbox_id", valueEncrypted = "value_encrypted" }
}

struct PendingSecretRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "devbox_pending_secrets"
    var devboxId: String
    var kind: String
    var valueEncrypted: String
    enum CodingKeys: String, CodingKey { case kind, devboxId = "devbox_id", valueEncrypted = "value_encrypted" }
}

struct RepositoryRecord: Codable, FetchableRecord, PersistableRecord, StoredRecord, Sendable {
    static let databaseTableName = "devbox_repositories"
    var devboxId: String
    var position: Int
    var repoId: Int64?
    var fullName: String
    var ref: String
    var targetPath: String
    var status: String
    var resolvedCommit: String?
    var error: String?
    /// The git broker's branch globs as a JSON array (issue 19); NULL: no broker.
    var pushBranches: String?
    enum CodingKeys: String, CodingKey {
        case position, ref, status, error
        case devboxId = "devbox_id", repoId = "repo_id", fullName = "full_name", targetPath = "target_path"
        case resolvedCommit = "resolved_commit"
        case pushBranches = "push_branches"
    }

    var pushGlobs: [String] {
        guard let pushBranches, let data = pushBranches.data(using: .utf8),
              let list = try? JSONDecoder().decode([String].self, from: data) else { return [] }
        return list
    }

    static func encodePushBranches(_ list: [String]?) -> String? {
        guard let list, !list.isEmpty, let data = try? JSONEncoder().encode(list) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    var model: DevboxRepository {
        DevboxRepository(
            repoId: repoId, fullName: fullName, ref: ref, targetPath: targetPath, status: status,
            commit: resolvedCommit, error: error, pushBranches: pushGlobs)
    }
}

extension DevboxRecord {
    func model(repositories: [RepositoryRecord]) -> Devbox {
        Devbox(
            id: id, name: name, plan: plan, state: state, repositories: repositories.map(\.model),
            envKeys: envKeys, setupCommands: setupCommands, setupTimeoutSeconds: setupTimeoutSeconds,
            credentialProfile: CredentialProfile(injectClaudeToken: injectClaudeToken, injectCodexToken: injectCodexToken),
            createdAt: createdAt, updatedAt: updatedAt, readyAt: readyAt,
            error: errorOperation.map { DevboxError(operation: $0, message: errorMessage ?? "") },
            idleTimeoutSeconds: idleTimeoutSeconds, ttlSeconds: ttlSeconds, expiresAt: expiresAt,
            lastActivityAt: lastActivityAt, network: DevboxRecord.decodeNetwork(network), credentialMode: credentialMode,
            image: image)
    }
}
