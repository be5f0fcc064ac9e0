import DevboxModel
import Foundation
import Logging
import GRDB
import ServiceLifecycle

// Issue 19: the broker's usage per devbox and API, kept across restarts. The request path
// counts in memory (`BrokerState`); `BrokerUsageFlusher` writes the totals that changed about
// once a second, and once more on shutdown. Rows go with their devbox (ON DELETE CASCADE).
extension AppDatabase {
    static func migrateBrokerUsage(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE devbox_broker_usage (
                devbox_id TEXT NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                api TEXT NOT NULL,
                requests INTEGER NOT NULL,
                status_codes TEXT NOT NULL,
                input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                PRIMARY KEY (devbox_id, api)
            );
            """)
    }

    /// Every stored count.
    func brokerUsage() async throws -> [String: [BrokerAPI: BrokerUsageCounts]] {
        try await pool.read { db in
            var out: [String: [BrokerAPI: BrokerUsageCounts]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM devbox_broker_usage") {
                guard let api = BrokerAPI(rawValue: row["api"]) else { continue }
                var c = BrokerUsageCounts()
                c.requests = row["requests"]
                c.inputTokens = row["input_tokens"]
                c.outputTokens = row["output_tokens"]
                let codes = (try? JSONDecoder().decode([String: Int].self, from: Data((row["status_codes"] as String).utf8))) ?? [:]
                for (k, v) in codes { if let code = Int(k) { c.statusCodes[code] = v } }
                out[row["devbox_id"], default: [:]][api] = c
            }
            return out
        }
    }

    /// Writes the totals of `usage` (one transaction); a devbox already purged is skipped.
    func storeBrokerUsage(_ usage: [String: [BrokerAPI: BrokerUsageCounts]]) async throws {
        try await pool.write { db in
            for (id, apis) in usage {
                guard try Bool.fetchOne(db, sql: "SELECT 1 FROM devboxes WHERE id = ?", arguments: [id]) == true else { continue }
                for (api, c) in apis {
                    let codes = Dictionary(uniqueKeysWithValues: c.statusCodes.map { (String($0.key), $0.value) })
                    let json = String(decoding: try JSONEncoder().encode(codes), as: UTF8.self)
                    try db.execute(
                        sql: """
                            INSERT INTO devbox_broker_usage (devbox_id, api, requests, status_codes, input_tokens, output_tokens)
                            VALUES (?, ?, ?, ?, ?, ?)
                            ON CONFLICT (devbox_id, api) DO UPDATE SET requests = excluded.requests,
                              status_codes = excluded.status_codes, input_tokens = excluded.input_tokens,
                              output_tokens = excluded.output_tokens
                            """,
                        arguments: [id, api.rawValue, c.requests, json, c.inputTokens, c.outputTokens])
                }
            }
        }
    }
}

/// Loads the stored usage into the broker's counters, then writes what changed about once a
/// second (batched: the request path never waits for the database), and a last time when the
/// service stops.
public struct BrokerUsageFlusher: Service {
    let state: BrokerState
    let db: AppDatabase
    let logger: Logger
    let interval: Duration

    public init(state: BrokerState, database: AppDatabase, logger: Logger, interval: Duration = .seconds(1)) {
        self.state = state
        self.db = database
        self.logger = logger
        self.interval = interval
    }

    public func run() async throws {
        do {
            state.merge(stored: try await db.brokerUsage())
        } catch is CancellationError {
            // The service stopped before it started (e.g. a port was taken): nothing was
            // counted, and nothing must overwrite the stored totals.
            return
        } catch {
            logger.error("reading the broker's stored usage failed: \(error)")
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { break }
                await flush()
            }
        }
        await flush()
    }

    /// Writes the totals that changed since the last flush (public for tests).
    public func flush() async {
        let dirty = state.takeDirty()
        guard !dirty.isEmpty else { return }
        do {
            try await db.storeBrokerUsage(dirty)
        } catch {
            state.markDirty(dirty.keys)
            logger.warning("storing the broker's usage failed (tried again next time): \(error)")
        }
    }
}
