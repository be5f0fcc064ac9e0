import DevboxModel
import Foundation

extension DevboxCore {
    /// Start-up, after the sweep and the networks: a devbox the database calls `ready` whose
    /// box does not run (the host rebooted, or something killed the boxes while the service
    /// was down) is started again on its files — upper layer, /workspace and env file are on
    /// disk, so it comes back as it was, env-mode AI tokens included (they are in its env
    /// file, not in the database). If that fails it is marked `stopped` (a later start
    /// retries): a devbox is never shown `ready` while its box is not running.
    func reviveLostBoxes() async {
        let ids: [String]
        do { ids = try await db.devboxIds(inStates: [.ready]) } catch {
            logger.error("reading ready devboxes failed: \(error)")
            return
        }
        for id in ids where await !sandbox.isRunning(box: id) {
            do {
                try await sandbox.start(box: id)
                logger.notice("devbox was not running (host reboot?): started again", metadata: ["devbox": "\(id)"])
            } catch {
                logger.warning("devbox was not running and could not be started; marking it stopped",
                               metadata: ["devbox": "\(id)", "error": "\(error)"])
                do { try await db.transition(id, to: .stopped) } catch {
                    logger.error("marking a lost devbox stopped failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
                }
            }
        }
    }
}
