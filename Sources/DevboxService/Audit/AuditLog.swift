import DevboxModel
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Appends audit events to `audit_events`, batched: `record` only queues (a lock and an
/// append, no await), so the create path does not wait for an audit write; a background
/// drain commits whatever has queued in one transaction without waiting for the disk
/// (`progressWrite`), and events arriving meanwhile share the next one. A crash of the
/// service loses at most the events of the last few milliseconds (power loss: the commits
/// not yet synced). Reads (`GET /api/v1/audit`) flush first, so a caller sees its own actions.
/// With `DEVBOX_AUDIT_LOG=stderr` each stored event is also written to stderr as one JSON line.
public final class AuditLog: Sendable {
    private struct State {
        var queue: [AuditEvent] = []
        var draining = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    public init() {
        Self.live.withLock { list in
            list.removeAll { $0.log == nil }
            list.append(Weak(log: self))
        }
    }

    private struct Weak: Sendable { weak var log: AuditLog? }
    private static let live = Mutex<[Weak]>([])

    /// Flushes every audit log of the process: `devbox serve` calls it once the service
    /// group has ended (HTTP drained), so the last requests' events are stored before exit.
    public static func flushAll() async {
        for w in live.withLock({ $0 }) {
            if let log = w.log { await log.flush() }
        }
    }

    /// Queues an event; the drain that stores it writes to `db` (the core's one database).
    func record(_ event: AuditEvent, db: AppDatabase, toStderr: Bool, logger: Logger) {
        let start = state.withLock { s -> Bool in
            s.queue.append(event)
            if s.draining { return false }
            s.draining = true
            return true
        }
        if start { Task.detached { await self.drain(db: db, toStderr: toStderr, logger: logger) } }
    }

    /// Returns once every event recorded before the call is stored (or its write failed).
    public func flush() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { s -> Bool in
                if !s.draining && s.queue.isEmpty { return true }
                s.waiters.append(c)
                return false
            }
            if idle { c.resume() }
        }
    }

    private func drain(db: AppDatabase, toStderr: Bool, logger: Logger) async {
        while true {
            let (batch, waiters) = state.withLock { s -> ([AuditEvent], [CheckedContinuation<Void, Never>]) in
                let b = s.queue
                s.queue = []
                if !b.isEmpty { return (b, []) }
                s.draining = false
                let w = s.waiters
                s.waiters = []
                return (b, w)
            }
            if batch.isEmpty {
                for w in waiters { w.resume() }
                return
            }
            var stored = batch
            do {
                let seqs = try await db.appendAudit(batch)
                for i in stored.indices where i < seqs.count { stored[i].seq = seqs[i] }
            } catch {
                logger.error("audit write failed", metadata: ["events": "\(batch.count)", "error": "\(error)"])
            }
            if toStderr { Self.writeLines(stored) }
        }
    }

    static let encoder = DevboxJSON.encoder()

    /// One JSON object per event, `"type": "audit"` telling it from log lines.
    static func writeLines(_ events: [AuditEvent]) {
        var out: [UInt8] = []
        for e in events {
            guard let data = try? encoder.encode(AuditLine(event: e)) else { continue }
            out += data
            out.append(UInt8(ascii: "\n"))
        }
        var rest = out[...]
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            rest = rest.dropFirst(n)
        }
    }

    struct AuditLine: Encodable {
        var event: AuditEvent
        enum CodingKeys: String, CodingKey { case type }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode("audit", forKey: .type)
            try event.encode(to: encoder)
        }
    }
}

extension AuditEvent: Encodable {
    enum CodingKeys: String, CodingKey {
        case id, time, providerId = "provider_id", providerTokenId = "provider_token_id", userId = "user_id", face,
            action, devboxId = "devbox_id", target, result, source, requestId = "request_id", detail
    }

    /// Every key is present (null when unknown): the wire shape of `GET /api/v1/audit`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(seq, forKey: .id)
        try c.encode(at, forKey: .time)
        try c.encode(providerId, forKey: .providerId)
        try c.encode(providerTokenId, forKey: .providerTokenId)
        try c.encode(userId, forKey: .userId)
        try c.encode(face, forKey: .face)
        try c.encode(action, forKey: .action)
        try c.encode(devboxId, forKey: .devboxId)
        try c.encode(target, forKey: .target)
        try c.encode(result, forKey: .result)
        try c.encode(source, forKey: .source)
        try c.encode(requestId, forKey: .requestId)
        try c.encode(detail, forKey: .detail)
    }
}
