/// A failure the API reports to its caller: each case decides its HTTP status.
public enum ServiceError: Error, Equatable, Sendable {
    case validation(field: String, message: String)
    case badRequest(field: String?, message: String)
    case unauthorized(String)
    case notFound(String)
    case conflict(String)
    case payloadTooLarge(String)
    case unavailable(String)
    /// The host is short of disk (below `DEVBOX_MIN_FREE_DISK`): 507.
    case insufficientStorage(String)

    public var statusCode: Int {
        switch self {
        case .validation: 422
        case .badRequest: 400
        case .unauthorized: 401
        case .notFound: 404
        case .conflict: 409
        case .payloadTooLarge: 413
        case .unavailable: 503
        case .insufficientStorage: 507
        }
    }

    public var code: String {
        switch self {
        case .validation: "validation_failed"
        case .badRequest: "bad_request"
        case .unauthorized: "unauthorized"
        case .notFound: "not_found"
        case .conflict: "conflict"
        case .payloadTooLarge: "payload_too_large"
        case .unavailable: "unavailable"
        case .insufficientStorage: "insufficient_storage"
        }
    }

    public var message: String {
        switch self {
        case .validation(_, let m), .badRequest(_, let m), .unauthorized(let m), .notFound(let m), .conflict(let m),
            .payloadTooLarge(let m), .unavailable(let m), .insufficientStorage(let m):
            m
        }
    }

    public var field: String? {
        switch self {
        case .validation(let f, _): f
        case .badRequest(let f, _): f
        default: nil
        }
    }
}
