import DevboxService
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One serve per data directory: an exclusive `flock` on `<data>/serve.lock`, held until the
/// process exits (the kernel drops it with the process, even after SIGKILL; the descriptor is
/// close-on-exec, so crun and the boxes never inherit it).
///
/// The serve is the only writer of the devbox tables, and relies on it: its in-memory devbox
/// cache is kept coherent by watching its own commits. A second serve on the same directory
/// would also fight the first over containers, leases and the SSH host key.
enum DataDirectoryLock {
    static func acquire(dataDirectory: String) throws {
        let path = dataDirectory + "/serve.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ConfigurationError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK
                ? "another devbox serve is already using the data directory \(dataDirectory)"
                : "cannot lock \(path): \(String(cString: strerror(errno)))"
            close(fd)
            throw ConfigurationError(reason)
        }
        // Deliberately never closed: the lock lasts as long as the process.
    }
}
