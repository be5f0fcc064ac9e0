import ArgumentParser
import DevboxSecurity
import DevboxService
import Foundation

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Manage the Fernet keys that encrypt secrets at rest.",
        subcommands: [Generate.self, Rotate.self])

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a new key (urlsafe base64 of 32 bytes, as Python's Fernet.generate_key()).")
        func run() async throws { print(FernetKey.generate().base64) }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-encrypt every stored secret with the first key of DEVBOX_ENCRYPTION_KEY.",
            discussion: """
                Rotation: put the new key first and keep the old one after it
                (DEVBOX_ENCRYPTION_KEY=NEW,OLD), run `devbox keys rotate`, then remove OLD.
                Without DEVBOX_ENCRYPTION_KEY the data directory's key file is used (nothing to rotate).
                """)
        @OptionGroup var data: DataDirOptions

        func run() async throws {
            let ring: FernetKeyRing
            do {
                ring = try FernetKeyRing.loadOrCreate(dataDirectory: URL(fileURLWithPath: data.resolved))
            } catch {
                fail("\(error)")
            }
            let db = try TokenCommand.open(data)
            do {
                let n = try await db.reencryptSecrets { token in
                    try ring.needsReencryption(token) ? try ring.reencrypt(token) : nil
                }
                print("re-encrypted \(n) secret\(n == 1 ? "" : "s") with the first key")
            } catch {
                fail("rotation aborted, nothing was changed: a stored secret cannot be decrypted with any given key (\(type(of: error)))")
            }
        }
    }
}
