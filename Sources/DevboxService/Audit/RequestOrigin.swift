/// Where the current request came from: the face (api, mcp, dashboard, ssh, system), the
/// peer's address and the request id. Set once per request by the HTTP server's request-id
/// middleware as a task-local, so the service layer's audit and the log lines of everything
/// the request runs (the MCP tool tasks included: `Task {}` inherits it) carry it without
/// every method passing it on.
public struct RequestOrigin: Sendable, Equatable {
    public var face: String
    public var source: String?
    public var requestId: String?
    /// The devbox the request's path names, if any (log lines' `devbox_id`).
    public var devboxId: String?

    public init(face: String, source: String? = nil, requestId: String? = nil, devboxId: String? = nil) {
        self.face = face
        self.source = source
        self.requestId = requestId
        self.devboxId = devboxId
    }

    @TaskLocal public static var current: RequestOrigin?
}
