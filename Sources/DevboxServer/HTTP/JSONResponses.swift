import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// JSON encoding and decoding with the API's error rules.
enum JSONIO {
    static let encoder = DevboxJSON.encoder()
    static let decoder = DevboxJSON.decoder()

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func rawJSON(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func rawJSON(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func noContent() -> Response { Response(status: .noContent) }

    /// Reads the whole body (bounded by `limit`) and decodes it. Malformed JSON → 400,
    /// a wrong or missing field → 422 naming it, too large → 413.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = 2 * 1024 * 1024) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw ServiceError.payloadTooLarge("request body is larger than \(Self.describeSize(limit))")
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw ServiceError.payloadTooLarge("request body is larger than \(Self.describeSize(limit))")
        }
        let data = Data(buffer.readableBytesView)
        guard !data.isEmpty else { throw ServiceError.badRequest(field: nil, message: "request body must be a JSON object") }
        do {
            return try decoder.decode(T.self, from: data)
        } catch let error as DecodingError {
            throw map(error)
        }
    }

    static func describeSize(_ n: Int) -> String {
        n >= 1 << 20 ? "\(n >> 20) MiB" : "\(n >> 10) KiB"
    }

    static func map(_ error: DecodingError) -> ServiceError {
        func path(_ p: [any CodingKey]) -> String {
            var s = ""
            for k in p {
                if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
            }
            return s
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            let f = path(ctx.codingPath + [key])
            return .validation(field: f, message: "\(f) is required")
        case .typeMismatch(let type, let ctx):
            let f = path(ctx.codingPath)
            return f.isEmpty
                ? .badRequest(field: nil, message: "request body must be a JSON object")
                : .validation(field: f, message: "\(f) must be \(describe(type))")
        case .valueNotFound(let type, let ctx):
            let f = path(ctx.codingPath)
            return .validation(field: f, message: "\(f) must be \(describe(type)), not null")
        case .dataCorrupted(let ctx):
            let f = path(ctx.codingPath)
            return f.isEmpty
                ? .badRequest(field: nil, message: "request body is not valid JSON")
                : .validation(field: f, message: "\(f) is invalid")
        @unknown default:
            return .badRequest(field: nil, message: "request body is not valid JSON")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Bool.Type: "a boolean"
        case is Double.Type: "a number"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}

extension ServiceError: HTTPResponseError {
    public var status: HTTPResponse.Status { HTTPResponse.Status(code: statusCode) }
    public var headers: HTTPFields { [.contentType: "application/json; charset=utf-8"] }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = APIErrorBody(code: code, message: message, field: field)
        return try JSONIO.response(body, status: status)
    }
}
