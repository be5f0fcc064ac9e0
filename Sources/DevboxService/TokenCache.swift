import DevboxSecurity
import Foundation
import Synchronization

/// Caches live provider-token hashes and user ids so authentication costs one
/// `PRAGMA data_version` rather than a query of the tokens on the hot path. The cached list
/// is used only while no commit changed the tokens since it was loaded, from this process
/// or another (`devbox token create` / `revoke` write the same file): a new token works on
/// its first request, a revoked one is refused on the first request after the revoke.
/// Nothing is remembered of a miss: an unknown hash is looked for again, in the list
/// current at its next request.
///
/// Two versions tell: `data_version` moves on every commit of any connection (so it is
/// read first, on every request); when it moved, `auth_version` (bumped by triggers on
/// `provider_tokens`) tells whether the tokens changed. Under create/delete churn the
/// database commits hundreds of times a second: with `data_version` alone, each commit
/// made the requests after it reload the list, and every request that arrived while a
/// load was in flight started one of its own.
///
/// A class with a lock, not an actor: a hit (the version check and the compare) runs on the
/// caller's thread, without the two executor hops per request an actor's `lookup` and
/// `user` cost. Only a reload awaits.
final class TokenCache: Sendable {
    struct Entry: Sendable {
        var tokenId: String
        var providerId: String
    }
    typealias Rows = [(id: String, providerId: String, hash: String)]

    private struct State {
        /// Live hashes as bytes, converted once per load rather than on every request.
        var tokens: [(hash: [UInt8], entry: Entry)] = []
        /// The data version the list is known current at (nil until the first load).
        var checkedDataVersion: Int?
        /// The auth version read before `tokens` was loaded (so the list holds at least every
        /// token change up to it); nil: none loaded, or the version could not be read.
        var loadedAuthVersion: Int?
        /// The load in flight, for the auth version it was started at: lookups that need the
        /// same list wait for it instead of starting their own.
        var loading: (authVersion: Int, task: Task<Rows, any Error>)?
        var users: [String: String] = [:]
    }

    private let state = Mutex(State())

    /// `version` and `authVersion` are read synchronously, on the caller's thread
    /// (`AppDatabase.dataVersion` / `authVersion`: a few microseconds, never wait); nil
    /// means it could not tell, and the list is reloaded. The list, its auth version and the
    /// data version it is known current at change together, under the lock.
    func lookup(
        hash: String, version: @Sendable () -> Int?, authVersion: @Sendable () -> Int?,
        load: @escaping @Sendable () async throws -> Rows
    ) async throws -> Entry? {
        let presented = Array(hash.utf8)
        // Read after the request arrived: any commit the caller could know of is counted.
        let current = version()
        if let current, let hit = state.withLock({ s -> Entry?? in
            s.checkedDataVersion == current ? .some(Self.constantTimeFind(s.tokens, presented)) : nil
        }) {
            return hit
        }
        // Read after `current`: equal to the loaded list's, no token changed up to `current`.
        let auth = authVersion()
        if let auth, let hit = state.withLock({ s -> Entry?? in
            guard s.loadedAuthVersion == auth else { return nil }
            s.checkedDataVersion = current
            return .some(Self.constantTimeFind(s.tokens, presented))
        }) {
            return hit
        }
        let task = state.withLock { s -> Task<Rows, any Error> in
            if let auth, let loading = s.loading, loading.authVersion == auth { return loading.task }
            let task = Task { try await load() }
            if let auth { s.loading = (auth, task) }
            return task
        }
        let rows: Rows
        do {
            rows = try await task.value
        } catch {
            state.withLock { s in if let auth, s.loading?.authVersion == auth { s.loading = nil } }
            throw error
        }
        let tokens = rows.map { (hash: Array($0.hash.utf8), entry: Entry(tokenId: $0.id, providerId: $0.providerId)) }
        // Another lookup may have stored a list meanwhile; whichever is stored, a later
        // version check decides whether it is current.
        return state.withLock { s in
            if let auth, s.loading?.authVersion == auth { s.loading = nil }
            s.tokens = tokens
            s.loadedAuthVersion = auth
            s.checkedDataVersion = auth == nil ? nil : current
            return Self.constantTimeFind(tokens, presented)
        }
    }

    /// Compares the presented hash with every live hash without an early exit.
    private static func constantTimeFind(_ tokens: [(hash: [UInt8], entry: Entry)], _ presented: [UInt8]) -> Entry? {
        var found: Entry?
        for t in tokens where ConstantTime.equals(t.hash, presented) {
            found = t.entry
        }
        return found
    }

    func user(providerId: String, subject: String, resolve: @Sendable () async throws -> String) async throws -> String {
        let key = providerId + "\u{0}" + subject
        if let u = state.withLock({ $0.users[key] }) { return u }
        let u = try await resolve()
        state.withLock { $0.users[key] = u }
        return u
    }
}
