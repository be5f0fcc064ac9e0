#if canImport(Glibc)
import Glibc
#endif

// The values that cross the runtime seam (BoxRuntime.swift): what the service hands a
// runtime and what it gets back. One set, used as they are by the service and by every
// runtime (the crun one in Sources/Sandbox among them), by these names.

/// Resource limits of one box.
public struct BoxLimits: Sendable, Equatable {
    /// Memory limit in bytes; swap is limited to the same figure (no swap use beyond it).
    public var memoryBytes: Int64
    /// CPU quota in cores: 0.5 = half a core. 0 or less = no quota.
    public var cpus: Double
    /// Maximum number of tasks (processes and threads) in the box.
    public var pids: Int
    /// Size of the box's own filesystem (writable layer and /workspace together; crun:
    /// Sandbox/BoxDisk.swift); 0: no disk of its own (unlimited).
    public var diskBytes: Int64

    public init(memoryBytes: Int64, cpus: Double, pids: Int, diskBytes: Int64 = 0) {
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
        self.diskBytes = diskBytes
    }
}

/// The result of a command run to completion inside a box.
public struct BoxExecResult: Sendable {
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

public struct TerminalSize: Sendable, Equatable {
    public var rows: UInt16
    public var cols: UInt16
    public init(rows: UInt16, cols: UInt16) {
        self.rows = rows
        self.cols = cols
    }
}

/// A process to run inside a box.
public struct BoxProcessSpec: Sendable {
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

/// A process running inside a box (`BoxExec.spawn`), seen through host file descriptors:
/// the SSH gateway hands them to NIO. `stdin`, `stdout`, `stderr` belong to the caller
/// (this object never closes them, except `closeStdin()`). With a PTY, `stdout` is the
/// terminal's master, `stdin` is the same descriptor and `stderr` is nil. A runtime whose
/// processes are not local (a pod's agent) gives the host ends of socket pairs it pumps.
public protocol BoxProcess: AnyObject, Sendable {
    /// The host pid of the process (crun), or of whatever stands for it on the host.
    var pid: Int32 { get }
    var stdin: Int32? { get }
    var stdout: Int32 { get }
    var stderr: Int32? { get }
    var hasExited: Bool { get }
    /// Sets the PTY window size (the box sees SIGWINCH); throws without a PTY.
    func resize(_ size: TerminalSize) throws
    /// Sends `sig` to the process's group inside the box (with a PTY: to the terminal's
    /// foreground group). No-op once it was collected.
    func signal(_ sig: Int32)
    /// Waits for the exit without blocking a thread: (exit code, nil) or (nil, signal).
    func wait() async -> (exitCode: Int32?, signal: Int32?)
    /// Closes stdin (the process reads EOF); no-op with a PTY.
    func closeStdin()
}

/// Why a runtime refused or failed an operation on a box (files: `BoxFileError`).
public enum BoxRuntimeError: Error, CustomStringConvertible, Sendable {
    case invalidID(String)
    case invalidEnvironment(String)
    case invalidArgument(String)
    case alreadyExists(String)
    case notFound(String)
    case notRunning(String)
    /// A host system call failed.
    case system(String, errno: Int32)
    /// The runtime's tool (crun, ...) failed; `message` is its stderr (never holds env values).
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

/// What one box uses now, as its runtime measures it (crun: Sandbox/BoxUsage.swift). A
/// figure the runtime cannot give is nil: CPU, memory and pids of a box that is not
/// running, network of a box without a network of its own.
public struct BoxUsage: Sendable, Equatable {
    /// CPU time of every process in the box since it started (v2 `cpu.stat` usage_usec,
    /// v1 `cpuacct.usage`).
    public var cpuSeconds: Double?
    /// Memory charged to the box now (`memory.current` / `memory.usage_in_bytes`).
    public var memoryBytes: Int64?
    /// The most it was charged since it started (`memory.peak` / `memory.max_usage_in_bytes`);
    /// nil on a kernel without `memory.peak`.
    public var memoryPeakBytes: Int64?
    /// Its memory limit (nil: none).
    public var memoryLimitBytes: Int64?
    public var pids: Int?
    /// Bytes the box's writable tree (its upper dir and workspace) takes on disk.
    public var diskUsedBytes: Int64
    /// False when the walk stopped at its bound (crun: `BoxUsage.walkLimit` entries): the
    /// figure is a lower bound. A box on a file system of its own is measured with statfs:
    /// always complete.
    public var diskUsedComplete: Bool
    /// Bytes received by / sent from the box (the host end's tx / rx counters).
    public var networkInBytes: Int64?
    public var networkOutBytes: Int64?

    public init(
        cpuSeconds: Double? = nil, memoryBytes: Int64? = nil, memoryPeakBytes: Int64? = nil, memoryLimitBytes: Int64? = nil,
        pids: Int? = nil, diskUsedBytes: Int64 = 0, diskUsedComplete: Bool = true, networkInBytes: Int64? = nil,
        networkOutBytes: Int64? = nil
    ) {
        self.cpuSeconds = cpuSeconds
        self.memoryBytes = memoryBytes
        self.memoryPeakBytes = memoryPeakBytes
        self.memoryLimitBytes = memoryLimitBytes
        self.pids = pids
        self.diskUsedBytes = diskUsedBytes
        self.diskUsedComplete = diskUsedComplete
        self.networkInBytes = networkInBytes
        self.networkOutBytes = networkOutBytes
    }
}

/// A box's place on its network (crun: `SandboxNetwork.isolated`).
public struct BoxNetworkInfo: Sendable, Equatable {
    /// The box's own address (its eth0).
    public var address: String
    /// The host end of its link: the box's gateway, resolver and service address.
    public var gateway: String
    /// The host interface of its link.
    public var hostInterface: String

    public init(address: String, gateway: String, hostInterface: String) {
        self.address = address
        self.gateway = gateway
        self.hostInterface = hostInterface
    }
}
