import GRDB

/// Publishes to `DevboxChanges` after each commit that touched the devbox tables, whatever
/// method made the write (state transitions, claims, leases, operation status and output,
/// clone status, activity, deletes, and any write added later): it watches SQLite's change
/// events on the writer connection, not the call sites.
///
/// The events carry SQLite row ids; after the commit, and only while someone is subscribed,
/// the rows are mapped to devbox ids with one indexed query per table on the writer
/// connection. A deleted row can no longer be mapped, so a delete wakes every subscriber
/// (who re-read their own devbox); so does a failed lookup.
///
/// Runs on the writer's queue only (GRDB calls observers serially there).
final class DevboxChangeObserver: TransactionObserver {
    /// The tables whose rows show in a devbox as the API returns it, and the column naming
    /// the devbox in each.
    static let tables: [String: String] = ["devboxes": "id", "operations": "devbox_id", "devbox_repositories": "devbox_id"]
    /// Above this many changed rows in one transaction, waking everyone is cheaper than a lookup.
    static let lookupLimit = 500

    let changes: DevboxChanges
    let readCache: DevboxReadCache?
    private var rows: [String: Set<Int64>] = [:]
    private var wakeAll = false
    /// For the live index (`LiveDevboxIndex`): devbox and repository rows inserted or updated,
    /// and whether any of either was deleted.
    private var liveDevboxRows = Set<Int64>()
    private var liveRepositoryRows = Set<Int64>()
    private var liveReload = false

    init(changes: DevboxChanges, readCache: DevboxReadCache? = nil) {
        self.changes = changes
        self.readCache = readCache
    }

    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool {
        Self.tables[eventKind.tableName] != nil
    }

    func databaseDidChange(with event: DatabaseEvent) {
        if readCache != nil, event.tableName != "operations" {
            if event.kind == .delete {
                liveReload = true
            } else if !liveReload {
                if event.tableName == "devboxes" {
                    liveDevboxRows.insert(event.rowID)
                } else {
                    liveRepositoryRows.insert(event.rowID)
                }
            }
        }
        if event.kind == .delete {
            wakeAll = true
        } else if !wakeAll {
            rows[event.tableName, default: []].insert(event.rowID)
        }
    }

    func databaseDidCommit(_ db: Database) {
        defer { reset() }
        guard wakeAll || !rows.isEmpty else { return }
        // Operations are not part of a devbox as the cache holds it; repositories are, but
        // their rows would need a lookup to name the devbox and change only while cloning.
        if let readCache {
            // The index first, the epoch after (`LiveDevboxIndex`): a page cut from the index
            // and stored under an epoch is never older than that epoch.
            if liveReload || !liveDevboxRows.isEmpty || !liveRepositoryRows.isEmpty {
                readCache.live.apply(
                    db, devboxRows: liveDevboxRows, repositoryRows: liveRepositoryRows, reloadAll: liveReload)
            }
            if wakeAll || rows["devbox_repositories"] != nil {
                readCache.invalidateAll()
            } else if let devboxRows = rows["devboxes"] {
                readCache.invalidate(devboxRows: devboxRows)
            }
        }
        // Checked after SQLite's commit: a waiter that subscribes later reads after this
        // commit, so it cannot miss what is published (or skipped) here.
        guard changes.hasSubscribers else { return }
        if wakeAll || rows.values.reduce(0, { $0 + $1.count }) > Self.lookupLimit {
            changes.publishAll()
            return
        }
        do {
            var ids = Set<String>()
            for (table, rowIDs) in rows {
                guard let column = Self.tables[table] else { continue }
                let marks = Array(repeating: "?", count: rowIDs.count).joined(separator: ",")
                ids.formUnion(
                    try String.fetchAll(
                        db, sql: "SELECT \(column) FROM \(table) WHERE rowid IN (\(marks))",
                        arguments: StatementArguments(Array(rowIDs))))
            }
            changes.publish(ids)
        } catch {
            changes.publishAll()
        }
    }

    func databaseDidRollback(_ db: Database) {
        reset()
    }

    private func reset() {
        rows.removeAll(keepingCapacity: true)
        wakeAll = false
        liveDevboxRows.removeAll(keepingCapacity: true)
        liveRepositoryRows.removeAll(keepingCapacity: true)
        liveReload = false
    }
}
