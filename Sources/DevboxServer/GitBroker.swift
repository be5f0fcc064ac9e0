import AsyncHTTPClient
import DevboxService
import Foundation
import HTTPClientSupport
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Issue 19's git broker, the HTTP side, on the AI-API broker's listener:
/// `/git/<devbox id>/<secret>/<owner>/<name>.git/{info/refs, git-upload-pack, git-receive-pack}`
/// (git's smart HTTP) is forwarded to `<GitHub web>/<owner>/<name>.git/…` with the connected
/// account's token added (`Authorization: Basic x-access-token:…`), after
/// `GitBrokerService.admitGitRequest` (the box's own address and path secret, a repository the
/// devbox was created with). A push (`git-receive-pack`) is read whole first (≤ 256 MiB):
/// every ref update command must update `refs/heads/<branch>` with the branch matching
/// `push_branches`, or nothing is forwarded and git is told why, per ref
/// (`! [remote rejected] main -> main (devbox: …)`). Tokens, paths' secrets and bodies are
/// never logged.
struct GitBroker: Sendable {
    let broker: GitBrokerService
    let logger: Logger
    let http: OwnedHTTPClient

    /// Request headers passed on (git's own); everything else (Authorization above all) is dropped.
    static let forwarded: Set<String> = [
        "accept", "accept-encoding", "accept-language", "content-type", "content-encoding", "git-protocol", "user-agent",
        "pragma",
    ]
    /// Response headers not passed back.
    static let droppedBack: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer", "transfer-encoding",
        "upgrade", "content-length", "www-authenticate", "set-cookie",
    ]
    /// The largest push (its whole request: commands and pack) and fetch request forwarded.
    static let pushLimit = 256 << 20
    static let fetchLimit = 64 << 20

    func respond(_ request: Request, peer: String?) async -> Response {
        guard let target = Self.parse(request.uri.path) else {
            return Self.text(404, "not a git broker path: use the origin URL the devbox was cloned with")
        }
        let query = request.uri.query ?? ""
        let service: String
        switch (request.method, target.rest) {
        case (.get, "/info/refs"):
            guard let s = Self.queryService(query) else {
                return Self.text(403, "the devbox git broker serves git's smart HTTP only (service=git-upload-pack or git-receive-pack)")
            }
            service = s
        case (.post, "/git-upload-pack"): service = "git-upload-pack"
        case (.post, "/git-receive-pack"): service = "git-receive-pack"
        default:
            return Self.text(404, "the devbox git broker serves git's smart HTTP only")
        }
        let admitted = await broker.admitGitRequest(
            peer: peer, devboxId: target.devboxId, secret: target.secret, fullName: target.fullName)
        let devboxId: String, fullName: String, upstreamBase: String, token: String, globs: [String]
        switch admitted {
        case .refuse(let status, let message):
            logger.notice("git broker refused a request", metadata: [
                "peer": "\(peer ?? "?")", "repository": "\(target.fullName)", "service": "\(service)", "status": "\(status)",
            ])
            return Self.text(status, message)
        case .forward(let id, let name, let upstream, let t, let g):
            (devboxId, fullName, upstreamBase, token, globs) = (id, name, upstream, t, g)
        }

        var upstream = HTTPClientRequest(url: upstreamBase + target.rest + (query.isEmpty ? "" : "?" + query))
        upstream.method = request.method == .get ? .GET : .POST
        for field in request.headers where Self.forwarded.contains(field.name.canonicalName) {
            upstream.headers.add(name: field.name.rawName, value: field.value)
        }
        upstream.headers.replaceOrAdd(
            name: "authorization", value: "Basic " + Data("x-access-token:\(token)".utf8).base64EncodedString())
        if request.method == .post {
            if service == "git-receive-pack" {
                switch await checkedPush(request, globs: globs, fullName: fullName, devboxId: devboxId) {
                case .refused(let response): return response
                case .admitted(let body): upstream.body = .bytes(body)
                }
            } else {
                // Read whole (one reader of the request body; see `checkedPush`): negotiation is small.
                do {
                    upstream.body = .bytes(try await request.body.collect(upTo: Self.fetchLimit))
                } catch {
                    return Self.text(413, "devbox git broker: a fetch request is at most \(Self.fetchLimit >> 20) MiB (or it could not be read)")
                }
            }
        }

        let response: HTTPClientResponse
        do {
            response = try await http.client.execute(upstream, timeout: .hours(1))
        } catch {
            logger.warning("git broker upstream failed", metadata: [
                "devbox": "\(devboxId)", "repository": "\(fullName)", "error": "\(HTTPFailure.reason(error))",
            ])
            return Self.text(502, "GitHub could not be reached: \(HTTPFailure.reason(error))")
        }
        let status = Int(response.status.code)
        logger.info("git brokered", metadata: [
            "devbox": "\(devboxId)", "repository": "\(fullName)", "service": "\(service)", "status": "\(status)",
        ])
        if status == 401 {
            // Passed on, git in the box would ask for a password: say what is wrong instead.
            return Self.text(403, "GitHub refused the connected account's token for \(fullName) (revoked, or no access): reconnect GitHub")
        }
        var headers = HTTPFields()
        var contentLength: Int?
        for h in response.headers {
            let name = h.name.lowercased()
            if name == "content-length" { contentLength = Int(h.value); continue }
            if Self.droppedBack.contains(name) { continue }
            if let n = HTTPField.Name(h.name) { headers.append(HTTPField(name: n, value: h.value)) }
        }
        let body = response.body
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers,
            body: ResponseBody(contentLength: contentLength) { writer in
                for try await chunk in body { try await writer.write(chunk) }
                try await writer.finish(nil)
            })
    }

    enum PushVerdict {
        case admitted(ByteBuffer)
        case refused(Response)
    }

    /// Reads a push (up to `pushLimit`) and judges its ref update commands. The whole body is
    /// read before anything is forwarded: the request body then has one reader only (a
    /// forwarder still reading it when the handler returns races Hummingbird's own drain).
    func checkedPush(_ request: Request, globs: [String], fullName: String, devboxId: String) async -> PushVerdict {
        if let encoding = request.headers[.contentEncoding], encoding.lowercased() != "identity" {
            return .refused(Self.text(415, "the devbox git broker does not accept a compressed push request (\(encoding))"))
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.pushLimit)
        } catch {
            return .refused(Self.text(413, "devbox git broker: a push is at most \(Self.pushLimit >> 20) MiB (or it could not be read)"))
        }
        let commands: ReceivePackCommands
        switch ReceivePackCommands.parse(body.readableBytesView) {
        case .complete(let c): commands = c
        case .invalid(let why): return .refused(Self.text(400, "devbox git broker: \(why)"))
        case .needMore: return .refused(Self.text(400, "devbox git broker: the push request ended before its commands did"))
        }
        let refused = commands.updates.compactMap { u -> (String, String)? in
            guard u.ref.hasPrefix("refs/heads/") else {
                return (u.ref, "devbox: only branches may be pushed (refs/heads/…); allowed: \(globs.joined(separator: ", "))")
            }
            let branch = String(u.ref.dropFirst("refs/heads/".count))
            return GitBrokerService.branchMatches(branch, globs: globs)
                ? nil : (u.ref, "devbox: branch \(branch) is not in push_branches (\(globs.joined(separator: ", ")))")
        }
        guard refused.isEmpty else {
            logger.notice("git broker refused a push", metadata: [
                "devbox": "\(devboxId)", "repository": "\(fullName)", "refs": "\(refused.map(\.0).joined(separator: " "))",
            ])
            return .refused(Self.rejection(commands, refused: Dictionary(refused, uniquingKeysWith: { a, _ in a })))
        }
        return .admitted(body)
    }

    /// git's answer to a push nothing of which was forwarded: each ref rejected (the refused
    /// ones with their reason), through side-band when the client asked for it; a plain 403
    /// when it asked for no report.
    static func rejection(_ c: ReceivePackCommands, refused: [String: String]) -> Response {
        let summary = refused.values.first ?? "devbox: push refused"
        guard c.capabilities.contains("report-status") || c.capabilities.contains("report-status-v2") else {
            return text(403, summary)
        }
        var report = pkt("unpack ok\n")
        for u in c.updates {
            report += pkt("ng \(u.ref) \(refused[u.ref] ?? "devbox: not pushed, another ref of this push was refused")\n")
        }
        report += Array("0000".utf8)
        var out: [UInt8]
        if c.capabilities.contains("side-band-64k") || c.capabilities.contains("side-band") {
            let max = c.capabilities.contains("side-band-64k") ? 65515 : 995
            out = pkt([2] + Array("devbox git broker: \(summary)\n".utf8))
            var i = 0
            while i < report.count {
                let end = min(report.count, i + max)
                out += pkt([1] + report[i..<end])
                i = end
            }
            out += Array("0000".utf8)
        } else {
            out = report
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/x-git-receive-pack-result"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: out)))
    }

    static func pkt(_ s: String) -> [UInt8] { pkt(Array(s.utf8)) }
    static func pkt(_ payload: [UInt8]) -> [UInt8] { Array(String(format: "%04x", payload.count + 4).utf8) + payload }

    /// A refusal git shows its user: text/plain bodies are printed as `remote: …`.
    static func text(_ status: Int, _ message: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(string: message + "\n")))
    }

    struct Target {
        var devboxId: String
        var secret: String
        var fullName: String
        var rest: String
    }

    /// `/git/<id>/<secret>/<owner>/<name>.git<rest>`; names of GitHub's alphabet only.
    static func parse(_ path: String) -> Target? {
        guard path.hasPrefix("/git/") else { return nil }
        let parts = path.dropFirst(5).split(separator: "/", maxSplits: 4, omittingEmptySubsequences: false)
        guard parts.count == 5, parts[3].hasSuffix(".git") else { return nil }
        let owner = String(parts[2]), name = String(parts[3].dropLast(4))
        func ok(_ s: String, _ max: Int) -> Bool {
            !s.isEmpty && s.utf8.count <= max && s != "." && s != ".."
                && s.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 45 || $0 == 46 || $0 == 95 }
        }
        guard ok(String(parts[0]), 64), ok(String(parts[1]), 128), ok(owner, 100), ok(name, 100) else { return nil }
        return Target(devboxId: String(parts[0]), secret: String(parts[1]), fullName: owner + "/" + name, rest: "/" + parts[4])
    }

    static func queryService(_ query: String) -> String? {
        for item in query.split(separator: "&") where item.hasPrefix("service=") {
            let s = String(item.dropFirst("service=".count))
            return ["git-upload-pack", "git-receive-pack"].contains(s) ? s : nil
        }
        return nil
    }
}

/// The ref update commands at the head of a `git-receive-pack` request (pkt-lines up to the
/// first flush): `<old> <new> <ref>`, the first with `\0<capabilities>`; `shallow` lines skipped.
struct ReceivePackCommands: Equatable {
    struct Update: Equatable {
        var old: String
        var new: String
        var ref: String
    }
    var updates: [Update] = []
    var capabilities: Set<String> = []

    enum Parse: Equatable {
        case needMore
        case complete(ReceivePackCommands)
        case invalid(String)
    }

    static func parse<C: Collection>(_ bytes: C) -> Parse where C.Element == UInt8, C.Index == Int {
        var out = ReceivePackCommands()
        var at = bytes.startIndex
        while true {
            guard bytes.distance(from: at, to: bytes.endIndex) >= 4 else { return .needMore }
            guard let len = Int(String(decoding: bytes[at..<at + 4], as: UTF8.self), radix: 16) else {
                return .invalid("not a git push (bad pkt-line length)")
            }
            if len == 0 {
                return out.updates.isEmpty && out.capabilities.isEmpty ? .complete(out) : .complete(out)
            }
            guard len > 4 else { return .invalid("not a git push (pkt-line length \(len))") }
            guard bytes.distance(from: at, to: bytes.endIndex) >= len else { return .needMore }
            var line = Array(bytes[(at + 4)..<(at + len)])
            at += len
            if line.last == 10 { line.removeLast() }
            if line.starts(with: Array("shallow ".utf8)) { continue }
            if line.starts(with: Array("push-cert".utf8)) {
                return .invalid("signed pushes (push certificates) are not supported")
            }
            if let nul = line.firstIndex(of: 0) {
                let caps = String(decoding: line[(nul + 1)...], as: UTF8.self)
                out.capabilities.formUnion(caps.split(separator: " ").map(String.init))
                line = Array(line[..<nul])
            }
            let fields = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 3, isObjectId(fields[0]), isObjectId(fields[1]), !fields[2].isEmpty else {
                return .invalid("not a ref update command")
            }
            out.updates.append(Update(old: String(fields[0]), new: String(fields[1]), ref: String(fields[2])))
        }
    }

    static func isObjectId(_ s: Substring) -> Bool {
        (s.count == 40 || s.count == 64) && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
