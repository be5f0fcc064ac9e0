import Foundation

/// `GET /api/v1/devboxes/:id/stats` (issue 24): what the box uses now, read from its cgroups,
/// its disk and its network link when asked. Figures the host cannot give are null: CPU,
/// memory and pids while the box is not running, network without a network of its own,
/// `memory_peak_bytes` on a kernel without it. Counters (`cpu_seconds`, network bytes) count
/// from the box's last start; a client gets rates from two samples.
public struct DevboxStats: Codable, Sendable, Equatable {
    public var devboxId: String
    public var state: DevboxState
    /// True while the box's processes run (its cgroup exists).
    public var running: Bool
    public var sampledAt: Date
    public var cpuSeconds: Double?
    public var memoryBytes: Int64?
    public var memoryPeakBytes: Int64?
    public var memoryLimitBytes: Int64?
    public var pids: Int?
    /// Bytes the box's writable tree (root file system changes and /workspace) takes on disk.
    public var diskUsedBytes: Int64
    /// False when the measurement stopped at its bound: `disk_used_bytes` is then a lower bound.
    public var diskUsedComplete: Bool
    public var networkInBytes: Int64?
    public var networkOutBytes: Int64?

    public init(
        devboxId: String, state: DevboxState, running: Bool, sampledAt: Date, cpuSeconds: Double? = nil,
        memoryBytes: Int64? = nil, memoryPeakBytes: Int64? = nil, memoryLimitBytes: Int64? = nil, pids: Int? = nil,
        diskUsedBytes: Int64 = 0, diskUsedComplete: Bool = true, networkInBytes: Int64? = nil, networkOutBytes: Int64? = nil
    ) {
        self.devboxId = devboxId
        self.state = state
        self.running = running
        self.sampledAt = sampledAt
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

    enum CodingKeys: String, CodingKey {
        case devboxId = "devbox_id", state, running, sampledAt = "sampled_at", cpuSeconds = "cpu_seconds"
        case memoryBytes = "memory_bytes", memoryPeakBytes = "memory_peak_bytes", memoryLimitBytes = "memory_limit_bytes"
        case pids, diskUsedBytes = "disk_used_bytes", diskUsedComplete = "disk_used_complete"
        case networkInBytes = "network_in_bytes", networkOutBytes = "network_out_bytes"
    }

    /// Every key always present (null when unknown), so clients and the schema see one shape.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(devboxId, forKey: .devboxId)
        try c.encode(state, forKey: .state)
        try c.encode(running, forKey: .running)
        try c.encode(sampledAt, forKey: .sampledAt)
        try c.encode(cpuSeconds, forKey: .cpuSeconds)
        try c.encode(memoryBytes, forKey: .memoryBytes)
        try c.encode(memoryPeakBytes, forKey: .memoryPeakBytes)
        try c.encode(memoryLimitBytes, forKey: .memoryLimitBytes)
        try c.encode(pids, forKey: .pids)
        try c.encode(diskUsedBytes, forKey: .diskUsedBytes)
        try c.encode(diskUsedComplete, forKey: .diskUsedComplete)
        try c.encode(networkInBytes, forKey: .networkInBytes)
        try c.encode(networkOutBytes, forKey: .networkOutBytes)
    }
}
