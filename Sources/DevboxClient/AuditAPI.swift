import DevboxModel
import Foundation

/// One event of the audit log (`GET /api/v1/audit`).
public struct AuditEntry: Decodable, Sendable, Equatable {
    public var id: Int64
    public var time: Date
    public var providerId: String?
    public var providerTokenId: String?
    public var userId: String?
    /// api, mcp, dashboard, ssh or system.
    public var face: String
    public var action: String
    public var devboxId: String?
    public var target: String?
    /// `ok`, or the API error code.
    public var result: String
    public var source: String?
    public var requestId: String?
    /// Non-secret facts: field names, exit codes, counts (as the JSON had them, rendered as text).
    public var detail: [String: String]

    enum CodingKeys: String, CodingKey {
        case id, time, providerId = "provider_id", providerTokenId = "provider_token_id", userId = "user_id", face, action,
            devboxId = "devbox_id", target, result, source, requestId = "request_id", detail
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int64.self, forKey: .id)
        time = try c.decode(Date.self, forKey: .time)
        providerId = try c.decodeIfPresent(String.self, forKey: .providerId)
        providerTokenId = try c.decodeIfPresent(String.self, forKey: .providerTokenId)
        userId = try c.decodeIfPresent(String.self, forKey: .userId)
        face = try c.decode(String.self, forKey: .face)
        action = try c.decode(String.self, forKey: .action)
        devboxId = try c.decodeIfPresent(String.self, forKey: .devboxId)
        target = try c.decodeIfPresent(String.self, forKey: .target)
        result = try c.decode(String.self, forKey: .result)
        source = try c.decodeIfPresent(String.self, forKey: .source)
        requestId = try c.decodeIfPresent(String.self, forKey: .requestId)
        let raw = try c.decodeIfPresent([String: DetailValue].self, forKey: .detail) ?? [:]
        detail = raw.mapValues(\.text)
    }

    struct DetailValue: Decodable {
        var text: String
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) {
                text = String(b)
            } else if let i = try? c.decode(Int.self) {
                text = String(i)
            } else if let s = try? c.decode(String.self) {
                text = s
            } else if let a = try? c.decode([String].self) {
                text = a.joined(separator: ",")
            } else {
                text = ""
            }
        }
    }
}

/// A page of the audit log, newest first.
public struct AuditPage: Decodable, Sendable, Equatable {
    public var events: [AuditEntry]
    /// Pass to the next `list` call; nil on the last page.
    public var nextCursor: String?
    enum CodingKeys: String, CodingKey { case events, nextCursor = "next_cursor" }
}

/// `client.audit`: `GET /api/v1/audit`. A provider token alone reads its provider's events;
/// with a user token, that user's.
public struct AuditAPI: Sendable {
    let http: HTTPCore

    public func list(
        devboxId: String? = nil, action: String? = nil, since: Date? = nil, limit: Int = 100, cursor: String? = nil
    ) async throws -> AuditPage {
        var q = URLComponents()
        var items = [URLQueryItem(name: "limit", value: String(limit))]
        if let devboxId { items.append(URLQueryItem(name: "devbox_id", value: devboxId)) }
        if let action { items.append(URLQueryItem(name: "action", value: action)) }
        if let since { items.append(URLQueryItem(name: "since", value: DevboxJSON.formatDate(since))) }
        if let cursor { items.append(URLQueryItem(name: "cursor", value: cursor)) }
        q.queryItems = items
        let query = q.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B") ?? ""
        return try await http.json(AuditPage.self, "GET", "/api/v1/audit?" + query)
    }
}

extension DevboxClient {
    /// The audit log.
    public var audit: AuditAPI { AuditAPI(http: http) }
}
