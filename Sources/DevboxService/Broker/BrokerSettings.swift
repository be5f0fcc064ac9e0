import Foundation
import Synchronization

/// Where a devbox's AI keys live (issue 19): `env` puts the real key into the box's
/// environment (the seed's contract: deleted from the database once ready); `proxy` gives the
/// box a placeholder and base URLs pointing at the service's broker, which adds the real key
/// on the way out (kept Fernet-encrypted in the database while the devbox exists).
public enum CredentialMode: String, Sendable, CaseIterable {
    case env
    case proxy
}

/// The two APIs the broker fronts.
public enum BrokerAPI: String, Sendable, CaseIterable {
    case anthropic
    case openai

    /// The kind of stored secret (`devbox_pending_secrets.kind`).
    public var secretKind: String { self == .anthropic ? "claude" : "codex" }
    /// The header that carries the key inside the box (placeholder) and upstream (real key).
    public var headerName: String { self == .anthropic ? "x-api-key" : "authorization" }
}

/// The broker's settings: `DEVBOX_DEFAULT_CREDENTIAL_MODE`, `DEVBOX_BROKER_PORT`,
/// `DEVBOX_ANTHROPIC_UPSTREAM`, `DEVBOX_OPENAI_UPSTREAM`.
public struct BrokerSettings: Sendable {
    public var defaultCredentialMode: CredentialMode = .env
    /// nil: a port chosen once and kept in `<data>/broker-port` (a box's env names it).
    public var port: Int?
    public var anthropicUpstream = "https://api.anthropic.com"
    public var openaiUpstream = "https://api.openai.com"
    /// `http://` upstreams through the broker's own relay (splice to the box's socket);
    /// `DEVBOX_BROKER_RELAY=off` sends them through async-http-client like `https://` ones.
    public var relay = true

    public init() {}

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public init(environment env: [String: String]) throws(Invalid) {
        if let raw = env["DEVBOX_DEFAULT_CREDENTIAL_MODE"], !raw.isEmpty {
            guard let m = CredentialMode(rawValue: raw) else {
                throw Invalid(description: "DEVBOX_DEFAULT_CREDENTIAL_MODE must be env or proxy, got '\(raw)'")
            }
            defaultCredentialMode = m
        }
        if let raw = env["DEVBOX_BROKER_PORT"], !raw.isEmpty {
            guard let p = Int(raw), (1...65535).contains(p) else {
                throw Invalid(description: "DEVBOX_BROKER_PORT must be a port number (1-65535), got '\(raw)'")
            }
            port = p
        }
        for (name, keyPath) in [("DEVBOX_ANTHROPIC_UPSTREAM", \BrokerSettings.anthropicUpstream),
                                ("DEVBOX_OPENAI_UPSTREAM", \BrokerSettings.openaiUpstream)] {
            guard let raw = env[name], !raw.isEmpty else { continue }
            guard let u = URL(string: raw), let scheme = u.scheme, ["http", "https"].contains(scheme), u.host != nil,
                  u.query == nil
            else { throw Invalid(description: "\(name) must be an http(s) URL, got '\(raw)'") }
            self[keyPath: keyPath] = raw.hasSuffix("/") ? String(raw.dropLast()) : raw
        }
        if let raw = env["DEVBOX_BROKER_RELAY"], !raw.isEmpty {
            guard ["on", "off"].contains(raw) else {
                throw Invalid(description: "DEVBOX_BROKER_RELAY must be on or off, got '\(raw)'")
            }
            relay = raw == "on"
        }
    }

    public func upstream(_ api: BrokerAPI) -> String { api == .anthropic ? anthropicUpstream : openaiUpstream }
}

/// What the broker counted for one API of one devbox (kept in the database: a restart
/// continues the counts).
public struct BrokerUsageCounts: Sendable, Equatable {
    public var requests = 0
    public var statusCodes: [Int: Int] = [:]
    public var inputTokens = 0
    public var outputTokens = 0
    public init() {}

    mutating func add(_ o: BrokerUsageCounts) {
        requests += o.requests
        statusCodes.merge(o.statusCodes, uniquingKeysWith: +)
        inputTokens += o.inputTokens
        outputTokens += o.outputTokens
    }
}

/// The broker's state in the service: its port (set before the box networks start, so the
/// nftables rules offer it to boxes) and the usage counters. The request path only touches
/// memory; `BrokerUsageFlusher` writes what changed to the database about once a second
/// (absolute totals, so a write that is retried or repeated cannot count twice).
public final class BrokerState: Sendable {
    private let portValue = Mutex<UInt16?>(nil)
    private struct Counts {
        var all: [String: [BrokerAPI: BrokerUsageCounts]] = [:]
        var dirty: Set<String> = []
    }
    private let counts = Mutex<Counts>(Counts())

    public init() {}

    public var port: UInt16? { portValue.withLock { $0 } }
    public func setPort(_ port: UInt16) { portValue.withLock { $0 = port } }

    func record(devboxId: String, api: BrokerAPI, status: Int?, inputTokens: Int, outputTokens: Int) {
        counts.withLock { c in
            var u = c.all[devboxId, default: [:]][api, default: BrokerUsageCounts()]
            if let status {
                u.requests += 1
                u.statusCodes[status, default: 0] += 1
            }
            u.inputTokens += inputTokens
            u.outputTokens += outputTokens
            c.all[devboxId, default: [:]][api] = u
            c.dirty.insert(devboxId)
        }
    }

    func usage(devboxId: String) -> [BrokerAPI: BrokerUsageCounts] { counts.withLock { $0.all[devboxId] } ?? [:] }
    func forget(devboxId: String) {
        counts.withLock {
            $0.all.removeValue(forKey: devboxId)
            $0.dirty.remove(devboxId)
        }
    }

    /// Adds what the database kept from earlier runs to what this run counted so far.
    func merge(stored: [String: [BrokerAPI: BrokerUsageCounts]]) {
        counts.withLock { c in
            for (id, apis) in stored {
                // Counted before the load: its total changed, it must be written.
                if c.all[id] != nil { c.dirty.insert(id) }
                for (api, u) in apis { c.all[id, default: [:]][api, default: BrokerUsageCounts()].add(u) }
            }
        }
    }

    /// The totals of every devbox counted since the last call (they are no longer dirty).
    func takeDirty() -> [String: [BrokerAPI: BrokerUsageCounts]] {
        counts.withLock { c in
            var out: [String: [BrokerAPI: BrokerUsageCounts]] = [:]
            for id in c.dirty { out[id] = c.all[id] }
            c.dirty.removeAll(keepingCapacity: true)
            return out
        }
    }

    /// Marks devboxes dirty again (a write that failed is tried on the next flush).
    func markDirty(_ ids: some Sequence<String>) { counts.withLock { $0.dirty.formUnion(ids) } }
}
