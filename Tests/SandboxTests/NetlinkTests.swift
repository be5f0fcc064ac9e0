import CDevbox
import Foundation
import Synchronization
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// A network namespace of its own, without crun: `unshare --net sleep 120`, a child of
/// the test process. Killed (and collected) by `close()`, which every test defers.
private final class TestNetns: Sendable {
    let pid: pid_t
    private let closed = Mutex(false)

    init() throws {
        let unshare = resolveExecutable("unshare")
        pid = try spawnProgram(unshare, ["unshare", "--net", "sleep", "120"], fds: [-1, -1, -1])
        // unshare(1) unshares, then execs sleep: wait until the pid's netns is not ours.
        let mine = Self.netnsID("/proc/self/ns/net")
        let deadline = monotonicNanos() + 30_000_000_000
        while monotonicNanos() < deadline {
            if let theirs = Self.netnsID("/proc/\(pid)/ns/net"), theirs != mine { return }
            usleep(2_000)
        }
        close()
        throw BoxRuntimeError.system("unshare --net did not make a namespace", errno: ETIMEDOUT)
    }

    static func netnsID(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 128)
        let n = readlink(path, &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    var netPath: String { "/proc/\(pid)/ns/net" }

    /// Kills and collects the process (idempotent); the namespace then goes away.
    func close() {
        let first = closed.withLock { c in
            defer { c = true }
            return !c
        }
        guard first else { return }
        _ = kill(pid, SIGKILL)
        var code: Int32 = 0, sig: Int32 = 0
        _ = dbx_wait_pid(pid, 0, &code, &sig)
        Reaper.shared.disown(pid)
    }

    deinit { close() }
}

/// A test's names and addresses: links `dbxt<6 random>` + a suffix (≤ 15 bytes), and a
/// 10.254.<r>.0/24 no host route touches (its first /30 for a box: .1 host, .2 box).
private struct NetTestPlan {
    let tag: String
    let net: UInt32

    init() throws {
        let digits = String(UInt32.random(in: 0..<2_176_782_336), radix: 36)  // < 36^6
        tag = "dbxt" + String(repeating: "0", count: 6 - digits.count) + digits
        let routes = try BoxNetPlumbing.routes()
        var candidate: UInt32 = 0
        for _ in 0..<64 {
            let n = (10 << 24) | (254 << 16) | (UInt32.random(in: 0...255) << 8)
            // Nothing of 10.254.r.0/24 nor a route containing it other than default.
            let clash = routes.contains { r in
                guard r.prefixLength > 0 else { return false }
                let len = min(UInt32(r.prefixLength), 24)
                let mask: UInt32 = ~0 << (32 - len)
                return r.destination & mask == n & mask
            }
            if !clash { candidate = n; break }
        }
        guard candidate != 0 else { throw BoxRuntimeError.invalidArgument("no free 10.254.x.0/24 for the test") }
        net = candidate
    }

    func name(_ suffix: String) -> String { tag + suffix }
    /// The n-th /30 of the /24 (n ≥ 0): (gateway = host end, box).
    func slot(_ n: UInt32) -> (gateway: UInt32, box: UInt32) { (net + n * 4 + 1, net + n * 4 + 2) }
}

private func dotted(_ a: UInt32) -> String { "\(a >> 24).\((a >> 16) & 0xff).\((a >> 8) & 0xff).\(a & 0xff)" }

/// Runs a tool on a dedicated thread (blocking calls stay off the cooperative pool).
private func tool(_ argv: [String]) async throws -> CommandResult {
    try await onDedicatedThread { try runCommandBlocking(resolveExecutable(argv[0]), argv, timeoutMillis: 10_000) }
}

/// `ip -j <args>` on the host, or inside `netns` (nsenter --net), parsed.
private func ipJSON(_ args: [String], in netns: TestNetns? = nil) async throws -> [[String: Any]] {
    let argv = (netns.map { ["nsenter", "--net=\($0.netPath)"] } ?? []) + ["ip", "-j"] + args
    let r = try await tool(argv)
    guard r.status == 0 else { throw BoxRuntimeError.commandFailed(argv.joined(separator: " "), status: r.status, message: r.stderrText) }
    let text = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    if text.isEmpty { return [] }
    let any = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return any as? [[String: Any]] ?? []
}

/// (family, "address/prefix") of every address of the link `name` in `ip -j addr` output.
private func addresses(_ links: [[String: Any]], _ name: String) -> [String] {
    guard let link = links.first(where: { $0["ifname"] as? String == name }),
          let infos = link["addr_info"] as? [[String: Any]] else { return [] }
    return infos.compactMap { i in
        guard let fam = i["family"] as? String, let local = i["local"] as? String, let len = i["prefixlen"] as? Int else { return nil }
        return "\(fam) \(local)/\(len)"
    }
}

private func isUp(_ links: [[String: Any]], _ name: String) -> Bool {
    guard let link = links.first(where: { $0["ifname"] as? String == name }), let flags = link["flags"] as? [String] else { return false }
    return flags.contains("UP")
}

private func inetAddress(_ a: UInt32, port: UInt16) -> sockaddr_in {
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    sin.sin_addr = in_addr(s_addr: a.bigEndian)
    return sin
}

/// A TCP listener on `address`:0 in the caller's namespace (fd, port), or on a given fd.
private func listenTCP(_ address: UInt32, fd given: Int32? = nil) throws -> (fd: Int32, port: UInt16) {
    let fd = given ?? socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw sysError("socket") }
    var sin = inetAddress(address, port: 0)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &sin) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
            bind(fd, sp, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, sp, &len) == 0
        }
    }
    if !ok {
        let e = lastErrno()
        closeFD(fd)
        throw BoxRuntimeError.system("bind/listen \(dotted(address))", errno: e)
    }
    return (fd, UInt16(bigEndian: sin.sin_port))
}

/// Connects `fd` to address:port (blocking; a few ms on a veth).
private func connectTCP(_ fd: Int32, _ address: UInt32, _ port: UInt16) -> Int32 {
    var sin = inetAddress(address, port: port)
    let rc = withUnsafePointer(to: &sin) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return rc == 0 ? 0 : lastErrno()
}

/// Accepts one connection within `timeoutMillis`: (the peer's address, what it sent first).
private func acceptOne(_ listenFD: Int32, timeoutMillis: Int32 = 3_000) -> (peer: UInt32, text: String)? {
    var p = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
    guard poll(&p, 1, timeoutMillis) == 1 else { return nil }
    var sin = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let c = withUnsafeMutablePointer(to: &sin) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listenFD, $0, &len) }
    }
    guard c >= 0 else { return nil }
    defer { closeFD(c) }
    var q = [pollfd(fd: c, events: Int16(POLLIN), revents: 0)]
    var buf = [UInt8](repeating: 0, count: 64)
    var n = 0
    if poll(&q, 1, timeoutMillis) == 1 { n = max(0, buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }) }
    return (UInt32(bigEndian: sin.sin_addr.s_addr), String(decoding: buf[0..<n], as: UTF8.self))
}

private func waitUntil(timeoutMillis: UInt64 = 30_000, _ cond: () -> Bool) async -> Bool {
    let deadline = monotonicNanos() + timeoutMillis * 1_000_000
    while monotonicNanos() < deadline {
        if cond() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return cond()
}

/// The per-box plumbing (veth, addresses, routes) against real network namespaces made
/// with unshare(1). Serialized: the timing test wants a quiet host, and links(withPrefix:)
/// must see exactly one test's links.
@Suite(.serialized) struct NetlinkTests {
    @Test func attachWiresHostAndBoxAndCarriesTCP() async throws {
        let plan = try NetTestPlan()
        let ns = try TestNetns()
        defer { ns.close() }
        let host = plan.name("a")
        defer { BoxNetPlumbing.detach(hostName: host) }
        let (gw, box) = plan.slot(0)
        try BoxNetPlumbing.attach(initPid: ns.pid, hostName: host, boxAddress: box, gateway: gw, prefixLength: 30)

        // Host end: the gateway address only (no IPv6, not even link-local), up, and the
        // kernel's route of the /30 through it.
        let hostLinks = try await ipJSON(["addr", "show", "dev", host])
        #expect(addresses(hostLinks, host) == ["inet \(dotted(gw))/30"])
        #expect(isUp(hostLinks, host))
        let disabled = readSmallFile("/proc/sys/net/ipv6/conf/\(host)/disable_ipv6")
        #expect(disabled?.hasPrefix("1") == true)
        let hostRoutes = try await ipJSON(["route", "show", "dev", host])
        #expect(hostRoutes.contains { $0["dst"] as? String == "\(dotted(plan.net))/30" }, "\(hostRoutes)")
        let hostIndex = try NetlinkSocket().linkIndex(host)
        #expect(try BoxNetPlumbing.routes().contains {
            $0.destination == plan.net && $0.prefixLength == 30 && $0.outputInterface == hostIndex
                && $0.protocolNumber == IPv4Route.protocolKernel && $0.scope == IPv4Route.scopeLink
        })

        // Inside: lo up with 127.0.0.1, eth0 with the box address, up; default via gateway.
        let boxLinks = try await ipJSON(["addr"], in: ns)
        #expect(Set(boxLinks.compactMap { $0["ifname"] as? String }) == ["lo", "eth0"])
        #expect(isUp(boxLinks, "lo") && isUp(boxLinks, "eth0"))
        #expect(addresses(boxLinks, "lo").contains("inet 127.0.0.1/8"))
        #expect(addresses(boxLinks, "eth0").contains("inet \(dotted(box))/30"), "\(addresses(boxLinks, "eth0"))")
        let boxRoutes = try await ipJSON(["route"], in: ns)
        #expect(boxRoutes.contains {
            $0["dst"] as? String == "default" && $0["gateway"] as? String == dotted(gw) && $0["dev"] as? String == "eth0"
        }, "\(boxRoutes)")
        // The same through a netlink socket made in the box's namespace.
        let inside = try NetlinkSocket(netnsOf: ns.pid)
        let eth0 = try inside.linkIndex("eth0")
        #expect(try inside.routes().contains {
            $0.destination == 0 && $0.prefixLength == 0 && $0.gateway == gw && $0.outputInterface == eth0
                && $0.type == IPv4Route.unicast
        })
        #expect(try inside.linkNames(withPrefix: "").sorted() == ["eth0", "lo"])

        // TCP from inside (bash's /dev/tcp under nsenter) to a listener on the gateway
        // address: it arrives from the box address.
        let listener = try listenTCP(gw)
        defer { closeFD(listener.fd) }
        let r = try await tool(["nsenter", "--net=\(ns.netPath)", "bash", "-c",
                                "exec 3<>/dev/tcp/\(dotted(gw))/\(listener.port) && printf hello >&3"])
        #expect(r.status == 0, "\(r.stderrText)")
        let got = await onDedicatedThread { acceptOne(listener.fd).map { [$0.peer: $0.text] } }
        #expect(got == [box: "hello"])

        // Same with a socket from openSocket(inNetnsOf:) (how the service reaches a box).
        let s = try BoxNetPlumbing.openSocket(inNetnsOf: ns.pid, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        defer { closeFD(s) }
        #expect(connectTCP(s, gw, listener.port) == 0)
        #expect(writeAll(fd: s, Array("hi".utf8)))
        let got2 = await onDedicatedThread { acceptOne(listener.fd).map { [$0.peer: $0.text] } }
        #expect(got2 == [box: "hi"])

        // A box's 127.0.0.1 is its own: a listener there (made inside) is reachable from
        // another socket made inside, not from the host.
        let lfd = try BoxNetPlumbing.openSocket(inNetnsOf: ns.pid, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        let boxListener = try listenTCP(0x7F00_0001, fd: lfd)
        defer { closeFD(boxListener.fd) }
        let c1 = try BoxNetPlumbing.openSocket(inNetnsOf: ns.pid, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        defer { closeFD(c1) }
        #expect(connectTCP(c1, 0x7F00_0001, boxListener.port) == 0)
        let c2 = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { closeFD(c2) }
        #expect(connectTCP(c2, 0x7F00_0001, boxListener.port) == ECONNREFUSED)

        // detach: the host end and the box's eth0 are gone; detaching again is a no-op.
        BoxNetPlumbing.detach(hostName: host)
        #expect(BoxNetPlumbing.links(withPrefix: host) == [])
        #expect(try inside.linkNames(withPrefix: "").sorted() == ["lo"])
        #expect(!(try BoxNetPlumbing.routes().contains { $0.destination == plan.net && $0.prefixLength == 30 }))
        BoxNetPlumbing.detach(hostName: host)
    }

    @Test func hostEndGoesWithTheNamespace() async throws {
        let plan = try NetTestPlan()
        let ns = try TestNetns()
        defer { ns.close() }
        let host = plan.name("k")
        defer { BoxNetPlumbing.detach(hostName: host) }
        let (gw, box) = plan.slot(0)
        try BoxNetPlumbing.attach(initPid: ns.pid, hostName: host, boxAddress: box, gateway: gw, prefixLength: 30)
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [host])
        ns.close()
        // Namespaces are torn down asynchronously (a kernel work queue): poll.
        let gone = await waitUntil { BoxNetPlumbing.links(withPrefix: plan.tag).isEmpty }
        #expect(gone, "\(host) still exists after its namespace's process died")
    }

    @Test func linksWithPrefixSeesExactlyOurs() async throws {
        let plan = try NetTestPlan()
        let ns1 = try TestNetns()
        defer { ns1.close() }
        let ns2 = try TestNetns()
        defer { ns2.close() }
        let names = [plan.name("x1"), plan.name("x2")]
        defer { for n in names { BoxNetPlumbing.detach(hostName: n) } }
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [])
        let (gw0, box0) = plan.slot(0)
        try BoxNetPlumbing.attach(initPid: ns1.pid, hostName: names[0], boxAddress: box0, gateway: gw0, prefixLength: 30)
        // The second through an open namespace descriptor (what a pidfd-pinned caller uses).
        let nsfd = open(ns2.netPath, O_RDONLY | O_CLOEXEC)
        try #require(nsfd >= 0)
        defer { closeFD(nsfd) }
        let (gw1, box1) = plan.slot(1)
        try BoxNetPlumbing.attach(netnsFD: nsfd, hostName: names[1], boxAddress: box1, gateway: gw1, prefixLength: 30)
        let second = try await ipJSON(["addr", "show", "dev", "eth0"], in: ns2)
        #expect(addresses(second, "eth0").contains("inet \(dotted(box1))/30"))
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag).sorted() == names)
        #expect(BoxNetPlumbing.links(withPrefix: plan.name("x2")) == [names[1]])
        #expect(BoxNetPlumbing.links(withPrefix: "lo").contains("lo"))
        BoxNetPlumbing.detach(hostName: names[0])
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [names[1]])
    }

    @Test func invalidArgumentsAndFailuresLeaveNothing() async throws {
        let plan = try NetTestPlan()
        let ns = try TestNetns()
        defer { ns.close() }
        let (gw, box) = plan.slot(0)
        func isInvalid(_ body: () throws -> Void) -> Bool {
            do { try body() } catch BoxRuntimeError.invalidArgument { return true } catch { return false }
            return false
        }
        func errnoOf(_ body: () throws -> Void) -> Int32? {
            do { try body() } catch BoxRuntimeError.system(_, let e) { return e } catch { return -1 }
            return nil
        }
        for bad in [plan.tag + "0123456789ab", "", "a/b", "a b", "."] {
            #expect(isInvalid { try BoxNetPlumbing.attach(initPid: ns.pid, hostName: bad, boxAddress: box, gateway: gw, prefixLength: 30) },
                    "\"\(bad)\"")
        }
        #expect(isInvalid { _ = try NetlinkSocket().linkIndex("0123456789abcdef") })
        // 15 bytes is the limit, and fine (no such link).
        #expect(errnoOf { _ = try NetlinkSocket().linkIndex(plan.tag + "nosuc") } == ENODEV)
        // Addresses that are not two of one subnet, or prefixes without room.
        let name = plan.name("i")
        defer { BoxNetPlumbing.detach(hostName: name) }
        #expect(isInvalid { try BoxNetPlumbing.attach(initPid: ns.pid, hostName: name, boxAddress: box + 4, gateway: gw, prefixLength: 30) })
        #expect(isInvalid { try BoxNetPlumbing.attach(initPid: ns.pid, hostName: name, boxAddress: gw, gateway: gw, prefixLength: 30) })
        #expect(isInvalid { try BoxNetPlumbing.attach(initPid: ns.pid, hostName: name, boxAddress: box, gateway: gw, prefixLength: 32) })
        #expect(isInvalid { try BoxNetPlumbing.attach(initPid: 0, hostName: name, boxAddress: box, gateway: gw, prefixLength: 30) })
        // Never into the host's own namespace.
        #expect(isInvalid { try BoxNetPlumbing.attach(initPid: getpid(), hostName: name, boxAddress: box, gateway: gw, prefixLength: 30) })
        let hostNS = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        defer { closeFD(hostNS) }
        #expect(isInvalid { try BoxNetPlumbing.attach(netnsFD: hostNS, hostName: name, boxAddress: box, gateway: gw, prefixLength: 30) })
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [])

        // A step failing after the pair exists (the box already has a default route, so
        // ours is EEXIST): the pair is deleted before the error is thrown.
        let pre = try await tool(["nsenter", "--net=\(ns.netPath)", "ip", "route", "add", "blackhole", "default"])
        #expect(pre.status == 0, "\(pre.stderrText)")
        #expect(errnoOf { try BoxNetPlumbing.attach(initPid: ns.pid, hostName: name, boxAddress: box, gateway: gw, prefixLength: 30) } == EEXIST)
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [])
        #expect(try NetlinkSocket(netnsOf: ns.pid).linkNames(withPrefix: "").sorted() == ["lo"])

        // A taken host name: EEXIST, and the existing link (not this call's) is kept.
        let del = try await tool(["nsenter", "--net=\(ns.netPath)", "ip", "route", "del", "blackhole", "default"])
        #expect(del.status == 0, "\(del.stderrText)")
        try BoxNetPlumbing.attach(initPid: ns.pid, hostName: name, boxAddress: box, gateway: gw, prefixLength: 30)
        let ns2 = try TestNetns()
        defer { ns2.close() }
        #expect(errnoOf { try BoxNetPlumbing.attach(initPid: ns2.pid, hostName: name, boxAddress: box, gateway: gw, prefixLength: 30) } == EEXIST)
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [name])
        #expect(try NetlinkSocket(netnsOf: ns2.pid).linkNames(withPrefix: "") == ["lo"])
    }

    @Test func unreachableClaimRouteAddDumpDelete() async throws {
        let plan = try NetTestPlan()
        let proto: UInt8 = 231  // a private protocol number, for this test only
        defer { _ = try? BoxNetPlumbing.deleteRoute(unreachable: plan.net, prefixLength: 24, protocol: proto) }
        func errnoOf(_ body: () throws -> Void) -> Int32? {
            do { try body() } catch BoxRuntimeError.system(_, let e) { return e } catch { return -1 }
            return nil
        }
        func claim() throws -> [IPv4Route] {
            try BoxNetPlumbing.routes().filter { $0.destination == plan.net && $0.prefixLength == 24 }
        }
        try BoxNetPlumbing.addRoute(unreachable: plan.net, prefixLength: 24, protocol: proto)
        #expect(try claim() == [IPv4Route(destination: plan.net, prefixLength: 24, type: IPv4Route.unreachable, protocolNumber: proto)])
        let shown = try await ipJSON(["route", "show", "\(dotted(plan.net))/24"])
        #expect(shown.count == 1 && shown.first?["type"] as? String == "unreachable" && shown.first?["protocol"] as? String == "231",
                "\(shown)")
        #expect(errnoOf { try BoxNetPlumbing.addRoute(unreachable: plan.net, prefixLength: 24, protocol: proto) } == EEXIST)
        // replace: idempotent, and takes over a route of that prefix (here our own).
        try BoxNetPlumbing.addRoute(unreachable: plan.net, prefixLength: 24, protocol: proto, replace: true)
        // Another protocol's delete leaves our claim alone.
        #expect(errnoOf { try BoxNetPlumbing.deleteRoute(unreachable: plan.net, prefixLength: 24, protocol: proto &+ 1) } == ESRCH)
        // Required: the connect below must never leave by the default route.
        try #require(try claim().count == 1)
        // Traffic to the claimed range fails at once (nothing is sent) instead of leaving
        // by the default route.
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { closeFD(s) }
        #expect(connectTCP(s, plan.net + 77, 9) == EHOSTUNREACH)
        try BoxNetPlumbing.deleteRoute(unreachable: plan.net, prefixLength: 24, protocol: proto)
        #expect(try claim() == [])
        #expect(errnoOf { try BoxNetPlumbing.deleteRoute(unreachable: plan.net, prefixLength: 24, protocol: proto) } == ESRCH)
    }

    /// Dumps spanning several datagrams (the first dump datagram of a socket is ~4 KiB)
    /// and more entries than the wrappers' first buffers hold: 2 × 50 links and 600
    /// routes, all in a namespace of the test's own (no traffic anywhere).
    @Test func multipartDumps() async throws {
        let ns = try TestNetns()
        defer { ns.close() }
        let inside = try NetlinkSocket(netnsOf: ns.pid)
        var expected = ["lo"]
        for i in 0..<50 {
            try inside.createVeth(hostName: "va\(i)", peerName: "vb\(i)", peerNetnsFD: -1)
            expected += ["va\(i)", "vb\(i)"]
        }
        #expect(try inside.linkNames(withPrefix: "").sorted() == expected.sorted())
        #expect(try inside.linkNames(withPrefix: "va").count == 50)
        #expect(try inside.linkNames(withPrefix: "va1").sorted() == ["va1"] + (10...19).map { "va\($0)" })

        let base: UInt32 = 0x0AFE_0000  // 10.254.0.0/16, inside the private namespace only
        for i in 0..<UInt32(600) {
            try inside.addRoute(destination: base + i, prefixLength: 32, type: IPv4Route.unreachable, protocol: 231)
        }
        let routes = try inside.routes()
        #expect(routes.count == 600)
        #expect(Set(routes.map(\.destination)) == Set((0..<UInt32(600)).map { base + $0 }))
        #expect(routes.allSatisfy { $0.type == IPv4Route.unreachable && $0.protocolNumber == 231 && $0.prefixLength == 32 })
        // The host's table is untouched by all this.
        #expect(!(try BoxNetPlumbing.routes().contains { $0.protocolNumber == 231 }))
        // Deleting a link on a socket of that namespace removes both ends of its pair.
        #expect(try inside.deleteLink("va7"))
        #expect(try !inside.deleteLink("vb7"))
        #expect(try inside.linkNames(withPrefix: "").count == expected.count - 2)
    }

    /// Prints (does not assert) the median cost of attach and of detach over 20 runs.
    @Test func attachDetachMicroMeasurement() async throws {
        let plan = try NetTestPlan()
        let ns = try TestNetns()
        defer { ns.close() }
        let host = plan.name("t")
        defer { BoxNetPlumbing.detach(hostName: host) }
        let (gw, box) = plan.slot(0)
        let runs = 20
        // On a thread of its own: the figure is the plumbing, not the cooperative pool.
        let times = try await onDedicatedThread { () -> [(UInt64, UInt64)] in
            var out: [(UInt64, UInt64)] = []
            for _ in 0..<(runs + 2) {
                let t0 = monotonicNanos()
                try BoxNetPlumbing.attach(initPid: ns.pid, hostName: host, boxAddress: box, gateway: gw, prefixLength: 30)
                let t1 = monotonicNanos()
                BoxNetPlumbing.detach(hostName: host)
                out.append((t1 - t0, monotonicNanos() - t1))
            }
            return Array(out.dropFirst(2))  // warm-up
        }
        func median(_ xs: [UInt64]) -> Double { Double(xs.sorted()[xs.count / 2]) / 1e6 }
        let attach = times.map(\.0), detach = times.map(\.1), both = times.map { $0.0 + $0.1 }
        print(String(format: "NETLINK median of %d: attach %.3f ms (min %.3f, max %.3f), detach %.3f ms, attach+detach %.3f ms",
                     runs, median(attach), Double(attach.min() ?? 0) / 1e6, Double(attach.max() ?? 0) / 1e6,
                     median(detach), median(both)))
        #expect(BoxNetPlumbing.links(withPrefix: plan.tag) == [])
    }
}
