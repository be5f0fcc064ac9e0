#if canImport(Glibc)
import Glibc
#endif

// IP addresses and networks for the boxes' egress policy and resolver.
//
// Parsing is strict, as inet_pton(3): IPv4 is exactly four decimal parts 0–255 without
// leading zeros ("010.1.1.1" is ambiguous between octal and decimal in other parsers, so it is
// refused), IPv6 is what glibc's inet_pton accepts (no zone ids, no brackets). Formatting is
// inet_ntop's (lower case, the longest run of zero groups compressed, `::ffff:a.b.c.d`).

/// An IPv4 address, host byte order.
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Dotted quad only: four parts of 1–3 digits, each 0–255, "0" but no other leading zero.
    public init?(_ text: some StringProtocol) {
        var result: UInt32 = 0
        var parts = 0
        var digits = 0
        var part: UInt32 = 0
        var leadingZero = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if leadingZero { return nil }
                if digits == 0 && byte == UInt8(ascii: "0") { leadingZero = true }
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                if digits > 3 || part > 255 { return nil }
            case UInt8(ascii: "."):
                guard digits > 0, parts < 3 else { return nil }
                result = result << 8 | part
                parts += 1
                digits = 0
                part = 0
                leadingZero = false
            default:
                return nil
            }
        }
        guard digits > 0, parts == 3 else { return nil }
        value = result << 8 | part
    }

    public var octets: [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value)]
    }

    public var description: String { octets.map(String.init).joined(separator: ".") }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv6 address; `value` holds its 16 bytes in network order as one big-endian number
/// (byte 0 is the most significant), so prefixes are plain shifts.
public struct IPv6Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: UInt128

    public init(_ value: UInt128) { self.value = value }

    /// The 16 bytes of the address in network order; nil unless exactly 16.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        value = bytes.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
    }

    /// inet_pton(AF_INET6) semantics.
    public init?(_ text: some StringProtocol) {
        // inet_pton stops at a NUL; anything but hex digits, ':' and '.' is refused first so an
        // embedded NUL (or a zone id, or brackets) cannot make a longer text parse as a prefix of it.
        guard !text.isEmpty, text.utf8.count <= 45, text.utf8.allSatisfy({ byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                 UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: ":"), UInt8(ascii: "."): return true
            default: return false
            }
        }) else { return nil }
        var raw = in6_addr()
        let ok = String(text).withCString { inet_pton(AF_INET6, $0, &raw) }
        guard ok == 1 else { return nil }
        value = withUnsafeBytes(of: raw) { $0.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } }
    }

    public var bytes: [UInt8] { (0..<16).map { UInt8(truncatingIfNeeded: value >> (8 * (15 - $0))) } }

    /// The IPv4 address of an IPv4-mapped address (::ffff:a.b.c.d).
    public var mappedIPv4: IPv4Address? {
        value >> 32 == 0xffff ? IPv4Address(UInt32(truncatingIfNeeded: value)) : nil
    }

    /// ::ffff:a.b.c.d
    public init(mapping v4: IPv4Address) { value = UInt128(0xffff) << 32 | UInt128(v4.value) }

    public var description: String {
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { dst in
            for (i, b) in bytes.enumerated() { dst[i] = b }
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        guard inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count)) != nil else {
            // Cannot fail with a large enough buffer; full form as a fallback all the same.
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (a: IPv6Address, b: IPv6Address) -> Bool { a.value < b.value }
}

/// An address of either family (a DNS answer's A or AAAA record, an upstream).
public enum IPAddressAny: Sendable, Hashable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// An IPv4 dotted quad or an IPv6 address.
    public init?(_ text: some StringProtocol) {
        if let a = IPv4Address(text) { self = .v4(a) } else if let a = IPv6Address(text) { self = .v6(a) } else { return nil }
    }

    public var description: String {
        switch self {
        case .v4(let a): return a.description
        case .v6(let a): return a.description
        }
    }

    /// Inside `IPNetwork.alwaysBlocked`.
    public var isAlwaysBlocked: Bool { IPNetwork.alwaysBlocked.contains { $0.contains(self) } }
}

/// Why a network (or address) text was refused; `message` is for people.
public struct IPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// An IPv4 or IPv6 network: an address with a prefix length and no host bits set.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public enum Address: Sendable, Hashable {
        case v4(IPv4Address)
        case v6(IPv6Address)
    }

    public let address: Address
    public let prefixLength: Int

    public init(_ address: IPv4Address, prefixLength: Int) throws(IPParseError) {
        try self.init(.v4(address), prefixLength: prefixLength)
    }

    public init(_ address: IPv6Address, prefixLength: Int) throws(IPParseError) {
        try self.init(.v6(address), prefixLength: prefixLength)
    }

    /// Refuses a prefix out of range and host bits set (`10.0.0.1/8`): such an entry is
    /// usually a typo, and silently widening or narrowing it would change what it admits.
    public init(_ address: Address, prefixLength: Int) throws(IPParseError) {
        let bits = address.isV4 ? 32 : 128
        guard (0...bits).contains(prefixLength) else {
            throw IPParseError(message: "prefix length \(prefixLength) is out of range 0–\(bits)")
        }
        self.address = address
        self.prefixLength = prefixLength
        guard hostBitsClear else {
            let network = IPNetwork(unchecked: address, prefixLength: prefixLength).masked
            throw IPParseError(message: "\(IPNetwork(unchecked: address, prefixLength: prefixLength)) has host bits set (the network is \(network))")
        }
    }

    private init(unchecked address: Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// `address/prefix`, or a bare address (a host: /32 or /128).
    public init(parsing text: some StringProtocol) throws(IPParseError) {
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw IPParseError(message: "\"\(text)\" is not a CIDR") }
        let address: Address
        if let a = IPv4Address(parts[0]) {
            address = .v4(a)
        } else if let a = IPv6Address(parts[0]) {
            address = .v6(a)
        } else {
            throw IPParseError(message: "\"\(parts[0])\" is not an IPv4 or IPv6 address")
        }
        var prefix = address.isV4 ? 32 : 128
        if parts.count == 2 {
            let p = parts[1]
            // Decimal digits only, no sign, no leading zero: "/08" or "/+8" are refused like inet_pton refuses "010".
            guard !p.isEmpty, p.utf8.count <= 3, p.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                  p == "0" || !p.hasPrefix("0"), let n = Int(p)
            else { throw IPParseError(message: "\"\(p)\" is not a prefix length") }
            prefix = n
        }
        try self.init(address, prefixLength: prefix)
    }

    public var isV4: Bool { address.isV4 }

    /// Canonical text: `10.0.0.0/8`, `2001:db8::/32`; a host keeps its /32 or /128.
    public var description: String {
        switch address {
        case .v4(let a): return "\(a)/\(prefixLength)"
        case .v6(let a): return "\(a)/\(prefixLength)"
        }
    }

    public func contains(_ ip: IPAddressAny) -> Bool {
        switch (address, ip) {
        case (.v4(let n), .v4(let a)): return IPNetwork.mask32(prefixLength) & a.value == n.value
        case (.v6(let n), .v6(let a)): return IPNetwork.mask128(prefixLength) & a.value == n.value
        default: return false
        }
    }

    public func contains(_ ip: IPv4Address) -> Bool { contains(.v4(ip)) }
    public func contains(_ ip: IPv6Address) -> Bool { contains(.v6(ip)) }

    /// Every address of `other` is in this network (same family).
    public func contains(_ other: IPNetwork) -> Bool {
        other.prefixLength >= prefixLength && contains(other.firstAddress)
    }

    /// The two networks share at least one address (same family): one contains the other.
    public func overlaps(_ other: IPNetwork) -> Bool { contains(other) || other.contains(self) }

    public var firstAddress: IPAddressAny {
        switch address {
        case .v4(let a): return .v4(a)
        case .v6(let a): return .v6(a)
        }
    }

    /// The two halves of this network (nil for a single address).
    var halves: (IPNetwork, IPNetwork)? {
        switch address {
        case .v4(let a):
            guard prefixLength < 32 else { return nil }
            let high = IPv4Address(a.value | UInt32(1) << (31 - prefixLength))
            return (IPNetwork(unchecked: .v4(a), prefixLength: prefixLength + 1),
                    IPNetwork(unchecked: .v4(high), prefixLength: prefixLength + 1))
        case .v6(let a):
            guard prefixLength < 128 else { return nil }
            let high = IPv6Address(a.value | UInt128(1) << (127 - prefixLength))
            return (IPNetwork(unchecked: .v6(a), prefixLength: prefixLength + 1),
                    IPNetwork(unchecked: .v6(high), prefixLength: prefixLength + 1))
        }
    }

    /// Every address of this network is inside `IPNetwork.alwaysBlocked` (possibly across
    /// several adjacent ranges, e.g. 224.0.0.0/3 = 224/4 + 240/4). Such a policy entry could
    /// never take effect, so it is refused rather than accepted and silently ignored.
    public var isInsideAlwaysBlocked: Bool {
        func covered(_ n: IPNetwork) -> Bool {
            if IPNetwork.alwaysBlocked.contains(where: { $0.contains(n) }) { return true }
            // Only a network that partly overlaps a blocked range can still be covered by
            // several; the recursion therefore follows at most a few boundaries per level.
            guard IPNetwork.alwaysBlocked.contains(where: { n.contains($0) }), let (lo, hi) = n.halves else { return false }
            return covered(lo) && covered(hi)
        }
        return covered(self)
    }

    private var hostBitsClear: Bool {
        switch address {
        case .v4(let a): return a.value & ~IPNetwork.mask32(prefixLength) == 0
        case .v6(let a): return a.value & ~IPNetwork.mask128(prefixLength) == 0
        }
    }

    private var masked: IPNetwork {
        switch address {
        case .v4(let a): return IPNetwork(unchecked: .v4(IPv4Address(a.value & IPNetwork.mask32(prefixLength))), prefixLength: prefixLength)
        case .v6(let a): return IPNetwork(unchecked: .v6(IPv6Address(a.value & IPNetwork.mask128(prefixLength))), prefixLength: prefixLength)
        }
    }

    static func mask32(_ prefix: Int) -> UInt32 { prefix == 0 ? 0 : ~UInt32(0) << (32 - prefix) }
    static func mask128(_ prefix: Int) -> UInt128 { prefix == 0 ? 0 : ~UInt128(0) << (128 - prefix) }

    private static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ prefix: Int) -> IPNetwork {
        IPNetwork(unchecked: .v4(IPv4Address(a, b, c, d)), prefixLength: prefix)
    }

    /// The IPv4 ranges no box may ever reach, whatever its policy. Disjoint (nftables interval
    /// sets refuse overlapping elements without auto-merge); the limited broadcast address
    /// 255.255.255.255 is inside 240.0.0.0/4.
    public static let alwaysBlockedIPv4: [IPNetwork] = [
        v4(0, 0, 0, 0, 8),          // "this network"
        v4(10, 0, 0, 0, 8),         // RFC 1918
        v4(100, 64, 0, 0, 10),      // CGNAT (RFC 6598)
        v4(127, 0, 0, 0, 8),        // loopback
        v4(169, 254, 0, 0, 16),     // link-local, cloud metadata services
        v4(172, 16, 0, 0, 12),      // RFC 1918
        v4(192, 168, 0, 0, 16),     // RFC 1918
        v4(224, 0, 0, 0, 4),        // multicast
        v4(240, 0, 0, 0, 4),        // reserved, broadcast
    ]

    /// The IPv6 ranges no box may ever reach: ::/128, ::1/128, unique-local, link-local,
    /// multicast, and the IPv4-mapped form (::ffff:0:0/96) of every IPv4 range above. Disjoint.
    public static let alwaysBlockedIPv6: [IPNetwork] = {
        var list = [
            IPNetwork(unchecked: .v6(IPv6Address(0)), prefixLength: 128),              // unspecified
            IPNetwork(unchecked: .v6(IPv6Address(1)), prefixLength: 128),              // loopback
            IPNetwork(unchecked: .v6(IPv6Address(UInt128(0xfc00) << 112)), prefixLength: 7),   // unique-local
            IPNetwork(unchecked: .v6(IPv6Address(UInt128(0xfe80) << 112)), prefixLength: 10),  // link-local
            IPNetwork(unchecked: .v6(IPv6Address(UInt128(0xff00) << 112)), prefixLength: 8),   // multicast
        ]
        for n in alwaysBlockedIPv4 {
            guard case .v4(let a) = n.address else { continue }
            list.append(IPNetwork(unchecked: .v6(IPv6Address(mapping: a)), prefixLength: 96 + n.prefixLength))
        }
        return list
    }()

    /// Every always-blocked range, IPv4 first. The resolver never admits an address inside
    /// one, policies cannot name one, and nftables drops a box's traffic to them first.
    public static let alwaysBlocked: [IPNetwork] = alwaysBlockedIPv4 + alwaysBlockedIPv6
}

extension IPNetwork.Address {
    public var isV4: Bool { if case .v4 = self { return true } else { return false } }
}
