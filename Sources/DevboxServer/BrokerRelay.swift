import DevboxRuntime
import Foundation
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The AI broker's plain-HTTP path (issue 19's throughput goal): an upstream named `http://…`
/// (a gateway on the host's network, the tests' and the benchmark's fakes) is spoken to over
/// a socket of our own on a thread of its own, not through async-http-client, and a streamed
/// answer's body goes from that socket to the box's connection with splice(2) through a pipe:
/// the kernel moves page references, no byte is copied into serve, and no Swift code runs per
/// piece. A piece is forwarded as soon as the upstream's socket has it (server-sent events
/// still arrive in pieces). When the answer is metered (server-sent events, JSON) the pipe's
/// pages are tee(2)'d into a second pipe and read once for `UsageMeter`: one copy, not the
/// two of a receive and a send. `https://` upstreams (the public APIs) keep async-http-client:
/// TLS is decrypted in serve, so there is nothing to splice.
///
/// The box's connection is Hummingbird's (NIO's) socket. NIO does not hand out descriptors,
/// so the relay finds it by its address pair among serve's sockets (once per connection,
/// then cached and checked), duplicates it, and writes to the duplicate while Hummingbird
/// waits for the body closure: the response head is Hummingbird's, written and flushed
/// before the first spliced byte (`flushBarrier`); the chunked framing of an answer without
/// a length is written around each spliced piece, and Hummingbird writes the last chunk.
enum BrokerRelay {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        var staleCandidate = false
        let code: Int32
        init(_ what: String, _ e: Int32 = errno) {
            description = e == 0 ? what : "\(what): \(String(cString: strerror(e)))"
            code = e
        }
    }

    /// `http://host[:port]/path?query`: where to connect and what to ask.
    struct Target: Sendable, Hashable {
        let host: String
        let port: Int
        let authority: String
        let path: String

        init?(_ url: String) {
            guard url.lowercased().hasPrefix("http://") else { return nil }
            let rest = url.dropFirst(7)
            let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            let authority = String(rest[..<slash])
            var path = String(rest[slash...])
            if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
            guard !authority.isEmpty, !authority.contains("@") else { return nil }
            var host = authority
            var port = 80
            if authority.hasPrefix("[") {
                guard let close = authority.firstIndex(of: "]") else { return nil }
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                if after.hasPrefix(":") { guard let p = Int(after.dropFirst()) else { return nil }; port = p }
            } else if let colon = authority.lastIndex(of: ":") {
                guard let p = Int(authority[authority.index(after: colon)...]) else { return nil }
                host = String(authority[..<colon])
                port = p
            }
            guard (1...65535).contains(port), !host.isEmpty else { return nil }
            (self.host, self.port, self.authority, self.path) = (host, port, authority, path)
        }

        var endpoint: String { "\(host):\(port)" }
    }

    // MARK: upstream connections

    /// Kept-alive upstream connections, per endpoint (at most 16 idle each).
    static let idle = Mutex<[String: [Int32]]>([:])

    static func takeIdle(_ endpoint: String) -> Int32? {
        while let fd = idle.withLock({ $0[endpoint]?.popLast() }) {
            // Readable while idle: the upstream closed it (or sent something unasked).
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) == 0 { return fd }
            close(fd)
        }
        return nil
    }

    static func putIdle(_ endpoint: String, _ fd: Int32) {
        let kept = idle.withLock { pool -> Bool in
            guard pool[endpoint, default: []].count < 16 else { return false }
            pool[endpoint, default: []].append(fd)
            return true
        }
        if !kept { close(fd) }
    }

    static func connect(_ t: Target) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(t.host, String(t.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw Failure("cannot resolve \(t.host): \(String(cString: gai_strerror(rc)))", 0)
        }
        defer { freeaddrinfo(list) }
        var lastError: Int32 = ECONNREFUSED
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            defer { ai = a.pointee.ai_next }
            let fd = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 { lastError = errno; continue }
            var ok = Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0
            if !ok && errno == EINPROGRESS {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, 10_000) == 1 {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    ok = err == 0
                    if !ok { lastError = err }
                } else {
                    lastError = ETIMEDOUT
                }
            } else if !ok {
                lastError = errno
            }
            if ok {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                // The async-http-client path's read timeout: 600 s without a byte.
                var tv = timeval(tv_sec: 600, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                return fd
            }
            close(fd)
        }
        throw Failure("connect to \(t.endpoint)", lastError)
    }

    static func sendAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, flags: Int32 = 0, waitWritable: Bool = false) throws {
        guard var p = raw.baseAddress else { return }
        var left = raw.count
        while left > 0 {
            let n = send(fd, p, left, Int32(MSG_NOSIGNAL) | flags)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN, waitWritable { try waitFor(fd, POLLOUT); continue }
                throw Failure("send")
            }
            p += n
            left -= n
        }
    }

    static func waitFor(_ fd: Int32, _ event: Int32) throws {
        var p = pollfd(fd: fd, events: Int16(event), revents: 0)
        while true {
            let r = poll(&p, 1, 600_000)
            if r > 0 { return }
            if r == 0 { throw Failure("the box did not read for 600 s", 0) }
            if errno != EINTR { throw Failure("poll") }
        }
    }

    // MARK: one exchange with the upstream

    enum Framing: Sendable, Equatable { case none, length(Int), chunked, close }

    /// An upstream connection whose answer's head has been read; `pending` holds bytes read past it.
    final class Exchange: @unchecked Sendable {
        let fd: Int32
        let endpoint: String
        var pending: [UInt8]
        let status: Int
        let headers: [(String, String)]
        let framing: Framing
        var reusable: Bool
        var closed = false

        init(fd: Int32, endpoint: String, pending: [UInt8], status: Int, headers: [(String, String)], framing: Framing, reusable: Bool) {
            (self.fd, self.endpoint, self.pending, self.status, self.headers, self.framing, self.reusable)
                = (fd, endpoint, pending, status, headers, framing, reusable)
        }

        /// Back to the idle pool if the body was read whole and the upstream keeps it alive; else closed.
        func release(bodyDone: Bool) {
            guard !closed else { return }
            closed = true
            if bodyDone && reusable && pending.isEmpty { BrokerRelay.putIdle(endpoint, fd) } else { Glibc.close(fd) }
        }

        /// Reads more of the connection into `pending`; false at end of stream.
        func fill() throws -> Bool {
            var buf = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { pending.append(contentsOf: buf[0..<n]); return true }
                if n == 0 { return false }
                if errno == EINTR { continue }
                throw Failure(errno == EAGAIN ? "the upstream sent nothing for 600 s" : "receive from the upstream", errno == EAGAIN ? 0 : errno)
            }
        }

        /// A CRLF-terminated line out of `pending` (chunked framing), without its end.
        func line() throws -> [UInt8] {
            var from = 0
            while true {
                if let i = pending[from...].firstIndex(of: 0x0A) {
                    var l = Array(pending[..<i])
                    if l.last == 0x0D { l.removeLast() }
                    pending.removeFirst(i + 1)
                    return l
                }
                from = pending.count
                guard pending.count < 8192 else { throw Failure("a chunk header longer than 8 KiB from the upstream", 0) }
                guard try fill() else { throw Failure("the upstream closed inside a chunked body", 0) }
            }
        }

        /// The next piece of the body (at most `max` bytes, copied), nil at its end. For answers
        /// read whole and for the fallback when the box's socket is not found.
        var chunkLeft = 0
        var finished = false
        var lengthLeft = 0
        var started = false

        func next(max: Int) throws -> [UInt8]? {
            if !started {
                started = true
                if case .length(let n) = framing { lengthLeft = n }
            }
            if finished { return nil }
            switch framing {
            case .none:
                finished = true
                return nil
            case .length:
                if lengthLeft == 0 { finished = true; return nil }
                if pending.isEmpty, try !fill() { throw Failure("the upstream closed before the body's end", 0) }
                let k = min(lengthLeft, pending.count, max)
                defer { pending.removeFirst(k) }
                lengthLeft -= k
                return Array(pending[0..<k])
            case .close:
                if pending.isEmpty, try !fill() { finished = true; return nil }
                let k = min(pending.count, max)
                defer { pending.removeFirst(k) }
                return Array(pending[0..<k])
            case .chunked:
                if chunkLeft == 0 {
                    guard let size = try chunkSize() else { finished = true; return nil }
                    chunkLeft = size
                }
                if pending.isEmpty, try !fill() { throw Failure("the upstream closed inside a chunked body", 0) }
                let k = min(chunkLeft, pending.count, max)
                defer { pending.removeFirst(k) }
                chunkLeft -= k
                if chunkLeft == 0 { chunkEnd = true }
                return Array(pending[0..<k])
            }
        }

        var chunkEnd = false

        /// The next chunk's size (after the previous chunk's CRLF), nil after the last chunk and its trailers.
        func chunkSize() throws -> Int? {
            if chunkEnd {
                chunkEnd = false
                guard try line().isEmpty else { throw Failure("a chunk without its CRLF from the upstream", 0) }
            }
            let header = try line()
            let hex = header.prefix(while: { $0 != 0x3B /* ; */ && $0 != 0x20 && $0 != 0x09 })
            guard !hex.isEmpty, hex.count <= 15, let size = Int(String(decoding: hex, as: UTF8.self), radix: 16) else {
                throw Failure("a bad chunk size from the upstream", 0)
            }
            if size == 0 {
                while try !line().isEmpty {}  // trailers: dropped
                return nil
            }
            return size
        }
    }

    /// Sends the request (head and whole body) and reads the answer's head. A kept-alive
    /// connection that turns out closed before any answer byte is replaced once by a new one.
    static func exchange(_ t: Target, head: [UInt8], body: ByteBuffer?, isHead: Bool) throws -> Exchange {
        var attempt = 0
        while true {
            attempt += 1
            let reused: Bool
            let fd: Int32
            if attempt == 1, let f = takeIdle(t.endpoint) { (fd, reused) = (f, true) } else { (fd, reused) = (try connect(t), false) }
            do {
                do {
                    try head.withUnsafeBytes { try sendAll(fd, $0, flags: body == nil ? 0 : Int32(MSG_MORE)) }
                    if let body { try body.withUnsafeReadableBytes { try sendAll(fd, $0) } }
                } catch let e as Failure {
                    throw Failure.stale(e.description)  // not taken by the upstream: safe to send again
                }
                return try readHead(fd: fd, endpoint: t.endpoint, isHead: isHead)
            } catch {
                close(fd)
                if reused && attempt == 1 && (error as? Failure)?.staleCandidate == true { continue }
                throw error
            }
        }
    }

    static func readHead(fd: Int32, endpoint: String, isHead: Bool) throws -> Exchange {
        let x = Exchange(fd: fd, endpoint: endpoint, pending: [], status: 0, headers: [], framing: .none, reusable: false)
        while true {
            var end: Int?
            var searched = 0
            while end == nil {
                let window = x.pending
                if window.count >= 4 {
                    var i = max(0, searched - 3)
                    while i + 3 < window.count {
                        if window[i] == 0x0D && window[i + 1] == 0x0A && window[i + 2] == 0x0D && window[i + 3] == 0x0A { end = i; break }
                        i += 1
                    }
                    searched = window.count
                }
                if end != nil { break }
                guard window.count < 64 << 10 else { throw Failure("the upstream's answer head is longer than 64 KiB", 0) }
                let got: Bool
                do { got = try x.fill() } catch let e as Failure {
                    // A reset before any answer byte: the upstream had closed a kept-alive
                    // connection. A timeout is not retried (the request may be in progress).
                    throw window.isEmpty && e.code == ECONNRESET ? Failure.stale(e.description) : e
                }
                if !got { throw window.isEmpty ? Failure.stale("the upstream closed the connection without an answer") : Failure("the upstream closed inside the answer's head", 0) }
            }
            guard let end else { continue }
            let text = String(decoding: x.pending[0..<end], as: UTF8.self)
            x.pending.removeFirst(end + 4)
            var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
            let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
            guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]), (100...999).contains(status) else {
                throw Failure("a malformed status line from the upstream", 0)
            }
            if (100...199).contains(status) {
                if status == 101 { throw Failure("the upstream switched protocols", 0) }
                continue  // 100 Continue, 103 Early Hints: the final answer follows.
            }
            var headers: [(String, String)] = []
            var length: Int?
            var chunked = false
            var close = statusLine[0] == "HTTP/1.0"
            for l in lines {
                guard let colon = l.firstIndex(of: ":") else { continue }
                let name = String(l[..<colon]).trimmingCharacters(in: .whitespaces)
                let value = String(l[l.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                switch name.lowercased() {
                case "content-length": length = Int(value)
                case "transfer-encoding": chunked = value.lowercased().contains("chunked")
                case "connection":
                    let v = value.lowercased()
                    if v.contains("close") { close = true } else if v.contains("keep-alive") { close = false }
                default: break
                }
                headers.append((name, value))
            }
            let framing: Framing
            if isHead || status == 204 || status == 304 { framing = .none }
            else if chunked { framing = .chunked }
            else if let length { framing = .length(length) }
            else { framing = .close; close = true }
            if chunked { headers.removeAll { $0.0.lowercased() == "content-length" } }
            return Exchange(fd: fd, endpoint: endpoint, pending: x.pending, status: status, headers: headers, framing: framing,
                            reusable: !close)
        }
    }

    // MARK: the box's socket

    /// A duplicate of the box connection's socket, found before the answer's head goes out;
    /// closed by `close()` once the body is spliced, or when dropped (a response whose body
    /// Hummingbird never asked for).
    final class BoxSocket: Sendable {
        let fd: Int32
        private let open = Atomic<Bool>(true)

        init(_ fd: Int32) { self.fd = fd }

        func close() {
            if open.exchange(false, ordering: .acquiringAndReleasing) { Glibc.close(fd) }
        }

        deinit { close() }
    }

    /// The located descriptor number per connection (local|remote), checked on every use.
    static let located = Mutex<[String: Int32]>([:])

    /// A duplicate of serve's socket for the connection `local` ↔ `remote`, or nil.
    static func boxSocket(local: SocketAddress, remote: SocketAddress) -> Int32? {
        let key = "\(local)|\(remote)"
        if let fd = located.withLock({ $0[key] }), let d = dupIfMatching(fd, local, remote) { return d }
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let fd = Int32(name), fd != own, e.pointee.d_type == UInt8(DT_SOCK) || e.pointee.d_type == UInt8(DT_LNK) else { continue }
            if matches(fd, local, remote), let d = dupIfMatching(fd, local, remote) {
                located.withLock {
                    if $0.count > 4096 { $0.removeAll() }
                    $0[key] = fd
                }
                return d
            }
        }
        return nil
    }

    private static func dupIfMatching(_ fd: Int32, _ local: SocketAddress, _ remote: SocketAddress) -> Int32? {
        let d = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard d >= 0 else { return nil }
        // Checked on the duplicate: the number may have been closed and reused meanwhile.
        if matches(d, local, remote) { return d }
        close(d)
        return nil
    }

    private static func matches(_ fd: Int32, _ local: SocketAddress, _ remote: SocketAddress) -> Bool {
        same(fd, local, { getsockname($0, $1, $2) }) && same(fd, remote, { getpeername($0, $1, $2) })
    }

    private static func same(_ fd: Int32, _ want: SocketAddress,
                             _ get: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> Bool {
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &st) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(fd, $0, &len) } }
        guard ok == 0 else { return false }
        switch want {
        case .v4(let a):
            guard Int32(st.ss_family) == AF_INET else { return false }
            return withUnsafeBytes(of: &st) { raw in
                let got = raw.load(as: sockaddr_in.self)
                return got.sin_port == a.address.sin_port && got.sin_addr.s_addr == a.address.sin_addr.s_addr
            }
        case .v6(let a):
            guard Int32(st.ss_family) == AF_INET6 else { return false }
            return withUnsafeBytes(of: &st) { raw in
                var got = raw.load(as: sockaddr_in6.self)
                var want6 = a.address
                return got.sin6_port == want6.sin6_port && memcmp(&got.sin6_addr, &want6.sin6_addr, 16) == 0
            }
        default:
            return false
        }
    }

    // MARK: the body, spliced

    /// Moves the answer's body from the upstream to the box socket `box` (a duplicate, closed
    /// by the caller). `chunked`: frame each piece as an HTTP/1.1 chunk (the answer has no
    /// length), except the last chunk (Hummingbird's). Returns whether the body was read whole.
    static func splice(_ x: Exchange, to box: Int32, chunked: Bool, meter: inout UsageMeter?) throws {
        var out = BoxWriter(fd: box, chunked: chunked)
        var pipeA: [Int32] = [-1, -1]
        var pipeB: [Int32] = [-1, -1]
        guard dxPipe2(&pipeA, O_CLOEXEC) == 0 else { throw Failure("pipe") }
        defer { close(pipeA[0]); close(pipeA[1]) }
        _ = fcntl(pipeA[1], F_SETPIPE_SZ, 1 << 20)
        let capacity = max(4096, Int(fcntl(pipeA[1], F_GETPIPE_SZ)))
        if meter != nil {
            guard dxPipe2(&pipeB, O_CLOEXEC) == 0 else { throw Failure("pipe") }
            _ = fcntl(pipeB[1], F_SETPIPE_SZ, Int32(capacity))
        }
        defer { if pipeB[0] >= 0 { close(pipeB[0]); close(pipeB[1]) } }
        // The meter's copy is read in slices of this size and scanned at once, while the slice
        // is still in the CPU's cache (one buffer of the pipe's size was copied out whole and
        // then scanned from memory).
        let slice = 256 << 10
        let scratch = meter == nil ? nil : UnsafeMutableRawBufferPointer.allocate(byteCount: slice, alignment: 64)
        defer { scratch?.deallocate() }

        /// Forwards up to `n` body bytes (`n` = Int.max: to the end of stream); the count moved.
        func forward(_ n: Int) throws -> Int {
            var left = n
            if !x.pending.isEmpty {
                let k = min(left, x.pending.count)
                try x.pending.withUnsafeBytes { raw in
                    let part = UnsafeRawBufferPointer(rebasing: raw[0..<k])
                    meter?.feed(part)
                    try out.piece(part)
                }
                x.pending.removeFirst(k)
                left -= k
            }
            while left > 0 {
                let k = dxSplice(x.fd, nil, pipeA[1], nil, min(left, capacity), 0)
                if k < 0 {
                    if errno == EINTR { continue }
                    throw Failure(errno == EAGAIN ? "the upstream sent nothing for 600 s" : "receive from the upstream", errno == EAGAIN ? 0 : errno)
                }
                if k == 0 { break }
                left -= k
                if meter == nil {
                    try out.piece(fromPipe: pipeA[0], count: k)
                    continue
                }
                // Metered: tee the pipe's pages, read the copy slice by slice, splice the original.
                var inPipe = k
                while inPipe > 0 {
                    let t = dxTee(pipeA[0], pipeB[1], inPipe, 0)
                    if t < 0 { if errno == EINTR { continue }; throw Failure("tee") }
                    var got = 0
                    while got < t {
                        let r = read(pipeB[0], scratch!.baseAddress!, min(slice, t - got))
                        if r < 0 { if errno == EINTR { continue }; throw Failure("read") }
                        if r == 0 { throw Failure("the meter's pipe ended early", 0) }
                        meter?.feed(UnsafeRawBufferPointer(rebasing: scratch![0..<r]))
                        got += r
                    }
                    try out.piece(fromPipe: pipeA[0], count: t)
                    inPipe -= t
                }
            }
            return n == Int.max ? 0 : n - left
        }

        switch x.framing {
        case .none:
            break
        case .length(let n):
            if try forward(n) != n { throw Failure("the upstream closed before the body's end", 0) }
        case .close:
            _ = try forward(Int.max)
        case .chunked:
            while let size = try x.chunkSize() {
                if try forward(size) != size { throw Failure("the upstream closed inside a chunked body", 0) }
                x.chunkEnd = true
            }
        }
        try out.end()
    }

    /// Writes pieces to the box's (non-blocking) socket, as chunks when `chunked`.
    struct BoxWriter {
        let fd: Int32
        let chunked: Bool
        var first = true

        mutating func frame(_ count: Int) throws {
            guard chunked else { return }
            let header = Array(((first ? "" : "\r\n") + String(count, radix: 16) + "\r\n").utf8)
            first = false
            try header.withUnsafeBytes { try BrokerRelay.sendAll(fd, $0, flags: Int32(MSG_MORE), waitWritable: true) }
        }

        mutating func piece(_ bytes: UnsafeRawBufferPointer) throws {
            guard bytes.count > 0 else { return }
            try frame(bytes.count)
            try BrokerRelay.sendAll(fd, bytes, waitWritable: true)
        }

        mutating func piece(fromPipe pipe: Int32, count: Int) throws {
            try frame(count)
            var left = count
            while left > 0 {
                let k = dxSplice(pipe, nil, fd, nil, left, 0)
                if k < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN { try BrokerRelay.waitFor(fd, POLLOUT); continue }
                    throw Failure("send to the box")
                }
                left -= k
            }
        }

        /// The last data chunk's CRLF (the terminating chunk is Hummingbird's).
        mutating func end() throws {
            guard chunked, !first else { return }
            try Array("\r\n".utf8).withUnsafeBytes { try BrokerRelay.sendAll(fd, $0, waitWritable: true) }
        }
    }

    // MARK: threads

    /// Runs blocking work (a whole exchange or stream) on the service's blocking executor,
    /// never on the cooperative pool: its threads are reused (a thread made per request cost
    /// the 1 KiB path ~0.5 ms p50 on a loaded machine) and one more starts whenever none is
    /// idle (a stream holds its thread for its whole length).
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await BlockingExecutor.shared.run(body)
    }

    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await BlockingExecutor.shared.run(body)
    }

    /// Everything written to `channel` so far is in the kernel's socket buffer once this returns:
    /// an empty write from the pipeline's front completes after every write queued before it.
    static func flushBarrier(_ channel: any Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            do {
                let ops = channel.pipeline.syncOperations
                let name = "devbox.broker.flush-barrier"
                let context: ChannelHandlerContext
                if let c = try? ops.context(name: name) {
                    context = c
                } else {
                    try ops.addHandler(FlushBarrier(), name: name, position: .first)
                    context = try ops.context(name: name)
                }
                let promise = channel.eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(NIOAny(IOData.byteBuffer(ByteBuffer())), promise: promise)
                return promise.futureResult
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// `flushBarrier`, then `body` on a blocking thread, handed over by the event loop when the
    /// barrier completes: one wake-up less between the answer's head and its first spliced byte.
    static func afterFlush<T: Sendable>(_ channel: any Channel, _ body: @escaping @Sendable () -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            flushBarrier(channel).whenComplete { result in
                switch result {
                case .success: BlockingExecutor.shared.execute { continuation.resume(returning: body()) }
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        }
    }

    /// A pass-through handler at the pipeline's front: its context writes raw bytes to the socket.
    final class FlushBarrier: ChannelOutboundHandler, RemovableChannelHandler, Sendable {
        typealias OutboundIn = IOData
        typealias OutboundOut = IOData
    }
}

extension BrokerRelay.Failure {
    /// An error before any answer byte on a kept-alive connection: the upstream had closed it.
    static func stale(_ what: String) -> BrokerRelay.Failure {
        var f = BrokerRelay.Failure(what, 0)
        f.staleCandidate = true
        return f
    }
}

// splice(2) and tee(2) are GNU extensions that Swift's Glibc module does not export.
@_silgen_name("splice")
private func dxSplice(_ fdIn: Int32, _ offIn: UnsafeMutablePointer<Int64>?, _ fdOut: Int32,
                      _ offOut: UnsafeMutablePointer<Int64>?, _ len: Int, _ flags: UInt32) -> Int
@_silgen_name("pipe2")
private func dxPipe2(_ fds: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32
@_silgen_name("tee")
private func dxTee(_ fdIn: Int32, _ fdOut: Int32, _ len: Int, _ flags: UInt32) -> Int

private let F_SETPIPE_SZ: Int32 = 1031
private let F_GETPIPE_SZ: Int32 = 1032
