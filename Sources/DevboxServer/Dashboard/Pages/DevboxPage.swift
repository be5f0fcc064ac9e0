import DevboxModel
import DevboxService
import Foundation

/// One devbox: state timeline with each operation's live output tail, repositories with
/// clone status, egress policy (shown and editable), SSH sessions (create, copy the
/// command, revoke), destroy with confirmation.
enum DevboxPage {
    struct Model: Sendable {
        var devbox: Devbox
        var operations: [DevboxOperation]
        var sessions: [AccessSessionInfo]
        var hasSSHKey: Bool
        var newSession: String?
        var errors: [String: String] = [:]
        /// The network form as submitted, shown again after an error (nil: the stored policy).
        var networkDraft: NetworkDraft?
        /// What the AI-API broker counted for the devbox (issue 19; kept across restarts).
        var usage: [BrokerAPI: BrokerUsageCounts] = [:]
    }

    /// The egress form's fields as typed: entries one per line.
    struct NetworkDraft: Sendable, Equatable {
        var egress: String
        var allow: String
        var deny: String

        init(egress: String, allow: String, deny: String) {
            self.egress = egress
            self.allow = allow
            self.deny = deny
        }

        init(_ n: DevboxNetwork) {
            self.init(egress: n.egress, allow: n.allow.joined(separator: "\n"), deny: n.deny.joined(separator: "\n"))
        }
    }

    static let liveStates: Set<DevboxState> = [.requested, .provisioning]

    static func render(_ m: Model, csrf: String, notice: String?, now: Date = Date()) -> HTML {
        let d = m.devbox
        let live = liveStates.contains(d.state)
        let failure: HTML = d.error.map {
            "<p class=\"form-error\" role=\"alert\" id=\"devbox-error\">\($0.operation) failed: \($0.message)</p>"
        } ?? .empty
        return Layout.page(title: d.name, csrf: csrf, section: .devboxes, notice: notice, """
            <article id="devbox" data-devbox-id="\(d.id)" data-state-at-render="\(d.state.rawValue)"\(live ? HTML(raw: " data-live-devbox") : .empty)>
            <div class="heading">
              <h1>\(d.name)</h1>
              \(Layout.stateBadge(d.state.rawValue, attrs: " id=\"devbox-state\" aria-live=\"polite\""))
            </div>
            <dl class="facts">
              <div><dt>Id</dt><dd><code>\(d.id)</code></dd></div>
              <div><dt>Plan</dt><dd>\(d.plan)</dd></div>
              <div><dt>Created</dt><dd><time datetime="\(Display.time(d.createdAt))">\(Display.age(since: d.createdAt, now: now)) ago</time></dd></div>
              <div><dt>Environment</dt><dd>\(d.envKeys.isEmpty ? "—" : d.envKeys.joined(separator: ", "))</dd></div>
              <div><dt>AI tokens</dt><dd>\(aiTokens(d.credentialProfile))</dd></div>
              <div><dt>Credential mode</dt><dd id="credential-mode">\(d.credentialMode == "proxy" ? "proxy (keys stay on the server)" : "env (keys in the box)")</dd></div>
            </dl>
            \(failure)
            <section aria-labelledby="timeline-h">
              <h2 id="timeline-h">Timeline</h2>
              \(timeline(m, now: now))
            </section>
            <section aria-labelledby="repos-h">
              <h2 id="repos-h">Repositories</h2>
              \(repositories(d.repositories))
            </section>
            \(resources(d))
            \(brokerUsage(m))
            <section aria-labelledby="network-h" id="network">
              <h2 id="network-h">Network</h2>
              \(network(m, csrf: csrf))
            </section>
            <section aria-labelledby="sessions-h" id="sessions">
              <h2 id="sessions-h">SSH sessions</h2>
              \(sessions(m, csrf: csrf))
            </section>
            <section aria-labelledby="ports-h" id="ports">
              <h2 id="ports-h">Ports</h2>
              \(ports(d))
            </section>
            \(SnapshotsPage.devboxSection(d, csrf: csrf, errors: m.errors))
            <section aria-labelledby="destroy-h" id="destroy">
              <h2 id="destroy-h">Destroy</h2>
              \(destroy(d, csrf: csrf, errors: m.errors))
            </section>
            </article>
            """)
    }

    /// The AI-API broker's counts per API (proxy mode, or anything counted).
    static func brokerUsage(_ m: Model) -> HTML {
        guard m.devbox.credentialMode == "proxy" || !m.usage.isEmpty else { return .empty }
        let rows: [HTML] = BrokerAPI.allCases.map { api in
            let c = m.usage[api] ?? BrokerUsageCounts()
            let codes = c.statusCodes.isEmpty
                ? "—" : c.statusCodes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            return """
                <tr data-usage-api="\(api.rawValue)">
                  <td data-label="API"><span>\(api == .anthropic ? "Anthropic" : "OpenAI")</span></td>
                  <td data-label="Requests"><span data-usage-requests>\(c.requests)</span></td>
                  <td data-label="Status codes"><span data-usage-codes>\(codes)</span></td>
                  <td data-label="Input tokens"><span data-usage-input>\(c.inputTokens)</span></td>
                  <td data-label="Output tokens"><span data-usage-output>\(c.outputTokens)</span></td>
                </tr>
                """
        }
        return """
            <section aria-labelledby="usage-h" id="usage">
              <h2 id="usage-h">AI-API usage</h2>
              <table class="repos" id="usage-table"><caption class="sr-only">Requests the broker forwarded, per API</caption>
              <thead><tr><th scope="col">API</th><th scope="col">Requests</th><th scope="col">Status codes</th><th scope="col">Input tokens</th><th scope="col">Output tokens</th></tr></thead>
              <tbody>\(rows)</tbody></table>
            </section>
            """
    }

    static func aiTokens(_ p: CredentialProfile) -> String {
        var out: [String] = []
        if p.injectClaudeToken { out.append("Claude") }
        if p.injectCodexToken { out.append("Codex") }
        return out.isEmpty ? "none" : out.joined(separator: ", ")
    }

    static func timeline(_ m: Model, now: Date) -> HTML {
        let d = m.devbox
        var items: [HTML] = ["<li class=\"event\"><span class=\"what\">requested</span> <time>\(Display.time(d.createdAt))</time></li>"]
        for op in m.operations {
            let (tail, cut) = Display.tail(op.output)
            let span: String
            if let s = op.startedAt {
                span = "started \(Display.time(s))" + (op.finishedAt.map { ", took \(Display.duration($0.timeIntervalSince(s)))" } ?? "")
            } else {
                span = ""
            }
            let error: HTML = op.error.map { "<p class=\"op-error\" data-op-error>\($0)</p>" } ?? "<p class=\"op-error\" data-op-error hidden></p>"
            let truncated = cut || op.outputTruncated
            items.append("""
                <li class="op op-\(op.status.rawValue)" data-op="\(op.name.rawValue)">
                  <span class="what">\(op.name.rawValue)</span>
                  <span class="op-status" data-op-status>\(op.status.rawValue)</span>
                  <span class="hint" data-op-span>\(span)</span>
                  \(error)
                  <details\(HTML.flag(!op.output.isEmpty || op.status == .running, "open"))>
                    <summary>Output<span class="hint" data-op-truncated\(HTML.flag(!truncated, "hidden"))> (last part only)</span></summary>
                    <pre class="output" id="output-\(op.name.rawValue)" data-op-output tabindex="0">\(tail)</pre>
                  </details>
                </li>
                """)
        }
        switch d.state {
        case .ready:
            items.append("<li class=\"event\"><span class=\"what\">ready</span> <time>\(Display.time(d.readyAt))</time></li>")
        case .failed, .destroyed, .stopped:
            items.append("<li class=\"event\"><span class=\"what\">\(d.state.rawValue)</span> <time>\(Display.time(d.updatedAt))</time></li>")
        case .requested, .provisioning:
            break
        }
        return "<ol class=\"timeline\" id=\"timeline\">\(items)</ol>"
    }

    static func repositories(_ repos: [DevboxRepository]) -> HTML {
        guard !repos.isEmpty else { return "<p class=\"empty\">No repositories.</p>" }
        let rows: [HTML] = repos.enumerated().map { i, r in
            let commit = r.commit.map { String($0.prefix(12)) } ?? "—"
            return """
                <tr data-repo="\(i)">
                  <td data-label="Repository"><span>\(r.fullName)</span></td>
                  <td data-label="Ref"><span>\(r.ref)</span></td>
                  <td data-label="Path"><code>\(r.targetPath)</code></td>
                  <td data-label="Status"><span class="state state-\(r.status)" data-repo-status>\(r.status)</span></td>
                  <td data-label="Commit"><code data-repo-commit>\(commit)</code></td>
                  <td data-label="Error"><span data-repo-error>\(r.error ?? "")</span></td>
                  <td data-label="Push"><span data-repo-push>\(r.pushBranches.isEmpty ? "—" : r.pushBranches.joined(separator: ", "))</span></td>
                </tr>
                """
        }
        return """
            <table class="repos"><caption class="sr-only">Repositories and clone status</caption>
            <thead><tr><th scope="col">Repository</th><th scope="col">Ref</th><th scope="col">Path</th><th scope="col">Status</th><th scope="col">Commit</th><th scope="col">Error</th><th scope="col">Push (git broker)</th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """
    }

    /// The egress policy as stored, and (unless destroyed) the form that replaces it.
    static func network(_ m: Model, csrf: String) -> HTML {
        let d = m.devbox
        let n = d.network
        func list(_ entries: [String], _ id: String) -> HTML {
            guard !entries.isEmpty else { return "<dd id=\"\(id)\">none</dd>" }
            let items: [HTML] = entries.map { "<li><code>\($0)</code></li>" }
            return "<dd id=\"\(id)\"><ul class=\"entries\">\(items)</ul></dd>"
        }
        let facts: HTML = """
            <dl class="facts" id="network-policy">
              <div><dt>Egress</dt><dd id="network-egress-shown">\(n.egress == "deny_all" ? "deny all (allow-list)" : "allow all (deny-list)")</dd></div>
              <div><dt>Allowed</dt>\(list(n.allow, "network-allow-shown"))</div>
              <div><dt>Denied</dt>\(list(n.deny, "network-deny-shown"))</div>
            </dl>
            """
        guard d.state != .destroyed else { return facts }
        let f = m.networkDraft ?? NetworkDraft(n)
        func option(_ value: String, _ label: String) -> HTML {
            "<option value=\"\(value)\"\(HTML.flag(f.egress == value, "selected"))>\(label)</option>"
        }
        return """
            \(facts)
            <form method="post" action="/devboxes/\(d.id)/network" id="network-form" class="stack" novalidate>
              \(Layout.csrfField(csrf))
              <p class="hint">Saving replaces the whole policy; new connections from the devbox follow it within a second.
                Entries are CIDRs (<code>198.51.100.0/24</code>), addresses or domain names; <code>*.example.org</code>
                matches the names under example.org. Private, loopback and link-local addresses and the host stay unreachable.</p>
              <div class="field">
                <label for="network_egress">Egress</label>
                <select id="network_egress" name="egress"\(Layout.invalid("network_egress", m.errors))>
                  \(option("allow_all", "Allow all, except the deny list"))
                  \(option("deny_all", "Deny all, except the allow list"))
                </select>
                \(Layout.fieldError("network_egress", m.errors))
              </div>
              <div class="row">
                <div class="field">
                  <label for="network_allow">Allow <span class="hint">(one per line, at most \(maxEntries))</span></label>
                  <textarea id="network_allow" name="allow" rows="4" spellcheck="false" autocapitalize="off"\(Layout.invalid("network_allow", m.errors))>\(f.allow)</textarea>
                  \(Layout.fieldError("network_allow", m.errors))
                </div>
                <div class="field">
                  <label for="network_deny">Deny <span class="hint">(one per line, at most \(maxEntries))</span></label>
                  <textarea id="network_deny" name="deny" rows="4" spellcheck="false" autocapitalize="off"\(Layout.invalid("network_deny", m.errors))>\(f.deny)</textarea>
                  \(Layout.fieldError("network_deny", m.errors))
                </div>
              </div>
              \(Layout.fieldError("network", m.errors))
              <button type="submit" class="primary" id="save-network">Save network policy</button>
            </form>
            """
    }

    /// Entries per list (the API's limit, shown in the form).
    static let maxEntries = 64

    static func command(_ s: AccessSessionInfo) -> String {
        let host = s.ssh.host.contains(":") ? "[\(s.ssh.host)]" : s.ssh.host
        return "ssh -p \(s.ssh.port) -o StrictHostKeyChecking=accept-new \(s.ssh.username)@\(host)"
    }

    /// "Open port N": a GET form to the port proxy's redirect (`/api/v1/devboxes/:id/ports?port=N`),
    /// which signs in with this page's cookie. The page opens in a new tab, sandboxed.
    static func ports(_ d: Devbox) -> HTML {
        guard d.state == .ready else { return "<p class=\"hint\">Ports can be opened once the devbox is ready.</p>" }
        return """
            <form method="get" action="/api/v1/devboxes/\(d.id)/ports" class="row" id="open-port-form" target="_blank" rel="noopener noreferrer">
              <div class="field small">
                <label for="port">Port</label>
                <input id="port" name="port" type="number" min="1" max="65535" required inputmode="numeric" placeholder="8000">
              </div>
              <button type="submit" class="secondary" id="open-port">Open port</button>
            </form>
            <p class="hint">An HTTP server in the devbox (on its 127.0.0.1 or any address) at <code>/api/v1/devboxes/\(d.id)/ports/&lt;port&gt;/</code>. The page runs sandboxed: it cannot use this dashboard's session for its own scripts, styles or links.</p>
            """
    }

    static func sessions(_ m: Model, csrf: String) -> HTML {
        let d = m.devbox
        let create: HTML
        if d.state != .ready {
            create = "<p class=\"hint\">Sessions can be created once the devbox is ready.</p>"
        } else if !m.hasSSHKey {
            create = "<p class=\"hint\" id=\"need-ssh-key\">Set your SSH public key on the <a href=\"/account#ssh-key\">account page</a> first.</p>"
        } else {
            create = """
                <form method="post" action="/devboxes/\(d.id)/sessions" class="row" id="create-session-form">
                  \(Layout.csrfField(csrf))
                  <div class="field small">
                    <label for="ttl_seconds">Lifetime</label>
                    <select id="ttl_seconds" name="ttl_seconds"\(Layout.invalid("ttl_seconds", m.errors))>
                      <option value="900">15 minutes</option>
                      <option value="3600" selected>1 hour</option>
                      <option value="28800">8 hours</option>
                      <option value="86400">24 hours</option>
                    </select>
                    \(Layout.fieldError("ttl_seconds", m.errors))
                  </div>
                  <button type="submit" class="primary" id="create-session">Create SSH session</button>
                </form>
                \(Layout.fieldError("session", m.errors))
                """
        }
        let list: [HTML] = m.sessions.map { s in
            let cmd = command(s)
            let fresh = s.sessionId == m.newSession
            return """
                <li class="session\(fresh ? HTML(raw: " new") : .empty)" data-session="\(s.sessionId)">
                  <div class="cmd"><code id="cmd-\(s.sessionId)" class="ssh-command">\(cmd)</code>
                    <button type="button" class="secondary" data-copy="cmd-\(s.sessionId)" aria-label="Copy the ssh command of \(s.sessionId)">Copy</button></div>
                  <p class="hint">\(s.sessionId) · expires \(Display.time(s.expiresAt)) · \(s.connections) connection(s)</p>
                  <form method="post" action="/devboxes/\(d.id)/sessions/\(s.sessionId)/revoke" class="inline">
                    \(Layout.csrfField(csrf))
                    <button type="submit" class="danger" aria-label="Revoke \(s.sessionId)">Revoke</button>
                  </form>
                </li>
                """
        }
        let listHTML: HTML = list.isEmpty ? "<p class=\"empty\" id=\"no-sessions\">No active sessions.</p>" : "<ul class=\"sessions\" id=\"session-list\">\(list)</ul>"
        return "\(create)\(listHTML)"
    }

    static func destroy(_ d: Devbox, csrf: String, errors: [String: String]) -> HTML {
        guard d.state != .destroyed else { return "<p class=\"hint\">This devbox is destroyed.</p>" }
        return """
            <form method="post" action="/devboxes/\(d.id)/destroy" id="destroy-form" class="stack">
              \(Layout.csrfField(csrf))
              <p>Destroying stops every process, deletes the workspace and closes SSH sessions. It cannot be undone.</p>
              <div class="field check">
                <input type="checkbox" id="confirm" name="confirm" required\(Layout.invalid("confirm", errors))>
                <label for="confirm">I want to destroy <strong>\(d.name)</strong> and everything in it</label>
              </div>
              \(Layout.fieldError("confirm", errors))
              <button type="submit" class="danger" id="destroy-button">Destroy devbox</button>
            </form>
            """
    }
}
