import DevboxModel
import DevboxService

/// What the create form holds. Secrets (environment values, AI tokens) are deliberately not
/// kept: a form shown again after an error asks for them again.
struct CreateFormState: Sendable {
    struct Repo: Sendable {
        var fullName = ""
        var ref = ""
        var path = ""
    }
    var name = ""
    var plan = ""
    var repos: [Repo] = [Repo()]
    var envKeys: [String] = [""]
    var setupCommands = ""
    var setupTimeout = ""
    var injectClaude = false
    var injectCodex = false
    /// Issue 23: the snapshot (id or name) to start from; empty: the default image.
    var snapshot = ""
}

/// The create form: name, plan, repositories (picker when GitHub is connected), env rows,
/// setup commands, timeout, Claude/Codex injection with token fields.
enum CreatePage {
    static func render(
        state f: CreateFormState, errors: [String: String], plans: [Plan], defaultPlan: String,
        repoChoices: [String]?, repoNote: String?, csrf: String, snapshots: [Snapshot] = []
    ) -> HTML {
        let general: HTML = errors["form"].map { "<p class=\"form-error\" role=\"alert\" id=\"err-form\">\($0)</p>" } ?? .empty
        let selected = f.plan.isEmpty ? defaultPlan : f.plan
        let planOptions: [HTML] = plans.map { p in
            "<option value=\"\(p.name)\"\(HTML.flag(p.name == selected, "selected"))>\(p.name) — \(p.memoryMiB) MiB, \(formatCPU(p.cpus)) CPU, \(DiskFloor.describe(Int64(p.diskMiB) << 20)) disk</option>"
        }
        var datalist = HTML.empty
        if let names = repoChoices {
            let options: [HTML] = names.map { n in "<option value=\"\(n)\">" }
            datalist = "<datalist id=\"github-repos\">\(options)</datalist>"
        }
        let repoHint: HTML =
            repoChoices != nil
            ? "<p class=\"hint\">Pick one of your GitHub repositories (start typing) or type any owner/name.</p>"
            : "<p class=\"hint\">\(repoNote ?? "Type owner/name of a public repository.")</p>"
        let repoRows = f.repos.enumerated().map { i, r in repoRow(i, r, errors, picker: repoChoices != nil) }
        let envRows = f.envKeys.enumerated().map { i, k in envRow(i, k, errors) }
        return Layout.page(title: "New devbox", csrf: csrf, section: .create, """
            <h1>New devbox</h1>
            \(general)
            <form method="post" action="/devboxes" id="create-form" class="stack" novalidate>
              \(Layout.csrfField(csrf))
              <div class="field">
                <label for="name">Name</label>
                <input id="name" name="name" value="\(f.name)" maxlength="64" required autocomplete="off"\(Layout.invalid("name", errors))>
                \(Layout.fieldError("name", errors))
              </div>
              <div class="field">
                <label for="plan">Plan</label>
                <select id="plan" name="plan"\(Layout.invalid("plan", errors))>\(planOptions)</select>
                \(Layout.fieldError("plan", errors))
              </div>
              \(snapshotField(f, snapshots, errors))
              <fieldset id="repositories">
                <legend>Repositories</legend>
                \(repoHint)
                \(Layout.fieldError("repositories", errors))
                <div id="repo-rows">\(repoRows)</div>
                <template id="repo-row-template">\(repoRow(-1, .init(), [:], picker: repoChoices != nil))</template>
                <button type="button" class="secondary" data-add-row="repo-row-template" data-target="repo-rows">Add repository</button>
                \(datalist)
              </fieldset>
              <fieldset id="env">
                <legend>Environment variables</legend>
                <p class="hint">Values are encrypted at rest and never shown again.</p>
                \(Layout.fieldError("env", errors))
                <div id="env-rows">\(envRows)</div>
                <template id="env-row-template">\(envRow(-1, "", [:]))</template>
                <button type="button" class="secondary" data-add-row="env-row-template" data-target="env-rows">Add variable</button>
              </fieldset>
              <div class="field">
                <label for="setup_commands">Setup commands <span class="hint">(one per line, run with sh in /workspace)</span></label>
                <textarea id="setup_commands" name="setup_commands" rows="4" spellcheck="false"\(Layout.invalid("setup_commands", errors))>\(f.setupCommands)</textarea>
                \(Layout.fieldError("setup_commands", errors))
              </div>
              <div class="field">
                <label for="setup_timeout_seconds">Setup timeout, seconds <span class="hint">(30–3600, default \(CreateValidation.defaultSetupTimeout))</span></label>
                <input id="setup_timeout_seconds" name="setup_timeout_seconds" inputmode="numeric" value="\(f.setupTimeout)"\(Layout.invalid("setup_timeout_seconds", errors))>
                \(Layout.fieldError("setup_timeout_seconds", errors))
              </div>
              <fieldset id="credentials">
                <legend>AI credentials</legend>
                <p class="hint">Injected into the box as ANTHROPIC_API_KEY / OPENAI_API_KEY, then deleted here.</p>
                \(tokenField("claude", "Claude", f.injectClaude, errors))
                \(tokenField("codex", "Codex", f.injectCodex, errors))
              </fieldset>
              <button type="submit" class="primary" id="create">Create devbox</button>
            </form>
            """)
    }

    static func formatCPU(_ c: Double) -> String {
        c == c.rounded() ? String(Int(c)) : String(c)
    }

    /// One repository row; `i == -1` is the template app.js copies (ids get `__i__`).
    /// "Start from": the default image or one of the user's snapshots (shown when there are any).
    static func snapshotField(_ f: CreateFormState, _ snapshots: [Snapshot], _ errors: [String: String]) -> HTML {
        guard !snapshots.isEmpty || !f.snapshot.isEmpty else { return .empty }
        var options: [HTML] = ["<option value=\"\"\(HTML.flag(f.snapshot.isEmpty, "selected"))>The default image</option>"]
        var known = false
        for s in snapshots {
            let chosen = f.snapshot == s.name || f.snapshot == s.id
            known = known || chosen
            options.append(
                "<option value=\"\(s.id)\"\(HTML.flag(chosen, "selected"))>Snapshot \(s.name) (\(SnapshotsPage.bytes(s.sizeBytes)))</option>")
        }
        if !known && !f.snapshot.isEmpty {
            options.append("<option value=\"\(f.snapshot)\" selected>Snapshot \(f.snapshot)</option>")
        }
        return """
            <div class="field">
              <label for="snapshot">Start from</label>
              <select id="snapshot" name="snapshot"\(Layout.invalid("snapshot", errors))>\(options)</select>
              \(Layout.fieldError("snapshot", errors))
            </div>
            """
    }

    static func repoRow(_ i: Int, _ r: CreateFormState.Repo, _ errors: [String: String], picker: Bool) -> HTML {
        let n = i < 0 ? "__i__" : String(i)
        let fn = "repo_full_name_\(n)", rf = "repo_ref_\(n)", tp = "repo_path_\(n)"
        return """
            <div class="row repo-row">
              <div class="field">
                <label for="\(fn)">Repository (owner/name)</label>
                <input id="\(fn)" name="repo_full_name" value="\(r.fullName)" autocomplete="off" spellcheck="false"\(picker ? HTML(raw: " list=\"github-repos\"") : .empty)\(Layout.invalid(fn, errors))>
                \(Layout.fieldError(fn, errors))
              </div>
              <div class="field small">
                <label for="\(rf)">Ref</label>
                <input id="\(rf)" name="repo_ref" value="\(r.ref)" placeholder="main" autocomplete="off" spellcheck="false"\(Layout.invalid(rf, errors))>
                \(Layout.fieldError(rf, errors))
              </div>
              <div class="field">
                <label for="\(tp)">Path</label>
                <input id="\(tp)" name="repo_path" value="\(r.path)" placeholder="/workspace" autocomplete="off" spellcheck="false"\(Layout.invalid(tp, errors))>
                \(Layout.fieldError(tp, errors))
              </div>
            </div>
            """
    }

    static func envRow(_ i: Int, _ key: String, _ errors: [String: String]) -> HTML {
        let n = i < 0 ? "__i__" : String(i)
        let k = "env_key_\(n)", v = "env_value_\(n)"
        return """
            <div class="row env-row">
              <div class="field">
                <label for="\(k)">Name</label>
                <input id="\(k)" name="env_key" value="\(key)" autocomplete="off" spellcheck="false" placeholder="MY_VARIABLE"\(Layout.invalid(k, errors))>
                \(Layout.fieldError(k, errors))
              </div>
              <div class="field">
                <label for="\(v)">Value</label>
                <input id="\(v)" name="env_value" type="password" autocomplete="off" spellcheck="false"\(Layout.invalid(v, errors))>
                \(Layout.fieldError(v, errors))
              </div>
            </div>
            """
    }

    static func tokenField(_ kind: String, _ label: String, _ on: Bool, _ errors: [String: String]) -> HTML {
        let box = "inject_\(kind)_token", tok = "\(kind)_token"
        return """
            <div class="field check">
              <input type="checkbox" id="\(box)" name="\(box)"\(HTML.flag(on, "checked"))>
              <label for="\(box)">Inject a \(label) token</label>
            </div>
            <div class="field">
              <label for="\(tok)">\(label) token</label>
              <input type="password" id="\(tok)" name="\(tok)" autocomplete="off" spellcheck="false"\(Layout.invalid(tok, errors))>
              \(Layout.fieldError(tok, errors))
            </div>
            """
    }
}
