import AsyncHTTPClient
import DevboxModel
import Foundation
import HTTPClientSupport
import NIOSSL
import DevboxTestSupport
import Testing

@testable import DevboxClient

#if canImport(Glibc)
    import Glibc
#endif

/// Answers one exec request with a server-sent-event stream: the first frame, then the
/// `exit` frame only once the test has seen the first event (or after 10 s).
final class StreamingServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let release = DispatchSemaphore(value: 0)
    /// True when the test released the server (it saw the first event while the server waited).
    let releasedByTest = ThreadBox<Bool>()

    init() throws {
        (fd, port) = try listenLoopback()
        let listener = fd
        let release = self.release
        let released = releasedByTest
        Thread {
            let c = accept(listener, nil, nil)
            guard c >= 0 else { return }
            _ = readRequest(c)
            writeAll(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            // The first event, split across two writes in the middle of its blank line.
            writeAll(c, "event: stdout\ndata: {\"data\":\"hello\\n\"}\n")
            usleep(50_000)
            writeAll(c, "\n")
            released.value = release.wait(timeout: .now() + 10) == .success
            writeAll(
                c,
                "event: exit\ndata: {\"exit_code\":0,\"signal\":null,\"truncated\":false,\"timed_out\":false,\"duration_ms\":7}\n\n")
            close(c)
        }.start()
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }
    func letItEnd() { release.signal() }
    deinit { close(fd) }
}

@Suite("SDK transport (async-http-client)")
struct TransportTests {
    @Test("exec stream: each event is yielded as it arrives, not when the response ends")
    func streamIsIncremental() async throws {
        let server = try StreamingServer()
        let client = DevboxClient(providerToken: "t", baseURL: server.url)
        var events: [ExecEvent] = []
        for try await event in client.devboxes.execStream("dbx_1", ExecRequest(command: .shell("x"))) {
            if events.isEmpty { server.letItEnd() }
            events.append(event)
        }
        #expect(server.releasedByTest.value == true, "the first event came only after the stream ended")
        #expect(events.count == 2)
        #expect(events.first == .stdout("hello\n"))
        guard case .exit(let result) = events.last else {
            Issue.record("no exit event: \(events)")
            return
        }
        #expect(result.exitCode == 0 && result.durationMs == 7)
    }

    @Test("a redirect is not followed: no token goes to the host it points at")
    func redirectNotFollowed() async throws {
        // The other host: records whatever reaches it within a second.
        let (other, otherPort) = try listenLoopback()
        defer { close(other) }
        let api = try CannedServer(
            status: "307 Temporary Redirect", headers: ["Location: http://127.0.0.1:\(otherPort)/api/v1/devboxes"], body: "")
        let client = DevboxClient(
            providerToken: "provider-secret-1", userToken: "user-secret-2",
            baseURL: api.url, requestTimeout: 10)
        let error = await #expect(throws: DevboxClientError.self) {
            _ = try await client.devboxes.create(
                CreateDevboxRequest(name: "r", credentialProfile: CredentialProfile(injectClaudeToken: true)),
                tokens: InjectionTokens(claudeToken: "claude-secret-3"))
        }
        #expect(error?.status == 307)
        for secret in ["provider-secret-1", "user-secret-2", "claude-secret-3"] {
            #expect(!"\(String(describing: error))".contains(secret))
        }
        var p = [pollfd(fd: other, events: Int16(POLLIN), revents: 0)]
        #expect(poll(&p, 1, 1000) == 0, "the redirect target was contacted")
    }

    @Test("an error event of the exec stream names no token and no env value")
    func streamErrorRedacted() async throws {
        let server = try CannedServer(
            status: "200 OK", headers: ["Content-Type: text/event-stream"],
            body: "event: error\ndata: {\"error\":{\"code\":\"internal\",\"message\":"
                + "\"failed with provider-secret-1 and env-secret-2\"}}\n\n")
        let client = DevboxClient(providerToken: "provider-secret-1", baseURL: server.url)
        let error = await #expect(throws: DevboxClientError.self) {
            for try await _ in client.devboxes.execStream(
                "dbx_1", ExecRequest(command: .shell("x"), env: ["K": "env-secret-2"]))
            {}
        }
        let message = try #require(error?.apiError?.message)
        #expect(message == "failed with [redacted] and [redacted]")
    }

    @Test("SSE frames are found whatever the chunking")
    func frames() {
        let text = "event: stdout\ndata: {\"data\":\"a\"}\n\nevent: exit\ndata: {}\n\n"
        let bytes = Array(text.utf8)
        for size in [1, 2, 3, 7, 16, bytes.count] {
            var parser = SSEFrames()
            var frames: [String] = []
            var i = 0
            while i < bytes.count {
                frames += parser.append(bytes[i..<min(i + size, bytes.count)])
                i += size
            }
            #expect(frames == ["event: stdout\ndata: {\"data\":\"a\"}", "event: exit\ndata: {}"], "chunks of \(size)")
        }
        #expect(SSEReader.event("event: stdout\ndata: {\"data\":\"a\"}") == .output(.stdout("a")))
        #expect(SSEReader.event("event: ping\ndata: {}") == .unknown)
    }

    @Test("a refused connection fails at once as 'connection refused', not after the timeout")
    func refusedAtOnce() async throws {
        let port = try freeLoopbackPort()
        let client = DevboxClient(providerToken: "t", baseURL: URL(string: "http://127.0.0.1:\(port)")!, requestTimeout: 30)
        let start = ContinuousClock.now
        let error = await #expect(throws: DevboxClientError.self) { try await client.devboxes.list() }
        #expect(ContinuousClock.now - start < .seconds(20))  // the timeout is 30 s
        #expect(error == .unreachable(url: "http://127.0.0.1:\(port)", reason: "connection refused"))
    }

    @Test("a name that does not resolve is 'host not found' (.invalid never does, RFC 6761)")
    func unknownHost() async throws {
        let client = DevboxClient(providerToken: "t", baseURL: URL(string: "http://devbox-test.invalid:8080")!, requestTimeout: 30)
        let error = await #expect(throws: DevboxClientError.self) { try await client.devboxes.list() }
        #expect(error == .unreachable(url: "http://devbox-test.invalid:8080", reason: "host not found"))
    }

    @Test("a server that never answers times out after the request timeout")
    func silentServerTimesOut() async throws {
        // Connections complete in the kernel's backlog; nothing ever reads or answers.
        let (fd, port) = try listenLoopback(backlog: 16)
        defer { close(fd) }
        let client = DevboxClient(providerToken: "t", baseURL: URL(string: "http://127.0.0.1:\(port)")!, requestTimeout: 0.5)
        let start = ContinuousClock.now
        let error = await #expect(throws: DevboxClientError.self) { try await client.devboxes.list() }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(10), "\(elapsed)")
        #expect(error == .unreachable(url: "http://127.0.0.1:\(port)", reason: "timed out"))
    }

    @Test("idle timeout: progress keeps a slow exchange alive, silence ends it")
    func idleTimeout() async throws {
        // 3.6 s in all, a sign of life every 300 ms from an OS thread of its own: longer than
        // the 1 s limit, never idle that long. The signs do not come from a task, because at
        // the start of a full run every suite starts at once and a sleeping task may wait
        // seconds for a thread of the cooperative pool on these two cores (CI saw a 3 s limit
        // run out that way); the watchdog waking late only finds a fresher sign.
        let value = try await withIdleTimeout(.seconds(1)) { alive in
            try await withCheckedThrowingContinuation { (done: CheckedContinuation<Int, any Error>) in
                Thread {
                    alive()
                    for _ in 0..<12 {
                        usleep(300_000)
                        alive()
                    }
                    done.resume(returning: 42)
                }.start()
            }
        }
        #expect(value == 42)
        await #expect(throws: IdleTimeout.self) {
            try await withIdleTimeout(.milliseconds(200)) { _ in
                try await Task.sleep(for: .seconds(30))
                return 0
            }
        }
    }

    @Test("https: an untrusted certificate is a TLS failure; the same server answers once trusted")
    func tls() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("cert.pem").path
        let key = dir.appendingPathComponent("key.pem").path
        let req = try await run(
            "/usr/bin/openssl",
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert])
        try #require(req == 0, "openssl req failed")
        let port = try freeLoopbackPort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        server.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", cert, "-key", key, "-www", "-quiet"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        // SIGKILL: the test process may ignore SIGTERM (signal handling through dispatch
        // sources sets SIG_IGN), and a child inherits that, so terminate() would not stop it.
        defer { kill(server.processIdentifier, SIGKILL) }
        try await waitForPort(port)
        let base = URL(string: "https://127.0.0.1:\(port)")!

        // The system's trust roots do not know this certificate.
        let untrusting = DevboxClient(providerToken: "dbx_pt_secret", baseURL: base)
        let error = await #expect(throws: DevboxClientError.self) { try await untrusting.rawRequest("GET", path: "/") }
        #expect(error == .unreachable(url: "https://127.0.0.1:\(port)", reason: "TLS failure"))

        // Trusting it, the TLS handshake completes and the server's page comes back.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(cert))
        var configuration = HTTPClient.Configuration.devbox(connectTimeout: 10, followRedirects: true)
        configuration.tlsConfiguration = tls
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let trusting = DevboxClient(providerToken: "dbx_pt_secret", baseURL: base, httpClient: http)
        let page = await Result(catching: { try await trusting.rawRequest("GET", path: "/") })
        try await http.shutdown()
        let text = String(decoding: try page.get(), as: UTF8.self)
        #expect(text.contains("s_server"), "\(text.prefix(300))")
    }

    /// Runs a command to its end without blocking a thread of the cooperative pool.
    private func run(_ path: String, _ args: [String]) async throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        while p.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        return p.terminationStatus
    }

    private func waitForPort(_ port: Int) async throws {
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let ok = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            close(fd)
            if ok { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw TestFailure("openssl s_server did not listen on \(port)")
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
