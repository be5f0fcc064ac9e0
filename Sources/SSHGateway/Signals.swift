#if canImport(Glibc)
import Glibc
#endif

/// Signal names as SSH carries them (RFC 4254 §6.10: without the "SIG" prefix).
enum SSHSignal {
    static let table: [(name: String, number: Int32)] = [
        ("ABRT", SIGABRT), ("ALRM", SIGALRM), ("FPE", SIGFPE), ("HUP", SIGHUP), ("ILL", SIGILL), ("INT", SIGINT),
        ("KILL", SIGKILL), ("PIPE", SIGPIPE), ("QUIT", SIGQUIT), ("SEGV", SIGSEGV), ("TERM", SIGTERM),
        ("USR1", SIGUSR1), ("USR2", SIGUSR2),
    ]

    /// OpenSSH's spelling for a signal outside the RFC's list.
    static func name(_ number: Int32) -> String {
        table.first { $0.number == number }?.name ?? "SIG\(number)@openssh.com"
    }

    static func number(_ name: String) -> Int32? {
        table.first { $0.name == name }?.number
    }
}
