import DevboxModel
import Foundation
import DevboxRuntime

/// Per-devbox usage (issue 24): `GET /api/v1/devboxes/:id/stats`, the dashboard's chart and
/// the `devbox_stats` MCP tool all read it here.
extension RuntimeService {
    /// The devbox's usage now. A box that is not running reports its disk only; a devbox
    /// whose sandbox is gone (destroyed, failed, not yet provisioned) reports nothing measured.
    /// Another user's devbox answers 404, like an unknown one.
    public func devboxStats(_ principal: Principal, id: String) async throws(ServiceError) -> DevboxStats {
        let box = try await reads.devbox(principal, id: id)
        var stats = DevboxStats(devboxId: box.id, state: box.state, running: false, sampledAt: Date())
        switch box.state {
        case .ready, .stopped, .provisioning:
            guard let u = await sandbox.usage(box: box.id) else { return stats }
            // The cgroup exists exactly while the box runs: its memory figure says so.
            stats.running = u.memoryBytes != nil || u.pids != nil
            stats.cpuSeconds = u.cpuSeconds
            stats.memoryBytes = u.memoryBytes
            stats.memoryPeakBytes = u.memoryPeakBytes
            stats.memoryLimitBytes = u.memoryLimitBytes
            stats.pids = u.pids
            stats.diskUsedBytes = u.diskUsedBytes
            stats.diskUsedComplete = u.diskUsedComplete
            stats.networkInBytes = u.networkInBytes
            stats.networkOutBytes = u.networkOutBytes
        case .requested, .destroyed, .failed:
            break
        }
        return stats
    }
}
