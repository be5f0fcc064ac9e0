import Foundation
import DevboxTestSupport
import Testing

@testable import DevboxService

#if canImport(Glibc)
    import Glibc
#endif

/// GitHubClient over real sockets: timeouts, refused connections, redirects not followed.
@Suite("GitHub client transport")
struct GitHubTransportTests {
    static func client(_ port: Int, timeout: TimeInterval = 5) -> GitHubClient {
        GitHubClient(settings: GitHubSettings(apiURL: URL(string: "http://127.0.0.1:\(port)")!, requestTimeout: timeout))
    }

    @Test("a GitHub that never answers is unreachable after the request timeout")
    func silent() async throws {
        let (fd, port) = try listenLoopback(backlog: 16)
        defer { close(fd) }
        let start = ContinuousClock.now
        let error = await #expect(throws: GitHubError.self) { _ = try await Self.client(port, timeout: 0.5).user(token: "gho_secret") }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(20), "\(elapsed)")
        #expect(error == .unreachable("GET 127.0.0.1: timed out"))
    }

    @Test("a refused connection is unreachable at once")
    func refused() async throws {
        let (fd, port) = try listenLoopback(backlog: 16)
        close(fd)
        let start = ContinuousClock.now
        let error = await #expect(throws: GitHubError.self) { _ = try await Self.client(port, timeout: 30).user(token: "gho_secret") }
        #expect(ContinuousClock.now - start < .seconds(20))  // the timeout is 30 s
        #expect(error == .unreachable("GET 127.0.0.1: connection refused"))
    }

    @Test("a redirect is the answer: never followed, the token never reaches the target")
    func redirectNotFollowed() async throws {
        let (target, targetPort) = try listenLoopback(backlog: 16)
        defer { close(target) }
        let server = try CannedServer(
            status: "302 Found", headers: ["Location: http://127.0.0.1:\(targetPort)/user"], body: "")
        let port = server.port

        let error = await #expect(throws: GitHubError.self) { _ = try await Self.client(port).user(token: "gho_secret") }
        #expect(error == .status(302, "no message"))
        #expect(await server.request().lowercased().contains("authorization: bearer gho_secret"))
        // Nothing ever connected to the redirect target.
        var pfd = pollfd(fd: target, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 200) == 0)
    }
}
