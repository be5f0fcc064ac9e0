import CDevbox
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The boxes' resolver. Every box's /etc/resolv.conf names it and nftables redirects every
// port-53 packet of a box to it, so it sees all of a box's DNS; the box is hostile.
//
// Per query, from the source address (a box's address, or nil: REFUSED) and its policy:
//   denied  → NXDOMAIN built from the query; nothing goes upstream;
//   allowed → the raw query goes to an upstream under a fresh random id, from a fresh
//             socket (a random source port: an off-path spoofer must guess 32 bits), 2 s per
//             upstream, then the next; SERVFAIL when none answered. With `admit`, the
//             answer's A/AAAA records for the name (following CNAMEs) are handed to `admit`
//             *before* the answer is sent, so the box cannot connect before nftables lets it,
//             and the answer's TTLs are capped at the admission's maximum so the box does
//             not cache an address longer than it is admitted.
//
// Two threads of their own (never Swift's cooperative pool): UDP, and TCP (RFC 7766
// length-prefixed messages, pipelining, 10 s idle timeout, a bounded number of
// connections). Each polls its listener, its upstream sockets and a wake pipe; nothing
// blocks. Query names are logged at debug level only; answers never.

/// Why an upstream list (`DEVBOX_DNS_UPSTREAM`) was refused.
public struct DNSUpstreamError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

public final class BoxDNSResolver: Sendable {
    public typealias Upstream = (address: String, port: UInt16)

    /// Timeouts and bounds; tests shorten some.
    struct Limits: Sendable {
        /// How long one upstream has to answer before the next is tried.
        var upstreamTimeoutNanos: UInt64 = 2_000_000_000
        /// A TCP connection without a complete query or a written answer for this long is closed.
        var tcpIdleNanos: UInt64 = 10_000_000_000
        var maxTCPConnections = 64
        /// So that one box cannot take every connection.
        var maxTCPConnectionsPerBox = 16
        /// Queries of one TCP connection being resolved at once; more wait in its buffer.
        var maxTCPInFlightPerConnection = 16
        /// UDP queries being resolved at once (an upstream socket each). Beyond, queries wait
        /// in the listener's buffer (and are dropped by the kernel when it fills).
        var maxUDPInFlight = 1024
        /// Beyond this, a box's further UDP queries are dropped (it retries); others go on.
        var maxUDPInFlightPerBox = 256
    }

    /// Admitted addresses live at least this long (a TTL of 0 would admit nothing usable)...
    public static let minAdmitTTL: UInt32 = 5
    /// ... and at most this long; the answer's TTLs are capped to it as well.
    public static let maxAdmitTTL: UInt32 = 3600

    let config: ResolverConfig
    private let running = Mutex<Running?>(nil)

    private struct Running: Sendable {
        let udp: Int32
        let tcp: Int32
        /// Write ends of the loops' wake pipes; the read ends are the loops'.
        let wakeUDP: (read: Int32, write: Int32)
        let wakeTCP: (read: Int32, write: Int32)
        let udpLoop: LoopThread
        let tcpLoop: LoopThread
    }

    /// `policy` maps a query's source address to its box's policy (nil: not a box → REFUSED).
    /// `admit` receives the addresses an allowed name of an allow-list resolved to, with
    /// their TTLs clamped to `minAdmitTTL...maxAdmitTTL`; it runs on the resolver's thread
    /// before the answer is sent, so it should be quick. Invalid upstreams are skipped (logged).
    public convenience init(upstreams: [(address: String, port: UInt16)], logger: Logger,
                            policy: @escaping @Sendable (IPv4Address) -> EgressPolicy?,
                            admit: @escaping @Sendable (_ box: IPv4Address, _ addresses: [(IPAddressAny, ttl: UInt32)]) -> Void) {
        self.init(upstreams: upstreams, logger: logger, limits: Limits(), policy: policy, admit: admit)
    }

    init(upstreams: [(address: String, port: UInt16)], logger: Logger, limits: Limits,
         policy: @escaping @Sendable (IPv4Address) -> EgressPolicy?,
         admit: @escaping @Sendable (_ box: IPv4Address, _ addresses: [(IPAddressAny, ttl: UInt32)]) -> Void) {
        var list: [UpstreamAddress] = []
        for u in upstreams {
            if let a = IPAddressAny(u.address), u.port != 0 {
                list.append(UpstreamAddress(address: a, port: u.port))
            } else {
                logger.error("ignoring an invalid DNS upstream", metadata: ["upstream": "\(u.address):\(u.port)"])
            }
        }
        config = ResolverConfig(upstreams: list, logger: logger, limits: limits, policy: policy, admit: admit)
    }

    deinit { stop() }

    /// Binds UDP and TCP on `host` (IPv4) and the same port (0: one that is free for both)
    /// and starts serving; returns the port.
    public func start(host: String = "0.0.0.0", port: UInt16 = 0) throws -> UInt16 {
        guard let address = IPv4Address(host) else { throw BoxRuntimeError.invalidArgument("resolver address \(host) is not IPv4") }
        if config.upstreams.isEmpty { config.logger.warning("the box DNS resolver has no upstream: allowed names get SERVFAIL") }
        let (udp, tcp, bound) = try BoxDNSResolver.bindPair(address, port)
        var pipes: [(Int32, Int32)] = []
        for _ in 0..<2 {
            var fds: [Int32] = [-1, -1]
            guard dbx_pipe(&fds, 1, 1) == 0 else {
                let e = sysError("pipe")
                for p in pipes { closeFD(p.0); closeFD(p.1) }
                closeFD(udp); closeFD(tcp)
                throw e
            }
            pipes.append((fds[0], fds[1]))
        }
        let config = self.config
        let (wakeUDP, wakeTCP) = (pipes[0], pipes[1])
        // The loops start under the lock, so a concurrent `stop` finds them and joins them.
        let started = running.withLock { r -> Bool in
            guard r == nil else { return false }
            let udpLoop = LoopThread.start(name: "dns-udp") {
                UDPLoop(config: config, listener: udp, wake: wakeUDP.0).run()
            }
            let tcpLoop = LoopThread.start(name: "dns-tcp") {
                TCPLoop(config: config, listener: tcp, wake: wakeTCP.0).run()
            }
            r = Running(udp: udp, tcp: tcp, wakeUDP: wakeUDP, wakeTCP: wakeTCP, udpLoop: udpLoop, tcpLoop: tcpLoop)
            return true
        }
        guard started else {
            for fd in [udp, tcp, pipes[0].0, pipes[0].1, pipes[1].0, pipes[1].1] { closeFD(fd) }
            throw BoxRuntimeError.invalidArgument("the box DNS resolver is already running")
        }
        config.logger.info("box DNS resolver listening", metadata: ["address": "\(address)", "port": "\(bound)",
                                                                  "upstreams": "\(config.upstreams.count)"])
        return bound
    }

    /// Stops both loops, waits for their threads to end and closes every socket; the port is
    /// free when it returns. Idempotent.
    public func stop() {
        guard let run = running.withLock({ r -> Running? in defer { r = nil }; return r }) else { return }
        var byte: UInt8 = 1
        _ = write(run.wakeUDP.write, &byte, 1)
        _ = write(run.wakeTCP.write, &byte, 1)
        run.udpLoop.join()
        run.tcpLoop.join()
        for fd in [run.udp, run.tcp, run.wakeUDP.read, run.wakeUDP.write, run.wakeTCP.read, run.wakeTCP.write] { closeFD(fd) }
        config.logger.info("box DNS resolver stopped")
    }

    // MARK: Upstream configuration

    /// `DEVBOX_DNS_UPSTREAM`: comma-separated `ip[:port]` (`1.1.1.1`, `10.0.0.2:5353`, `::1`,
    /// `[2001:db8::1]:53`). Port 53 unless given.
    public static func parseUpstreams(_ value: String) throws(DNSUpstreamError) -> [(address: String, port: UInt16)] {
        var out: [(address: String, port: UInt16)] = []
        for raw in value.split(separator: ",", omittingEmptySubsequences: false) {
            let item = raw.trimmingCharacters(in: .whitespaces)
            guard !item.isEmpty else { throw DNSUpstreamError(message: "DEVBOX_DNS_UPSTREAM has an empty entry") }
            var host = Substring(item)
            var portText: Substring?
            if item.hasPrefix("[") {
                guard let close = item.firstIndex(of: "]") else { throw DNSUpstreamError(message: "\"\(item)\": missing ']'") }
                host = item[item.index(after: item.startIndex)..<close]
                let rest = item[item.index(after: close)...]
                if !rest.isEmpty {
                    guard rest.hasPrefix(":") else { throw DNSUpstreamError(message: "\"\(item)\": expected ':port' after ']'") }
                    portText = rest.dropFirst()
                }
            } else if item.filter({ $0 == ":" }).count == 1, let colon = item.firstIndex(of: ":") {
                host = item[..<colon]
                portText = item[item.index(after: colon)...]
            }
            guard let address = IPAddressAny(host) else {
                throw DNSUpstreamError(message: "\"\(item)\" is not an IP address (write IPv6 with a port as [addr]:port)")
            }
            var port: UInt16 = 53
            if let portText {
                guard portText.allSatisfy({ ("0"..."9").contains($0) }), let p = UInt16(portText), p != 0 else {
                    throw DNSUpstreamError(message: "\"\(item)\": \"\(portText)\" is not a port")
                }
                port = p
            }
            out.append((address.description, port))
        }
        return out
    }

    /// The `nameserver` lines of a resolv.conf (port 53), in order; addresses with a zone
    /// (`fe80::1%eth0`) or that do not parse are skipped. Empty if the file cannot be read.
    public static func upstreams(resolvConf path: String = "/etc/resolv.conf") -> [(address: String, port: UInt16)] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return parseResolvConf(String(decoding: data, as: UTF8.self))
    }

    static func parseResolvConf(_ text: String) -> [(address: String, port: UInt16)] {
        var out: [(address: String, port: UInt16)] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver", let a = IPAddressAny(words[1]) else { continue }
            out.append((a.description, 53))
        }
        return out
    }

    /// `DEVBOX_DNS_UPSTREAM` when set and not empty, else the nameservers of `resolvConf`.
    public static func configuredUpstreams(environment: [String: String],
                                           resolvConf: String = "/etc/resolv.conf") throws(DNSUpstreamError) -> [(address: String, port: UInt16)] {
        if let v = environment["DEVBOX_DNS_UPSTREAM"], !v.trimmingCharacters(in: .whitespaces).isEmpty {
            return try parseUpstreams(v)
        }
        return upstreams(resolvConf: resolvConf)
    }

    // MARK: Sockets

    /// UDP and TCP bound to the same port; with port 0 the kernel picks UDP's and TCP tries the
    /// same one, retrying with another when TCP's is taken.
    private static func bindPair(_ address: IPv4Address, _ port: UInt16) throws -> (Int32, Int32, UInt16) {
        var lastError = BoxRuntimeError.system("bind", errno: EADDRINUSE)
        for _ in 0..<(port == 0 ? 32 : 1) {
            let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard udp >= 0 else { throw sysError("socket") }
            // Room for bursts from many boxes while the loop is busy (the kernel caps it at rmem_max).
            var size: Int32 = 4 << 20
            _ = setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            guard bindIPv4(udp, address, port) else { let e = sysError("bind udp \(address):\(port)"); closeFD(udp); throw e }
            let bound = localPort(udp)
            let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard tcp >= 0 else { let e = sysError("socket"); closeFD(udp); throw e }
            // Accepted connections in TIME_WAIT must not keep a restarted resolver off its port.
            var one: Int32 = 1
            _ = setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bindIPv4(tcp, address, bound), listen(tcp, 128) == 0 {
                return (udp, tcp, bound)
            }
            lastError = sysError("bind tcp \(address):\(bound)")
            closeFD(tcp)
            closeFD(udp)
        }
        throw lastError
    }

    private static func bindIPv4(_ fd: Int32, _ address: IPv4Address, _ port: UInt16) -> Bool {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = address.value.bigEndian
        return withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    private static func localPort(_ fd: Int32) -> UInt16 {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UInt16(bigEndian: sa.sin_port)
    }
}

// MARK: - Shared configuration

struct UpstreamAddress: Sendable {
    let address: IPAddressAny
    let port: UInt16

    /// A non-blocking socket connected to the upstream (TCP: connect in progress), or -1.
    /// UDP: a connected socket only receives from the upstream's address, and its fresh
    /// ephemeral port is part of what a spoofer would have to guess.
    func connectedSocket(stream: Bool) -> Int32 {
        let family = address.isV4 ? AF_INET : AF_INET6
        let type = (stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(family, type, 0)
        guard fd >= 0 else { return -1 }
        let rc: Int32
        switch address {
        case .v4(let a):
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr.s_addr = a.value.bigEndian
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let a):
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin6_addr) { dst in
                for (i, b) in a.bytes.enumerated() { dst[i] = b }
            }
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        if rc != 0 && !(stream && lastErrno() == EINPROGRESS) {
            closeFD(fd)
            return -1
        }
        return fd
    }
}

extension IPAddressAny {
    var isV4: Bool { if case .v4 = self { return true } else { return false } }
}

struct ResolverConfig: Sendable {
    let upstreams: [UpstreamAddress]
    let logger: Logger
    let limits: BoxDNSResolver.Limits
    let policy: @Sendable (IPv4Address) -> EgressPolicy?
    let admit: @Sendable (IPv4Address, [(IPAddressAny, ttl: UInt32)]) -> Void

    /// What to do with a message a box sent.
    enum Action {
        /// Not worth an answer (a response, a runt).
        case drop
        /// Answer at once with this message.
        case reply([UInt8])
        /// Forward under a fresh id; `admit`: hand the answer's addresses to `admit` first.
        case forward(DNSQuery, admit: Bool)
    }

    func decide(_ message: [UInt8], from box: IPv4Address, transport: String) -> Action {
        let query: DNSQuery
        switch DNSWire.parseQuery(message) {
        case .drop: return .drop
        case .reply(let r): return .reply(r)
        case .query(let q): query = q
        }
        guard let policy = policy(box) else {
            logger.debug("DNS query from an unknown source refused", metadata: ["source": "\(box)"])
            return .reply(DNSWire.reply(to: message, questionEnd: query.questionEnd, rcode: DNSWire.refused))
        }
        // Zone transfers are no stub resolver's business and would stream whole zones.
        if query.question.type == 252 || query.question.type == 251 {
            return .reply(DNSWire.reply(to: message, questionEnd: query.questionEnd, rcode: DNSWire.refused))
        }
        let decision = policy.dnsDecision(for: query.name)
        logger.debug("DNS query", metadata: ["box": "\(box)", "name": "\(query.name)", "type": "\(query.question.type)",
                                             "transport": "\(transport)", "decision": "\(decision)"])
        switch decision {
        case .deny: return .reply(DNSWire.reply(to: message, questionEnd: query.questionEnd, rcode: DNSWire.nxdomain))
        case .allow(let admit): return .forward(query, admit: admit)
        }
    }

    /// The answer for the box, from an upstream's validated `response` (its id already the
    /// box's): admissions handed over first. nil when the answer cannot be parsed for them.
    func finish(_ response: [UInt8], query: DNSQuery, box: IPv4Address, admit: Bool) -> [UInt8]? {
        guard admit else { return response }
        guard let (patched, addresses) = DNSWire.admissions(in: response, for: query.question,
                                                             minTTL: BoxDNSResolver.minAdmitTTL, maxTTL: BoxDNSResolver.maxAdmitTTL)
        else { return nil }
        if !addresses.isEmpty { self.admit(box, addresses) }
        return patched
    }
}

// MARK: - UDP

/// One UDP query being resolved: its upstream socket is the key.
private struct UDPPending {
    let client: sockaddr_in
    let box: IPv4Address
    let originalID: UInt16
    let query: DNSQuery
    /// The box's query, its id replaced by `sentID`.
    var message: [UInt8]
    let admit: Bool
    var upstream: Int
    var sentID: UInt16 = 0
    var deadline: UInt64 = 0
}

/// The UDP side: runs on its thread until its wake pipe is readable; owns every socket it
/// opens but the listener and the pipe.
private final class UDPLoop {
    let config: ResolverConfig
    let listener: Int32
    let wake: Int32
    var pending: [Int32: UDPPending] = [:]
    var perBox: [UInt32: Int] = [:]
    var buffer = [UInt8](repeating: 0, count: 65536)

    init(config: ResolverConfig, listener: Int32, wake: Int32) {
        self.config = config
        self.listener = listener
        self.wake = wake
    }

    func run() {
        var fds: [pollfd] = []
        var keys: [Int32] = []
        while true {
            fds.removeAll(keepingCapacity: true)
            keys.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0))
            let accepting = pending.count < config.limits.maxUDPInFlight
            fds.append(pollfd(fd: listener, events: accepting ? Int16(POLLIN) : 0, revents: 0))
            var nextDeadline = UInt64.max
            for (fd, p) in pending {
                keys.append(fd)
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                nextDeadline = min(nextDeadline, p.deadline)
            }
            let now = monotonicNanos()
            let timeout: Int32 = nextDeadline == .max ? -1 : Int32(min((nextDeadline &- min(nextDeadline, now)) / 1_000_000 + 1, 60_000))
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 {
                if lastErrno() == EINTR { continue }
                config.logger.error("DNS UDP poll failed", metadata: ["errno": "\(lastErrno())"])
                break
            }
            if fds[0].revents != 0 { break }
            for (i, fd) in keys.enumerated() where fds[i + 2].revents != 0 { readUpstream(fd) }
            if fds[1].revents != 0 { drainListener() }
            expire(now: monotonicNanos())
        }
        for fd in pending.keys { closeFD(fd) }
        pending.removeAll()
    }

    private func drainListener() {
        // Bounded per round, so upstream answers and timeouts are not starved by a flood.
        for _ in 0..<256 where pending.count < config.limits.maxUDPInFlight {
            var from = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = buffer.withUnsafeMutableBytes { buf in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(listener, buf.baseAddress, buf.count, Int32(MSG_TRUNC), $0, &len)
                    }
                }
            }
            if n < 0 {
                if lastErrno() == EINTR { continue }
                return  // EAGAIN, or an error report of an earlier send: nothing more to read now
            }
            guard n <= buffer.count, from.sin_family == sa_family_t(AF_INET) else { continue }
            handle(Array(buffer[0..<n]), from: from)
        }
    }

    private func handle(_ message: [UInt8], from: sockaddr_in) {
        let box = IPv4Address(UInt32(bigEndian: from.sin_addr.s_addr))
        switch config.decide(message, from: box, transport: "udp") {
        case .drop: return
        case .reply(let r): send(r, to: from)
        case .forward(let query, let admit):
            guard perBox[box.value, default: 0] < config.limits.maxUDPInFlightPerBox else {
                config.logger.debug("DNS query dropped: too many in flight for the box", metadata: ["box": "\(box)"])
                return
            }
            let p = UDPPending(client: from, box: box, originalID: DNSWire.id(message), query: query,
                               message: message, admit: admit, upstream: 0)
            perBox[box.value, default: 0] += 1
            attempt(p)
        }
    }

    /// Sends `p` to its upstream or the next one that takes it; SERVFAIL when none is left.
    private func attempt(_ p: UDPPending) {
        var p = p
        while p.upstream < config.upstreams.count {
            let fd = config.upstreams[p.upstream].connectedSocket(stream: false)
            if fd >= 0 {
                p.sentID = UInt16.random(in: 0...UInt16.max)
                DNSWire.setID(&p.message, p.sentID)
                let sent = p.message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                if sent == p.message.count {
                    p.deadline = monotonicNanos() + config.limits.upstreamTimeoutNanos
                    pending[fd] = p
                    return
                }
                closeFD(fd)
            }
            config.logger.debug("DNS upstream unusable", metadata: ["upstream": "\(p.upstream)", "errno": "\(lastErrno())"])
            p.upstream += 1
        }
        done(p, DNSWire.reply(to: p.message, questionEnd: p.query.questionEnd, rcode: DNSWire.servfail, id: p.originalID))
    }

    private func readUpstream(_ fd: Int32) {
        guard let p = pending[fd] else { return }
        // A few datagrams at most: anything not the answer (a late or forged one) is skipped.
        for _ in 0..<8 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                let e = lastErrno()
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { return }
                next(fd, p)  // ECONNREFUSED (ICMP port unreachable) and the like: the next upstream
                return
            }
            let response = Array(buffer[0..<n])
            guard DNSWire.isResponse(response, id: p.sentID, to: p.query.question) else { continue }
            if DNSWire.rcode(response).map({ [DNSWire.servfail, DNSWire.notimp, DNSWire.refused].contains($0) }) == true,
               p.upstream + 1 < config.upstreams.count {
                next(fd, p)
                return
            }
            pending[fd] = nil
            closeFD(fd)
            var answer = response
            DNSWire.setID(&answer, p.originalID)
            let out = config.finish(answer, query: p.query, box: p.box, admit: p.admit)
                ?? DNSWire.reply(to: p.message, questionEnd: p.query.questionEnd, rcode: DNSWire.servfail, id: p.originalID)
            done(p, out)
            return
        }
    }

    private func next(_ fd: Int32, _ p: UDPPending) {
        pending[fd] = nil
        closeFD(fd)
        var p = p
        p.upstream += 1
        attempt(p)
    }

    private func expire(now: UInt64) {
        for (fd, p) in pending where p.deadline <= now {
            config.logger.debug("DNS upstream timed out", metadata: ["upstream": "\(p.upstream)"])
            next(fd, p)
        }
    }

    private func done(_ p: UDPPending, _ answer: [UInt8]) {
        if let c = perBox[p.box.value] { perBox[p.box.value] = c > 1 ? c - 1 : nil }
        send(answer, to: p.client)
    }

    private func send(_ message: [UInt8], to client: sockaddr_in) {
        var to = client
        // Non-blocking: a full socket buffer drops the answer like the network would.
        _ = message.withUnsafeBytes { buf in
            withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(listener, buf.baseAddress, buf.count, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }
}

// MARK: - TCP

private final class TCPConnection {
    let id: Int
    let fd: Int32
    let box: IPv4Address
    var input: [UInt8] = []
    var output: [UInt8] = []
    var inFlight = 0
    var lastActivity: UInt64
    /// The box closed its side: answer what is in flight, then close.
    var peerClosed = false

    init(id: Int, fd: Int32, box: IPv4Address, now: UInt64) {
        self.id = id
        self.fd = fd
        self.box = box
        lastActivity = now
    }
}

private final class TCPUpstream {
    let connection: Int
    let box: IPv4Address
    let originalID: UInt16
    let query: DNSQuery
    /// The box's query (without length prefix); its id is replaced per attempt.
    var message: [UInt8]
    let admit: Bool
    var upstream: Int
    var fd: Int32 = -1
    var connected = false
    var sentID: UInt16 = 0
    var deadline: UInt64 = 0
    var output: [UInt8] = []
    var written = 0
    var input: [UInt8] = []

    init(connection: Int, box: IPv4Address, query: DNSQuery, message: [UInt8], admit: Bool) {
        self.connection = connection
        self.box = box
        originalID = DNSWire.id(message)
        self.query = query
        self.message = message
        self.admit = admit
        upstream = 0
    }
}

/// The TCP side: the listener, the boxes' connections and the upstream connections, on one
/// thread; owns every socket it accepts or opens.
private final class TCPLoop {
    let config: ResolverConfig
    let listener: Int32
    let wake: Int32
    var connections: [Int: TCPConnection] = [:]
    var upstreams: [Int32: TCPUpstream] = [:]
    var nextID = 0
    var buffer = [UInt8](repeating: 0, count: 65536)
    static let maxOutput = 1 << 20

    init(config: ResolverConfig, listener: Int32, wake: Int32) {
        self.config = config
        self.listener = listener
        self.wake = wake
    }

    private enum Target { case connection(Int), upstream(TCPUpstream) }

    func run() {
        var fds: [pollfd] = []
        var targets: [Target] = []
        while true {
            fds.removeAll(keepingCapacity: true)
            targets.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
            let now = monotonicNanos()
            var nextDeadline = UInt64.max
            for (id, c) in connections {
                var events: Int32 = 0
                if !c.peerClosed && c.inFlight < config.limits.maxTCPInFlightPerConnection && c.output.count < 65536 { events |= Int32(POLLIN) }
                if !c.output.isEmpty { events |= Int32(POLLOUT) }
                fds.append(pollfd(fd: c.fd, events: Int16(events), revents: 0))
                targets.append(.connection(id))
                if c.inFlight == 0 && c.output.isEmpty { nextDeadline = min(nextDeadline, c.lastActivity + config.limits.tcpIdleNanos) }
            }
            for (fd, u) in upstreams {
                let events = !u.connected || u.written < u.output.count ? POLLOUT : POLLIN
                fds.append(pollfd(fd: fd, events: Int16(events), revents: 0))
                targets.append(.upstream(u))
                nextDeadline = min(nextDeadline, u.deadline)
            }
            let timeout: Int32 = nextDeadline == .max ? -1 : Int32(min((nextDeadline &- min(nextDeadline, now)) / 1_000_000 + 1, 60_000))
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 {
                if lastErrno() == EINTR { continue }
                config.logger.error("DNS TCP poll failed", metadata: ["errno": "\(lastErrno())"])
                break
            }
            if fds[0].revents != 0 { break }
            for (i, t) in targets.enumerated() where fds[i + 2].revents != 0 {
                switch t {
                case .connection(let id): if let c = connections[id] { serve(c, revents: fds[i + 2].revents) }
                // By identity: an upstream finished in this round may have left its fd number to a new one.
                case .upstream(let u): if u.fd >= 0, upstreams[u.fd] === u { progress(u, revents: fds[i + 2].revents) }
                }
            }
            if fds[1].revents != 0 { acceptConnections() }
            expire(now: monotonicNanos())
            // Queries that waited in a connection's buffer for a free slot (never from within
            // parseMessages itself, which would see the messages it is consuming again).
            for c in connections.values where !c.input.isEmpty && c.inFlight < config.limits.maxTCPInFlightPerConnection {
                if connections[c.id] === c { parseMessages(c) }
            }
        }
        for c in connections.values { closeFD(c.fd) }
        for fd in upstreams.keys { closeFD(fd) }
        connections.removeAll()
        upstreams.removeAll()
    }

    private func acceptConnections() {
        for _ in 0..<64 {
            var from = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &len) }
            }
            if fd < 0 {
                if lastErrno() == EINTR || lastErrno() == ECONNABORTED { continue }
                return
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard dbx_set_nonblocking(fd, 1) == 0, from.sin_family == sa_family_t(AF_INET) else { closeFD(fd); continue }
            let box = IPv4Address(UInt32(bigEndian: from.sin_addr.s_addr))
            // Over the bounds: closed at once, so the box sees a reset rather than a hang.
            let ofBox = connections.values.reduce(0) { $0 + ($1.box == box ? 1 : 0) }
            guard connections.count < config.limits.maxTCPConnections, ofBox < config.limits.maxTCPConnectionsPerBox else {
                config.logger.debug("DNS TCP connection refused: too many", metadata: ["box": "\(box)"])
                closeFD(fd)
                continue
            }
            nextID += 1
            connections[nextID] = TCPConnection(id: nextID, fd: fd, box: box, now: monotonicNanos())
        }
    }

    private func serve(_ c: TCPConnection, revents: Int16) {
        if revents & Int16(POLLOUT) != 0 { flush(c) }
        guard connections[c.id] != nil else { return }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !c.peerClosed {
            let n = buffer.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, min($0.count, 16384)) }
            if n < 0 {
                let e = lastErrno()
                if e != EINTR && e != EAGAIN && e != EWOULDBLOCK { close(c) }
                return
            }
            if n == 0 {
                c.peerClosed = true
            } else {
                c.input += buffer[0..<n]
            }
            parseMessages(c)
        } else if revents & Int16(POLLHUP | POLLERR) != 0 && c.output.isEmpty && c.inFlight == 0 {
            close(c)
            return
        }
        if c.peerClosed && c.inFlight == 0 && c.output.isEmpty { close(c) }
    }

    private func parseMessages(_ c: TCPConnection) {
        var offset = 0
        while c.input.count - offset >= 2, c.inFlight < config.limits.maxTCPInFlightPerConnection {
            let length = Int(c.input[offset]) << 8 | Int(c.input[offset + 1])
            guard length >= 12 else { close(c); return }  // no DNS message is shorter than its header
            guard c.input.count - offset - 2 >= length else { break }
            let message = Array(c.input[(offset + 2)..<(offset + 2 + length)])
            offset += 2 + length
            c.lastActivity = monotonicNanos()
            switch config.decide(message, from: c.box, transport: "tcp") {
            case .drop: close(c); return  // a response sent to us: not a DNS client
            case .reply(let r): respond(c, r)
            case .forward(let query, let admit):
                c.inFlight += 1
                attempt(TCPUpstream(connection: c.id, box: c.box, query: query, message: message, admit: admit))
            }
            guard connections[c.id] != nil else { return }
        }
        if offset > 0 { c.input.removeFirst(offset) }
    }

    private func respond(_ c: TCPConnection, _ message: [UInt8]) {
        c.output += [UInt8(message.count >> 8), UInt8(truncatingIfNeeded: message.count)]
        c.output += message
        flush(c)
    }

    private func flush(_ c: TCPConnection) {
        while !c.output.isEmpty {
            let n = c.output.withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                let e = lastErrno()
                if e == EINTR { continue }
                if e != EAGAIN && e != EWOULDBLOCK { close(c) }
                break
            }
            c.output.removeFirst(n)
            c.lastActivity = monotonicNanos()
        }
        if c.output.count > TCPLoop.maxOutput { close(c) }
    }

    private func close(_ c: TCPConnection) {
        guard connections.removeValue(forKey: c.id) != nil else { return }
        closeFD(c.fd)
        // Its queries upstream are of no use any more.
        for (fd, u) in upstreams where u.connection == c.id {
            upstreams[fd] = nil
            closeFD(fd)
        }
    }

    /// Connects `u` to its upstream or the next one that takes it; SERVFAIL when none is left.
    private func attempt(_ u: TCPUpstream) {
        while u.upstream < config.upstreams.count {
            let fd = config.upstreams[u.upstream].connectedSocket(stream: true)
            if fd >= 0 {
                u.fd = fd
                u.connected = false
                u.sentID = UInt16.random(in: 0...UInt16.max)
                DNSWire.setID(&u.message, u.sentID)
                u.output = [UInt8(u.message.count >> 8), UInt8(truncatingIfNeeded: u.message.count)] + u.message
                u.written = 0
                u.input = []
                u.deadline = monotonicNanos() + config.limits.upstreamTimeoutNanos
                upstreams[fd] = u
                return
            }
            config.logger.debug("DNS TCP upstream unusable", metadata: ["upstream": "\(u.upstream)", "errno": "\(lastErrno())"])
            u.upstream += 1
        }
        deliver(u, DNSWire.reply(to: u.message, questionEnd: u.query.questionEnd, rcode: DNSWire.servfail, id: u.originalID))
    }

    private func next(_ u: TCPUpstream) {
        upstreams[u.fd] = nil
        closeFD(u.fd)
        u.fd = -1
        u.upstream += 1
        attempt(u)
    }

    private func progress(_ u: TCPUpstream, revents: Int16) {
        if !u.connected {
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(u.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0, err == 0 else { next(u); return }
            guard revents & Int16(POLLOUT) != 0 else {
                if revents & Int16(POLLERR | POLLHUP) != 0 { next(u) }
                return
            }
            u.connected = true
        }
        while u.written < u.output.count {
            let n = u.output[u.written...].withUnsafeBytes { Glibc.send(u.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                let e = lastErrno()
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { return }
                next(u)
                return
            }
            u.written += n
        }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return }
        let n = buffer.withUnsafeMutableBytes { read(u.fd, $0.baseAddress, $0.count) }
        if n < 0 {
            let e = lastErrno()
            if e != EINTR && e != EAGAIN && e != EWOULDBLOCK { next(u) }
            return
        }
        if n == 0 { next(u); return }  // closed before a whole answer
        u.input += buffer[0..<n]
        guard u.input.count >= 2 else { return }
        let length = Int(u.input[0]) << 8 | Int(u.input[1])
        guard u.input.count >= 2 + length else { return }
        let response = Array(u.input[2..<(2 + length)])
        guard DNSWire.isResponse(response, id: u.sentID, to: u.query.question) else { next(u); return }
        if DNSWire.rcode(response).map({ [DNSWire.servfail, DNSWire.notimp, DNSWire.refused].contains($0) }) == true,
           u.upstream + 1 < config.upstreams.count {
            next(u)
            return
        }
        upstreams[u.fd] = nil
        closeFD(u.fd)
        var answer = response
        DNSWire.setID(&answer, u.originalID)
        let out = config.finish(answer, query: u.query, box: u.box, admit: u.admit)
            ?? DNSWire.reply(to: u.message, questionEnd: u.query.questionEnd, rcode: DNSWire.servfail, id: u.originalID)
        deliver(u, out)
    }

    private func deliver(_ u: TCPUpstream, _ answer: [UInt8]) {
        guard let c = connections[u.connection] else { return }
        c.inFlight -= 1
        c.lastActivity = monotonicNanos()
        respond(c, answer)
        if let c = connections[u.connection], c.peerClosed && c.inFlight == 0 && c.output.isEmpty { close(c) }
    }

    private func expire(now: UInt64) {
        for u in upstreams.values where u.deadline <= now && u.fd >= 0 && upstreams[u.fd] === u {
            config.logger.debug("DNS TCP upstream timed out", metadata: ["upstream": "\(u.upstream)"])
            next(u)
        }
        for c in connections.values where c.inFlight == 0 && c.output.isEmpty && c.lastActivity + config.limits.tcpIdleNanos <= now {
            close(c)
        }
    }
}

// MARK: - Wire format

/// A box's query, as parsed: names lower-cased.
struct DNSQuery: Sendable {
    struct Question: Sendable, Equatable {
        var labels: [[UInt8]]
        var type: UInt16
        var klass: UInt16
    }
    let question: Question
    /// Where the question ends (the header and question are echoed in generated replies).
    let questionEnd: Int
    /// Presentation form for the policy: bytes other than letters, digits, '-' and '_'
    /// escaped as \DDD, so a label holding a '.' can never pass for two labels.
    let name: String
}

enum DNSWire {
    static let formerr: UInt8 = 1, servfail: UInt8 = 2, nxdomain: UInt8 = 3, notimp: UInt8 = 4, refused: UInt8 = 5

    enum ParsedQuery {
        case drop
        case reply([UInt8])
        case query(DNSQuery)
    }

    static func u16(_ m: [UInt8], _ at: Int) -> UInt16 { UInt16(m[at]) << 8 | UInt16(m[at + 1]) }
    static func u32(_ m: [UInt8], _ at: Int) -> UInt32 {
        UInt32(m[at]) << 24 | UInt32(m[at + 1]) << 16 | UInt32(m[at + 2]) << 8 | UInt32(m[at + 3])
    }
    static func id(_ m: [UInt8]) -> UInt16 { m.count >= 2 ? u16(m, 0) : 0 }
    static func setID(_ m: inout [UInt8], _ id: UInt16) {
        guard m.count >= 2 else { return }
        m[0] = UInt8(id >> 8)
        m[1] = UInt8(truncatingIfNeeded: id)
    }
    static func rcode(_ m: [UInt8]) -> UInt8? { m.count >= 12 ? m[3] & 0x0F : nil }

    /// A query of a box: one question, opcode QUERY; responses and runts are dropped, other
    /// malformed queries get FORMERR, other opcodes NOTIMP.
    static func parseQuery(_ m: [UInt8]) -> ParsedQuery {
        guard m.count >= 12, m[2] & 0x80 == 0 else { return .drop }
        let opcode = (m[2] >> 3) & 0x0F
        guard opcode == 0 else { return .reply(reply(to: m, questionEnd: nil, rcode: notimp)) }
        guard u16(m, 4) == 1, u16(m, 6) == 0, u16(m, 8) == 0 else { return .reply(reply(to: m, questionEnd: nil, rcode: formerr)) }
        // No compression in a query's question: a pointer could only point into the header,
        // whose id is rewritten before forwarding, so upstream would resolve another name
        // than the one the policy allowed.
        guard let (labels, end) = readName(m, at: 12, allowPointers: false), end + 4 <= m.count else {
            return .reply(reply(to: m, questionEnd: nil, rcode: formerr))
        }
        let question = DNSQuery.Question(labels: labels, type: u16(m, end), klass: u16(m, end + 2))
        return .query(DNSQuery(question: question, questionEnd: end + 4, name: presentation(labels)))
    }

    /// A reply to `query` (its id unless `id` is given, opcode and RD; RA set) with `rcode`
    /// and the query's question when `questionEnd` is given, nothing else.
    static func reply(to query: [UInt8], questionEnd: Int?, rcode: UInt8, id: UInt16? = nil) -> [UInt8] {
        guard query.count >= 12 else { return [] }
        var r = [UInt8](repeating: 0, count: 12)
        r[0] = query[0]
        r[1] = query[1]
        if let id { setID(&r, id) }
        r[2] = 0x80 | (query[2] & 0x79)  // QR, opcode and RD of the query; AA and TC clear
        r[3] = 0x80 | (rcode & 0x0F)     // RA
        if let end = questionEnd, end <= query.count {
            r[5] = 1
            r += query[12..<end]
        }
        return r
    }

    /// Is `m` the answer to the question sent under `id`? (QR set, the same id, the same
    /// question, or no question with an error code.)
    static func isResponse(_ m: [UInt8], id: UInt16, to question: DNSQuery.Question) -> Bool {
        guard m.count >= 12, m[2] & 0x80 != 0, u16(m, 0) == id else { return false }
        switch u16(m, 4) {
        case 0:
            return m[3] & 0x0F != 0
        case 1:
            guard let (labels, end) = readName(m, at: 12, allowPointers: true), end + 4 <= m.count else { return false }
            return labels == question.labels && u16(m, end) == question.type && u16(m, end + 2) == question.klass
        default:
            return false
        }
    }

    /// The A/AAAA records of the answer section owned by the question's name or a name it
    /// is a CNAME (chain) of, with TTLs clamped to `minTTL...maxTTL` (addresses inside
    /// `IPNetwork.alwaysBlocked` left out); and the response with every answer TTL above
    /// `maxTTL` lowered to it. nil when the response does not parse.
    static func admissions(in m: [UInt8], for question: DNSQuery.Question, minTTL: UInt32, maxTTL: UInt32)
        -> ([UInt8], [(IPAddressAny, ttl: UInt32)])? {
        guard m.count >= 12 else { return nil }
        var patched = m
        var pos = 12
        for _ in 0..<u16(m, 4) {
            guard let (_, end) = readName(m, at: pos, allowPointers: true), end + 4 <= m.count else { return nil }
            pos = end + 4
        }
        struct Record { let owner: [[UInt8]]; let type: UInt16; let ttl: UInt32; let rdata: Range<Int> }
        var records: [Record] = []
        for _ in 0..<u16(m, 6) {
            guard let (owner, end) = readName(m, at: pos, allowPointers: true), end + 10 <= m.count else { return nil }
            let type = u16(m, end), klass = u16(m, end + 2)
            // RFC 2181 §8: a TTL with the top bit set means 0.
            var ttl = u32(m, end + 4)
            if ttl > UInt32(Int32.max) { ttl = 0 }
            let length = Int(u16(m, end + 8))
            let rdata = (end + 10)..<(end + 10 + length)
            guard rdata.upperBound <= m.count else { return nil }
            if ttl > maxTTL || u32(m, end + 4) != ttl {
                let capped = min(ttl, maxTTL)
                patched[end + 4] = UInt8(capped >> 24)
                patched[end + 5] = UInt8(truncatingIfNeeded: capped >> 16)
                patched[end + 6] = UInt8(truncatingIfNeeded: capped >> 8)
                patched[end + 7] = UInt8(truncatingIfNeeded: capped)
            }
            if klass == 1 { records.append(Record(owner: owner, type: type, ttl: ttl, rdata: rdata)) }
            pos = rdata.upperBound
        }
        // The names the answer is about: the question's and its CNAME targets, in any order.
        var names: Set<[[UInt8]]> = [question.labels]
        for _ in 0..<16 {
            var grew = false
            for r in records where r.type == 5 && names.contains(r.owner) {
                guard let (target, _) = readName(m, at: r.rdata.lowerBound, allowPointers: true) else { return nil }
                if names.insert(target).inserted { grew = true }
            }
            if !grew { break }
        }
        var out: [(IPAddressAny, ttl: UInt32)] = []
        for r in records where names.contains(r.owner) {
            let address: IPAddressAny
            if r.type == 1 && r.rdata.count == 4 {
                address = .v4(IPv4Address(u32(m, r.rdata.lowerBound)))
            } else if r.type == 28 && r.rdata.count == 16, let a = IPv6Address(bytes: m[r.rdata]) {
                address = .v6(a)
            } else {
                continue
            }
            if address.isAlwaysBlocked { continue }
            let ttl = min(max(r.ttl, minTTL), maxTTL)
            if let i = out.firstIndex(where: { $0.0 == address }) {
                out[i].ttl = max(out[i].ttl, ttl)
            } else {
                out.append((address, ttl))
            }
        }
        return (patched, out)
    }

    /// The labels of the name at `at` (lower-cased ASCII) and where it ends in place.
    /// Compression pointers (when allowed) must point backwards; at most 255 bytes in all.
    static func readName(_ m: [UInt8], at start: Int, allowPointers: Bool) -> ([[UInt8]], Int)? {
        var labels: [[UInt8]] = []
        var pos = start
        var end: Int?
        var total = 1
        var jumps = 0
        while true {
            guard pos < m.count else { return nil }
            let length = Int(m[pos])
            switch length & 0xC0 {
            case 0:
                if length == 0 { return (labels, end ?? pos + 1) }
                total += length + 1
                guard total <= 255, pos + 1 + length <= m.count else { return nil }
                labels.append(m[(pos + 1)...(pos + length)].map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 })
                pos += 1 + length
            case 0xC0:
                guard allowPointers, pos + 1 < m.count else { return nil }
                let target = (length & 0x3F) << 8 | Int(m[pos + 1])
                jumps += 1
                guard target < pos, target >= 12, jumps <= 64 else { return nil }
                if end == nil { end = pos + 2 }
                pos = target
            default:
                return nil  // extended label types (RFC 6891 deprecated them)
            }
        }
    }

    static func presentation(_ labels: [[UInt8]]) -> String {
        var out: [UInt8] = []
        for (i, label) in labels.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ".")) }
            for b in label {
                switch b {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                    out.append(b)
                default:
                    out.append(UInt8(ascii: "\\"))
                    out += Array(String(format: "%03d", Int(b)).utf8)
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
