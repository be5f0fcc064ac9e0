import Foundation

/// A snapshot (issue 23): a devbox's file system changes (its writable layer and
/// `/workspace`) frozen as a read-only layer over the devbox's image. Creates with
/// `"snapshot": "<id or name>"` start from it; `POST /api/v1/devboxes/:id/fork` makes one and
/// starts `count` boxes from it. Names are unique per user; ids look like `snap_…`.
public struct Snapshot: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// The devbox it was taken from (the box may be destroyed since).
    public var devboxId: String
    /// The image under the snapshot's layer (see `Devbox.image`); nil for a box without one.
    public var image: String?
    /// Bytes the snapshot's layer takes on disk (counts against the user's snapshot quota).
    public var sizeBytes: Int64
    public var createdAt: Date

    public init(id: String, name: String, devboxId: String, image: String?, sizeBytes: Int64, createdAt: Date) {
        self.id = id
        self.name = name
        self.devboxId = devboxId
        self.image = image
        self.sizeBytes = sizeBytes
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, image, devboxId = "devbox_id", sizeBytes = "size_bytes", createdAt = "created_at"
    }

    /// Every key always present (`image` null when unknown), so clients and the schema see one shape.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(devboxId, forKey: .devboxId)
        try c.encode(image, forKey: .image)
        try c.encode(sizeBytes, forKey: .sizeBytes)
        try c.encode(createdAt, forKey: .createdAt)
    }
}

/// `GET /api/v1/snapshots` body: the caller's snapshots, newest first.
public struct SnapshotList: Codable, Sendable, Equatable {
    public var snapshots: [Snapshot]
    public init(snapshots: [Snapshot]) { self.snapshots = snapshots }
}

/// Body of `POST /api/v1/devboxes/:id/snapshots`.
public struct CreateSnapshotRequest: Codable, Sendable, Equatable {
    public var name: String
    public init(name: String) { self.name = name }
}

/// Body of `POST /api/v1/devboxes/:id/fork`: a snapshot of the box plus `count` creates
/// (1–32) from it. `name`: the snapshot's name and the new boxes' name prefix (nil: the
/// server picks). `copyEnv`: the new boxes get the original's env values (default false);
/// AI tokens come only from the fork request's own headers.
public struct ForkDevboxRequest: Codable, Sendable, Equatable {
    public var count: Int
    public var name: String?
    public var copyEnv: Bool?

    public init(count: Int = 1, name: String? = nil, copyEnv: Bool? = nil) {
        self.count = count
        self.name = name
        self.copyEnv = copyEnv
    }

    enum CodingKeys: String, CodingKey { case count, name, copyEnv = "copy_env" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        count = try c.decodeStrictIntIfPresent(forKey: .count) ?? 1
        name = try c.decodeIfPresent(String.self, forKey: .name)
        copyEnv = try c.decodeIfPresent(Bool.self, forKey: .copyEnv)
    }
}

/// `POST /api/v1/devboxes/:id/fork` answer (201): the snapshot taken and the new devboxes.
public struct ForkResult: Codable, Sendable, Equatable {
    public var snapshot: Snapshot
    public var devboxes: [Devbox]
    public init(snapshot: Snapshot, devboxes: [Devbox]) {
        self.snapshot = snapshot
        self.devboxes = devboxes
    }
}
