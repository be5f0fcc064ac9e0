import DevboxModel
import DevboxRuntime
import Foundation
import Logging

// Issue 19's AI-API broker, the service side: the credential mode of a create, the proxy
// environment of a box, the broker's admission of a request, usage, key rotation.
// The HTTP side (listener, forwarding, streaming) is `DevboxServer/BrokerServer.swift`.
// Also the box env file rebuilt after a host reboot (`restoreEnvIfLost`), which holds
// the broker's settings in proxy mode.
public final class CredentialBroker: Sendable, LoggingService {
    let db: AppDatabase
    let cipher: any SecretCipher
    let sandbox: any BoxRuntime
    let reads: DevboxReads
    /// The broker's port and usage counters, shared with the HTTP side and the usage flusher.
    public let state: BrokerState
    let defaultCredentialMode: CredentialMode
    let auditor: Auditor
    let logger: Logger

    public init(
        database: AppDatabase, cipher: any SecretCipher, runtime: any BoxRuntime, reads: DevboxReads, state: BrokerState,
        defaultCredentialMode: CredentialMode, auditor: Auditor, logger: Logger
    ) {
        self.db = database
        self.cipher = cipher
        self.sandbox = runtime
        self.reads = reads
        self.state = state
        self.defaultCredentialMode = defaultCredentialMode
        self.auditor = auditor
        self.logger = logger
    }


    /// The create's `credential_mode`, or the service's default. Proxy needs per-box networks
    /// (the broker tells boxes apart by their addresses).
    func credentialMode(of request: CreateDevboxRequest) throws(ServiceError) -> CredentialMode {
        guard let raw = request.credentialMode else {
            return sandbox.isolatesNetworks ? defaultCredentialMode : .env
        }
        guard let mode = CredentialMode(rawValue: raw) else {
            throw .validation(field: "credential_mode", message: "credential_mode must be \"env\" or \"proxy\", got \"\(raw)\"")
        }
        if mode == .proxy && !sandbox.isolatesNetworks {
            throw .validation(
                field: "credential_mode",
                message: "credential_mode \"proxy\" needs per-box networks; this service runs boxes on the host's network")
        }
        return mode
    }

    static let placeholderPrefix = "devbox-proxy-"

    /// The variables a proxy-mode box gets in place of the real keys: base URLs on its
    /// gateway's broker port and its placeholder. Both APIs always (a key added later by
    /// `PATCH …/credentials` works without touching the box).
    func brokerEnv(devboxId: String) async throws -> [String: String] {
        guard let port = state.port, let net = sandbox.networkInfo(box: devboxId) else {
            throw ServiceError.unavailable("the AI-API broker is not running")
        }
        let placeholder = try await db.brokerPlaceholder(devboxId: devboxId) {
            var g = SystemRandomNumberGenerator()
            let hex = (0..<24).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
            return Self.placeholderPrefix + devboxId + "-" + hex
        }
        let base = "http://\(net.gateway):\(port)"
        return [
            "ANTHROPIC_BASE_URL": base + "/anthropic",
            "ANTHROPIC_API_KEY": placeholder,
            "OPENAI_BASE_URL": base + "/openai/v1",
            "OPENAI_API_KEY": placeholder,
        ]
    }

    /// The broker's verdict on one request.
    public enum BrokerAdmission: Sendable {
        case forward(devboxId: String, key: String)
        case refuse(status: Int, message: String)
    }

    /// Admits a request that came from `peer` (the connection's source address) presenting
    /// `presented` (the placeholder) for `api`: only a proxy-mode devbox's own box, with its
    /// own placeholder, while it is provisioning or ready; the answer is its real key.
    public func admitBrokerRequest(api: BrokerAPI, peer: String?, presented: String?) async -> BrokerAdmission {
        // Nothing but a box address may use the broker (the host, the LAN: refused first).
        guard let peer, sandbox.isBoxAddress(peer) else {
            return .refuse(status: 403, message: "the AI-API broker serves devboxes only")
        }
        guard let presented, presented.hasPrefix(Self.placeholderPrefix) else {
            return .refuse(status: 401, message: "missing or unknown devbox API key (use $\(api == .anthropic ? "ANTHROPIC" : "OPENAI")_API_KEY)")
        }
        let rest = presented.dropFirst(Self.placeholderPrefix.count)
        guard let dash = rest.lastIndex(of: "-") else {
            return .refuse(status: 401, message: "missing or unknown devbox API key")
        }
        let devboxId = String(rest[..<dash])
        let entry: (state: DevboxState, mode: String, placeholder: String?, sealedKey: String?)?
        do {
            entry = try await db.brokerEntry(devboxId: devboxId, kind: api.secretKind)
        } catch {
            logger.error("broker lookup failed: \(error)")
            return .refuse(status: 503, message: "the broker cannot read its keys, try again")
        }
        guard let entry, let stored = entry.placeholder, constantTimeEqual(stored, presented) else {
            return .refuse(status: 401, message: "missing or unknown devbox API key")
        }
        // The placeholder of another box (copied out of it) is refused from any address but its own.
        guard sandbox.networkInfo(box: devboxId)?.address == peer else {
            return .refuse(status: 403, message: "this API key belongs to another devbox")
        }
        guard entry.mode == CredentialMode.proxy.rawValue, entry.state == .ready || entry.state == .provisioning else {
            return .refuse(status: 403, message: "the devbox is not running in proxy mode")
        }
        guard let sealed = entry.sealedKey else {
            return .refuse(status: 401, message: "no \(api == .anthropic ? "Anthropic (X-Claude-Token)" : "OpenAI (X-Codex-Token)") key is set for this devbox; set one with PATCH /api/v1/devboxes/\(devboxId)/credentials")
        }
        do {
            return .forward(devboxId: devboxId, key: try cipher.open(sealed))
        } catch {
            logger.error("broker key could not be decrypted", metadata: ["devbox": "\(devboxId)"])
            return .refuse(status: 503, message: "the devbox's key cannot be decrypted")
        }
    }

    /// Counts one brokered request (`status` non-nil) and/or tokens the upstream reported.
    public func recordBrokerUsage(devboxId: String, api: BrokerAPI, status: Int?, inputTokens: Int = 0, outputTokens: Int = 0) {
        state.record(devboxId: devboxId, api: api, status: status, inputTokens: inputTokens, outputTokens: outputTokens)
    }

    /// `GET /api/v1/devboxes/:id/usage`: the owner's devbox only (404 otherwise).
    public func brokerUsage(_ principal: Principal, id: String) async throws(ServiceError) -> (Devbox, [BrokerAPI: BrokerUsageCounts]) {
        let box = try await reads.devbox(principal, id: id)
        return (box, state.usage(devboxId: id))
    }

    /// `PATCH /api/v1/devboxes/:id/credentials`: replaces (a value) or removes (empty) the
    /// keys named by non-nil arguments, for a live proxy-mode devbox.
    func replaceCredentialsUnaudited(
        _ principal: Principal, id: String, claudeToken: String?, codexToken: String?
    ) async throws(ServiceError) -> Devbox {
        let box = try await reads.devbox(principal, id: id)
        guard box.credentialMode == CredentialMode.proxy.rawValue else {
            throw .conflict("devbox \(id) is in credential_mode \"env\": its keys are in the box; recreate it with credential_mode \"proxy\" to rotate them")
        }
        guard ![.destroyed, .failed].contains(box.state) else {
            throw .conflict("devbox \(id) is \(box.state.rawValue)")
        }
        guard claudeToken != nil || codexToken != nil else {
            throw .validation(field: "X-Claude-Token", message: "send X-Claude-Token and/or X-Codex-Token (an empty value removes the key)")
        }
        do {
            for (kind, value) in [("claude", claudeToken), ("codex", codexToken)] {
                guard let value else { continue }
                try await db.replaceBrokerKey(devboxId: id, kind: kind, sealed: value.isEmpty ? nil : try cipher.seal(value))
            }
        } catch {
            throw storageFailure(error)
        }
        logger.info("devbox credentials replaced", metadata: ["devbox": "\(id)"])
        return try await reads.devbox(principal, id: id)
    }

    /// Before a box starts: if its env file is gone (the host rebooted, the tmpfs with it),
    /// writes a new one from what the database holds — the user's env values (encrypted
    /// rows, kept while the devbox lives) and, in credential_mode proxy, the broker's settings.
    /// Env-mode AI tokens are kept nowhere else by design (issue 3) and do not come back.
    func restoreEnvIfLost(_ id: String) async {
        guard !sandbox.hasEnv(box: id) else { return }
        do {
            var env: [String: String] = [:]
            for r in try await db.envRecords(devboxId: id) { env[r.key] = try cipher.open(r.valueEncrypted) }
            var note = "user env restored; env-mode AI tokens are not kept anywhere else and were not restored"
            if try await db.devboxRecord(id: id)?.credentialMode == CredentialMode.proxy.rawValue {
                do {
                    env.merge(try await brokerEnv(devboxId: id)) { _, broker in broker }
                    note = "user env and proxy settings restored"
                } catch {
                    note = "user env restored; the broker's settings could not be (\(error))"
                }
            }
            try await sandbox.writeEnv(box: id, env: env)
            logger.notice("the devbox's env file was gone (host reboot?): rebuilt from the database",
                          metadata: ["devbox": "\(id)", "keys": "\(env.count)", "note": "\(note)"])
        } catch {
            logger.error("rebuilding a lost env file failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
        }
    }

    // MARK: Audited entry points

    /// Records which keys were replaced or removed, never their values.
    public func replaceCredentials(
        _ principal: Principal, id: String, claudeToken: String?, codexToken: String?
    ) async throws(ServiceError) -> Devbox {
        var d: [String: AuditValue] = [:]
        if let c = claudeToken { d["claude"] = .string(c.isEmpty ? "removed" : "replaced") }
        if let c = codexToken { d["codex"] = .string(c.isEmpty ? "removed" : "replaced") }
        return try await auditor.audited(principal, "devbox.credentials.replace", devboxId: id, detail: d) {
            () async throws(ServiceError) in
            try await replaceCredentialsUnaudited(principal, id: id, claudeToken: claudeToken, codexToken: codexToken)
        }
    }
}

private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var d: UInt8 = 0
    for i in 0..<x.count { d |= x[i] ^ y[i] }
    return d == 0
}
