import Foundation
import Logging
import Testing
@testable import Sandbox
import CDevbox
#if canImport(Glibc)
import Glibc
#endif

/// The parts of per-box networks that need no box: ranges, slots, names, the ruleset (checked
/// by the kernel's nftables in a dry run, nothing applied) and the host's routes.
@Suite struct BoxNetworksTests {
    func networks(range: String = "10.230.0.0/16", parent: String = "dx0123abcd") -> BoxNetworks {
        BoxNetworks(stateDirectory: "/nonexistent", cgroupParent: parent, requestedRange: IPv4Range(parsing: range),
                    upstreams: [], offeredPorts: { [] }, logger: Logger(label: "test"))
    }

    @Test func rangesParseStrictly() {
        #expect(IPv4Range(parsing: "10.200.0.0/16")?.description == "10.200.0.0/16")
        #expect(IPv4Range(parsing: "10.200.0.0/16")?.slotCount == 16384)
        for bad in ["10.200.0.1/16", "10.200.0.0", "10.200.0.0/7", "10.200.0.0/29", "10.200.0/16", "x/16", "10.200.0.0/-1"] {
            #expect(IPv4Range(parsing: bad) == nil, "\(bad)")
        }
        let r = IPv4Range(parsing: "10.200.0.0/16")!
        #expect(r.contains(parseIPv4("10.200.255.255")!) && !r.contains(parseIPv4("10.201.0.0")!))
        #expect(r.overlaps(network: parseIPv4("10.0.0.0")!, prefixLength: 8))
        #expect(r.overlaps(network: parseIPv4("10.200.3.0")!, prefixLength: 24))
        #expect(!r.overlaps(network: parseIPv4("10.201.0.0")!, prefixLength: 16))
        #expect(!IPv4Range.defaultCandidates.contains { $0.description == "10.254.0.0/16" })
    }

    @Test func slotsAreThirtiesWithShortNames() {
        let n = networks()
        let r = IPv4Range(parsing: "10.230.0.0/16")!
        let l = n.link(slot: 1, range: r)
        #expect(ipv4String(l.gateway) == "10.230.0.5" && ipv4String(l.box) == "10.230.0.6")
        let last = n.link(slot: r.slotCount - 1, range: r)
        #expect(ipv4String(last.box) == "10.230.255.254" && ipv4String(last.gateway) == "10.230.255.253")
        #expect(last.hostName.utf8.count <= 15)
        #expect(last.hostName.hasPrefix("dx0123abcd"))
        // An /8 has 4 Mi slots: still 15 bytes at most.
        #expect(n.interfaceName(slot: (1 << 22) - 1).utf8.count <= 15)
    }

    @Test func tagsAreTenCharactersAndDistinct() {
        #expect(BoxNetworks.tag(for: "dx0123abcd") == "dx0123abcd")
        let other = BoxNetworks.tag(for: "devbox")
        #expect(other.count == 10 && other.hasPrefix("dx") && other != BoxNetworks.tag(for: "devbox2"))
        #expect(BoxNetworks.tag(for: "dxABCDEF01") != "dxABCDEF01")  // upper case is hashed, never used as is
    }

    @Test func theHostsRoutesAreRead() {
        let routes = HostRoutes.read()
        #expect(!routes.isEmpty)
        // Every route this host has shows up with a sane prefix; the default one has 0.
        #expect(routes.allSatisfy { (0...32).contains($0.prefixLength) })
        #expect(!HostRoutes.localIPv4Addresses().filter { $0.address == parseIPv4("127.0.0.1") }.isEmpty)
    }

    @Test func theRulesetIsWhatTheKernelAccepts() throws {
        let n = networks()
        let r = IPv4Range(parsing: "10.230.0.0/16")!
        let locked = try EgressPolicy(egress: .denyAll, allow: ["198.51.100.0/24", "allowed.test"], deny: ["198.51.100.7"])
        let open = try EgressPolicy(egress: .allowAll, deny: ["203.0.113.0/24", "*.example.org"])
        let text = n.ruleset(range: r, dnsPort: 5353, policies: [
            n.link(slot: 1, range: r).box: locked, n.link(slot: 2, range: r).box: open,
        ])
        for want in ["iifname \"dx0123abcd*\"", "redirect to :5353", "10.230.0.0/16", "169.254.0.0/16",
                     "add element inet dx0123abcd denyall4 { 10.230.0.6 }",
                     "allow4 { 10.230.0.6 . 198.51.100.0/24 }", "deny4 { 10.230.0.6 . 198.51.100.7/32 }",
                     "deny4 { 10.230.0.10 . 203.0.113.0/24 }", "masquerade", "reject with tcp reset"] {
            #expect(text.contains(want), "\(want)")
        }
        // Domain entries are the resolver's business, never set elements.
        #expect(!text.contains("allowed.test") && !text.contains("example.org"))
        // The kernel checks the whole transaction without applying it (nft -c).
        let fd = Array(text.utf8).withUnsafeBytes { dbx_memfd_with("ruleset", $0.baseAddress, $0.count) }
        #expect(fd >= 0)
        defer { closeFD(fd) }
        let result = try runCommandBlocking(resolveExecutable("nft"), ["nft", "-c", "-f", "/proc/self/fd/3"], extraFDs: [fd])
        #expect(result.status == 0, "\(result.stderrText)")
        #expect(!(try runCommandBlocking(resolveExecutable("nft"), ["nft", "list", "tables"]).stdoutText.contains("dx0123abcd")))
        // Elements of a change are valid too (a deny_all box's removal, an allow_all box's).
        #expect(n.elements(of: .allowAll, box: 1, verb: "add").isEmpty)
    }
}
