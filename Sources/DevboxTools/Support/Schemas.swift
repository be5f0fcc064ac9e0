import Transport

/// JSON Schema building blocks shared by the tools' input and output schemas. Output
/// fragments mirror how `DevboxModel` encodes its types (optional fields are explicit nulls).
enum Schema {
    // MARK: Builders

    /// An object schema; `closed` adds `additionalProperties: false` (every input object).
    static func object(
        _ properties: [String: JSONValue], required: [String] = [], description: String? = nil, closed: Bool = true
    ) -> JSONValue {
        var o: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { o["required"] = .array(required.map { .string($0) }) }
        if closed { o["additionalProperties"] = false }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    static func string(_ description: String, minLength: Int? = nil, maxLength: Int? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "string", "description": .string(description)]
        if let minLength { o["minLength"] = .int(minLength) }
        if let maxLength { o["maxLength"] = .int(maxLength) }
        return .object(o)
    }

    static func nullableString(_ description: String, format: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": ["string", "null"], "description": .string(description)]
        if let format { o["format"] = .string(format) }
        return .object(o)
    }

    static func timestamp(_ description: String) -> JSONValue {
        ["type": "string", "format": "date-time", "description": .string(description)]
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

    static func array(_ items: JSONValue, _ description: String, maxItems: Int? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": "array", "items": items, "description": .string(description)]
        if let maxItems { o["maxItems"] = .int(maxItems) }
        return .object(o)
    }

    /// An empty argument list: `{"type": "object", "additionalProperties": false}`.
    static let noArguments: JSONValue = ["type": "object", "properties": [:], "additionalProperties": false]

    // MARK: Common inputs

    static let devboxIDInput = string(
        "Id of the devbox (starts with dbx_), as returned by create_devbox or list_devboxes.", minLength: 1, maxLength: 128)

    // MARK: Outputs

    static let state: JSONValue = [
        "type": "string", "enum": ["requested", "provisioning", "ready", "stopped", "destroyed", "failed"],
        "description":
            "Lifecycle state: requested → provisioning → ready; failed when a step failed; destroyed after delete_devbox; stopped when halted.",
    ]

    static let credentialProfile = object(
        [
            "inject_claude_token": boolean("Whether the server's Claude token is injected as ANTHROPIC_API_KEY."),
            "inject_codex_token": boolean("Whether the server's Codex token is injected as OPENAI_API_KEY."),
        ], required: ["inject_claude_token", "inject_codex_token"], description: "Which AI tokens are injected.",
        closed: false)

    static let repository = object(
        [
            "repo_id": ["type": ["integer", "null"], "description": "GitHub repository id, if given on create."],
            "full_name": string("owner/name on GitHub."),
            "ref": string("Branch, tag or commit that is checked out."),
            "target_path": string("Where the repository is cloned inside the devbox."),
            "status": [
                "type": "string", "enum": ["pending", "cloning", "cloned", "failed"], "description": "Clone status.",
            ],
            "commit": nullableString("Commit sha checked out, once cloned."),
            "error": nullableString("Why the clone failed, if it did."),
        ], required: ["repo_id", "full_name", "ref", "target_path", "status", "commit", "error"],
        description: "A repository of a devbox.",
        closed: false)

    static let devbox = object(
        [
            "id": string("Devbox id (dbx_…): pass it as devbox_id to the other tools."),
            "name": string("Display name."),
            "plan": string("Size plan."),
            "state": state,
            "repositories": array(repository, "Repositories cloned into the devbox, with their clone status."),
            "env_keys": array(["type": "string"], "Names of the environment variables set in the devbox (values are never returned)."),
            "setup_commands": array(["type": "string"], "Setup commands, run in order in /workspace after the clone."),
            "setup_timeout_seconds": integer("Ceiling for all setup commands together."),
            "credential_profile": credentialProfile,
            "created_at": timestamp("When the devbox was requested."),
            "updated_at": timestamp("Last state change."),
            "ready_at": nullableString("When it became ready.", format: "date-time"),
            "error": [
                "type": ["object", "null"],
                "description": "Why the devbox failed: the failed step and its error (null unless state is failed).",
                "properties": [
                    "operation": string("The step that failed."),
                    "message": string("Its error."),
                ],
            ],
            "idle_timeout_seconds": ["type": ["integer", "null"], "description": "Idle timeout, if set."],
            "ttl_seconds": ["type": ["integer", "null"], "description": "Lifetime, if set."],
            "expires_at": nullableString("When the devbox expires, if it has a lifetime.", format: "date-time"),
            "last_activity_at": nullableString("Last SSH or API activity.", format: "date-time"),
        ],
        required: [
            "id", "name", "plan", "state", "repositories", "env_keys", "setup_commands", "setup_timeout_seconds",
            "credential_profile", "created_at", "updated_at", "ready_at", "error",
        ], description: "A devbox.", closed: false)

    static let operationName: JSONValue = [
        "type": "string", "enum": ["provision", "inject_credentials", "clone_repositories", "run_setup_commands", "publish_access"],
        "description": "The provisioning step, in the order they run.",
    ]

    /// One provisioning step as the tools show it (output cut to a tail).
    static let operation = object(
        [
            "name": operationName,
            "status": [
                "type": "string", "enum": ["pending", "running", "succeeded", "failed", "skipped"],
                "description": "Step status.",
            ],
            "started_at": nullableString("When the step started.", format: "date-time"),
            "finished_at": nullableString("When the step finished.", format: "date-time"),
            "error": nullableString("Why the step failed (null unless failed or skipped for a reason)."),
            "output_tail": string("The end of the step's stdout/stderr (for run_setup_commands: the setup commands' output)."),
            "output_truncated": boolean("True when output_tail is not the whole output (earlier output was dropped)."),
        ], required: ["name", "status", "started_at", "finished_at", "error", "output_tail", "output_truncated"],
        description: "A provisioning step.", closed: false)

    static let sshAccess = object(
        [
            "host": string("SSH host."),
            "port": integer("SSH port."),
            "username": string("SSH user name (the session id)."),
            "workspace_path": string("Working directory inside the devbox."),
        ], required: ["host", "port", "username", "workspace_path"], description: "SSH connection details.",
        closed: false)

    static let sshKey = object(
        [
            "type": string("Key type (ssh-ed25519, ecdsa-sha2-nistp256, …)."),
            "fingerprint": string("SHA256 fingerprint, as ssh-keygen -l prints it."),
            "public_key": string("The stored public key line."),
            "updated_at": timestamp("When the key was set."),
        ], required: ["type", "fingerprint", "public_key", "updated_at"], description: "The registered SSH public key.",
        closed: false)

    static let nextStep = string("What to do next.")
}
