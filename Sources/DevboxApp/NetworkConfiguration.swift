import DevboxService
import Foundation
import Sandbox

/// How boxes reach the network (docs/ARCHITECTURE.md, "Box networks").
public struct NetworkConfiguration: Sendable {
    /// `.isolated` (default): a network namespace per box; `.host`: the host's (weaker,
    /// `DEVBOX_NETWORK=host`, for hosts without nftables).
    public var mode: SandboxNetwork = .isolated
    /// `DEVBOX_NETWORK_CIDR`: the range box addresses come from (nil: a free /16 of 10.200–10.253).
    public var range: IPv4Range?
    /// `DEVBOX_DNS_UPSTREAM`: where the boxes' resolver forwards (empty: the host's resolv.conf).
    public var dnsUpstreams: [(address: String, port: UInt16)] = []

    public init() {}

    /// Reads `DEVBOX_NETWORK`, `DEVBOX_NETWORK_CIDR` and `DEVBOX_DNS_UPSTREAM`.
    public static func fromEnvironment(_ env: [String: String]) throws -> NetworkConfiguration {
        var c = NetworkConfiguration()
        switch env["DEVBOX_NETWORK"] ?? "" {
        case "", "isolated": c.mode = .isolated
        case "host": c.mode = .host
        case let other: throw ConfigurationError("DEVBOX_NETWORK must be 'isolated' or 'host', got '\(other)'")
        }
        if let raw = env["DEVBOX_NETWORK_CIDR"], !raw.isEmpty {
            guard let r = IPv4Range(parsing: raw) else {
                throw ConfigurationError("DEVBOX_NETWORK_CIDR must be an IPv4 network with a prefix of /8 to /28 and no host bits (e.g. 10.200.0.0/16), got '\(raw)'")
            }
            c.range = r
        }
        if let raw = env["DEVBOX_DNS_UPSTREAM"], !raw.isEmpty {
            do {
                c.dnsUpstreams = try BoxDNSResolver.parseUpstreams(raw)
            } catch {
                throw ConfigurationError("DEVBOX_DNS_UPSTREAM must be a comma-separated list of ip[:port] (e.g. 127.0.0.1:5353): \(error)")
            }
        }
        return c
    }

}
