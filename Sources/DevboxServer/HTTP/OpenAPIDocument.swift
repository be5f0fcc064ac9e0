/// The OpenAPI 3.1 description of every route. `OpenAPITests` fails when a registered
/// route is missing here or a documented route is not registered.
enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {"title": "devbox", "version": "1.0.0", "description": "On-demand development environments for humans and AI agents."},
  "servers": [{"url": "/"}],
  "security": [{"providerToken": []}],
  "components": {
    "securitySchemes": {
      "providerToken": {"type": "apiKey", "in": "header", "name": "X-Provider-Token"},
      "userBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    },
    "parameters": {
      "DevboxId": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
      "ClaudeToken": {"name": "X-Claude-Token", "in": "header", "required": false, "description": "Claude token to inject (create only)", "schema": {"type": "string"}},
      "CodexToken": {"name": "X-Codex-Token", "in": "header", "required": false, "description": "Codex token to inject (create only)", "schema": {"type": "string"}}
    },
    "responses": {
      "Error": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}}}}},
      "CredentialProfile": {"type": "object", "properties": {"inject_claude_token": {"type": "boolean"}, "inject_codex_token": {"type": "boolean"}}},
      "DevboxRepositoryRequest": {"type": "object", "required": ["full_name"], "properties": {
        "repo_id": {"type": "integer"}, "full_name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"},
        "ref": {"type": "string", "description": "Branch, tag or commit sha. Default: main"},
        "target_path": {"type": "string", "description": "Absolute path inside /workspace. Default: /workspace/<repo name>"}}},
      "CreateDevboxRequest": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 64},
        "plan": {"type": "string", "default": "small"},
        "repository": {"type": "string", "description": "Single repository (legacy)"},
        "branch": {"type": "string", "default": "main"},
        "repositories": {"type": "array", "items": {"$ref": "#/components/schemas/DevboxRepositoryRequest"}},
        "credential_profile": {"$ref": "#/components/schemas/CredentialProfile"},
        "env": {"type": "object", "maxProperties": 64, "propertyNames": {"pattern": "^[A-Z_][A-Z0-9_]*$"}, "additionalProperties": {"type": "string", "maxLength": 32768}},
        "setup_commands": {"type": "array", "maxItems": 32, "items": {"type": "string", "maxLength": 4096}},
        "setup_timeout_seconds": {"type": "integer", "minimum": 30, "maximum": 3600, "default": 900},
        "idle_timeout_seconds": {"type": "integer", "minimum": 60},
        "ttl_seconds": {"type": "integer", "minimum": 60}}},
      "DevboxRepository": {"type": "object", "properties": {
        "repo_id": {"type": ["integer", "null"]}, "full_name": {"type": "string"}, "ref": {"type": "string"}, "target_path": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "cloning", "cloned", "failed"]}, "commit": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]}}},
      "Devbox": {"type": "object", "required": ["id", "name", "plan", "state", "repositories", "env_keys", "setup_commands", "setup_timeout_seconds", "credential_profile", "created_at", "updated_at"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "plan": {"type": "string"},
        "state": {"type": "string", "enum": ["requested", "provisioning", "ready", "stopped", "destroyed", "failed"]},
        "repositories": {"type": "array", "items": {"$ref": "#/components/schemas/DevboxRepository"}},
        "env_keys": {"type": "array", "items": {"type": "string"}},
        "setup_commands": {"type": "array", "items": {"type": "string"}},
        "setup_timeout_seconds": {"type": "integer"},
        "credential_profile": {"$ref": "#/components/schemas/CredentialProfile"},
        "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
        "ready_at": {"type": ["string", "null"], "format": "date-time"},
        "error": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"operation": {"type": "string"}, "message": {"type": "string"}}}]},
        "idle_timeout_seconds": {"type": ["integer", "null"]}, "ttl_seconds": {"type": ["integer", "null"]},
        "expires_at": {"type": ["string", "null"], "format": "date-time"}, "last_activity_at": {"type": ["string", "null"], "format": "date-time"}}},
      "Operation": {"type": "object", "properties": {
        "id": {"type": "string"}, "devbox_id": {"type": "string"},
        "name": {"type": "string", "enum": ["provision", "inject_credentials", "clone_repositories", "run_setup_commands", "publish_access"]},
        "status": {"type": "string", "enum": ["pending", "running", "succeeded", "failed", "skipped"]},
        "started_at": {"type": ["string", "null"], "format": "date-time"}, "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "output": {"type": "string", "description": "stdout/stderr tail (last 64 KiB)"}, "output_truncated": {"type": "boolean"}, "error": {"type": ["string", "null"]}}},
      "UserProfile": {"type": "object", "properties": {
        "id": {"type": "string"}, "external_id": {"type": ["string", "null"]}, "provider_token_id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "ssh_key": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"type": {"type": "string"}, "fingerprint": {"type": "string"}, "public_key": {"type": "string"}, "updated_at": {"type": "string", "format": "date-time"}}}]}}}
    }
  },
  "paths": {
    "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    "/api/v1/devboxes": {
      "post": {"summary": "Create a devbox (202, state requested)", "parameters": [{"$ref": "#/components/parameters/ClaudeToken"}, {"$ref": "#/components/parameters/CodexToken"}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateDevboxRequest"}}}},
        "responses": {"202": {"description": "Accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
      "get": {"summary": "List the caller's devboxes", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"devboxes": {"type": "array", "items": {"$ref": "#/components/schemas/Devbox"}}}}}}}, "401": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "Get a devbox", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}}, "404": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Destroy a devbox (204)", "responses": {"204": {"description": "Destroyed"}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/operations": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "List provisioning operations", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"operations": {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}}}}}}}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/users/me": {
      "get": {"summary": "The caller's profile", "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UserProfile"}}}}}}
    }
  }
}
"""#
}
