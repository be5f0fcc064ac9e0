import Foundation
import DevboxRuntime

/// A login the backend accepted: which session and devbox a connection acts for.
public struct SSHGatewayGrant: Sendable {
    public var sessionId: String
    public var devboxId: String
    public var expiresAt: Date
    /// The backend's own record of the grant, handed back to it unchanged (the gateway
    /// never looks inside).
    public var backendGrant: any Sendable

    public init(sessionId: String, devboxId: String, expiresAt: Date, backendGrant: any Sendable) {
        self.sessionId = sessionId
        self.devboxId = devboxId
        self.expiresAt = expiresAt
        self.backendGrant = backendGrant
    }
}

/// What the gateway asks of the service. Kept narrow so the gateway knows nothing of
/// storage, users or devbox states.
public protocol SSHGatewayBackend: Sendable {
    /// Decides a public-key login. `keyType` is the SSH key type name (`ssh-ed25519`,
    /// `ecdsa-sha2-nistp256`, ...) and `keyBlob` the key in SSH wire format. The signature
    /// has already been verified. nil refuses, whatever the reason.
    func authorize(username: String, keyType: String, keyBlob: [UInt8]) async -> SSHGatewayGrant?
    /// True while the grant still allows new channels and live connections.
    func isValid(_ grant: SSHGatewayGrant) async -> Bool
    /// Starts a process inside the grant's devbox.
    func spawn(_ grant: SSHGatewayGrant, _ spec: BoxProcessSpec) async throws -> any BoxProcess
    /// The devbox is in use through SSH (called at most once a minute per session while
    /// its connections carry channels).
    func noteActivity(_ grant: SSHGatewayGrant) async
    /// A TCP socket connected to `port` on the devbox's own loopback, from inside its network
    /// namespace (`ssh -L`); nil when the box shares the host's network (the gateway then
    /// connects to the host's loopback itself).
    func connectInBox(_ grant: SSHGatewayGrant, port: Int) async throws -> Int32?
}

extension SSHGatewayBackend {
    public func connectInBox(_ grant: SSHGatewayGrant, port: Int) async throws -> Int32? { nil }
}
