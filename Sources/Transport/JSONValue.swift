import Foundation

/// A JSON value. Integers and floating-point numbers are kept apart (`.int` vs `.double`)
/// so that ids, counters and progress tokens round-trip with their exact type.
///
/// Parsing (`JSONValue(parsing:)`) and serialization (`serialized()`) use a hand-written
/// UTF-8 parser/writer (no `JSONSerialization`, no `Codable`), which is what the MCP hot
/// path uses. `Codable` conformance is provided for interop with typed models.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

// MARK: - Accessors

extension JSONValue {
    /// Member of an object (nil for non-objects and absent keys).
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Element of an array (nil for non-arrays and out-of-range indexes).
    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }

    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }

    /// `.int`, or a `.double` with an exact integral value.
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d):
            if d.rounded() == d, let i = Int(exactly: d) { return i }
            return nil
        default: return nil
        }
    }

    /// `.double`, or an `.int` widened to `Double`.
    public var doubleValue: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }

    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }

    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    /// A short name of the JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int: return "integer"
        case .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var o: [String: JSONValue] = [:]
        o.reserveCapacity(elements.count)
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}

// MARK: - Bytes

extension JSONValue {
    /// Parses one JSON document (UTF-8). Throws `JSONParseError` on malformed input,
    /// trailing garbage, or nesting deeper than `maxDepth`.
    public init(parsing bytes: some Collection<UInt8>, maxDepth: Int = 512) throws(JSONParseError) {
        let array = (bytes as? [UInt8]) ?? Array(bytes)
        self = try JSONParser.parse(array, maxDepth: maxDepth)
    }

    /// Parses one JSON document from a string.
    public init(parsing string: String, maxDepth: Int = 512) throws(JSONParseError) {
        self = try JSONParser.parse(Array(string.utf8), maxDepth: maxDepth)
    }

    /// Compact UTF-8 serialization (no whitespace, no newlines; object keys sorted so the
    /// output is deterministic). Non-finite doubles are written as `null`.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        JSONWriter.write(self, into: &out)
        return out
    }

    /// Appends the compact serialization to `buffer`.
    public func serialize(into buffer: inout [UInt8]) {
        JSONWriter.write(self, into: &buffer)
    }

    /// Compact serialization as a `String`.
    public var jsonString: String { String(decoding: serialized(), as: UTF8.self) }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { jsonString }
}

// MARK: - Codable

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? c.decode([String: JSONValue].self) {
            self = .object(o)
        } else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "Not a JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

// MARK: - Typed conversion (convenience; uses Foundation's JSONEncoder/JSONDecoder)

extension JSONValue {
    /// Converts any `Encodable` value to a `JSONValue` (via `JSONEncoder`).
    public init<T: Encodable>(encoding value: T, encoder: JSONEncoder = JSONEncoder()) throws {
        let data = try encoder.encode(value)
        do {
            self = try JSONParser.parse(Array(data), maxDepth: 512)
        } catch {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "Encoder produced invalid JSON: \(error)"))
        }
    }

    /// Decodes a `Decodable` type from this value (via `JSONDecoder`). Throws `DecodingError`.
    public func decode<T: Decodable>(_ type: T.Type = T.self, decoder: JSONDecoder = JSONDecoder()) throws -> T {
        try decoder.decode(T.self, from: Data(serialized()))
    }
}
