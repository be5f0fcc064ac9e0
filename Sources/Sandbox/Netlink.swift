import CDevbox
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Per-box network plumbing over rtnetlink (Sources/CDevbox/netlink.c): a veth pair from
// the host into a box's network namespace, its addresses and routes. No iproute2
// processes: attaching a box is a dozen netlink round trips, well under 2 ms.
//
// IPv4 addresses are `UInt32` in host byte order (10.200.0.2 is 0x0AC80002).

/// One IPv4 route of the main routing table.
public struct IPv4Route: Sendable, Equatable, CustomStringConvertible {
    /// Route types (rtm_type).
    public static let unicast: UInt8 = 1        // RTN_UNICAST
    public static let local: UInt8 = 2          // RTN_LOCAL
    public static let unreachable: UInt8 = 7    // RTN_UNREACHABLE
    /// Route protocols (rtm_protocol) the kernel and iproute2 use; private owners pick
    /// a number of their own above these (see /etc/iproute2/rt_protos).
    public static let protocolKernel: UInt8 = 2 // RTPROT_KERNEL: made by an address
    public static let protocolBoot: UInt8 = 3   // RTPROT_BOOT: `ip route add` default
    public static let protocolStatic: UInt8 = 4 // RTPROT_STATIC
    /// Scopes (rtm_scope).
    public static let scopeUniverse: UInt8 = 0
    public static let scopeLink: UInt8 = 253

    public var destination: UInt32
    public var prefixLength: UInt8
    public var type: UInt8
    /// Who made the route (rtm_protocol).
    public var protocolNumber: UInt8
    /// Output interface index; 0: none (an unreachable route, say).
    public var outputInterface: Int32
    /// 0: no gateway (on-link or unreachable).
    public var gateway: UInt32
    public var scope: UInt8

    public init(destination: UInt32, prefixLength: UInt8, type: UInt8, protocolNumber: UInt8,
                outputInterface: Int32 = 0, gateway: UInt32 = 0, scope: UInt8 = 0) {
        self.destination = destination
        self.prefixLength = prefixLength
        self.type = type
        self.protocolNumber = protocolNumber
        self.outputInterface = outputInterface
        self.gateway = gateway
        self.scope = scope
    }

    public var description: String {
        var s = type == Self.unreachable ? "unreachable " : (type == Self.unicast ? "" : "type \(type) ")
        s += "\(dottedQuad(destination))/\(prefixLength)"
        if gateway != 0 { s += " via \(dottedQuad(gateway))" }
        if outputInterface != 0 { s += " oif \(outputInterface)" }
        return s + " proto \(protocolNumber) scope \(scope)"
    }
}

/// Dotted-quad text of a host-byte-order IPv4 address (for messages).
private func dottedQuad(_ a: UInt32) -> String {
    "\(a >> 24).\((a >> 16) & 0xff).\((a >> 8) & 0xff).\(a & 0xff)"
}

/// NETLINK_ROUTE (linux/netlink.h), which Swift's Glibc module does not export.
private let netlinkRoute: Int32 = 0

/// Throws `invalidArgument` unless `name` is a valid interface name: 1 to 15 bytes
/// (IFNAMSIZ with its NUL), not "." or "..", without '/', ':', NUL or whitespace (the
/// kernel's dev_valid_name rules, checked here so the error names the culprit).
public func validateInterfaceName(_ name: String) throws {
    let bytes = Array(name.utf8)
    guard (1...Int(DBX_IFNAMSIZ) - 1).contains(bytes.count), name != ".", name != "..",
          !bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7f })
    else { throw BoxRuntimeError.invalidArgument("interface name \"\(name)\" (1 to 15 bytes, no '/', ':' or spaces)") }
}

/// A NETLINK_ROUTE socket bound to one network namespace for its whole life: the
/// caller's (`init()`) or a box's. Requests are synchronous (each waits for the kernel's
/// ack), so a socket must not be shared by concurrent callers. Closed on deinit.
public final class NetlinkSocket {
    public let fd: Int32

    /// A socket in the calling thread's network namespace (the host's).
    public init() throws {
        let fd = dbx_nl_open()
        if fd < 0 { throw BoxRuntimeError.system("netlink socket", errno: -fd) }
        self.fd = fd
    }

    /// A socket in the network namespace of `pid` (a box's init): it configures that
    /// namespace, not the host's.
    public convenience init(netnsOf pid: pid_t) throws {
        let nsfd = try openNetnsFD(pid: pid)
        defer { closeFD(nsfd) }
        try self.init(netnsFD: nsfd)
    }

    /// A socket in the network namespace `nsfd` (an open `/proc/<pid>/ns/net` or
    /// `/run/netns/<name>`; not consumed).
    public init(netnsFD nsfd: Int32) throws {
        let fd = dbx_socket_in_netns(nsfd, AF_NETLINK, Int32(SOCK_RAW.rawValue), netlinkRoute)
        if fd < 0 { throw BoxRuntimeError.system("netlink socket in a network namespace", errno: -fd) }
        self.fd = fd
    }

    deinit { closeFD(fd) }

    /// The ifindex of the link `name`; throws `.system(_, errno: ENODEV)` if there is none.
    public func linkIndex(_ name: String) throws -> Int32 {
        try validateInterfaceName(name)
        let rc = dbx_nl_link_index(fd, name)
        if rc < 0 { throw BoxRuntimeError.system("netlink: link \(name)", errno: -rc) }
        return rc
    }

    public func setLinkUp(index: Int32) throws {
        let rc = dbx_nl_link_set_up(fd, index)
        if rc < 0 { throw BoxRuntimeError.system("netlink: set link \(index) up", errno: -rc) }
    }

    /// Deletes the link `name` (both ends of a veth). Returns false if there was none.
    @discardableResult
    public func deleteLink(_ name: String) throws -> Bool {
        try validateInterfaceName(name)
        let rc = dbx_nl_link_delete(fd, name)
        if rc == -ENODEV { return false }
        if rc < 0 { throw BoxRuntimeError.system("netlink: delete link \(name)", errno: -rc) }
        return true
    }

    /// Names of this namespace's links that start with `prefix` ("" for all).
    public func linkNames(withPrefix prefix: String) throws -> [String] {
        var capacity = 64
        while true {
            let slot = Int(DBX_IFNAMSIZ)
            var buf = [CChar](repeating: 0, count: capacity * slot)
            let n = buf.withUnsafeMutableBufferPointer { dbx_nl_link_names(fd, prefix, $0.baseAddress, Int32(capacity)) }
            if n < 0 { throw BoxRuntimeError.system("netlink: list links", errno: -n) }
            // More links than slots: the count is exact, so one more dump with room for all
            // (plus some, in case links appear in between) suffices in the common case.
            if Int(n) > capacity { capacity = Int(n) + 16; continue }
            return (0..<Int(n)).map { i in
                buf[(i * slot)..<((i + 1) * slot)].withUnsafeBufferPointer { p in
                    String(decoding: p.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                }
            }
        }
    }

    /// Creates a veth pair: `hostName` in this socket's namespace, `peerName` directly in
    /// the namespace `peerNetnsFD` (-1: this socket's namespace too; both ends down). Throws `.system(_, errno: EEXIST)` if either
    /// name is taken.
    public func createVeth(hostName: String, peerName: String, peerNetnsFD: Int32) throws {
        try validateInterfaceName(hostName)
        try validateInterfaceName(peerName)
        let rc = dbx_nl_veth_create(fd, hostName, peerName, peerNetnsFD)
        if rc < 0 { throw BoxRuntimeError.system("netlink: create veth \(hostName) ↔ \(peerName)", errno: -rc) }
    }

    public func addAddress(_ address: UInt32, prefixLength: UInt8, index: Int32) throws {
        let rc = dbx_nl_addr_add4(fd, index, address, prefixLength)
        if rc < 0 {
            throw BoxRuntimeError.system("netlink: add address \(dottedQuad(address))/\(prefixLength) to link \(index)", errno: -rc)
        }
    }

    /// Adds a main-table route. `type` `IPv4Route.unicast` (with a `gateway` and/or an
    /// `outputInterface`) or `IPv4Route.unreachable` (neither). `replace`: a route of that
    /// prefix is replaced (`ip route replace`) instead of failing with EEXIST.
    public func addRoute(destination: UInt32, prefixLength: UInt8, gateway: UInt32 = 0, outputInterface: Int32 = 0,
                         type: UInt8, protocol proto: UInt8, replace: Bool = false) throws {
        let rc = dbx_nl_route_add4(fd, destination, prefixLength, gateway, outputInterface, type, proto, replace ? 1 : 0)
        if rc < 0 {
            let r = IPv4Route(destination: destination, prefixLength: prefixLength, type: type, protocolNumber: proto,
                              outputInterface: outputInterface, gateway: gateway)
            throw BoxRuntimeError.system("netlink: add route \(r)", errno: -rc)
        }
    }

    /// Deletes the main-table route of that destination, type and protocol; throws
    /// `.system(_, errno: ESRCH)` if there is none (another owner's route is kept).
    public func deleteRoute(destination: UInt32, prefixLength: UInt8, type: UInt8, protocol proto: UInt8) throws {
        let rc = dbx_nl_route_del4(fd, destination, prefixLength, type, proto)
        if rc < 0 {
            throw BoxRuntimeError.system("netlink: delete route \(dottedQuad(destination))/\(prefixLength)", errno: -rc)
        }
    }

    /// The IPv4 routes of the main table.
    public func routes() throws -> [IPv4Route] {
        var capacity = 128
        while true {
            var buf = [dbx_route4](repeating: dbx_route4(), count: capacity)
            let n = buf.withUnsafeMutableBufferPointer { dbx_nl_route_dump4(fd, $0.baseAddress, Int32(capacity)) }
            if n < 0 { throw BoxRuntimeError.system("netlink: dump routes", errno: -n) }
            if Int(n) > capacity { capacity = Int(n) + 64; continue }
            return buf.prefix(Int(n)).map {
                IPv4Route(destination: $0.dst, prefixLength: $0.dst_len, type: $0.type, protocolNumber: $0.protocol,
                          outputInterface: $0.oif, gateway: $0.gateway, scope: $0.scope)
            }
        }
    }
}

/// Opens `/proc/<pid>/ns/net` (close-on-exec). The descriptor pins the namespace: every
/// step of one operation acts on the same namespace even if `pid` exits meanwhile.
private func openNetnsFD(pid: pid_t) throws -> Int32 {
    guard pid > 0 else { throw BoxRuntimeError.invalidArgument("pid \(pid)") }
    let nsfd = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
    if nsfd < 0 { throw sysError("open /proc/\(pid)/ns/net") }
    return nsfd
}

/// Wiring of one box's network namespace to the host: a veth pair whose host end holds
/// the box subnet's gateway address and whose box end (`eth0`) holds the box's address
/// and a default route through the gateway. Forwarding, NAT and filtering are not here.
public enum BoxNetPlumbing {
    /// Name of the box's end of the pair, inside its namespace.
    public static let boxInterfaceName = "eth0"

    /// Wires the network namespace of `initPid` (a box's init) to the host:
    /// - veth `hostName` (host) ↔ `eth0` (created directly in the box's namespace);
    /// - host end: IPv6 disabled (so the box has no IPv6 path to the host; best effort),
    ///   `gateway/prefixLength`, up;
    /// - box: `lo` up, `eth0` `boxAddress/prefixLength`, up, default route via `gateway`.
    /// If a step fails after the pair exists, the pair is deleted before throwing. If
    /// creating the pair fails (`EEXIST`: `hostName` is taken, e.g. a leftover of a
    /// crash), nothing is deleted: that link is not this call's; `detach` it first.
    /// Blocking (a dozen netlink round trips); the calling thread briefly enters the
    /// box's namespace to create a socket there.
    public static func attach(initPid: pid_t, hostName: String, boxAddress: UInt32, gateway: UInt32,
                              prefixLength: UInt8) throws {
        try validateArguments(hostName: hostName, boxAddress: boxAddress, gateway: gateway, prefixLength: prefixLength)
        let nsfd = try openNetnsFD(pid: initPid)
        defer { closeFD(nsfd) }
        try attach(netnsFD: nsfd, hostName: hostName, boxAddress: boxAddress, gateway: gateway, prefixLength: prefixLength)
    }

    /// `attach` for a namespace already open (`nsfd`: `/proc/<pid>/ns/net` opened while a
    /// pidfd pins the pid, or `/run/netns/<name>`; not consumed).
    public static func attach(netnsFD nsfd: Int32, hostName: String, boxAddress: UInt32, gateway: UInt32,
                              prefixLength: UInt8) throws {
        try validateArguments(hostName: hostName, boxAddress: boxAddress, gateway: gateway, prefixLength: prefixLength)
        // A namespace that is the host's own (a box started with host networking) would get
        // an `eth0` and a default route added to the host itself.
        var target = stat(), mine = stat()
        if fstat(nsfd, &target) == 0, stat("/proc/thread-self/ns/net", &mine) == 0,
           target.st_dev == mine.st_dev, target.st_ino == mine.st_ino {
            throw BoxRuntimeError.invalidArgument("the namespace to attach is the host's own network namespace")
        }
        let host = try NetlinkSocket()
        try host.createVeth(hostName: hostName, peerName: boxInterfaceName, peerNetnsFD: nsfd)
        do {
            // Before the link is up, so it never gets an IPv6 link-local address.
            rtnlHolders.withLock { _ in disableIPv6(hostName) }
            let hostIndex = try host.linkIndex(hostName)
            try host.addAddress(gateway, prefixLength: prefixLength, index: hostIndex)
            try host.setLinkUp(index: hostIndex)

            let box = try NetlinkSocket(netnsFD: nsfd)
            try box.setLinkUp(index: try box.linkIndex("lo"))
            let eth0 = try box.linkIndex(boxInterfaceName)
            try box.addAddress(boxAddress, prefixLength: prefixLength, index: eth0)
            try box.setLinkUp(index: eth0)
            try box.addRoute(destination: 0, prefixLength: 0, gateway: gateway, outputInterface: eth0,
                             type: IPv4Route.unicast, protocol: IPv4Route.protocolStatic)
        } catch {
            _ = try? host.deleteLink(hostName)
            throw error
        }
    }

    private static func validateArguments(hostName: String, boxAddress: UInt32, gateway: UInt32,
                                          prefixLength: UInt8) throws {
        try validateInterfaceName(hostName)
        guard (1...31).contains(prefixLength) else {
            throw BoxRuntimeError.invalidArgument("prefix length \(prefixLength) (1 to 31)")
        }
        let mask: UInt32 = ~0 << (32 - UInt32(prefixLength))
        guard boxAddress != gateway, boxAddress & mask == gateway & mask else {
            throw BoxRuntimeError.invalidArgument(
                "box address \(dottedQuad(boxAddress)) and gateway \(dottedQuad(gateway)) are not two addresses of one /\(prefixLength)")
        }
    }

    /// Deletes the host end `hostName` (and with it the box's `eth0`). Idempotent: an
    /// absent link, or an invalid name, is nothing to do. Takes ~15-20 ms: the kernel
    /// waits for RCU grace periods while unregistering the pair.
    public static func detach(hostName: String) {
        guard let host = try? NetlinkSocket() else { return }
        rtnlHolders.withLock { _ in _ = try? host.deleteLink(hostName) }
    }

    /// Taken around a link's deletion and around `disableIPv6`. The kernel holds the RTNL
    /// lock while it unregisters a link (an RCU grace period included), and a write to
    /// `disable_ipv6` that finds RTNL taken does not sleep: it restarts the system call
    /// until RTNL is free. With creates and deletes running together (issue 21's churn)
    /// that spin took a tenth of the service's CPU; behind this lock a create waits for
    /// this process's own deletions asleep. (RTNL held elsewhere, e.g. by the kernel
    /// cleaning up a dead box's namespace, can still make the write spin.)
    static let rtnlHolders = Mutex(())

    /// Names of the host's links that start with `prefix` ([] if they cannot be listed).
    public static func links(withPrefix prefix: String) -> [String] {
        guard let host = try? NetlinkSocket(), let names = try? host.linkNames(withPrefix: prefix) else { return [] }
        return names
    }

    /// The host's IPv4 routes of the main table.
    public static func routes() throws -> [IPv4Route] {
        try NetlinkSocket().routes()
    }

    /// Adds an unreachable route `destination/prefixLength` tagged `protocol` to the
    /// host's main table: a claim of a whole range (traffic to an address of it that no
    /// box holds gets an ICMP unreachable instead of leaving by the default route; the
    /// boxes' own /N subnets are more specific and win). Throws EEXIST if a route of that
    /// prefix exists, unless `replace` (then it becomes this claim, like `ip route replace`).
    public static func addRoute(unreachable destination: UInt32, prefixLength: UInt8, protocol proto: UInt8,
                                replace: Bool = false) throws {
        try NetlinkSocket().addRoute(destination: destination, prefixLength: prefixLength,
                                     type: IPv4Route.unreachable, protocol: proto, replace: replace)
    }

    /// Deletes that claim (only a route with this protocol number); throws ESRCH if absent.
    public static func deleteRoute(unreachable destination: UInt32, prefixLength: UInt8, protocol proto: UInt8) throws {
        try NetlinkSocket().deleteRoute(destination: destination, prefixLength: prefixLength,
                                        type: IPv4Route.unreachable, protocol: proto)
    }

    /// A socket (close-on-exec; the caller closes it) created in the network namespace of
    /// `pid`: an AF_INET one connects from inside the box, e.g. to its 127.0.0.1 ports.
    public static func openSocket(inNetnsOf pid: pid_t, domain: Int32, type: Int32) throws -> Int32 {
        let nsfd = try openNetnsFD(pid: pid)
        defer { closeFD(nsfd) }
        let fd = dbx_socket_in_netns(nsfd, domain, type, 0)
        if fd < 0 { throw BoxRuntimeError.system("socket in the network namespace of \(pid)", errno: -fd) }
        return fd
    }

    /// Writes "1" to /proc/sys/net/ipv6/conf/<name>/disable_ipv6; best effort (a kernel
    /// without IPv6 has no such file and no IPv6 path either).
    static func disableIPv6(_ name: String) {
        let fd = open("/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", O_WRONLY | O_CLOEXEC)
        if fd < 0 { return }
        _ = writeAll(fd: fd, Array("1\n".utf8))
        closeFD(fd)
    }
}
