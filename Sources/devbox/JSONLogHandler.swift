import DevboxModel
import DevboxService
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `DEVBOX_LOG_FORMAT=json`: one JSON object per line on stderr, for journald, Loki and
/// friends: `time` (RFC 3339, ms, UTC), `level`, `message`, `label`, `request_id` and
/// `devbox_id` where known, then the line's other metadata as string values (a key that
/// would shadow one of these is prefixed `meta_`). Each line is one write(2), under a lock
/// so lines of concurrent tasks never interleave.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    static let reserved: Set<String> = ["time", "level", "message", "label", "request_id", "devbox_id", "source", "file", "line"]
    private static let lock = Mutex(())

    init(label: String, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadataProvider?.get() ?? [:]
        all.merge(metadata) { _, new in new }
        if let explicit = event.metadata { all.merge(explicit) { _, new in new } }
        var obj: [String: String] = [
            "time": DevboxJSON.formatDate(Date()), "level": event.level.rawValue, "message": event.message.description,
            "label": label,
        ]
        for (k, v) in all {
            switch k {
            case "request_id": obj["request_id"] = v.description
            case "devbox", "devbox_id": obj["devbox_id"] = v.description
            default: obj[Self.reserved.contains(k) ? "meta_" + k : k] = v.description
            }
        }
        Self.write(Self.encode(obj))
    }

    /// A flat object of strings, keys sorted (`time`, `level` and `message` first for people reading raw lines).
    static func encode(_ obj: [String: String]) -> [UInt8] {
        let first = ["time", "level", "message"]
        var out: [UInt8] = [UInt8(ascii: "{")]
        var keys = first.filter { obj[$0] != nil }
        keys += obj.keys.filter { !first.contains($0) }.sorted()
        for (i, k) in keys.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendString(k, to: &out)
            out.append(UInt8(ascii: ":"))
            appendString(obj[k] ?? "", to: &out)
        }
        out += Array("}\n".utf8)
        return out
    }

    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static func write(_ bytes: [UInt8]) {
        lock.withLock { _ in
            var rest = bytes[...]
            while !rest.isEmpty {
                let n = rest.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                rest = rest.dropFirst(n)
            }
        }
    }
}

/// The request id (and the devbox a request names) of the task logging, for every handler.
let requestMetadataProvider = Logger.MetadataProvider {
    guard let origin = RequestOrigin.current else { return [:] }
    var m: Logger.Metadata = [:]
    if let id = origin.requestId { m["request_id"] = .string(id) }
    if let d = origin.devboxId { m["devbox_id"] = .string(d) }
    return m
}
