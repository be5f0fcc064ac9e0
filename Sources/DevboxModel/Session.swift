import Foundation

/// SSH connection details of a session.
public struct SSHAccess: Codable, Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var workspacePath: String

    public init(host: String, port: Int, username: String, workspacePath: String) {
        self.host = host
        self.port = port
        self.username = username
        self.workspacePath = workspacePath
    }

    enum CodingKeys: String, CodingKey { case host, port, username, workspacePath = "workspace_path" }
}

/// `POST /api/v1/devboxes/:id/access/session` → 201.
public struct AccessSession: Codable, Sendable, Equatable {
    public var sessionId: String
    public var expiresAt: Date
    public var command: String
    public var ssh: SSHAccess

    public init(sessionId: String, expiresAt: Date, command: String, ssh: SSHAccess) {
        self.sessionId = sessionId
        self.expiresAt = expiresAt
        self.command = command
        self.ssh = ssh
    }

    enum CodingKeys: String, CodingKey { case sessionId = "session_id", expiresAt = "expires_at", command, ssh }
}

/// Body of a session create (optional).
public struct CreateSessionRequest: Codable, Sendable, Equatable {
    public var ttlSeconds: Int?
    public init(ttlSeconds: Int? = nil) { self.ttlSeconds = ttlSeconds }
    enum CodingKeys: String, CodingKey { case ttlSeconds = "ttl_seconds" }
    public init(from decoder: any Decoder) throws {
        ttlSeconds = try decoder.container(keyedBy: CodingKeys.self).decodeStrictIntIfPresent(forKey: .ttlSeconds)
    }
}

/// An active session as listed by `GET /api/v1/devboxes/:id/access/sessions`.
public struct AccessSessionInfo: Codable, Sendable, Equatable {
    public var sessionId: String
    public var devboxId: String
    public var createdAt: Date
    public var expiresAt: Date
    public var connections: Int
    public var ssh: SSHAccess

    public init(sessionId: String, devboxId: String, createdAt: Date, expiresAt: Date, connections: Int, ssh: SSHAccess) {
        self.sessionId = sessionId
        self.devboxId = devboxId
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.connections = connections
        self.ssh = ssh
    }

    enum CodingKeys: String, CodingKey {
        case sessionId = "session_id", devboxId = "devbox_id", createdAt = "created_at", expiresAt = "expires_at"
        case connections, ssh
    }
}

public struct AccessSessionList: Codable, Sendable {
    public var sessions: [AccessSessionInfo]
    public init(sessions: [AccessSessionInfo]) { self.sessions = sessions }
}

public struct RepositoryList: Codable, Sendable {
    public var repositories: [DevboxRepository]
    public init(repositories: [DevboxRepository]) { self.repositories = repositories }
}
