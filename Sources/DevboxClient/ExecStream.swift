import DevboxModel
import Foundation
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

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
            let urlRequest = try http.makeRequest(
                "POST", "/api/v1/devboxes/\(try HTTPCore.segment(id))/exec", body: try http.encode(request),
                headers: ["Accept": "text/event-stream"], timeout: TimeInterval((request.timeoutSeconds ?? 600) + 30))
            let delegate = SSEDelegate(continuation: continuation, http: http, secrets: Array((request.env ?? [:]).values))
            let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
            let task = session.dataTask(with: urlRequest)
            continuation.onTermination = { _ in
                task.cancel()
                session.finishTasksAndInvalidate()
            }
            task.resume()
        } catch {
            continuation.finish(throwing: error)
        }
        return stream
    }
}

/// Parses the SSE body as it arrives (`event: NAME\ndata: JSON\n\n` frames).
final class SSEDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<ExecEvent, any Error>.Continuation
    private let http: HTTPCore
    private let secrets: [String]
    // Touched only on the session's serial delegate queue.
    private var buffer = Data()
    private var status = 0
    private var finished = false

    init(continuation: AsyncThrowingStream<ExecEvent, any Error>.Continuation, http: HTTPCore, secrets: [String]) {
        self.continuation = continuation
        self.http = http
        self.secrets = secrets
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        status = (response as? HTTPURLResponse)?.statusCode ?? 0
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        buffer.append(data)
        guard status == 200 else { return }
        let separator = Data("\n\n".utf8)
        while let r = buffer.range(of: separator) {
            let frame = buffer.subdata(in: buffer.startIndex..<r.lowerBound)
            buffer.removeSubrange(buffer.startIndex..<r.upperBound)
            handle(String(decoding: frame, as: UTF8.self))
        }
    }

    private func handle(_ frame: String) {
        var event = "", data = ""
        for line in frame.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data += String(line.dropFirst(6)) }
        }
        let bytes = Data(data.utf8)
        let decoder = DevboxJSON.decoder()
        switch event {
        case "stdout", "stderr":
            guard let chunk = try? decoder.decode([String: String].self, from: bytes), let text = chunk["data"] else { return }
            continuation.yield(event == "stdout" ? .stdout(text) : .stderr(text))
        case "exit":
            guard let exit = try? decoder.decode(ExecExitEvent.self, from: bytes) else { return }
            finished = true
            continuation.yield(
                .exit(
                    ExecResult(
                        exitCode: exit.exitCode, signal: exit.signal, stdout: "", stderr: "", truncated: exit.truncated,
                        timedOut: exit.timedOut, durationMs: exit.durationMs)))
            continuation.finish()
        case "error":
            if let body = try? decoder.decode(APIErrorBody.self, from: bytes) {
                finished = true
                continuation.finish(
                    throwing: DevboxClientError.api(
                        DevboxAPIError(status: 500, code: body.error.code, message: body.error.message, field: body.error.field)))
            }
        default:
            break
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        defer { session.finishTasksAndInvalidate() }
        if finished { return }
        let url = HTTPCore.display(http.baseURL)
        if let error {
            if (error as? URLError)?.code == .cancelled {
                continuation.finish(throwing: CancellationError())
            } else {
                continuation.finish(throwing: DevboxClientError.unreachable(url: url, reason: http.redact("\(error)", secrets)))
            }
            return
        }
        if status != 200, let body = try? DevboxJSON.decoder().decode(APIErrorBody.self, from: buffer) {
            continuation.finish(
                throwing: DevboxClientError.api(
                    DevboxAPIError(
                        status: status, code: body.error.code, message: http.redact(body.error.message, secrets),
                        field: body.error.field)))
            return
        }
        continuation.finish(
            throwing: DevboxClientError.badResponse(
                url: url, status: status, reason: "the exec stream ended without an exit event"))
    }
}
