import DevboxModel
import Foundation

/// Account: who is signed in, the SSH key (set / remove, with its fingerprint), GitHub
/// (connect / disconnect, organisation grants).
enum AccountPage {
    struct Model: Sendable {
        var profile: UserProfile
        var sessionExpires: Date
        var oauthAvailable: Bool
        var connection: GitHubConnection?
        /// nil when not connected or when GitHub could not be asked (`orgsError` says why).
        var orgs: [GitHubOrg]?
        var orgsError: String?
        var errors: [String: String] = [:]
        var sshKeyDraft = ""
    }

    static func render(_ m: Model, csrf: String, notice: String?) -> HTML {
        Layout.page(title: "Account", csrf: csrf, section: .account, notice: notice, """
            <h1>Account</h1>
            <dl class="facts">
              <div><dt>User</dt><dd><code id="user-id">\(m.profile.id)</code></dd></div>
              <div><dt>External id</dt><dd>\(m.profile.externalId ?? "— (the provider's service user)")</dd></div>
              <div><dt>Signed in until</dt><dd>\(Display.time(m.sessionExpires))</dd></div>
            </dl>
            <section aria-labelledby="ssh-h" id="ssh-key">
              <h2 id="ssh-h">SSH key</h2>
              \(sshKey(m, csrf: csrf))
            </section>
            <section aria-labelledby="gh-h" id="github">
              <h2 id="gh-h">GitHub</h2>
              \(github(m, csrf: csrf))
            </section>
            """)
    }

    static func sshKey(_ m: Model, csrf: String) -> HTML {
        let current: HTML
        if let k = m.profile.sshKey {
            current = """
                <p>Current key: <code id="ssh-fingerprint">\(k.fingerprint)</code> (\(k.type)), set \(Display.time(k.updatedAt)).</p>
                <form method="post" action="/account/ssh-key/delete" class="inline">
                  \(Layout.csrfField(csrf))
                  <button type="submit" class="danger" id="remove-ssh-key">Remove key</button>
                </form>
                """
        } else {
            current = "<p id=\"no-ssh-key\">No SSH key set: SSH sessions need one.</p>"
        }
        return """
            \(current)
            <form method="post" action="/account/ssh-key" class="stack" id="ssh-key-form">
              \(Layout.csrfField(csrf))
              <div class="field">
                <label for="public_key">\(m.profile.sshKey == nil ? "Public key" : "Replace with public key") <span class="hint">(one line, e.g. the contents of ~/.ssh/id_ed25519.pub)</span></label>
                <textarea id="public_key" name="public_key" rows="3" spellcheck="false"\(Layout.invalid("public_key", m.errors))>\(m.sshKeyDraft)</textarea>
                \(Layout.fieldError("public_key", m.errors))
              </div>
              <button type="submit" class="primary" id="save-ssh-key">Save key</button>
            </form>
            """
    }

    static func github(_ m: Model, csrf: String) -> HTML {
        let general = Layout.fieldError("github", m.errors)
        guard let c = m.connection else {
            guard m.oauthAvailable else {
                return """
                    \(general)
                    <p id="github-unavailable">GitHub OAuth is not configured on this server (DEVBOX_GITHUB_CLIENT_ID,
                    DEVBOX_GITHUB_CLIENT_SECRET, DEVBOX_PUBLIC_URL). Public repositories still clone.</p>
                    """
            }
            return """
                \(general)
                <p id="github-not-connected">Not connected. Connect to clone private repositories and pick repositories when creating a devbox.</p>
                <form method="post" action="/account/github/connect" class="inline">
                  \(Layout.csrfField(csrf))
                  <button type="submit" class="primary" id="github-connect">Connect GitHub</button>
                </form>
                """
        }
        let orgs: HTML
        if let list = m.orgs {
            if list.isEmpty {
                orgs = "<p class=\"hint\" id=\"no-orgs\">The account belongs to no organisation.</p>"
            } else {
                let boxes: [HTML] = list.map { o in
                    """
                    <div class="field check">
                      <input type="checkbox" id="org-\(o.login)" name="org" value="\(o.login)"\(HTML.flag(o.granted, "checked"))>
                      <label for="org-\(o.login)">\(o.login)</label>
                    </div>
                    """
                }
                orgs = """
                    <form method="post" action="/account/github/org-grants" class="stack" id="org-grants-form">
                      \(Layout.csrfField(csrf))
                      <fieldset><legend>Organisations whose repositories devbox may use</legend>\(boxes)</fieldset>
                      \(Layout.fieldError("orgs", m.errors))
                      <button type="submit" class="primary" id="save-org-grants">Save grants</button>
                    </form>
                    """
            }
        } else {
            orgs = "<p class=\"form-error\">\(m.orgsError ?? "GitHub could not be asked for the organisations.")</p>"
        }
        return """
            \(general)
            <p id="github-connected">Connected as <strong id="github-login">\(c.login)</strong> since \(Display.time(c.connectedAt)); scopes: \(c.scopes.joined(separator: " "))</p>
            \(orgs)
            <div class="actions">
              <form method="post" action="/account/github/disconnect" class="inline">
                \(Layout.csrfField(csrf))
                <button type="submit" class="danger" id="github-disconnect">Disconnect GitHub</button>
              </form>
            </div>
            """
    }
}
