import DevboxService
import Hummingbird

/// Request context carrying the authenticated caller, set by `AuthMiddleware`.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.principal = nil
    }

    /// The seed's limit; larger bodies get 413 (files API raises it per route).
    public var maxUploadSize: Int { 2 * 1024 * 1024 }

    /// The caller; routes behind `AuthMiddleware` always have one.
    func requirePrincipal() throws -> Principal {
        guard let principal else { throw ServiceError.unauthorized("missing X-Provider-Token header") }
        return principal
    }
}
