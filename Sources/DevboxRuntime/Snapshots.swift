// Snapshots (issue 23): a box's file system changes frozen as read-only layers that new
// boxes stack (crun: Sources/Sandbox/Snapshot.swift). A runtime that can take them
// conforms to `BoxSnapshots`; the service asks `runtime as? any BoxSnapshots`.

/// A snapshot's layers: what a box made from it runs on.
public struct SnapshotLayers: Sendable, Equatable, Codable {
    /// The snapshot id.
    public var id: String
    /// The image the chain starts on (the devbox's image name).
    public var image: String
    /// Where the layers are (crun: the image store's root).
    public var store: String
    /// The root file system's lower dirs, top first: the snapshot's own layer, then the box's.
    public var rootLowerDirs: [String]
    /// `/workspace`'s lower dirs, top first.
    public var workspaceLowerDirs: [String]
    /// Bytes the snapshot's own layers take on disk.
    public var sizeBytes: Int64

    public init(
        id: String, image: String, store: String, rootLowerDirs: [String], workspaceLowerDirs: [String], sizeBytes: Int64
    ) {
        self.id = id
        self.image = image
        self.store = store
        self.rootLowerDirs = rootLowerDirs
        self.workspaceLowerDirs = workspaceLowerDirs
        self.sizeBytes = sizeBytes
    }

    enum CodingKeys: String, CodingKey {
        case id, image, store
        case rootLowerDirs = "root_lower_dirs", workspaceLowerDirs = "workspace_lower_dirs", sizeBytes = "size_bytes"
    }

    /// The image a box made from this snapshot runs on.
    public var boxImage: BoxImage {
        BoxImage(name: image, lowerDirs: rootLowerDirs, store: store, workspaceLowerDirs: workspaceLowerDirs)
    }
}

/// What taking a snapshot cost.
public struct SnapshotTiming: Sendable, Equatable {
    /// From the start of the copy to the layers' install.
    public var totalNanos: UInt64
    /// How long the box's processes were frozen.
    public var pauseNanos: UInt64
    /// Files and bytes copied while frozen.
    public var pausedFiles: Int
    public var pausedBytes: Int64

    public init(totalNanos: UInt64, pauseNanos: UInt64, pausedFiles: Int, pausedBytes: Int64) {
        self.totalNanos = totalNanos
        self.pauseNanos = pauseNanos
        self.pausedFiles = pausedFiles
        self.pausedBytes = pausedBytes
    }
}

/// Snapshots of boxes.
public protocol BoxSnapshots: Sendable {
    /// Freezes the box's changes (writable layer and /workspace) as read-only layers, kept
    /// as `snapshotID`; a running box is paused for the last pass of the copy only. Throws
    /// `BoxRuntimeError.invalidArgument` when the box cannot be snapshotted (e.g. not on an image).
    func snapshot(box: String, snapshotID: String) async throws -> (layers: SnapshotLayers, timing: SnapshotTiming)
    /// Drops a snapshot: its layers go once no box made from it remains.
    func releaseSnapshot(snapshotID: String) async
}
