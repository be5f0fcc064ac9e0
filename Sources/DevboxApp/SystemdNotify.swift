import Foundation
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// sd_notify(3) without libsystemd: one datagram to the unix socket named by
/// `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). The unit is
/// `Type=notify`: `READY=1` once the HTTP and SSH listeners are bound and start-up has run,
/// `STOPPING=1` when a graceful shutdown begins, `STATUS=` lines along the way. Without
/// `NOTIFY_SOCKET` (not under systemd) every call does nothing.
public enum SystemdNotify {
    /// Sends `state` (e.g. "READY=1\nSTATUS=serving"); answers whether it was sent.
    @discardableResult
    public static func send(_ state: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        var pathBytes = Array(path.utf8)
        if pathBytes.first == UInt8(ascii: "@") {
            pathBytes[0] = 0  // abstract namespace
        } else if pathBytes.first != UInt8(ascii: "/") {
            return false  // systemd also allows vsock: addresses; not supported here
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in pathBytes.enumerated() { raw[i] = b }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        // An abstract address is exactly as long as its name; a path one includes the NUL.
        let length = MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes[0] == 0 ? 0 : 1)
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, socklen_t(length)) }
            }
        }
        return sent == message.count
    }
}

/// A member of the serve's service group that says `STOPPING=1` the moment a graceful
/// shutdown (SIGTERM, SIGINT) begins, before the HTTP server drains.
struct SystemdStoppingNotifier: Service {
    func run() async throws {
        try? await gracefulShutdown()
        SystemdNotify.send("STOPPING=1\nSTATUS=draining requests and stopping workers")
    }
}
