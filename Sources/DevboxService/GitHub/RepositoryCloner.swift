import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One repository to clone into a box's workspace.
struct CloneRequest: Sendable {
    var fullName: String
    var ref: String
    /// Normalized `/workspace/…` path.
    var targetPath: String
    /// The connected account's token, or nil for an anonymous (public) clone.
    var token: String?
    /// Added to an authentication failure of an anonymous clone (what would make it work).
    var anonymousHint: String
    /// The git broker's URL for this repository (issue 19): `origin` in the box points there
    /// instead of at GitHub. Nil: GitHub's URL, as cloned.
    var brokerRemote: String? = nil
    /// Gives the finished clone the box's ids (its user namespace's range) before it moves
    /// into the workspace; nil: kept as made (root-owned).
    var adopt: (@Sendable (String) async throws -> Void)? = nil
    /// The host uid/gid of the box's root: owner of directories made on the way to `targetPath`.
    var owner: (uid: UInt32, gid: UInt32) = (0, 0)
}

struct CloneOutcome: Sendable {
    var commit: String
    /// Sanitized git output and a summary, for the operation output.
    var log: String
}

/// A clone that did not succeed: `message` names the cause, `log` is sanitized output.
struct CloneFailure: Error, Sendable {
    var message: String
    var log: String
}

/// Clones with host-side git into a fresh directory next to the box's workspace, checks
/// out the ref (branch, tag or commit), then moves the result into place
/// (`WorkspacePlacement`). The token reaches git only through `GIT_CONFIG_COUNT` /
/// `GIT_CONFIG_KEY_n` / `GIT_CONFIG_VALUE_n` (SANDBOX.md trap 7: unlike
/// `git clone -c`, these never land in `.git/config`), scoped to the GitHub web origin;
/// it is not in the argv (visible in /proc), the remote URL, the box, or any output:
/// git's output is scrubbed before it is kept.
struct RepositoryCloner: Sendable {
    let settings: GitHubSettings

    /// Where a clone is made before it moves into `workspace` with one rename(2).
    static func stagingDirectory(workspace: String) -> String {
        let parent = (workspace as NSString).deletingLastPathComponent
        var a = stat(), b = stat()
        if stat(workspace, &a) == 0, stat(parent, &b) == 0, a.st_dev != b.st_dev { return workspace }
        return parent
    }

    func clone(_ r: CloneRequest, workspace: String) async throws -> CloneOutcome {
        let url = settings.cloneURL(fullName: r.fullName)
        // The box's own host directory: same filesystem as the workspace (rename works),
        // not visible inside the box, removed with the box. A box made from a snapshot has
        // its workspace on an overlay of its own (rename into it from outside fails with
        // EXDEV): the clone is staged in the workspace itself then.
        let boxDirectory = Self.stagingDirectory(workspace: workspace)
        var template = Array((boxDirectory + "/.clone-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf in buf.baseAddress.flatMap { mkdtemp($0) } }
        guard made != nil else {
            throw CloneFailure(message: "could not create a temporary directory (errno \(errno))", log: "")
        }
        let tmp = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let home = tmp + "/home"
        let dest = tmp + "/repo"
        guard mkdir(home, 0o700) == 0 else {
            throw CloneFailure(message: "could not create a temporary directory (errno \(errno))", log: "")
        }
        let header = r.token.map(Self.authorizationHeader)
        var scrubber = Scrubber(secrets: [r.token, header].compactMap { $0 } + (r.token.map { ["x-access-token:" + $0] } ?? []))
        scrubber.replacements = [(dest, r.targetPath), (tmp, "<temporary directory>")]
        let started = ContinuousClock.now
        let deadline = started + settings.cloneTimeout
        var log = "$ git clone \(url) \(r.targetPath)\(r.token == nil ? "" : " (authenticated as the connected GitHub account)")\n"
        let plain = Self.environment(home: home, header: nil, webURL: settings.webURL)
        let authed = Self.environment(home: home, header: header, webURL: settings.webURL)

        func timeoutMessage() -> String {
            "timed out after \(settings.cloneTimeout.components.seconds) s"
        }

        func git(_ args: [String], in dir: String?, auth: Bool) async throws -> GitResult {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw CloneFailure(message: timeoutMessage(), log: log) }
            let result = try await GitRunner.run(args, environment: auth ? authed : plain, directory: dir, timeout: remaining)
            try Task.checkCancellation()
            if result.timedOut {
                log += scrubber.scrub(result.text)
                throw CloneFailure(message: timeoutMessage(), log: log)
            }
            return result
        }

        let cloned = try await git(["clone", "--no-checkout", "--", url, dest], in: nil, auth: header != nil)
        let cloneText = scrubber.scrub(cloned.text)
        log += cloneText
        guard cloned.status == 0 else {
            throw CloneFailure(message: Self.explain(cloneText, r), log: log)
        }

        func verify(_ name: String) async throws -> String? {
            let v = try await git(["rev-parse", "--verify", "--quiet", name + "^{commit}"], in: dest, auth: false)
            let sha = v.text.trimmingCharacters(in: .whitespacesAndNewlines)
            return v.status == 0 && Self.isHex(sha) ? sha : nil
        }
        let checkout: [String]
        let described: String
        if try await verify("refs/remotes/origin/" + r.ref) != nil {
            checkout = ["checkout", "--quiet", "--track", "-B", r.ref, "refs/remotes/origin/" + r.ref]
            described = "branch \(r.ref)"
        } else if let sha = try await verify("refs/tags/" + r.ref) {
            checkout = ["checkout", "--quiet", "--detach", sha]
            described = "tag \(r.ref)"
        } else if Self.isHex(r.ref), r.ref.count >= 4 {
            var sha = try await verify(r.ref)
            if sha == nil, r.ref.count == 40 || r.ref.count == 64 {
                // A commit no branch or tag reaches (a pull request head, say): ask for it by id.
                let f = try await git(["fetch", "--quiet", "origin", r.ref], in: dest, auth: header != nil)
                log += scrubber.scrub(f.text)
                if f.status == 0 { sha = try await verify(r.ref) }
            }
            guard let sha else {
                throw CloneFailure(message: "\(r.ref) is not a branch, tag or commit of \(r.fullName)", log: log)
            }
            checkout = ["checkout", "--quiet", "--detach", sha]
            described = "commit \(sha)"
        } else {
            throw CloneFailure(message: "\(r.ref) is not a branch, tag or commit of \(r.fullName)", log: log)
        }
        let co = try await git(checkout, in: dest, auth: false)
        log += scrubber.scrub(co.text)
        guard co.status == 0 else {
            throw CloneFailure(message: "checking out \(described) failed: \(Self.lastLine(scrubber.scrub(co.text)))", log: log)
        }
        let head = try await git(["rev-parse", "HEAD"], in: dest, auth: false)
        let commit = head.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard head.status == 0, Self.isHex(commit) else {
            throw CloneFailure(message: "could not read the checked-out commit", log: log)
        }
        if let remote = r.brokerRemote {
            let set = try await git(["remote", "set-url", "origin", remote], in: dest, auth: false)
            guard set.status == 0 else {
                throw CloneFailure(message: "pointing origin at the git broker failed: \(Self.lastLine(scrubber.scrub(set.text)))", log: log)
            }
            log += "origin is the devbox's git broker (push_branches): fetch and push work without a token in the box\n"
        }
        // Belt and braces: the header must not have been written anywhere in .git/config.
        let config = (try? String(contentsOfFile: dest + "/.git/config", encoding: .utf8)) ?? ""
        if config.lowercased().contains("extraheader") || scrubber.containsSecret(config) {
            throw CloneFailure(message: "refusing to keep a clone whose .git/config holds credentials", log: log)
        }
        do {
            try await r.adopt?(dest)
        } catch {
            throw CloneFailure(message: "giving the clone the devbox's owner failed: \(error)", log: log)
        }
        do {
            try WorkspacePlacement.move(dest, workspace: workspace, target: r.targetPath, owner: r.owner)
        } catch {
            throw CloneFailure(message: error.description, log: log)
        }
        let elapsed = ContinuousClock.now - started
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        log += "checked out \(described) at \(commit) into \(r.targetPath) (\(ms) ms)\n"
        return CloneOutcome(commit: commit, log: log)
    }

    /// `Authorization: Basic base64(x-access-token:TOKEN)`: what GitHub accepts over HTTPS
    /// for OAuth and app tokens alike.
    static func authorizationHeader(_ token: String) -> String {
        "Authorization: Basic " + Data("x-access-token:\(token)".utf8).base64EncodedString()
    }

    /// git's whole environment: no system or global config, no HOME of the service (no
    /// .netrc, no credential store), no prompts; with a token, the header for the GitHub
    /// web origin only, and no redirects (a redirect must not carry it elsewhere).
    static func environment(home: String, header: String?, webURL: URL) -> [String: String] {
        var env = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C",
            "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        ]
        // No background gc/maintenance: nothing may outlive the clone in the box's files.
        var config: [(String, String)] = [
            ("credential.helper", ""), ("core.askPass", ""), ("gc.auto", "0"), ("maintenance.auto", "false"),
        ]
        if let header {
            config.append(("http.\(GitHubSettings.join(webURL, "/")).extraHeader", header))
            config.append(("http.followRedirects", "false"))
        }
        env["GIT_CONFIG_COUNT"] = String(config.count)
        for (i, kv) in config.enumerated() {
            env["GIT_CONFIG_KEY_\(i)"] = kv.0
            env["GIT_CONFIG_VALUE_\(i)"] = kv.1
        }
        return env
    }

    /// One clear sentence from git's (already scrubbed) output.
    static func explain(_ output: String, _ r: CloneRequest) -> String {
        let lower = output.lowercased()
        if lower.contains("terminal prompts disabled") || lower.contains("could not read username")
            || lower.contains("authentication failed") || lower.contains("the requested url returned error: 401")
            || lower.contains("the requested url returned error: 403")
        {
            if r.token != nil {
                return "GitHub refused the connected account's token for \(r.fullName) (revoked, or no access): reconnect GitHub"
            }
            return "\(r.fullName) needs authentication: it is private or does not exist; \(r.anonymousHint)"
        }
        if lower.contains("not found") || lower.contains("returned error: 404") {
            return "\(r.fullName) was not found"
        }
        if lower.contains("could not resolve host") || lower.contains("failed to connect") || lower.contains("connection refused") {
            return "the git server is unreachable: \(lastLine(output))"
        }
        return lastLine(output)
    }

    static func lastLine(_ s: String) -> String {
        let lines = s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let line = lines.last(where: { $0.hasPrefix("fatal:") || $0.hasPrefix("error:") }) ?? lines.last ?? "git failed"
        return String(line.prefix(500))
    }

    static func isHex(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) || (65...70).contains($0) }
    }
}

/// Removes secrets from text that will be kept (operation output, errors, logs): each
/// secret verbatim, any `Authorization:` header value, and host paths replaced by what
/// the user knows them as.
struct Scrubber: Sendable {
    let secrets: [String]
    var replacements: [(String, String)] = []

    init(secrets: [String]) {
        // Longest first, so a secret containing another is removed whole.
        self.secrets = secrets.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    func scrub(_ text: String) -> String {
        var s = text
        for secret in secrets { s = s.replacingOccurrences(of: secret, with: "[REDACTED]") }
        s = s.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard let r = line.range(of: "authorization:", options: .caseInsensitive) else { return String(line) }
            return String(line[..<r.upperBound]) + " [REDACTED]"
        }.joined(separator: "\n")
        for (from, to) in replacements { s = s.replacingOccurrences(of: from, with: to) }
        return s
    }

    func containsSecret(_ text: String) -> Bool { secrets.contains { text.contains($0) } }
}
