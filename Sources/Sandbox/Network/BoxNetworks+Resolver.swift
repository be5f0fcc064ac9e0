import Synchronization

// The boxes' resolver (DNSResolver.swift), one per runtime, started by BoxNetworks.start.
extension BoxNetworks {
    var resolverRunning: Bool { resolverBox.withLock { $0 != nil } }

    /// Starts the resolver on every host address (nftables redirects the boxes' port 53 to
    /// it; it answers only sources that are boxes of ours) and returns its port.
    func startResolver() throws -> UInt16 {
        let upstreams = upstreams.isEmpty ? BoxDNSResolver.upstreams() : upstreams
        if upstreams.isEmpty { logger.warning("no DNS upstream (DEVBOX_DNS_UPSTREAM unset, no nameserver in /etc/resolv.conf): names will not resolve in boxes") }
        let r = BoxDNSResolver(
            upstreams: upstreams, logger: logger,
            policy: { [weak self] source in self?.policy(forSource: source) },
            admit: { [weak self] box, answers in self?.admit(box: box.value, answers: answers) })
        let port = try r.start(host: "0.0.0.0", port: 0)
        resolverBox.withLock { $0 = r }
        return port
    }

    func stopResolver() {
        let r = resolverBox.withLock { r -> BoxDNSResolver? in
            defer { r = nil }
            return r
        }
        r?.stop()
    }
}
