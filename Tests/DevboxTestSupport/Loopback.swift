import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A failure of the test's own plumbing (a socket that cannot be made, a server that did not start).
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A value set on one thread and read on another.
public final class ThreadBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T?
    public init() {}
    public var value: T? {
        get { lock.withLock { _value } }
        set { lock.withLock { _value = newValue } }
    }
}

/// A listening TCP socket on 127.0.0.1, on a port the kernel chose; nothing accepts unless the
/// caller does. Close `fd` when done.
public func listenLoopback(backlog: Int32 = 4) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
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
    guard ok, listen(fd, backlog) == 0 else {
        close(fd)
        throw TestFailure("cannot listen on 127.0.0.1")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// Reads one HTTP request (head and a Content-Length body) from a connected socket.
public func readRequest(_ c: Int32) -> String {
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(c, &buf, buf.count)
        if n <= 0 { break }
        data += buf[0..<n]
        let text = String(decoding: data, as: UTF8.self)
        if let r = text.range(of: "\r\n\r\n") {
            let head = text[..<r.lowerBound].lowercased()
            let length =
                head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            if text.utf8.count - text[..<r.upperBound].utf8.count >= length { break }
        }
    }
    return String(decoding: data, as: UTF8.self)
}

/// Writes all of `text` to a connected socket (best effort: a peer that went away ends it).
public func writeAll(_ c: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then closed): for a server the
/// test starts itself, or for a connection that must be refused.
public func freeLoopbackPort() throws -> Int {
    let (fd, port) = try listenLoopback()
    close(fd)
    return port
}
