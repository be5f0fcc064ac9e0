import Foundation
import Logging
import Synchronization
import Testing
@testable import Sandbox
import CDevbox
#if canImport(Glibc)
import Glibc
#endif

// The egress policy model and the boxes' resolver. Network traffic stays on 127.0.0.0/8:
// a fake upstream on 127.0.0.1, the resolver on 127.0.0.1, clients bound to 127.0.0.1 (a
// box) or 127.0.0.2 (not a box).

/// Every test of this file, under one name for `--filter DNSResolverTests`.
@Suite struct DNSResolverTests {}

// MARK: - Addresses and networks

extension DNSResolverTests {
    @Suite struct Addresses {
        @Test(arguments: [
            ("1.2.3.4", "1.2.3.4"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
            ("::1", "::1"), ("2001:DB8::1", "2001:db8::1"), ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"), ("fe80::", "fe80::"),
        ])
        func parsesAndFormats(_ text: String, _ canonical: String) throws {
            let a = try #require(IPAddressAny(text))
            #expect(a.description == canonical)
        }

        @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1..2.3", " 1.2.3.4", "1.2.3.4 ",
                          "0x1.2.3.4", "1.2.3.-4", ":::", "1::2::3", "fe80::1%eth0", "[::1]", "::1\u{0}", "12345::", "g::1"])
        func refusesMalformedAddresses(_ text: String) {
            #expect(IPAddressAny(text) == nil)
        }

        @Test func networks() throws {
            let n = try IPNetwork(parsing: "10.0.0.0/8")
            #expect(n.description == "10.0.0.0/8")
            #expect(n.contains(IPv4Address(10, 255, 1, 2)))
            #expect(!n.contains(IPv4Address(11, 0, 0, 0)))
            #expect(!n.contains(.v6(IPv6Address(mapping: IPv4Address(10, 0, 0, 1)))), "families never mix")
            #expect(try IPNetwork(parsing: "1.2.3.4").description == "1.2.3.4/32")
            #expect(try IPNetwork(parsing: "2001:db8::1").description == "2001:db8::1/128")
            #expect(try IPNetwork(parsing: "2001:DB8::/32").description == "2001:db8::/32")
            #expect(try IPNetwork(parsing: "0.0.0.0/0").contains(IPv4Address(8, 8, 8, 8)))
            let v6 = try IPNetwork(parsing: "2001:db8::/32")
            #expect(v6.contains(try #require(IPv6Address("2001:db8:ffff::1"))))
            #expect(!v6.contains(try #require(IPv6Address("2001:db9::1"))))
            #expect(try IPNetwork(parsing: "10.0.0.0/8").overlaps(try IPNetwork(parsing: "10.1.0.0/16")))
            #expect(try IPNetwork(parsing: "10.1.0.0/16").overlaps(try IPNetwork(parsing: "10.0.0.0/8")))
            #expect(try !IPNetwork(parsing: "10.0.0.0/8").overlaps(try IPNetwork(parsing: "11.0.0.0/8")))
            #expect(try !IPNetwork(parsing: "10.0.0.0/8").overlaps(try IPNetwork(parsing: "::/0")))
        }

        @Test(arguments: [
            ("10.0.0.1/8", "host bits set (the network is 10.0.0.0/8)"), ("1.2.3.4/33", "out of range"),
            ("1.2.3.0/", "not a prefix length"), ("1.2.3.0/08", "not a prefix length"), ("1.2.3.0/+8", "not a prefix length"),
            ("1.2.3.0/24/1", "not a CIDR"), ("2001:db8::1/32", "host bits set (the network is 2001:db8::/32)"),
            ("::/129", "out of range"), ("example.org/24", "not an IPv4 or IPv6 address"),
        ])
        func refusesMalformedNetworks(_ text: String, _ message: String) {
            #expect {
                try IPNetwork(parsing: text)
            } throws: { error in
                "\(error)".contains(message)
            }
        }

        @Test func alwaysBlockedRanges() throws {
            let blocked = ["127.0.0.1", "0.1.2.3", "10.9.9.9", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
                           "100.127.255.255", "169.254.169.254", "224.0.0.1", "239.1.1.1", "240.0.0.1", "255.255.255.255",
                           "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "ff02::1",
                           "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::ffff:192.168.0.1"]
            for text in blocked { #expect(try #require(IPAddressAny(text)).isAlwaysBlocked, "\(text)") }
            let open = ["1.1.1.1", "8.8.8.8", "172.32.0.1", "172.15.255.255", "100.128.0.1", "100.63.255.255", "169.253.1.1",
                        "223.255.255.255", "2001:db8::1", "2606:4700::1111", "fec0::1", "::ffff:8.8.8.8", "::2"]
            for text in open { #expect(try !#require(IPAddressAny(text)).isAlwaysBlocked, "\(text)") }
            // Disjoint, as nftables interval sets need.
            for (i, a) in IPNetwork.alwaysBlocked.enumerated() {
                for b in IPNetwork.alwaysBlocked[(i + 1)...] { #expect(!a.overlaps(b), "\(a) overlaps \(b)") }
            }
            // Entries inside (or inside a union of) blocked ranges; not one that merely overlaps.
            #expect(try IPNetwork(parsing: "10.1.2.0/24").isInsideAlwaysBlocked)
            #expect(try IPNetwork(parsing: "224.0.0.0/3").isInsideAlwaysBlocked)
            #expect(try !IPNetwork(parsing: "0.0.0.0/0").isInsideAlwaysBlocked)
            #expect(try !IPNetwork(parsing: "8.0.0.0/6").isInsideAlwaysBlocked)
        }
}

}

// MARK: - Egress policy

extension DNSResolverTests {
    @Suite struct Policy {
        @Test func normalises() throws {
            let p = try EgressPolicy(egress: .denyAll, allow: ["Example.ORG.", "*.GitHub.com", "1.2.3.4", "2001:DB8::/32", " 8.8.8.0/24 "],
                                     deny: ["bad.example.org"])
            #expect(p.allow == ["example.org", "*.github.com", "1.2.3.4/32", "2001:db8::/32", "8.8.8.0/24"])
            #expect(p.allowDomains == ["example.org", "*.github.com"])
            #expect(p.allowNetworks.map(\.description) == ["1.2.3.4/32", "2001:db8::/32", "8.8.8.0/24"])
            #expect(p.denyDomains == ["bad.example.org"])
            #expect(p.denyNetworks.isEmpty)
            #expect(EgressPolicy.allowAll == (try EgressPolicy()))
        }

        @Test func codable() throws {
            struct Create: Codable { let network: EgressPolicy }
            let json = #"{"network": {"egress": "deny_all", "allow": ["*.Example.org", "9.9.9.9"]}}"#
            let decoded = try JSONDecoder().decode(Create.self, from: Data(json.utf8))
            #expect(decoded.network == (try EgressPolicy(egress: .denyAll, allow: ["*.example.org", "9.9.9.9/32"])))
            let again = try JSONDecoder().decode(EgressPolicy.self, from: try JSONEncoder().encode(decoded.network))
            #expect(again == decoded.network)
            #expect(try JSONDecoder().decode(EgressPolicy.self, from: Data("{}".utf8)) == .allowAll)
            // Validation on decoding names the field under the decoder's path.
            let bad = #"{"network": {"allow": ["example.org", "10.1.2.0/24"]}}"#
            #expect {
                try JSONDecoder().decode(Create.self, from: Data(bad.utf8))
            } throws: { error in
                (error as? EgressPolicyError)?.field == "network.allow[1]"
            }
            #expect {
                try JSONDecoder().decode(Create.self, from: Data(#"{"network": {"egress": "open"}}"#.utf8))
            } throws: { error in
                (error as? EgressPolicyError)?.field == "network.egress"
            }
        }

        static let refusals: [(allow: [String], field: String, message: String)] = [
            (["10.1.2.0/24"], "network.allow[0]", "always-blocked"),
            (["1.1.1.1", "169.254.169.254/32"], "network.allow[1]", "always-blocked"),
            (["example.org", "fd00::/8"], "network.allow[1]", "always-blocked"),
            (["::ffff:10.0.0.0/104"], "network.allow[0]", "always-blocked"),
            (["127.0.0.1"], "network.allow[0]", "always-blocked"),
            (["a.*.b"], "network.allow[0]", "'*'"),
            (["*"], "network.allow[0]", "two labels"),
            (["**.example.org"], "network.allow[0]", "'*'"),
            (["*example.org"], "network.allow[0]", "'*'"),
            (["com"], "network.allow[0]", "two labels"),
            (["localhost"], "network.allow[0]", "two labels"),
            (["-a.example.org"], "network.allow[0]", "'-'"),
            (["a-.example.org"], "network.allow[0]", "'-'"),
            (["a..example.org"], "network.allow[0]", "empty label"),
            (["a_b.example.org"], "network.allow[0]", "letters, digits"),
            (["exämple.org"], "network.allow[0]", "letters, digits"),
            (["\u{212A}.example.org"], "network.allow[0]", "letters, digits"),  // the Kelvin sign is not "k"
            ([String(repeating: "a", count: 64) + ".org"], "network.allow[0]", "63"),
            ([Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: ".")], "network.allow[0]", "253"),
            (["1.2.3.256"], "network.allow[0]", "not an IPv4"),
            (["10.0.0.1/8"], "network.allow[0]", "host bits"),
            ([""], "network.allow[0]", "empty"),
            (["https://example.org"], "network.allow[0]", "not a CIDR"),
            (Array(repeating: "example.org", count: 65), "network.allow", "at most 64"),
        ]

        @Test(arguments: refusals)
        func refusesNamingTheField(_ allow: [String], _ field: String, _ message: String) {
            #expect {
                try EgressPolicy(egress: .denyAll, allow: allow)
            } throws: { error in
                guard let e = error as? EgressPolicyError else { return false }
                return e.field == field && e.message.contains(message)
            }
            // The same entries in the deny list name that field.
            #expect {
                try EgressPolicy(egress: .allowAll, deny: allow)
            } throws: { error in
                (error as? EgressPolicyError)?.field == field.replacingOccurrences(of: "allow", with: "deny")
            }
        }

        @Test func acceptsEdgeEntries() throws {
            let p = try EgressPolicy(egress: .denyAll, allow: ["*.com", "0.0.0.0/0", "::/0", "8.0.0.0/6", "xn--bcher-kva.example",
                                                               "a.b", "1password.com", "3com.com",
                                                               String(repeating: "a", count: 63) + ".org"],
                                     deny: Array(repeating: "x.org", count: 64))
            #expect(p.allow.count == 9 && p.deny.count == 64)
            #expect(throws: EgressPolicyError.self) { try EgressPolicy.parse(egress: "deny", allow: nil, deny: nil) }
            #expect(try EgressPolicy.parse(egress: nil, allow: nil, deny: nil) == .allowAll)
        }

        @Test func decisions() throws {
            let allowList = try EgressPolicy(egress: .denyAll, allow: ["*.example.org", "exact.net", "1.2.3.4"], deny: ["bad.example.org"])
            #expect(allowList.dnsDecision(for: "www.example.org") == .allow(admit: true))
            #expect(allowList.dnsDecision(for: "a.b.example.org") == .allow(admit: true))
            #expect(allowList.dnsDecision(for: "WWW.Example.ORG.") == .allow(admit: true))
            #expect(allowList.dnsDecision(for: "example.org") == .deny, "a wildcard does not match its apex")
            #expect(allowList.dnsDecision(for: "notexample.org") == .deny)
            #expect(allowList.dnsDecision(for: ".example.org") == .deny)
            #expect(allowList.dnsDecision(for: "exact.net") == .allow(admit: true))
            #expect(allowList.dnsDecision(for: "Exact.Net.") == .allow(admit: true))
            #expect(allowList.dnsDecision(for: "www.exact.net") == .deny, "a plain entry matches only itself")
            #expect(allowList.dnsDecision(for: "bad.example.org") == .deny, "deny wins")
            #expect(allowList.dnsDecision(for: "BAD.example.org.") == .deny)
            #expect(allowList.dnsDecision(for: "x.bad.example.org") == .allow(admit: true))
            #expect(allowList.dnsDecision(for: "other.com") == .deny)
            #expect(allowList.dnsDecision(for: "4.3.2.1.in-addr.arpa") == .deny)
            #expect(allowList.dnsDecision(for: "a\\046example.org") == .deny)

            let denyList = try EgressPolicy(egress: .allowAll, allow: ["example.org"], deny: ["*.evil.com", "tracker.net"])
            #expect(denyList.dnsDecision(for: "x.evil.com") == .deny)
            #expect(denyList.dnsDecision(for: "X.EVIL.COM.") == .deny)
            #expect(denyList.dnsDecision(for: "evil.com") == .allow(admit: false))
            #expect(denyList.dnsDecision(for: "tracker.net") == .deny)
            #expect(denyList.dnsDecision(for: "example.org") == .allow(admit: false), "allow_all admits nothing: all is open")
            #expect(denyList.dnsDecision(for: "anything.else") == .allow(admit: false))

            #expect(EgressPolicy.allowAll.dnsDecision(for: "a.b") == .allow(admit: false))
            #expect(try EgressPolicy(egress: .denyAll).dnsDecision(for: "a.b") == .deny)
            #expect(try EgressPolicy(egress: .denyAll, allow: ["*.com"]).dnsDecision(for: "x.com") == .allow(admit: true))
            #expect(try EgressPolicy(egress: .denyAll, allow: ["*.com"]).dnsDecision(for: "com") == .deny)
        }

        @Test func upstreamLists() throws {
            let parsed = try BoxDNSResolver.parseUpstreams("1.1.1.1, 10.0.0.2:5353,::1,[2001:db8::1]:54,[::2]")
            #expect(parsed.map { "\($0.address) \($0.port)" } == ["1.1.1.1 53", "10.0.0.2 5353", "::1 53", "2001:db8::1 54", "::2 53"])
            for bad in ["", "1.1.1.1,", "example.org", "1.1.1.1:0", "1.1.1.1:70000", "1.1.1.1:x", "[::1", "[::1]x", "1.2.3.4:+5"] {
                #expect(throws: DNSUpstreamError.self, "\(bad)") { try BoxDNSResolver.parseUpstreams(bad) }
            }
            let conf = """
                # comment
                search example.org
                nameserver 127.0.0.53
                nameserver   ::1
                nameserver fe80::1%eth0
                nameserver bogus
                ;nameserver 9.9.9.9
                options edns0
                nameserver\t127.0.0.54
                """
            #expect(BoxDNSResolver.parseResolvConf(conf).map { "\($0.address) \($0.port)" } == ["127.0.0.53 53", "::1 53", "127.0.0.54 53"])
            #expect(BoxDNSResolver.upstreams(resolvConf: "/nonexistent/resolv.conf").isEmpty)
            let env = try BoxDNSResolver.configuredUpstreams(environment: ["DEVBOX_DNS_UPSTREAM": "127.0.0.9:99"],
                                                             resolvConf: "/nonexistent")
            #expect(env.map { "\($0.address) \($0.port)" } == ["127.0.0.9 99"])
            #expect(try BoxDNSResolver.configuredUpstreams(environment: [:], resolvConf: "/nonexistent").isEmpty)
        }
}

}

// MARK: - Wire helpers of the tests (independent of the resolver's parser)

private enum TestDNS {
    static func query(id: UInt16, name: String, type: UInt16 = 1, rd: Bool = true) -> [UInt8] {
        var m: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), rd ? 0x01 : 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        m += encodeName(name)
        m += [UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        return m
    }

    static func encodeName(_ name: String) -> [UInt8] {
        var out: [UInt8] = []
        for label in name.split(separator: ".") {
            out.append(UInt8(label.utf8.count))
            out += label.utf8
        }
        out.append(0)
        return out
    }

    struct Answer {
        var id: UInt16
        var rcode: UInt8
        var flags: UInt16
        var questionName: String?
        var records: [(name: String, type: UInt16, ttl: UInt32, data: [UInt8])] = []

        var addresses: [String] {
            records.compactMap { r in
                if r.type == 1 && r.data.count == 4 { return r.data.map(String.init).joined(separator: ".") }
                if r.type == 28 && r.data.count == 16 { return IPv6Address(bytes: r.data)?.description }
                return nil
            }
        }
    }

    static func readName(_ m: [UInt8], _ start: Int) -> (String, Int)? {
        var pos = start
        var labels: [String] = []
        var end: Int?
        var hops = 0
        while pos < m.count {
            let len = Int(m[pos])
            if len == 0 { return (labels.joined(separator: "."), end ?? pos + 1) }
            if len & 0xC0 == 0xC0 {
                guard pos + 1 < m.count, hops < 20 else { return nil }
                hops += 1
                if end == nil { end = pos + 2 }
                pos = (len & 0x3F) << 8 | Int(m[pos + 1])
                continue
            }
            guard pos + 1 + len <= m.count else { return nil }
            labels.append(String(decoding: m[(pos + 1)...(pos + len)], as: UTF8.self))
            pos += 1 + len
        }
        return nil
    }

    static func parse(_ m: [UInt8]) -> Answer? {
        guard m.count >= 12 else { return nil }
        func u16(_ i: Int) -> UInt16 { UInt16(m[i]) << 8 | UInt16(m[i + 1]) }
        var a = Answer(id: u16(0), rcode: m[3] & 0x0f, flags: u16(2))
        var pos = 12
        if u16(4) == 1 {
            guard let (name, end) = readName(m, pos) else { return nil }
            a.questionName = name
            pos = end + 4
        }
        for _ in 0..<u16(6) {
            guard let (name, end) = readName(m, pos), end + 10 <= m.count else { return nil }
            let type = u16(end)
            let ttl = UInt32(u16(end + 4)) << 16 | UInt32(u16(end + 6))
            let len = Int(u16(end + 8))
            guard end + 10 + len <= m.count else { return nil }
            a.records.append((name, type, ttl, Array(m[(end + 10)..<(end + 10 + len)])))
            pos = end + 10 + len
        }
        return a
    }
}

// MARK: - Sockets of the tests

private func loopback(_ a: IPv4Address, port: UInt16) -> sockaddr_in {
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    sa.sin_addr.s_addr = a.value.bigEndian
    return sa
}

private func bindSocket(_ fd: Int32, _ a: IPv4Address, port: UInt16) -> Bool {
    var sa = loopback(a, port: port)
    return withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

private func bindLoopback6(_ fd: Int32, port: UInt16) -> Bool {
    var sa = sockaddr_in6()
    sa.sin6_family = sa_family_t(AF_INET6)
    sa.sin6_port = port.bigEndian
    withUnsafeMutableBytes(of: &sa.sin6_addr) { $0[15] = 1 }
    return withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
    } == 0
}

private func boundPort6(_ fd: Int32) -> UInt16 {
    var sa = sockaddr_in6()
    var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
    _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: sa.sin6_port)
}

private func boundPort(_ fd: Int32) -> UInt16 {
    var sa = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: sa.sin_port)
}

private func waitReadable(_ fd: Int32, millis: Int32) -> Bool {
    var p = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
    return poll(&p, 1, millis) > 0
}

/// A UDP client bound to `source` (the address the resolver's policy sees).
private final class UDPClient {
    let fd: Int32
    init(source: IPv4Address = IPv4Address(127, 0, 0, 1)) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, bindSocket(fd, source, port: 0) else { throw BoxRuntimeError.system("client socket", errno: dbx_errno()) }
    }
    deinit { close(fd) }

    func send(_ m: [UInt8], port: UInt16) {
        var to = loopback(IPv4Address(127, 0, 0, 1), port: port)
        _ = m.withUnsafeBytes { b in
            withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }

    func receive(millis: Int32) -> [UInt8]? {
        guard waitReadable(fd, millis: millis) else { return nil }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : Array(buf[0..<n])
    }
}

/// One query and its answer, on a thread of its own (blocking calls stay off the cooperative pool).
private func ask(_ port: UInt16, _ message: [UInt8], source: IPv4Address = IPv4Address(127, 0, 0, 1),
         millis: Int32 = 5000) async throws -> (answer: [UInt8]?, receivedAt: UInt64) {
    try await onDedicatedThread { () throws -> ([UInt8]?, UInt64) in
        let c = try UDPClient(source: source)
        c.send(message, port: port)
        let a = c.receive(millis: millis)
        return (a, monotonicNanos())
    }
}

/// `ask`, timed on the thread that sends and receives (from the send to the answer), so the
/// wait for a cooperative thread before and after (seconds when every suite of a full run
/// starts at once) is not counted.
private func askTimed(_ port: UInt16, _ message: [UInt8], millis: Int32 = 5000) async throws -> (answer: [UInt8]?, elapsed: Duration) {
    try await onDedicatedThread { () throws -> ([UInt8]?, Duration) in
        let c = try UDPClient(source: IPv4Address(127, 0, 0, 1))
        let start = ContinuousClock.now
        c.send(message, port: port)
        let a = c.receive(millis: millis)
        return (a, ContinuousClock.now - start)
    }
}

private func tcpConnect(_ port: UInt16) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var to = loopback(IPv4Address(127, 0, 0, 1), port: port)
    let rc = withUnsafePointer(to: &to) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 { close(fd); return -1 }
    return fd
}

/// Reads one length-prefixed message (nil on EOF or timeout), in small reads and never
/// past its end, so the next message stays in the socket.
private func tcpRead(_ fd: Int32, millis: Int32 = 5000) -> [UInt8]? {
    var acc: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    let end = monotonicNanos() + UInt64(millis) * 1_000_000
    while monotonicNanos() < end {
        let want = acc.count < 2 ? 2 - acc.count : 2 + (Int(acc[0]) << 8 | Int(acc[1])) - acc.count
        if want == 0 { return Array(acc[2...]) }
        guard waitReadable(fd, millis: 100) else { continue }
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min(want, 1 + Int.random(in: 0..<16)), 0) }
        if n <= 0 { return nil }
        acc += buf[0..<n]
    }
    return nil
}

/// The parsed answer; throws (failing the test) when there is none or it does not parse.
private func parsed(_ raw: [UInt8]?) throws -> TestDNS.Answer {
    let message = try #require(raw, "no answer")
    return try #require(TestDNS.parse(message), "unparseable answer")
}

private func framed(_ m: [UInt8]) -> [UInt8] { [UInt8(m.count >> 8), UInt8(m.count & 0xff)] + m }

// MARK: - A fake upstream

/// UDP and TCP on one ephemeral port of 127.0.0.1, answering A/AAAA/CNAME from a table,
/// NXDOMAIN otherwise, or never (`silent`); optionally after a delay (without blocking
/// other queries). Counts the queries it got.
private final class FakeUpstream: Sendable {
    struct Record: Sendable {
        let type: UInt16
        let ttl: UInt32
        let data: String  // an address, or a CNAME target
    }

    let port: UInt16
    let queries = Atomic<Int>(0)
    let names = Mutex<[String]>([])
    private let udp: Int32
    private let tcp: Int32
    private let wake: (Int32, Int32)
    private let done = DispatchSemaphore(value: 0)
    private let table: [String: [Record]]
    private let silent: Bool
    private let forge: Bool
    private let delayNanos: UInt64
    /// Where it listens, as the resolver's upstream list takes it.
    let address: String

    /// `forge`: every UDP answer is preceded by two that must be ignored: one under another
    /// id, one for another question (both carrying 6.6.6.6). `v6`: on ::1 instead of 127.0.0.1.
    init(_ table: [String: [Record]], silent: Bool = false, delayMillis: UInt64 = 0, forge: Bool = false, v6: Bool = false) throws {
        self.table = table
        self.silent = silent
        self.forge = forge
        delayNanos = delayMillis * 1_000_000
        address = v6 ? "::1" : "127.0.0.1"
        let family = v6 ? AF_INET6 : AF_INET
        var u: Int32 = -1, t: Int32 = -1, p: UInt16 = 0
        for _ in 0..<20 {
            u = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard v6 ? bindLoopback6(u, port: 0) : bindSocket(u, IPv4Address(127, 0, 0, 1), port: 0) else { close(u); continue }
            p = v6 ? boundPort6(u) : boundPort(u)
            t = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if v6 ? bindLoopback6(t, port: p) : bindSocket(t, IPv4Address(127, 0, 0, 1), port: p), listen(t, 64) == 0 { break }
            close(t); close(u)
            t = -1
        }
        guard t >= 0 else { throw BoxRuntimeError.system("fake upstream bind", errno: EADDRINUSE) }
        udp = u
        tcp = t
        port = p
        var fds: [Int32] = [-1, -1]
        _ = dbx_pipe(&fds, 1, 1)
        wake = (fds[0], fds[1])
        let thread = Thread { [self] in serve(); done.signal() }
        thread.start()
    }

    func stop() {
        var b: UInt8 = 1
        _ = write(wake.1, &b, 1)
        done.wait()
        for fd in [udp, tcp, wake.0, wake.1] { close(fd) }
    }

    /// The answer to `query` (nil: none).
    func answer(_ q: [UInt8]) -> [UInt8]? {
        guard q.count >= 12, let (name, end) = TestDNS.readName(q, 12), end + 4 <= q.count else { return nil }
        queries.add(1, ordering: .relaxed)
        names.withLock { $0.append(name) }
        if silent { return nil }
        let qtype = UInt16(q[end]) << 8 | UInt16(q[end + 1])
        var r = Array(q[0..<(end + 4)])
        r[2] = 0x80 | (q[2] & 0x01)
        r[3] = 0x80
        r[6] = 0; r[7] = 0; r[8] = 0; r[9] = 0; r[10] = 0; r[11] = 0
        var count = 0
        var owner = name.lowercased()
        var ownerPointer: Int? = 12  // the question's name: compressed as a pointer
        var seen = 0
        while let records = table[owner], seen < 8 {
            seen += 1
            var next: String?
            for rec in records where rec.type == qtype || rec.type == 5 {
                if let p = ownerPointer { r += [0xC0 | UInt8(p >> 8), UInt8(p & 0xff)] } else { r += TestDNS.encodeName(owner) }
                r += [UInt8(rec.type >> 8), UInt8(rec.type & 0xff), 0, 1]
                r += [UInt8(rec.ttl >> 24), UInt8((rec.ttl >> 16) & 0xff), UInt8((rec.ttl >> 8) & 0xff), UInt8(rec.ttl & 0xff)]
                let data: [UInt8]
                switch rec.type {
                case 1: data = IPv4Address(rec.data)?.octets ?? []
                case 28: data = IPv6Address(rec.data)?.bytes ?? []
                default: data = TestDNS.encodeName(rec.data); next = rec.data
                }
                r += [UInt8(data.count >> 8), UInt8(data.count & 0xff)]
                // A CNAME target's records are owned by a pointer to it (compression in rdata).
                if rec.type == 5 { ownerPointer = r.count }
                r += data
                count += 1
            }
            guard let n = next else { break }
            owner = n
        }
        if count == 0 && table[name.lowercased()] == nil { r[3] = 0x83 }
        r[6] = UInt8(count >> 8); r[7] = UInt8(count & 0xff)
        return r
    }

    /// `r` with every A record's address replaced by 6.6.6.6.
    private func forged(_ r: [UInt8]) -> [UInt8] {
        var m = r
        var i = 0
        // Good enough for the answers above: an A record's rdata follows "00 01 00 01 <ttl> 00 04".
        while i + 14 <= m.count {
            if m[i] == 0 && m[i + 1] == 1 && m[i + 2] == 0 && m[i + 3] == 1 && m[i + 8] == 0 && m[i + 9] == 4 {
                for k in 0..<4 { m[i + 10 + k] = 6 }
                i += 14
            } else {
                i += 1
            }
        }
        return m
    }

    private func serve() {
        var buf = [UInt8](repeating: 0, count: 65536)
        var later: [(due: UInt64, to: sockaddr_storage, length: socklen_t, message: [UInt8])] = []
        while true {
            var p = [pollfd(fd: wake.0, events: Int16(POLLIN), revents: 0), pollfd(fd: udp, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: tcp, events: Int16(POLLIN), revents: 0)]
            let now = monotonicNanos()
            let timeout = later.map { Int32(($0.due &- min($0.due, now)) / 1_000_000 + 1) }.min() ?? -1
            _ = poll(&p, 3, timeout)
            if p[0].revents != 0 { return }
            if p[1].revents != 0 {
                while true {
                    var from = sockaddr_storage()
                    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    let n = buf.withUnsafeMutableBytes { b in
                        withUnsafeMutablePointer(to: &from) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(udp, b.baseAddress, b.count, 0, $0, &len) }
                        }
                    }
                    if n <= 0 { break }
                    guard let r = answer(Array(buf[0..<n])) else { continue }
                    let due = monotonicNanos() + delayNanos
                    if forge {
                        var otherID = r
                        otherID[1] ^= 1
                        later.append((due, from, len, forged(otherID)))
                        var otherQuestion = r
                        otherQuestion[13] = otherQuestion[13] == UInt8(ascii: "z") ? UInt8(ascii: "y") : UInt8(ascii: "z")
                        later.append((due, from, len, forged(otherQuestion)))
                    }
                    later.append((due, from, len, r))
                }
            }
            if p[2].revents != 0 {
                let c = accept(tcp, nil, nil)
                if c >= 0 {
                    // One thread per connection: this is a test double.
                    Thread { [self] in
                        while let q = tcpRead(c, millis: 3000) {
                            if delayNanos > 0 { usleep(UInt32(delayNanos / 1000)) }
                            if let r = answer(q) { _ = framed(r).withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
                        }
                        close(c)
                    }.start()
                }
            }
            let due = monotonicNanos()
            for item in later where item.due <= due {
                var to = item.to
                _ = item.message.withUnsafeBytes { b in
                    withUnsafePointer(to: &to) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(udp, b.baseAddress, b.count, 0, $0, item.length)
                        }
                    }
                }
            }
            later.removeAll { $0.due <= due }
        }
    }
}

// MARK: - The resolver

/// A resolver on 127.0.0.1 with the given upstreams; 127.0.0.1 is a box with `policy`,
/// any other source is not a box. Records every admission with its time.
private final class ResolverFixture: Sendable {
    /// What the closures given to the resolver share with the test.
    final class Shared: Sendable {
        let policy: Mutex<EgressPolicy>
        let admissions = Mutex<[(box: IPv4Address, addresses: [(IPAddressAny, ttl: UInt32)], at: UInt64)]>([])
        init(_ policy: EgressPolicy) { self.policy = Mutex(policy) }
    }

    let resolver: BoxDNSResolver
    let port: UInt16
    let shared: Shared

    convenience init(upstreams: [UInt16], policy: EgressPolicy, limits: BoxDNSResolver.Limits = .init()) throws {
        try self.init(hosts: upstreams.map { ("127.0.0.1", $0) }, policy: policy, limits: limits)
    }

    init(hosts: [(address: String, port: UInt16)], policy: EgressPolicy, limits: BoxDNSResolver.Limits = .init()) throws {
        let shared = Shared(policy)
        var logger = Logger(label: "dns-test")
        logger.logLevel = .warning
        resolver = BoxDNSResolver(
            upstreams: hosts, logger: logger, limits: limits,
            policy: { source in source == IPv4Address(127, 0, 0, 1) ? shared.policy.withLock { $0 } : nil },
            admit: { box, addresses in shared.admissions.withLock { $0.append((box, addresses, monotonicNanos())) } })
        self.shared = shared
        port = try resolver.start(host: "127.0.0.1", port: 0)
    }

    deinit { resolver.stop() }
}

private let allowExample = (try? EgressPolicy(egress: .denyAll, allow: ["*.example.org", "exact.net"], deny: ["bad.example.org"])) ?? .allowAll

private let table: [String: [FakeUpstream.Record]] = [
    "www.example.org": [.init(type: 1, ttl: 300, data: "93.184.216.34"), .init(type: 1, ttl: 60, data: "93.184.216.35"),
                        .init(type: 28, ttl: 300, data: "2606:2800:220:1:248:1893:25c8:1946")],
    "short.example.org": [.init(type: 1, ttl: 1, data: "1.1.1.1")],
    "long.example.org": [.init(type: 1, ttl: 86400, data: "1.0.0.1")],
    "negative.example.org": [.init(type: 1, ttl: 0x8000_0010, data: "1.0.0.2")],
    "private.example.org": [.init(type: 1, ttl: 300, data: "10.0.0.5"), .init(type: 1, ttl: 300, data: "169.254.169.254"),
                            .init(type: 1, ttl: 300, data: "8.8.4.4")],
    "alias.example.org": [.init(type: 5, ttl: 300, data: "cdn.provider.net")],
    "cdn.provider.net": [.init(type: 5, ttl: 120, data: "edge.provider.net")],
    "edge.provider.net": [.init(type: 1, ttl: 30, data: "5.6.7.8")],
    "exact.net": [.init(type: 1, ttl: 300, data: "9.9.9.9")],
    "bad.example.org": [.init(type: 1, ttl: 300, data: "6.6.6.6")],
    "open.example.com": [.init(type: 1, ttl: 300, data: "4.4.4.4")],
]

extension DNSResolverTests {
    @Suite struct Resolver {
        @Test func allowedNameIsAnsweredAndAdmittedFirst() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: allowExample)
            let sent = monotonicNanos()
            let (raw, receivedAt) = try await ask(f.port, TestDNS.query(id: 0xBEEF, name: "WWW.Example.org"))
            let a = try parsed(raw)
            #expect(a.id == 0xBEEF, "the box's id is restored")
            #expect(a.rcode == 0)
            #expect(a.questionName == "WWW.Example.org")
            #expect(a.addresses == ["93.184.216.34", "93.184.216.35"])
            #expect(up.queries.load(ordering: .relaxed) == 1)
            let adm = f.shared.admissions.withLock { $0 }
            try #require(adm.count == 1)
            #expect(adm[0].box == IPv4Address(127, 0, 0, 1))
            #expect(adm[0].addresses.map { "\($0.0) \($0.ttl)" } == ["93.184.216.34 300", "93.184.216.35 60"])
            #expect(adm[0].at > sent && adm[0].at < receivedAt, "admitted before the answer reached the box")

            // AAAA, through TCP-less UDP as well.
            let (raw6, _) = try await ask(f.port, TestDNS.query(id: 7, name: "www.example.org", type: 28))
            #expect(try parsed(raw6).addresses == ["2606:2800:220:1:248:1893:25c8:1946"])
            #expect(f.shared.admissions.withLock { $0.last?.addresses.map { "\($0.0) \($0.ttl)" } } == ["2606:2800:220:1:248:1893:25c8:1946 300"])
        }

        @Test func admissionTTLsAreClampedAndAnswersCapped() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: allowExample)
            _ = try await ask(f.port, TestDNS.query(id: 1, name: "short.example.org"))
            #expect(f.shared.admissions.withLock { $0.last?.addresses.map(\.ttl) } == [5])
            let (raw, _) = try await ask(f.port, TestDNS.query(id: 2, name: "long.example.org"))
            #expect(f.shared.admissions.withLock { $0.last?.addresses.map(\.ttl) } == [3600])
            #expect(try parsed(raw).records.map(\.ttl) == [3600], "the box caches no longer than admitted")
        // RFC 2181: a TTL with its top bit set means 0.
        let (rawN, _) = try await ask(f.port, TestDNS.query(id: 5, name: "negative.example.org"))
        #expect(f.shared.admissions.withLock { $0.last?.addresses.map(\.ttl) } == [5])
        #expect(try parsed(rawN).records.map(\.ttl) == [0])
            // Always-blocked addresses in an answer are never admitted (the answer is passed on).
            let (rawP, _) = try await ask(f.port, TestDNS.query(id: 3, name: "private.example.org"))
            #expect(try parsed(rawP).addresses.count == 3)
            #expect(f.shared.admissions.withLock { $0.last?.addresses.map { "\($0.0)" } } == ["8.8.4.4"])
            // A CNAME chain (compressed names in owners and rdata): the final addresses are admitted.
            let (rawC, _) = try await ask(f.port, TestDNS.query(id: 4, name: "alias.example.org"))
            let c = try parsed(rawC)
            #expect(c.records.map(\.name) == ["alias.example.org", "cdn.provider.net", "edge.provider.net"])
            #expect(c.addresses == ["5.6.7.8"])
            #expect(f.shared.admissions.withLock { $0.last?.addresses.map { "\($0.0) \($0.ttl)" } } == ["5.6.7.8 30"])
            #expect(f.shared.admissions.withLock { $0.count } == 5)
        }

        @Test func deniedNameIsNXDOMAINWithoutUpstream() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: allowExample)
            for (i, name) in ["bad.example.org", "BAD.example.org.", "example.org", "open.example.com", "www.exact.net"].enumerated() {
                let q = TestDNS.query(id: UInt16(100 + i), name: name)
                let (raw, _) = try await ask(f.port, q)
                let m = try #require(raw)
                let a = try #require(TestDNS.parse(m))
                #expect(a.id == UInt16(100 + i))
                #expect(a.rcode == 3, "\(name)")
                #expect(a.flags & 0x8000 != 0 && a.flags & 0x0080 != 0 && a.flags & 0x0100 != 0, "QR, RA, RD copied")
                #expect(Array(m[12...]) == Array(q[12...]), "the question is echoed")
                #expect(a.records.isEmpty)
            }
            #expect(up.queries.load(ordering: .relaxed) == 0)
            #expect(f.shared.admissions.withLock { $0.isEmpty })
            // An allow_all box with a deny-list: the rest resolves, nothing is admitted.
            f.shared.policy.withLock { $0 = (try? EgressPolicy(egress: .allowAll, deny: ["*.example.org"])) ?? .allowAll }
            let (denied, _) = try await ask(f.port, TestDNS.query(id: 9, name: "www.example.org"))
            #expect(try parsed(denied).rcode == 3)
            let (open, _) = try await ask(f.port, TestDNS.query(id: 10, name: "open.example.com"))
            #expect(try parsed(open).addresses == ["4.4.4.4"])
            let (nx, _) = try await ask(f.port, TestDNS.query(id: 11, name: "nothing.example.com"))
            #expect(try parsed(nx).rcode == 3, "upstream's NXDOMAIN is passed on")
            #expect(up.queries.load(ordering: .relaxed) == 2)
            #expect(f.shared.admissions.withLock { $0.isEmpty })
        }

        @Test func unknownSourceIsRefused() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: .allowAll)
            let (raw, _) = try await ask(f.port, TestDNS.query(id: 0x1234, name: "www.example.org"), source: IPv4Address(127, 0, 0, 2))
            let a = try parsed(raw)
            #expect(a.id == 0x1234 && a.rcode == 5)
            #expect(up.queries.load(ordering: .relaxed) == 0)
        }

        @Test func malformedQueries() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: .allowAll)
            // Two questions → FORMERR.
            var two = TestDNS.query(id: 5, name: "a.example.org")
            two[5] = 2
            #expect(try parsed(try await ask(f.port, two).answer).rcode == 1)
            // A compression pointer in the question (into the header, whose id is rewritten) → FORMERR.
            var pointer: [UInt8] = [0, 6, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x77, 0x77, 0x77, 0xC0, 0x02, 0, 1, 0, 1]
            #expect(try parsed(try await ask(f.port, pointer).answer).rcode == 1)
            // A truncated question → FORMERR; another opcode → NOTIMP.
            pointer = Array(TestDNS.query(id: 7, name: "www.example.org").dropLast(3))
            #expect(try parsed(try await ask(f.port, pointer).answer).rcode == 1)
            var status = TestDNS.query(id: 8, name: "www.example.org")
            status[2] |= 2 << 3
            #expect(try parsed(try await ask(f.port, status).answer).rcode == 4)
            // Runts and responses are dropped.
            #expect(try await ask(f.port, [1, 2, 3], millis: 300).answer == nil)
            var response = TestDNS.query(id: 9, name: "www.example.org")
            response[2] |= 0x80
            #expect(try await ask(f.port, response, millis: 300).answer == nil)
            #expect(up.queries.load(ordering: .relaxed) == 0)
            // Still serving.
            #expect(try parsed(try await ask(f.port, TestDNS.query(id: 10, name: "exact.net")).answer).rcode == 0)
        }

        @Test func silentUpstreamGivesServfailThenTheNextIsUsed() async throws {
            let silent = try FakeUpstream(table, silent: true)
            defer { silent.stop() }
            let good = try FakeUpstream(table)
            defer { good.stop() }
            let alone = try ResolverFixture(upstreams: [silent.port], policy: allowExample)
            // Times are taken on the thread that asks (`askTimed`), not in this task.
            let (raw, elapsed) = try await askTimed(alone.port, TestDNS.query(id: 77, name: "www.example.org"))
            let a = try parsed(raw)
            #expect(a.id == 77 && a.rcode == 2)
            #expect(elapsed >= .milliseconds(1900) && elapsed < .milliseconds(3500), "\(elapsed)")
            #expect(alone.shared.admissions.withLock { $0.isEmpty })
            // The same over TCP.
            let (tcp, tcpElapsed) = try await onDedicatedThread { () throws -> ([UInt8]?, Duration) in
                let start = ContinuousClock.now
                let fd = tcpConnect(alone.port)
                guard fd >= 0 else { throw BoxRuntimeError.system("connect", errno: dbx_errno()) }
                defer { close(fd) }
                let q = framed(TestDNS.query(id: 76, name: "www.example.org"))
                _ = q.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                let answer = tcpRead(fd)
                return (answer, ContinuousClock.now - start)
            }
            #expect(try parsed(tcp).rcode == 2 && (try parsed(tcp)).id == 76)
            #expect(tcpElapsed >= .milliseconds(1900) && tcpElapsed < .milliseconds(3500), "\(tcpElapsed)")

            let both = try ResolverFixture(upstreams: [silent.port, good.port], policy: allowExample)
            let (raw2, elapsed2) = try await askTimed(both.port, TestDNS.query(id: 78, name: "www.example.org"))
            let b = try parsed(raw2)
            #expect(b.id == 78 && b.rcode == 0 && b.addresses.count == 2)
            #expect(elapsed2 >= .milliseconds(1900) && elapsed2 < .milliseconds(3500), "\(elapsed2)")
            #expect(good.queries.load(ordering: .relaxed) == 1)
            // A closed upstream port (ICMP unreachable) moves on at once.
            let closedPort = try closedUDPPort()
            let quick = try ResolverFixture(upstreams: [closedPort, good.port], policy: allowExample)
            let (raw3, elapsed3) = try await askTimed(quick.port, TestDNS.query(id: 79, name: "exact.net"))
            #expect(try parsed(raw3).addresses == ["9.9.9.9"])
            #expect(elapsed3 < .milliseconds(1500), "\(elapsed3)")
        }

        @Test func tcpQueries() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: allowExample)
            let answers = try await onDedicatedThread { () throws -> [[UInt8]?] in
                let fd = tcpConnect(f.port)
                guard fd >= 0 else { throw BoxRuntimeError.system("connect", errno: dbx_errno()) }
                defer { close(fd) }
                // Three pipelined queries, written in one go: allowed, denied, allowed.
                let batch = framed(TestDNS.query(id: 1, name: "www.example.org")) + framed(TestDNS.query(id: 2, name: "bad.example.org"))
                    + framed(TestDNS.query(id: 3, name: "alias.example.org"))
                _ = batch.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                return [tcpRead(fd), tcpRead(fd), tcpRead(fd)]
            }
            let parsed = answers.compactMap { $0.flatMap(TestDNS.parse) }
            try #require(parsed.count == 3)
            let byID = Dictionary(parsed.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            #expect(byID[1]?.rcode == 0 && byID[1]?.addresses == ["93.184.216.34", "93.184.216.35"])
            #expect(byID[2]?.rcode == 3)
            #expect(byID[3]?.addresses == ["5.6.7.8"])
            #expect(up.queries.load(ordering: .relaxed) == 2)
            #expect(f.shared.admissions.withLock { $0.count } == 2)
        }

        /// More pipelined queries on one connection than it may have in flight: the rest wait in
        /// its buffer and are all answered.
        @Test func tcpPipelining() async throws {
            let up = try FakeUpstream(table, delayMillis: 100)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: allowExample)
            // Timed on the asking thread (30 queries one after another would take 3 s).
            let (ids, elapsed) = try await onDedicatedThread { () throws -> ([UInt16], Duration) in
                let start = ContinuousClock.now
                let fd = tcpConnect(f.port)
                guard fd >= 0 else { throw BoxRuntimeError.system("connect", errno: dbx_errno()) }
                defer { close(fd) }
                let batch = (0..<40).flatMap { framed(TestDNS.query(id: UInt16($0), name: $0 % 4 == 3 ? "bad.example.org" : "exact.net")) }
                _ = batch.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                var ids: [UInt16] = []
                while ids.count < 40, let m = tcpRead(fd), let a = TestDNS.parse(m) {
                    if a.rcode == (a.id % 4 == 3 ? 3 : 0) { ids.append(a.id) }
                }
                return (ids, ContinuousClock.now - start)
            }
            #expect(Set(ids) == Set(0..<40))
            #expect(elapsed < .seconds(3), "\(elapsed)")
            #expect(up.queries.load(ordering: .relaxed) == 30)
        }

        @Test func tcpIdleConnectionsAreClosedAndBounded() async throws {
            let up = try FakeUpstream(table)
            defer { up.stop() }
            var limits = BoxDNSResolver.Limits()
            limits.tcpIdleNanos = 1_000_000_000
            limits.maxTCPConnectionsPerBox = 3
            let f = try ResolverFixture(upstreams: [up.port], policy: .allowAll, limits: limits)
            let r = await onDedicatedThread { () -> (fourthClosedAfter: UInt64?, answered: Bool, idleClosedAfter: UInt64?) in
                let fds = (0..<4).map { _ in tcpConnect(f.port) }
                defer { for fd in fds where fd >= 0 { close(fd) } }
                // The box's fourth connection is closed at once; the first three stay.
                var start = monotonicNanos()
                let fourth = tcpRead(fds[3], millis: 2000) == nil ? monotonicNanos() - start : nil
                let q = framed(TestDNS.query(id: 4, name: "exact.net"))
                _ = q.withUnsafeBytes { Glibc.send(fds[1], $0.baseAddress, $0.count, 0) }
                let answered = tcpRead(fds[1]) != nil
                // A partial message is no activity: the connection is closed all the same.
                _ = [UInt8(0), 40, 1].withUnsafeBytes { Glibc.send(fds[0], $0.baseAddress, $0.count, 0) }
                start = monotonicNanos()
                let idle = tcpRead(fds[0], millis: 5000) == nil ? monotonicNanos() - start : nil
                return (fourth, answered, idle)
            }
            #expect(try #require(r.fourthClosedAfter) < 500_000_000)
            #expect(r.answered)
            let idle = try #require(r.idleClosedAfter)
            #expect(idle > 300_000_000 && idle < 3_000_000_000, "\(idle)")
        }

        @Test func forgedAnswersAreIgnoredAndIPv6UpstreamsServe() async throws {
            let forger = try FakeUpstream(table, forge: true)
            defer { forger.stop() }
            let f = try ResolverFixture(upstreams: [forger.port], policy: allowExample)
            let (raw, _) = try await ask(f.port, TestDNS.query(id: 0x4242, name: "www.example.org"))
            let a = try parsed(raw)
            #expect(a.id == 0x4242 && a.rcode == 0)
            #expect(a.addresses == ["93.184.216.34", "93.184.216.35"])
            #expect(f.shared.admissions.withLock { $0.flatMap { $0.addresses.map { "\($0.0)" } } } == ["93.184.216.34", "93.184.216.35"])

            let v6 = try FakeUpstream(table, v6: true)
            defer { v6.stop() }
            let g = try ResolverFixture(hosts: [(v6.address, v6.port)], policy: allowExample)
            let (udp, _) = try await ask(g.port, TestDNS.query(id: 1, name: "exact.net"))
            #expect(try parsed(udp).addresses == ["9.9.9.9"])
            let tcp = try await onDedicatedThread { () throws -> [UInt8]? in
                let fd = tcpConnect(g.port)
                guard fd >= 0 else { throw BoxRuntimeError.system("connect", errno: dbx_errno()) }
                defer { close(fd) }
                let q = framed(TestDNS.query(id: 2, name: "www.example.org", type: 28))
                _ = q.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                return tcpRead(fd)
            }
            #expect(try parsed(tcp).addresses == ["2606:2800:220:1:248:1893:25c8:1946"])
            #expect(v6.queries.load(ordering: .relaxed) == 2)
        }

        @Test func manyConcurrentQueries() async throws {
            // Every answer is delayed 300 ms: 200 queries answered one after another would take a minute.
            let up = try FakeUpstream(table, delayMillis: 300)
            defer { up.stop() }
            let f = try ResolverFixture(upstreams: [up.port], policy: allowExample)
            let start = ContinuousClock.now
            let got = try await onDedicatedThread { () throws -> [UInt16: UInt8] in
                let c = try UDPClient()
                var buf: Int32 = 1 << 20
                _ = setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &buf, socklen_t(MemoryLayout<Int32>.size))
                for i in 0..<200 { c.send(TestDNS.query(id: UInt16(i), name: i % 2 == 0 ? "www.example.org" : "bad.example.org"), port: f.port) }
                var got: [UInt16: UInt8] = [:]
                let end = monotonicNanos() + 10_000_000_000
                while got.count < 200, monotonicNanos() < end, let m = c.receive(millis: 1000) {
                    if let a = TestDNS.parse(m) { got[a.id] = a.rcode }
                }
                return got
            }
            #expect(got.count == 200)
            #expect((0..<200).allSatisfy { got[UInt16($0)] == ($0 % 2 == 0 ? 0 : 3) })
            #expect(up.queries.load(ordering: .relaxed) == 100)
            #expect(ContinuousClock.now - start < .seconds(5))
        }

        @Test func stopIsPromptAndFreesThePort() async throws {
            let silent = try FakeUpstream(table, silent: true)
            defer { silent.stop() }
            var logger = Logger(label: "dns-test")
            logger.logLevel = .warning
            let resolver = BoxDNSResolver(upstreams: [("127.0.0.1", silent.port)], logger: logger,
                                          policy: { _ in .allowAll }, admit: { _, _ in })
            let port = try resolver.start(host: "127.0.0.1")
            #expect(port != 0)
            #expect(throws: (any Error).self) { try resolver.start(host: "127.0.0.1") }
            let (elapsed, closed) = try await onDedicatedThread { () throws -> (Duration, Bool) in
                // Queries in flight over UDP and TCP, and an open connection.
                let c = try UDPClient()
                for i in 0..<20 { c.send(TestDNS.query(id: UInt16(i), name: "x\(i).example.org"), port: port) }
                let fd = tcpConnect(port)
                defer { close(fd) }
                let q = framed(TestDNS.query(id: 99, name: "tcp.example.org"))
                _ = q.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                usleep(200_000)
                let start = ContinuousClock.now
                resolver.stop()
                let elapsed = ContinuousClock.now - start
                return (elapsed, tcpRead(fd, millis: 1000) == nil)
            }
            #expect(elapsed < .milliseconds(500), "\(elapsed)")
            #expect(closed, "its connections were closed")
            resolver.stop()  // idempotent
            // The same port binds again, UDP and TCP.
            let quiet = logger
            let again = try await onDedicatedThread { () throws -> UInt16 in
                let r = BoxDNSResolver(upstreams: [], logger: quiet, policy: { _ in nil }, admit: { _, _ in })
                defer { r.stop() }
                return try r.start(host: "127.0.0.1", port: port)
            }
            #expect(again == port)
            #expect(silent.queries.load(ordering: .relaxed) >= 20)
        }
}

}

/// A UDP port of 127.0.0.1 nobody listens on (bound, read, closed).
private func closedUDPPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    guard bindSocket(fd, IPv4Address(127, 0, 0, 1), port: 0) else { throw BoxRuntimeError.system("bind", errno: dbx_errno()) }
    return boundPort(fd)
}
