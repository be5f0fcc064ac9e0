import DevboxModel
import Foundation

extension DevboxesAPI {
    /// `GET /api/v1/devboxes/:id/stats`: what the devbox uses now (CPU seconds, memory
    /// current/peak, pids, disk used, network bytes in/out; null where not known).
    public func stats(_ id: String) async throws -> DevboxStats {
        try await http.json(DevboxStats.self, "GET", "/api/v1/devboxes/\(try HTTPCore.segment(id))/stats")
    }
}
