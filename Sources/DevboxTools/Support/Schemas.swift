import Transport

/// JSON Schema building blocks shared by the tools' input and output schemas.
///
/// `tools/list` is paid for in tokens by every agent on every session, so the schemas are
/// terse: inputs describe every property (the model must fill them in), with ranges and
/// defaults stated once as schema keywords rather than repeated in prose; outputs give types
/// and describe only what a property's name does not already say. The full devbox schema
/// appears once, in `get_devbox`; other tools' results carry the same devbox object and
/// their schema points there (`devboxRef`) instead of repeating it.
enum Schema {
    // MARK: Builders

    /// An input object schema: closed (`additionalProperties: false`).
    static func object(_ properties: [String: JSONValue], required: [String] = [], description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "object", "properties": .object(properties), "additionalProperties": false]
        if !required.isEmpty { o["required"] = .array(required.map { .string($0) }) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    /// An output object schema: open (results may gain fields). No `required`: every field
    /// listed is always present (null where the type allows it), so the list would only repeat
    /// the property names.
    static func output(_ properties: [String: JSONValue], description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    /// `{"type": type}` plus an optional description; `type` may be a list such as `["string", "null"]`.
    static func typed(_ type: JSONValue, _ description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": type]
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    static func string(_ description: String, minLength: Int? = nil, maxLength: Int? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "string", "description": .string(description)]
        if let minLength { o["minLength"] = .int(minLength) }
        if let maxLength { o["maxLength"] = .int(maxLength) }
        return .object(o)
    }

    static func integer(_ description: String, minimum: Int? = nil, maximum: Int? = nil, default value: Int? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "integer", "description": .string(description)]
        if let minimum { o["minimum"] = .int(minimum) }
        if let maximum { o["maximum"] = .int(maximum) }
        if let value { o["default"] = .int(value) }
        return .object(o)
    }

    static func boolean(_ description: String, default value: Bool? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "boolean", "description": .string(description)]
        if let value { o["default"] = .bool(value) }
        return .object(o)
    }

    static func array(_ items: JSONValue, _ description: String? = nil, maxItems: Int? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "array", "items": items]
        if let description { o["description"] = .string(description) }
        if let maxItems { o["maxItems"] = .int(maxItems) }
        return .object(o)
    }

    static func enumeration(_ values: [String], _ description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "string", "enum": .array(values.map { .string($0) })]
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    /// A list whose items are objects named in prose instead of a nested schema: the field
    /// names are what an agent reads; their types add little and cost a schema each.
    static func objects(_ fields: String) -> JSONValue {
        ["type": "array", "items": ["type": "object"], "description": .string("Each with: \(fields).")]
    }

    /// An empty argument list: `{"type": "object", "additionalProperties": false}`.
    static let noArguments: JSONValue = ["type": "object", "properties": [:], "additionalProperties": false]

    // Output property shapes used over and over.
    static let str = typed("string")
    static let int = typed("integer")
    static let bool = typed("boolean")
    static let nullableString = typed(["string", "null"])
    static let nullableInt = typed(["integer", "null"])

    // MARK: Common inputs

    /// Undescribed on purpose: the name says it and it is in nearly every tool (the test of
    /// input descriptions makes this one exception).
    static let devboxIDInput: JSONValue = ["type": "string"]
    static let devboxOnly = object(["devbox_id": devboxIDInput], required: ["devbox_id"])

    // MARK: Outputs

    static let state = enumeration(["requested", "provisioning", "ready", "stopped", "destroyed", "failed"])

    static let repositories = objects("full_name, ref, target_path, status (pending, cloning, cloned, failed), commit, error, push_branches")

    /// The whole devbox, as `get_devbox` returns it (the REST API's devbox object). Only the
    /// fields an agent acts on are spelled out; the rest are named in the description (the
    /// schema is open), which keeps tools/list inside its budget.
    static let devbox = output(
        [
            "id": str,
            "state": state,
            "repositories": repositories,
            "env_keys": array(str, "Names only."),
            "error": typed(["object", "null"], "{operation, message} of the failed step."),
        ],
        description: """
            Also: name, plan, image, network {egress, allow, deny}, credential_profile {inject_*_token}, \
            setup_commands, *_timeout_seconds, ttl_seconds, *_at times.
            """)

    /// The devbox in other tools' results: the same object as `get_devbox`, not described again.
    static let devboxRef = typed("object", "The devbox, as get_devbox returns it.")

    static let nextStep = typed("string", "What to do next.")
}
