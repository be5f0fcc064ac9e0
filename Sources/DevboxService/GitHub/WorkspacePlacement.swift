import CDevbox
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Moves a finished clone into a box's workspace. The workspace is a host directory the
/// box controls, so nothing in it is trusted: every component of the target path is
/// created or opened relative to its parent with openat2(RESOLVE_NO_SYMLINKS |
/// RESOLVE_BENEATH | RESOLVE_NO_XDEV), and the clone arrives with one rename(2) of a
/// directory that was built outside the workspace. A symlink planted at `/workspace/a`
/// therefore fails the clone instead of sending the rename to `/etc` on the host.
enum WorkspacePlacement {
    enum Failure: Error, Equatable, CustomStringConvertible {
        case unsafe(String)
        case exists(String)
        case system(String, Int32)

        var description: String {
            switch self {
            case .unsafe(let why), .exists(let why): why
            case .system(let what, let e): "\(what): \(String(cString: strerror(e)))"
            }
        }
    }

    /// `target` is a normalized `/workspace/…` path; `source` a directory on the same
    /// filesystem as the workspace (the box's own host directory). Directories made on the
    /// way belong to `owner` (the box's root as the host sees it).
    static func move(_ source: String, workspace workspaceHostPath: String, target: String,
                     owner: (uid: UInt32, gid: UInt32) = (0, 0)) throws(Failure) {
        let components = target.split(separator: "/").map(String.init)
        guard components.count >= 2, components[0] == "workspace" else {
            throw .unsafe("target_path \(target) is not inside /workspace")
        }
        let inside = Array(components.dropFirst())
        let workspaceFD = open(workspaceHostPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard workspaceFD >= 0 else { throw .system("opening the workspace", errno) }
        var dirFD = workspaceFD
        defer { close(dirFD) }
        var shown = "/workspace"
        for name in inside.dropLast() {
            shown += "/" + name
            var made = true
            if mkdirat(dirFD, name, 0o755) != 0 {
                guard errno == EEXIST else { throw .system("creating \(shown)", errno) }
                made = false
            }
            let next = dbx_open_beneath(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            if made, next >= 0, owner != (0, 0) { _ = fchown(next, owner.uid, owner.gid) }
            guard next >= 0 else {
                let e = errno
                var st = stat()
                // O_DIRECTORY|O_NOFOLLOW on a symlink reports ENOTDIR: say what it is.
                if fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFLNK {
                    throw refusal(shown, ELOOP)
                }
                throw refusal(shown, e)
            }
            close(dirFD)
            dirFD = next
        }
        let last = inside[inside.count - 1]
        shown += "/" + last
        var st = stat()
        if fstatat(dirFD, last, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            let kind = st.st_mode & S_IFMT
            if kind == S_IFLNK { throw .unsafe("\(shown) is a symbolic link; refusing to clone over it") }
            guard kind == S_IFDIR else { throw .exists("\(shown) already exists and is not a directory") }
            // An empty directory is replaced by rename(2); a non-empty one makes it fail.
        }
        if renameat(AT_FDCWD, source, dirFD, last) != 0 {
            let e = errno
            if e == ENOTEMPTY || e == EEXIST { throw .exists("\(shown) already exists and is not empty") }
            throw .system("moving the clone to \(shown)", e)
        }
    }

    static func refusal(_ path: String, _ e: Int32) -> Failure {
        switch e {
        case ELOOP: .unsafe("\(path) is a symbolic link; refusing to follow it")
        case ENOTDIR: .exists("\(path) exists and is not a directory")
        case EXDEV: .unsafe("\(path) is a mount point; refusing to cross it")
        default: .system("opening \(path)", e)
        }
    }
}
