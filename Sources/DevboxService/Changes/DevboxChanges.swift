import ServiceLifecycle
import Synchronization

/// In-process change notifications per devbox. `DevboxChangeObserver` (a transaction observer
/// on the database) publishes after every commit that touched a devbox row, one of its
/// operation rows or one of its repository rows, whichever code made the write; waiters
/// subscribe to one devbox and re-read it when woken.
///
/// No change is lost between a read and the wait that follows it: subscribe first, then read,
/// then call `next` — a change committed after the subscription began wakes the next `next`
/// even if it came before the call. Changes made by another process (another connection to
/// the same file) are not seen: such readers poll.
public final class DevboxChanges: Sendable {
    /// Why `DevboxChangeSubscription.next` returned.
    public enum Wake: Sendable, Equatable {
        /// The devbox (or one of its operations or repositories) changed: read it again.
        case changed
        /// The timeout passed without a change.
        case timedOut
        /// The waiting task was cancelled.
        case cancelled
        /// The service is shutting down gracefully: waiting is over for good.
        case shutdown
    }

    enum Signal: Sendable {
        case changed(UInt64)
        case ended
        case cancelled
    }

    private struct Subscriber {
        var devboxId: String
        /// The publication count when this subscriber was last woken by a change, and now.
        var seen: UInt64
        var latest: UInt64
        var ended = false
        var waiter: CheckedContinuation<Signal, Never>?
    }

    private struct State {
        var subscribers: [UInt64: Subscriber] = [:]
        var byDevbox: [String: Set<UInt64>] = [:]
        var nextId: UInt64 = 0
        /// Counts publications (each stamps the subscribers it reaches).
        var publications: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Whether anyone is subscribed (the observer skips resolving rows when nobody is).
    public var hasSubscribers: Bool { state.withLock { !$0.subscribers.isEmpty } }

    /// Subscribers of one devbox, and how many of them are suspended in `next` (tests).
    func subscriberCount(devboxId: String) -> Int { state.withLock { $0.byDevbox[devboxId]?.count ?? 0 } }
    func waiterCount(devboxId: String) -> Int {
        state.withLock { s in (s.byDevbox[devboxId] ?? []).count { s.subscribers[$0]?.waiter != nil } }
    }

    /// Starts listening for changes of `devboxId`. Cancel it (or let it go) when done.
    public func subscribe(devboxId: String) -> DevboxChangeSubscription {
        let id: UInt64 = state.withLock { s in
            s.nextId += 1
            s.subscribers[s.nextId] = Subscriber(devboxId: devboxId, seen: s.publications, latest: s.publications)
            s.byDevbox[devboxId, default: []].insert(s.nextId)
            return s.nextId
        }
        return DevboxChangeSubscription(changes: self, id: id)
    }

    /// Wakes the subscribers of these devboxes.
    public func publish(_ devboxIds: some Sequence<String>) {
        let woken: [(CheckedContinuation<Signal, Never>, UInt64)] = state.withLock { s in
            s.publications += 1
            let stamp = s.publications
            var woken: [(CheckedContinuation<Signal, Never>, UInt64)] = []
            for devboxId in devboxIds {
                for sid in s.byDevbox[devboxId] ?? [] {
                    if let w = Self.stamp(&s, sid, stamp) { woken.append((w, stamp)) }
                }
            }
            return woken
        }
        for (w, stamp) in woken { w.resume(returning: .changed(stamp)) }
    }

    /// Wakes every subscriber (a change whose devbox could not be told, e.g. a deleted row).
    public func publishAll() {
        let woken: [(CheckedContinuation<Signal, Never>, UInt64)] = state.withLock { s in
            s.publications += 1
            let stamp = s.publications
            return s.subscribers.keys.compactMap { sid in Self.stamp(&s, sid, stamp).map { ($0, stamp) } }
        }
        for (w, stamp) in woken { w.resume(returning: .changed(stamp)) }
    }

    private static func stamp(_ s: inout State, _ sid: UInt64, _ stamp: UInt64) -> CheckedContinuation<Signal, Never>? {
        guard var sub = s.subscribers[sid] else { return nil }
        sub.latest = stamp
        let waiter = sub.waiter
        sub.waiter = nil
        s.subscribers[sid] = sub
        return waiter
    }

    // MARK: used by DevboxChangeSubscription

    /// A change not yet consumed, or the end of the subscription, without waiting.
    func immediate(_ sid: UInt64) -> Wake? {
        state.withLock { s in
            guard var sub = s.subscribers[sid] else { return .shutdown }
            if sub.latest > sub.seen {
                sub.seen = sub.latest
                s.subscribers[sid] = sub
                return .changed
            }
            return sub.ended ? .shutdown : nil
        }
    }

    /// Records that a change stamped `stamp` was handed to the subscriber's caller.
    func consumed(_ sid: UInt64, _ stamp: UInt64) {
        state.withLock { s in
            guard var sub = s.subscribers[sid] else { return }
            sub.seen = max(sub.seen, stamp)
            s.subscribers[sid] = sub
        }
    }

    /// Suspends until a change, the end of the subscription or cancellation of the task.
    func signal(_ sid: UInt64) async -> Signal {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Signal, Never>) in
                let now: Signal? = state.withLock { s in
                    guard var sub = s.subscribers[sid] else { return .ended }
                    if sub.latest > sub.seen { return .changed(sub.latest) }
                    if sub.ended { return .ended }
                    // The cancellation handler sets the flag before it takes the lock: either it
                    // finds this waiter, or this check sees the flag.
                    if Task.isCancelled { return .cancelled }
                    sub.waiter = c
                    s.subscribers[sid] = sub
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            self.take(sid)?.resume(returning: .cancelled)
        }
    }

    /// Ends a subscription's waiting for good (graceful shutdown).
    func end(_ sid: UInt64) {
        let w: CheckedContinuation<Signal, Never>? = state.withLock { s in
            guard var sub = s.subscribers[sid] else { return nil }
            sub.ended = true
            let w = sub.waiter
            sub.waiter = nil
            s.subscribers[sid] = sub
            return w
        }
        w?.resume(returning: .ended)
    }

    func remove(_ sid: UInt64) {
        let w: CheckedContinuation<Signal, Never>? = state.withLock { s in
            guard let sub = s.subscribers.removeValue(forKey: sid) else { return nil }
            s.byDevbox[sub.devboxId]?.remove(sid)
            if s.byDevbox[sub.devboxId]?.isEmpty == true { s.byDevbox[sub.devboxId] = nil }
            return sub.waiter
        }
        w?.resume(returning: .ended)
    }

    private func take(_ sid: UInt64) -> CheckedContinuation<Signal, Never>? {
        state.withLock { s in
            guard var sub = s.subscribers[sid], let w = sub.waiter else { return nil }
            sub.waiter = nil
            s.subscribers[sid] = sub
            return w
        }
    }
}

/// One listener for one devbox's changes; one `next` at a time. Ends when cancelled or released.
public final class DevboxChangeSubscription: Sendable {
    let changes: DevboxChanges
    let id: UInt64

    init(changes: DevboxChanges, id: UInt64) {
        self.changes = changes
        self.id = id
    }

    deinit { changes.remove(id) }

    public func cancel() { changes.remove(id) }

    /// Returns `.changed` as soon as the devbox changed after the subscription began (or after
    /// the previous `.changed`), `.timedOut` after `timeout`, `.cancelled` when the task is
    /// cancelled, `.shutdown` once the service shuts down gracefully (from then on at once).
    public func next(timeout: Duration) async -> DevboxChanges.Wake {
        if let now = changes.immediate(id) { return now }
        if timeout <= .zero { return .timedOut }
        enum Outcome: Sendable {
            case signal(DevboxChanges.Signal)
            case timedOut
            case cancelled
        }
        let changes = self.changes
        let id = self.id
        let outcome = await withGracefulShutdownHandler {
            await withTaskGroup(of: Outcome.self) { group in
                group.addTask { .signal(await changes.signal(id)) }
                group.addTask {
                    do {
                        try await Task.sleep(for: timeout)
                        return .timedOut
                    } catch {
                        return .cancelled
                    }
                }
                let first = await group.next() ?? .cancelled
                group.cancelAll()
                return first
            }
        } onGracefulShutdown: {
            changes.end(id)
        }
        switch outcome {
        case .signal(.changed(let stamp)):
            changes.consumed(id, stamp)
            return .changed
        case .signal(.ended):
            return .shutdown
        case .signal(.cancelled), .cancelled:
            return .cancelled
        case .timedOut:
            return .timedOut
        }
    }
}
