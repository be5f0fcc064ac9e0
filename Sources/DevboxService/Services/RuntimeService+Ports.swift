import DevboxModel
import Foundation
import DevboxRuntime

/// Nothing answers on a devbox's port: the proxy reports it as 502 naming the port.
public struct PortUnreachable: Error, Sendable, CustomStringConvertible {
    public let devboxId: String
    public let port: UInt16
    /// The connect's failure, e.g. "Connection refused".
    public let reason: String

    public var description: String { "nothing answers on port \(port) in devbox \(devboxId): \(reason)" }
}

/// Exposed ports (`/api/v1/devboxes/:id/ports/:port/…`): the HTTP proxy in DevboxServer
/// forwards over a connection this makes from inside the box's network namespace.
extension RuntimeService {
    /// Checks that the caller may reach a port of the devbox: their own (another user's
    /// devbox is unknown, 404) and ready (409 otherwise).
    public func checkPortAccess(_ principal: Principal, id: String) async throws(ServiceError) {
        try await reads.requireReady(principal, id: id, for: "serve its ports")
    }

    /// A TCP connection to `port` on the devbox's own loopback, made from inside its network
    /// namespace, so an app bound to the box's 127.0.0.1 answers. Returns the connected
    /// socket (the caller owns it), or nil when boxes share the host's network (connect to
    /// the host's 127.0.0.1:`port` then). Throws `ServiceError` (404, 409, 503) or
    /// `PortUnreachable` when nothing listens there.
    public func connectPort(_ principal: Principal, id: String, port: UInt16) async throws -> Int32? {
        try await checkPortAccess(principal, id: id)
        await activity.noteActivity(devboxId: id)
        do {
            return try await sandbox.connectInBox(box: id, port: port)
        } catch BoxRuntimeError.system(_, let errno) where Self.unreachableErrnos.contains(errno) {
            throw PortUnreachable(devboxId: id, port: port, reason: String(cString: strerror(errno)))
        } catch {
            throw await runtimeFailure(error, id: id, what: "connect to port \(port)")
        }
    }

    /// connect(2) failures that mean "nothing answers there" rather than a fault of ours.
    static let unreachableErrnos: Set<Int32> = [ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ECONNRESET, ECONNABORTED]
}
