import DevboxModel
import Foundation

extension DevboxCore {
    /// Start-up, after the sweep and the networks: a devbox the database calls `ready` whose
    /// box does not run (the host rebooted, or something killed the boxes while the service
    /// was down) is started again on its files — upper layer and /workspace are on disk, so it
    /// comes back as it was. Its env file lives on a tmpfs (never on the host's disk): after a
    /// mere service restart it is still there, env-mode AI tokens included; after a host
    /// reboot it is rebuilt from the database (`restoreEnvIfLost`). If the start fails the
    /// devbox is marked `stopped` (a later start retries): a devbox is never shown `ready`
    /// while its box is not running.
    func reviveLostBoxes() async {
        let ids: [String]
        do { ids = try await db.devboxIds(inStates: [.ready]) } catch {
            logger.error("reading ready devboxes failed: \(error)")
            return
        }
        for id in ids where await !sandbox.isRunning(box: id) {
            await restoreEnvIfLost(id)
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

    /// Before a box starts: if its env file is gone (the host rebooted, the tmpfs with it),
    /// writes a new one from what the database holds — the user's env values (encrypted
    /// rows, kept while the devbox lives) and, in credential_mode proxy, the broker's settings.
    /// Env-mode AI tokens are kept nowhere else by design (issue 3) and do not come back.
    func restoreEnvIfLost(_ id: String) async {
        guard !sandbox.hasEnv(box: id) else { return }
        do {
            var env: [String: String] = [:]
            for r in try await db.envRecords(devboxId: id) { env[r.key] = try cipher.open(r.valueEncrypted) }
            var note = "user env restored; env-mode AI tokens are not kept anywhere else and were not restored"
            if try await db.devboxRecord(id: id)?.credentialMode == CredentialMode.proxy.rawValue {
                do {
                    env.merge(try await brokerEnv(devboxId: id)) { _, broker in broker }
                    note = "user env and proxy settings restored"
                } catch {
                    note = "user env restored; the broker's settings could not be (\(error))"
                }
            }
            try await sandbox.writeEnv(box: id, env: env)
            logger.notice("the devbox's env file was gone (host reboot?): rebuilt from the database",
                          metadata: ["devbox": "\(id)", "keys": "\(env.count)", "note": "\(note)"])
        } catch {
            logger.error("rebuilding a lost env file failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
        }
    }
}
