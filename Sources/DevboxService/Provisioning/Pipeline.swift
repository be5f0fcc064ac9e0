import DevboxModel
import Foundation
import Logging

/// Captured output of a step: the tail that is kept and whether older bytes were dropped.
struct StepOutput: Sendable {
    var text: String = ""
    var truncated = false
}

enum StepOutcome: Sendable {
    case succeeded(StepOutput)
    case skipped(String)
    case failed(String, StepOutput)
}

extension TailBuffer {
    /// A step's output (DevboxRuntime's one tail buffer).
    var output: StepOutput {
        // A cut may land inside a UTF-8 sequence: decoding repairs it with U+FFFD.
        StepOutput(text: String(decoding: bytes, as: UTF8.self), truncated: truncated)
    }
}

/// The five provisioning steps of one devbox.
struct Pipeline: Sendable {
    let ctx: ProvisioningContext
    let job: ClaimedJob
    let log: Logger

    var id: String { job.devbox.id }

    func run(_ kind: OperationKind) async throws -> StepOutcome {
        switch kind {
        case .provision: try await provision()
        case .injectCredentials: try await injectCredentials()
        case .cloneRepositories: try await cloneRepositories()
        case .runSetupCommands: try await runSetupCommands()
        case .publishAccess: try await publishAccess()
        }
    }

    private func userEnv() async throws -> [String: String] {
        // The env is fixed at create, and `env_keys` names all of it: nothing to read.
        if job.devbox.envKeys.isEmpty { return [:] }
        var env: [String: String] = [:]
        for r in try await ctx.db.envRecords(devboxId: id) {
            env[r.key] = try ctx.cipher.open(r.valueEncrypted)
        }
        return env
    }

    private func provision() async throws -> StepOutcome {
        guard let plan = ctx.settings.plans.first(where: { $0.name == job.devbox.plan }) else {
            return .failed("plan '\(job.devbox.plan)' is no longer configured", StepOutput())
        }
        let started = ContinuousClock.now
        let warm: Bool
        do {
            warm = try await ctx.sandbox.create(
                box: id, limits: plan.limits, env: try await userEnv(), setupShell: !job.devbox.setupCommands.isEmpty,
                egress: (try? RuntimeService.egressPolicy(DevboxRecord.decodeNetwork(job.devbox.network))) ?? .allowAll,
                image: try await ctx.snapshots.boxImage(of: job.devbox))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return .failed("the sandbox could not be started: \(error)", StepOutput())
        }
        ctx.metrics.warmPool(hit: warm)
        let ms = (ContinuousClock.now - started).components.attoseconds / 1_000_000_000_000_000
            + (ContinuousClock.now - started).components.seconds * 1000
        return .succeeded(
            StepOutput(text: "sandbox \(warm ? "taken from the warm pool" : "started") (plan \(plan.name): \(plan.memoryMiB) MiB, \(plan.cpus) CPU, \(plan.pids) pids, \(plan.diskMiB) MiB disk) in \(ms) ms\n"))
    }

    private func injectCredentials() async throws -> StepOutcome {
        if job.devbox.credentialMode == CredentialMode.proxy.rawValue { return try await injectBrokerEnv() }
        let secrets = try await ctx.db.pendingSecrets(devboxId: id)
        guard !secrets.isEmpty else { return .skipped("no credentials to inject\n") }
        var env = try await userEnv()
        var injected: [String] = []
        for s in secrets {
            let value = try ctx.cipher.open(s.valueEncrypted)
            switch s.kind {
            case "claude":
                env["ANTHROPIC_API_KEY"] = value
                injected.append("ANTHROPIC_API_KEY")
            case "codex":
                env["OPENAI_API_KEY"] = value
                injected.append("OPENAI_API_KEY")
            default: continue
            }
        }
        do {
            try await ctx.sandbox.writeEnv(box: id, env: env)
        } catch {
            return .failed("writing the credentials into the devbox failed", StepOutput())
        }
        return .succeeded(StepOutput(text: "injected \(injected.sorted().joined(separator: ", "))\n"))
    }

    /// Proxy mode (issue 19): the box gets the broker's base URLs and its placeholder key;
    /// the real keys stay in the database for the broker.
    private func injectBrokerEnv() async throws -> StepOutcome {
        var env = try await userEnv()
        do {
            env.merge(try await ctx.credentials.brokerEnv(devboxId: id)) { _, broker in broker }
            try await ctx.sandbox.writeEnv(box: id, env: env)
        } catch {
            return .failed("writing the broker's settings into the devbox failed: \(error)", StepOutput())
        }
        let kinds = [job.devbox.injectClaudeToken ? "Anthropic" : nil, job.devbox.injectCodexToken ? "OpenAI" : nil].compactMap { $0 }
        return .succeeded(StepOutput(
            text: "proxy mode: ANTHROPIC_BASE_URL, OPENAI_BASE_URL and a placeholder ANTHROPIC_API_KEY / OPENAI_API_KEY set; keys kept by the broker: \(kinds.isEmpty ? "none" : kinds.joined(separator: ", "))\n"))
    }

    /// Clones each repository from the host side into the box's workspace, before any
    /// user code runs. The first failure fails the step, naming the repository.
    private func cloneRepositories() async throws -> StepOutcome {
        let repos = job.repositories.sorted { $0.position < $1.position }
        guard !repos.isEmpty else { return .skipped("no repositories to clone\n") }
        // A restarted pipeline runs in a fresh sandbox: every repository starts over.
        try await ctx.db.resetRepositories(devboxId: id)
        guard GitRunner.isAvailable else {
            return .failed("git is not installed on the devbox host", StepOutput())
        }
        let access = await ctx.github.repositoryAccess(userId: job.devbox.userId, fullNames: repos.map(\.fullName))
        let cloner = RepositoryCloner(settings: ctx.settings.github)
        let workspace = ctx.sandbox.workspaceHostPath(box: id)
        var tail = TailBuffer(limit: ctx.settings.setupOutputLimit)
        for (repo, decision) in zip(repos, access) {
            var token: String?
            var hint = GitHubService.connectHint
            switch decision {
            case .token(let t): token = t
            case .anonymous(let h): hint = h
            case .notFound: hint = "the connected GitHub account cannot see it"
            case .refused(let why):
                try await ctx.db.updateRepository(devboxId: id, position: repo.position, status: "failed", commit: nil, error: why)
                tail.append(Array("$ git clone \(repo.fullName): refused: \(why)\n".utf8))
                return .failed("cloning \(repo.fullName) failed: \(why)", tail.output)
            }
            try await ctx.db.updateRepository(devboxId: id, position: repo.position, status: "cloning", commit: nil, error: nil)
            var request = CloneRequest(
                fullName: repo.fullName, ref: repo.ref, targetPath: repo.targetPath, token: token, anonymousHint: hint)
            // Owned by the box's root (its own id range), not the host's.
            let sandbox = ctx.sandbox
            request.adopt = { path in try await sandbox.adoptTree(box: id, path: path) }
            request.owner = sandbox.boxRootOwner(box: id)
            if !repo.pushGlobs.isEmpty {
                // Issue 19's git broker: only with the account's token (checked at create; asked again here).
                guard token != nil else {
                    let why = "push_branches needs the connected GitHub account's token for \(repo.fullName): \(hint)"
                    try await ctx.db.updateRepository(devboxId: id, position: repo.position, status: "failed", commit: nil, error: why)
                    return .failed("cloning \(repo.fullName) failed: \(why)", tail.output)
                }
                do {
                    request.brokerRemote = try await ctx.gitBroker.gitBrokerRemote(devboxId: id, fullName: repo.fullName)
                } catch {
                    return .failed("the git broker for \(repo.fullName) could not be set up: \(error)", tail.output)
                }
            }
            do {
                let outcome = try await cloner.clone(request, workspace: workspace)
                tail.append(Array(outcome.log.utf8))
                try await ctx.db.updateRepository(
                    devboxId: id, position: repo.position, status: "cloned", commit: outcome.commit, error: nil)
                log.info("repository cloned", metadata: ["repository": "\(repo.fullName)", "commit": "\(outcome.commit)"])
            } catch let failure as CloneFailure {
                tail.append(Array(failure.log.utf8))
                tail.append(Array("error: \(failure.message)\n".utf8))
                try await ctx.db.updateRepository(
                    devboxId: id, position: repo.position, status: "failed", commit: nil, error: failure.message)
                return .failed("cloning \(repo.fullName) failed: \(failure.message)", tail.output)
            }
            try? await ctx.db.updateOperationOutput(
                devboxId: id, kind: .cloneRepositories, output: tail.output.text, truncated: tail.truncated)
        }
        return .succeeded(tail.output)
    }

    private func runSetupCommands() async throws -> StepOutcome {
        let commands = job.devbox.setupCommands
        guard !commands.isEmpty else { return .skipped("no setup commands\n") }
        let outcome = try await runSetupCommands(commands)
        // Succeeded: the setup shell becomes the box's pause process. Failed: the box is
        // destroyed next, with whatever still runs in it.
        if case .succeeded = outcome { await ctx.sandbox.finishSetup(box: id) }
        return outcome
    }

    private func runSetupCommands(_ commands: [String]) async throws -> StepOutcome {
        let timeout = job.devbox.setupTimeoutSeconds
        let deadline = ContinuousClock.now + .seconds(timeout)
        var tail = TailBuffer(limit: ctx.settings.setupOutputLimit)
        for (i, command) in commands.enumerated() {
            tail.append(Array("$ \(command)\n".utf8))
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                return .failed("timed out after \(timeout) s", tail.output)
            }
            let r: BoxExecResult
            do {
                let limit = ctx.settings.setupOutputLimit
                if let viaShell = try await ctx.sandbox.runSetupCommand(
                    box: id, command: command, timeout: remaining, outputLimit: limit)
                {
                    r = viaShell
                } else {
                    r = try await ctx.sandbox.exec(
                        box: id, argv: ["/bin/sh", "-c", command], env: [:], cwd: "/workspace", stdin: nil,
                        timeout: remaining, outputLimit: limit, mergeStderr: true)
                }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                return .failed("setup command \(i + 1) could not be started: \(error)", tail.output)
            }
            if r.truncated { tail.markTruncated() }
            tail.append(r.stdout)
            if r.timedOut {
                return .failed("timed out after \(timeout) s (in setup command \(i + 1): \(Self.short(command)))", tail.output)
            }
            if let sig = r.signal {
                return .failed("setup command \(i + 1) (\(Self.short(command))) was killed by signal \(sig)", tail.output)
            }
            guard let code = r.exitCode else {
                // Neither a code nor a signal: the status was lost. Never count that as success.
                return .failed("setup command \(i + 1) (\(Self.short(command))) ended with an unknown exit status", tail.output)
            }
            if code != 0 {
                return .failed("setup command \(i + 1) (\(Self.short(command))) exited with code \(code)", tail.output)
            }
            // Keep the live tail visible while later commands run (after the last one, it
            // goes with the step's result).
            if i < commands.count - 1 {
                try? await ctx.db.updateOperationOutput(
                    devboxId: id, kind: .runSetupCommands, output: tail.output.text, truncated: tail.truncated)
            }
        }
        return .succeeded(tail.output)
    }

    private func publishAccess() async throws -> StepOutcome {
        guard await ctx.sandbox.isRunning(box: id) else {
            return .failed("the sandbox stopped running before it became ready", StepOutput())
        }
        return .succeeded(StepOutput(text: "SSH access available through the gateway\n"))
    }

    static func short(_ command: String) -> String {
        let oneLine = command.replacingOccurrences(of: "\n", with: " ")
        return oneLine.count > 80 ? String(oneLine.prefix(77)) + "..." : oneLine
    }
}
