import DevboxModel
import Foundation
import Synchronization

/// Idle timeouts and lifetimes: their defaults and bounds (docs/ARCHITECTURE.md, "Lifetimes").
///
/// - idle timeout: a ready devbox with no activity (exec, files API call, SSH login or
///   channel, an open SSH connection, a running exec) for that long is stopped. Default 3600 s.
/// - ttl: the devbox is destroyed `ttl` seconds after it was created, whatever it does.
///   Default: none.
/// On create, a missing field takes the default and 0 turns the feature off.
public struct LifetimeSettings: Sendable, Equatable {
    /// nil: no idle timeout unless the create request sets one.
    public var defaultIdleTimeoutSeconds: Int? = 3600
    /// nil: no lifetime unless the create request sets one.
    public var defaultTTLSeconds: Int? = nil
    /// Smallest idle timeout or ttl a request may set (tests lower it).
    public var minimumSeconds: Int = 60
    /// How often the lifetime worker looks for idle and expired devboxes.
    public var checkInterval: Duration = .seconds(10)
    /// Activity is written to the database at most this often per devbox.
    public var activityWriteInterval: TimeInterval = 2
    /// A destroyed devbox stays visible (GET, list, operations) this long, then it is purged
    /// with its operations (`DEVBOX_DESTROYED_RETENTION`; nil keeps them forever).
    public var destroyedRetentionSeconds: Int? = 24 * 3600

    public init() {}

    /// The value a create request ends up with: nil → `default`, 0 → off, else in
    /// `minimumSeconds...max` (422 naming `field` otherwise).
    func resolve(_ requested: Int?, default value: Int?, max: Int, field: String) throws(ServiceError) -> Int? {
        guard let requested else { return value }
        if requested == 0 { return nil }
        guard (minimumSeconds...Swift.max(minimumSeconds, max)).contains(requested) else {
            throw .validation(
                field: field, message: "\(field) must be 0 (off) or between \(minimumSeconds) and \(max) seconds")
        }
        return requested
    }
}

/// What the lifetime worker does to one devbox. Pure: tested without I/O.
enum LifetimeAction: Equatable {
    case none
    /// The devbox is in use (a live SSH connection or a running exec): its activity clock restarts now.
    case touch
    /// Idle for longer than its idle timeout: stop it.
    case stop
    /// Past `expires_at`: destroy it.
    case destroy
}

enum LifetimePolicy {
    struct Clock: Equatable {
        var state: DevboxState
        var idleTimeoutSeconds: Int?
        var expiresAt: Date?
        var lastActivityAt: Date?
        var readyAt: Date?
        var createdAt: Date
    }

    /// Expiry wins over idleness; a live SSH connection counts as activity.
    static func decide(_ c: Clock, now: Date, liveConnections: Int) -> LifetimeAction {
        if c.state == .destroyed { return .none }
        if let expires = c.expiresAt, now >= expires { return .destroy }
        guard c.state == .ready, let idle = c.idleTimeoutSeconds else { return .none }
        if liveConnections > 0 { return .touch }
        let last = [c.lastActivityAt, c.readyAt, c.createdAt].compactMap { $0 }.max() ?? c.createdAt
        return now.timeIntervalSince(last) >= TimeInterval(idle) ? .stop : .none
    }
}

/// Remembers when activity was last written per devbox, so a burst of exec calls costs
/// one database write, not one each.
final class ActivityDebounce: Sendable {
    private let last = Mutex<[String: Date]>([:])

    /// True when a write is due for `id` at `now` (and records it as done).
    func shouldWrite(_ id: String, now: Date, interval: TimeInterval) -> Bool {
        last.withLock { m in
            if let t = m[id], now.timeIntervalSince(t) < interval, now >= t { return false }
            m[id] = now
            if m.count > 10_000 { m = m.filter { now.timeIntervalSince($0.value) < interval } }
            return true
        }
    }

    func forget(_ id: String) { _ = last.withLock { $0.removeValue(forKey: id) } }
}

/// Commands running per devbox: a devbox busy with an exec is in use however long the
/// command runs (the lifetime worker counts it like a live SSH connection).
final class InFlight: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func begin(_ id: String) { counts.withLock { $0[id, default: 0] += 1 } }

    func end(_ id: String) {
        counts.withLock { m in
            let n = (m[id] ?? 1) - 1
            m[id] = n > 0 ? n : nil
        }
    }

    func count(_ id: String) -> Int { counts.withLock { $0[id] ?? 0 } }
}
