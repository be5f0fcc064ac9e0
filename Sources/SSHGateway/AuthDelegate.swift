import Foundation
import NIOCore
import NIOSSH

/// Public-key authentication for one connection. NIOSSH has already checked the
/// signature when this is asked; the backend decides the rest. Every refusal is the same
/// USERAUTH_FAILURE, whatever failed (unknown session, wrong key, expired, revoked...).
final class GatewayAuthDelegate: NIOSSHServerUserAuthenticationDelegate, Sendable {
    let connection: GatewayConnection
    let backend: any SSHGatewayBackend
    let onSuccess: @Sendable (GatewayConnection, SSHGatewayGrant) -> Void

    init(connection: GatewayConnection, backend: any SSHGatewayBackend,
         onSuccess: @escaping @Sendable (GatewayConnection, SSHGatewayGrant) -> Void) {
        self.connection = connection
        self.backend = backend
        self.onSuccess = onSuccess
    }

    var supportedAuthenticationMethods: NIOSSHAvailableUserAuthenticationMethods { .publicKey }

    func requestReceived(
        request: NIOSSHUserAuthenticationRequest, responsePromise: EventLoopPromise<NIOSSHUserAuthenticationOutcome>
    ) {
        guard case .publicKey(let offer) = request.request, let (type, blob) = Self.wireForm(offer.publicKey) else {
            responsePromise.succeed(.failure)
            return
        }
        let username = request.username
        let connection = self.connection
        let backend = self.backend
        let onSuccess = self.onSuccess
        Task {
            if let grant = await backend.authorize(username: username, keyType: type, keyBlob: blob),
                grant.expiresAt > Date(), connection.authenticate(grant)
            {
                onSuccess(connection, grant)
                responsePromise.succeed(.success)
            } else {
                responsePromise.succeed(.failure)
            }
        }
    }

    /// The key's type name and SSH wire blob, as an authorized_keys line carries them.
    static func wireForm(_ key: NIOSSHPublicKey) -> (String, [UInt8])? {
        let line = String(openSSHPublicKey: key)
        let parts = line.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let data = Data(base64Encoded: String(parts[1])) else { return nil }
        return (String(parts[0]), [UInt8](data))
    }
}
