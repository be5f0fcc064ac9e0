import DevboxModel
import Foundation
import GRDB
import Synchronization

/// Group commit for creates. A create is acknowledged only once it is on disk (a FULL
/// commit, one fdatasync, ~2 ms here), and the database has one writer: 20 creates arriving
/// together would wait for 20 syncs in a row. Creates that arrive while a commit is in
/// flight wait for the next one and share it, each in its own savepoint so one failing
/// insert rolls back only itself. Alone, a create commits at once, as before.
final class CreateBatcher: Sendable {
    private struct State {
        var queue: [(NewDevbox, CheckedContinuation<Result<Devbox, any Error>, Never>)] = []
        var draining = false
    }
    private let state = Mutex(State())
    private let pool: any DatabaseWriter

    init(pool: any DatabaseWriter) { self.pool = pool }

    func insert(_ new: NewDevbox) async throws -> Devbox {
        let result: Result<Devbox, any Error> = await withCheckedContinuation { c in
            let start = state.withLock { s -> Bool in
                s.queue.append((new, c))
                if s.draining { return false }
                s.draining = true
                return true
            }
            if start { Task { await self.drain() } }
        }
        return try result.get()
    }

    private func drain() async {
        while true {
            let batch = state.withLock { s -> [(NewDevbox, CheckedContinuation<Result<Devbox, any Error>, Never>)] in
                let b = s.queue
                s.queue = []
                if b.isEmpty { s.draining = false }
                return b
            }
            if batch.isEmpty { return }
            let items = batch.map(\.0)
            let results: [Result<Devbox, any Error>]
            do {
                results = try await pool.write { db in
                    items.map { new in
                        Result {
                            var model: Devbox?
                            try db.inSavepoint {
                                model = try AppDatabase.insert(db, new)
                                return .commit
                            }
                            guard let model else { throw StorageError.notFound }
                            return model
                        }
                    }
                }
            } catch {
                results = items.map { _ in .failure(error) }  // the commit itself failed: none is stored
            }
            for (item, r) in zip(batch, results) { item.1.resume(returning: r) }
        }
    }
}
