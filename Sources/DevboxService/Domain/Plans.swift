import Foundation

/// A size plan: the resource limits a devbox of that plan really gets.
public struct Plan: Sendable, Equatable, Codable {
    public var name: String
    public var memoryMiB: Int
    public var cpus: Double
    public var pids: Int

    public init(name: String, memoryMiB: Int, cpus: Double, pids: Int) {
        self.name = name
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.pids = pids
    }

    /// What the sandbox runtime enforces for this plan.
    public var limits: BoxLimits { BoxLimits(memoryBytes: Int64(memoryMiB) << 20, cpus: cpus, pids: pids) }

    public static let defaults: [Plan] = [
        Plan(name: "small", memoryMiB: 1024, cpus: 1, pids: 512),
        Plan(name: "medium", memoryMiB: 4096, cpus: 2, pids: 2048),
        Plan(name: "large", memoryMiB: 8192, cpus: 4, pids: 4096),
    ]

    /// Parses `DEVBOX_PLANS`: `name:memoryMiB:cpus:pids` entries separated by commas.
    public static func parse(_ spec: String) throws -> [Plan] {
        var plans: [Plan] = []
        for entry in spec.split(separator: ",") {
            let parts = entry.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 4, !parts[0].isEmpty, let mem = Int(parts[1]), mem >= 16,
                let cpus = Double(parts[2]), cpus > 0, let pids = Int(parts[3]), pids >= 16
            else {
                throw ConfigurationError("DEVBOX_PLANS entry '\(entry)' is not name:memoryMiB:cpus:pids (e.g. small:1024:1:512)")
            }
            plans.append(Plan(name: parts[0], memoryMiB: mem, cpus: cpus, pids: pids))
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
