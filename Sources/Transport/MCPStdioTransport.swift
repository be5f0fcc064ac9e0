import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// MCP over stdio: newline-delimited JSON-RPC on a pair of file descriptors.
///
/// - stdout carries compact JSON-RPC messages only, one per line (log to stderr!).
/// - stdin is read with blocking `read(2)` on a dedicated thread: no polling, ~0 CPU when idle.
/// - Requests run concurrently, each in its own Task; writes are serialized.
/// - `notifications/cancelled` cancels the Task of the referenced request; its response is
///   then not sent.
/// - At stdin EOF, open `subscriptions/listen` requests are completed, every other request in
///   flight runs to completion and its response is written, then `run` returns.
public enum MCPStdioTransport {
    public struct Options: Sendable {
        /// Largest accepted line; a longer one is discarded and answered with a parse error.
        public var maxMessageBytes: Int = 64 << 20
        /// After stdin EOF, wait at most this long for requests in flight before cancelling
        /// them (their responses are still written). nil = wait for them however long they take.
        public var eofGracePeriod: Duration? = nil
        /// Ignore SIGPIPE for the whole process, so a vanished client makes writes fail with
        /// EPIPE instead of killing the process. Leave on unless the host already does it.
        public var ignoreSIGPIPE: Bool = true
        /// Opaque value handed to tools as `MCPRequestContext.auth`.
        public var auth: (any Sendable)? = nil

        public init() {}
    }

    /// Serves `server` until `input` reaches EOF (then drains in-flight requests, see above).
    public static func run(
        server: MCPServer, input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO, options: Options = Options()
    ) async {
        if options.ignoreSIGPIPE { signal(SIGPIPE, SIG_IGN) }
        let session = StdioSession(server: server, output: output, options: options)
        await session.run(input: input)
    }

    /// `FileHandle` convenience (the handles must stay open while `run` runs).
    public static func run(server: MCPServer, input: FileHandle, output: FileHandle, options: Options = Options()) async {
        await run(server: server, input: input.fileDescriptor, output: output.fileDescriptor, options: options)
    }
}

/// Serializes whole-message writes to one file descriptor.
final class FDLineWriter: Sendable {
    private let fd: Int32
    private let broken = Mutex(false)

    init(fd: Int32) { self.fd = fd }

    /// Writes `message` followed by "\n" in one locked sequence of `write(2)` calls.
    func writeLine(_ message: [UInt8]) {
        var bytes = message
        bytes.append(0x0A)
        broken.withLock { isBroken in
            if isBroken { return }
            bytes.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = write(fd, raw.baseAddress! + off, raw.count - off)
                    if n > 0 {
                        off += n
                    } else if n < 0 && (errno == EINTR || errno == EAGAIN) {
                        if errno == EAGAIN { usleep(1000) }
                        continue
                    } else {
                        isBroken = true
                        return
                    }
                }
            }
        }
    }
}

/// Counts Tasks in flight; lets the transport wait for them.
final class TaskTracker: Sendable {
    private let state = Mutex<(count: Int, waiters: [CheckedContinuation<Void, Never>])>((0, []))

    func enter() { state.withLock { $0.count += 1 } }

    func leave() {
        let w = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.count -= 1
            if s.count == 0 {
                defer { s.waiters.removeAll() }
                return s.waiters
            }
            return []
        }
        for c in w { c.resume() }
    }

    var count: Int { state.withLock { $0.count } }

    func waitForZero() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.count == 0 { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}

final class StdioSession: Sendable {
    let server: MCPServer
    let writer: FDLineWriter
    let options: MCPStdioTransport.Options
    let connection = MCPConnection()
    let tracker = TaskTracker()
    private let stopped = Mutex(false)

    init(server: MCPServer, output: Int32, options: MCPStdioTransport.Options) {
        self.server = server
        self.writer = FDLineWriter(fd: output)
        self.options = options
    }

    func run(input: Int32) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let thread = Thread { [self] in
                    self.readLoop(fd: input)
                    done.resume()
                }
                thread.name = "mcp-stdio-reader"
                thread.start()
            }
        } onCancel: {
            stopped.withLock { $0 = true }
            connection.close()
        }
        // EOF: end subscriptions gracefully, let everything else finish.
        connection.shutdown.fire()
        if let grace = options.eofGracePeriod, tracker.count > 0 {
            let canceller = Task { [connection] in
                try? await Task.sleep(for: grace)
                if !Task.isCancelled { connection.interruptAll() }
            }
            await tracker.waitForZero()
            canceller.cancel()
        } else {
            await tracker.waitForZero()
        }
    }

    private func readLoop(fd: Int32) {
        let chunk = 64 * 1024
        var readBuf = [UInt8](repeating: 0, count: chunk)
        var pending: [UInt8] = []
        var discarding = false
        while true {
            let n = readBuf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, chunk) }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            if stopped.withLock({ $0 }) { break }
            var start = 0
            let end = n
            while start < end {
                // Find the next newline in the fresh bytes.
                var nl = -1
                readBuf.withUnsafeBufferPointer { b in
                    if let p = memchr(b.baseAddress! + start, 0x0A, end - start) {
                        nl = b.baseAddress!.distance(to: p.assumingMemoryBound(to: UInt8.self))
                    }
                }
                if nl < 0 {
                    if !discarding {
                        pending.append(contentsOf: readBuf[start..<end])
                        if pending.count > options.maxMessageBytes {
                            pending.removeAll()
                            discarding = true
                            writer.writeLine(JSONRPC.encodeError(id: nil, error: .parseError("Parse error: message too large")))
                        }
                    }
                    break
                }
                if discarding {
                    discarding = false
                } else if pending.isEmpty {
                    handleLine(readBuf[start..<nl])
                } else {
                    pending.append(contentsOf: readBuf[start..<nl])
                    handleLine(pending[...])
                    pending.removeAll(keepingCapacity: true)
                }
                start = nl + 1
            }
        }
        if !pending.isEmpty && !discarding && !stopped.withLock({ $0 }) {
            handleLine(pending[...])  // last line without a trailing newline
        }
    }

    private func handleLine(_ line: ArraySlice<UInt8>) {
        var line = line
        if line.last == 0x0D { line = line.dropLast() }
        // Skip blank lines.
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
        switch JSONRPC.decode(line) {
        case .request(let id, let method, let params):
            startRequest(id: id, method: method, params: params)
        case .notification(let method, let params):
            server.notify(method: method, params: params, connection: connection)
        case .response:
            break  // we never send requests
        case .invalid(let id, let error):
            writer.writeLine(JSONRPC.encodeError(id: id, error: error))
        }
    }

    private func startRequest(id: JSONRPCID, method: String, params: JSONValue?) {
        if method == "initialize" {
            // Served inline so requests that follow it on stdin see the negotiated version.
            switch server.initialize(params, connection: connection) {
            case .result(let r): writer.writeLine(JSONRPC.encodeResult(id: id, result: r))
            case .error(let e): writer.writeLine(JSONRPC.encodeError(id: id, error: e))
            case .none: break
            }
            return
        }
        guard let inFlight = connection.begin(id) else {
            writer.writeLine(JSONRPC.encodeError(id: id, error: .invalidRequest("Invalid Request: id \(id) is already in use by a request in flight")))
            return
        }
        tracker.enter()
        let writer = self.writer
        let env = MCPServer.Environment(
            transport: .stdio, auth: options.auth, connection: connection, shutdown: connection.shutdown,
            sink: { bytes in
                if !inFlight.isCancelled { writer.writeLine(bytes) }
            })
        let task = Task { [server, connection, tracker] in
            let outcome = await server.handle(id: id, method: method, params: params, env: env)
            if !inFlight.isCancelled {
                switch outcome {
                case .result(let r): writer.writeLine(JSONRPC.encodeResult(id: id, result: r))
                case .error(let e): writer.writeLine(JSONRPC.encodeError(id: id, error: e))
                case .none: break
                }
            }
            connection.end(id, inFlight)
            tracker.leave()
        }
        inFlight.attach(task)
    }
}
