import Foundation
import Logging
import Testing

@testable import DevboxApp
@testable import DevboxServer
@testable import DevboxService

/// Builds the whole service layer on a fresh data directory, runs `body`, then gives back
/// what building it took on the host (the shared mask tmpfs that `prepareHost` mounts) and
/// removes the directory. Fails the test if a mount under the directory is left behind.
func withTestSystem<T>(_ tag: String, _ body: (DevboxSystem, String) async throws -> T) async throws -> T {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-\(tag)-\(UUID().uuidString)").path
    let system = try await buildSystem(configuration: ServerConfiguration(dataDirectory: dir), logger: Logger(label: "test"))
    func cleanUp() async {
        await system.services.runtime.sandbox.releaseIdleResources()
        let mountinfo = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let left = mountinfo.split(separator: "\n").filter { $0.contains(" \(dir)/") || $0.contains(" \(dir) ") }
        #expect(left.isEmpty, "mounts left under \(dir): \(left)")
        try? FileManager.default.removeItem(atPath: dir)
    }
    do {
        let result = try await body(system, dir)
        await cleanUp()
        return result
    } catch {
        await cleanUp()
        throw error
    }
}
