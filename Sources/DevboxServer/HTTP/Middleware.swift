import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Turns every error into the API's one JSON error shape.
/// Produces: the status of a `ServiceError`; 404/405/413 from the router; 405 with `Allow`
/// for a method no route of a known path takes (TRACE included); 500 (with no internal
/// detail) for anything unexpected.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    /// The registered routes, to tell "no such path" (404) from "not this method" (405).
    var routes: RouteTable? = nil

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as ServiceError {
            return try e.response(from: request, context: context)
        } catch let e as HTTPError {
            if e.status == .notFound, e.body == nil, let routes,
                case let allowed = routes.methods(forPath: request.uri.path), !allowed.isEmpty,
                !allowed.contains(request.method.rawValue)
            {
                var response = try JSONIO.response(
                    APIErrorBody(
                        code: "method_not_allowed",
                        message: "\(request.method) is not allowed on \(request.uri.path); allowed: \(allowed.joined(separator: ", "))"),
                    status: .methodNotAllowed)
                response.headers[.allow] = allowed.joined(separator: ", ")
                return response
            }
            let code: String
            switch e.status.code {
            case 404: code = "not_found"
            case 405: code = "method_not_allowed"
            case 413: code = "payload_too_large"
            case 400: code = "bad_request"
            default: code = "http_\(e.status.code)"
            }
            let message = e.body ?? (e.status.code == 404 ? "no route for \(request.method) \(request.uri.path)" : e.status.reasonPhrase)
            return try JSONIO.response(APIErrorBody(code: code, message: message), status: e.status)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.error("unhandled error", metadata: ["path": "\(request.uri.path)", "error": "\(type(of: error))"])
            return try JSONIO.response(
                APIErrorBody(code: "internal_error", message: "internal error; the request was not completed"),
                status: .internalServerError)
        }
    }
}

/// Logs one line per request. Credentials never reach the log: the headers that carry
/// them are replaced by `[redacted]`, and query strings are not logged.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    static var redactedHeaders: Set<String> {
        ["authorization", "x-provider-token", "x-claude-token", "x-codex-token", "cookie", "x-csrf-token"]
    }
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = ContinuousClock.now - start
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        if logger.logLevel <= .debug {
            logger.debug(
                "request",
                metadata: [
                    "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(response.status.code)",
                    "ms": "\(String(format: "%.2f", ms))", "headers": "\(Self.redact(request.headers))",
                ])
        } else if logger.logLevel <= .info, !request.uri.path.hasPrefix("/healthz") {
            logger.info(
                "request",
                metadata: [
                    "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(response.status.code)",
                    "ms": "\(String(format: "%.2f", ms))",
                ])
        }
        return response
    }

    static func redact(_ headers: HTTPFields) -> String {
        headers.map { f in
            let name = f.name.canonicalName
            return "\(name)=\(redactedHeaders.contains(name) ? "[redacted]" : f.value)"
        }.joined(separator: " ")
    }
}

/// Requires `X-Provider-Token` (and checks an optional `Authorization: Bearer` user token).
/// Produces 401 when the provider token is missing or wrong, or the bearer is invalid.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.principal = try await Self.authenticate(request, authenticator: authenticator)
        return try await next(request, context)
    }

    static func authenticate(_ request: Request, authenticator: Authenticator) async throws(ServiceError) -> Principal {
        let token = request.headers[HTTPField.Name("X-Provider-Token")!]
        var bearer: String?
        if let auth = request.headers[.authorization] {
            guard auth.count > 7, auth.prefix(7).lowercased() == "bearer " else {
                throw .unauthorized("Authorization must be 'Bearer <token>'")
            }
            bearer = String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        return try await authenticator.authenticate(providerToken: token, bearer: bearer)
    }
}
