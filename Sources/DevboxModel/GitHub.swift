import Foundation

/// Body of `POST /api/v1/integrations/github/connect`.
public struct GitHubConnectRequest: Codable, Sendable, Equatable {
    public var redirectUrl: String
    public init(redirectUrl: String) { self.redirectUrl = redirectUrl }
    enum CodingKeys: String, CodingKey { case redirectUrl = "redirect_url" }
}

/// Response of `POST /api/v1/integrations/github/connect`: where to send the user's browser.
public struct GitHubOAuthStart: Codable, Sendable, Equatable {
    public var authorizationUrl: String
    public var state: String
    public init(authorizationUrl: String, state: String) {
        self.authorizationUrl = authorizationUrl
        self.state = state
    }
    enum CodingKeys: String, CodingKey { case authorizationUrl = "authorization_url", state }
}

/// `GET /api/v1/integrations/github/connection` (the body is this object or `null`).
public struct GitHubConnection: Codable, Sendable, Equatable {
    public var login: String
    public var githubUserId: Int64
    public var scopes: [String]
    public var connectedAt: Date

    public init(login: String, githubUserId: Int64, scopes: [String], connectedAt: Date) {
        self.login = login
        self.githubUserId = githubUserId
        self.scopes = scopes
        self.connectedAt = connectedAt
    }

    enum CodingKeys: String, CodingKey {
        case login, scopes
        case githubUserId = "github_user_id"
        case connectedAt = "connected_at"
    }
}

/// A repository the connected GitHub user can reach (`GET …/github/repos`).
public struct GitHubRepo: Codable, Sendable, Equatable {
    public var id: Int64
    public var fullName: String
    public var isPrivate: Bool
    public var defaultBranch: String?
    public var htmlUrl: String?

    public init(id: Int64, fullName: String, isPrivate: Bool, defaultBranch: String? = nil, htmlUrl: String? = nil) {
        self.id = id
        self.fullName = fullName
        self.isPrivate = isPrivate
        self.defaultBranch = defaultBranch
        self.htmlUrl = htmlUrl
    }

    enum CodingKeys: String, CodingKey {
        case id
        case fullName = "full_name"
        case isPrivate = "private"
        case defaultBranch = "default_branch"
        case htmlUrl = "html_url"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int64.self, forKey: .id)
        fullName = try c.decode(String.self, forKey: .fullName)
        isPrivate = try c.decodeIfPresent(Bool.self, forKey: .isPrivate) ?? false
        defaultBranch = try c.decodeIfPresent(String.self, forKey: .defaultBranch)
        htmlUrl = try c.decodeIfPresent(String.self, forKey: .htmlUrl)
    }
}

/// A GitHub organisation of the connected user and whether it is granted (`GET …/github/orgs`).
public struct GitHubOrg: Codable, Sendable, Equatable {
    public var id: Int64
    public var login: String
    public var granted: Bool

    public init(id: Int64, login: String, granted: Bool) {
        self.id = id
        self.login = login
        self.granted = granted
    }

    enum CodingKeys: String, CodingKey { case id, login, granted }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int64.self, forKey: .id)
        login = try c.decode(String.self, forKey: .login)
        granted = try c.decodeIfPresent(Bool.self, forKey: .granted) ?? false
    }
}

/// `GET …/github/repos` body.
public struct GitHubRepoList: Codable, Sendable {
    public var repos: [GitHubRepo]
    public init(repos: [GitHubRepo]) { self.repos = repos }
}

/// `GET …/github/orgs` body.
public struct GitHubOrgList: Codable, Sendable {
    public var orgs: [GitHubOrg]
    public init(orgs: [GitHubOrg]) { self.orgs = orgs }
}

/// Body of `PUT /api/v1/integrations/github/org-grants`.
public struct GitHubOrgGrantsRequest: Codable, Sendable, Equatable {
    public var orgs: [String]
    public init(orgs: [String]) { self.orgs = orgs }
}
