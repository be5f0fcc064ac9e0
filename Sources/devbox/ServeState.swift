import DevboxModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `<data>/serve.json`: where the `devbox serve` of a data directory listens. The serve
/// writes it when it starts and removes it when it exits; `devbox mcp` reads it to find
/// (or decide to start) the local service.
struct ServeState: Codable, Equatable {
    var pid: Int32
    /// Base URL for clients on this machine, e.g. `http://127.0.0.1:8080`.
    var http: String
    /// SSH gateway address, `HOST:PORT`.
    var ssh: String
    var startedAt: Date

    enum CodingKeys: String, CodingKey { case pid, http, ssh, startedAt = "started_at" }

    static func path(_ dataDir: String) -> String { dataDir + "/serve.json" }

    /// A URL host clients can dial for a listen host (wildcards become loopback).
    static func dialHost(_ host: String) -> String {
        switch host {
        case "0.0.0.0", "": return "127.0.0.1"
        case "::": return "[::1]"
        default: return host.contains(":") ? "[\(host)]" : host
        }
    }

    static func read(_ dataDir: String) -> ServeState? {
        guard let data = FileManager.default.contents(atPath: path(dataDir)) else { return nil }
        return try? DevboxJSON.decoder().decode(ServeState.self, from: data)
    }

    /// Written to a temporary file and renamed, so readers never see half a file.
    func write(_ dataDir: String) throws {
        let tmp = Self.path(dataDir) + ".\(pid).tmp"
        try DevboxJSON.encoder(pretty: true).encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, Self.path(dataDir)) == 0 else {
            unlink(tmp)
            throw CocoaError(.fileWriteUnknown)
        }
    }

    /// Removes the file if it still describes process `pid` (a newer serve may have replaced it).
    static func remove(_ dataDir: String, ifPid pid: Int32) {
        if read(dataDir)?.pid == pid { unlink(path(dataDir)) }
    }

    var processIsAlive: Bool { kill(pid, 0) == 0 || errno == EPERM }
}
