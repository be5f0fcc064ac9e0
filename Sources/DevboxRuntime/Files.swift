import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Files inside a running box: what `BoxFiles` reads, writes and deletes. The crun
// runtime's resolution rules (openat2 beneath the box's root, no symlink out, no pseudo
// filesystems) are in Sandbox/BoxFiles.swift; another runtime keeps the same contract.

/// Why a file operation inside a box was refused or failed.
public enum BoxFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path is not an absolute path without `..`, NUL or empty name.
    case invalidPath(String)
    case notFound
    /// The path leads outside the box (a symlink with an absolute target, or climbing out).
    case escapes
    /// Not a regular file or directory, or on a pseudo filesystem (/proc, /sys, /dev...).
    case unsupported(String)
    case isDirectory
    case notDirectory
    case notEmpty
    case tooLarge(limit: Int, size: Int64)
    case readOnly
    case noSpace
    /// The path is a mount point of the box (/proc, /sys, /dev/pts, /workspace, /.devbox/init…)
    /// or, for a delete, holds one: replacing or removing it would break the box.
    case mountPoint(String)
    case system(String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidPath(let m): return m
        case .notFound: return "no such file or directory"
        case .escapes: return "the path leads outside the devbox (through a symlink with an absolute target or '..')"
        case .unsupported(let m): return m
        case .isDirectory: return "is a directory"
        case .notDirectory: return "a component of the path is not a directory"
        case .notEmpty: return "directory not empty"
        case .tooLarge(let limit, let size): return "the file has \(size) bytes; the limit is \(limit)"
        case .readOnly: return "read-only file system"
        case .noSpace: return "no space left in the devbox"
        case .mountPoint(let p): return "\(p) is a mount point of the devbox (or holds one) and cannot be replaced or deleted"
        case .system(let what, let e): return "\(what): \(String(cString: strerror(e)))"
        }
    }
}

/// Absolute box paths, checked without touching any filesystem.
public enum BoxPath {
    public static let maxBytes = 4096

    /// The components of an absolute path: `.` and empty components dropped; `..`, NUL,
    /// relative paths and over-long paths refused. `[]` is the root.
    public static func components(_ path: String) throws(BoxFileError) -> [String] {
        guard path.hasPrefix("/") else { throw .invalidPath("path must be absolute (start with /)") }
        guard path.utf8.count <= maxBytes else { throw .invalidPath("path is longer than \(maxBytes) bytes") }
        guard !path.utf8.contains(0) else { throw .invalidPath("path must not contain NUL bytes") }
        var out: [String] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { throw .invalidPath("path must not contain '..' components") }
            guard c.utf8.count <= 255 else { throw .invalidPath("a path component is longer than 255 bytes") }
            out.append(String(c))
        }
        return out
    }
}

/// One entry of a directory listing.
public struct BoxFileEntry: Sendable, Equatable {
    public enum Kind: String, Sendable { case file, directory, symlink, other }
    public var name: String
    public var kind: Kind
    public var size: Int64
    public var mode: UInt32
    public var modifiedAt: Date
    /// For a symlink: where it points (as stored, not resolved).
    public var linkTarget: String?

    public init(name: String, kind: Kind, size: Int64, mode: UInt32, modifiedAt: Date, linkTarget: String?) {
        self.name = name
        self.kind = kind
        self.size = size
        self.mode = mode
        self.modifiedAt = modifiedAt
        self.linkTarget = linkTarget
    }
}

public enum BoxFileContent: Sendable {
    case file(bytes: [UInt8], mode: UInt32)
    case directory(entries: [BoxFileEntry], truncated: Bool)
}
