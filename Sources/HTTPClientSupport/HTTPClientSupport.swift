import AsyncHTTPClient
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An `HTTPClient` that belongs to one object and is shut down when that object goes away
/// (an `HTTPClient` must be shut down before it is released). The shutdown does not block:
/// it closes the pooled connections in the background, and the client's pool keeps the
/// client alive until it is done. Connections are reused while the owner lives.
///
/// The client (and its configuration) is made on first use: a process that never sends
/// (an idle `devbox serve`'s GitHub client, a CLI command refused before any request) makes
/// no client and runs none of its set-up code.
public final class OwnedHTTPClient: Sendable {
    private let configuration: @Sendable () -> HTTPClient.Configuration
    private let made = Mutex<HTTPClient?>(nil)

    public init(configuration: @autoclosure @escaping @Sendable () -> HTTPClient.Configuration) {
        self.configuration = configuration
    }

    public var client: HTTPClient {
        made.withLock { made in
            if let made { return made }
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration())
            made = client
            return client
        }
    }

    deinit {
        made.withLock { $0 }?.shutdown { _ in }
    }
}

extension HTTPClient.Configuration {
    /// What every devbox HTTP client uses: TLS with full certificate verification against the
    /// system's trust roots, no cookie store, no cache, no proxy, no decompression; a refused
    /// connection fails the request at once (as URLSession did) instead of being retried
    /// until the connect timeout.
    ///
    /// - Parameters:
    ///   - connectTimeout: seconds to establish a connection (TCP and TLS).
    ///   - readTimeout: seconds without a byte from the server before the request fails;
    ///     nil for none (callers that need a per-request idle timeout use `withIdleTimeout`).
    ///   - followRedirects: false answers the 3xx itself to the caller.
    public static func devbox(
        connectTimeout: Double, readTimeout: Double? = nil, followRedirects: Bool
    ) -> HTTPClient.Configuration {
        var c = HTTPClient.Configuration(
            redirectConfiguration: followRedirects ? .follow(max: 5, allowCycles: false) : .disallow,
            timeout: .init(
                connect: .fractionalSeconds(connectTimeout), read: readTimeout.map { .fractionalSeconds($0) }))
        c.connectionPool.retryConnectionEstablishment = false
        return c
    }
}

extension TimeAmount {
    /// Whole milliseconds of `seconds` (at least one).
    public static func fractionalSeconds(_ seconds: Double) -> TimeAmount {
        .milliseconds(max(1, Int64((seconds * 1000).rounded())))
    }
}

/// No byte arrived from the server for longer than the request's idle timeout.
public struct IdleTimeout: Error, CustomStringConvertible {
    public var description: String { "timed out" }
}

/// Runs `body`, failing with `IdleTimeout` when it has not reported progress through its
/// argument for `limit` (URLSession's `timeoutInterval`: the time allowed between two
/// signs of life, not for the whole exchange). The body is cancelled on timeout.
public func withIdleTimeout<T: Sendable>(
    _ limit: Duration, _ body: @escaping @Sendable (_ alive: @escaping @Sendable () -> Void) async throws -> T
) async throws -> T {
    let lastSeen = LastSeen()
    return try await withThrowingTaskGroup(of: T?.self) { group in
        // The limit counts from when the body starts running, not from when it was added:
        // on a busy machine a new task may wait for a thread of the cooperative pool.
        group.addTask {
            lastSeen.touch()
            return try await body { lastSeen.touch() }
        }
        group.addTask {
            while true {
                let deadline = lastSeen.value + limit
                if ContinuousClock.now >= deadline { throw IdleTimeout() }
                try await Task.sleep(until: deadline, clock: .continuous)
            }
        }
        defer { group.cancelAll() }
        while let next = try await group.next() {
            if let value = next { return value }
        }
        throw CancellationError()
    }
}

private final class LastSeen: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func touch() { instant.withLock { $0 = .now } }
    var value: ContinuousClock.Instant { instant.withLock { $0 } }
}

/// Why a request got no answer, in a few words fit for a message (never a URL or a header,
/// so never a token): "connection refused", "host not found", "timed out",
/// "connection lost", "TLS failure", "unsupported URL", else "network error (…)".
public enum HTTPFailure {
    public static func reason(_ error: any Error) -> String {
        switch error {
        case is IdleTimeout:
            return "timed out"
        case let e as HTTPClientError:
            switch e {
            case .connectTimeout, .deadlineExceeded, .readTimeout, .writeTimeout, .tlsHandshakeTimeout,
                .getConnectionFromPoolTimeout:
                return "timed out"
            case .remoteConnectionClosed:
                return "connection lost"
            case .invalidURL, .emptyHost, .emptyScheme:
                return "unsupported URL"
            default:
                // shortDescription never carries the error's associated values.
                return e.shortDescription == "Unsupported scheme" ? "unsupported URL" : "network error (\(e.shortDescription))"
            }
        case let e as NIOConnectionError:
            // Every address refused or failed; with no address at all, the name did not resolve.
            if let first = e.connectionErrors.first { return reason(first.error) }
            return "host not found"
        case let e as IOError:
            switch e.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ETIMEDOUT: return "timed out"
            case ENETUNREACH, EHOSTUNREACH: return "no network"
            case ECONNRESET, EPIPE: return "connection lost"
            default: return "network error (errno \(e.errnoCode))"
            }
        case let e as ChannelError:
            switch e {
            case .connectTimeout: return "timed out"
            case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed: return "connection lost"
            default: return "network error (channel)"
            }
        case let e as NIOSSLError:
            if case .uncleanShutdown = e { return "connection lost" }
            return "TLS failure"
        case is BoringSSLError, is NIOSSLExtraError:
            return "TLS failure"
        default:
            return "network error"
        }
    }
}
