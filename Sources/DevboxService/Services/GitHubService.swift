import DevboxModel
import DevboxSecurity
import Foundation
import Logging

/// How the connected account's token may be used for one repository.
enum RepositoryAccess: Sendable, Equatable {
    /// Clone with the token: the user's own repository, a repository of a granted
    /// organisation, or another user's repository the account can see.
    case token(String)
    /// Clone without a token (a public repository); `hint` says what would help if it fails.
    case anonymous(hint: String)
    /// The service can tell it must not be cloned (an ungranted organisation's private repository).
    case refused(String)
    /// The connected account cannot see it (GitHub answered 404).
    case notFound
}

/// GitHub: the OAuth connection (start, callback, disconnect), the connected account's
/// repositories and organisations, organisation grants, and which token a clone of a
/// repository may use (`repositoryAccess`: provisioning, the create's checks, the git broker).
public final class GitHubService: Sendable, LoggingService {
    let db: AppDatabase
    let cipher: any SecretCipher
    let settings: GitHubSettings
    let githubClient: GitHubClient
    let auditor: Auditor
    let logger: Logger

    public init(database: AppDatabase, cipher: any SecretCipher, settings: GitHubSettings, auditor: Auditor, logger: Logger) {
        self.db = database
        self.cipher = cipher
        self.settings = settings
        self.githubClient = GitHubClient(settings: settings)
        self.auditor = auditor
        self.logger = logger
    }

    /// `DEVBOX_PUBLIC_URL`, when set.
    public var publicURL: URL? { settings.publicURL }
    /// Whether GitHub OAuth can be started (client id, secret and public URL set).
    public var gitHubOAuthAvailable: Bool { settings.oauthConfigured && settings.publicURL != nil }
    /// GitHub's web base (the connect form is redirected there).
    public var gitHubWebURL: URL { settings.webURL }
    /// Where the dashboard asks GitHub's round trip to come back to.
    public var dashboardGitHubReturnURL: String? { settings.dashboardReturnURL }


    static let connectHint = "connect GitHub first (POST /api/v1/integrations/github/connect) to clone private repositories"

    // MARK: OAuth

    /// Starts the OAuth web flow: stores a single-use state (its hash) bound to the user
    /// and the allow-listed `redirect_url`, valid for `stateLifetime`.
    func startGitHubOAuthUnaudited(_ principal: Principal, redirectURL: String) async throws(ServiceError) -> GitHubOAuthStart {
        let s = settings
        guard s.oauthConfigured, s.publicURL != nil else {
            throw .unavailable(
                "GitHub OAuth is not configured on this server: set DEVBOX_GITHUB_CLIENT_ID, DEVBOX_GITHUB_CLIENT_SECRET and DEVBOX_PUBLIC_URL")
        }
        guard RedirectAllowlist.allows(redirectURL, s.effectiveRedirectAllowlist) else {
            throw .validation(
                field: "redirect_url",
                message: s.redirectAllowlist.isEmpty
                    ? "redirect_url is not allowed: DEVBOX_OAUTH_REDIRECT_ALLOWLIST is empty on this server"
                    : "redirect_url must be an absolute http(s) URL under one of the prefixes in DEVBOX_OAUTH_REDIRECT_ALLOWLIST")
        }
        let state = Identifier.make("dbxst_", length: 43)
        let now = Date()
        do {
            try await db.insertOAuthState(
                hash: ProviderToken.hash(state), userId: principal.userId, redirectURL: redirectURL, now: now,
                expiresAt: now.addingTimeInterval(s.stateLifetime))
        } catch { throw storageFailure(error) }
        guard let url = githubClient.authorizationURL(state: state) else {
            throw .unavailable("GitHub OAuth is not configured on this server")
        }
        return GitHubOAuthStart(authorizationUrl: url, state: state)
    }

    /// The callback GitHub sends the browser to. A missing, unknown, expired or reused
    /// state is a 400 and stores nothing. Otherwise the state is spent, and the answer is
    /// the client's `redirect_url` with the outcome (`github=connected&login=…` or
    /// `github=error&error=…`), never the token.
    public func completeGitHubOAuth(code: String?, state: String?, error: String?) async throws(ServiceError) -> String {
        guard let state, !state.isEmpty else {
            throw .badRequest(field: "state", message: "state is missing")
        }
        guard state.utf8.count <= 256 else {
            throw .badRequest(field: "state", message: "state is invalid, expired or already used")
        }
        let consumed: ConsumedOAuthState?
        do { consumed = try await db.consumeOAuthState(hash: ProviderToken.hash(state)) } catch { throw storageFailure(error) }
        guard let consumed, consumed.expiresAt > Date() else {
            throw .badRequest(field: "state", message: "state is invalid, expired or already used")
        }
        let back = { (items: [(String, String)]) in Self.appendQuery(consumed.redirectURL, items) }
        if let error {
            return back([("github", "error"), ("error", GitHubClient.safeWord(error))])
        }
        guard let code, !code.isEmpty, code.utf8.count <= 1024 else {
            return back([("github", "error"), ("error", "missing_code")])
        }
        let grant: GitHubTokenGrant
        do {
            grant = try await githubClient.exchange(code: code)
        } catch {
            logger.warning("GitHub code exchange failed", metadata: ["error": "\(error)"])
            if case .oauth(let word) = error { return back([("github", "error"), ("error", word)]) }
            return back([("github", "error"), ("error", "token_exchange_failed")])
        }
        let user: GitHubUser
        let headerScopes: [String]?
        do {
            let answer = try await githubClient.user(token: grant.accessToken)
            user = answer.user
            headerScopes = answer.scopes
        } catch {
            logger.warning("reading the GitHub user failed", metadata: ["error": "\(error)"])
            return back([("github", "error"), ("error", "user_lookup_failed")])
        }
        do {
            let record = GitHubConnectionRecord(
                userId: consumed.userId, githubUserId: user.id, login: user.login,
                scopes: (headerScopes ?? grant.scopes).joined(separator: " "),
                tokenEncrypted: try cipher.seal(grant.accessToken), connectedAt: Date())
            try await db.upsertGitHubConnection(record)
        } catch {
            logger.error("storing the GitHub connection failed: \(error)")
            return back([("github", "error"), ("error", "storage_failed")])
        }
        logger.info("GitHub connected", metadata: ["user": "\(consumed.userId)", "github_login": "\(user.login)"])
        return back([("github", "connected"), ("login", user.login)])
    }

    /// `url` with `items` added to its query (before any fragment).
    static func appendQuery(_ url: String, _ items: [(String, String)]) -> String {
        var base = url
        var fragment = ""
        if let hash = base.firstIndex(of: "#") {
            fragment = String(base[hash...])
            base = String(base[..<hash])
        }
        let query = FormEncoding.encode(items)
        let sep = base.contains("?") ? (base.hasSuffix("?") || base.hasSuffix("&") ? "" : "&") : "?"
        return base + sep + query + fragment
    }

    // MARK: Connection

    public func gitHubConnection(_ principal: Principal) async throws(ServiceError) -> GitHubConnection? {
        do { return try await db.gitHubConnection(userId: principal.userId)?.model } catch { throw storageFailure(error) }
    }

    /// Deletes the stored token (and the org grants), then revokes the grant at GitHub,
    /// best effort: the token is gone from here whatever GitHub answers. Idempotent.
    func disconnectGitHubUnaudited(_ principal: Principal) async throws(ServiceError) {
        let deleted: GitHubConnectionRecord?
        do { deleted = try await db.deleteGitHubConnection(userId: principal.userId) } catch { throw storageFailure(error) }
        guard let deleted else { return }
        do {
            let token = try cipher.open(deleted.tokenEncrypted)
            try await githubClient.revokeGrant(token: token)
            logger.info("GitHub grant revoked", metadata: ["user": "\(principal.userId)", "github_login": "\(deleted.login)"])
        } catch {
            logger.warning(
                "revoking the GitHub grant failed (the token is deleted here regardless)",
                metadata: ["user": "\(principal.userId)", "error": "\(error)"])
        }
    }

    // MARK: Listing and grants

    /// Every repository the account can reach, every page; an organisation's
    /// repositories only when that organisation is granted.
    public func gitHubRepos(_ principal: Principal) async throws(ServiceError) -> [GitHubRepo] {
        let (token, grants) = try await connectedToken(principal)
        do {
            return try await githubClient.repositories(token: token)
                .filter { !$0.isOrganisation || grants.contains($0.owner.login.lowercased()) }
                .map(\.model)
        } catch {
            throw gitHubFailure(error)
        }
    }

    /// The account's organisations, each with whether it is granted.
    public func gitHubOrgs(_ principal: Principal) async throws(ServiceError) -> [GitHubOrg] {
        let (token, grants) = try await connectedToken(principal)
        do {
            return try await githubClient.organisations(token: token).map {
                GitHubOrg(id: $0.id, login: $0.login, granted: grants.contains($0.login.lowercased()))
            }
        } catch {
            throw gitHubFailure(error)
        }
    }

    static let maxOrgGrants = 100

    /// Replaces the set of granted organisations (logins, case-insensitive).
    func setGitHubOrgGrantsUnaudited(_ principal: Principal, orgs: [String]) async throws(ServiceError) {
        guard orgs.count <= Self.maxOrgGrants else {
            throw .validation(field: "orgs", message: "at most \(Self.maxOrgGrants) organisations")
        }
        for (i, o) in orgs.enumerated() where !Self.isGitHubLogin(o) {
            throw .validation(
                field: "orgs[\(i)]",
                message: "organisation logins are 1 to 39 letters, digits or single hyphens, not starting or ending with a hyphen")
        }
        let ok: Bool
        do {
            ok = try await db.setOrgGrants(userId: principal.userId, orgs: orgs.map { $0.lowercased() })
        } catch { throw storageFailure(error) }
        guard ok else { throw .conflict(Self.notConnected) }
    }

    static let notConnected = "GitHub is not connected for this user; connect it with POST /api/v1/integrations/github/connect"

    static func isGitHubLogin(_ s: String) -> Bool {
        guard (1...39).contains(s.utf8.count), !s.hasPrefix("-"), !s.hasSuffix("-"), !s.contains("--") else { return false }
        return s.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 45 }
    }

    private func connectedToken(_ principal: Principal) async throws(ServiceError) -> (String, Set<String>) {
        let record: GitHubConnectionRecord?
        let grants: Set<String>
        do {
            record = try await db.gitHubConnection(userId: principal.userId)
            grants = try await db.orgGrants(userId: principal.userId)
        } catch { throw storageFailure(error) }
        guard let record else { throw .conflict(Self.notConnected) }
        do {
            return (try cipher.open(record.tokenEncrypted), grants)
        } catch {
            logger.error("the stored GitHub token cannot be decrypted (was the encryption key changed?)")
            throw .conflict("the stored GitHub token cannot be decrypted; reconnect GitHub")
        }
    }

    func gitHubFailure(_ error: GitHubError) -> ServiceError {
        switch error {
        case .tokenRejected:
            return .conflict("GitHub rejected the stored token (revoked or expired); reconnect GitHub")
        default:
            logger.warning("GitHub request failed", metadata: ["error": "\(error)"])
            return .unavailable("GitHub request failed: \(error)")
        }
    }

    // MARK: Repositories of devboxes

    /// Decides, per repository, whether the user's token may be used. Only repositories
    /// that are neither the user's own nor of a granted organisation cost a GitHub call
    /// (`GET /repos/{owner}/{name}`) to learn the owner's type and visibility.
    func repositoryAccess(userId: String, fullNames: [String]) async -> [RepositoryAccess] {
        let record = try? await db.gitHubConnection(userId: userId)
        guard let record, let token = try? cipher.open(record.tokenEncrypted) else {
            return fullNames.map { _ in .anonymous(hint: Self.connectHint) }
        }
        let grants = (try? await db.orgGrants(userId: userId)) ?? []
        let login = record.login.lowercased()
        var out: [RepositoryAccess] = []
        for name in fullNames {
            let owner = String(name.split(separator: "/").first ?? "").lowercased()
            if owner == login || grants.contains(owner) {
                out.append(.token(token))
                continue
            }
            do {
                let repo = try await githubClient.repository(fullName: name, token: token)
                if !repo.isOrganisation {
                    out.append(.token(token))
                } else if repo.isPrivate {
                    out.append(.refused(Self.ungranted(name, org: repo.owner.login)))
                } else {
                    out.append(.anonymous(hint: "grant the organisation '\(repo.owner.login)' with PUT /api/v1/integrations/github/org-grants"))
                }
            } catch .notFound {
                out.append(.notFound)
            } catch {
                // GitHub cannot tell us now: no token for a repository we could not vet.
                out.append(.anonymous(hint: "GitHub could not be asked about it (\(error))"))
            }
        }
        return out
    }

    static func ungranted(_ name: String, org: String) -> String {
        "\(name) belongs to the organisation '\(org)', which is not granted; grant it with PUT /api/v1/integrations/github/org-grants"
    }

    /// At create: refuses (422) what the service can already tell will not clone.
    func checkRepositoryAccess(userId: String, request: CreateDevboxRequest, repositories: [DevboxRepositoryRequest]) async throws(ServiceError) {
        guard !repositories.isEmpty else { return }
        let access = await repositoryAccess(userId: userId, fullNames: repositories.map(\.fullName))
        let legacy = request.repository != nil
        for (i, a) in access.enumerated() {
            let field = legacy && i == 0 ? "repository" : "repositories[\(legacy ? i - 1 : i)].full_name"
            switch a {
            case .refused(let why):
                throw .validation(field: field, message: why)
            case .notFound:
                throw .validation(
                    field: field,
                    message: "\(repositories[i].fullName) was not found on GitHub, or the connected account cannot see it")
            case .anonymous(let hint) where repositories[i].pushBranches != nil:
                // The git broker pushes with the connected account's token: only where a clone may use it.
                throw .validation(
                    field: "repositories[\(legacy ? i - 1 : i)].push_branches",
                    message: "push_branches needs the connected GitHub account's token for \(repositories[i].fullName): \(hint)")
            case .token, .anonymous:
                continue
            }
        }
    }

    // MARK: Audited entry points

    public func startGitHubOAuth(_ principal: Principal, redirectURL: String) async throws(ServiceError) -> GitHubOAuthStart {
        try await auditor.audited(principal, "github.connect", devboxId: nil) { () async throws(ServiceError) in
            try await startGitHubOAuthUnaudited(principal, redirectURL: redirectURL)
        }
    }

    public func disconnectGitHub(_ principal: Principal) async throws(ServiceError) {
        try await auditor.audited(principal, "github.disconnect", devboxId: nil) { () async throws(ServiceError) in
            try await disconnectGitHubUnaudited(principal)
        }
    }

    public func setGitHubOrgGrants(_ principal: Principal, orgs: [String]) async throws(ServiceError) {
        try await auditor.audited(
            principal, "github.org_grants.set", devboxId: nil, detail: ["count": .int(orgs.count)]
        ) { () async throws(ServiceError) in
            try await setGitHubOrgGrantsUnaudited(principal, orgs: orgs)
        }
    }
}
