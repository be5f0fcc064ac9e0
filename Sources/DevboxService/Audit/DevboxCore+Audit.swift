import DevboxModel
import Foundation

/// Audit settings: `DEVBOX_AUDIT_LOG=stderr` also writes each event to stderr as one JSON
/// line; `DEVBOX_AUDIT_RETENTION` (seconds, 0 = forever; default 90 days) bounds the table.
public struct AuditSettings: Sendable {
    public var toStderr = false
    public var retentionSeconds: Int? = 90 * 86400
    public init() {}
}

/// The audit log's hook: every state-changing action of the service layer, whichever face
/// called it (REST, MCP, dashboard — they all call these methods), is recorded here with
/// who (provider token id, user id), what, which devbox, the result, when, and the
/// request's origin (face, source address, request id: `RequestOrigin.current`).
///
/// Each public method below is the audited entry point of an `…Unaudited` method that
/// does the work. Nothing secret is recorded: no env values, tokens, keys, commands or
/// bodies; at most the names of the fields a request set.
extension DevboxCore {
    /// Records one event for `principal` (or a system action for `userId`).
    func recordAudit(
        _ principal: Principal?, userId: String? = nil, action: String, devboxId: String?, target: String? = nil,
        result: String, detail: [String: AuditValue] = [:], face: String? = nil
    ) {
        let origin = RequestOrigin.current
        audit.record(
            AuditEvent(
                providerId: principal?.providerId, providerTokenId: principal?.providerTokenId,
                userId: principal?.userId ?? userId, face: face ?? origin?.face ?? "system", action: action,
                devboxId: devboxId, target: target, result: result, source: origin?.source, requestId: origin?.requestId,
                detail: detail), db: db, toStderr: configuration.audit.toStderr, logger: logger)
    }

    /// Runs `body` and records its outcome (`ok` or the error's code).
    func audited<T>(
        _ principal: Principal, _ action: String, devboxId: String?, target: String? = nil,
        detail: [String: AuditValue] = [:], okDetail: (T) -> [String: AuditValue] = { _ in [:] },
        okDevboxId: (T) -> String? = { _ in nil },
        _ body: () async throws(ServiceError) -> T
    ) async throws(ServiceError) -> T {
        do {
            let r = try await body()
            recordAudit(
                principal, action: action, devboxId: devboxId ?? okDevboxId(r), target: target, result: "ok",
                detail: detail.merging(okDetail(r)) { a, _ in a })
            return r
        } catch {
            var d = detail
            if let f = error.field { d["field"] = .string(f) }
            recordAudit(principal, action: action, devboxId: devboxId, target: target, result: error.code, detail: d)
            throw error
        }
    }

    /// The audit log's events for a caller: a provider-level caller (provider token only)
    /// sees every event of its provider, a user (bearer token) only their own.
    public func auditEvents(
        _ principal: Principal, userScoped: Bool, devboxId: String?, action: String?, since: Date?, cursor: String?,
        limit: Int?
    ) async throws(ServiceError) -> (events: [AuditEvent], next: String?) {
        let limit = limit ?? 100
        guard (1...500).contains(limit) else { throw .validation(field: "limit", message: "limit must be between 1 and 500") }
        var before: Int64?
        if let cursor {
            guard let n = Int64(cursor), n > 0 else {
                throw .validation(field: "cursor", message: "cursor is not one this server gave out (next_cursor)")
            }
            before = n
        }
        if let action {
            guard !action.isEmpty, action.count <= 64,
                action.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_") })
            else {
                throw .validation(field: "action", message: "action must be an action name such as devbox.create, or a prefix such as devbox")
            }
        }
        if let devboxId, devboxId.isEmpty || devboxId.count > 64 {
            throw .validation(field: "devbox_id", message: "devbox_id must be a devbox id")
        }
        await audit.flush()
        let q = AuditQuery(
            providerId: principal.providerId, userId: userScoped ? principal.userId : nil, devboxId: devboxId,
            action: action, since: since, before: before, limit: limit + 1)
        let rows: [AuditEvent]
        do { rows = try await db.auditEvents(q) } catch { throw storageFailure(error) }
        if rows.count > limit {
            let page = Array(rows.prefix(limit))
            return (page, page.last.map { String($0.seq) })
        }
        return (rows, nil)
    }

    /// Waits until every recorded event is stored (shutdown, tests).
    public func flushAudit() async { await audit.flush() }

    /// Drops audit events past `DEVBOX_AUDIT_RETENTION` (run by the lifetime worker).
    func purgeAudit(now: Date = Date()) async {
        guard let retention = configuration.audit.retentionSeconds else { return }
        do {
            let n = try await db.purgeAudit(before: now.addingTimeInterval(-TimeInterval(retention)))
            if n > 0 { logger.info("purged audit events", metadata: ["count": "\(n)"]) }
        } catch {
            logger.error("purging audit events failed: \(error)")
        }
    }

    // MARK: Audited entry points

    public func createDevbox(
        _ principal: Principal, _ request: CreateDevboxRequest, tokens: InjectionTokens
    ) async throws(ServiceError) -> Devbox {
        try await audited(
            principal, "devbox.create", devboxId: nil, detail: ["fields": .strings(Self.fieldNames(request))],
            okDetail: { ["plan": .string($0.plan)] }, okDevboxId: { $0.id }
        ) { () async throws(ServiceError) in
            try await createDevboxUnaudited(principal, request, tokens: tokens)
        }
    }

    public func deleteDevbox(_ principal: Principal, id: String) async throws(ServiceError) {
        try await audited(principal, "devbox.delete", devboxId: id) { () async throws(ServiceError) in
            try await deleteDevboxUnaudited(principal, id: id)
        }
    }

    public func stopDevbox(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        try await audited(principal, "devbox.stop", devboxId: id) { () async throws(ServiceError) in
            try await stopDevboxUnaudited(principal, id: id)
        }
    }

    public func startDevbox(_ principal: Principal, id: String) async throws(ServiceError) -> Devbox {
        try await audited(principal, "devbox.start", devboxId: id) { () async throws(ServiceError) in
            try await startDevboxUnaudited(principal, id: id)
        }
    }

    /// The command, its stdin and env values are not recorded: only which fields were set
    /// and the exit code.
    public func exec(
        _ principal: Principal, id: String, _ request: ExecRequest, onOutput: (@Sendable (ExecChunk) -> Void)? = nil
    ) async throws(ServiceError) -> ExecResult {
        var fields = ["command"]
        if request.stdin != nil { fields.append("stdin") }
        if request.env != nil { fields.append("env") }
        if request.cwd != nil { fields.append("cwd") }
        if request.timeoutSeconds != nil { fields.append("timeout_seconds") }
        return try await audited(
            principal, "devbox.exec", devboxId: id, detail: ["fields": .strings(fields)],
            okDetail: { r in
                var d: [String: AuditValue] = ["timed_out": .bool(r.timedOut)]
                if let c = r.exitCode { d["exit_code"] = .int(c) }
                if let s = r.signal { d["signal"] = .int(s) }
                return d
            }
        ) { () async throws(ServiceError) in
            try await execUnaudited(principal, id: id, request, onOutput: onOutput)
        }
    }

    public func writeFile(
        _ principal: Principal, id: String, path: String, bytes: [UInt8], mode: String?
    ) async throws(ServiceError) -> FileWriteResult {
        try await audited(
            principal, "file.write", devboxId: id, target: Self.auditPath(path),
            okDetail: { ["size": .int($0.size), "created": .bool($0.created)] }
        ) { () async throws(ServiceError) in
            try await writeFileUnaudited(principal, id: id, path: path, bytes: bytes, mode: mode)
        }
    }

    public func deletePath(_ principal: Principal, id: String, path: String, recursive: Bool) async throws(ServiceError) {
        try await audited(
            principal, "file.delete", devboxId: id, target: Self.auditPath(path), detail: ["recursive": .bool(recursive)]
        ) { () async throws(ServiceError) in
            try await deletePathUnaudited(principal, id: id, path: path, recursive: recursive)
        }
    }

    public func createSession(_ principal: Principal, devboxId: String, ttlSeconds: Int?) async throws(ServiceError) -> AccessSession {
        try await audited(
            principal, "session.create", devboxId: devboxId, okDetail: { ["session_id": .string($0.sessionId)] }
        ) { () async throws(ServiceError) in
            try await createSessionUnaudited(principal, devboxId: devboxId, ttlSeconds: ttlSeconds)
        }
    }

    public func revokeSession(_ principal: Principal, devboxId: String, sessionId: String) async throws(ServiceError) {
        try await audited(
            principal, "session.revoke", devboxId: devboxId, target: String(sessionId.prefix(64))
        ) { () async throws(ServiceError) in
            try await revokeSessionUnaudited(principal, devboxId: devboxId, sessionId: sessionId)
        }
    }

    public func setSSHKey(_ principal: Principal, publicKey: String) async throws(ServiceError) {
        try await audited(principal, "user.ssh_key.set", devboxId: nil) { () async throws(ServiceError) in
            try await setSSHKeyUnaudited(principal, publicKey: publicKey)
        }
    }

    public func deleteSSHKey(_ principal: Principal) async throws(ServiceError) {
        try await audited(principal, "user.ssh_key.delete", devboxId: nil) { () async throws(ServiceError) in
            try await deleteSSHKeyUnaudited(principal)
        }
    }

    public func setNetwork(_ principal: Principal, id: String, _ n: DevboxNetwork) async throws(ServiceError) -> DevboxNetwork {
        try await audited(
            principal, "devbox.network.set", devboxId: id, detail: ["egress": .string(String(n.egress.prefix(32)))]
        ) { () async throws(ServiceError) in
            try await setNetworkUnaudited(principal, id: id, n)
        }
    }

    /// Records which keys were replaced or removed, never their values.
    public func replaceCredentials(
        _ principal: Principal, id: String, claudeToken: String?, codexToken: String?
    ) async throws(ServiceError) -> Devbox {
        var d: [String: AuditValue] = [:]
        if let c = claudeToken { d["claude"] = .string(c.isEmpty ? "removed" : "replaced") }
        if let c = codexToken { d["codex"] = .string(c.isEmpty ? "removed" : "replaced") }
        return try await audited(principal, "devbox.credentials.replace", devboxId: id, detail: d) {
            () async throws(ServiceError) in
            try await replaceCredentialsUnaudited(principal, id: id, claudeToken: claudeToken, codexToken: codexToken)
        }
    }

    public func startGitHubOAuth(_ principal: Principal, redirectURL: String) async throws(ServiceError) -> GitHubOAuthStart {
        try await audited(principal, "github.connect", devboxId: nil) { () async throws(ServiceError) in
            try await startGitHubOAuthUnaudited(principal, redirectURL: redirectURL)
        }
    }

    public func disconnectGitHub(_ principal: Principal) async throws(ServiceError) {
        try await audited(principal, "github.disconnect", devboxId: nil) { () async throws(ServiceError) in
            try await disconnectGitHubUnaudited(principal)
        }
    }

    public func setGitHubOrgGrants(_ principal: Principal, orgs: [String]) async throws(ServiceError) {
        try await audited(
            principal, "github.org_grants.set", devboxId: nil, detail: ["count": .int(orgs.count)]
        ) { () async throws(ServiceError) in
            try await setGitHubOrgGrantsUnaudited(principal, orgs: orgs)
        }
    }

    /// A dashboard sign-in that succeeded (a failed one has no principal to record).
    public func signInDashboard(
        providerToken: String, userToken: String?
    ) async throws(ServiceError) -> (cookie: String, session: DashboardSession) {
        let r = try await signInDashboardUnaudited(providerToken: providerToken, userToken: userToken)
        recordAudit(r.session.principal, action: "dashboard.sign_in", devboxId: nil, result: "ok", face: "dashboard")
        return r
    }

    /// An SSH login the gateway accepted (a refused one names no user to record).
    public func authorizeSSH(username: String, keyType: String, keyBlob: [UInt8]) async -> SSHGrant? {
        guard let g = await authorizeSSHUnaudited(username: username, keyType: keyType, keyBlob: keyBlob) else { return nil }
        recordAudit(nil, userId: g.userId, action: "ssh.login", devboxId: g.devboxId, target: g.sessionId, result: "ok", face: "ssh")
        return g
    }

    /// An action of the service itself (idle stop, lifetime expiry): no token, the devbox's
    /// owner as the user (its provider is looked up when stored).
    func recordSystemAudit(_ action: String, devboxId: String, detail: [String: AuditValue] = [:]) async {
        let owner = try? await db.devboxRecord(id: devboxId)?.userId
        recordAudit(nil, userId: owner, action: action, devboxId: devboxId, result: "ok", detail: detail, face: "system")
    }

    // MARK: Helpers

    /// The top-level fields a create request set (names only: env keys and values, tokens
    /// and commands stay out of the log).
    static func fieldNames(_ r: CreateDevboxRequest) -> [String] {
        var f = ["name"]
        if r.plan != nil { f.append("plan") }
        if r.repository != nil { f.append("repository") }
        if r.branch != nil { f.append("branch") }
        if r.repositories != nil { f.append("repositories") }
        if r.credentialProfile != nil { f.append("credential_profile") }
        if r.env != nil { f.append("env") }
        if r.setupCommands != nil { f.append("setup_commands") }
        if r.setupTimeoutSeconds != nil { f.append("setup_timeout_seconds") }
        if r.idleTimeoutSeconds != nil { f.append("idle_timeout_seconds") }
        if r.ttlSeconds != nil { f.append("ttl_seconds") }
        if r.network != nil { f.append("network") }
        if r.credentialMode != nil { f.append("credential_mode") }
        return f
    }

    /// A file path as recorded: bounded, and control characters replaced.
    static func auditPath(_ p: String) -> String {
        String(String(p.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : Character($0) }).prefix(512))
    }
}
