import DevboxModel
import DevboxService
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// `/api/v1/devboxes/:id/{exec,files,stop,start}`: using a devbox after it is ready.
struct RuntimeController {
    let runtime: RuntimeService

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .post, "/api/v1/devboxes/:id/exec", use: exec)
        router.route(table, .get, "/api/v1/devboxes/:id/files", use: readFile)
        router.route(table, .put, "/api/v1/devboxes/:id/files", use: writeFile)
        router.route(table, .delete, "/api/v1/devboxes/:id/files", use: deleteFile)
        router.route(table, .post, "/api/v1/devboxes/:id/stop", use: stop)
        router.route(table, .post, "/api/v1/devboxes/:id/start", use: start)
    }

    // MARK: exec

    /// JSON answer by default; `Accept: text/event-stream` streams `stdout`/`stderr` events
    /// (`{"data": "<text>"}`) as output comes and ends with one `exit` event (the result
    /// without stdout/stderr), or an `error` event (the API error body) if the run failed
    /// after the stream began.
    @Sendable func exec(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let limit = 16 * 1024 * 1024
        var request = request
        do {
            // Collected into the request (not only read from it): the streamed answer below can
            // then still watch the connection for the client going away.
            _ = try await request.collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw ServiceError.payloadTooLarge("request body is larger than \(JSONIO.describeSize(limit))")
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw ServiceError.payloadTooLarge("request body is larger than \(JSONIO.describeSize(limit))")
        }
        let body = try await JSONIO.decode(ExecRequest.self, from: request, limit: limit)
        let wantsStream = request.headers[.accept].map { $0.contains("text/event-stream") } ?? false
        guard wantsStream else {
            return try JSONIO.response(try await runtime.exec(principal, id: id, body))
        }
        // Refusals (bad input, unknown id, wrong state) still get a plain JSON error.
        try await runtime.checkExec(principal, id: id, body)
        let runtime = self.runtime
        let inbound = request.body
        // Watching for the client to go away consumes the connection's input, so the connection
        // closes after this response (as the /wait long-poll does).
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .connection: "close"],
            body: ResponseBody { writer in
                let (stream, continuation) = AsyncStream.makeStream(of: ExecChunk.self, bufferingPolicy: .bufferingOldest(4096))
                let dropped = DroppedFlag()
                let run = Task { () -> Result<ExecResult, ServiceError> in
                    defer { continuation.finish() }
                    do {
                        return .success(
                            try await runtime.exec(principal, id: id, body) { chunk in
                                if case .dropped = continuation.yield(chunk) { dropped.set() }
                            })
                    } catch {
                        return .failure(error as? ServiceError ?? .unavailable("the command could not be run; try again"))
                    }
                }
                var decoders = [ExecChunk.Stream.stdout: UTF8Carry(), .stderr: UTF8Carry()]
                // A client that goes away (an MCP tool call cancelled through the SDK) ends the
                // run at once, killing the command's process group; a failed write would notice
                // only when the command prints, and a silent one never does.
                try await inbound.consumeWithInboundCloseHandler { _ in
                    do {
                        for await chunk in stream {
                            let text = decoders[chunk.stream, default: UTF8Carry()].take(chunk.bytes)
                            if text.isEmpty { continue }
                            try await writer.write(SSE.frame(event: chunk.stream.rawValue, ["data": text]))
                        }
                        for s in [ExecChunk.Stream.stdout, .stderr] {
                            let rest = decoders[s, default: UTF8Carry()].flush()
                            if !rest.isEmpty { try await writer.write(SSE.frame(event: s.rawValue, ["data": rest])) }
                        }
                        switch await run.value {
                        case .success(let r):
                            let exit = ExecExitEvent(
                                exitCode: r.exitCode, signal: r.signal, truncated: r.truncated || dropped.isSet,
                                timedOut: r.timedOut, durationMs: r.durationMs)
                            try await writer.write(SSE.frame(event: "exit", exit))
                        case .failure(let e):
                            try await writer.write(SSE.frame(event: "error", APIErrorBody(code: e.code, message: e.message, field: e.field)))
                        }
                        try await writer.finish(nil)
                    } catch {
                        // The client went away: cancelling the run kills the command's process group.
                        run.cancel()
                        throw error
                    }
                } onInboundClosed: {
                    run.cancel()
                }
            })
    }

    // MARK: files

    @Sendable func readFile(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let path = try Self.pathParameter(request)
        switch try await runtime.readPath(principal, id: id, path: path) {
        case .file(let bytes, let mode):
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/octet-stream", HTTPField.Name("X-Devbox-File-Type")!: "file",
                    HTTPField.Name("X-Devbox-File-Mode")!: mode,
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        case .directory(let listing):
            var response = try JSONIO.response(listing)
            response.headers[HTTPField.Name("X-Devbox-File-Type")!] = "directory"
            return response
        }
    }

    @Sendable func writeFile(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let path = try Self.pathParameter(request)
        let mode = request.uri.queryParameters.get("mode")
        let limit = runtime.fileSizeLimit
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw ServiceError.payloadTooLarge("the file is larger than the limit of \(limit) bytes")
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw ServiceError.payloadTooLarge("the file is larger than the limit of \(limit) bytes")
        }
        let result = try await runtime.writeFile(
            principal, id: id, path: path, bytes: Array(buffer.readableBytesView), mode: mode)
        return try JSONIO.response(result, status: result.created ? .created : .ok)
    }

    @Sendable func deleteFile(_ request: Request, context: AppRequestContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let id = try context.parameters.require("id")
        let path = try Self.pathParameter(request)
        let recursive: Bool
        switch request.uri.queryParameters.get("recursive") {
        case nil, "false", "0": recursive = false
        case "true", "1": recursive = true
        default: throw ServiceError.validation(field: "recursive", message: "recursive must be true or false")
        }
        try await runtime.deletePath(principal, id: id, path: path, recursive: recursive)
        return JSONIO.noContent()
    }

    static func pathParameter(_ request: Request) throws -> String {
        guard let path = request.uri.queryParameters.get("path"), !path.isEmpty else {
            throw ServiceError.validation(field: "path", message: "path is required (an absolute path inside the devbox)")
        }
        return path
    }

    // MARK: stop / start

    @Sendable func stop(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return try JSONIO.response(try await runtime.stopDevbox(try context.requirePrincipal(), id: id))
    }

    @Sendable func start(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return try JSONIO.response(try await runtime.startDevbox(try context.requirePrincipal(), id: id))
    }
}

enum SSE {
    static func frame(event: String, _ value: some Encodable) throws -> ByteBuffer {
        let data = try JSONIO.encoder.encode(value)
        var b = ByteBuffer()
        b.writeString("event: \(event)\ndata: ")
        b.writeBytes(data)
        b.writeString("\n\n")
        return b
    }
}

/// Decodes a byte stream as UTF-8 across chunk boundaries: an incomplete character at
/// the end of a chunk waits for the next one.
struct UTF8Carry {
    var pending: [UInt8] = []

    mutating func take(_ bytes: [UInt8]) -> String {
        pending += bytes
        var cut = pending.count
        // Find the start of a trailing, possibly incomplete, sequence (at most 3 bytes back).
        var i = pending.count - 1
        var back = 0
        while i >= 0, back < 4, pending[i] & 0xC0 == 0x80 { i -= 1; back += 1 }
        if i >= 0 {
            let lead = pending[i]
            let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if pending.count - i < need { cut = i }
        }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }
}

final class DroppedFlag: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}
