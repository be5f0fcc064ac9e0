import DevboxModel
import DevboxService
import DevboxTools
import Logging

/// Read access to a data directory's devboxes from another process on the same machine
/// (`devbox mcp`): the core over the same SQLite database (WAL: readers in other processes
/// are safe), with no sandbox runtime, no secrets and no workers. Anything that would change
/// state goes through the running `devbox serve` instead.
public struct LocalReadBackend: Sendable {
    let core: DevboxCore

    public init(dataDirectory: String, logger: Logger) throws {
        core = DevboxCore(
            database: try AppDatabase(path: dataDirectory + "/devbox.sqlite"), cipher: NoSecrets(), sandbox: NoSandbox(),
            configuration: CoreConfiguration(), userVerifier: nil, logger: logger)
    }

    /// A tools backend for the holder of `providerToken` (401 as `DevboxAPIError` if it is not live).
    /// Only its reads may be used: its writes would bypass the serve (they fail on the missing sandbox).
    public func backend(providerToken: String) async throws -> any DevboxBackend {
        do {
            // The writes happen in the serve's process, out of this core's sight: wait_for_ready polls.
            return CoreToolBackend(
                core: core, principal: try await core.authenticate(providerToken: providerToken, bearer: nil), notifies: false)
        } catch {
            throw DevboxAPIError(status: error.statusCode, code: error.code, message: error.message, field: error.field)
        }
    }
}

/// Reads never decrypt; anything that tries is a bug.
private struct NoSecrets: SecretCipher {
    struct Refused: Error {}
    func seal(_ plaintext: String) throws -> String { throw Refused() }
    func open(_ token: String) throws -> String { throw Refused() }
}

/// Reads never touch a sandbox; anything that tries is a bug.
private struct NoSandbox: BoxRuntime {
    struct Refused: Error, CustomStringConvertible {
        var description: String { "sandboxes are managed by devbox serve, not by this process" }
    }
    func prepareHost() async throws { throw Refused() }
    func create(
        box: String, limits: BoxLimits, env: [String: String], setupShell: Bool, egress: EgressPolicy, image: BoxImage?
    ) async throws -> Bool {
        throw Refused()
    }
    func startNetworks(policies: [String: EgressPolicy]) async throws { throw Refused() }
    func setEgressPolicy(box: String, _ policy: EgressPolicy) async throws { throw Refused() }
    func networkInfo(box: String) -> BoxNetworkInfo? { nil }
    var isolatesNetworks: Bool { false }
    func connectInBox(box: String, port: UInt16) async throws -> Int32? { throw Refused() }
    func runSetupCommand(box: String, command: String, timeout: Duration, outputLimit: Int) async throws -> BoxExecResult? {
        throw Refused()
    }
    func finishSetup(box: String) async {}
    func writeEnv(box: String, env: [String: String]) async throws { throw Refused() }
    func exec(
        box: String, argv: [String], env: [String: String], cwd: String, stdin: [UInt8]?, timeout: Duration?,
        outputLimit: Int, mergeStderr: Bool, onOutput: (@Sendable (_ isStderr: Bool, _ chunk: [UInt8]) -> Void)?
    ) async throws -> BoxExecResult { throw Refused() }
    func spawn(box: String, _ spec: BoxProcessSpec) async throws -> any BoxProcess { throw Refused() }
    func stop(box: String) async throws { throw Refused() }
    func start(box: String) async throws { throw Refused() }
    func destroy(box: String) async throws { throw Refused() }
    func sweep(keeping: Set<String>) async -> [String] { [] }
    func releaseIdleResources() async {}
    func startWarmPool(size: Int, limits: BoxLimits) async {}
    func warmPool() -> (target: Int, idle: Int) { (0, 0) }
    func isRunning(box: String) async -> Bool { false }
    func workspaceHostPath(box: String) -> String { "" }
    func readPath(box: String, path: String, maxBytes: Int) async throws -> BoxFileContent { throw Refused() }
    func writeFile(box: String, path: String, bytes: [UInt8], mode: UInt32?) async throws -> Bool { throw Refused() }
    func deletePath(box: String, path: String, recursive: Bool) async throws { throw Refused() }
}
