import ArgumentParser
import DevboxSecurity
import DevboxService
import Foundation

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage provider tokens (stored as hashes).",
        subcommands: [Create.self, List.self, Revoke.self])

    static func open(_ data: DataDirOptions) throws -> AppDatabase {
        try FileManager.default.createDirectory(
            atPath: data.resolved, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return try AppDatabase(path: data.resolved + "/devbox.sqlite")
    }

    static func create(db: AppDatabase, name: String) async throws -> String {
        let token = ProviderToken.generate()
        _ = try await db.insertProviderToken(
            providerName: name, tokenHash: ProviderToken.hash(token), hint: String(token.suffix(4)))
        return token
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a provider token and print it (only) on stdout.")
        @OptionGroup var data: DataDirOptions
        @Option(help: "Provider name; tokens with the same name act for the same provider.") var name = "default"

        func run() async throws {
            let db = try TokenCommand.open(data)
            print(try await TokenCommand.create(db: db, name: name))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List provider tokens (ids and hints, never the tokens).")
        @OptionGroup var data: DataDirOptions

        func run() async throws {
            let db = try TokenCommand.open(data)
            for t in try await db.listProviderTokens() {
                let state = t.revokedAt == nil ? "active" : "revoked"
                print("\(t.id)\t\(t.provider)\t…\(t.hint)\t\(t.createdAt.formatted(.iso8601))\t\(state)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a provider token by id.")
        @OptionGroup var data: DataDirOptions
        @Argument(help: "Token id (from 'devbox token list').") var id: String

        func run() async throws {
            let db = try TokenCommand.open(data)
            guard try await db.revokeProviderToken(id: id) else {
                fail("no active token with id \(id)")
            }
            print("revoked \(id)")
        }
    }
}
