import Foundation
import GRDB

/// One row of `audit_events` (migration "v8-audit"): who did what to which devbox, from
/// where, with which result. Never a secret: actions name the request's fields at most.
/// The table has no foreign keys on purpose: its rows outlive the purge of destroyed
/// devboxes (DEVBOX_DESTROYED_RETENTION) and are dropped by their own retention
/// (DEVBOX_AUDIT_RETENTION).
public struct AuditEvent: Sendable, Equatable {
    /// Increasing; the cursor of pages (newest first). 0 until stored.
    public var seq: Int64
    public var at: Date
    /// nil for a system action whose provider is looked up from `userId` when stored.
    public var providerId: String?
    public var providerTokenId: String?
    public var userId: String?
    /// api, mcp, dashboard, ssh or system.
    public var face: String
    /// `devbox.create`, `devbox.delete`, `session.create`, … (docs/SECURITY.md lists them).
    public var action: String
    public var devboxId: String?
    /// The other object acted on: a session id, a file path.
    public var target: String?
    /// `ok`, or the API error code (`not_found`, `conflict`, …).
    public var result: String
    public var source: String?
    public var requestId: String?
    /// Small non-secret facts as a JSON object: field names, exit codes, counts.
    public var detail: [String: AuditValue]

    public init(
        seq: Int64 = 0, at: Date = Date(), providerId: String?, providerTokenId: String?, userId: String?, face: String,
        action: String, devboxId: String?, target: String? = nil, result: String, source: String? = nil,
        requestId: String? = nil, detail: [String: AuditValue] = [:]
    ) {
        self.seq = seq
        self.at = at
        self.providerId = providerId
        self.providerTokenId = providerTokenId
        self.userId = userId
        self.face = face
        self.action = action
        self.devboxId = devboxId
        self.target = target
        self.result = result
        self.source = source
        self.requestId = requestId
        self.detail = detail
    }
}

/// A value of an audit event's `detail`: a string, a number, a flag or a list of names.
public enum AuditValue: Sendable, Equatable, Codable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case strings([String])

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let i): try c.encode(i)
        case .bool(let b): try c.encode(b)
        case .strings(let a): try c.encode(a)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else {
            self = .strings(try c.decode([String].self))
        }
    }
}

/// Which events a read returns (always within one provider).
public struct AuditQuery: Sendable, Equatable {
    public var providerId: String
    /// Only this user's events (a caller with a user token); nil: the provider's.
    public var userId: String?
    public var devboxId: String?
    public var action: String?
    public var since: Date?
    /// Events older than this sequence number (the cursor).
    public var before: Int64?
    public var limit: Int

    public init(
        providerId: String, userId: String? = nil, devboxId: String? = nil, action: String? = nil, since: Date? = nil,
        before: Int64? = nil, limit: Int = 100
    ) {
        self.providerId = providerId
        self.userId = userId
        self.devboxId = devboxId
        self.action = action
        self.since = since
        self.before = before
        self.limit = limit
    }
}

extension AppDatabase {
    static func migrateAudit(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE audit_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                at DATETIME NOT NULL,
                provider_id TEXT,
                provider_token_id TEXT,
                user_id TEXT,
                face TEXT NOT NULL,
                action TEXT NOT NULL,
                devbox_id TEXT,
                target TEXT,
                result TEXT NOT NULL,
                source TEXT,
                request_id TEXT,
                detail TEXT NOT NULL DEFAULT '{}'
            );
            CREATE INDEX audit_events_provider ON audit_events(provider_id, seq);
            CREATE INDEX audit_events_user ON audit_events(user_id, seq);
            CREATE INDEX audit_events_devbox ON audit_events(devbox_id, seq);
            CREATE INDEX audit_events_at ON audit_events(at);
            """)
    }

    /// Appends events in one transaction, without waiting for the disk (`progressWrite`):
    /// the next FULL commit or checkpoint carries them. Answers each event's sequence number.
    func appendAudit(_ events: [AuditEvent]) async throws -> [Int64] {
        try await progressWrite { db in
            var seqs: [Int64] = []
            let stmt = try db.cachedStatement(
                sql: """
                    INSERT INTO audit_events
                      (at, provider_id, provider_token_id, user_id, face, action, devbox_id, target, result, source,
                       request_id, detail)
                    VALUES (?, COALESCE(?, (SELECT provider_id FROM users WHERE id = ?)), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            for e in events {
                try stmt.execute(arguments: [
                    e.at, e.providerId, e.userId, e.providerTokenId, e.userId, e.face, e.action, e.devboxId, e.target,
                    e.result, e.source, e.requestId, AuditCoding.detailJSON(e.detail),
                ])
                seqs.append(db.lastInsertedRowID)
            }
            return seqs
        }
    }

    /// A page of events, newest first.
    public func auditEvents(_ q: AuditQuery) async throws -> [AuditEvent] {
        try await pool.read { db in
            var sql = "SELECT * FROM audit_events WHERE provider_id = ?"
            var args: [any DatabaseValueConvertible] = [q.providerId]
            if let u = q.userId {
                sql += " AND user_id = ?"
                args.append(u)
            }
            if let d = q.devboxId {
                sql += " AND devbox_id = ?"
                args.append(d)
            }
            if let a = q.action {
                // `devbox` matches every devbox.* action; `devbox.create` only itself.
                if a.contains(".") {
                    sql += " AND action = ?"
                    args.append(a)
                } else {
                    sql += " AND action >= ? AND action < ?"
                    args.append(a + ".")
                    args.append(a + "/")
                }
            }
            if let s = q.since {
                sql += " AND at >= ?"
                args.append(s)
            }
            if let b = q.before {
                sql += " AND seq < ?"
                args.append(b)
            }
            sql += " ORDER BY seq DESC LIMIT ?"
            args.append(q.limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { row in
                AuditEvent(
                    seq: row["seq"], at: row["at"], providerId: row["provider_id"], providerTokenId: row["provider_token_id"],
                    userId: row["user_id"], face: row["face"], action: row["action"], devboxId: row["devbox_id"],
                    target: row["target"], result: row["result"], source: row["source"], requestId: row["request_id"],
                    detail: AuditCoding.detail(fromJSON: row["detail"]))
            }
        }
    }

    /// Deletes events older than `before` (DEVBOX_AUDIT_RETENTION); answers how many.
    func purgeAudit(before: Date) async throws -> Int {
        try await progressWrite { db in
            try db.execute(sql: "DELETE FROM audit_events WHERE at < ?", arguments: [before])
            return db.changesCount
        }
    }
}

enum AuditCoding {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func detailJSON(_ d: [String: AuditValue]) -> String {
        (try? encoder.encode(d)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    static func detail(fromJSON s: String?) -> [String: AuditValue] {
        guard let s, let data = s.data(using: .utf8) else { return [:] }
        return (try? JSONDecoder().decode([String: AuditValue].self, from: data)) ?? [:]
    }
}
