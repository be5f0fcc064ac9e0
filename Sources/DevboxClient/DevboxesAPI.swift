import DevboxModel
import Foundation

/// `client.devboxes`: `/api/v1/devboxes` and everything under a devbox.
public struct DevboxesAPI: Sendable {
    let http: HTTPCore

    /// `POST /api/v1/devboxes` → 202 with the devbox in `requested`. The tokens go only in
    /// the `X-Claude-Token` / `X-Codex-Token` headers.
    public func create(_ request: CreateDevboxRequest, tokens: InjectionTokens = InjectionTokens()) async throws -> Devbox {
        var headers: [String: String] = [:]
        if let t = tokens.claudeToken { headers["X-Claude-Token"] = t }
        if let t = tokens.codexToken { headers["X-Codex-Token"] = t }
        return try await http.json(
            Devbox.self, "POST", "/api/v1/devboxes", body: try http.encode(request), headers: headers,
            secrets: [tokens.claudeToken, tokens.codexToken].compactMap { $0 })
    }

    /// `GET /api/v1/devboxes`: the caller's devboxes.
    public func list() async throws -> [Devbox] {
        try await http.json(DevboxList.self, "GET", "/api/v1/devboxes").devboxes
    }

    /// One page of `GET /api/v1/devboxes` (newest first): only `states` (empty: all), at most
    /// `limit` (1–500), after `cursor` (the previous page's `nextCursor`).
    public func list(states: [DevboxState], limit: Int = 100, cursor: String? = nil) async throws -> DevboxPage {
        var query = states.map { "state=\($0.rawValue)" } + ["limit=\(limit)"]
        if let cursor {
            // Cursors are base64url: nothing to escape, but never trust that blindly.
            guard cursor.utf8.allSatisfy({ $0 < 0x80 && (isalnum(Int32($0)) != 0 || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")) }) else {
                throw DevboxClientError.invalidArgument("cursor is not one the server gave out")
            }
            query.append("cursor=\(cursor)")
        }
        return try await http.json(DevboxPage.self, "GET", "/api/v1/devboxes?" + query.joined(separator: "&"))
    }

    /// Every devbox in `states`, page by page.
    public func listAll(states: [DevboxState]) async throws -> [Devbox] {
        var out: [Devbox] = []
        var cursor: String?
        repeat {
            let page = try await list(states: states, limit: 500, cursor: cursor)
            out += page.devboxes
            cursor = page.nextCursor
        } while cursor != nil
        return out
    }

    /// `GET /api/v1/devboxes/:id`.
    public func get(_ id: String) async throws -> Devbox {
        try await http.json(Devbox.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))")
    }

    /// `DELETE /api/v1/devboxes/:id` → 204 (the devbox becomes `destroyed`).
    public func delete(_ id: String) async throws {
        try await http.noContent("DELETE", "/api/v1/devboxes/\(try HTTPCore.segment(id))")
    }

    /// `GET /api/v1/devboxes/:id/network`: the devbox's egress policy (entries normalised).
    public func network(id: String) async throws -> DevboxNetwork {
        try await http.json(DevboxNetwork.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/network")
    }

    /// `PATCH /api/v1/devboxes/:id/network`: replaces the whole egress policy of a live
    /// devbox (fields left at their defaults are reset: an empty `allow` clears the
    /// allow-list) and returns it as stored. New connections follow it within a second;
    /// open ones are kept. A bad entry is a 422 whose `field` names it (`network.allow[2]`).
    public func setNetwork(id: String, _ network: DevboxNetwork) async throws -> DevboxNetwork {
        try await http.json(
            DevboxNetwork.self, "PATCH", "/api/v1/devboxes/\(try HTTPCore.segment(id))/network",
            body: try http.encode(network))
    }

    /// `GET /api/v1/devboxes/:id/operations`: the five provisioning steps with their output.
    public func listOperations(_ id: String) async throws -> [DevboxOperation] {
        try await http.json(OperationList.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/operations")
            .operations
    }

    /// `GET /api/v1/devboxes/:id/wait?timeout_seconds=N` (0–300): the devbox as soon as it
    /// is neither `requested` nor `provisioning`, or as it is when the timeout passes (check
    /// `state`).
    public func wait(_ id: String, timeoutSeconds: Int = 60) async throws -> Devbox {
        guard (0...300).contains(timeoutSeconds) else {
            throw DevboxClientError.invalidArgument("timeoutSeconds must be from 0 to 300")
        }
        // The server sends nothing until it answers: allow the wait plus a margin.
        return try await http.json(
            Devbox.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/wait?timeout_seconds=\(timeoutSeconds)",
            timeout: TimeInterval(timeoutSeconds + 30))
    }

    /// Waits until the devbox is `ready` and returns it.
    ///
    /// Waits on the server (`wait`, up to 300 s per request), so `ready` is seen the moment it
    /// is written; `intervalMs` only spaces the checks in the last second before the deadline
    /// (the server's wait counts whole seconds).
    ///
    /// Throws `.provisioningFailed` (with the failing operation, its error and output tail)
    /// when it reaches `failed`, `destroyed` or `stopped`, and `.timedOut` (naming the
    /// last state seen) when `timeoutMs` passes first.
    public func waitForReady(_ id: String, intervalMs: Int = 3000, timeoutMs: Int = 120_000) async throws -> Devbox {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .milliseconds(max(0, timeoutMs))
        let interval = Duration.milliseconds(max(1, intervalMs))
        while true {
            let seconds = Int(min(300, max(0, (deadline - clock.now).components.seconds)))
            let devbox = try await wait(id, timeoutSeconds: seconds)
            if devbox.state == .ready { return devbox }
            if devbox.state.isTerminalFailure {
                let ops = (try? await listOperations(id)) ?? []
                throw DevboxClientError.provisioningFailed(ProvisioningFailure(devbox: devbox, operations: ops))
            }
            let now = clock.now
            guard now < deadline else {
                let waited = (now - start).components
                throw DevboxClientError.timedOut(
                    devboxId: id, lastState: devbox.state,
                    waitedMs: Int(waited.seconds) * 1000 + Int(waited.attoseconds / 1_000_000_000_000_000))
            }
            if seconds == 0 { try await Task.sleep(for: min(interval, deadline - now)) }
        }
    }

    /// `POST /api/v1/devboxes/:id/access/session` → 201 with SSH details. The devbox must
    /// be `ready` and the user must have an SSH key (`users.setSshKey`).
    public func createSession(_ id: String, ttlSeconds: Int? = nil) async throws -> AccessSession {
        let body = try ttlSeconds.map { try http.encode(CreateSessionRequest(ttlSeconds: $0)) }
        return try await http.json(
            AccessSession.self, "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/access/session", body: body,
            expect: 201)
    }

    /// `GET /api/v1/devboxes/:id/access/sessions`: the active sessions.
    public func listSessions(_ id: String) async throws -> [AccessSessionInfo] {
        try await http.json(
            AccessSessionList.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/access/sessions"
        ).sessions
    }

    /// `DELETE /api/v1/devboxes/:id/access/session/:session_id` → 204.
    public func revokeSession(_ id: String, _ sessionId: String) async throws {
        try await http.noContent(
            "DELETE", "/api/v1/devboxes/\(try HTTPCore.segment(id))/access/session/\(try HTTPCore.segment(sessionId))")
    }

    /// `GET /api/v1/devboxes/:id/repositories`: repositories with their clone status.
    public func listRepositories(_ id: String) async throws -> [DevboxRepository] {
        try await http.json(RepositoryList.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/repositories")
            .repositories
    }
}

/// `client.users`: the caller's profile and SSH key.
public struct UsersAPI: Sendable {
    let http: HTTPCore

    /// `GET /api/v1/users/me`.
    public func getProfile() async throws -> UserProfile {
        try await http.json(UserProfile.self, "GET", "/api/v1/users/me")
    }

    /// `PUT /api/v1/users/me/ssh-key` → 204 (ed25519 or ECDSA, one OpenSSH line).
    public func setSshKey(_ publicKey: String) async throws {
        try await http.noContent("PUT", "/api/v1/users/me/ssh-key", body: try http.encode(SetSSHKeyRequest(publicKey: publicKey)))
    }

    /// `DELETE /api/v1/users/me/ssh-key` → 204.
    public func deleteSshKey() async throws {
        try await http.noContent("DELETE", "/api/v1/users/me/ssh-key")
    }
}

/// `client.github`: `/api/v1/integrations/github/…`.
public struct GitHubAPI: Sendable {
    let http: HTTPCore

    /// `POST …/connect` `{redirect_url}` → `{authorization_url, state}`: open the URL in a
    /// browser; GitHub sends the user back to `redirectURL` through the service.
    public func startOAuth(_ redirectURL: String) async throws -> GitHubOAuthStart {
        try await http.json(
            GitHubOAuthStart.self, "POST", "/api/v1/integrations/github/connect",
            body: try http.encode(GitHubConnectRequest(redirectUrl: redirectURL)))
    }

    /// `GET …/connection`: the connection, or nil when not connected (`null`).
    public func getConnection() async throws -> GitHubConnection? {
        try await http.json(Optional<GitHubConnection>.self, "GET", "/api/v1/integrations/github/connection")
    }

    /// `DELETE …/connection` → 204: deletes the stored token and revokes the grant.
    public func disconnect() async throws {
        try await http.noContent("DELETE", "/api/v1/integrations/github/connection")
    }

    /// `GET …/repos`: repositories the connected user can reach (filtered by org grants).
    public func listRepos() async throws -> [GitHubRepo] {
        try await http.json(Listed<GitHubRepo>.self, "GET", "/api/v1/integrations/github/repos").items
    }

    /// `GET …/orgs`: the user's organisations.
    public func listOrgs() async throws -> [GitHubOrg] {
        try await http.json(Listed<GitHubOrg>.self, "GET", "/api/v1/integrations/github/orgs").items
    }

    /// `PUT …/org-grants` `{orgs: [...]}` → 204.
    public func updateOrgGrants(_ orgs: [String]) async throws {
        try await http.noContent(
            "PUT", "/api/v1/integrations/github/org-grants", body: try http.encode(GitHubOrgGrantsRequest(orgs: orgs)))
    }
}

/// A list answer that is either a bare array or an object with one array member
/// (`{"repos": [...]}`, `{"orgs": [...]}`): the GitHub endpoints' shape is not fixed yet.
struct Listed<Item: Decodable>: Decodable {
    var items: [Item]

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        if let array = try? decoder.singleValueContainer().decode([Item].self) {
            items = array
            return
        }
        let c = try decoder.container(keyedBy: AnyKey.self)
        for key in c.allKeys {
            if let array = try? c.decode([Item].self, forKey: key) {
                items = array
                return
            }
        }
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "expected a list"))
    }
}
