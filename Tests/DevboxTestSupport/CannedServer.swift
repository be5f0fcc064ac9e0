import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A one-request HTTP server on 127.0.0.1, on a thread: records what arrives and answers with
/// a canned response (status line, extra header lines, body), then closes the connection.
public final class CannedServer: @unchecked Sendable {
    public let port: Int
    private let fd: Int32
    private let received = ThreadBox<String>()

    public init(status: String, headers: [String] = [], body: String) throws {
        (fd, port) = try listenLoopback()
        let response =
            "HTTP/1.1 \(status)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n" + body
        let listener = fd
        let box = received
        Thread {
            let c = accept(listener, nil, nil)
            guard c >= 0 else { return }
            box.value = readRequest(c)
            writeAll(c, response)
            close(c)
        }.start()
    }

    public var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// The raw request once it has arrived ("" after 5 s without one).
    public func request() async -> String {
        for _ in 0..<500 {
            if let r = received.value { return r }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return ""
    }

    /// The raw request if one has arrived by now.
    public var requestIfArrived: String? { received.value }

    deinit { close(fd) }
}
