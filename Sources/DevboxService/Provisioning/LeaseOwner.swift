import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Worker identities are `wrk_<random>@<pid>`: a lease whose holder process is gone (on
/// this host) can be taken over at once instead of after it expires.
enum LeaseOwner {
    static func make() -> String { Identifier.make("wrk_", length: 12) + "@\(getpid())" }

    static func isAlive(_ owner: String) -> Bool {
        guard let at = owner.lastIndex(of: "@"), let pid = Int32(owner[owner.index(after: at)...]), pid > 0 else {
            return true  // not ours to judge: wait for the lease to expire
        }
        if pid == getpid() { return true }
        if kill(pid, 0) == 0 { return !isZombie(pid) }
        return errno != ESRCH
    }

    /// A killed process that nobody reaped yet still answers kill(0).
    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }
}
