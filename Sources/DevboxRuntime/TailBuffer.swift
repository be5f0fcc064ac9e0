/// The last `limit` bytes of a stream — the one tail buffer of the service: an exec's
/// stdout and stderr, a setup command's output, git's, a provisioning step's log.
/// Appends trim only once the storage is well past the limit (a stream read in 16 KiB
/// pieces is not shifted on every read); `bytes` and `truncated` are always exact.
public struct TailBuffer: Sendable {
    public let limit: Int
    private var storage: [UInt8] = []
    private var cut = false

    public init(limit: Int) { self.limit = max(0, limit) }

    public mutating func append<S: Sequence>(_ more: S) where S.Element == UInt8 {
        storage.append(contentsOf: more)
        if storage.count > limit * 2 + 65536 { trim() }
    }

    /// Drops everything before the last `limit` bytes now.
    public mutating func trim() {
        if storage.count > limit {
            storage.removeFirst(storage.count - limit)
            cut = true
        }
    }

    /// Records that bytes were dropped before they reached this buffer.
    public mutating func markTruncated() { cut = true }

    /// The kept bytes: the last `limit` appended.
    public var bytes: [UInt8] { storage.count > limit ? Array(storage.suffix(limit)) : storage }

    /// Whether older bytes were dropped.
    public var truncated: Bool { cut || storage.count > limit }
}
