import DevboxModel
import Foundation

/// A create request after validation: defaults applied, every limit checked.
struct ValidatedCreate: Sendable {
    var name: String
    var plan: Plan
    var env: [(key: String, value: String)]
    var setupCommands: [String]
    var setupTimeoutSeconds: Int
    var credentialProfile: CredentialProfile
    var repositories: [DevboxRepositoryRequest]
    var idleTimeoutSeconds: Int?
    var ttlSeconds: Int?
    /// Normalised egress policy (allow_all when absent).
    var network: DevboxNetwork = .allowAll
}

/// The seed's limits for a create request. Each failure names the field.
public enum CreateValidation {
    static let maxEnvKeys = 64
    static let maxEnvValueBytes = 32 * 1024
    static let maxSetupCommands = 32
    static let maxSetupCommandBytes = 4 * 1024
    static let setupTimeoutRange = 30...3600
    public static let defaultSetupTimeout = 900
    static let maxRepositories = 16
    static let idleTimeoutRange = 60...(30 * 24 * 3600)
    static let ttlRange = 60...(365 * 24 * 3600)

    /// The largest create body the REST API reads (413 above it), sized so that a create at
    /// every documented maximum at once is accepted however it is encoded. The limits are on
    /// decoded bytes, and JSON may escape any byte as `\u00XX` (6 bytes; control characters
    /// must be), so the strings count 6×: 64 env values of 32 KiB, 64 keys (no documented
    /// limit; 256 bytes each assumed), 32 setup commands of 4 KiB. Everything else — name,
    /// plan, up to 16 repositories, the network policy's 2×64 entries, numbers, whitespace —
    /// gets 1 MiB: 14,516,224 bytes, ≈ 13.8 MiB (a flat 2 MiB refused the seed's own maximum).
    public static let maxRequestBodyBytes =
        jsonEscapeFactor * (maxEnvKeys * (maxEnvValueBytes + assumedEnvKeyBytes) + maxSetupCommands * maxSetupCommandBytes)
        + (1 << 20)
    static let jsonEscapeFactor = 6
    static let assumedEnvKeyBytes = 256

    static func validate(
        _ r: CreateDevboxRequest, plans: [Plan], defaultPlan: String, lifetimes: LifetimeSettings = LifetimeSettings()
    ) throws(ServiceError) -> ValidatedCreate {
        let name = r.name
        try checkName(name, field: "name")
        let planName = r.plan ?? defaultPlan
        guard let plan = plans.first(where: { $0.name == planName }) else {
            throw .validation(
                field: "plan", message: "unknown plan '\(planName)'; plans: \(plans.map(\.name).joined(separator: ", "))")
        }
        let env = try validateEnv(r.env ?? [:])
        let commands = r.setupCommands ?? []
        guard commands.count <= maxSetupCommands else {
            throw .validation(field: "setup_commands", message: "at most \(maxSetupCommands) setup commands")
        }
        for (i, c) in commands.enumerated() {
            guard c.utf8.count <= maxSetupCommandBytes else {
                throw .validation(field: "setup_commands[\(i)]", message: "each setup command is at most 4 KiB")
            }
            guard !c.contains("\0") else {
                throw .validation(field: "setup_commands[\(i)]", message: "setup commands cannot contain NUL bytes")
            }
        }
        let timeout = r.setupTimeoutSeconds ?? defaultSetupTimeout
        guard setupTimeoutRange.contains(timeout) else {
            throw .validation(field: "setup_timeout_seconds", message: "setup_timeout_seconds must be between 30 and 3600")
        }
        let idle = try lifetimes.resolve(
            r.idleTimeoutSeconds, default: lifetimes.defaultIdleTimeoutSeconds, max: idleTimeoutRange.upperBound,
            field: "idle_timeout_seconds")
        let ttl = try lifetimes.resolve(
            r.ttlSeconds, default: lifetimes.defaultTTLSeconds, max: ttlRange.upperBound, field: "ttl_seconds")
        let repos = try validateRepositories(r)
        let network = try r.network.map { n throws(ServiceError) in RuntimeService.normalized(try RuntimeService.egressPolicy(n)) }
        return ValidatedCreate(
            name: name, plan: plan, env: env, setupCommands: commands, setupTimeoutSeconds: timeout,
            credentialProfile: r.credentialProfile ?? CredentialProfile(), repositories: repos,
            idleTimeoutSeconds: idle, ttlSeconds: ttl, network: network ?? .allowAll)
    }

    /// A devbox's (or a snapshot's) name. Counted in code points, as the database's CHECK
    /// (length(name) <= 64) counts: a name of 64 letters with combining accents is 128 of
    /// them, and was refused by the insert (503).
    static func checkName(_ name: String, field: String) throws(ServiceError) {
        guard !name.isEmpty, name.unicodeScalars.count <= 64 else {
            throw .validation(field: field, message: "name must be 1 to 64 characters")
        }
        guard name.unicodeScalars.allSatisfy({ $0.properties.generalCategory != .control && $0.properties.generalCategory != .format && $0.properties.generalCategory != .lineSeparator && $0.properties.generalCategory != .paragraphSeparator }) else {
            throw .validation(field: field, message: "name must contain printable characters only")
        }
    }

    static func validateEnv(_ env: [String: String]) throws(ServiceError) -> [(key: String, value: String)] {
        guard env.count <= maxEnvKeys else {
            throw .validation(field: "env", message: "at most \(maxEnvKeys) environment variables")
        }
        for (k, v) in env {
            guard isEnvKey(k) else {
                throw .validation(field: "env.\(k)", message: "environment variable names must match ^[A-Z_][A-Z0-9_]*$")
            }
            guard v.utf8.count <= maxEnvValueBytes else {
                throw .validation(field: "env.\(k)", message: "each environment value is at most 32 KiB")
            }
            guard !v.contains("\0") else {
                throw .validation(field: "env.\(k)", message: "environment values cannot contain NUL bytes")
            }
        }
        return env.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
    }

    static func isEnvKey(_ k: String) -> Bool {
        guard let first = k.utf8.first, first == UInt8(ascii: "_") || (65...90).contains(first) else { return false }
        return k.utf8.allSatisfy { $0 == UInt8(ascii: "_") || (65...90).contains($0) || (48...57).contains($0) }
    }

    /// Validates `repositories[]` and the legacy `repository` + `branch` pair (which becomes one entry).
    static func validateRepositories(_ r: CreateDevboxRequest) throws(ServiceError) -> [DevboxRepositoryRequest] {
        var out: [DevboxRepositoryRequest] = []
        if let legacy = r.repository {
            guard let fullName = legacyFullName(legacy) else {
                throw .validation(
                    field: "repository", message: "repository must be owner/name or a https://…/owner/name URL")
            }
            let branch = r.branch ?? "main"
            guard isSafeRef(branch) else { throw .validation(field: "branch", message: "branch is not a valid git ref") }
            out.append(DevboxRepositoryRequest(fullName: fullName, ref: branch, targetPath: nil))
        } else if r.branch != nil {
            throw .validation(field: "branch", message: "branch is only valid together with repository")
        }
        for (i, repo) in (r.repositories ?? []).enumerated() {
            let f = "repositories[\(i)]"
            guard isFullName(repo.fullName) else {
                throw .validation(field: "\(f).full_name", message: "full_name must be owner/name")
            }
            if let ref = repo.ref, !isSafeRef(ref) {
                throw .validation(field: "\(f).ref", message: "ref is not a valid branch, tag or commit")
            }
            if let id = repo.repoId, id <= 0 {
                throw .validation(field: "\(f).repo_id", message: "repo_id must be a positive integer")
            }
            if let globs = repo.pushBranches {
                try validatePushBranches(globs, field: "\(f).push_branches")
            }
            out.append(repo)
        }
        guard out.count <= maxRepositories else {
            throw .validation(field: "repositories", message: "at most \(maxRepositories) repositories")
        }
        var seen = Set<String>()
        for (i, repo) in out.enumerated() {
            let field = r.repository != nil && i == 0 ? "repository" : "repositories[\(i - (r.repository != nil ? 1 : 0))].target_path"
            let name = String(repo.fullName.split(separator: "/").last ?? "")
            let path = repo.targetPath ?? "/workspace/\(name)"
            guard let normalized = normalizeWorkspacePath(path) else {
                throw .validation(
                    field: field, message: "target_path must be an absolute path inside /workspace without '..'")
            }
            guard seen.insert(normalized).inserted else {
                throw .validation(field: field, message: "two repositories share the target_path \(normalized)")
            }
            // A clone lands with one rename of a whole directory: one inside another cannot work.
            if let outer = seen.first(where: { $0 != normalized && (normalized.hasPrefix($0 + "/") || $0.hasPrefix(normalized + "/")) }) {
                throw .validation(
                    field: field, message: "target_path \(normalized) and \(outer) are nested; each repository needs its own directory")
            }
            out[i].targetPath = normalized
            out[i].ref = repo.ref ?? "main"
        }
        return out
    }

    static let maxPushBranches = 32
    static let maxPushBranchBytes = 200

    /// `push_branches` (issue 19's git broker): 1 to 32 globs, each 1 to 200 of
    /// `A-Z a-z 0-9 _ . * / -`, not starting with `.`, `/` or `-` (the OpenAPI pattern, exactly).
    static func validatePushBranches(_ globs: [String], field: String) throws(ServiceError) {
        guard !globs.isEmpty else {
            throw .validation(field: field, message: "push_branches needs at least one branch pattern (e.g. \"agent/*\"); omit it for no git broker")
        }
        guard globs.count <= maxPushBranches else {
            throw .validation(field: field, message: "at most \(maxPushBranches) branch patterns")
        }
        for (i, g) in globs.enumerated() where !isPushGlob(g) {
            throw .validation(
                field: "\(field)[\(i)]",
                message: "a branch pattern is 1 to \(maxPushBranchBytes) of A-Z a-z 0-9 _ . * / -, not starting with '.', '/' or '-' (e.g. \"agent/*\")")
        }
    }

    static func isPushGlob(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard (1...maxPushBranchBytes).contains(u.count) else { return false }
        func word(_ c: UInt8) -> Bool { (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || c == 95 || c == 42 }
        guard word(u[0]) else { return false }
        return u.dropFirst().allSatisfy { word($0) || $0 == 46 || $0 == 47 || $0 == 45 }
    }

    static func isFullName(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        return parts.allSatisfy { p in
            !p.isEmpty && p.count <= 100 && p != "." && p != ".."
                && p.utf8.allSatisfy { c in
                    (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || c == 45 || c == 46 || c == 95
                }
        }
    }

    static func legacyFullName(_ s: String) -> String? {
        var t = s
        for prefix in ["https://github.com/", "http://github.com/", "git@github.com:"] where t.hasPrefix(prefix) {
            t = String(t.dropFirst(prefix.count))
        }
        if t.hasPrefix("https://") || t.hasPrefix("http://"), let url = URL(string: t) {
            t = url.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        }
        if t.hasSuffix(".git") { t = String(t.dropLast(4)) }
        return isFullName(t) ? t : nil
    }

    static func isSafeRef(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 255, !s.hasPrefix("-"), !s.hasPrefix("/"), !s.hasSuffix("/"),
            !s.hasSuffix(".lock"), !s.contains(".."), !s.contains("@{"), !s.contains("//")
        else { return false }
        return s.unicodeScalars.allSatisfy { c in
            c.value > 32 && c.value != 127 && !"~^:?*[\\".unicodeScalars.contains(c)
        }
    }

    /// `/workspace/x/../y` style paths are refused outright; returns the path without a trailing slash.
    static func normalizeWorkspacePath(_ p: String) -> String? {
        guard p.hasPrefix("/workspace/"), !p.contains("\0") else { return nil }
        let comps = p.split(separator: "/")
        guard comps.count >= 2, comps.allSatisfy({ $0 != ".." && $0 != "." }) else { return nil }
        return "/" + comps.joined(separator: "/")
    }
}
