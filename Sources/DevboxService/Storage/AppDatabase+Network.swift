import DevboxModel
import Foundation
import GRDB

extension DevboxRecord {
    /// The stored policy (JSON of `DevboxNetwork`); nil or unreadable → allow_all.
    static func decodeNetwork(_ json: String?) -> DevboxNetwork {
        guard let json, let n = try? JSONDecoder().decode(DevboxNetwork.self, from: Data(json.utf8)) else { return .allowAll }
        return n
    }

    /// nil for allow_all without lists (the column's default meaning).
    static func encodeNetwork(_ n: DevboxNetwork) -> String? {
        if n == .allowAll { return nil }
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return (try? e.encode(n)).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension AppDatabase {
    /// Replaces the egress policy of a devbox that is not destroyed; false if there is none.
    func setNetwork(devboxId: String, userId: String?, network: DevboxNetwork, now: Date) async throws -> Bool {
        try await pool.write { db in
            var sql = "UPDATE devboxes SET network = ?, updated_at = ? WHERE id = ? AND state != 'destroyed'"
            var args: StatementArguments = [DevboxRecord.encodeNetwork(network), SQLDate.string(now), devboxId]
            if let userId {
                sql += " AND user_id = ?"
                args += [userId]
            }
            try db.execute(sql: sql, arguments: args)
            return db.changesCount > 0
        }
    }

    /// The egress policies of devboxes that own a sandbox and are not allow_all.
    func networkPolicies(inStates states: Set<DevboxState>) async throws -> [(id: String, network: DevboxNetwork)] {
        try await pool.read { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT id, network FROM devboxes WHERE network IS NOT NULL AND state IN (\(states.map { "'\($0.rawValue)'" }.joined(separator: ",")))")
            return rows.map { (id: $0["id"], network: DevboxRecord.decodeNetwork($0["network"])) }
        }
    }
}
