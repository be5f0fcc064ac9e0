import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension CrunRuntime {
    /// Slots of the boxes on disk (directories only: an alias symlink names a pooled box's directory).
    func loadNetworkSlots() {
        guard let networks else { return }
        let prefix = configuration.idPrefix
        var boxes: [(name: String, directory: String)] = []
        for entry in MaskPlan.listDirectory(configuration.stateDirectory) where entry.hasPrefix(prefix) {
            let path = configuration.stateDirectory + "/" + entry
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            boxes.append((String(entry.dropFirst(prefix.count)), path))
        }
        networks.loadSlots(boxes: boxes)
    }

    /// Starts the boxes' resolver and installs the network policy, with the egress
    /// policies of the devboxes that outlived the previous run (devbox id → policy;
    /// absent: allow_all). Call after the start-up sweep, before any create.
    public func startNetworks(policies: [String: EgressPolicy]) async throws {
        guard let networks else { return }
        let byName = Dictionary(policies.map { (boxName($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
        try await onDedicatedThread { try networks.start(policies: byName) }
    }

    /// Replaces the egress policy of a devbox's box; new connections follow it at once.
    public func setEgressPolicy(id: String, _ policy: EgressPolicy) async throws {
        try validate(id)
        guard let networks else { throw BoxRuntimeError.invalidArgument("boxes share the host network: no egress policy") }
        try await onDedicatedThread { [self] in
            try withBoxLock(id) { try networks.setPolicy(name: boxName(id), policy) }
        }
    }

    /// The egress policy in force for a devbox's box (allow_all without per-box networks).
    public func egressPolicy(id: String) -> EgressPolicy {
        networks?.policy(of: boxName(id)) ?? .allowAll
    }

    /// The devbox's box address and gateway, nil without per-box networks.
    public func networkInfo(id: String) -> BoxNetworkInfo? {
        guard let networks, let l = networks.link(of: boxName(id)) else { return nil }
        return BoxNetworkInfo(address: ipv4String(l.box), gateway: ipv4String(l.gateway), hostInterface: l.hostName)
    }

    /// Ports of the host's that boxes may connect to (on their gateway address) besides the
    /// resolver's, e.g. the AI-API broker's. Set before `startNetworks`, which writes them
    /// into the nftables `input` chain.
    public func offerPorts(_ ports: [UInt16]) { offered.set(ports) }

    /// True when `address` is a box's own address (eth0) of this runtime's range.
    public func isBoxAddress(_ address: String) -> Bool {
        guard let networks, let a = parseIPv4(address) else { return false }
        return networks.policy(forSource: IPv4Address(a)) != nil
    }

    /// The range box addresses come from, once prepared.
    public var networkRange: IPv4Range? { networks?.range }

    /// A TCP socket connected, from inside the box's network namespace, to `host:port`
    /// there (127.0.0.1 is the box's own loopback). Blocking connect on a dedicated thread.
    public func connectInBox(id: String, host: String = "127.0.0.1", port: UInt16) async throws -> Int32 {
        try validate(id)
        guard let a = parseIPv4(host) else { throw BoxRuntimeError.invalidArgument("host must be an IPv4 address") }
        return try await onDedicatedThread { [self] () throws -> Int32 in
            let pid: pid_t
            if let known = knownInitPid(id) {
                pid = known
            } else {
                guard let p = initPid(id) else { throw BoxRuntimeError.notRunning(id) }
                pid = p
            }
            // The pidfd pins the init checked to be the box's, so a recycled pid never hands
            // out another process's network namespace.
            let pidfd = try pinInit(id, pid: pid)
            defer { closeFD(pidfd) }
            let fd = try BoxNetPlumbing.openSocket(inNetnsOf: pid, domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr.s_addr = a.bigEndian
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc != 0 {
                let e = lastErrno()
                closeFD(fd)
                throw BoxRuntimeError.system("connect to port \(port) in the box", errno: e)
            }
            return fd
        }
    }
}


/// The ports offered to boxes, set once at start-up (read when the ruleset is built).
final class OfferedPorts: Sendable {
    private let value = Mutex<[UInt16]>([])
    var ports: [UInt16] { value.withLock { $0 } }
    func set(_ ports: [UInt16]) { value.withLock { $0 = ports } }
}
