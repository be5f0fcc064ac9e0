import Foundation

/// A size plan: the resource limits a devbox of that plan really gets.
public struct Plan: Sendable, Equatable, Codable {
    public var name: String
    public var memoryMiB: Int
    public var cpus: Double
    public var pids: Int
    /// Size of the box's own disk (writable layer and /workspace together), MiB.
    public var diskMiB: Int

    public init(name: String, memoryMiB: Int, cpus: Double, pids: Int, diskMiB: Int = Plan.defaultDiskMiB) {
        self.name = name
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.pids = pids
        self.diskMiB = diskMiB
    }

    /// What the sandbox runtime enforces for this plan.
    public var limits: BoxLimits {
        BoxLimits(memoryBytes: Int64(memoryMiB) << 20, cpus: cpus, pids: pids, diskBytes: Int64(diskMiB) << 20)
    }

    /// The disk of a plan given without one (a four-field `DEVBOX_PLANS` entry): 10 GiB.
    public static let defaultDiskMiB = 10 << 10
    /// The smallest disk a plan may have (ext4's journal and metadata need a few MiB).
    public static let minimumDiskMiB = 64

    public static let defaults: [Plan] = [
        Plan(name: "small", memoryMiB: 1024, cpus: 1, pids: 512, diskMiB: 10 << 10),
        Plan(name: "medium", memoryMiB: 4096, cpus: 2, pids: 2048, diskMiB: 20 << 10),
        Plan(name: "large", memoryMiB: 8192, cpus: 4, pids: 4096, diskMiB: 40 << 10),
    ]

    /// Parses `DEVBOX_PLANS`: `name:memoryMiB:cpus:pids[:diskMiB]` entries separated by
    /// commas (without a disk size: `defaultDiskMiB`).
    public static func parse(_ spec: String) throws -> [Plan] {
        var plans: [Plan] = []
        for entry in spec.split(separator: ",") {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 4 || parts.count == 5, !parts[0].isEmpty, let mem = Int(parts[1]), mem >= 16,
                let cpus = Double(parts[2]), cpus > 0, cpus.isFinite, let pids = Int(parts[3]), pids >= 16
            else {
                throw ConfigurationError(
                    "DEVBOX_PLANS entry '\(entry)' is not name:memoryMiB:cpus:pids[:diskMiB] (e.g. small:1024:1:512:10240)")
            }
            var disk = defaultDiskMiB
            if parts.count == 5 {
                // At most 16 TiB (ext4's largest file on a 4 KiB-block host filesystem).
                guard let d = Int(parts[4]), d >= minimumDiskMiB, d <= 16 << 20 else {
                    throw ConfigurationError(
                        "DEVBOX_PLANS entry '\(entry)': diskMiB must be a whole number from \(minimumDiskMiB) to \(16 << 20)")
                }
                disk = d
            }
            guard !plans.contains(where: { $0.name == parts[0] }) else {
                throw ConfigurationError("DEVBOX_PLANS names plan '\(parts[0])' twice")
            }
            plans.append(Plan(name: parts[0], memoryMiB: mem, cpus: cpus, pids: pids, diskMiB: disk))
        }
        guard !plans.isEmpty else { throw ConfigurationError("DEVBOX_PLANS is empty") }
        return plans
    }
}

/// A configuration problem, reported as one line before the service refuses to start.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
