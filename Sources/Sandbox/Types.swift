#if canImport(Glibc)
import Glibc
#endif

// The values crossing the runtime seam live in DevboxRuntime (re-exported here) and are
// used by their own names: `BoxLimits`, `BoxProcessSpec`, `BoxExecResult`, `BoxRuntimeError`.
@_exported import DevboxRuntime

/// How a box reaches the network.
public enum SandboxNetwork: Sendable, Equatable {
    /// Share the host's network namespace (current default). CAP_NET_RAW and
    /// CAP_NET_BIND_SERVICE are dropped in this mode: raw sockets in the host netns
    /// would let a box sniff the host's traffic.
    case host
    /// Join an existing network namespace (e.g. `/run/netns/devbox-<id>`), made by the caller.
    /// The seam for per-box networking; the full Docker capability set applies.
    case namespace(path: String)
    /// A network namespace of the box's own (made by crun), wired to the host by a veth
    /// pair and guarded by the runtime's nftables table (Network/BoxNetworks.swift).
    /// CAP_NET_BIND_SERVICE is back (ports < 1024 are the box's own); CAP_NET_RAW stays off.
    case isolated
}

public struct SandboxConfiguration: Sendable {
    /// Host directory holding one directory per box (bundle, upper, work, rootfs, workspace).
    public var stateDirectory: String
    /// Prefix of every crun container id, cgroup path component and per-box directory,
    /// so start-up can sweep leftovers. Box ids given to the runtime are prefixed with it.
    public var idPrefix: String
    /// Extra host paths a box must not see (the service's data dir, work trees...).
    public var hiddenHostPaths: [String]
    /// nil: the host's own `/` (read-only lower layer) with host-private trees hidden.
    /// Otherwise a path to a rootfs (e.g. debootstrapped Debian) used as the lower layer.
    public var baseImage: String?
    public var crunPath: String = "crun"
    public var catatoniPath: String = "/usr/bin/catatonit"
    /// Network mode of new boxes (see `SandboxNetwork`).
    public var network: SandboxNetwork = .host
    /// `.isolated`: the range box addresses come from (nil: a free /16 in 10.200–10.253).
    public var networkRange: IPv4Range? = nil
    /// `.isolated`: where the boxes' resolver forwards (empty: the host's resolv.conf).
    public var dnsUpstreams: [(address: String, port: UInt16)] = []
    /// Each box in a user namespace of its own with its own id range (UserNamespace.swift).
    /// Off only for tests of a box without one.
    public var userNamespaces: Bool = true
    /// Machine-wide claims of id ranges (shared by every serve on the host).
    public var idRangeRegistry: String = "/var/lib/devbox/id-ranges"

    public init(stateDirectory: String, idPrefix: String, hiddenHostPaths: [String] = [],
                baseImage: String? = nil, crunPath: String = "crun",
                catatoniPath: String = "/usr/bin/catatonit", network: SandboxNetwork = .host,
                networkRange: IPv4Range? = nil, dnsUpstreams: [(address: String, port: UInt16)] = []) {
        self.networkRange = networkRange
        self.dnsUpstreams = dnsUpstreams
        self.stateDirectory = stateDirectory
        self.idPrefix = idPrefix
        self.hiddenHostPaths = hiddenHostPaths
        self.baseImage = baseImage
        self.crunPath = crunPath
        self.catatoniPath = catatoniPath
        self.network = network
    }
}
