import DevboxApp
import DevboxSecurity
import DevboxServer
import DevboxService
import Foundation
import Logging

/// The whole service layer for the fast tier: `buildSystem` with a `FakeRuntime`, an in-memory
/// database and a fresh Fernet key — no root, no crun, no data directory, no listener. Not
/// started: `system.services.housekeeping.startUp()` runs the sweep and opens the start-up gate a
/// `ProvisioningWorker` waits for.
public struct FastSystem: Sendable {
    public let system: DevboxSystem
    public let runtime: FakeRuntime
    public let database: AppDatabase

    /// `configure` adjusts the configuration first (plans, lifetimes, …). `onDisk`: the
    /// database is a file, `<runtime.root>/devbox.sqlite` (for tests that scan its bytes).
    public init(
        runtime: FakeRuntime = FakeRuntime(), onDisk: Bool = false, configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws {
        var configuration = ServerConfiguration(dataDirectory: runtime.root)
        configure(&configuration)
        var logger = Logger(label: "fast-test")
        logger.logLevel = .critical
        database =
            onDisk
            ? try AppDatabase(path: runtime.root + "/devbox.sqlite", cachesDevboxes: true)
            : try AppDatabase.inMemory(cachesDevboxes: true)
        system = try await buildSystem(
            configuration: configuration, runtime: runtime, database: database,
            cipher: FernetCipher(ring: FernetKeyRing(primary: .generate())), logger: logger)
        self.runtime = runtime
    }

    public var services: DevboxServices { system.services }

    /// A new provider token (and its provider, `name`), as `devbox token create` makes one.
    public func providerToken(provider name: String = "test") async throws -> String {
        let token = ProviderToken.generate()
        _ = try await database.insertProviderToken(
            providerName: name, tokenHash: ProviderToken.hash(token), hint: String(token.suffix(4)))
        return token
    }
}

/// Runs `body` with a fast system, then removes the fake runtime's directory.
public func withFastSystem<T>(
    onDisk: Bool = false, configure: (inout ServerConfiguration) -> Void = { _ in }, _ body: (FastSystem) async throws -> T
) async throws -> T {
    let fast = try await FastSystem(onDisk: onDisk, configure: configure)
    defer { fast.runtime.removeFiles() }
    return try await body(fast)
}
