#if canImport(Glibc)
import Glibc
#endif

/// Resource limits of one box (cgroup v1: memory, pids, cpu).
public struct SandboxLimits: Sendable, Equatable {
    /// Memory limit in bytes; swap is limited to the same figure (no swap use beyond it).
    public var memoryBytes: Int64
    /// CPU quota in cores: 0.5 = half a core. 0 or less = no quota.
    public var cpus: Double
    /// Maximum number of tasks (processes and threads) in the box.
    public var pids: Int
    /// Size of the box's own filesystem (writable layer and /workspace together, BoxDisk.swift);
    /// 0: no disk of its own (the state directory's filesystem, unlimited).
    public var diskBytes: Int64

    public init(memoryBytes: Int64, cpus: Double, pids: Int, diskBytes: Int64 = 0) {
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
        self.diskBytes = diskBytes
    }
}

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

public struct TerminalSize: Sendable, Equatable {
    public var rows: UInt16
    public var cols: UInt16
    public init(rows: UInt16, cols: UInt16) {
        self.rows = rows
        self.cols = cols
    }
}

/// A process to run inside a box.
public struct SandboxProcessSpec: Sendable {
    public var argv: [String]
    /// Extra environment on top of the box env file (`/etc/devbox/env`).
    public var env: [String: String] = [:]
    public var cwd: String = "/workspace"
    /// Non-nil: run on a PTY of this size.
    public var tty: TerminalSize? = nil

    public init(argv: [String], env: [String: String] = [:], cwd: String = "/workspace",
                tty: TerminalSize? = nil) {
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.tty = tty
    }
}

public struct ExecOutcome: Sendable {
    /// The process's own exit code; nil when it was killed by a signal.
    public var exitCode: Int32?
    /// The signal that killed the process, if any.
    public var signal: Int32?
    /// Last `outputLimit` bytes of stdout (or of stdout+stderr in order when merged).
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    /// True when bytes were dropped from the front of stdout or stderr.
    public var truncated: Bool
    /// True when the timeout expired and the process group was killed.
    public var timedOut: Bool
    public var durationNanos: UInt64

    public init(exitCode: Int32?, signal: Int32?, stdout: [UInt8], stderr: [UInt8],
                truncated: Bool, timedOut: Bool, durationNanos: UInt64) {
        self.exitCode = exitCode
        self.signal = signal
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated
        self.timedOut = timedOut
        self.durationNanos = durationNanos
    }
}

public enum SandboxError: Error, CustomStringConvertible, Sendable {
    case invalidID(String)
    case invalidEnvironment(String)
    case invalidArgument(String)
    case alreadyExists(String)
    case notFound(String)
    case notRunning(String)
    /// A host system call failed.
    case system(String, errno: Int32)
    /// crun (or another tool) failed; `message` is its stderr (never holds env values).
    case commandFailed(String, status: Int32, message: String)

    public var description: String {
        switch self {
        case .invalidID(let s): return "invalid box id: \(s)"
        case .invalidEnvironment(let s): return "invalid environment: \(s)"
        case .invalidArgument(let s): return "invalid argument: \(s)"
        case .alreadyExists(let s): return "box already exists: \(s)"
        case .notFound(let s): return "no such box: \(s)"
        case .notRunning(let s): return "box is not running: \(s)"
        case .system(let s, let e): return "\(s): \(String(cString: strerror(e)))"
        case .commandFailed(let c, let st, let m): return "\(c) failed (status \(st)): \(m)"
        }
    }
}
