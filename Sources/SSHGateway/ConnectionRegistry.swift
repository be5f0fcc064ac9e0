import Foundation
import NIOCore
import Synchronization

/// One accepted TCP connection: its channel, and once authenticated, its grant.
final class GatewayConnection: Sendable {
    let id: UInt64
    let channel: any Channel
    let acceptedAt: ContinuousClock.Instant

    private struct State {
        var grant: SSHGatewayGrant?
        var closed = false
        var openChannels = 0
    }
    private let state = Mutex(State())

    init(id: UInt64, channel: any Channel) {
        self.id = id
        self.channel = channel
        self.acceptedAt = .now
    }

    var grant: SSHGatewayGrant? { state.withLock { $0.grant } }
    var openChannels: Int { state.withLock { $0.openChannels } }

    func channelOpened() { state.withLock { $0.openChannels += 1 } }
    func channelClosed() { state.withLock { $0.openChannels -= 1 } }

    /// Attaches the grant unless the connection closed meanwhile (then the login fails).
    func authenticate(_ grant: SSHGatewayGrant) -> Bool {
        state.withLock { s in
            guard !s.closed, s.grant == nil else { return false }
            s.grant = grant
            return true
        }
    }

    func markClosed() { state.withLock { $0.closed = true } }
}

/// Every live connection of the gateway, authenticated or not, so that any of them can be
/// found and closed: by session, by devbox, or all at shutdown.
final class ConnectionRegistry: Sendable {
    private struct State {
        var nextId: UInt64 = 1
        var connections: [UInt64: GatewayConnection] = [:]
    }
    private let state = Mutex(State())

    func open(_ channel: any Channel) -> GatewayConnection {
        state.withLock { s in
            let c = GatewayConnection(id: s.nextId, channel: channel)
            s.nextId += 1
            s.connections[c.id] = c
            return c
        }
    }

    func remove(_ connection: GatewayConnection) {
        connection.markClosed()
        _ = state.withLock { $0.connections.removeValue(forKey: connection.id) }
    }

    var all: [GatewayConnection] { state.withLock { Array($0.connections.values) } }

    var count: Int { state.withLock { $0.connections.count } }

    /// Connections accepted since start (metrics).
    var accepted: UInt64 { state.withLock { $0.nextId - 1 } }

    func connections(where match: (SSHGatewayGrant) -> Bool) -> [GatewayConnection] {
        all.filter { c in c.grant.map(match) ?? false }
    }

    /// Authenticated connections grouped by session.
    func bySession() -> [String: (grant: SSHGatewayGrant, connections: [GatewayConnection])] {
        var out: [String: (grant: SSHGatewayGrant, connections: [GatewayConnection])] = [:]
        for c in all {
            guard let g = c.grant else { continue }
            out[g.sessionId, default: (g, [])].connections.append(c)
        }
        return out
    }
}
