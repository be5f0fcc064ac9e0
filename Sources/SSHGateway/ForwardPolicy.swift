import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Which `direct-tcpip` targets (`ssh -L`) the gateway connects to. Boxes share the host's
/// network namespace, so a port "inside the box" is a port on the host's loopback: only
/// loopback targets are allowed, and never the service's own ports.
struct ForwardPolicy: Sendable {
    var deniedPorts: Set<Int>

    /// The addresses to try in order, or nil when the target is refused.
    func addresses(host: String, port: Int) -> [SocketAddress]? {
        guard (1...65535).contains(port), !deniedPorts.contains(port) else { return nil }
        var h = host.lowercased()
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        if h.hasSuffix(".") { h.removeLast() }
        let ips: [String]
        if h == "localhost" {
            ips = ["127.0.0.1", "::1"]
        } else if let ip = Self.loopbackLiteral(h) {
            ips = [ip]
        } else {
            return nil
        }
        return ips.compactMap { try? SocketAddress(ipAddress: $0, port: port) }
    }

    /// A loopback IP literal in canonical form: 127.0.0.0/8, ::1, or an IPv4-mapped 127/8.
    static func loopbackLiteral(_ s: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 {
            let first = UInt8(truncatingIfNeeded: UInt32(bigEndian: v4.s_addr) >> 24)
            return first == 127 ? canonical(AF_INET, &v4) : nil
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, s, &v6) == 1 else { return nil }
        let b = withUnsafeBytes(of: &v6) { Array($0) }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return "::1" }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff && b[12] == 127 {
            return "\(b[12]).\(b[13]).\(b[14]).\(b[15])"
        }
        return nil
    }

    /// `addr` is an `in_addr` or `in6_addr` (plain C structs, no references).
    private static func canonical<T: BitwiseCopyable>(_ family: Int32, _ addr: inout T) -> String? {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = withUnsafeBytes(of: &addr) { raw in inet_ntop(family, raw.baseAddress, &buf, socklen_t(buf.count)) != nil }
        guard ok else { return nil }
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
