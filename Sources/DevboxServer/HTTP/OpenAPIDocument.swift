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
      "Port": {"name": "port", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1, "maximum": 65535}, "description": "A TCP port on the devbox's own loopback"},
      "ClaudeToken": {"name": "X-Claude-Token", "in": "header", "required": false, "description": "Claude token to inject (create only)", "schema": {"type": "string"}},
      "CodexToken": {"name": "X-Codex-Token", "in": "header", "required": false, "description": "Codex token to inject (create only)", "schema": {"type": "string"}}
    },
    "responses": {
      "Error": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Unauthorized": {"description": "X-Provider-Token missing or wrong, or an invalid Authorization bearer", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "BadRequest": {"description": "The body is not JSON, or not a JSON object", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "NotFound": {"description": "No such devbox (or not the caller's)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "GitHubUnavailable": {"description": "GitHub OAuth is not configured on this server (DEVBOX_GITHUB_CLIENT_ID, DEVBOX_GITHUB_CLIENT_SECRET, DEVBOX_PUBLIC_URL), or GitHub could not be reached", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    },
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}}}}},
      "CredentialProfile": {"type": "object", "properties": {"inject_claude_token": {"type": ["boolean", "null"], "description": "null or absent: false"}, "inject_codex_token": {"type": ["boolean", "null"], "description": "null or absent: false"}}},
      "DevboxRepositoryRequest": {"type": "object", "required": ["full_name"], "properties": {
        "repo_id": {"type": ["integer", "null"], "minimum": 1}, "full_name": {"type": "string", "pattern": "^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98}|\\.\\.[A-Za-z0-9_.-]{1,98})/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98}|\\.\\.[A-Za-z0-9_.-]{1,98})$", "description": "owner/name: 1-100 of A-Z a-z 0-9 _ . - each, neither . nor .."},
        "ref": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "description": "Branch, tag or commit sha (a valid git ref). Default: main"},
        "target_path": {"type": ["string", "null"], "pattern": "^/workspace(/|$)", "description": "Absolute path inside /workspace, without ..; each repository its own directory. Default: /workspace/<repo name>"},
        "push_branches": {"type": ["array", "null"], "minItems": 1, "maxItems": 32, "items": {"type": "string", "pattern": "^[A-Za-z0-9_*][A-Za-z0-9_.*/-]{0,199}$"}, "description": "Git broker (opt-in): branch globs the box may push to (* within a path segment, ** across segments), e.g. agent/*. The clone's origin then points at the server's broker, which adds the connected GitHub token on the way out, forwards only to this devbox's repositories and admits pushes only to refs/heads/<branch> matching a glob (tags and other refs refused). Needs a connected GitHub account that may use its token for the repository, and per-box networks. null or absent: no broker, the token is used only to clone"}}},
      "CreateDevboxRequest": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 64},
        "plan": {"type": ["string", "null"], "minLength": 1, "default": "small", "description": "A plan this server offers (DEVBOX_PLANS: memory, CPUs, pids and a disk size for the writable layer and /workspace together); null or absent: the default plan"},
        "repository": {"type": ["string", "null"], "minLength": 3, "description": "Single repository (legacy): owner/name, or a https://…/owner/name URL (.git optional)"},
        "branch": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "default": "main", "description": "Only with repository; a valid git ref"},
        "repositories": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/DevboxRepositoryRequest"}},
        "network": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/DevboxNetwork"}]},
        "credential_profile": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/CredentialProfile"}]},
        "credential_mode": {"type": ["string", "null"], "enum": ["env", "proxy", null], "description": "env: the AI keys go into the box's environment (deleted from the server once ready). proxy: the box gets ANTHROPIC_BASE_URL / OPENAI_BASE_URL pointing at the server's broker and a placeholder key; the broker adds the real key, kept encrypted on the server until the devbox is destroyed. Absent: the server's default (DEVBOX_DEFAULT_CREDENTIAL_MODE, else env)"},
        "image": {"type": ["string", "null"], "maxLength": 4096, "description": "Root image of the box: a name from `devbox image list` (an unknown one is refused with 422). Absent: the server's default image (debian)"},
        "snapshot": {"type": ["string", "null"], "maxLength": 4096, "description": "Start from a snapshot (its id or name; GET /api/v1/snapshots) instead of an image: the box starts with the snapshot's files, then this request's env, AI tokens, repositories and setup commands apply on top (a clone into a path the snapshot has is refused). Mutually exclusive with image; an unknown one is refused with 422"},
        "env": {"type": ["object", "null"], "maxProperties": 64, "propertyNames": {"pattern": "^[A-Z_][A-Z0-9_]*$"}, "additionalProperties": {"type": "string", "maxLength": 32768}},
        "setup_commands": {"type": ["array", "null"], "maxItems": 32, "items": {"type": "string", "maxLength": 4096}},
        "setup_timeout_seconds": {"type": ["integer", "null"], "minimum": 30, "maximum": 3600, "default": 900},
        "idle_timeout_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 2592000, "description": "Stop after this long without activity; 0 = never; absent = server default (3600)"},
        "ttl_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 31536000, "description": "Destroy this long after creation; 0 = never; absent = server default (none)"}}},
      "DevboxRepository": {"type": "object", "properties": {
        "repo_id": {"type": ["integer", "null"]}, "full_name": {"type": "string"}, "ref": {"type": "string"}, "target_path": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "cloning", "cloned", "failed"]}, "commit": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
        "push_branches": {"type": "array", "items": {"type": "string"}, "description": "The git broker's branch globs; empty: no broker (the origin is GitHub's URL)"}}},
      "DevboxNetwork": {"type": "object", "description": "Egress policy. Loopback, private (RFC 1918, CGNAT, unique-local), link-local, multicast and the host's own addresses are refused in every mode.", "properties": {
        "egress": {"type": ["string", "null"], "enum": ["allow_all", "deny_all", null], "default": "allow_all", "description": "null or absent: allow_all"},
        "allow": {"type": ["array", "null"], "maxItems": 64, "items": {"type": "string", "description": "CIDR, or domain name with an optional leading *. (its subdomains)"}},
        "deny": {"type": ["array", "null"], "maxItems": 64, "items": {"type": "string", "description": "CIDR, or domain name with an optional leading *. (its subdomains)"}}}},
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
        "expires_at": {"type": ["string", "null"], "format": "date-time"}, "last_activity_at": {"type": ["string", "null"], "format": "date-time"},
        "network": {"$ref": "#/components/schemas/DevboxNetwork"},
        "credential_mode": {"type": "string", "enum": ["env", "proxy"]},
        "image": {"type": ["string", "null"], "description": "The root image: an image name, host (the host's masked root, DEVBOX_BASE_IMAGE=host) or DEVBOX_BASE_IMAGE's path; null for devboxes from before images"}}},
      "Snapshot": {"type": "object", "required": ["id", "name", "devbox_id", "image", "size_bytes", "created_at"], "description": "A devbox's file system changes (its writable layer and /workspace) frozen as read-only layers over its image. Never in it: the env file, AI tokens, SSH sessions, processes, /tmp and /run", "properties": {
        "id": {"type": "string", "description": "snap_…"}, "name": {"type": "string", "description": "Unique among the user's snapshots"},
        "devbox_id": {"type": "string", "description": "The devbox it was taken from (it may be destroyed since)"},
        "image": {"type": ["string", "null"], "description": "The image under the snapshot's layers"},
        "size_bytes": {"type": "integer", "minimum": 0, "description": "Bytes the snapshot's own layers take on disk; the user's snapshots together are bounded by DEVBOX_SNAPSHOT_QUOTA (default 50 GiB)"},
        "created_at": {"type": "string", "format": "date-time"}}},
      "Health": {"type": "object", "required": ["status", "image", "warm_pool"], "properties": {
        "status": {"type": "string", "enum": ["ok", "building_image", "image_failed"]},
        "image": {"type": "object", "required": ["name", "state"], "properties": {"name": {"type": "string"}, "state": {"type": "string", "enum": ["ready", "building", "failed"]}, "detail": {"type": "string", "description": "The build's last progress line, or why it failed"}}},
        "warm_pool": {"type": "object", "properties": {"size": {"type": "integer"}, "ready": {"type": "integer"}}}}},
      "BrokerUsage": {"type": "object", "required": ["devbox_id", "credential_mode", "requests", "input_tokens", "output_tokens", "apis"], "properties": {
        "devbox_id": {"type": "string"}, "credential_mode": {"type": "string", "enum": ["env", "proxy"]},
        "requests": {"type": "integer"}, "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
        "apis": {"type": "object", "additionalProperties": {"type": "object", "properties": {
          "requests": {"type": "integer"}, "status_codes": {"type": "object", "additionalProperties": {"type": "integer"}},
          "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"}}}}}},
      "DevboxStats": {"type": "object", "required": ["devbox_id", "state", "running", "sampled_at", "cpu_seconds", "memory_bytes", "memory_peak_bytes", "memory_limit_bytes", "pids", "disk_used_bytes", "disk_used_complete", "network_in_bytes", "network_out_bytes"], "description": "What the box uses now. null: not known (CPU, memory and pids while the box is not running; network without a network of its own). Counters count from the box's last start.", "properties": {
        "devbox_id": {"type": "string"}, "state": {"type": "string", "enum": ["requested", "provisioning", "ready", "stopped", "destroyed", "failed"]},
        "running": {"type": "boolean", "description": "The box's processes run (its cgroup exists)"}, "sampled_at": {"type": "string", "format": "date-time"},
        "cpu_seconds": {"type": ["number", "null"], "minimum": 0, "description": "CPU time of all its processes since the box started"},
        "memory_bytes": {"type": ["integer", "null"], "minimum": 0}, "memory_peak_bytes": {"type": ["integer", "null"], "minimum": 0},
        "memory_limit_bytes": {"type": ["integer", "null"], "minimum": 0}, "pids": {"type": ["integer", "null"], "minimum": 0},
        "disk_used_bytes": {"type": "integer", "minimum": 0, "description": "The box's writable tree (root file system changes and /workspace) on disk"},
        "disk_used_complete": {"type": "boolean", "description": "false: the measurement stopped at its bound, disk_used_bytes is a lower bound"},
        "network_in_bytes": {"type": ["integer", "null"], "minimum": 0}, "network_out_bytes": {"type": ["integer", "null"], "minimum": 0}}},
      "Operation": {"type": "object", "properties": {
        "id": {"type": "string"}, "devbox_id": {"type": "string"},
        "name": {"type": "string", "enum": ["provision", "inject_credentials", "clone_repositories", "run_setup_commands", "publish_access"]},
        "status": {"type": "string", "enum": ["pending", "running", "succeeded", "failed", "skipped"]},
        "started_at": {"type": ["string", "null"], "format": "date-time"}, "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "output": {"type": "string", "description": "stdout/stderr tail (last 64 KiB)"}, "output_truncated": {"type": "boolean"}, "error": {"type": ["string", "null"]}}},
      "SSHAccess": {"type": "object", "required": ["host", "port", "username", "workspace_path"], "properties": {
        "host": {"type": "string"}, "port": {"type": "integer"}, "username": {"type": "string"}, "workspace_path": {"type": "string"}}},
      "AccessSession": {"type": "object", "required": ["session_id", "expires_at", "command", "ssh"], "properties": {
        "session_id": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
        "command": {"type": "string", "description": "Ready-to-run OpenSSH command"}, "ssh": {"$ref": "#/components/schemas/SSHAccess"}}},
      "AccessSessionInfo": {"type": "object", "properties": {
        "session_id": {"type": "string"}, "devbox_id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"}, "connections": {"type": "integer", "description": "Live SSH connections"},
        "ssh": {"$ref": "#/components/schemas/SSHAccess"}}},
      "GitHubConnection": {"type": "object", "required": ["login", "github_user_id", "scopes", "connected_at"], "properties": {
        "login": {"type": "string"}, "github_user_id": {"type": "integer"}, "scopes": {"type": "array", "items": {"type": "string"}},
        "connected_at": {"type": "string", "format": "date-time"}}},
      "GitHubRepo": {"type": "object", "required": ["id", "full_name", "private"], "properties": {
        "id": {"type": "integer"}, "full_name": {"type": "string"}, "private": {"type": "boolean"},
        "default_branch": {"type": ["string", "null"]}, "html_url": {"type": ["string", "null"]}}},
      "GitHubOrg": {"type": "object", "required": ["id", "login", "granted"], "properties": {
        "id": {"type": "integer"}, "login": {"type": "string"}, "granted": {"type": "boolean", "description": "Whether this organisation's repositories may be listed and cloned with the connection"}}},
      "ExecRequest": {"type": "object", "required": ["command"], "properties": {
        "command": {"oneOf": [{"type": "string", "minLength": 1, "description": "Run through /bin/sh -c"}, {"type": "array", "minItems": 1, "prefixItems": [{"type": "string", "minLength": 1}], "items": {"type": "string"}, "description": "argv; the program is not empty"}], "description": "No NUL bytes; at most 256 KiB in all"},
        "env": {"type": "object", "maxProperties": 64, "propertyNames": {"pattern": "^[A-Z_][A-Z0-9_]*$"}, "additionalProperties": {"type": "string", "maxLength": 32768}, "description": "On top of the devbox env (/etc/devbox/env); values without NUL bytes"},
        "cwd": {"type": "string", "pattern": "^/", "maxLength": 4096, "default": "/workspace"},
        "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 86400, "default": 600, "description": "Then the command's whole process group is killed"},
        "stdin": {"type": "string", "description": "Fed to stdin, then EOF; absent: /dev/null (null is refused)"}}},
      "ExecResult": {"type": "object", "required": ["exit_code", "signal", "stdout", "stderr", "truncated", "timed_out", "duration_ms"], "properties": {
        "exit_code": {"type": ["integer", "null"], "description": "null when a signal ended the command"}, "signal": {"type": ["integer", "null"]},
        "stdout": {"type": "string"}, "stderr": {"type": "string"},
        "truncated": {"type": "boolean", "description": "Earlier output was dropped; each stream keeps its last 1 MiB by default"},
        "timed_out": {"type": "boolean"}, "duration_ms": {"type": "integer"}}},
      "FileEntry": {"type": "object", "properties": {
        "name": {"type": "string"}, "path": {"type": "string"}, "type": {"type": "string", "enum": ["file", "directory", "symlink", "other"]},
        "size": {"type": "integer"}, "mode": {"type": "string", "description": "Octal permission bits, e.g. 0644"},
        "modified_at": {"type": "string", "format": "date-time"}, "link_target": {"type": ["string", "null"]}}},
      "FileListing": {"type": "object", "properties": {"path": {"type": "string"}, "entries": {"type": "array", "items": {"$ref": "#/components/schemas/FileEntry"}}, "truncated": {"type": "boolean"}}},
      "AuditEvent": {"type": "object", "required": ["id", "time", "provider_id", "provider_token_id", "user_id", "face", "action", "devbox_id", "target", "result", "source", "request_id", "detail"], "properties": {
        "id": {"type": "integer", "description": "Increasing sequence number"}, "time": {"type": "string", "format": "date-time"},
        "provider_id": {"type": ["string", "null"]}, "provider_token_id": {"type": ["string", "null"], "description": "The provider token that authenticated the action (null for the service's own: idle stops, expiries)"},
        "user_id": {"type": ["string", "null"]}, "face": {"type": "string", "enum": ["api", "mcp", "dashboard", "ssh", "system"]},
        "action": {"type": "string", "description": "devbox.create, devbox.delete, devbox.stop, devbox.start, devbox.exec, devbox.network.set, devbox.credentials.replace, file.write, file.delete, session.create, session.revoke, user.ssh_key.set, user.ssh_key.delete, github.connect, github.disconnect, github.org_grants.set, dashboard.sign_in, ssh.login (face ssh), devbox.idle_stop, devbox.expire (face system)"},
        "devbox_id": {"type": ["string", "null"]}, "target": {"type": ["string", "null"], "description": "The other object acted on: a session id, a file path"},
        "result": {"type": "string", "description": "ok, or the API error code (not_found, conflict, validation_failed, ...)"},
        "source": {"type": ["string", "null"], "description": "The client's IP address"}, "request_id": {"type": ["string", "null"], "description": "The request's X-Request-Id"},
        "detail": {"type": "object", "description": "Non-secret facts: names of the fields a request set, exit codes, counts; never values of env, tokens, commands or bodies"}}},
      "UserProfile": {"type": "object", "properties": {
        "id": {"type": "string"}, "external_id": {"type": ["string", "null"]}, "provider_token_id": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "ssh_key": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {"type": {"type": "string"}, "fingerprint": {"type": "string"}, "public_key": {"type": "string"}, "updated_at": {"type": "string", "format": "date-time"}}}]}}}
    }
  },
  "paths": {
    "/healthz": {"get": {"summary": "Readiness: the default image (503 while a serve builds it), and how full the warm pool is", "security": [], "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}, "503": {"description": "The default image is being built (status building_image) or could not be (image_failed): creates answer 503 meanwhile", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics of the whole service (text exposition format 0.0.4): requests, devboxes by state, provisioning, warm pool, SSH, MCP, broker, database and disk. DEVBOX_METRICS_ADDR serves the same without auth on a listener of its own", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    "/api/v1/devboxes": {
      "post": {"summary": "Create a devbox (202, state requested)", "parameters": [{"$ref": "#/components/parameters/ClaudeToken"}, {"$ref": "#/components/parameters/CodexToken"}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateDevboxRequest"}}}},
        "responses": {"202": {"description": "Accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"},
          "507": {"description": "insufficient_storage: the data directory's filesystem has less free space than DEVBOX_MIN_FREE_DISK (default 5 %); nothing was created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}},
      "get": {"summary": "List the caller's devboxes, newest first: every one (destroyed ones for DEVBOX_DESTROYED_RETENTION), or with state/limit/cursor a page with next_cursor",
        "parameters": [
          {"name": "state", "in": "query", "required": false, "style": "form", "explode": true, "description": "Only these states (repeatable, or comma-separated)", "schema": {"type": "array", "items": {"type": "string", "enum": ["requested", "provisioning", "ready", "stopped", "destroyed", "failed"]}}},
          {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
          {"name": "cursor", "in": "query", "required": false, "description": "next_cursor of the previous page, unchanged", "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9_-]+$"}}],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"devboxes": {"type": "array", "items": {"$ref": "#/components/schemas/Devbox"}}, "next_cursor": {"type": ["string", "null"], "description": "Present when state, limit or cursor was given; null on the last page"}}}}}}, "401": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "Get a devbox", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}}, "404": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Destroy a devbox (204)", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Destroyed"}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/wait": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "Long-poll until the devbox settles: answers as soon as its state is neither requested nor provisioning (ready, failed, stopped, destroyed), or when timeout_seconds pass (then it shows its current state; check state). Graceful shutdown ends the wait early the same way",
        "parameters": [{"name": "timeout_seconds", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "maximum": 300, "default": 60}, "description": "Longest wait; 0 answers at once"}],
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "The devbox (settled, or as it is at the timeout)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}},
          "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/operations": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "List provisioning operations", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"operations": {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}}}}}}}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/access/session": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "post": {"summary": "Create an SSH access session (201); the devbox must be ready and the user must have an SSH key",
        "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"ttl_seconds": {"type": ["integer", "null"], "minimum": 60, "maximum": 86400, "default": 3600, "description": "null or absent: DEVBOX_SESSION_DEFAULT_TTL"}}}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AccessSession"}}}},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/access/sessions": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "List active sessions with their live connection count", "responses": {"404": {"$ref": "#/components/responses/NotFound"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/AccessSessionInfo"}}}}}}}}}
    },
    "/api/v1/devboxes/{id}/access/session/{session_id}": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}, {"name": "session_id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "delete": {"summary": "Revoke a session (204); its live connections are closed", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Revoked"}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/repositories": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "Repositories of a devbox with their clone status, resolved commit and error", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"repositories": {"type": "array", "items": {"$ref": "#/components/schemas/DevboxRepository"}}}}}}}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/stats": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "What the devbox uses now, from its cgroups, its disk and its network link: CPU seconds, memory current/peak, pids, disk used, network bytes in/out", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DevboxStats"}}}}, "404": {"$ref": "#/components/responses/NotFound"}}}
    },
    "/api/v1/devboxes/{id}/usage": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "What the AI-API broker forwarded for a proxy-mode devbox since the server started: requests, status codes, token usage the upstream reported", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BrokerUsage"}}}}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/credentials": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "patch": {"summary": "Replace (a value) or remove (an empty value) the AI keys of a live proxy-mode devbox: headers X-Claude-Token, X-Codex-Token. The box keeps its placeholder; the broker uses the new key at once",
        "parameters": [{"name": "X-Claude-Token", "in": "header", "required": false, "schema": {"type": "string"}}, {"name": "X-Codex-Token", "in": "header", "required": false, "schema": {"type": "string"}}],
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "The devbox", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/network": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "The devbox's egress policy", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DevboxNetwork"}}}}, "404": {"$ref": "#/components/responses/Error"}}},
      "patch": {"summary": "Replace the egress policy of a devbox; new connections follow it at once", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DevboxNetwork"}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "The policy now in force", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DevboxNetwork"}}}}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/ports": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "get": {"summary": "Redirect (303) to /api/v1/devboxes/{id}/ports/{port}/ (the dashboard's open-port form). Same authentication as the port URLs",
        "parameters": [{"name": "port", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1, "maximum": 65535}}],
        "responses": {"303": {"description": "To the port's URL"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/ports/{port}": {
      "description": "HTTP to a port inside a ready devbox, connected from inside its network namespace (an app bound to the box's 127.0.0.1 answers). Authentication: the API's, or the dashboard's session cookie. GET, POST, PUT, PATCH, DELETE, HEAD and OPTIONS are forwarded with the path after the prefix and the query; Authorization, X-Provider-Token, Cookie, X-Claude-Token, X-Codex-Token and hop-by-hop headers are not; Host becomes 127.0.0.1:<port>, X-Forwarded-Prefix is the prefix. Bodies stream both ways. 502 (field port) when nothing answers on the port; 422 (field port) for a port outside 1-65535; 504 (field port) when the app sends no response head within 5 minutes; WebSocket and other HTTP/1.1 upgrades pass through (the app's own 101, then a byte relay both ways; at most 64 per user, closed after 10 minutes idle; 503 beyond)",
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}, {"$ref": "#/components/parameters/Port"}],
      "get": {"summary": "GET forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "post": {"summary": "POST forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "put": {"summary": "PUT forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "patch": {"summary": "PATCH forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "DELETE forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "head": {"summary": "HEAD forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "options": {"summary": "OPTIONS forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/ports/{port}/{path}": {
      "description": "HTTP to a port inside a ready devbox, connected from inside its network namespace (an app bound to the box's 127.0.0.1 answers). Authentication: the API's, or the dashboard's session cookie. GET, POST, PUT, PATCH, DELETE, HEAD and OPTIONS are forwarded with the path after the prefix and the query; Authorization, X-Provider-Token, Cookie, X-Claude-Token, X-Codex-Token and hop-by-hop headers are not; Host becomes 127.0.0.1:<port>, X-Forwarded-Prefix is the prefix. Bodies stream both ways. 502 (field port) when nothing answers on the port; 422 (field port) for a port outside 1-65535; 504 (field port) when the app sends no response head within 5 minutes; WebSocket and other HTTP/1.1 upgrades pass through (the app's own 101, then a byte relay both ways; at most 64 per user, closed after 10 minutes idle; 503 beyond)",
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}, {"$ref": "#/components/parameters/Port"}, {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The rest of the path, slashes included, as the app gets it"}],
      "get": {"summary": "GET forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "post": {"summary": "POST forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "put": {"summary": "PUT forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "patch": {"summary": "PATCH forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "DELETE forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "head": {"summary": "HEAD forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}},
      "options": {"summary": "OPTIONS forwarded to the port", "responses": {"default": {"description": "The app's response: status, headers (hop-by-hop and Set-Cookie removed; Content-Security-Policy: sandbox added) and body, streamed"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "502": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/exec": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "post": {"summary": "Run a command in a ready devbox with its env. With Accept: text/event-stream: stdout/stderr events ({\"data\": text}) as output comes, then one exit event (the result without stdout/stderr)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecRequest"}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "Finished", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecResult"}}, "text/event-stream": {"schema": {"type": "string"}}}},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/files": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}, {"name": "path", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/"}, "description": "Absolute path inside the devbox (no NUL bytes, components of at most 255 bytes; PUT and DELETE need a path below /); '..' is refused, symlinks are followed only while they stay inside (relative targets)"}],
      "get": {"summary": "A file's bytes (application/octet-stream, X-Devbox-File-Mode) or a directory listing (application/json)",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}, "application/json": {"schema": {"$ref": "#/components/schemas/FileListing"}}}},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
      "put": {"summary": "Write a file (raw body; parent directories created; atomic replace). 201 when created, 200 when replaced",
        "parameters": [{"name": "mode", "in": "query", "required": false, "schema": {"type": "string", "pattern": "^[0-7]{3,4}$"}, "description": "Octal permission bits; default: kept, or 0644 for a new file"}],
        "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "Replaced"}, "201": {"description": "Created"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Delete a file, symlink or empty directory (204); recursive=true for a directory tree",
        "parameters": [{"name": "recursive", "in": "query", "required": false, "schema": {"type": "boolean", "default": false}}],
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Deleted"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/stop": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "post": {"summary": "Stop a ready devbox: SSH connections close, processes end, memory is freed; files and env stay",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "Stopped", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/start": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "post": {"summary": "Start a stopped devbox again on its kept files (nothing is cloned or set up again); returns when ready",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Devbox"}}}}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/devboxes/{id}/snapshots": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "post": {"summary": "Snapshot a ready or stopped devbox (201): its writable layer and /workspace become read-only layers other devboxes start from (create with snapshot, or fork). A running box is paused (cgroup freezer) only for the last pass of the copy; its processes keep running",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Unique among your snapshots (409 otherwise)"}}}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snapshot"}}}},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"description": "The name is taken, or the devbox is not ready or stopped (or not on an image of the store)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"},
          "507": {"description": "insufficient_storage: your snapshots would take more than DEVBOX_SNAPSHOT_QUOTA (default 50 GiB); nothing was kept", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
    },
    "/api/v1/devboxes/{id}/fork": {
      "parameters": [{"$ref": "#/components/parameters/DevboxId"}],
      "post": {"summary": "Snapshot the devbox and create count devboxes from it in one call (201). The new devboxes get the original's plan, network policy and credential mode; its env values only with copy_env; AI tokens only from this request's X-Claude-Token / X-Codex-Token headers; no setup commands or repositories. Processes are not forked (files only)",
        "parameters": [{"$ref": "#/components/parameters/ClaudeToken"}, {"$ref": "#/components/parameters/CodexToken"}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
          "count": {"type": "integer", "minimum": 1, "maximum": 32, "default": 1},
          "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 64, "description": "The snapshot's name and the new devboxes' name prefix (<name>-1 … when count > 1); absent: <devbox name>-fork-<random>"},
          "copy_env": {"type": ["boolean", "null"], "default": false, "description": "Give the new devboxes the original's env values"}}}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"},
          "201": {"description": "The snapshot and the new devboxes (state requested; wait for ready)", "content": {"application/json": {"schema": {"type": "object", "required": ["snapshot", "devboxes"], "properties": {
            "snapshot": {"$ref": "#/components/schemas/Snapshot"}, "devboxes": {"type": "array", "items": {"$ref": "#/components/schemas/Devbox"}}}}}}},
          "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"},
          "507": {"description": "insufficient_storage: the snapshot quota (DEVBOX_SNAPSHOT_QUOTA) or the host's free-disk floor", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
    },
    "/api/v1/snapshots": {
      "get": {"summary": "The caller's snapshots, newest first, with their sizes",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "required": ["snapshots"], "properties": {"snapshots": {"type": "array", "items": {"$ref": "#/components/schemas/Snapshot"}}}}}}}}}
    },
    "/api/v1/snapshots/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The snapshot's id or name"}],
      "get": {"summary": "A snapshot (by id or name); another user's answers 404", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snapshot"}}}}, "404": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Delete a snapshot (204): it leaves the list and its name is free at once; its layers stay on disk while devboxes made from it exist (they keep working) and go with the last one. 409 while devboxes are still being created from it",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Deleted"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/integrations/github/connect": {
      "post": {"summary": "Start the GitHub OAuth web flow: a single-use state (10 minutes) and the URL to send the browser to",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["redirect_url"], "properties": {"redirect_url": {"type": "string", "description": "Where the browser returns after the flow; must be under a DEVBOX_OAUTH_REDIRECT_ALLOWLIST prefix"}}}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "required": ["authorization_url", "state"], "properties": {"authorization_url": {"type": "string"}, "state": {"type": "string"}}}}}},
          "422": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/integrations/github/callback": {
      "get": {"summary": "OAuth callback (GitHub sends the browser here; no provider token). Redirects to the client's redirect_url with github=connected&login=… or github=error&error=…",
        "security": [],
        "parameters": [{"name": "code", "in": "query", "schema": {"type": "string"}}, {"name": "state", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}, "description": "The state /connect gave out (single use, 10 minutes)"}, {"name": "error", "in": "query", "schema": {"type": "string"}}],
        "responses": {"302": {"description": "Back to the client's redirect_url with the outcome"}, "400": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/integrations/github/connection": {
      "get": {"summary": "The GitHub connection, or null", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/GitHubConnection"}]}}}}}},
      "delete": {"summary": "Delete the stored token and revoke the grant at GitHub (best effort) (204)", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Disconnected"}}}
    },
    "/api/v1/integrations/github/repos": {
      "get": {"summary": "Repositories the connection can reach (every page); organisation repositories only for granted organisations",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"repos": {"type": "array", "items": {"$ref": "#/components/schemas/GitHubRepo"}}}}}}}, "409": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/integrations/github/orgs": {
      "get": {"summary": "Organisations of the connected account, with their grant",
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"orgs": {"type": "array", "items": {"$ref": "#/components/schemas/GitHubOrg"}}}}}}}, "409": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/integrations/github/org-grants": {
      "put": {"summary": "Replace the organisations whose repositories may be listed and cloned (204)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["orgs"], "properties": {"orgs": {"type": "array", "maxItems": 100, "items": {"type": "string", "minLength": 1, "maxLength": 39, "pattern": "^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$", "description": "An organisation login"}}}}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Replaced"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}
    },
    "/api/v1/audit": {
      "get": {"summary": "The audit log, newest first: every state-changing action of the REST API, MCP and the dashboard (who, what, which devbox, result, when, from where). A provider token alone reads its provider's events; with a user bearer token, only that user's. Kept for DEVBOX_AUDIT_RETENTION (default 90 days), also after the devbox is purged",
        "parameters": [
          {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
          {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}, "description": "next_cursor of the previous page"},
          {"name": "devbox_id", "in": "query", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
          {"name": "action", "in": "query", "required": false, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._]{1,64}$"}, "description": "An action (devbox.create) or a family (devbox: every devbox.* action)"},
          {"name": "since", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}, "description": "Only events at or after this time (RFC 3339)"}],
        "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "422": {"$ref": "#/components/responses/Error"},
          "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "required": ["events", "next_cursor"], "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}, "next_cursor": {"type": ["string", "null"], "description": "null on the last page"}}}}}}}}
    },
    "/api/v1/users/me": {
      "get": {"summary": "The caller's profile", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UserProfile"}}}}}}
    },
    "/api/v1/users/me/ssh-key": {
      "put": {"summary": "Set the SSH public key (204): ed25519 or ECDSA",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["public_key"], "properties": {"public_key": {"type": "string", "description": "An authorized_keys line"}}}}}},
        "responses": {"400": {"$ref": "#/components/responses/BadRequest"}, "401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Set"}, "422": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Remove the SSH key (204)", "responses": {"401": {"$ref": "#/components/responses/Unauthorized"}, "204": {"description": "Removed"}}}
    },
    "/mcp": {
      "description": "MCP tool server (Streamable HTTP; protocol revisions 2025-06-18, 2025-11-25, 2026-07-28). Same authentication as the REST API; X-Claude-Token / X-Codex-Token are the AI tokens create_devbox may inject.",
      "post": {"summary": "One JSON-RPC message", "parameters": [{"$ref": "#/components/parameters/ClaudeToken"}, {"$ref": "#/components/parameters/CodexToken"},
          {"name": "Mcp-Session-Id", "in": "header", "required": false, "schema": {"type": "string"}, "description": "Session minted by initialize (2025 revisions)"},
          {"name": "MCP-Protocol-Version", "in": "header", "required": false, "schema": {"type": "string"}}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "description": "JSON-RPC 2.0 request or notification"}}}},
        "responses": {"200": {"description": "JSON-RPC response (application/json), or an SSE stream (text/event-stream) of progress notifications ending with the response"},
          "202": {"description": "Notification accepted"}, "400": {"description": "Malformed message, missing session or header mismatch (JSON-RPC error)"},
          "401": {"$ref": "#/components/responses/Error"}, "403": {"description": "Origin not allowed"}, "404": {"description": "Unknown session or method (JSON-RPC error)"},
          "406": {"description": "Accept must list application/json and text/event-stream"}, "413": {"description": "Body over 2 MiB"}, "415": {"description": "Content-Type must be application/json"}}},
      "get": {"summary": "Server-initiated stream (not offered)", "responses": {"401": {"$ref": "#/components/responses/Error"}, "405": {"description": "Method not allowed"}}},
      "delete": {"summary": "End an MCP session (2025 revisions)", "parameters": [{"name": "Mcp-Session-Id", "in": "header", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "Session ended"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"description": "Unknown session"}, "405": {"description": "No session header"}}}
    }
  }
}
"""#
}
