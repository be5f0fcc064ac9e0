import DevboxModel
import DevboxSecurity
import Foundation
import ServiceLifecycleTestKit
import Testing

@testable import DevboxServer
@testable import DevboxService

@Suite("Change notifications: DevboxReads.waitForDevbox")
struct DevboxWaitTests {
    @Test("answers a settled devbox at once, waits through requested, ends on delete, the timeout or cancellation")
    func wait() async throws {
        try await withTestSystem("wait") { system, _ in try await wait(system.services) }
    }

    private func wait(_ core: DevboxServices) async throws {
        let token = ProviderToken.generate()
        _ = try await core.reads.db.insertProviderToken(providerName: "p", tokenHash: ProviderToken.hash(token), hint: "x")
        let me = try await core.authenticator.authenticate(providerToken: token, bearer: nil)
        let other = Principal(
            providerId: me.providerId, providerTokenId: me.providerTokenId,
            userId: try await core.reads.db.resolveUser(providerId: me.providerId, subject: "someone-else"))
        // No worker runs here: the devbox stays requested until something else writes.
        let box = try await core.commands.createDevbox(me, CreateDevboxRequest(name: "w"), tokens: InjectionTokens())

        for bad in [-1, 301] {
            await #expect(throws: ServiceError.validation(
                field: "timeout_seconds", message: "timeout_seconds must be a whole number from 0 to 300")) {
                _ = try await core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: bad)
            }
        }
        await #expect(throws: ServiceError.notFound("no devbox with id \(box.id)")) {
            _ = try await core.reads.waitForDevbox(other, id: box.id, timeoutSeconds: 1)
        }
        #expect(try await core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: 0).state == .requested)

        // The timeout passes: the devbox as it is.
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: 1).state == .requested)
        #expect(clock.now - start >= .seconds(1))

        // Cancelling the waiter (the client went away) ends the wait and unsubscribes.
        let cancelled = Task { try await core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: 300) }
        while core.reads.db.changes.waiterCount(devboxId: box.id) == 0 { try await Task.sleep(for: .milliseconds(5)) }
        cancelled.cancel()
        #expect(try await cancelled.value.state == .requested)
        #expect(core.reads.db.changes.subscriberCount(devboxId: box.id) == 0)

        // A write elsewhere (here a DELETE) ends the wait with the new state.
        let waiting = Task { try await core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: 300) }
        while core.reads.db.changes.waiterCount(devboxId: box.id) == 0 { try await Task.sleep(for: .milliseconds(5)) }
        try await core.commands.deleteDevbox(me, id: box.id)
        #expect(try await waiting.value.state == .destroyed)
        #expect(core.reads.db.changes.subscriberCount(devboxId: box.id) == 0)

        // Settled: at once, whatever the timeout.
        #expect(try await core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: 300).state == .destroyed)
    }

    @Test("graceful shutdown ends an open wait with the devbox as it is")
    func shutdown() async throws {
        try await withTestSystem("wait-shutdown") { system, _ in
            let core = system.services
            let token = ProviderToken.generate()
            _ = try await core.reads.db.insertProviderToken(providerName: "p", tokenHash: ProviderToken.hash(token), hint: "x")
            let me = try await core.authenticator.authenticate(providerToken: token, bearer: nil)
            let box = try await core.commands.createDevbox(me, CreateDevboxRequest(name: "w"), tokens: InjectionTokens())
            try await testGracefulShutdown { trigger in
                async let answer = core.reads.waitForDevbox(me, id: box.id, timeoutSeconds: 300)
                while core.reads.db.changes.waiterCount(devboxId: box.id) == 0 { try await Task.sleep(for: .milliseconds(5)) }
                trigger.triggerGracefulShutdown()
                #expect(try await answer.state == .requested)
            }
            try await core.commands.deleteDevbox(me, id: box.id)
        }
    }
}
