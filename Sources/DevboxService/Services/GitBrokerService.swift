import DevboxModel
import DevboxRuntime
import Foundation
import Logging

// Issue 19's git broker, the service side: which repositories of a box are brokered, the
// remote URL their clones get, and the broker's admission of one smart-HTTP request.
// The HTTP side (forwarding, the receive-pack command check) is `DevboxServer/GitBroker.swift`.
//
// The box's clone has `origin` = http://<gateway>:<broker port>/git/<devbox id>/<secret>/<owner>/<name>.git.
// The broker answers it only from that box's own address and with that secret, forwards only
// to the repositories the devbox was created with (push_branches set), with the connected
// account's token looked up per request (disconnecting GitHub stops it at once), and only
// ref updates of refs/heads/<branch> matching push_branches.
public final class GitBrokerService: Sendable {
    let db: AppDatabase
    let sandbox: any BoxRuntime
    let brokerState: BrokerState
    let github: GitHubService
    let logger: Logger

    public init(database: AppDatabase, runtime: any BoxRuntime, brokerState: BrokerState, github: GitHubService, logger: Logger) {
        self.db = database
        self.sandbox = runtime
        self.brokerState = brokerState
        self.github = github
        self.logger = logger
    }


    /// `push_branches` needs per-box networks: the broker tells boxes apart by their addresses.
    func requireGitBroker(_ repos: [DevboxRepositoryRequest], legacy: Bool) throws(ServiceError) {
        for (i, r) in repos.enumerated() where r.pushBranches != nil && !sandbox.isolatesNetworks {
            throw .validation(
                field: "repositories[\(legacy ? i - 1 : i)].push_branches",
                message: "push_branches needs per-box networks; this service runs boxes on the host's network")
        }
    }

    /// The `origin` URL of a brokered repository's clone (the path secret made on first use).
    func gitBrokerRemote(devboxId: String, fullName: String) async throws -> String {
        guard let port = brokerState.port, let net = sandbox.networkInfo(box: devboxId) else {
            throw ServiceError.unavailable("the git broker is not running")
        }
        let secret = try await db.gitBrokerSecret(devboxId: devboxId) {
            var g = SystemRandomNumberGenerator()
            return (0..<24).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
        }
        return "http://\(net.gateway):\(port)/git/\(devboxId)/\(secret)/\(fullName).git"
    }

    /// The git broker's verdict on one request.
    public enum GitBrokerAdmission: Sendable {
        /// `upstream`: `<GitHub web>/<owner>/<name>.git`; `token`: the connected account's.
        case forward(devboxId: String, fullName: String, upstream: String, token: String, pushBranches: [String])
        case refuse(status: Int, message: String)
    }

    /// Admits a request from `peer` for `/git/<devboxId>/<secret>/<fullName>.git/…`.
    public func admitGitRequest(peer: String?, devboxId: String, secret: String, fullName: String) async -> GitBrokerAdmission {
        guard let peer, sandbox.isBoxAddress(peer) else {
            return .refuse(status: 403, message: "the git broker serves devboxes only")
        }
        // Another box's path (copied out of it) is refused from any address but its own.
        guard sandbox.networkInfo(box: devboxId)?.address == peer else {
            return .refuse(status: 403, message: "this git broker path belongs to another devbox")
        }
        let entry: GitBrokerEntry?
        do {
            entry = try await db.gitBrokerEntry(devboxId: devboxId)
        } catch {
            logger.error("git broker lookup failed: \(error)")
            return .refuse(status: 503, message: "the git broker cannot read its state, try again")
        }
        guard let entry, let stored = entry.secret, constantTimeEquals(stored, secret) else {
            return .refuse(status: 403, message: "unknown git broker path")
        }
        guard entry.state == .ready || entry.state == .provisioning else {
            return .refuse(status: 403, message: "devbox \(devboxId) is \(entry.state.rawValue)")
        }
        guard let repo = entry.repositories.first(where: { $0.fullName.lowercased() == fullName.lowercased() && !$0.globs.isEmpty })
        else {
            let served = entry.repositories.filter { !$0.globs.isEmpty }.map(\.fullName)
            return .refuse(
                status: 403,
                message: "repository \(fullName) is not one of this devbox's brokered repositories (\(served.joined(separator: ", ")))")
        }
        // The clone's rules, asked again each time: a disconnected account or an organisation
        // no longer granted ends the brokering at once.
        switch await github.repositoryAccess(userId: entry.userId, fullNames: [repo.fullName]).first {
        case .token(let token):
            return .forward(
                devboxId: devboxId, fullName: repo.fullName,
                upstream: github.settings.cloneURL(fullName: repo.fullName), token: token, pushBranches: repo.globs)
        case .refused(let why):
            return .refuse(status: 403, message: why)
        case .anonymous(let hint):
            return .refuse(status: 403, message: "the connected GitHub account's token may not be used for \(repo.fullName): \(hint)")
        case .notFound, nil:
            return .refuse(status: 403, message: "\(repo.fullName) was not found on GitHub, or the connected account cannot see it")
        }
    }

    /// True when `branch` (the part after refs/heads/) matches one of `globs`: `*` matches
    /// within a path segment, `**` across segments, everything else itself. Dynamic
    /// programming, O(glob × branch): the box names the branch, so no backtracking blow-up.
    public static func branchMatches(_ branch: String, globs: [String]) -> Bool {
        let b = Array(branch.utf8)
        guard b.count <= 1024 else { return false }
        return globs.contains { globMatch(Array($0.utf8), b) }
    }

    static func globMatch(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        // Tokens: a byte, `*` (no '/'), `**` (anything).
        enum Token { case byte(UInt8), star, doubleStar }
        var tokens: [Token] = []
        var i = 0
        while i < p.count {
            if p[i] == 42 {
                if i + 1 < p.count, p[i + 1] == 42 {
                    tokens.append(.doubleStar)
                    i += 2
                } else {
                    tokens.append(.star)
                    i += 1
                }
            } else {
                tokens.append(.byte(p[i]))
                i += 1
            }
        }
        // reach[j]: the tokens so far can match s[0..<j].
        var reach = [Bool](repeating: false, count: s.count + 1)
        reach[0] = true
        for t in tokens {
            var next = [Bool](repeating: false, count: s.count + 1)
            switch t {
            case .byte(let c):
                for j in 0..<s.count where reach[j] && s[j] == c { next[j + 1] = true }
            case .star, .doubleStar:
                var on = false
                for j in 0...s.count {
                    if reach[j] { on = true }
                    next[j] = on
                    // A single star stops at '/': what follows it cannot extend the run.
                    if case .star = t, j < s.count, s[j] == 47 { on = false }
                }
            }
            reach = next
        }
        return reach[s.count]
    }
}

/// What the git broker needs of a devbox for one request.
struct GitBrokerEntry: Sendable {
    var state: DevboxState
    var userId: String
    var secret: String?
    var repositories: [(fullName: String, globs: [String])]
}

func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var d: UInt8 = 0
    for i in 0..<x.count { d |= x[i] ^ y[i] }
    return d == 0
}
