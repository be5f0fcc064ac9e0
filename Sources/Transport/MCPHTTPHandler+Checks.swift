import Foundation
import Logging
import Synchronization

/// Request checks of the Streamable HTTP transport: routing headers (2026-07-28), Origin, Accept.
extension MCPHTTPHandler {
    // MARK: - Header validation (2026-07-28)

    static let nameBearing: [String: String] = ["tools/call": "name", "prompts/get": "name", "resources/read": "uri"]

    func checkRoutingHeaders(_ h: [String: String], method: String, params: JSONValue?, version: String) -> MCPError? {
        guard let pv = h["mcp-protocol-version"] else {
            return .headerMismatch("Header mismatch: MCP-Protocol-Version header is required")
        }
        guard pv == version else {
            return .headerMismatch("Header mismatch: MCP-Protocol-Version header value '\(pv)' does not match body value '\(version)'")
        }
        guard let m = h["mcp-method"] else {
            return .headerMismatch("Header mismatch: Mcp-Method header is required")
        }
        guard m == method else {
            return .headerMismatch("Header mismatch: Mcp-Method header value '\(m)' does not match body value '\(method)'")
        }
        if let key = Self.nameBearing[method], case .string(let bodyName)? = params?[key] {
            guard let raw = h["mcp-name"] else {
                return .headerMismatch("Header mismatch: Mcp-Name header is required for \(method)")
            }
            guard let name = Self.decodeHeaderValue(raw) else {
                return .headerMismatch("Header mismatch: Mcp-Name header has an invalid Base64 value")
            }
            guard name == bodyName else {
                return .headerMismatch("Header mismatch: Mcp-Name header value '\(name)' does not match body value '\(bodyName)'")
            }
        }
        return nil
    }

    func checkParamHeaders(_ h: [String: String], tool: String, arguments: JSONValue?) -> MCPError? {
        let mirrors = server.paramHeaders(forTool: tool)
        if mirrors.isEmpty { return nil }
        for m in mirrors {
            var v: JSONValue? = arguments
            for k in m.path { v = v?[k] }
            guard let value = v, !value.isNull else { continue }
            guard let raw = h[m.headerName] else {
                return .headerMismatch("Header mismatch: \(m.headerName) header is required (argument \(m.path.joined(separator: ".")) is present)")
            }
            guard let decoded = Self.decodeHeaderValue(raw) else {
                return .headerMismatch("Header mismatch: \(m.headerName) header has an invalid Base64 value")
            }
            let ok: Bool
            switch value {
            case .string(let s): ok = decoded == s
            case .bool(let b): ok = decoded == (b ? "true" : "false")
            case .int, .double:
                if let hv = Double(decoded), let bv = value.doubleValue { ok = hv == bv } else { ok = false }
            default: ok = false
            }
            if !ok {
                return .headerMismatch("Header mismatch: \(m.headerName) header value '\(decoded)' does not match argument \(m.path.joined(separator: "."))")
            }
        }
        return nil
    }

    /// Decodes the `=?base64?…?=` sentinel form; plain values pass through.
    static func decodeHeaderValue(_ raw: String) -> String? {
        guard raw.hasPrefix("=?base64?"), raw.hasSuffix("?="), raw.count >= 11 else { return raw }
        let payload = raw.dropFirst(9).dropLast(2)
        guard let data = Data(base64Encoded: String(payload)) else { return nil }
        return String(data: data, encoding: .utf8)
    }

    // MARK: - Origin / Accept

    func originAllowed(_ origin: String, host: String?) -> Bool {
        let o = origin.lowercased().trimmingCharacters(in: .whitespaces)
        if options.allowedOrigins.contains(o) { return true }
        if options.allowedOrigins.contains("*") { return true }
        guard let url = URL(string: o), let scheme = url.scheme, scheme == "http" || scheme == "https",
            let h = url.host
        else { return false }
        if options.allowLoopbackOrigins {
            let bare = h.hasPrefix("[") ? String(h.dropFirst().dropLast()) : h
            if bare == "localhost" || bare.hasSuffix(".localhost") || bare == "::1" || Self.isIPv4Loopback(bare) {
                return true
            }
        }
        if options.allowSameHostOrigin, let host = host?.lowercased() {
            let originHostPort = url.port.map { "\(h):\($0)" } ?? h
            if host == originHostPort { return true }
            // Host without a port matches the scheme's default port.
            let defaultPort = scheme == "https" ? 443 : 80
            if url.port == nil && host == "\(h):\(defaultPort)" { return true }
            if url.port == defaultPort && host == h { return true }
        }
        return false
    }

    static func isIPv4Loopback(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { p in p.count <= 3 && !p.isEmpty && p.allSatisfy(\.isNumber) && (Int(p) ?? 256) < 256 }
    }

    static func accepts(_ accept: String, _ type: String) -> Bool {
        let major = type.split(separator: "/").first.map(String.init) ?? type
        for part in accept.split(separator: ",") {
            let t = part.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
            if t == type || t == "*/*" || t == "\(major)/*" { return true }
        }
        return false
    }
}
