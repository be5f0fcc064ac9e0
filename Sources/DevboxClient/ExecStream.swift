import DevboxModel
import Foundation
import NIOCore

/// One event of a streamed exec (`Accept: text/event-stream`).
public enum ExecEvent: Sendable, Equatable {
    case stdout(String)
    case stderr(String)
    /// The last event: how the command ended (`stdout`/`stderr` of the result are empty:
    /// the output came in the events before).
    case exit(ExecResult)
}

extension DevboxesAPI {
    /// `POST /api/v1/devboxes/:id/exec` with `Accept: text/event-stream`: the output as it
    /// comes, then `.exit`. Refusals (bad input, unknown devbox, wrong state) throw
    /// `.api` as the stream's error; cancelling the iteration ends the request, which kills
    /// the command's process group.
    public func execStream(_ id: String, _ request: ExecRequest) -> AsyncThrowingStream<ExecEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ExecEvent.self, throwing: (any Error).self)
        let http = self.http
        do {
            let prepared = try http.makeRequest(
                "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/exec", body: try http.encode(request),
                headers: ["Accept": "text/event-stream"], timeout: TimeInterval((request.timeoutSeconds ?? 600) + 30))
            let secrets = Array((request.env ?? [:]).values)
            let task = Task {
                await SSEReader.run(prepared, http: http, secrets: secrets, into: continuation)
            }
            continuation.onTermination = { _ in task.cancel() }
        } catch {
            continuation.finish(throwing: error)
        }
        return stream
    }
}

/// Reads the SSE body as it arrives (`event: NAME\ndata: JSON\n\n` frames) and yields each
/// event the moment its frame is complete.
enum SSEReader {
    /// How the response ended.
    enum Ending: Sendable {
        /// The `exit` event arrived (yielded).
        case exited
        /// An `error` event: the run failed after the stream began.
        case failed(DevboxClientError)
        /// A 200 whose body ended without an `exit` event.
        case cut
        /// Any other status, with its body.
        case refused(status: Int, body: Data)
    }

    static func run(
        _ prepared: HTTPCore.Prepared, http: HTTPCore, secrets: [String],
        into continuation: AsyncThrowingStream<ExecEvent, any Error>.Continuation
    ) async {
        let ending: Ending
        do {
            ending = try await http.perform(prepared, secrets: secrets) { response, alive in
                let status = Int(response.status.code)
                var frames = SSEFrames()
                var body = Data()
                for try await chunk in response.body {
                    alive()
                    guard status == 200 else {
                        body.append(contentsOf: chunk.readableBytesView)
                        continue
                    }
                    for frame in frames.append(chunk.readableBytesView) {
                        switch event(frame) {
                        case .output(let e):
                            continuation.yield(e)
                        case .exit(let e):
                            continuation.yield(e)
                            return .exited
                        case .failed(.api(let e)):
                            // Like every other error the SDK reports: no token, no env value.
                            return .failed(
                                .api(
                                    DevboxAPIError(
                                        status: e.status, code: e.code, message: http.redact(e.message, secrets),
                                        field: e.field)))
                        case .failed(let error):
                            return .failed(error)
                        case .unknown:
                            break
                        }
                    }
                }
                return status == 200 ? .cut : .refused(status: status, body: body)
            }
        } catch {
            continuation.finish(throwing: error)
            return
        }
        let url = HTTPCore.display(http.baseURL)
        switch ending {
        case .exited:
            continuation.finish()
        case .failed(let error):
            continuation.finish(throwing: error)
        case .refused(let status, let body):
            if let api = try? DevboxJSON.decoder().decode(APIErrorBody.self, from: body) {
                continuation.finish(
                    throwing: DevboxClientError.api(
                        DevboxAPIError(
                            status: status, code: api.error.code, message: http.redact(api.error.message, secrets),
                            field: api.error.field)))
            } else {
                continuation.finish(
                    throwing: DevboxClientError.badResponse(
                        url: url, status: status, reason: "the exec stream ended without an exit event"))
            }
        case .cut:
            continuation.finish(
                throwing: DevboxClientError.badResponse(
                    url: url, status: 200, reason: "the exec stream ended without an exit event"))
        }
    }

    /// What one frame says.
    enum Frame: Equatable {
        /// `stdout` or `stderr`.
        case output(ExecEvent)
        /// `exit`: the last event.
        case exit(ExecEvent)
        /// `error`: the run failed after the stream began.
        case failed(DevboxClientError)
        /// An event we do not know, or one that does not decode.
        case unknown
    }

    static func event(_ frame: String) -> Frame {
        var event = "", data = ""
        for line in frame.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data += String(line.dropFirst(6)) }
        }
        let bytes = Data(data.utf8)
        let decoder = DevboxJSON.decoder()
        switch event {
        case "stdout", "stderr":
            guard let chunk = try? decoder.decode([String: String].self, from: bytes), let text = chunk["data"] else {
                return .unknown
            }
            return .output(event == "stdout" ? .stdout(text) : .stderr(text))
        case "exit":
            guard let exit = try? decoder.decode(ExecExitEvent.self, from: bytes) else { return .unknown }
            return .exit(
                .exit(
                    ExecResult(
                        exitCode: exit.exitCode, signal: exit.signal, stdout: "", stderr: "", truncated: exit.truncated,
                        timedOut: exit.timedOut, durationMs: exit.durationMs)))
        case "error":
            guard let body = try? decoder.decode(APIErrorBody.self, from: bytes) else { return .unknown }
            return .failed(
                DevboxClientError.api(
                    DevboxAPIError(status: 500, code: body.error.code, message: body.error.message, field: body.error.field)))
        default:
            return .unknown
        }
    }
}

/// Splits a byte stream into SSE frames (text up to a blank line), whatever the chunking.
struct SSEFrames {
    private var buffer: [UInt8] = []
    /// Where the search for the next blank line resumes (what came before has none).
    private var scanned = 0

    /// Appends bytes; returns the frames they complete, in order.
    mutating func append(_ bytes: some Sequence<UInt8>) -> [String] {
        buffer.append(contentsOf: bytes)
        var frames: [String] = []
        var start = 0
        var i = scanned
        while i + 1 < buffer.count {
            if buffer[i] == UInt8(ascii: "\n") && buffer[i + 1] == UInt8(ascii: "\n") {
                frames.append(String(decoding: buffer[start..<i], as: UTF8.self))
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        buffer.removeFirst(start)
        scanned = max(0, i - start)
        return frames
    }
}
