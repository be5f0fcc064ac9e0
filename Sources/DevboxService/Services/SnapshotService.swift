import DevboxModel
import Foundation
import Logging
import DevboxRuntime

/// Snapshot settings (issue 23): `DEVBOX_SNAPSHOT_QUOTA` bounds the bytes one user's
/// snapshots take (default 50 GiB).
public struct SnapshotSettings: Sendable {
    public var quotaBytes: Int64 = 50 << 30
    public init(quotaBytes: Int64 = 50 << 30) { self.quotaBytes = quotaBytes }

    /// `DEVBOX_SNAPSHOT_QUOTA`: bytes, or a size with K/M/G/T (binary units, optional `iB`/`B`).
    public static func parseQuota(_ text: String) -> Int64? {
        var t = text.trimmingCharacters(in: .whitespaces).uppercased()
        for suffix in ["IB", "B"] where t.hasSuffix(suffix) && t.count > suffix.count { t = String(t.dropLast(suffix.count)); break }
        var shift: Int64 = 0
        if let last = t.last, let i = "KMGT".firstIndex(of: last) {
            shift = Int64("KMGT".distance(from: "KMGT".startIndex, to: i) + 1) * 10
            t = String(t.dropLast())
        }
        guard let n = Int64(t), n >= 0, n <= (Int64.max >> shift) else { return nil }
        return n << shift
    }

    static func describe(_ bytes: Int64) -> String {
        if bytes >= 1 << 30 && bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        if bytes >= 1 << 20 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        return "\(bytes) bytes"
    }
}

/// Snapshots (issue 23): a devbox's file system changes frozen as read-only layers
/// (Sandbox/Snapshot.swift); creates from a snapshot stack them; a fork is a snapshot
/// plus up to 32 creates. A snapshot belongs to its user (another user's answers 404)
/// and its name is unique per user. DELETE unlists it at once (its name is free again);
/// its layers stay on disk while devboxes made from it exist, and go with the last one.
public final class SnapshotService: Sendable, LoggingService {
    let db: AppDatabase
    let sandbox: any BoxRuntime
    let reads: DevboxReads
    let images: ImageService
    let settings: SnapshotSettings
    let auditor: Auditor
    let logger: Logger

    public init(
        database: AppDatabase, runtime: any BoxRuntime, reads: DevboxReads, images: ImageService, settings: SnapshotSettings,
        auditor: Auditor, logger: Logger
    ) {
        self.db = database
        self.sandbox = runtime
        self.reads = reads
        self.images = images
        self.settings = settings
        self.auditor = auditor
        self.logger = logger
    }

    /// The snapshot a create names (`snapshot`: an id or a name of the caller's), nil without one.
    func snapshotOfCreate(_ request: CreateDevboxRequest, userId: String) async throws(ServiceError) -> SnapshotRecord? {
        guard let ref = request.snapshot else { return nil }
        if request.image != nil {
            throw .validation(field: "snapshot", message: "snapshot and image are mutually exclusive: a snapshot brings the image it was taken on")
        }
        guard !ref.isEmpty, ref.unicodeScalars.count <= 64 else {
            throw .validation(field: "snapshot", message: "snapshot must be a snapshot's id or name (1 to 64 characters)")
        }
        let found: SnapshotRecord?
        do { found = try await db.snapshot(idOrName: ref, userId: userId) } catch { throw storageFailure(error) }
        guard let found else {
            throw .validation(field: "snapshot", message: "unknown snapshot '\(ref)' (GET /api/v1/snapshots lists yours)")
        }
        return found
    }

    /// The layers a devbox runs on: its snapshot's when it was made from one, else its image's.
    func boxImage(of record: DevboxRecord) async throws -> BoxImage? {
        guard let snapshotId = record.snapshotId else { return try images.boxImage(ofDevbox: record.image) }
        guard let snap = try await db.snapshot(id: snapshotId) else {
            throw ServiceError.unavailable("snapshot \(snapshotId) was deleted before this devbox was made")
        }
        return snap.layers.boxImage
    }

    func createSnapshotUnaudited(_ principal: Principal, devboxId: String, name: String) async throws(ServiceError) -> Snapshot {
        try CreateValidation.checkName(name, field: "name")
        let box = try await reads.devbox(principal, id: devboxId)
        guard box.state == .ready || box.state == .stopped else {
            throw .conflict("devbox \(devboxId) is \(box.state.rawValue); a snapshot needs a ready or stopped devbox")
        }
        let quota = settings.quotaBytes
        do {
            if try await db.snapshotNameTaken(userId: principal.userId, name: name) {
                throw ServiceError.conflict("you already have a snapshot named '\(name)'")
            }
            let used = try await db.snapshotBytes(userId: principal.userId)
            if used >= quota { throw Self.quotaError(used: used, adding: nil, quota: quota) }
        } catch {
            throw storageFailure(error)
        }
        guard let snapshots = sandbox as? any BoxSnapshots else {
            throw .conflict("this server's box runtime cannot take snapshots")
        }
        let id = Identifier.make("snap_")
        let taken: (layers: SnapshotLayers, timing: SnapshotTiming)
        do {
            taken = try await snapshots.snapshot(box: devboxId, snapshotID: id)
        } catch let e as BoxRuntimeError {
            if case .invalidArgument(let why) = e { throw .conflict(why) }
            logger.error("snapshot failed", metadata: ["devbox": "\(devboxId)", "error": "\(e)"])
            throw .unavailable("the snapshot of \(devboxId) could not be taken, try again")
        } catch {
            logger.error("snapshot failed", metadata: ["devbox": "\(devboxId)", "error": "\(error)"])
            throw .unavailable("the snapshot of \(devboxId) could not be taken, try again")
        }
        let record = SnapshotRecord(
            id: id, userId: principal.userId, name: name, devboxId: devboxId, image: taken.layers.image,
            sizeBytes: taken.layers.sizeBytes, store: taken.layers.store,
            rootLayers: SnapshotRecord.encodeLayers(taken.layers.rootLowerDirs),
            workspaceLayers: SnapshotRecord.encodeLayers(taken.layers.workspaceLowerDirs),
            createdAt: Date())
        do {
            try await db.insertSnapshot(record, quota: quota)
        } catch {
            await snapshots.releaseSnapshot(snapshotID: id)
            switch error {
            case AppDatabase.SnapshotInsert.nameTaken: throw .conflict("you already have a snapshot named '\(name)'")
            case AppDatabase.SnapshotInsert.overQuota(let used): throw Self.quotaError(used: used, adding: record.sizeBytes, quota: quota)
            default: throw storageFailure(error)
            }
        }
        // As stored (whole milliseconds): the answer now and a GET later agree.
        let stored = (try? await db.snapshot(id: id)) ?? record
        logger.info("snapshot stored", metadata: [
            "snapshot": "\(id)", "devbox": "\(devboxId)", "bytes": "\(record.sizeBytes)",
            "pause_ms": "\(taken.timing.pauseNanos / 1_000_000)",
        ])
        return stored.model
    }

    static func quotaError(used: Int64, adding: Int64?, quota: Int64) -> ServiceError {
        let more = adding.map { " and this one would add \($0) bytes" } ?? ""
        return .insufficientStorage(
            "snapshot quota exceeded: your snapshots take \(used) bytes\(more); DEVBOX_SNAPSHOT_QUOTA is \(SnapshotSettings.describe(quota)) per user. Delete snapshots you no longer need (DELETE /api/v1/snapshots/:id)")
    }

    public func listSnapshots(_ principal: Principal) async throws(ServiceError) -> [Snapshot] {
        do { return try await db.snapshots(userId: principal.userId).map(\.model) } catch { throw storageFailure(error) }
    }

    /// A snapshot of the caller by id or name; another user's answers like an unknown one.
    public func snapshot(_ principal: Principal, idOrName: String) async throws(ServiceError) -> Snapshot {
        try await snapshotRecord(principal, idOrName: idOrName).model
    }

    func snapshotRecord(_ principal: Principal, idOrName: String) async throws(ServiceError) -> SnapshotRecord {
        let found: SnapshotRecord?
        do { found = try await db.snapshot(idOrName: idOrName, userId: principal.userId) } catch { throw storageFailure(error) }
        guard let found else { throw .notFound("no snapshot with id or name \(idOrName)") }
        return found
    }

    func deleteSnapshotUnaudited(_ principal: Principal, idOrName: String) async throws(ServiceError) -> String {
        let snap = try await snapshotRecord(principal, idOrName: idOrName)
        do {
            try await db.deleteSnapshot(id: snap.id)
        } catch AppDatabase.SnapshotDelete.inProvisioning(let n) {
            throw .conflict("\(n) devbox(es) are being created from snapshot \(snap.id); delete it once they are ready")
        } catch {
            throw storageFailure(error)
        }
        await (sandbox as? any BoxSnapshots)?.releaseSnapshot(snapshotID: snap.id)
        return snap.id
    }
}

extension SnapshotRecord {
    var layers: SnapshotLayers {
        SnapshotLayers(
            id: id, image: image, store: store, rootLowerDirs: SnapshotRecord.decodeLayers(rootLayers),
            workspaceLowerDirs: SnapshotRecord.decodeLayers(workspaceLayers), sizeBytes: sizeBytes)
    }
}

extension SnapshotService {
    // MARK: Audited entry points (Audit/Auditor.swift)

    public func createSnapshot(_ principal: Principal, devboxId: String, name: String) async throws(ServiceError) -> Snapshot {
        try await auditor.audited(principal, "snapshot.create", devboxId: devboxId, okDetail: { ["snapshot": .string($0.id), "bytes": .int(Int($0.sizeBytes))] }) {
            () async throws(ServiceError) in
            try await createSnapshotUnaudited(principal, devboxId: devboxId, name: name)
        }
    }

    public func deleteSnapshot(_ principal: Principal, idOrName: String) async throws(ServiceError) {
        _ = try await auditor.audited(principal, "snapshot.delete", devboxId: nil, target: idOrName) { () async throws(ServiceError) in
            try await deleteSnapshotUnaudited(principal, idOrName: idOrName)
        }
    }
}
