import DevboxModel
import DevboxSecurity
import Foundation
import Testing

@testable import DevboxServer
@testable import DevboxService

/// Provisioning branches that no e2e test can reach, run on the real crun runtime (the
/// integration twins of PipelineFakeRuntimeTests in the fast tier).
@Suite struct PipelineRealRuntimeTests {
    /// A devbox stored with a plan the serve no longer has (a restart with other DEVBOX_PLANS
    /// between the create and the claim): `provision` fails without a box, the runtime's
    /// teardown of the never-made box is no error, the devbox ends failed
    /// (PipelineFakeRuntimeTests.planGone).
    @Test func aPlanNoLongerConfiguredFailsProvision() async throws {
        try await withTestSystem("plan-gone") { system, _ in
            let core = system.services
            try await FailureRaceTests.insert(core.reads.db, id: "dbx_plangone", plan: "gone")
            let jobs = try await core.reads.db.claimJobs(owner: "w1@1", lease: 15, max: 1)
            let job = try #require(jobs.first)
            await JobRunner(ctx: core.provisioning, owner: "w1@1", stopping: StopFlag()).run(job)
            let record = try #require(try await core.reads.db.devboxRecord(id: "dbx_plangone"))
            #expect(record.state == .failed)
            #expect(record.errorOperation == "provision")
            #expect(record.errorMessage == "plan 'gone' is no longer configured")
            #expect(await !core.runtime.sandbox.isRunning(box: "dbx_plangone"))
        }
    }

    /// The env write of `inject_credentials` fails on the real runtime (the box's directory on
    /// the secrets tmpfs is not a directory any more): the step fails with its fixed message,
    /// which names no token (PipelineFakeRuntimeTests.credentialsFail).
    @Test func anEnvWriteThatFailsFailsInjectCredentials() async throws {
        try await withTestSystem("env-fails") { system, dir in
            let core = system.services
            let token = ProviderToken.generate()
            _ = try await core.reads.db.insertProviderToken(providerName: "p", tokenHash: ProviderToken.hash(token), hint: "x")
            let me = try await core.authenticator.authenticate(providerToken: token, bearer: nil)
            let secret = "sk-ant-integration-\(UUID().uuidString)"
            let created = try await core.commands.createDevbox(
                me, CreateDevboxRequest(name: "env", credentialProfile: CredentialProfile(injectClaudeToken: true)),
                tokens: InjectionTokens(claudeToken: secret))
            let job = try #require(try await core.reads.db.claimJobs(owner: "w1@1", lease: 15, max: 1).first)
            let pipeline = Pipeline(ctx: core.provisioning, job: job, log: system.logger)
            guard case .succeeded = try await pipeline.run(.provision) else {
                Issue.record("provision did not succeed")
                return
            }
            // The box's directory on the secrets tmpfs, swapped for a file.
            let secrets = dir + "/boxes/.secrets"
            let name = try #require(try FileManager.default.contentsOfDirectory(atPath: secrets).first { $0.hasSuffix(created.id) })
            let envDir = secrets + "/" + name
            try FileManager.default.moveItem(atPath: envDir, toPath: envDir + ".moved")
            #expect(FileManager.default.createFile(atPath: envDir, contents: Data()))
            let outcome = try await pipeline.run(.injectCredentials)
            try FileManager.default.removeItem(atPath: envDir)
            try FileManager.default.moveItem(atPath: envDir + ".moved", toPath: envDir)
            try await core.runtime.sandbox.destroy(box: created.id)
            guard case .failed(let message, _) = outcome else {
                Issue.record("inject_credentials did not fail: \(outcome)")
                return
            }
            #expect(message == "writing the credentials into the devbox failed")
            #expect(!message.contains(secret))
        }
    }

    /// Steps run one by one on a real box of a devbox with two setup commands: provision.
    static func provisioned(_ system: DevboxSystem, commands: [String]) async throws -> (Pipeline, String)? {
        let core = system.services
        let token = ProviderToken.generate()
        _ = try await core.reads.db.insertProviderToken(providerName: "p", tokenHash: ProviderToken.hash(token), hint: "x")
        let me = try await core.authenticator.authenticate(providerToken: token, bearer: nil)
        let created = try await core.commands.createDevbox(me, CreateDevboxRequest(name: "steps", setupCommands: commands), tokens: InjectionTokens())
        let job = try #require(try await core.reads.db.claimJobs(owner: "w1@1", lease: 15, max: 1).first)
        let pipeline = Pipeline(ctx: core.provisioning, job: job, log: system.logger)
        guard case .succeeded = try await pipeline.run(.provision) else {
            Issue.record("provision did not succeed")
            return nil
        }
        return (pipeline, created.id)
    }

    /// A box stopped by something else after its setup: `publish_access` fails, a devbox is
    /// never ready without a running box (PipelineFakeRuntimeTests.stoppedBeforeReady).
    @Test func aBoxStoppedBeforePublishAccessFailsIt() async throws {
        try await withTestSystem("stopped") { system, _ in
            guard let (pipeline, id) = try await Self.provisioned(system, commands: ["true"]) else { return }
            try await system.services.runtime.sandbox.stop(box: id)
            let outcome = try await pipeline.run(.publishAccess)
            try await system.services.runtime.sandbox.destroy(box: id)
            guard case .failed(let message, _) = outcome else {
                Issue.record("publish_access did not fail: \(outcome)")
                return
            }
            #expect(message == "the sandbox stopped running before it became ready")
        }
    }

    /// A box whose setup shell is gone (stopped and started again, as a box of an earlier
    /// serve): setup commands run through `crun exec` instead, and their output is the step's
    /// (PipelineFakeRuntimeTests.readyThroughExec).
    @Test func setupCommandsWithoutASetupShellRunThroughExec() async throws {
        try await withTestSystem("exec-setup") { system, _ in
            guard let (pipeline, id) = try await Self.provisioned(system, commands: ["echo one", "pwd"]) else { return }
            try await system.services.runtime.sandbox.stop(box: id)
            try await system.services.runtime.sandbox.start(box: id)
            let outcome = try await pipeline.run(.runSetupCommands)
            try await system.services.runtime.sandbox.destroy(box: id)
            guard case .succeeded(let output) = outcome else {
                Issue.record("run_setup_commands did not succeed: \(outcome)")
                return
            }
            #expect(output.text == "$ echo one\none\n$ pwd\n/workspace\n")
        }
    }
}
