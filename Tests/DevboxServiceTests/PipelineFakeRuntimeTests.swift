import DevboxApp
import DevboxModel
import DevboxTestSupport
import Foundation
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@testable import DevboxService

/// The provisioning pipeline against the fake runtime: every failure branch of
/// `Pipeline`/`JobRunner` and the crash-restart decisions, driven one by one, in
/// milliseconds and without root. Each test names the test against real crun that covers
/// the same branch (the integration tier: Tests/e2e, Tests/DevboxIntegrationTests), or says
/// that there is none yet.
@Suite("Provisioning with the fake runtime")
struct PipelineFakeRuntimeTests {
    /// Creates a devbox, runs a worker until it is ready or failed, answers it and its operations.
    static func provision(
        _ fast: FastSystem, _ request: CreateDevboxRequest, tokens: InjectionTokens = InjectionTokens(),
        before: (Devbox) async throws -> Void = { _ in }
    ) async throws -> (devbox: Devbox, operations: [String: DevboxOperation]) {
        let principal = try await fast.services.authenticator.authenticate(providerToken: try await fast.providerToken(), bearer: nil)
        let created = try await fast.services.commands.createDevbox(principal, request, tokens: tokens)
        try await before(created)
        let worker = Task { try await ProvisioningWorker(context: fast.services.provisioning).run() }
        defer { worker.cancel() }
        await fast.services.housekeeping.startUp()
        return try await settled(fast, principal, created.id)
    }

    static func settled(
        _ fast: FastSystem, _ principal: Principal, _ id: String
    ) async throws -> (devbox: Devbox, operations: [String: DevboxOperation]) {
        var d = try await fast.services.reads.devbox(principal, id: id)
        for _ in 0..<1000 where d.state != .ready && d.state != .failed {
            try await Task.sleep(for: .milliseconds(5))
            d = try await fast.services.reads.devbox(principal, id: id)
        }
        let ops = try await fast.services.reads.operations(principal, id: id)
        return (d, Dictionary(uniqueKeysWithValues: ops.map { ($0.name.rawValue, $0) }))
    }

    static func statuses(_ ops: [String: DevboxOperation]) -> [String] {
        OperationKind.allCases.map { ops[$0.rawValue]?.status.rawValue ?? "?" }
    }

    static let setup = CreateDevboxRequest(name: "p", setupCommands: ["make deps", "make test"])

    // Real crun: e2e test_api_core.py::test_create_ready_with_setup_command_and_env.
    @Test("ready: each setup command through the setup shell, then finishSetup; the env reaches the box")
    func ready() async throws {
        try await withFastSystem { fast in
            let r = try await Self.provision(fast, CreateDevboxRequest(name: "p", env: ["A": "1"], setupCommands: ["make deps", "make test"]))
            #expect(r.devbox.state == .ready)
            #expect(Self.statuses(r.operations) == ["succeeded", "skipped", "skipped", "succeeded", "succeeded"])
            let id = r.devbox.id
            #expect(fast.runtime.calls.filter { $0.hasSuffix(id) || $0.contains(" \(id) ") } == [
                "create \(id)", "setup \(id) make deps", "setup \(id) make test", "finishSetup \(id)",
            ])
            #expect(fast.runtime.boxes[id]?.env == ["A": "1"])
            #expect(r.operations["run_setup_commands"]?.output == "$ make deps\nok\n$ make test\nok\n")
        }
    }

    // Real crun: DevboxIntegrationTests PipelineRealRuntimeTests.setupCommandsWithoutASetupShellRunThroughExec.
    @Test("ready without a setup shell: setup commands fall back to exec of /bin/sh -c in /workspace")
    func readyThroughExec() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock { $0.setupShell = false }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.state == .ready)
            #expect(fast.runtime.calls.contains("exec \(r.devbox.id) /bin/sh -c make test"))
        }
    }

    // Real crun: e2e test_pipeline_failures.py::test_a_create_the_runtime_refuses_fails_provision.
    @Test("a create that fails fails `provision`, skips the rest, destroys the box")
    func createFails() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock { $0.create = { _ in throw FakeRuntime.Fault("no space for the bundle") } }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.state == .failed)
            #expect(r.devbox.error == DevboxError(operation: "provision", message: "the sandbox could not be started: no space for the bundle"))
            #expect(Self.statuses(r.operations) == ["failed", "skipped", "skipped", "skipped", "skipped"])
            #expect(fast.runtime.calls.last == "destroy \(r.devbox.id)")
        }
    }

    // Real crun: DevboxIntegrationTests PipelineRealRuntimeTests.aPlanNoLongerConfiguredFailsProvision.
    @Test("a plan that is no longer configured fails `provision` without touching the runtime")
    func planGone() async throws {
        try await withFastSystem(configure: { c in
            c.core.plans = Plan.defaults + [Plan(name: "gone", memoryMiB: 512, cpus: 1, pids: 256)]
        }) { fast in
            let principal = try await fast.services.authenticator.authenticate(providerToken: try await fast.providerToken(), bearer: nil)
            let created = try await fast.services.commands.createDevbox(principal, CreateDevboxRequest(name: "p", plan: "gone"), tokens: InjectionTokens())
            // The same database served again without the plan, as a serve restarted with other DEVBOX_PLANS.
            var configuration = ServerConfiguration(dataDirectory: fast.runtime.root)
            configuration.core.plans = Plan.defaults
            let restarted = try await buildSystem(
                configuration: configuration, runtime: fast.runtime, database: fast.database,
                cipher: FernetCipher(ring: .init(primary: .generate())), logger: Logger(label: "t"))
            let worker = Task { try await ProvisioningWorker(context: restarted.services.provisioning).run() }
            defer { worker.cancel() }
            await restarted.services.housekeeping.startUp()
            let r = try await Self.settled(fast, principal, created.id)
            #expect(r.devbox.error == DevboxError(operation: "provision", message: "plan 'gone' is no longer configured"))
            #expect(!fast.runtime.calls.contains("create \(created.id)"))
        }
    }

    // Real crun: DevboxIntegrationTests PipelineRealRuntimeTests.anEnvWriteThatFailsFailsInjectCredentials.
    @Test("an env write that fails fails `inject_credentials`; the pending tokens are deleted, the box destroyed")
    func credentialsFail() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock { $0.writeEnv = { _, _ in throw FakeRuntime.Fault("tmpfs full") } }
            let r = try await Self.provision(
                fast, CreateDevboxRequest(name: "p", credentialProfile: CredentialProfile(injectClaudeToken: true)),
                tokens: InjectionTokens(claudeToken: "sk-ant-secret-value"))
            #expect(r.devbox.error == DevboxError(operation: "inject_credentials", message: "writing the credentials into the devbox failed"))
            #expect(Self.statuses(r.operations) == ["succeeded", "failed", "skipped", "skipped", "skipped"])
            #expect(try await fast.database.pendingSecrets(devboxId: r.devbox.id).isEmpty)
            #expect(fast.runtime.boxes[r.devbox.id] == nil)
            #expect(!"\(r.operations)".contains("sk-ant-secret-value"))
        }
    }

    // Real crun: none yet (a proxy-mode devbox while the broker is down is not provoked by any test).
    @Test("proxy mode while the AI-API broker is not running fails `inject_credentials`, naming why; no key reaches the box")
    func brokerSettingsFail() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock { $0.isolatesNetworks = true }
            let r = try await Self.provision(
                fast,
                CreateDevboxRequest(name: "p", credentialProfile: CredentialProfile(injectClaudeToken: true), credentialMode: "proxy"),
                tokens: InjectionTokens(claudeToken: "sk-ant-proxy-secret"))
            #expect(r.devbox.error?.operation == "inject_credentials")
            #expect(r.devbox.error?.message.hasPrefix("writing the broker's settings into the devbox failed: ") == true)
            #expect(r.devbox.error?.message.contains("broker is not running") == true)
            #expect(!fast.runtime.calls.contains { $0.hasPrefix("writeEnv \(r.devbox.id)") })
            #expect(fast.runtime.boxes[r.devbox.id] == nil)
        }
    }

    // Real crun: e2e test_api_core.py::test_failing_setup_command_fails_with_its_exit_code_and_tail.
    @Test("a setup command exiting non-zero fails the step with its number, text and the output tail; later commands do not run")
    func setupExits() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, c in c == "make deps" ? FakeRuntime.exited(2, "no rule\n") : FakeRuntime.exited(0) }
            }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.error == DevboxError(operation: "run_setup_commands", message: "setup command 1 (make deps) exited with code 2"))
            #expect(r.operations["run_setup_commands"]?.output == "$ make deps\nno rule\n")
            #expect(Self.statuses(r.operations) == ["succeeded", "skipped", "skipped", "failed", "skipped"])
            #expect(!fast.runtime.calls.contains("setup \(r.devbox.id) make test"))
            #expect(!fast.runtime.calls.contains("finishSetup \(r.devbox.id)"))
            #expect(fast.runtime.boxes[r.devbox.id] == nil)
        }
    }

    // Real crun: e2e test_isolation.py::test_memory_limit_is_enforced (the OOM killer's SIGKILL).
    @Test("a setup command killed by a signal fails the step naming the signal")
    func setupKilled() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, _ in
                    BoxExecResult(exitCode: nil, signal: 9, stdout: [], stderr: [], truncated: false, timedOut: false, durationNanos: 1)
                }
            }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.error?.message == "setup command 1 (make deps) was killed by signal 9")
        }
    }

    // Real crun: e2e test_api_core.py::test_setup_timeout_kills_and_fails.
    @Test("a setup command that times out fails the step with the timeout and the command")
    func setupTimesOut() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, c in
                    c == "make test"
                        ? BoxExecResult(exitCode: nil, signal: 9, stdout: Array("half\n".utf8), stderr: [], truncated: false, timedOut: true, durationNanos: 1)
                        : FakeRuntime.exited(0)
                }
            }
            let r = try await Self.provision(fast, CreateDevboxRequest(name: "p", setupCommands: ["make deps", "make test"], setupTimeoutSeconds: 60))
            #expect(r.devbox.error?.message == "timed out after 60 s (in setup command 2: make test)")
            #expect(r.operations["run_setup_commands"]?.output == "$ make deps\n$ make test\nhalf\n")
        }
    }

    // Real crun: none, and none can be: crun always reports an exit code or a signal. The
    // branch guards against a runtime that loses the status (never counted as success).
    @Test("a setup command with neither exit code nor signal is a failure, never a success")
    func setupLostStatus() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, _ in
                    BoxExecResult(exitCode: nil, signal: nil, stdout: [], stderr: [], truncated: false, timedOut: false, durationNanos: 1)
                }
            }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.error?.message == "setup command 1 (make deps) ended with an unknown exit status")
        }
    }

    // Real crun: e2e test_pipeline_failures.py::test_a_box_that_dies_under_a_setup_command_fails_the_step.
    @Test("a setup command that cannot be started fails the step")
    func setupCannotStart() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock { $0.setupCommand = { _, _ in throw FakeRuntime.Fault("setup shell gone") } }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.error?.message == "setup command 1 could not be started: setup shell gone")
            #expect(fast.runtime.boxes[r.devbox.id] == nil)
        }
    }

    // Real crun: DevboxIntegrationTests PipelineRealRuntimeTests.aBoxStoppedBeforePublishAccessFailsIt.
    @Test("a box that stopped before `publish_access` fails it: a devbox is never ready without a running box")
    func stoppedBeforeReady() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock { $0.setupCommand = { box, _ in fast.runtime.setRunning(box, false); return FakeRuntime.exited(0) } }
            let r = try await Self.provision(fast, CreateDevboxRequest(name: "p", setupCommands: ["poweroff"]))
            #expect(r.devbox.error == DevboxError(operation: "publish_access", message: "the sandbox stopped running before it became ready"))
            #expect(Self.statuses(r.operations) == ["succeeded", "skipped", "skipped", "succeeded", "failed"])
        }
    }

    // Real crun: none yet (teardown failures are not provoked by any test).
    @Test("a failure is recorded even when destroying the box fails too")
    func destroyFailsToo() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, _ in FakeRuntime.exited(1) }
                $0.destroy = { _ in throw FakeRuntime.Fault("busy") }
            }
            let r = try await Self.provision(fast, Self.setup)
            #expect(r.devbox.state == .failed)
            #expect(r.devbox.error?.operation == "run_setup_commands")
        }
    }

    /// A worker that died holding the devbox: it claimed it (provision running, lease for a
    /// worker that no longer exists), and `progress` says how far it got.
    static func crashedWorker(_ fast: FastSystem, _ id: String, progress: [OperationUpdate] = []) async throws {
        let claimed = try await fast.database.claimJobs(owner: "worker-that-died", lease: 0.05, max: 1)
        #expect(claimed.map(\.devbox.id) == [id])
        if !progress.isEmpty { try await fast.database.updateOperations(devboxId: id, progress) }
        try await Task.sleep(for: .milliseconds(60))  // its lease runs out
    }

    // Real crun: e2e test_crash_safety.py::test_kill9_while_ten_provision_then_restart.
    @Test("crash during `provision`: the next worker destroys the half-made box and restarts from the first step")
    func crashDuringProvision() async throws {
        try await withFastSystem { fast in
            let r = try await Self.provision(fast, Self.setup) { created in
                try await Self.crashedWorker(fast, created.id)
                _ = try await fast.runtime.create(box: created.id, limits: BoxLimits(memoryBytes: 1, cpus: 1, pids: 1), env: [:], setupShell: false, egress: .allowAll)
            }
            let id = r.devbox.id
            #expect(r.devbox.state == .ready)
            #expect(Self.statuses(r.operations) == ["succeeded", "skipped", "skipped", "succeeded", "succeeded"])
            let calls = fast.runtime.calls.filter { $0.contains(id) }
            #expect(calls.prefix(3) == ["create \(id)", "destroy \(id)", "create \(id)"])
        }
    }

    // Real crun: e2e test_crash_safety.py::test_kill9_while_ten_provision_then_restart
    // (devboxes past `provision` at the kill) and Tests/e2e/test_reboot.py (boxes gone).
    @Test("`provision` done but the box is gone (host reboot): restarted from the first step")
    func boxGoneAfterProvision() async throws {
        try await withFastSystem { fast in
            let r = try await Self.provision(fast, Self.setup) { created in
                try await Self.crashedWorker(fast, created.id, progress: [OperationUpdate(kind: .provision, status: .succeeded)])
            }
            #expect(r.devbox.state == .ready, "\(String(describing: r.devbox.error))")
            #expect(fast.runtime.calls.filter { $0 == "create \(r.devbox.id)" }.count == 1)
        }
    }

    // Real crun: e2e test_credentials.py::test_restart_during_provisioning_keeps_the_promise[kill-9].
    @Test("crash while setup commands ran: failed (they are not idempotent), with a clear message, box destroyed")
    func crashDuringSetup() async throws {
        try await withFastSystem { fast in
            let r = try await Self.provision(fast, Self.setup) { created in
                try await Self.crashedWorker(fast, created.id, progress: [
                    OperationUpdate(kind: .provision, status: .succeeded),
                    OperationUpdate(kind: .injectCredentials, status: .skipped),
                    OperationUpdate(kind: .cloneRepositories, status: .skipped),
                    OperationUpdate(kind: .runSetupCommands, status: .running),
                ])
                _ = try await fast.runtime.create(box: created.id, limits: BoxLimits(memoryBytes: 1, cpus: 1, pids: 1), env: [:], setupShell: true, egress: .allowAll)
            }
            #expect(r.devbox.state == .failed)
            #expect(r.devbox.error?.operation == "run_setup_commands")
            #expect(r.devbox.error?.message.contains("service restart") == true)
            #expect(fast.runtime.boxes[r.devbox.id] == nil)
            #expect(!fast.runtime.calls.contains { $0.hasPrefix("setup \(r.devbox.id)") })
        }
    }

    // Real crun: e2e test_wait.py::test_delete_during_a_wait_returns_destroyed and
    // test_credentials.py::test_destroyed_before_ready_leaves_no_token.
    @Test("a DELETE while a setup command runs cancels the job: destroyed, the box torn down, nothing after it runs")
    func deletedWhileProvisioning() async throws {
        try await withFastSystem { fast in
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, _ in
                    try await Task.sleep(for: .seconds(30))
                    return FakeRuntime.exited(0)
                }
            }
            let principal = try await fast.services.authenticator.authenticate(providerToken: try await fast.providerToken(), bearer: nil)
            let created = try await fast.services.commands.createDevbox(principal, Self.setup, tokens: InjectionTokens())
            let worker = Task { try await ProvisioningWorker(context: fast.services.provisioning).run() }
            defer { worker.cancel() }
            await fast.services.housekeeping.startUp()
            let id = created.id
            for _ in 0..<1000 where !fast.runtime.calls.contains("setup \(id) make deps") {
                try await Task.sleep(for: .milliseconds(5))
            }
            let started = ContinuousClock.now
            try await fast.services.commands.deleteDevbox(principal, id: id)
            var record = try await fast.database.devboxRecord(id: id)
            for _ in 0..<1000 where fast.runtime.boxes[id] != nil {
                try await Task.sleep(for: .milliseconds(5))
                record = try await fast.database.devboxRecord(id: id)
            }
            #expect(record?.state == .destroyed)
            #expect(fast.runtime.boxes[id] == nil)
            #expect(ContinuousClock.now - started < .seconds(10), "the 30 s command was not cut short")
            #expect(!fast.runtime.calls.contains("setup \(id) make test"))
        }
    }

    // Real crun: e2e test_crash_safety.py::test_sigterm_finishes_the_step_in_flight and
    // test_credentials.py::test_restart_during_provisioning_keeps_the_promise[sigterm].
    @Test("a graceful shutdown lets the step in flight finish, pauses at the boundary; the next worker completes the devbox")
    func shutdownPausesAtAStepBoundary() async throws {
        try await withFastSystem { fast in
            let inSetup = AsyncStream<Void>.makeStream()
            fast.runtime.hooks.withLock {
                $0.setupCommand = { _, c in
                    if c == "make deps" {
                        inSetup.continuation.yield()
                        try await Task.sleep(for: .milliseconds(300))
                    }
                    return FakeRuntime.exited(0, "ok\n")
                }
            }
            let principal = try await fast.services.authenticator.authenticate(providerToken: try await fast.providerToken(), bearer: nil)
            let created = try await fast.services.commands.createDevbox(principal, Self.setup, tokens: InjectionTokens())
            await fast.services.housekeeping.startUp()
            try await testGracefulShutdown { trigger in
                let worker = Task { try await ProvisioningWorker(context: fast.services.provisioning).run() }
                var it = inSetup.stream.makeAsyncIterator()
                _ = await it.next()
                trigger.triggerGracefulShutdown()
                try await worker.value
            }
            let paused = try await fast.services.reads.operations(principal, id: created.id)
            #expect(paused.map(\.status.rawValue) == ["succeeded", "skipped", "skipped", "succeeded", "pending"])
            #expect(try await fast.services.reads.devbox(principal, id: created.id).state == .provisioning)
            // The next serve's worker: the box still runs, so it resumes at publish_access.
            let worker = Task { try await ProvisioningWorker(context: fast.services.provisioning).run() }
            defer { worker.cancel() }
            let r = try await Self.settled(fast, principal, created.id)
            #expect(r.devbox.state == .ready)
            #expect(fast.runtime.calls.filter { $0 == "create \(created.id)" }.count == 1)
        }
    }
}
