import DevboxModel
import Foundation
import Logging

/// Audit settings: `DEVBOX_AUDIT_LOG=stderr` also writes each event to stderr as one JSON
/// line; `DEVBOX_AUDIT_RETENTION` (seconds, 0 = forever; default 90 days) bounds the table.
public struct AuditSettings: Sendable {
    public var toStderr = false
    public var retentionSeconds: Int? = 90 * 86400
    public init() {}
}

/// The audit log's hook: every state-changing action of the service layer, whichever face
/// called it (REST, MCP, dashboard, SSH — they all call the services' public methods), is
/// recorded here with who (provider token id, user id), what, which devbox, the result,
/// when, and the request's origin (face, source address, request id: `RequestOrigin.current`).
///
/// Each service's audited entry point (a public method) wraps the `…Unaudited` method that
/// does the work in `audited`. Nothing secret is recorded: no env values, tokens, keys,
/// commands or bodies; at most the names of the fields a request set. One `Auditor` (one
/// queue, `AuditLog`) is shared by every service that records.
public final class Auditor: Sendable, LoggingService {
    let log = AuditLog()
    let db: AppDatabase
    let settings: AuditSettings
    let logger: Logger

    public init(database: AppDatabase, settings: AuditSettings, logger: Logger) {
        self.db = database
        self.settings = settings
        self.logger = logger
    }

    /// Records one event for `principal` (or a system action for `userId`).
    func record(
        _ principal: Principal?, userId: String? = nil, action: String, devboxId: String?, target: String? = nil,
        result: String, detail: [String: AuditValue] = [:], face: String? = nil
    ) {
        let origin = RequestOrigin.current
        log.record(
            AuditEvent(
                providerId: principal?.providerId, providerTokenId: principal?.providerTokenId,
                userId: principal?.userId ?? userId, face: face ?? origin?.face ?? "system", action: action,
                devboxId: devboxId, target: target, result: result, source: origin?.source, requestId: origin?.requestId,
                detail: detail), db: db, toStderr: settings.toStderr, logger: logger)
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
            record(
                principal, action: action, devboxId: devboxId ?? okDevboxId(r), target: target, result: "ok",
                detail: detail.merging(okDetail(r)) { a, _ in a })
            return r
        } catch {
            var d = detail
            if let f = error.field { d["field"] = .string(f) }
            record(principal, action: action, devboxId: devboxId, target: target, result: error.code, detail: d)
            throw error
        }
    }

    /// An action of the service itself (idle stop, lifetime expiry): no token, the devbox's
    /// owner as the user (its provider is looked up when stored).
    func recordSystem(_ action: String, devboxId: String, detail: [String: AuditValue] = [:]) async {
        let owner = try? await db.devboxRecord(id: devboxId)?.userId
        record(nil, userId: owner, action: action, devboxId: devboxId, result: "ok", detail: detail, face: "system")
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
        await log.flush()
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
    public func flush() async { await log.flush() }

    /// Drops audit events past `DEVBOX_AUDIT_RETENTION` (run by the lifetime worker).
    func purge(now: Date = Date()) async {
        guard let retention = settings.retentionSeconds else { return }
        do {
            let n = try await db.purgeAudit(before: now.addingTimeInterval(-TimeInterval(retention)))
            if n > 0 { logger.info("purged audit events", metadata: ["count": "\(n)"]) }
        } catch {
            logger.error("purging audit events failed: \(error)")
        }
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
