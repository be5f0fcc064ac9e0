import DevboxService
import Hummingbird
import NIOCore

/// Request context carrying the authenticated caller, set by `AuthMiddleware`.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// The peer (the audit log's source address; `RequestIdMiddleware`).
    public var remoteAddress: SocketAddress?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.principal = nil
        self.remoteAddress = source.channel.remoteAddress
    }

    /// The seed's limit; larger bodies get 413 (files API raises it per route).
    public var maxUploadSize: Int { 2 * 1024 * 1024 }

    /// The caller; routes behind `AuthMiddleware` always have one.
    func requirePrincipal() throws -> Principal {
        guard let principal else { throw ServiceError.unauthorized("missing X-Provider-Token header") }
        return principal
    }
}
