import DevboxModel
import Foundation
import ServiceLifecycle

/// Stops idle devboxes and destroys expired ones. The clocks live in the database
/// (`last_activity_at`, `expires_at`), so a restart of the service keeps them.
public struct LifetimeWorker: Service {
    let housekeeping: Housekeeping

    public init(housekeeping: Housekeeping) { self.housekeeping = housekeeping }

    public func run() async throws {
        let interval = housekeeping.lifetimes.checkInterval
        await cancelWhenGracefulShutdown {
            // Nothing is stopped or destroyed before the listeners are bound and start-up has run.
            guard await housekeeping.startup.wait() else { return }
            while !Task.isCancelled {
                await housekeeping.enforceLifetimes()
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }
}
