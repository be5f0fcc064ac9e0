import NIOCore
import NIOSSH

/// One end of a two-channel relay (an SSH channel and a TCP connection, `ssh -L`).
///
/// Back-pressure: an end passes its channel's `read` on only while the other end's channel
/// is writable, and re-issues a held read when that channel becomes writable again. So a
/// slow TCP peer stops the SSH channel from being read (its window is not replenished and
/// the client stops sending), and a slow SSH client stops the socket from being read.
/// Both ends live on one event loop.
class RelayEnd {
    fileprivate var context: ChannelHandlerContext?
    fileprivate var partner: RelayEnd?
    private var readHeld = false
    private var outputClosed = false
    private var inputClosed = false

    static func pair() -> (ssh: SSHRelayHandler, socket: SocketRelayHandler) {
        let a = SSHRelayHandler()
        let b = SocketRelayHandler()
        a.partner = b
        b.partner = a
        return (a, b)
    }

    var canTakeWrites: Bool { context?.channel.isWritable ?? false }

    func attach(_ context: ChannelHandlerContext) {
        self.context = context
        partner?.resumeRead()
    }

    func detach() { context = nil }

    /// A `read` from this end's pipeline.
    func gatedRead(_ context: ChannelHandlerContext) {
        if partner?.canTakeWrites ?? false {
            context.read()
        } else if partner != nil {
            readHeld = true
        }
    }

    func resumeRead() {
        guard readHeld, let context, partner?.canTakeWrites ?? false else { return }
        readHeld = false
        context.read()
    }

    /// Writes bytes out of this end (each subclass wraps them for its channel).
    func send(_ bytes: ByteBuffer) {}

    func flushOut() { context?.flush() }

    /// The last write out of this end; closing waits for it (NIOSSH's close would drop
    /// writes still waiting for window space).
    fileprivate var writeTail: EventLoopFuture<Void>?

    fileprivate func track(_ promise: EventLoopPromise<Void>) { writeTail = promise.futureResult }

    /// Closes once everything written so far is out.
    private func closeAfterWrites() {
        guard let context else { return }
        let channel = context.channel
        context.flush()
        (writeTail ?? context.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The other end will send nothing more: half-close this end's output. Once both
    /// directions ended, close instead (swift-nio-ssh 0.15.1 refuses to send EOF after
    /// the peer's EOF: "Sent EOF out of sequence").
    func finishOutput() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        if inputClosed {
            closeAfterWrites()
        } else {
            context.close(mode: .output, promise: nil)
        }
    }

    /// This end's input ended (the remote half-closed).
    func inputEnded() {
        inputClosed = true
        partner?.finishOutput()
        if outputClosed { closeAfterWrites() }
    }

    /// The other end's channel went away: flush what it sent, then close.
    func partnerClosed() {
        partner = nil
        outputClosed = true
        closeAfterWrites()
    }

    func ended() {
        let p = partner
        partner = nil
        p?.partnerClosed()
        context = nil
    }
}

/// The SSH channel's end of a relay.
final class SSHRelayHandler: RelayEnd, ChannelDuplexHandler {
    typealias InboundIn = SSHChannelData
    typealias OutboundIn = SSHChannelData
    typealias OutboundOut = SSHChannelData

    func handlerAdded(context: ChannelHandlerContext) { attach(context) }
    func handlerRemoved(context: ChannelHandlerContext) { detach() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let d = unwrapInboundIn(data)
        guard d.type == .channel, case .byteBuffer(let bytes) = d.data else { return }
        partner?.send(bytes)
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.flushOut() }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        partner?.resumeRead()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputEnded()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    func read(context: ChannelHandlerContext) { gatedRead(context) }

    override func send(_ bytes: ByteBuffer) {
        guard let context else { return }
        let p = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(SSHChannelData(type: .channel, data: .byteBuffer(bytes))), promise: p)
        track(p)
    }
}

/// The TCP connection's end of a relay.
final class SocketRelayHandler: RelayEnd, ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) { attach(context) }
    func handlerRemoved(context: ChannelHandlerContext) { detach() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.send(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.flushOut() }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        partner?.resumeRead()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            inputEnded()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    func read(context: ChannelHandlerContext) { gatedRead(context) }

    override func send(_ bytes: ByteBuffer) {
        guard let context else { return }
        let p = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(bytes), promise: p)
        track(p)
    }
}
