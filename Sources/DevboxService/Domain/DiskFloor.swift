import Foundation

/// `DEVBOX_MIN_FREE_DISK`: how much of the data directory's filesystem must stay free for
/// the service to take a create (507 below it). Box disks are sparse and may overcommit the
/// host (their sizes add up to more than it has): this floor is what guards the host.
public enum DiskFloor: Sendable, Equatable, CustomStringConvertible {
    /// A share of the filesystem's size, in percent (0 ..< 100).
    case percent(Double)
    /// A number of bytes.
    case bytes(Int64)

    public static let standard = DiskFloor.percent(5)

    /// "5%", "0.5%", "2GiB", "500M", "1048576" (bytes); K/M/G/T are binary, with or
    /// without "iB"/"B". "0" turns the floor off.
    public static func parse(_ raw: String, name: String = "DEVBOX_MIN_FREE_DISK") throws -> DiskFloor {
        let s = raw.trimmingCharacters(in: .whitespaces)
        let bad = ConfigurationError(
            "\(name) must be a percentage below 100 (e.g. 5%) or a size (e.g. 2GiB, 500MiB), got '\(raw)'")
        if s.hasSuffix("%") {
            guard let v = Double(s.dropLast().trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0, v < 100 else { throw bad }
            return .percent(v)
        }
        var number = Substring(s)
        var shift = 0
        for (suffixes, bits) in [(["TiB", "TB", "T"], 40), (["GiB", "GB", "G"], 30), (["MiB", "MB", "M"], 20),
                                 (["KiB", "KB", "K", "k"], 10), (["B"], 0)] {
            if let suffix = suffixes.first(where: { s.hasSuffix($0) }) {
                number = s.dropLast(suffix.count)
                shift = bits
                break
            }
        }
        let trimmed = number.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let v = Double(trimmed), v.isFinite, v >= 0, v * Double(Int64(1) << shift) < 9.0e18
        else { throw bad }
        return .bytes(Int64(v * Double(Int64(1) << shift)))
    }

    /// The free bytes below which creates are refused, on a filesystem of `total` bytes.
    public func minimumFree(total: Int64) -> Int64 {
        switch self {
        case .percent(let p): Int64((Double(total) * p / 100).rounded(.up))
        case .bytes(let b): b
        }
    }

    public var description: String {
        switch self {
        case .percent(let p): p == p.rounded() ? "\(Int64(p))%" : String(format: "%.2f%%", p)
        case .bytes(let b): DiskFloor.describe(b)
        }
    }

    /// "1.5 GiB", "512 MiB", "42 bytes".
    public static func describe(_ bytes: Int64) -> String {
        for (unit, bits) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] where bytes >= Int64(1) << bits {
            let v = Double(bytes) / Double(Int64(1) << bits)
            return v == v.rounded() ? "\(Int64(v)) \(unit)" : String(format: "%.1f %@", v, unit)
        }
        return "\(bytes) bytes"
    }
}
