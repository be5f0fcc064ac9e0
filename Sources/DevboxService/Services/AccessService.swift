import DevboxModel
import Foundation
import DevboxRuntime
import Logging
import Synchronization

/// The live side of SSH access that the core asks about and tells to close connections.
public protocol AccessGateway: Sendable {
    func connectionCount(sessionId: String) -> Int
    /// Live authenticated connections to a devbox (they count as activity).
    func connectionCount(devboxId: String) -> Int
    func closeConnections(sessionId: String)
    func closeConnections(devboxId: String)
}

/// Where SSH clients reach the gateway (the public address may differ behind NAT).
public struct SSHEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// Session lifetime bounds.
public struct SessionPolicy: Sendable {
    public var defaultTTL: Int = 3600
    public var minTTL: Int = 60
    public var maxTTL: Int = 24 * 3600
    public init() {}
}

/// A late-bound reference: the gateway is built after the core it calls back into.
public final class GatewayBox: Sendable {
    private let value = Mutex<(any AccessGateway)?>(nil)
    public init() {}
    public func set(_ g: any AccessGateway) { value.withLock { $0 = g } }
    var current: (any AccessGateway)? { value.withLock { $0 } }
}

/// A login the gateway has accepted: which session, devbox and user it acts for.
public struct SSHGrant: Sendable, Equatable {
    public var sessionId: String
    public var devboxId: String
    public var userId: String
    public var expiresAt: Date

    public init(sessionId: String, devboxId: String, userId: String, expiresAt: Date) {
        self.sessionId = sessionId
        self.devboxId = devboxId
        self.userId = userId
        self.expiresAt = expiresAt
    }
}

/// SSH access: the user's key, sessions (create, list, revoke) and what the SSH gateway asks
/// (`DevboxApp/SSHWiring.swift`): is a login granted, is a grant still valid, start a process
/// or open a port connection in the grant's box.
public final class AccessService: Sendable, LoggingService {
    let db: AppDatabase
    let reads: DevboxReads
    let sandbox: any BoxRuntime
    let activity: ActivityTracker
    let gateway: GatewayBox
    let sshEndpoint: SSHEndpoint
    let sessionPolicy: SessionPolicy
    let auditor: Auditor
    let logger: Logger

    public init(
        database: AppDatabase, reads: DevboxReads, runtime: any BoxRuntime, activity: ActivityTracker, gateway: GatewayBox,
        sshEndpoint: SSHEndpoint, sessionPolicy: SessionPolicy, auditor: Auditor, logger: Logger
    ) {
        self.db = database
        self.reads = reads
        self.sandbox = runtime
        self.activity = activity
        self.gateway = gateway
        self.sshEndpoint = sshEndpoint
        self.sessionPolicy = sessionPolicy
        self.auditor = auditor
        self.logger = logger
    }

    // MARK: SSH keys

    func setSSHKeyUnaudited(_ principal: Principal, publicKey: String) async throws(ServiceError) {
        let key = try SSHPublicKey.parse(publicKey)
        do {
            try await db.setSSHKey(userId: principal.userId, type: key.type, fingerprint: key.fingerprint, publicKey: key.line)
        } catch { throw storageFailure(error) }
    }

    func deleteSSHKeyUnaudited(_ principal: Principal) async throws(ServiceError) {
        do {
            try await db.setSSHKey(userId: principal.userId, type: nil, fingerprint: nil, publicKey: nil)
        } catch { throw storageFailure(error) }
    }

    // MARK: Sessions

    func access(_ sessionId: String) -> SSHAccess {
        SSHAccess(host: sshEndpoint.host, port: sshEndpoint.port, username: sessionId, workspacePath: "/workspace")
    }

    func command(_ sessionId: String) -> String {
        let host = sshEndpoint.host.contains(":") ? "[\(sshEndpoint.host)]" : sshEndpoint.host
        return "ssh -p \(sshEndpoint.port) -o StrictHostKeyChecking=accept-new \(sessionId)@\(host)"
    }

    /// Creates an SSH session: the devbox must be ready and the user must have a key.
    func createSessionUnaudited(_ principal: Principal, devboxId: String, ttlSeconds: Int?) async throws(ServiceError) -> AccessSession {
        let box = try await reads.devbox(principal, id: devboxId)
        guard box.state == .ready else {
            throw .conflict("devbox \(devboxId) is \(box.state.rawValue); sessions can only be created for a ready devbox")
        }
        let profile = try await reads.profile(principal)
        guard profile.sshKey != nil else {
            throw .conflict("no SSH key is set for this user; set one first with PUT /api/v1/users/me/ssh-key (ssh-keygen -t ed25519)")
        }
        let ttl = ttlSeconds ?? sessionPolicy.defaultTTL
        guard (sessionPolicy.minTTL...sessionPolicy.maxTTL).contains(ttl) else {
            throw .validation(
                field: "ttl_seconds", message: "ttl_seconds must be between \(sessionPolicy.minTTL) and \(sessionPolicy.maxTTL)")
        }
        let now = Date()
        let s = SessionRecord(
            id: Identifier.make("ses_"), devboxId: devboxId, userId: principal.userId, createdAt: now,
            expiresAt: now.addingTimeInterval(TimeInterval(ttl)))
        do { try await db.insertSession(s) } catch { throw storageFailure(error) }
        return AccessSession(sessionId: s.id, expiresAt: s.expiresAt, command: command(s.id), ssh: access(s.id))
    }

    public func listSessions(_ principal: Principal, devboxId: String) async throws(ServiceError) -> [AccessSessionInfo] {
        _ = try await reads.devbox(principal, id: devboxId)
        let rows: [SessionRecord]
        do { rows = try await db.activeSessions(devboxId: devboxId) } catch { throw storageFailure(error) }
        let gw = gateway.current
        return rows.map {
            AccessSessionInfo(
                sessionId: $0.id, devboxId: $0.devboxId, createdAt: $0.createdAt, expiresAt: $0.expiresAt,
                connections: gw?.connectionCount(sessionId: $0.id) ?? 0, ssh: access($0.id))
        }
    }

    /// Revokes a session and closes its live connections.
    func revokeSessionUnaudited(_ principal: Principal, devboxId: String, sessionId: String) async throws(ServiceError) {
        _ = try await reads.devbox(principal, id: devboxId)
        let done: Bool
        do { done = try await db.revokeSession(devboxId: devboxId, sessionId: sessionId) } catch { throw storageFailure(error) }
        guard done else { throw .notFound("no active session \(sessionId) on devbox \(devboxId)") }
        gateway.current?.closeConnections(sessionId: sessionId)
    }

    /// Decides an SSH login: the username names the session; it must be live, its devbox
    /// ready and the presented key the owner's current key. Says nothing about which part failed.
    func authorizeSSHUnaudited(username: String, keyType: String, keyBlob: [UInt8]) async -> SSHGrant? {
        guard username.hasPrefix("ses_"), username.count < 64,
            let row = try? await db.sessionGrant(sessionId: username)
        else { return nil }
        guard row.session.revokedAt == nil, row.session.expiresAt > Date(), row.devboxState == .ready,
            let line = row.userPublicKey, let key = try? SSHPublicKey.parse(line),
            key.type == keyType, key.blob == keyBlob
        else { return nil }
        return SSHGrant(
            sessionId: row.session.id, devboxId: row.session.devboxId, userId: row.session.userId,
            expiresAt: row.session.expiresAt)
    }

    /// True while a grant still allows new channels (unexpired, unrevoked, devbox ready).
    public func grantIsValid(_ grant: SSHGrant) async -> Bool {
        guard let row = try? await db.sessionGrant(sessionId: grant.sessionId) else { return false }
        return row.session.revokedAt == nil && row.session.expiresAt > Date() && row.devboxState == .ready
    }

    /// Starts a process inside the devbox of a grant (SSH exec/shell/sftp).
    public func spawn(_ grant: SSHGrant, _ spec: BoxProcessSpec) async throws -> any BoxProcess {
        await activity.noteActivity(devboxId: grant.devboxId)
        return try await sandbox.spawn(box: grant.devboxId, spec)
    }

    /// A TCP connection to `port` on the loopback of a grant's devbox, made from inside its
    /// network namespace (`ssh -L`); nil when boxes share the host's network.
    public func connectInBox(_ grant: SSHGrant, port: UInt16) async throws -> Int32? {
        await activity.noteActivity(devboxId: grant.devboxId)
        return try await sandbox.connectInBox(box: grant.devboxId, port: port)
    }

    // MARK: Audited entry points

    public func createSession(_ principal: Principal, devboxId: String, ttlSeconds: Int?) async throws(ServiceError) -> AccessSession {
        try await auditor.audited(
            principal, "session.create", devboxId: devboxId, okDetail: { ["session_id": .string($0.sessionId)] }
        ) { () async throws(ServiceError) in
            try await createSessionUnaudited(principal, devboxId: devboxId, ttlSeconds: ttlSeconds)
        }
    }

    public func revokeSession(_ principal: Principal, devboxId: String, sessionId: String) async throws(ServiceError) {
        try await auditor.audited(
            principal, "session.revoke", devboxId: devboxId, target: String(sessionId.prefix(64))
        ) { () async throws(ServiceError) in
            try await revokeSessionUnaudited(principal, devboxId: devboxId, sessionId: sessionId)
        }
    }

    public func setSSHKey(_ principal: Principal, publicKey: String) async throws(ServiceError) {
        try await auditor.audited(principal, "user.ssh_key.set", devboxId: nil) { () async throws(ServiceError) in
            try await setSSHKeyUnaudited(principal, publicKey: publicKey)
        }
    }

    public func deleteSSHKey(_ principal: Principal) async throws(ServiceError) {
        try await auditor.audited(principal, "user.ssh_key.delete", devboxId: nil) { () async throws(ServiceError) in
            try await deleteSSHKeyUnaudited(principal)
        }
    }

    /// An SSH login the gateway accepted (a refused one names no user to record).
    public func authorizeSSH(username: String, keyType: String, keyBlob: [UInt8]) async -> SSHGrant? {
        guard let g = await authorizeSSHUnaudited(username: username, keyType: keyType, keyBlob: keyBlob) else { return nil }
        auditor.record(nil, userId: g.userId, action: "ssh.login", devboxId: g.devboxId, target: g.sessionId, result: "ok", face: "ssh")
        return g
    }

    /// Records use of a grant's devbox (SSH traffic).
    public func noteActivity(devboxId: String) async { await activity.noteActivity(devboxId: devboxId) }
}
