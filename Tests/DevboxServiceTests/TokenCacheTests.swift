import DevboxModel
import Foundation
import GRDB
import Synchronization
import Testing

@testable import DevboxService

/// Authentication under churn (issue 21): the token cache reloads the tokens only when
/// they change, whichever process changed them.
@Suite("Auth: the token cache")
struct TokenCacheTests {
    @Test("the token cache reloads only when tokens change, from this connection or another process's")
    func tokenCacheReloadsOnlyOnTokenChanges() async throws {
        try await ListPageTests.withDatabase { db, path in
            let first = try await db.insertProviderToken(providerName: "p", tokenHash: "hash-1", hint: "1")
            let cache = TokenCache()
            let loads = LoadCounter()
            func lookup(_ hash: String) async throws -> TokenCache.Entry? {
                try await cache.lookup(
                    hash: hash, version: { db.dataVersion() }, authVersion: { db.authVersion() },
                    load: { loads.add(); return try await db.liveTokenHashes() })
            }
            #expect(try await lookup("hash-1")?.tokenId == first.id)
            #expect(loads.value == 1)
            // Commits that do not touch the tokens (creates, deletes, the pipeline) reload nothing.
            try await ListPageTests.seed(db, userId: "usr_a", count: 5, states: [.ready])
            for _ in 0..<5 {
                try await db.pool.write { try $0.execute(sql: "UPDATE devboxes SET updated_at = updated_at") }
                #expect(try await lookup("hash-1")?.tokenId == first.id)
                #expect(try await lookup("nope") == nil)
            }
            #expect(loads.value == 1)
            // Another process (`devbox token create`, `revoke`): a second connection to the file.
            let other = try AppDatabase(path: path)
            let second = try await other.insertProviderToken(providerName: "p", tokenHash: "hash-2", hint: "2")
            // 50 requests arriving together after the change share one load.
            let found = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<50 { group.addTask { try await lookup("hash-2")?.tokenId } }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            #expect(found == Array(repeating: second.id, count: 50))
            #expect(loads.value == 2)
            #expect(try await other.revokeProviderToken(id: second.id))
            #expect(try await lookup("hash-2") == nil)
            #expect(try await lookup("hash-1")?.tokenId == first.id)
            #expect(loads.value == 3)
            // Deleting the provider deletes its tokens (a cascade): counted too.
            try await other.pool.write { try $0.execute(sql: "DELETE FROM providers WHERE name = 'p'") }
            #expect(try await lookup("hash-1") == nil)
        }
    }
}

final class LoadCounter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
