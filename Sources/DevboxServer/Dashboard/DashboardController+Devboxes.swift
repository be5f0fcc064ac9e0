import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird

/// Create form, devbox page, sessions, destroy.
extension DashboardController {
    // MARK: Create

    @Sendable func newDevbox(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            guard let s = try await signedIn(request) else { return Web.redirect("/login") }
            var state = CreateFormState()
            state.snapshot = request.uri.queryParameters["snapshot"].map(String.init) ?? ""
            return await renderCreate(s, state: state, errors: [:], status: .ok)
        }
    }

    func renderCreate(
        _ s: DashboardSession, state: CreateFormState, errors: [String: String], status: HTTPResponse.Status
    ) async -> Response {
        var choices: [String]?
        var note: String?
        if (try? await github.gitHubConnection(s.principal)) != nil {
            do {
                choices = try await github.gitHubRepos(s.principal).map(\.fullName)
            } catch {
                note = "GitHub could not list your repositories (\(error.message)); type owner/name."
            }
        }
        let snapshots = (try? await snapshots.listSnapshots(s.principal)) ?? []
        return Web.html(
            CreatePage.render(
                state: state, errors: errors, plans: commands.plans, defaultPlan: commands.defaultPlanName,
                repoChoices: choices, repoNote: note, csrf: s.csrfToken, snapshots: snapshots),
            status: status)
    }

    /// A parsed create form: the request for the core, the AI tokens, what to show again,
    /// field errors found before the core is asked, and how request indexes map to rows.
    struct ParsedCreate {
        var request: CreateDevboxRequest
        var tokens: InjectionTokens
        var state: CreateFormState
        var errors: [String: String]
        var repoRowOf: [Int]
        var envRowOf: [String: Int]
    }

    static func parseCreate(_ form: Form) -> ParsedCreate {
        var state = CreateFormState()
        var errors: [String: String] = [:]
        state.name = (form["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        state.plan = form["plan"] ?? ""
        state.snapshot = (form["snapshot"] ?? "").trimmingCharacters(in: .whitespaces)
        let names = form.all("repo_full_name"), refs = form.all("repo_ref"), paths = form.all("repo_path")
        var repos: [DevboxRepositoryRequest] = []
        var repoRowOf: [Int] = []
        state.repos = []
        for i in 0..<max(names.count, refs.count, paths.count) {
            func at(_ a: [String]) -> String { i < a.count ? a[i].trimmingCharacters(in: .whitespaces) : "" }
            let r = CreateFormState.Repo(fullName: at(names), ref: at(refs), path: at(paths))
            if r.fullName.isEmpty && r.ref.isEmpty && r.path.isEmpty { continue }
            let row = state.repos.count
            state.repos.append(r)
            if r.fullName.isEmpty {
                errors["repo_full_name_\(row)"] = "Enter owner/name, or clear this row."
                continue
            }
            repoRowOf.append(row)
            repos.append(DevboxRepositoryRequest(
                fullName: r.fullName, ref: r.ref.isEmpty ? nil : r.ref, targetPath: r.path.isEmpty ? nil : r.path))
        }
        if state.repos.isEmpty { state.repos = [.init()] }
        let keys = form.all("env_key"), values = form.all("env_value")
        var env: [String: String] = [:]
        var envRowOf: [String: Int] = [:]
        state.envKeys = []
        for i in 0..<max(keys.count, values.count) {
            let k = i < keys.count ? keys[i].trimmingCharacters(in: .whitespaces) : ""
            let v = i < values.count ? values[i] : ""
            if k.isEmpty && v.isEmpty { continue }
            let row = state.envKeys.count
            state.envKeys.append(k)
            if k.isEmpty {
                errors["env_key_\(row)"] = "Enter a name for this value, or clear the row."
            } else if env[k] != nil {
                errors["env_key_\(row)"] = "\(k) is set twice."
            } else {
                env[k] = v
                envRowOf[k] = row
            }
        }
        if state.envKeys.isEmpty { state.envKeys = [""] }
        state.setupCommands = form["setup_commands"] ?? ""
        let commands = state.setupCommands.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n")
            .map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        state.setupTimeout = (form["setup_timeout_seconds"] ?? "").trimmingCharacters(in: .whitespaces)
        var timeout: Int?
        if !state.setupTimeout.isEmpty {
            if let t = Int(state.setupTimeout) { timeout = t } else {
                errors["setup_timeout_seconds"] = "Enter a whole number of seconds (30 to 3600)."
            }
        }
        state.injectClaude = form.isOn("inject_claude_token")
        state.injectCodex = form.isOn("inject_codex_token")
        let claude = form["claude_token"] ?? "", codex = form["codex_token"] ?? ""
        if state.injectClaude && claude.isEmpty { errors["claude_token"] = "Enter the Claude token, or untick its injection." }
        if state.injectCodex && codex.isEmpty { errors["codex_token"] = "Enter the Codex token, or untick its injection." }
        let request = CreateDevboxRequest(
            name: state.name, plan: state.plan.isEmpty ? nil : state.plan, repositories: repos.isEmpty ? nil : repos,
            credentialProfile: CredentialProfile(injectClaudeToken: state.injectClaude, injectCodexToken: state.injectCodex),
            env: env.isEmpty ? nil : env, setupCommands: commands.isEmpty ? nil : commands, setupTimeoutSeconds: timeout,
            snapshot: state.snapshot.isEmpty ? nil : state.snapshot)
        return ParsedCreate(
            request: request,
            tokens: InjectionTokens(
                claudeToken: state.injectClaude ? claude : nil, codexToken: state.injectCodex ? codex : nil),
            state: state, errors: errors, repoRowOf: repoRowOf, envRowOf: envRowOf)
    }

    /// The form field a core error names (`repositories[1].ref` → `repo_ref_<row>`, `env.KEY` →
    /// that row's name); "form" when it names none of them.
    static func formField(_ field: String, _ p: ParsedCreate) -> String {
        switch field {
        case "name", "plan", "setup_timeout_seconds", "repositories", "env", "snapshot": return field
        case "X-Claude-Token": return "claude_token"
        case "X-Codex-Token": return "codex_token"
        default: break
        }
        if field.hasPrefix("setup_commands") { return "setup_commands" }
        if field.hasPrefix("env.") {
            return p.envRowOf[String(field.dropFirst(4))].map { "env_key_\($0)" } ?? "env"
        }
        if field.hasPrefix("repositories["), let close = field.firstIndex(of: "]"),
            let i = Int(field[field.index(field.startIndex, offsetBy: 13)..<close]), i < p.repoRowOf.count
        {
            let row = p.repoRowOf[i]
            if field.hasSuffix(".ref") { return "repo_ref_\(row)" }
            if field.hasSuffix(".target_path") { return "repo_path_\(row)" }
            return "repo_full_name_\(row)"
        }
        return "form"
    }

    @Sendable func create(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let parsed = Self.parseCreate(form)
            if !parsed.errors.isEmpty {
                return await renderCreate(s, state: parsed.state, errors: parsed.errors, status: .unprocessableContent)
            }
            do {
                let d = try await commands.createDevbox(s.principal, parsed.request, tokens: parsed.tokens)
                return Web.redirect("/devboxes/\(d.id)?notice=created")
            } catch ServiceError.validation(let field, let message) {
                return await renderCreate(
                    s, state: parsed.state, errors: [Self.formField(field, parsed): message], status: .unprocessableContent)
            } catch let error as ServiceError {
                return await renderCreate(
                    s, state: parsed.state, errors: ["form": error.message], status: HTTPResponse.Status(code: error.statusCode))
            }
        }
    }

    // MARK: Devbox page

    func devboxModel(_ s: DashboardSession, id: String, newSession: String? = nil) async throws(ServiceError) -> DevboxPage.Model {
        let d = try await reads.devbox(s.principal, id: id)
        let ops = try await reads.operations(s.principal, id: id)
        let sessions = try await access.listSessions(s.principal, devboxId: id)
        let profile = try await reads.profile(s.principal)
        let usage = try await credentials.brokerUsage(s.principal, id: id).1
        return DevboxPage.Model(
            devbox: d, operations: ops, sessions: sessions, hasSSHKey: profile.sshKey != nil, newSession: newSession,
            usage: usage)
    }

    @Sendable func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        guard let s = try await signedIn(request) else { return Web.redirect("/login") }
        return try await page(s.csrfToken) {
            let fresh = request.uri.queryParameters["session"].map(String.init)
            let m = try await devboxModel(s, id: Self.param(context, "id"), newSession: fresh)
            return Web.html(DevboxPage.render(m, csrf: s.csrfToken, notice: Self.notice(request)))
        }
    }

    @Sendable func createSession(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let id = Self.param(context, "id")
            let ttl = Int(form["ttl_seconds"] ?? "")
            do {
                let created = try await access.createSession(s.principal, devboxId: id, ttlSeconds: ttl)
                return Web.redirect("/devboxes/\(id)?notice=session_created&session=\(created.sessionId)#sessions")
            } catch ServiceError.validation(let field, let message) {
                var m = try await devboxModel(s, id: id)
                m.errors = [field == "ttl_seconds" ? "ttl_seconds" : "session": message]
                return Web.html(DevboxPage.render(m, csrf: s.csrfToken, notice: nil), status: .unprocessableContent)
            } catch ServiceError.conflict(let message) {
                var m = try await devboxModel(s, id: id)
                m.errors = ["session": message]
                return Web.html(DevboxPage.render(m, csrf: s.csrfToken, notice: nil), status: .conflict)
            }
        }
    }

    @Sendable func revokeSession(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            if case .refused(let r) = try await post(request) { return r }
            guard let s = try await signedIn(request) else { return Web.redirect("/login") }
            let id = Self.param(context, "id")
            try await access.revokeSession(s.principal, devboxId: id, sessionId: Self.param(context, "session"))
            return Web.redirect("/devboxes/\(id)?notice=session_revoked#sessions")
        }
    }

    // MARK: Network

    /// A parsed network form: the policy for the core, the form as typed, and for each
    /// list entry the textarea line it came from (1-based).
    struct ParsedNetwork {
        var policy: DevboxNetwork
        var draft: DevboxPage.NetworkDraft
        var allowLines: [Int]
        var denyLines: [Int]
    }

    static func parseNetwork(_ form: Form) -> ParsedNetwork {
        let draft = DevboxPage.NetworkDraft(
            egress: form["egress"] ?? "", allow: form["allow"] ?? "", deny: form["deny"] ?? "")
        /// Non-blank lines, trimmed, with their line numbers.
        func entries(_ text: String) -> ([String], [Int]) {
            var out: [String] = [], lines: [Int] = []
            let all = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
            for (i, line) in all.enumerated() {
                let t = line.trimmingCharacters(in: .whitespaces)
                if t.isEmpty { continue }
                out.append(t)
                lines.append(i + 1)
            }
            return (out, lines)
        }
        let (allow, allowLines) = entries(draft.allow)
        let (deny, denyLines) = entries(draft.deny)
        return ParsedNetwork(
            policy: DevboxNetwork(egress: draft.egress, allow: allow, deny: deny), draft: draft,
            allowLines: allowLines, denyLines: denyLines)
    }

    /// The form field and message for a core error: `network.allow[2]` → the allow
    /// textarea, "Line N: …" where N is the line the entry was typed on.
    static func networkError(field: String, message: String, _ p: ParsedNetwork) -> (String, String) {
        if field == "network.egress" { return ("network_egress", message) }
        for (name, lines) in [("allow", p.allowLines), ("deny", p.denyLines)] {
            let prefix = "network.\(name)"
            guard field.hasPrefix(prefix) else { continue }
            let rest = field.dropFirst(prefix.count)
            if rest.hasPrefix("["), rest.hasSuffix("]"), let i = Int(rest.dropFirst().dropLast()), lines.indices.contains(i) {
                return ("network_\(name)", "Line \(lines[i]): \(message)")
            }
            return ("network_\(name)", message)
        }
        return ("network", message)
    }

    @Sendable func setNetwork(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let id = Self.param(context, "id")
            let parsed = Self.parseNetwork(form)
            func again(_ errors: [String: String], _ status: HTTPResponse.Status) async throws -> Response {
                var m = try await devboxModel(s, id: id)
                m.errors = errors
                m.networkDraft = parsed.draft
                return Web.html(DevboxPage.render(m, csrf: s.csrfToken, notice: nil), status: status)
            }
            do {
                _ = try await runtime.setNetwork(s.principal, id: id, parsed.policy)
                return Web.redirect("/devboxes/\(id)?notice=network_saved#network")
            } catch ServiceError.validation(let field, let message) {
                let (control, shown) = Self.networkError(field: field, message: message, parsed)
                return try await again([control: shown], .unprocessableContent)
            } catch let error as ServiceError where error.statusCode == 409 || error.statusCode == 503 {
                return try await again(["network": error.message], HTTPResponse.Status(code: error.statusCode))
            }
        }
    }

    @Sendable func destroy(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await page(nil) {
            let (s, form): (DashboardSession, Form)
            switch try await post(request) {
            case .refused(let r): return r
            case .ok(let a, let b): (s, form) = (a, b)
            }
            let id = Self.param(context, "id")
            guard form.isOn("confirm") else {
                var m = try await devboxModel(s, id: id)
                m.errors = ["confirm": "Tick the box to confirm the destruction."]
                return Web.html(DevboxPage.render(m, csrf: s.csrfToken, notice: nil), status: .unprocessableContent)
            }
            try await commands.deleteDevbox(s.principal, id: id)
            return Web.redirect("/?notice=destroyed")
        }
    }
}
