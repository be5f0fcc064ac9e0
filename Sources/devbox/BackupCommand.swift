import ArgumentParser
import DevboxSecurity
import DevboxService
import Foundation
import SSHGateway

#if canImport(Glibc)
    import Glibc
#endif

/// The data dir's files a backup carries besides the database.
private let backedUpFiles = [FernetKeyRing.keyFileName, SSHGatewayConfiguration.hostKeyFileName]

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write a consistent copy of the database and the keys to FILE (mode 0600), while serve runs.",
        discussion: """
            FILE is a tar holding MANIFEST.json, devbox.sqlite (SQLite's online backup API: a snapshot \
            even while a serve writes), encryption.key and the SSH host key. The key file decrypts \
            every secret in the database: keep the backup as safe as the data directory. With \
            DEVBOX_ENCRYPTION_KEY set instead of a key file, keep that value too: it is not in FILE. \
            The boxes' files are not included.
            """)

    @OptionGroup var data: DataDirOptions
    @Argument(help: "Where to write the backup (replaced atomically).") var file: String

    func run() throws {
        do {
            let names = try DataBackup.backup(dataDirectory: data.resolved, to: file, extraFiles: backedUpFiles)
            print("backed up \(names.joined(separator: ", ")) to \(file) (mode 0600: it holds the encryption key)")
        } catch let e as DataBackup.Failure {
            fail(e.description)
        }
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a backup (from `devbox backup`) into a fresh data directory.",
        discussion: """
            The data directory must be missing or empty; --force replaces the database and keys of \
            a non-empty one (never while a serve uses it). Start `devbox serve` on it afterwards: \
            boxes whose files are not there are brought back up (or failed) as after a reboot.
            """)

    @OptionGroup var data: DataDirOptions
    @Flag(help: "Restore into a non-empty data directory, replacing its database and keys.") var force = false
    @Argument(help: "The backup file.") var file: String

    func run() throws {
        let dir = data.resolved
        if force, Self.serveHoldsLock(dir) {
            fail("a devbox serve is using \(dir); stop it before restoring into it")
        }
        do {
            let names = try DataBackup.restore(from: file, into: dir, force: force, allowed: Set(backedUpFiles))
            print("restored \(names.joined(separator: ", ")) into \(dir)")
        } catch let e as DataBackup.Failure {
            fail(e.description)
        }
    }

    /// Whether another process holds `<dir>/serve.lock` (DataDirectoryLock).
    static func serveHoldsLock(_ dir: String) -> Bool {
        let fd = open(dir + "/serve.lock", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }
}
