import DevboxModel
import Foundation

/// One devbox: state timeline with each operation's live output tail, repositories with
/// clone status, SSH sessions (create, copy the command, revoke), destroy with confirmation.
enum DevboxPage {
    struct Model: Sendable {
        var devbox: Devbox
        var operations: [DevboxOperation]
        var sessions: [AccessSessionInfo]
        var hasSSHKey: Bool
        var newSession: String?
        var errors: [String: String] = [:]
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
            <section aria-labelledby="sessions-h" id="sessions">
              <h2 id="sessions-h">SSH sessions</h2>
              \(sessions(m, csrf: csrf))
            </section>
            <section aria-labelledby="destroy-h" id="destroy">
              <h2 id="destroy-h">Destroy</h2>
              \(destroy(d, csrf: csrf, errors: m.errors))
            </section>
            </article>
            """)
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
                </tr>
                """
        }
        return """
            <table class="repos"><caption class="sr-only">Repositories and clone status</caption>
            <thead><tr><th scope="col">Repository</th><th scope="col">Ref</th><th scope="col">Path</th><th scope="col">Status</th><th scope="col">Commit</th><th scope="col">Error</th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """
    }

    static func command(_ s: AccessSessionInfo) -> String {
        let host = s.ssh.host.contains(":") ? "[\(s.ssh.host)]" : s.ssh.host
        return "ssh -p \(s.ssh.port) -o StrictHostKeyChecking=accept-new \(s.ssh.username)@\(host)"
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
