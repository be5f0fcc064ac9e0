import DevboxSecurity
import Foundation

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
actor TokenCache {
    struct Entry: Sendable {
        var tokenId: String
        var providerId: String
    }
    typealias Rows = [(id: String, providerId: String, hash: String)]

    /// Live hashes as bytes, converted once per load rather than on every request.
    private var tokens: [(hash: [UInt8], entry: Entry)] = []
    /// The data version the list is known current at (nil until the first load).
    private var checkedDataVersion: Int?
    /// The auth version read before `tokens` was loaded (so the list holds at least every
    /// token change up to it); nil: none loaded, or the version could not be read.
    private var loadedAuthVersion: Int?
    /// The load in flight, for the auth version it was started at: lookups that need the
    /// same list wait for it instead of starting their own.
    private var loading: (authVersion: Int, task: Task<Rows, any Error>)?
    private var users: [String: String] = [:]

    /// `version` and `authVersion` are read synchronously, inside the actor
    /// (`AppDatabase.dataVersion` / `authVersion`: a few microseconds, never wait); nil
    /// means it could not tell, and the list is reloaded.
    func lookup(
        hash: String, version: @Sendable () -> Int?, authVersion: @Sendable () -> Int?,
        load: @escaping @Sendable () async throws -> Rows
    ) async throws -> Entry? {
        // Read after the request arrived: any commit the caller could know of is counted.
        let current = version()
        if let current, checkedDataVersion == current {
            return constantTimeFind(hash)
        }
        let auth = authVersion()
        if let auth, loadedAuthVersion == auth {
            checkedDataVersion = current
            return constantTimeFind(hash)
        }
        let rows: Rows
        if let auth, let loading, loading.authVersion == auth {
            rows = try await loading.task.value
        } else {
            let task = Task { try await load() }
            if let auth { loading = (auth, task) }
            defer { if let auth, loading?.authVersion == auth { loading = nil } }
            rows = try await task.value
        }
        // Another lookup may have stored a list meanwhile (the actor is re-entered across the
        // awaits); whichever is stored, a later version check decides whether it is current.
        tokens = rows.map { (Array($0.hash.utf8), Entry(tokenId: $0.id, providerId: $0.providerId)) }
        loadedAuthVersion = auth
        checkedDataVersion = auth == nil ? nil : current
        return constantTimeFind(hash)
    }

    /// Compares the presented hash with every live hash without an early exit.
    private func constantTimeFind(_ hash: String) -> Entry? {
        var found: Entry?
        let presented = Array(hash.utf8)
        for t in tokens where ConstantTime.equals(t.hash, presented) {
            found = t.entry
        }
        return found
    }

    func user(providerId: String, subject: String, resolve: @Sendable () async throws -> String) async throws -> String {
        let key = providerId + "\u{0}" + subject
        if let u = users[key] { return u }
        let u = try await resolve()
        users[key] = u
        return u
    }
}
