import Transport

/// Checks a JSON value against the subset of JSON Schema our tool schemas use: `type`
/// (one or a list), `properties`, `required`, `additionalProperties` (bool or schema),
/// `items`, `enum`, `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`,
/// `maxProperties`. Anything else in a schema (`pattern`, `propertyNames`, `format`, …) is
/// documentation for the model; the service checks those values itself.
///
/// Tool arguments go through this once, before they are decoded; tests hold every tool's
/// `structuredContent` to its `outputSchema` with the same code.
public enum SchemaValidator {
    /// A value that does not fit: the dotted path of the field (nil for the root) and why.
    public struct Violation: Error, Sendable, Equatable, CustomStringConvertible {
        public var path: String?
        public var reason: String
        public var description: String { path.map { "'\($0)' \(reason)" } ?? reason }
    }

    /// The first violation found, or nil when `value` fits `schema`.
    public static func check(_ value: JSONValue, against schema: JSONValue) -> Violation? {
        check(value, schema, path: "")
    }

    private static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    private static func fail(_ path: String, _ reason: String) -> Violation {
        Violation(path: path.isEmpty ? nil : path, reason: reason)
    }

    private static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object): return true
        case ("integer", .int): return true
        case ("integer", .double): return value.intValue != nil
        case ("number", .int), ("number", .double): return true
        default: return false
        }
    }

    private static func article(_ type: String) -> String {
        switch type {
        case "integer", "array", "object": return "an \(type)"
        case "null": return "null"
        default: return "a \(type)"
        }
    }

    private static func check(_ value: JSONValue, _ schema: JSONValue, path: String) -> Violation? {
        if let t = schema["type"] {
            let types: [String] = t.stringValue.map { [$0] } ?? (t.arrayValue ?? []).compactMap(\.stringValue)
            if !types.isEmpty, !types.contains(where: { matches(value, type: $0) }) {
                let want = types.map(article).joined(separator: " or ")
                return fail(path, "must be \(want), not \(article(value.typeName))")
            }
        }
        if let allowed = schema["enum"]?.arrayValue, !allowed.contains(value) {
            return fail(path, "must be one of \(allowed.map(\.jsonString).joined(separator: ", "))")
        }
        switch value {
        case .object(let members):
            if let required = schema["required"]?.arrayValue {
                for case .string(let key) in required where members[key] == nil {
                    return fail(join(path, key), "is required")
                }
            }
            if let max = schema["maxProperties"]?.intValue, members.count > max {
                return fail(path, "must have at most \(max) entries")
            }
            let properties = schema["properties"]?.objectValue ?? [:]
            for key in members.keys.sorted() {
                let member = members[key]!
                if let sub = properties[key] {
                    if let v = check(member, sub, path: join(path, key)) { return v }
                } else {
                    switch schema["additionalProperties"] {
                    case .bool(false)?:
                        let known = properties.keys.sorted().joined(separator: ", ")
                        return fail(join(path, key), "is not an accepted argument" + (known.isEmpty ? " (this takes none)" : " (accepted: \(known))"))
                    case .object(let sub)?:
                        if let v = check(member, .object(sub), path: join(path, key)) { return v }
                    default:
                        break
                    }
                }
            }
        case .array(let elements):
            if let min = schema["minItems"]?.intValue, elements.count < min {
                return fail(path, "must have at least \(min) item\(min == 1 ? "" : "s")")
            }
            if let max = schema["maxItems"]?.intValue, elements.count > max {
                return fail(path, "must have at most \(max) items")
            }
            if let items = schema["items"] {
                for (i, e) in elements.enumerated() {
                    if let v = check(e, items, path: "\(path)[\(i)]") { return v }
                }
            }
        case .string(let s):
            let n = s.unicodeScalars.count
            if let min = schema["minLength"]?.intValue, n < min {
                return fail(path, min == 1 ? "must not be empty" : "must be at least \(min) characters")
            }
            if let max = schema["maxLength"]?.intValue, n > max {
                return fail(path, "must be at most \(max) characters")
            }
        case .int, .double:
            let d = value.doubleValue ?? 0
            if let min = schema["minimum"]?.doubleValue, d < min {
                return fail(path, "must be at least \(schema["minimum"]!.jsonString)")
            }
            if let max = schema["maximum"]?.doubleValue, d > max {
                return fail(path, "must be at most \(schema["maximum"]!.jsonString)")
            }
        default:
            break
        }
        return nil
    }
}
