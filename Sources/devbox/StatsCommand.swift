import ArgumentParser
import DevboxClient
import DevboxModel
import Foundation

// MARK: stats

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show what a devbox uses now: CPU, memory, pids, disk, network.",
        discussion: """
            Read from the box's cgroups, its writable tree and its network link when asked. \
            CPU seconds and network bytes count from the box's last start; with --watch N the \
            command prints a line every N seconds with the CPU use over the interval.

            \(CLIExit.help)
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Devbox id.") var id: String
    @Flag(help: "Print the API's JSON.") var json = false
    @Option(help: ArgumentHelp("Print a line every N seconds until interrupted.", valueName: "N")) var watch: Int?

    func validate() throws {
        if let watch, !(1...3600).contains(watch) { throw ValidationError("--watch must be 1-3600 seconds") }
        if watch != nil && json { throw ValidationError("--watch and --json cannot be combined") }
    }

    func run() async throws {
        try await runClient {
            let client = try connection.makeClient()
            if json {
                return printJSON(try await client.rawRequest("GET", path: "/api/v1/devboxes/\(try GetCommand.escape(id))/stats"))
            }
            var last = try await client.devboxes.stats(id)
            guard let watch else { return Self.printTable(last) }
            print("time      cpu%   memory      pids  disk        net in      net out")
            while true {
                try await Task.sleep(for: .seconds(watch))
                let now = try await client.devboxes.stats(id)
                Self.printLine(now, previous: last)
                last = now
            }
        }
    }

    static func printTable(_ s: DevboxStats) {
        var rows: [(String, String)] = [("state", s.state.rawValue + (s.running ? " (running)" : ""))]
        rows.append(("cpu", s.cpuSeconds.map { String(format: "%.2f s", $0) } ?? "-"))
        var memory = s.memoryBytes.map(bytes) ?? "-"
        if let peak = s.memoryPeakBytes { memory += " (peak \(bytes(peak)))" }
        if let limit = s.memoryLimitBytes { memory += " of \(bytes(limit))" }
        rows.append(("memory", memory))
        rows.append(("pids", s.pids.map(String.init) ?? "-"))
        rows.append(("disk", bytes(s.diskUsedBytes) + (s.diskUsedComplete ? "" : " (at least)")))
        if let i = s.networkInBytes, let o = s.networkOutBytes {
            rows.append(("network", "\(bytes(i)) in, \(bytes(o)) out"))
        } else {
            rows.append(("network", "-"))
        }
        let w = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print("\(k):".padding(toLength: w + 2, withPad: " ", startingAt: 0) + v) }
    }

    static func printLine(_ s: DevboxStats, previous p: DevboxStats) {
        let dt = s.sampledAt.timeIntervalSince(p.sampledAt)
        var cpu = "-"
        if let a = s.cpuSeconds, let b = p.cpuSeconds, dt > 0, a >= b { cpu = String(format: "%.1f", (a - b) / dt * 100) }
        let time = ISO8601DateFormatter.string(from: s.sampledAt, timeZone: .current, formatOptions: [.withTime, .withColonSeparatorInTime])
        func col(_ v: String, _ n: Int) -> String { v.padding(toLength: max(n, v.count + 1), withPad: " ", startingAt: 0) }
        print(
            col(time, 10) + col(cpu, 7) + col(s.memoryBytes.map(bytes) ?? "-", 12) + col(s.pids.map(String.init) ?? "-", 6)
                + col(bytes(s.diskUsedBytes), 12) + col(s.networkInBytes.map(bytes) ?? "-", 12) + (s.networkOutBytes.map(bytes) ?? "-"))
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}
