import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import Synchronization

/// WebSocket (any HTTP/1.1 `Upgrade`) through `/api/v1/devboxes/:id/ports/:port/…`.
///
/// The ports route handles an upgrade request like any other (authentication, Origin check,
/// devbox and port checks, header rules, its JSON errors) and sends it to the app in the box.
/// When the app answers 101, the route takes the caller's connection over: a `PortRelayEnd`
/// goes first in its pipeline (so every byte the caller sends after the 101 reaches it, not
/// the HTTP decoder, which stopped at the upgrade request anyway), the 101 is written as the
/// route's response, and its body is the relay: both connections carry raw bytes until
/// both are done. Hummingbird has no API for this; the connection is reached through
/// `clientChannel`, which `HTTPServerBuilder.http1WithPortUpgrades()` binds for upgrade
/// requests only (every other request runs exactly as with `.http1()`).
enum PortUpgrade {
    /// The caller's connection, bound while an upgrade request is answered.
    @TaskLocal static var clientChannel: (any Channel)?

    /// An upgraded connection with no byte either way for this long is closed: 10 minutes,
    /// or `DEVBOX_PORT_IDLE_TIMEOUT` seconds (tests).
    static let idleTimeout: TimeAmount = {
        if let raw = ProcessInfo.processInfo.environment["DEVBOX_PORT_IDLE_TIMEOUT"], let s = Int64(raw), s > 0 {
            return .seconds(s)
        }
        return .minutes(10)
    }()
    /// Upgraded connections open at once: all users, and one user.
    static let maxOpen = 256
    static let maxOpenPerUser = 64
}

extension HTTPServerBuilder {
    /// `.http1()`, but the ports route can take over a connection whose request asks for an
    /// upgrade (`PortUpgrade.clientChannel`).
    static func http1WithPortUpgrades(configuration: HTTP1Channel.Configuration = .init()) -> HTTPServerBuilder {
        .init { responder in
            HTTP1Channel(
                responder: { request, writer, channel in
                    guard PortHeaders.isUpgrade(request.headers) else {
                        return try await responder(request, writer, channel)
                    }
                    let box = ResponseWriterBox(writer)
                    try await PortUpgrade.$clientChannel.withValue(channel) {
                        try await responder(request, box.take(), channel)
                    }
                }, configuration: configuration)
        }
    }
}

/// Moves the (non-copyable) response writer into `withValue`'s closure, which runs once.
private final class ResponseWriterBox {
    private var writer: ResponseWriter?
    init(_ writer: consuming ResponseWriter) { self.writer = .some(writer) }
    func take() -> ResponseWriter {
        guard let w = writer.take() else { preconditionFailure("the response writer was taken twice") }
        return w
    }
}

/// Counts open upgraded connections (`PortUpgrade.maxOpen`, `maxOpenPerUser`).
final class PortRelaySlots: Sendable {
    static let shared = PortRelaySlots()

    private struct Counts {
        var total = 0
        var byUser: [String: Int] = [:]
    }
    private let counts = Mutex(Counts())

    /// A slot, or nil when the limit (all users, or this one) is reached.
    func acquire(user: String, max: Int = PortUpgrade.maxOpen, perUser: Int = PortUpgrade.maxOpenPerUser) -> Slot? {
        let ok = counts.withLock { c -> Bool in
            guard c.total < max, c.byUser[user, default: 0] < perUser else { return false }
            c.total += 1
            c.byUser[user, default: 0] += 1
            return true
        }
        return ok ? Slot(user: user, slots: self) : nil
    }

    var open: Int { counts.withLock { $0.total } }

    fileprivate func release(user: String) {
        counts.withLock { c in
            c.total -= 1
            let n = c.byUser[user, default: 1] - 1
            c.byUser[user] = n > 0 ? n : nil
        }
    }

    /// Released once: explicitly or when dropped.
    final class Slot: Sendable {
        let user: String
        private let slots: PortRelaySlots
        private let released = Atomic<Bool>(false)

        fileprivate init(user: String, slots: PortRelaySlots) {
            self.user = user
            self.slots = slots
        }

        func release() {
            if !released.exchange(true, ordering: .relaxed) { slots.release(user: user) }
        }

        deinit { release() }
    }
}

/// An upgraded connection: the caller's and the app's, relayed byte for byte. Both live on
/// one event loop (the app's connection is made on the caller's), and every mutable field
/// here and in the ends is touched only there.
final class PortRelay: @unchecked Sendable {
    let eventLoop: any EventLoop
    let idleTimeout: TimeAmount
    let client = PortRelayEnd()
    let app = PortRelayEnd()
    private var lastActivity = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    private var closed = false
    private var channels: [any Channel] = []

    init(eventLoop: any EventLoop, idleTimeout: TimeAmount = PortUpgrade.idleTimeout) {
        self.eventLoop = eventLoop
        self.idleTimeout = idleTimeout
        client.relay = self
        app.relay = self
        client.partner = app
        app.partner = client
    }

    /// Puts the caller's end first in its connection's pipeline: from now on its bytes are
    /// held for the relay (and its reads paused) until `run`.
    func attachClient(_ channel: any Channel) async throws {
        try await eventLoop.submit {
            guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
            try channel.pipeline.syncOperations.addHandler(self.client, position: .first)
        }.get()
    }

    /// Relays until both connections are closed (by their peers, an error, the idle timeout,
    /// the server's shutdown or the task's cancellation).
    func run(client clientChannel: any Channel, app appChannel: any Channel) async throws {
        try await withTaskCancellationHandler {
            try await eventLoop.submit { self.start(client: clientChannel, app: appChannel) }.get()
            _ = try? await clientChannel.closeFuture.get()
            _ = try? await appChannel.closeFuture.get()
        } onCancel: {
            self.eventLoop.execute { self.closeAll() }
        }
    }

    private func start(client clientChannel: any Channel, app appChannel: any Channel) {
        eventLoop.preconditionInEventLoop()
        channels = [clientChannel, appChannel]
        guard !closed, client.isAttached, app.isAttached else {
            closeAll()
            return
        }
        client.start()
        app.start()
        scheduleIdleCheck(in: idleTimeout)
    }

    fileprivate func touch() { lastActivity = .now() }

    private func scheduleIdleCheck(in delay: TimeAmount) {
        idleCheck = eventLoop.scheduleTask(in: delay) { [weak self] in self?.checkIdle() }
    }

    private func checkIdle() {
        guard !closed else { return }
        let idle = NIODeadline.now() - lastActivity
        if idle >= idleTimeout {
            closeAll()
        } else {
            scheduleIdleCheck(in: idleTimeout - idle)
        }
    }

    /// Closes both connections now.
    func closeAll() {
        eventLoop.preconditionInEventLoop()
        closed = true
        idleCheck?.cancel()
        idleCheck = nil
        client.closeNow()
        app.closeNow()
        for channel in channels { channel.close(promise: nil) }
    }
}

/// One end of a `PortRelay`: the first handler of the caller's connection, or the handler
/// right behind the HTTP decoder of the app's (`PortUpgradeSplitter` puts it there).
///
/// Back-pressure: an end passes its channel's `read` on only while the other end's channel
/// is writable, and re-issues a held read when it becomes writable again. Half-close: a
/// peer's end of input half-closes the other connection's output once what came before it
/// is written; when both directions have ended, both connections close.
final class PortRelayEnd: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    fileprivate weak var relay: PortRelay?
    fileprivate var partner: PortRelayEnd?
    private var context: ChannelHandlerContext?
    private var running = false
    /// Bytes that arrived before the relay ran (the app's right after its 101; the
    /// caller's, which a WebSocket client may not send before the 101).
    private var early: [ByteBuffer] = []
    private var readHeld = false
    private var inputClosed = false
    private var outputClosed = false
    private var writeTail: EventLoopFuture<Void>?

    var isAttached: Bool { context?.channel.isActive ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    fileprivate func start() {
        running = true
        if !early.isEmpty {
            for bytes in early { partner?.send(bytes) }
            early = []
            partner?.flushOut()
        }
        if inputClosed { partner?.finishOutput() }
        resumeRead()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        relay?.touch()
        if running {
            partner?.send(bytes)
        } else {
            early.append(bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if running { partner?.flushOut() }
        // Passed on: in the app's connection, the 101 that preceded this end in the same
        // read is delivered to the waiting route only on a read-complete.
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        partner?.resumeRead()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputClosed = true
            if running {
                partner?.finishOutput()
                if outputClosed { closeAfterWrites() }
            }
        } else if event is ChannelShouldQuiesceEvent {
            // The server is shutting down: an upgraded connection has no request boundary
            // to stop at.
            relay?.closeAll()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let p = partner
        partner = nil
        p?.partnerClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if running, partner?.canTakeWrites ?? false {
            context.read()
        } else {
            readHeld = true
        }
    }

    // MARK: Partner calls

    private var canTakeWrites: Bool { context?.channel.isWritable ?? false }

    private func resumeRead() {
        guard running, readHeld, let context, partner?.canTakeWrites ?? false else { return }
        readHeld = false
        context.read()
    }

    private func send(_ bytes: ByteBuffer) {
        guard let context, !outputClosed else { return }
        let p = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(bytes), promise: p)
        writeTail = p.futureResult
    }

    private func flushOut() { context?.flush() }

    /// The other side will send nothing more: half-close this output (after what is
    /// written), or close when this side's input has ended too.
    private func finishOutput() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        if inputClosed {
            closeAfterWrites()
        } else {
            context.flush()
            context.close(mode: .output, promise: nil)
        }
    }

    /// The other connection is gone: pass on what it sent, then close.
    private func partnerClosed() {
        partner = nil
        outputClosed = true
        closeAfterWrites()
    }

    private func closeAfterWrites() {
        guard let context else { return }
        let channel = context.channel
        context.flush()
        (writeTail ?? context.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in channel.close(promise: nil) }
    }

    fileprivate func closeNow() {
        early = []
        context?.close(promise: nil)
    }
}

/// In the app's connection, behind its HTTP decoder: once the app has answered an upgrade
/// request with 101 (head and end passed on to the waiting route), the relay's app end goes
/// right behind the decoder, and the decoder and encoder leave. The decoder stopped parsing
/// at the 101; on removal it forwards the bytes it holds (`.forwardBytes`), the app's first
/// bytes of the new protocol, to the app end. From then on a part of the request still being
/// written (its end, a body the app did not wait for) is refused here: with the encoder gone
/// it must not reach the socket.
final class PortUpgradeSplitter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    struct Switched: Error {}

    private let end: PortRelayEnd
    private var switching = false
    private var switched = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if switched {
            promise?.fail(Switched())
        } else {
            context.write(data, promise: promise)
        }
    }

    init(end: PortRelayEnd) { self.end = end }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        context.fireChannelRead(data)
        switch part {
        case .head(let head):
            switching = head.status == .switchingProtocols
        case .end where switching:
            switching = false
            switchOver(context)
        case .body, .end:
            break
        }
    }

    private func switchOver(_ context: ChannelHandlerContext) {
        switched = true
        let ops = context.pipeline.syncOperations
        do {
            let decoder = try ops.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            let encoder = try ops.handler(type: HTTPRequestEncoder.self)
            try ops.addHandler(end, position: .after(decoder))
            ops.removeHandler(encoder, promise: nil)
            ops.removeHandler(decoder, promise: nil)
        } catch {
            context.close(promise: nil)
        }
    }
}
