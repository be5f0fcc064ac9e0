import DevboxServer
import DevboxService
import Foundation
import Logging
import SSHGateway
import Sandbox

/// The access service as the SSH gateway's backend (keys, sessions, grants, processes).
struct AccessSSHBackend: SSHGatewayBackend {
    let access: AccessService

    func authorize(username: String, keyType: String, keyBlob: [UInt8]) async -> SSHGatewayGrant? {
        guard let g = await access.authorizeSSH(username: username, keyType: keyType, keyBlob: keyBlob) else { return nil }
        await access.noteActivity(devboxId: g.devboxId)
        return SSHGatewayGrant(sessionId: g.sessionId, devboxId: g.devboxId, expiresAt: g.expiresAt, backendGrant: g)
    }

    func isValid(_ grant: SSHGatewayGrant) async -> Bool {
        guard let g = grant.backendGrant as? SSHGrant else { return false }
        return await access.grantIsValid(g)
    }

    func spawn(_ grant: SSHGatewayGrant, _ spec: BoxProcessSpec) async throws -> any BoxProcess {
        guard let g = grant.backendGrant as? SSHGrant else { throw BoxRuntimeError.invalidArgument("foreign SSH grant") }
        return try await access.spawn(g, spec)
    }

    func connectInBox(_ grant: SSHGatewayGrant, port: Int) async throws -> Int32? {
        guard let g = grant.backendGrant as? SSHGrant, let p = UInt16(exactly: port) else {
            throw BoxRuntimeError.invalidArgument("foreign SSH grant")
        }
        return try await access.connectInBox(g, port: p)
    }

    /// Channels (shells, commands, `ssh -L` tunnels) keep the devbox's idle clock at zero;
    /// the lifetime worker also counts any open connection as activity.
    func noteActivity(_ grant: SSHGatewayGrant) async { await access.noteActivity(devboxId: grant.devboxId) }
}

/// The gateway as the services see it (`GatewayBox`): counts and closes live connections.
struct GatewayAccess: AccessGateway {
    let gateway: SSHGateway

    func connectionCount(sessionId: String) -> Int { gateway.connectionCount(sessionId: sessionId) }
    func connectionCount(devboxId: String) -> Int { gateway.connectionCount(devboxId: devboxId) }
    func closeConnections(sessionId: String) { gateway.closeConnections(sessionId: sessionId) }
    func closeConnections(devboxId: String) { gateway.closeConnections(devboxId: devboxId) }
}

/// Builds the SSH gateway of a system and attaches it to the services, so revoking a session
/// or deleting a devbox closes its connections. `direct-tcpip` never reaches the
/// service's own ports.
public func buildSSHGateway(system: DevboxSystem, configuration: ServerConfiguration, logger: Logger) throws -> SSHGateway {
    let settings = SSHGatewayConfiguration(
        host: configuration.sshHost, port: configuration.sshPort, dataDirectory: configuration.dataDirectory,
        deniedForwardPorts: [configuration.httpPort, configuration.sshPort])
    let gateway = try SSHGateway(configuration: settings, backend: AccessSSHBackend(access: system.services.access), logger: logger)
    system.services.gateway.set(GatewayAccess(gateway: gateway))
    system.metrics.attach(sshGateway: gateway)
    return gateway
}

/// Session lifetime bounds; `DEVBOX_SESSION_MIN_TTL`, `DEVBOX_SESSION_MAX_TTL` and
/// `DEVBOX_SESSION_DEFAULT_TTL` (seconds) override the defaults (tests use short sessions).
func sessionPolicy(environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> SessionPolicy {
    var policy = SessionPolicy()
    func seconds(_ name: String) throws -> Int? {
        guard let raw = env[name], !raw.isEmpty else { return nil }
        guard let v = Int(raw), v > 0 else { throw ConfigurationError("\(name) must be a positive number of seconds, got '\(raw)'") }
        return v
    }
    if let v = try seconds("DEVBOX_SESSION_MIN_TTL") { policy.minTTL = v }
    if let v = try seconds("DEVBOX_SESSION_MAX_TTL") { policy.maxTTL = v }
    if let v = try seconds("DEVBOX_SESSION_DEFAULT_TTL") { policy.defaultTTL = v }
    guard policy.minTTL <= policy.defaultTTL, policy.defaultTTL <= policy.maxTTL else {
        throw ConfigurationError("session TTLs must satisfy min <= default <= max")
    }
    return policy
}
