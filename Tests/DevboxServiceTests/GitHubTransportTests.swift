import Foundation
import Testing

@testable import DevboxService

#if canImport(Glibc)
    import Glibc
#endif

/// GitHubClient over real sockets: timeouts, refused connections, redirects not followed.
@Suite("GitHub client transport")
struct GitHubTransportTests {
    /// A listening socket on 127.0.0.1 (any port); nothing accepts unless asked.
    static func listenLoopback() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                bind(fd, sp, len) == 0 && getsockname(fd, sp, &len) == 0
            }
        }
        guard ok, listen(fd, 16) == 0 else {
            close(fd)
            throw GitHubTransportFailure("cannot listen")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    static func client(_ port: Int, timeout: TimeInterval = 5) -> GitHubClient {
        GitHubClient(settings: GitHubSettings(apiURL: URL(string: "http://127.0.0.1:\(port)")!, requestTimeout: timeout))
    }

    @Test("a GitHub that never answers is unreachable after the request timeout")
    func silent() async throws {
        let (fd, port) = try Self.listenLoopback()
        defer { close(fd) }
        let start = ContinuousClock.now
        let error = await #expect(throws: GitHubError.self) { _ = try await Self.client(port, timeout: 0.5).user(token: "gho_secret") }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(450) && elapsed < .seconds(5), "\(elapsed)")
        #expect(error == .unreachable("GET 127.0.0.1: timed out"))
    }

    @Test("a refused connection is unreachable at once")
    func refused() async throws {
        let (fd, port) = try Self.listenLoopback()
        close(fd)
        let start = ContinuousClock.now
        let error = await #expect(throws: GitHubError.self) { _ = try await Self.client(port, timeout: 30).user(token: "gho_secret") }
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(error == .unreachable("GET 127.0.0.1: connection refused"))
    }

    @Test("a redirect is the answer: never followed, the token never reaches the target")
    func redirectNotFollowed() async throws {
        let (target, targetPort) = try Self.listenLoopback()
        defer { close(target) }
        let (fd, port) = try Self.listenLoopback()
        defer { close(fd) }
        let seen = ReceivedRequest()
        Thread {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            var buf = [UInt8](repeating: 0, count: 65536)
            let n = read(c, &buf, buf.count)
            seen.set(String(decoding: buf[0..<max(0, n)], as: UTF8.self))
            let answer =
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:\(targetPort)/user\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            _ = answer.withCString { write(c, $0, strlen($0)) }
            close(c)
        }.start()

        let error = await #expect(throws: GitHubError.self) { _ = try await Self.client(port).user(token: "gho_secret") }
        #expect(error == .status(302, "no message"))
        #expect(seen.get()?.lowercased().contains("authorization: bearer gho_secret") == true)
        // Nothing ever connected to the redirect target.
        var pfd = pollfd(fd: target, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 200) == 0)
    }
}

struct GitHubTransportFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

final class ReceivedRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var text: String?
    func set(_ t: String) { lock.withLock { text = t } }
    func get() -> String? { lock.withLock { text } }
}
