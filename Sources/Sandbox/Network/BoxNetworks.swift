import CDevbox
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Every box on a network of its own (SandboxNetwork.isolated).
//
// Data path of one box (slot s of the service's range, a /16 by default):
//
//   box netns                         host netns
//   eth0 <range>+4s+2/30  ── veth ──  <tag><s base36>  <range>+4s+1/30 (the box's gateway)
//   default via +4s+1                 route <range>+4s/30 dev <tag><s> (kernel, from the address)
//
// The kernel routes between the box and the host; one nftables table of the service's
// own (`inet <tag>`) is the whole policy, and its chains match box interfaces by name
// (`iifname "<tag>*"`), so host traffic never touches them and a box needs no rule of
// its own (a policy other than allow_all is a few set elements):
//
//   prerouting (raw)  a box packet whose source the box's own veth would not route back
//                     to (strict reverse path) is dropped: no box speaks for another.
//   prerouting (nat)  port 53 of any address, UDP and TCP → the service's resolver
//                     (`redirect`: the box's gateway address, the resolver's port).
//   input             from a box: established replies, the resolver's port and the ports
//                     the service offers boxes (the credential broker later); everything
//                     else is refused — every address of the host, on any interface.
//                     The resolver's port answers nobody else (a forged box source from
//                     another interface would otherwise get an answer sent to a box).
//   forward           box → anywhere: the always-blocked ranges (loopback, RFC 1918, CGNAT,
//                     link-local, multicast/reserved, the service's range, the host's
//                     on-link subnets and gateways) refused; IPv6 refused (boxes have none);
//                     then the box's egress policy (deny4, then for deny_all boxes allow4 /
//                     dyn4, the addresses its resolver admitted for their TTL); accept.
//                     Anything → box: only replies.
//   postrouting (nat) box traffic leaving through another interface is masqueraded.
//   Refusals are TCP resets or ICMP port-unreachable, so a connect fails at once.
//
// The ruleset is replaced in one nft transaction at start (`install`), so the previous
// run's rules guard adopted boxes until the new ones take over; the box links outlive
// the service (a box's network belongs to the box: its netns dies with it, and the host
// end with its netns). The range is claimed with an unreachable route of protocol 219
// (which also answers traffic to unassigned box addresses at once): another serve sees
// the route and picks another range. The choice is kept in `<state>/.network`.

/// Per-box networks of one runtime.
final class BoxNetworks: Sendable {
    /// Interface name prefix and nft table name: exactly 10 characters, so one tag's
    /// wildcard never matches another tag's interfaces.
    let tag: String
    let stateDirectory: String
    let requestedRange: IPv4Range?
    let upstreams: [(address: String, port: UInt16)]
    let offeredPorts: @Sendable () -> [UInt16]
    let logger: Logger
    let nftPath: String

    struct State {
        var range: IPv4Range?
        /// slot → box name
        var slots: [Int: String] = [:]
        /// box name → slot
        var slotOf: [String: Int] = [:]
        var nextSlot = 1
        /// box address → its policy (absent: allow_all)
        var policies: [UInt32: EgressPolicy] = [:]
        /// box addresses whose resolver admitted addresses since start
        var admitted: Set<UInt32> = []
        var installed = false
        var dnsPort: UInt16 = 0
    }
    let state = Mutex(State())
    let resolverBox = Mutex<BoxDNSResolver?>(nil)

    static let claimProtocol: UInt8 = 219
    static let prefixLength: UInt8 = 30

    init(stateDirectory: String, cgroupParent: String, requestedRange: IPv4Range?,
         upstreams: [(address: String, port: UInt16)], offeredPorts: @escaping @Sendable () -> [UInt16],
         logger: Logger) {
        self.tag = BoxNetworks.tag(for: cgroupParent)
        self.stateDirectory = stateDirectory
        self.requestedRange = requestedRange
        self.upstreams = upstreams
        self.offeredPorts = offeredPorts
        self.logger = logger
        self.nftPath = resolveExecutable("nft")
    }

    static func tag(for cgroupParent: String) -> String {
        let hex = cgroupParent.dropFirst(2)
        if cgroupParent.hasPrefix("dx"), hex.count == 8, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            return cgroupParent
        }
        var h: UInt32 = 2_166_136_261
        for b in cgroupParent.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        let s = String(h, radix: 16)
        return "dx" + String(repeating: "0", count: 8 - s.count) + s
    }

    var tableName: String { tag }
    var markerPath: String { stateDirectory + "/.network" }

    // MARK: slots and addresses

    func interfaceName(slot: Int) -> String { tag + String(slot, radix: 36) }

    struct Link: Sendable {
        let slot: Int
        let hostName: String
        let box: UInt32
        let gateway: UInt32
    }

    func link(slot: Int, range: IPv4Range) -> Link {
        let base = range.network &+ UInt32(slot) &* 4
        return Link(slot: slot, hostName: interfaceName(slot: slot), box: base &+ 2, gateway: base &+ 1)
    }

    func link(of name: String) -> Link? {
        state.withLock { s in
            guard let slot = s.slotOf[name], let range = s.range else { return nil }
            return link(slot: slot, range: range)
        }
    }

    /// Records the slots of boxes that exist on disk (`<box dir>/net`).
    func loadSlots(boxes: [(name: String, directory: String)]) {
        state.withLock { s in
            for (name, dir) in boxes {
                guard let text = readSmallFile(dir + "/net"),
                    let slot = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), slot > 0
                else { continue }
                s.slots[slot] = name
                s.slotOf[name] = slot
            }
        }
    }

    /// Gives `name` a free slot and writes it to `<dir>/net`. Slots are handed out round
    /// robin, so an address is reused as late as possible.
    func allocate(name: String, directory: String) throws -> Link {
        let l: Link = try state.withLock { s in
            guard let range = s.range else { throw BoxRuntimeError.invalidArgument("box networks are not prepared") }
            if let slot = s.slotOf[name] { return link(slot: slot, range: range) }
            let count = range.slotCount
            guard count > 1, s.slots.count < count - 1 else {
                throw BoxRuntimeError.invalidArgument("no free box address left in \(range)")
            }
            var slot = s.nextSlot
            while s.slots[slot] != nil || slot < 1 || slot >= count { slot = slot + 1 >= count ? 1 : slot + 1 }
            s.nextSlot = slot + 1 >= count ? 1 : slot + 1
            s.slots[slot] = name
            s.slotOf[name] = slot
            return link(slot: slot, range: range)
        }
        let fd = open(directory + "/net", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("open net") }
        defer { closeFD(fd) }
        if !writeAll(fd: fd, Array("\(l.slot)\n".utf8)) { throw sysError("write net") }
        return l
    }

    /// The box's `/etc/resolv.conf`: its gateway, where the service's resolver answers.
    func resolvConf(_ l: Link) -> [UInt8] {
        Array("# devbox: the service's resolver (every DNS query of this box goes there)\nnameserver \(ipv4String(l.gateway))\noptions edns0\n".utf8)
    }

    /// Wires a running box's netns to the host (see the file comment).
    func attach(name: String, initPid: pid_t) throws {
        guard let l = link(of: name) else { throw BoxRuntimeError.invalidArgument("box \(name) has no network slot") }
        BoxNetPlumbing.detach(hostName: l.hostName)  // a stale link of a crashed box
        try BoxNetPlumbing.attach(initPid: initPid, hostName: l.hostName, boxAddress: l.box, gateway: l.gateway,
                                  prefixLength: Self.prefixLength)
    }

    /// Removes the host end (the box's netns is gone or going). Keeps the slot.
    func detach(name: String) {
        if let l = link(of: name) { BoxNetPlumbing.detach(hostName: l.hostName) }
    }

    /// Frees the slot of a destroyed box: link, policy elements, admitted addresses.
    func release(name: String) {
        guard let l = link(of: name) else { return }
        BoxNetPlumbing.detach(hostName: l.hostName)
        let (policy, admitted, installed) = state.withLock { s -> (EgressPolicy?, Bool, Bool) in
            s.slots[l.slot] = nil
            s.slotOf[name] = nil
            let p = s.policies.removeValue(forKey: l.box)
            let a = s.admitted.remove(l.box) != nil
            return (p, a, s.installed)
        }
        if installed {
            var batch = ""
            if let policy { batch += elements(of: policy, box: l.box, verb: "delete") }
            if !batch.isEmpty { try? runNft(batch) }
            if admitted || policy?.egress == .denyAll { removeAdmitted(box: l.box) }
        }
    }

    /// Deletes host links of ours whose box is not kept (a crash, a reboot's leftovers).
    func sweepLinks() -> [String] {
        let owned = state.withLock { s in Set(s.slots.keys.map { interfaceName(slot: $0) }) }
        var removed: [String] = []
        for name in BoxNetPlumbing.links(withPrefix: tag) where !owned.contains(name) {
            BoxNetPlumbing.detach(hostName: name)
            removed.append(name)
        }
        return removed
    }

    /// Forgets the slots of boxes that are not kept (their directories were removed).
    func forget(keeping names: Set<String>) {
        state.withLock { s in
            for (name, slot) in s.slotOf where !names.contains(name) {
                s.slotOf[name] = nil
                s.slots[slot] = nil
            }
        }
    }

    // MARK: the range

    /// Chooses (or takes back) the service's range and claims it; turns on IPv4 forwarding.
    func prepare() throws {
        if state.withLock({ $0.range }) != nil { return }
        let lockFD = open("/run/devbox-network.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if lockFD < 0 { throw sysError("open /run/devbox-network.lock") }
        defer { closeFD(lockFD) }
        while flock(lockFD, LOCK_EX) != 0 { if lastErrno() != EINTR { throw sysError("flock") } }
        let routes = HostRoutes.read()
        let persisted = readSmallFile(markerPath).flatMap { IPv4Range(parsing: $0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        // Routes that are ours: the claim of the persisted range and our box links.
        func foreign(_ r: HostRoutes.Route) -> Bool {
            if r.interface.hasPrefix(tag) { return false }
            if let persisted, r.reject, r.network == persisted.network, r.prefixLength == persisted.prefixLength { return false }
            return true
        }
        let others = routes.filter(foreign)
        let addresses = HostRoutes.localIPv4Addresses().filter { !$0.interface.hasPrefix(tag) }.map(\.address)
        func clash(_ range: IPv4Range) -> String? {
            for r in others where r.prefixLength > 0 && range.overlaps(network: r.network, prefixLength: r.prefixLength) {
                return "the route \(ipv4String(r.network))/\(r.prefixLength) dev \(r.interface)"
            }
            for a in addresses where range.contains(a) { return "the host address \(ipv4String(a))" }
            return nil
        }
        var chosen: IPv4Range
        if let requested = requestedRange {
            if let c = clash(requested) {
                throw BoxRuntimeError.invalidArgument("DEVBOX_NETWORK_CIDR \(requested) overlaps \(c); choose a range no host route or address uses")
            }
            chosen = requested
        } else if let persisted, clash(persisted) == nil {
            chosen = persisted
        } else {
            guard let free = IPv4Range.defaultCandidates.first(where: { clash($0) == nil }) else {
                throw BoxRuntimeError.invalidArgument("no free /16 for box networks in 10.200.0.0–10.253.255.255; set DEVBOX_NETWORK_CIDR")
            }
            chosen = free
        }
        if persisted != chosen {
            if let persisted { releaseClaim(persisted) }
            try writeMarker(chosen)
        }
        try BoxNetPlumbing.addRoute(
            unreachable: chosen.network, prefixLength: UInt8(chosen.prefixLength), protocol: Self.claimProtocol, replace: true)
        if !writeSysctl("/proc/sys/net/ipv4/ip_forward", "1") { throw sysError("enable IPv4 forwarding") }
        state.withLock { $0.range = chosen }
        logger.info("box networks", metadata: ["range": "\(chosen)", "table": .string("inet \(tableName)")])
    }

    private func releaseClaim(_ range: IPv4Range) {
        try? BoxNetPlumbing.deleteRoute(unreachable: range.network, prefixLength: UInt8(range.prefixLength), protocol: Self.claimProtocol)
    }

    private func writeMarker(_ range: IPv4Range) throws {
        let tmp = markerPath + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw sysError("open \(tmp)") }
        let ok = writeAll(fd: fd, Array("\(range)\n".utf8)) && fsync(fd) == 0
        closeFD(fd)
        if !ok || rename(tmp, markerPath) != 0 { throw sysError("write \(markerPath)") }
    }

    var range: IPv4Range? { state.withLock { $0.range } }

    // MARK: resolver and ruleset

    /// Starts the resolver and installs the ruleset with the given policies (box name →
    /// policy; boxes not listed are allow_all), replacing the previous run's in one step.
    func start(policies byName: [String: EgressPolicy]) throws {
        let port: UInt16
        if resolverRunning {
            port = state.withLock { $0.dnsPort }
        } else {
            port = try startResolver()
            state.withLock { $0.dnsPort = port }
        }
        let (range, policies) = try state.withLock { s -> (IPv4Range, [UInt32: EgressPolicy]) in
            guard let range = s.range else { throw BoxRuntimeError.invalidArgument("box networks are not prepared") }
            var byAddress: [UInt32: EgressPolicy] = [:]
            for (name, p) in byName {
                guard let slot = s.slotOf[name] else { continue }
                byAddress[link(slot: slot, range: range).box] = p
            }
            s.policies = byAddress
            s.admitted = []
            return (range, byAddress)
        }
        try runNft(ruleset(range: range, dnsPort: port, policies: policies))
        state.withLock { $0.installed = true }
    }

    /// Stops the resolver; removes the ruleset and the range's claim when no box is left.
    func shutdown() {
        stopResolver()
        let (empty, range) = state.withLock { s in (s.slots.isEmpty, s.range) }
        guard empty else { return }
        _ = try? runNft("table inet \(tableName) {}\ndelete table inet \(tableName)\n")
        if let range { releaseClaim(range) }
        state.withLock { s in
            s.installed = false
            s.range = nil
        }
    }

    /// The policy of the box at `source`; nil for an address that is no box of ours.
    func policy(forSource source: IPv4Address) -> EgressPolicy? {
        state.withLock { s in
            guard let range = s.range, range.contains(source.value) else { return nil }
            let offset = source.value &- range.network
            guard offset % 4 == 2, s.slots[Int(offset / 4)] != nil else { return nil }
            return s.policies[source.value] ?? EgressPolicy.allowAll
        }
    }

    func policy(of name: String) -> EgressPolicy {
        guard let l = link(of: name) else { return .allowAll }
        return state.withLock { $0.policies[l.box] } ?? .allowAll
    }

    /// Replaces a box's policy: one nft transaction; new connections follow it at once.
    func setPolicy(name: String, _ policy: EgressPolicy) throws {
        guard let l = link(of: name) else { throw BoxRuntimeError.notFound(name) }
        let (old, installed) = state.withLock { s in (s.policies[l.box] ?? .allowAll, s.installed) }
        if old == policy { return }
        if installed {
            let batch = elements(of: old, box: l.box, verb: "delete") + elements(of: policy, box: l.box, verb: "add")
            if !batch.isEmpty { try runNft(batch) }
            if old.egress == .denyAll && policy.egress != .denyAll { removeAdmitted(box: l.box) }
        }
        state.withLock { s in s.policies[l.box] = policy == .allowAll ? nil : policy }
    }

    /// Admits what the resolver answered an allowed name with, for the answer's TTL
    /// (before the box sees the answer).
    func admit(box: UInt32, answers: [(IPAddressAny, ttl: UInt32)]) {
        var batch = ""
        for (address, ttl) in answers {
            guard case .v4(let a) = address else { continue }
            let key = "\(ipv4String(box)) . \(ipv4String(a.value))"
            // add; delete; add — refreshes the timeout of an element that is already there.
            batch += "add element inet \(tableName) dyn4 { \(key) timeout \(ttl)s }\n"
            batch += "delete element inet \(tableName) dyn4 { \(key) }\n"
            batch += "add element inet \(tableName) dyn4 { \(key) timeout \(ttl)s }\n"
        }
        guard !batch.isEmpty else { return }
        state.withLock { _ = $0.admitted.insert(box) }
        do { try runNft(batch) } catch {
            logger.warning("admitting resolved addresses failed", metadata: ["error": .string("\(error)")])
        }
    }

    /// Deletes the addresses the resolver admitted for `box`.
    func removeAdmitted(box: UInt32) {
        guard let r = try? runCommandBlocking(nftPath, ["nft", "-j", "list", "set", "inet", tableName, "dyn4"]), r.status == 0,
            let json = try? JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any],
            let items = json["nftables"] as? [[String: Any]]
        else { return }
        let boxText = ipv4String(box)
        var batch = ""
        for item in items {
            guard let set = item["set"] as? [String: Any], let elems = set["elem"] as? [Any] else { continue }
            for e in elems {
                // {"elem": {"val": {"concat": [a, b]}, "timeout": …}} or {"concat": [a, b]}
                let val = ((e as? [String: Any])?["elem"] as? [String: Any])?["val"] ?? e
                guard let concat = (val as? [String: Any])?["concat"] as? [Any], concat.count == 2,
                    let a = concat[0] as? String, let b = concat[1] as? String, a == boxText
                else { continue }
                batch += "delete element inet \(tableName) dyn4 { \(a) . \(b) }\n"
            }
        }
        if !batch.isEmpty { try? runNft(batch) }
    }

    /// The set elements a policy puts in place for `box`.
    func elements(of policy: EgressPolicy, box: UInt32, verb: String) -> String {
        let b = ipv4String(box)
        var out = ""
        if policy.egress == .denyAll { out += "\(verb) element inet \(tableName) denyall4 { \(b) }\n" }
        let allow = policy.allowNetworks.map { "\($0)" }.filter { !$0.contains(":") }
        let deny = policy.denyNetworks.map { "\($0)" }.filter { !$0.contains(":") }
        if !allow.isEmpty { out += "\(verb) element inet \(tableName) allow4 { \(allow.map { "\(b) . \($0)" }.joined(separator: ", ")) }\n" }
        if !deny.isEmpty { out += "\(verb) element inet \(tableName) deny4 { \(deny.map { "\(b) . \($0)" }.joined(separator: ", ")) }\n" }
        return out
    }

    /// The whole table, replacing any previous one in the same transaction.
    func ruleset(range: IPv4Range, dnsPort: UInt16, policies: [UInt32: EgressPolicy]) -> String {
        let t = tableName
        let ifs = "\"\(tag)*\""
        // The ranges the policy model refuses (IPNetwork.alwaysBlockedIPv4), the service's own
        // range (other boxes) and, below, the host's links.
        var blocked = IPNetwork.alwaysBlockedIPv4.map { "\($0)" } + ["\(range)"]
        // The host's own links: on-link subnets and the gateways of its routes, whatever their range.
        for r in HostRoutes.read() where !r.interface.hasPrefix(tag) && !r.reject {
            if r.gateway != 0 { blocked.append(ipv4String(r.gateway)) }
            if r.gateway == 0 && r.prefixLength > 0 { blocked.append("\(ipv4String(r.network))/\(r.prefixLength)") }
        }
        let offered = ([dnsPort] + offeredPorts()).map(String.init).joined(separator: ", ")
        var s = """
            table inet \(t) {}
            delete table inet \(t)
            table inet \(t) {
              set blocked4 { type ipv4_addr; flags interval; auto-merge; elements = { \(blocked.joined(separator: ", ")) } }
              set denyall4 { type ipv4_addr; }
              set allow4 { type ipv4_addr . ipv4_addr; flags interval; }
              set deny4 { type ipv4_addr . ipv4_addr; flags interval; }
              set dyn4 { type ipv4_addr . ipv4_addr; flags timeout; }
              chain guard { type filter hook prerouting priority -300; policy accept;
                iifname \(ifs) fib saddr . iif oif missing drop
              }
              chain dns { type nat hook prerouting priority -100; policy accept;
                iifname \(ifs) meta l4proto { tcp, udp } th dport 53 redirect to :\(dnsPort)
              }
              chain refuse {
                meta l4proto tcp reject with tcp reset
                reject with icmpx type port-unreachable
              }
              chain box_in {
                ct state established,related accept
                meta l4proto { tcp, udp } th dport { \(offered) } accept
                jump refuse
              }
              chain input { type filter hook input priority 0; policy accept;
                iifname \(ifs) jump box_in
                meta l4proto { tcp, udp } th dport \(dnsPort) drop
              }
              chain box_out {
                ct state established,related accept
                meta nfproto ipv6 jump refuse
                ip daddr @blocked4 jump refuse
                ip saddr . ip daddr @deny4 jump refuse
                ip saddr @denyall4 ip saddr . ip daddr @allow4 accept
                ip saddr @denyall4 ip saddr . ip daddr @dyn4 accept
                ip saddr @denyall4 jump refuse
                accept
              }
              chain box_inbound {
                ct state established,related accept
                jump refuse
              }
              chain forward { type filter hook forward priority 0; policy accept;
                iifname \(ifs) jump box_out
                oifname \(ifs) jump box_inbound
              }
              chain nat_out { type nat hook postrouting priority 100; policy accept;
                ip saddr \(range) oifname != \(ifs) masquerade
              }
            }

            """
        for (box, policy) in policies.sorted(by: { $0.key < $1.key }) { s += elements(of: policy, box: box, verb: "add") }
        return s
    }

    /// Applies an nft batch (one transaction) from a memfd.
    func runNft(_ batch: String) throws {
        let bytes = Array(batch.utf8)
        let fd = bytes.withUnsafeBytes { dbx_memfd_with("devbox-nft", $0.baseAddress, $0.count) }
        if fd < 0 { throw sysError("memfd_create") }
        defer { closeFD(fd) }
        let r = try runCommandBlocking(nftPath, ["nft", "-f", "/proc/self/fd/3"], extraFDs: [fd])
        guard r.status == 0 else { throw BoxRuntimeError.commandFailed("nft", status: r.status, message: r.stderrText) }
    }
}

/// Dotted quad of a host-order address (IPAddress.swift's formatting).
func ipv4String(_ a: UInt32) -> String { IPv4Address(a).description }

func writeSysctl(_ path: String, _ value: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    if fd < 0 { return false }
    defer { closeFD(fd) }
    return writeAll(fd: fd, Array(value.utf8))
}

/// An IPv4 range of the service's box networks (network address in host order).
public struct IPv4Range: Sendable, Equatable, CustomStringConvertible {
    public let network: UInt32
    public let prefixLength: Int

    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let len = Int(parts[1]), (8...28).contains(len),
            let addr = parseIPv4(String(parts[0]))
        else { return nil }
        let mask: UInt32 = len == 0 ? 0 : ~UInt32(0) << (32 - len)
        guard addr & ~mask == 0 else { return nil }
        network = addr
        prefixLength = len
    }

    init(network: UInt32, prefixLength: Int) {
        self.network = network
        self.prefixLength = prefixLength
    }

    var mask: UInt32 { prefixLength == 0 ? 0 : ~UInt32(0) << (32 - prefixLength) }
    /// /30 slots (slot 0 is never used).
    var slotCount: Int { 1 << (32 - prefixLength - 2) }
    func contains(_ a: UInt32) -> Bool { a & mask == network }
    func overlaps(network other: UInt32, prefixLength len: Int) -> Bool {
        let m = min(prefixLength, len)
        let mask: UInt32 = m == 0 ? 0 : ~UInt32(0) << (32 - m)
        return network & mask == other & mask
    }
    public var description: String { "\(ipv4String(network))/\(prefixLength)" }

    /// 10.200.0.0/16 … 10.253.0.0/16: the first that no host route or address touches
    /// (10.254/16 is left to the netlink tests).
    static let defaultCandidates: [IPv4Range] = (200...253).map { IPv4Range(network: (10 << 24) | (UInt32($0) << 16), prefixLength: 16) }
}

/// A strict dotted quad in host order (IPAddress.swift's parser).
func parseIPv4(_ s: String) -> UInt32? { IPv4Address(s)?.value }

/// The host's IPv4 routes (main table, /proc/net/route) and addresses.
enum HostRoutes {
    struct Route {
        var interface: String
        var network: UInt32
        var prefixLength: Int
        var gateway: UInt32
        var reject: Bool
    }

    static func read() -> [Route] {
        guard let text = readSmallFile("/proc/net/route") else { return [] }
        var out: [Route] = []
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard f.count >= 8, let dst = UInt32(f[1], radix: 16), let gw = UInt32(f[2], radix: 16),
                let flags = UInt32(f[3], radix: 16), let mask = UInt32(f[7], radix: 16)
            else { continue }
            // The hex is a network-order value printed as a little-endian integer.
            out.append(Route(interface: String(f[0]), network: dst.byteSwapped, prefixLength: mask.nonzeroBitCount,
                             gateway: gw.byteSwapped, reject: flags & 0x0200 != 0))
        }
        return out
    }

    static func localIPv4Addresses() -> [(interface: String, address: UInt32)] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out: [(interface: String, address: UInt32)] = []
        var p = head
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) {
                let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                out.append((String(cString: ifa.pointee.ifa_name), UInt32(bigEndian: a)))
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }
}
