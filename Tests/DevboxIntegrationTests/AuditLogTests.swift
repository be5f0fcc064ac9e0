import DevboxModel
import DevboxSecurity
import Foundation
import Testing

@testable import DevboxServer
@testable import DevboxService

@Suite("Audit log: service-layer hook, storage, scoping, cost on the create path")
struct AuditLogTests {
    static func principals(_ core: DevboxServices, _ db: AppDatabase) async throws -> (provider: Principal, alice: Principal) {
        let token = ProviderToken.generate()
        _ = try await db.insertProviderToken(providerName: "p", tokenHash: ProviderToken.hash(token), hint: "abcd")
        let provider = try await core.authenticator.authenticate(providerToken: token, bearer: nil)
        let aliceId = try await db.resolveUser(providerId: provider.providerId, subject: "alice")
        return (provider, Principal(providerId: provider.providerId, providerTokenId: provider.providerTokenId, userId: aliceId))
    }

    @Test("actions are recorded with who, what, result and origin; a user reads only their own")
    func recordedAndScoped() async throws {
        try await withTestSystem("audit") { system, _ in
            let core = system.services
            let (provider, alice) = try await Self.principals(core, core.reads.db)
            let origin = RequestOrigin(face: "api", source: "192.0.2.7", requestId: "req-1")
            let box = try await RequestOrigin.$current.withValue(origin) {
                try await core.commands.createDevbox(alice, CreateDevboxRequest(name: "a", env: nil), tokens: InjectionTokens())
            }
            await #expect(throws: ServiceError.self) { try await core.commands.deleteDevbox(provider, id: "dbx_missing") }
            await #expect(throws: ServiceError.self) { try await core.access.setSSHKey(alice, publicKey: "not a key") }
            try await core.commands.deleteDevbox(alice, id: box.id)

            let all = try await core.auditor.auditEvents(
                provider, userScoped: false, devboxId: nil, action: nil, since: nil, cursor: nil, limit: nil)
            #expect(all.events.map(\.action) == ["devbox.delete", "user.ssh_key.set", "devbox.delete", "devbox.create"])
            let create = all.events[3]
            #expect(create.userId == alice.userId && create.providerTokenId == provider.providerTokenId)
            #expect(create.face == "api" && create.source == "192.0.2.7" && create.requestId == "req-1")
            #expect(create.devboxId == box.id && create.result == "ok" && create.detail["fields"] == .strings(["name"]))
            #expect(all.events[2].result == "not_found" && all.events[2].devboxId == "dbx_missing")
            #expect(all.events[1].result == "validation_failed" && all.events[1].detail["field"] == .string("public_key"))
            // No request: a system action
            #expect(all.events[0].face == "system" && all.events[0].source == nil)

            let mine = try await core.auditor.auditEvents(
                alice, userScoped: true, devboxId: nil, action: nil, since: nil, cursor: nil, limit: nil)
            #expect(Set(mine.events.map(\.userId)) == [alice.userId] && mine.events.count == 3)
            let page = try await core.auditor.auditEvents(
                provider, userScoped: false, devboxId: nil, action: "devbox", since: nil, cursor: nil, limit: 2)
            #expect(page.events.count == 2 && page.next != nil)
            let rest = try await core.auditor.auditEvents(
                provider, userScoped: false, devboxId: nil, action: "devbox", since: nil, cursor: page.next, limit: 2)
            #expect(rest.events.map(\.action) == ["devbox.create"] && rest.next == nil)
            await #expect(throws: ServiceError.validation(field: "limit", message: "limit must be between 1 and 500")) {
                _ = try await core.auditor.auditEvents(provider, userScoped: false, devboxId: nil, action: nil, since: nil, cursor: nil, limit: 0)
            }
            // Rows stay after the devbox is purged, and go with their own retention.
            try await core.reads.db.pool.write { db in try db.execute(sql: "DELETE FROM devboxes") }
            #expect(try await core.reads.db.auditEvents(AuditQuery(providerId: provider.providerId)).count == 4)
            #expect(try await core.reads.db.purgeAudit(before: Date().addingTimeInterval(60)) == 4)
        }
    }

    /// The audit write is off the create path: `record` queues, a background drain commits.
    /// Measured A/B in one process: the audited entry point against the one beneath it.
    @Test("the audit costs the create path nothing measurable")
    func createPathCost() async throws {
        try await withTestSystem("auditcost") { system, _ in
            let core = system.services
            let (_, alice) = try await Self.principals(core, core.reads.db)
            let n = 150
            var audited: [Double] = []
            var plain: [Double] = []
            let clock = ContinuousClock()
            for i in 0..<(2 * n) {
                let request = CreateDevboxRequest(name: "c\(i)", env: nil)
                let start = clock.now
                if i % 2 == 0 {
                    _ = try await core.commands.createDevbox(alice, request, tokens: InjectionTokens())
                } else {
                    _ = try await core.commands.createDevboxUnaudited(alice, request, tokens: InjectionTokens())
                }
                let d = clock.now - start
                let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
                if i % 2 == 0 { audited.append(ms) } else { plain.append(ms) }
            }
            await core.auditor.flush()
            let p50a = audited.sorted()[n / 2]
            let p50p = plain.sorted()[n / 2]
            print("create (store + audit) p50 \(String(format: "%.3f", p50a)) ms; without the audit \(String(format: "%.3f", p50p)) ms (n=\(n) each)")
            #expect(p50a < p50p + 1.0)
            #expect(try await core.reads.db.auditEvents(AuditQuery(providerId: alice.providerId, limit: 1000)).count == n)
        }
    }
}
