import Foundation

/// The one error shape of every API response: `{"error": {"code", "message", "field"}}`.
public struct APIErrorBody: Codable, Sendable, Equatable, Error {
    public struct Detail: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
        public var field: String?
        public init(code: String, message: String, field: String? = nil) {
            self.code = code
            self.message = message
            self.field = field
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(code, forKey: .code)
            try c.encode(message, forKey: .message)
            try c.encode(field, forKey: .field)
        }
        enum CodingKeys: String, CodingKey { case code, message, field }
    }
    public var error: Detail
    public init(code: String, message: String, field: String? = nil) {
        self.error = Detail(code: code, message: message, field: field)
    }
}

/// JSON coding shared by the server, the SDK and the tools: snake_case keys are spelled
/// out in each type; dates are RFC 3339 with milliseconds, in UTC.
public enum DevboxJSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(formatDate(date))
        }
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let s = try c.decode(String.self)
            guard let date = parseDate(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "invalid date \(s)")
            }
            return date
        }
        return d
    }

    public static func formatDate(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    public static func parseDate(_ s: String) -> Date? {
        if let d = try? Date(s, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)) {
            return d
        }
        return try? Date(s, strategy: .iso8601)
    }
}

/// An API failure as a client sees it: HTTP status plus the error body's fields.
public struct DevboxAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var field: String?

    public init(status: Int, code: String, message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String {
        field.map { "\(message) (field: \($0))" } ?? message
    }
}

extension KeyedDecodingContainer {
    /// Decodes an optional value that may be absent but not `null`: an explicit null is a
    /// `valueNotFound` naming this key (the API answers 422 with the field).
    public func decodeNonNullIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key) else { return nil }
        if try decodeNil(forKey: key) {
            throw DecodingError.valueNotFound(
                T.self, DecodingError.Context(codingPath: codingPath + [key], debugDescription: "null is not allowed"))
        }
        return try decode(T.self, forKey: key)
    }

    /// Decodes an optional integer; a fractional or out-of-range number is a type mismatch
    /// naming this key (Foundation reports those without the key's path).
    public func decodeStrictIntIfPresent(forKey key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let i = try? decode(Int.self, forKey: key) { return i }
        throw DecodingError.typeMismatch(
            Int.self, DecodingError.Context(codingPath: codingPath + [key], debugDescription: "expected an integer"))
    }
}
