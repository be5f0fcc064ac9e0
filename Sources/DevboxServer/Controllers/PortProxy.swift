import Hummingbird
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One HTTP/1.1 exchange with an app in a devbox, over a connection already made (in the
/// box's network namespace) or made here to the host's loopback. The request body streams
/// up while the response is read; the response body streams back with NIO's backpressure
/// (reads from the box stop while the caller is slow), so nothing holds a whole body.
///
/// Lifetime: one task owns the connection (`executeThenClose`). It hands the response head
/// and the inbound iterator to the route, then waits until the response body has been
/// written to the caller or abandoned (the `ResponseBody` closure ran, or the response was
/// dropped unwritten: `Exchange` ends the wait when released), and closes the connection.
enum PortProxy {
    typealias Upstream = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
    typealias Inbound = NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator

    enum Failure: Error, CustomStringConvertible {
        /// The app closed the connection (or it broke) before a response head.
        case noResponse
        /// The app's response was not well-formed HTTP/1.1.
        case malformed(String)
        /// No response head within `headTimeout`.
        case timedOut(TimeAmount)

        var description: String {
            switch self {
            case .noResponse: "closed the connection without answering"
            case .timedOut(let t): "did not answer within \(t.nanoseconds / 1_000_000_000) s"
            case .malformed(let m): "answered with malformed HTTP (\(m))"
            }
        }
    }

    /// Ends the connection's task when released: held by the response body.
    final class Exchange: Sendable {
        private let done: AsyncStream<Never>.Continuation
        init(done: AsyncStream<Never>.Continuation) { self.done = done }
        func finish() { done.finish() }
        deinit { done.finish() }
    }

    /// The inbound iterator, moved from the route (which reads the head) to its response
    /// body. Hummingbird runs a route and then writes its response body in the same task,
    /// so the iterator is only ever used by one task, one call at a time, as NIO requires;
    /// the box exists because the body closure must be `@Sendable`.
    final class InboundBox: @unchecked Sendable {
        var iterator: Inbound
        init(_ iterator: Inbound) { self.iterator = iterator }
    }

    struct Answer: Sendable {
        var head: HTTPResponseHead
        var body: InboundBox
        var exchange: Exchange
    }

    /// Wraps a connected socket (`fd`, ours from now on) or, when nil, connects to the host's
    /// 127.0.0.1:`port`. With `upgrade`, for an upgrade request: the connection is made on the
    /// relay's event loop (the caller's), half-closes are reported, and a 101 hands it over to
    /// the relay (`PortUpgradeSplitter`).
    static func connect(fd: Int32?, port: Int, upgrade: PortRelay? = nil) async throws -> Upstream {
        var bootstrap = (upgrade.map { ClientBootstrap(group: $0.eventLoop) } ?? ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton))
            .connectTimeout(.seconds(5))
        if upgrade != nil {
            bootstrap = bootstrap.channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        }
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Upstream> = { channel in
            channel.eventLoop.makeCompletedFuture {
                if let upgrade {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes)
                    try channel.pipeline.syncOperations.addHandler(PortUpgradeSplitter(end: upgrade.app))
                } else {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                }
                return try Upstream(wrappingChannelSynchronously: channel)
            }
        }
        if let fd {
            return try await bootstrap.withConnectedSocket(fd, channelInitializer: initializer)
        }
        return try await bootstrap.connect(host: "127.0.0.1", port: port, channelInitializer: initializer)
    }

    /// Longest wait for a response head. Hummingbird does not cancel a route whose caller went
    /// away, so an app that never answers would otherwise hold the route (and two sockets)
    /// for good. Long polls answer well within it; a stream, once its head is sent, is not limited.
    static let headTimeout: TimeAmount = .minutes(5)

    final class TimeoutFlag: Sendable {
        let fired = Atomic<Bool>(false)
    }

    /// Sends `head` and `body` (nil: none) and waits for the response head. A cancelled
    /// caller closes the connection.
    static func exchange(
        on upstream: Upstream, head: HTTPRequestHead, body: RequestBody?, headTimeout: TimeAmount = headTimeout
    ) async throws -> Answer {
        let flag = TimeoutFlag()
        let timeout = upstream.channel.eventLoop.scheduleTask(in: headTimeout) {
            flag.fired.store(true, ordering: .relaxed)
            upstream.channel.close(mode: .all, promise: nil)
        }
        defer { timeout.cancel() }
        let (streams, handOver) = AsyncThrowingStream<NIOAsyncChannelInboundStream<HTTPClientResponsePart>, any Error>.makeStream()
        let (done, doneSignal) = AsyncStream<Never>.makeStream()
        let exchange = Exchange(done: doneSignal)
        let task = Task {
            do {
                try await upstream.executeThenClose { inbound, outbound in
                    await withThrowingTaskGroup(of: Void.self) { group in
                        // The request goes up while the response comes down: an app may
                        // answer (and stream) before it has read the whole body.
                        group.addTask {
                            try await outbound.write(.head(head))
                            if let body {
                                for try await part in body { try await outbound.write(.body(.byteBuffer(part))) }
                            }
                            try await outbound.write(.end(nil))
                        }
                        handOver.yield(inbound)
                        handOver.finish()
                        for await _ in done {}
                        // Body written or abandoned: a request still going up is cut short.
                        upstream.channel.close(mode: .all, promise: nil)
                        group.cancelAll()
                    }
                }
            } catch {
                handOver.finish(throwing: error)
            }
        }
        return try await withTaskCancellationHandler {
            var it = streams.makeAsyncIterator()
            guard let inbound = try await it.next() else {
                try Task.checkCancellation()
                throw Failure.noResponse
            }
            var iterator = inbound.makeAsyncIterator()
            let first: HTTPClientResponsePart?
            do {
                first = try await iterator.next()
            } catch where flag.fired.load(ordering: .relaxed) {
                throw Failure.timedOut(headTimeout)
            }
            guard let first else {
                throw flag.fired.load(ordering: .relaxed) ? Failure.timedOut(headTimeout) : Failure.noResponse
            }
            guard case .head(let h) = first else { throw Failure.malformed("body before a status line") }
            return Answer(head: h, body: InboundBox(iterator), exchange: exchange)
        } onCancel: {
            task.cancel()
            exchange.finish()
        }
    }

    /// The response body as Hummingbird writes it: the app's bytes as they come, then its
    /// trailers. A body cut short (the app closed mid-way) fails the write, so the caller's
    /// connection is dropped rather than the body looking complete.
    static func responseBody(_ answer: Answer, contentLength: Int?) -> ResponseBody {
        ResponseBody(contentLength: contentLength) { writer in
            let exchange = answer.exchange
            defer { exchange.finish() }
            let inbound = answer.body
            while let part = try await inbound.iterator.next() {
                switch part {
                case .body(let bytes):
                    try await writer.write(bytes)
                case .end(let trailers):
                    try await writer.finish(trailers.map { PortHeaders.fields($0) })
                    return
                case .head:
                    throw Failure.malformed("a second status line")
                }
            }
            throw Failure.noResponse
        }
    }
}
