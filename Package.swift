// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6), .treatAllWarnings(as: .error)]

let package = Package(
    name: "devbox",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "devbox", targets: ["devbox"]),
        .library(name: "DevboxClient", targets: ["DevboxClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssh.git", from: "0.15.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // HTTP client (GitHub, the SDK, the CLI) on SwiftNIO; TLS from swift-nio-ssl's own
        // BoringSSL, so the binary links neither FoundationNetworking nor libcurl/libssl.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Metrics (issue 24): instruments through swift-metrics' API, exposed in Prometheus's
        // text format by swift-prometheus's registry (GET /metrics).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C helpers: process spawning with setsid/PTY, subreaper, poll-driven output capture.
        .target(name: "CDevbox"),
        // The runtime seam (issue 20): the protocols a box runtime implements, split by concern,
        // and the values and errors that cross it. Depends on nothing else: a second runtime
        // (Kubernetes, gVisor) or a test's fake implements it without importing crun.
        .target(name: "DevboxRuntime", swiftSettings: strict),
        // Sandbox runtime: OCI bundles run by crun; `CrunBoxRuntime` is its `BoxRuntime`.
        // Knows nothing of devboxes' storage or APIs.
        .target(
            name: "Sandbox",
            dependencies: ["DevboxRuntime", "CDevbox", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // JSON-RPC 2.0 + MCP protocol layer (stdio and HTTP-agnostic). Knows nothing of devboxes.
        .target(
            name: "Transport",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"],
            swiftSettings: strict),
        // The HTTP client plumbing shared by the SDK, the GitHub client and the CLI
        // (async-http-client): client configuration and ownership, idle timeouts, error reasons.
        .target(
            name: "HTTPClientSupport",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict),
        // Request/response types shared by the server, the client SDK and the MCP tools.
        .target(name: "DevboxModel", swiftSettings: strict),
        // Fernet, key ring, token hashing, JWT verification (static keys or an OpenID provider's).
        .target(
            name: "DevboxSecurity",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                "HTTPClientSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The service layer: storage, provisioning pipeline, sandboxes, secrets, auth.
        .target(
            name: "DevboxService",
            dependencies: [
                "DevboxRuntime", "DevboxModel", "DevboxSecurity", "CDevbox",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "HTTPClientSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        // MCP tools mapped onto a narrow backend protocol (in-process service or remote client).
        .target(
            name: "DevboxTools",
            dependencies: ["Transport", "DevboxModel"],
            swiftSettings: strict),
        // Embedded SSH gateway (swift-nio-ssh).
        .target(
            name: "SSHGateway",
            dependencies: [
                "DevboxRuntime", "CDevbox",
                .product(name: "NIOSSH", package: "swift-nio-ssh"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // HTTP face: REST API, /mcp, dashboard (Hummingbird 2).
        .target(
            name: "DevboxServer",
            dependencies: [
                "DevboxService", "DevboxRuntime", "DevboxTools", "Transport", "SSHGateway", "DevboxModel",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),
        // The composition root: builds the service layer from the serve's configuration (data
        // directory, database, keys, the crun runtime, user-token verifiers), the SSH gateway
        // and the HTTP application, and runs them. `DevboxServer` is only the HTTP face.
        .target(
            name: "DevboxApp",
            dependencies: [
                "DevboxServer", "DevboxService", "DevboxSecurity", "DevboxModel", "SSHGateway", "Sandbox",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict),
        // Swift client SDK for the REST API.
        .target(
            name: "DevboxClient",
            dependencies: [
                "DevboxModel", "HTTPClientSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "devbox",
            dependencies: [
                "DevboxApp", "DevboxServer", "DevboxClient", "DevboxTools", "Transport",
                "HTTPClientSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict),
        // Shared by the test targets: one loopback listener, one canned HTTP server, the fake
        // box runtime and the in-memory service layer of the fast tier (FastSystem).
        .target(
            name: "DevboxTestSupport",
            dependencies: [
                "DevboxApp", "DevboxServer", "DevboxService", "DevboxSecurity", "DevboxRuntime",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DevboxTestSupport",
            swiftSettings: strict),
        .testTarget(
            name: "SandboxTests", dependencies: ["Sandbox", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(name: "TransportTests", dependencies: ["Transport"], swiftSettings: strict),
        .testTarget(
            name: "DevboxSecurityTests",
            dependencies: [
                "DevboxSecurity",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "DevboxClientTests",
            dependencies: [
                "DevboxClient", "DevboxModel", "HTTPClientSupport", "DevboxTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict),
        .testTarget(name: "DevboxToolsTests", dependencies: ["DevboxTools", "Transport", "DevboxModel"], swiftSettings: strict),
        .testTarget(
            name: "DevboxServiceTests",
            dependencies: [
                "DevboxService", "DevboxServer", "DevboxApp", "DevboxTools", "DevboxModel", "DevboxSecurity",
                "DevboxTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // The integration tier: Swift tests that need root, crun and the host (the whole
        // service layer on a real data directory, a live `devbox serve`). `make test` runs
        // them with SandboxTests and Tests/e2e; `make unit` (the fast tier) skips them.
        .testTarget(
            name: "DevboxIntegrationTests",
            dependencies: [
                "DevboxApp", "DevboxService", "DevboxServer", "DevboxClient", "DevboxModel", "DevboxSecurity",
                "DevboxTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
    ]
)
