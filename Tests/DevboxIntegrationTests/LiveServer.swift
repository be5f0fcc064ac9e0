import AsyncHTTPClient
import DevboxClient
import DevboxTestSupport
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A real `devbox serve` (the built binary) with its own data directory and ports.
final class LiveServer: @unchecked Sendable {
    let dir: URL
    let dataDir: String
    let httpPort: Int
    let sshPort: Int
    let token: String
    let logPath: String
    private let process: Process

    var baseURL: URL { URL(string: "http://127.0.0.1:\(httpPort)")! }

    /// `$DEVBOX_BIN`, else `<package root>/.build/debug/devbox`.
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["DEVBOX_BIN"], !b.isEmpty { return b }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/devbox").path
    }

    private init(dir: URL, httpPort: Int, sshPort: Int, token: String, process: Process, logPath: String) {
        self.dir = dir
        self.dataDir = dir.appendingPathComponent("data").path
        self.httpPort = httpPort
        self.sshPort = sshPort
        self.token = token
        self.process = process
        self.logPath = logPath
    }

    static func start() async throws -> LiveServer {
        let bin = binary
        guard FileManager.default.isExecutableFile(atPath: bin) else {
            throw TestFailure("devbox binary not found at \(bin): build it (swift build) or set DEVBOX_BIN")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devbox-sdk-\(UUID().uuidString.prefix(8))")
        let data = dir.appendingPathComponent("data").path
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let token = try run(bin, ["token", "create", "--data-dir", data]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.hasPrefix("dbx_pt_") else { throw TestFailure("token create printed '\(token)'") }

        let httpPort = try freeLoopbackPort()
        let sshPort = try freeLoopbackPort()
        let logPath = dir.appendingPathComponent("serve.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = [
            "serve", "--data-dir", data, "--http", "127.0.0.1:\(httpPort)", "--ssh", "127.0.0.1:\(sshPort)",
        ]
        var env = ProcessInfo.processInfo.environment
        env["DEVBOX_LOG_LEVEL"] = "debug"
        p.environment = env
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let server = LiveServer(dir: dir, httpPort: httpPort, sshPort: sshPort, token: token, process: p, logPath: logPath)
        do {
            try await server.waitHealthy()
        } catch {
            await server.stop()
            throw error
        }
        return server
    }

    func client(token: String? = nil) -> DevboxClient {
        DevboxClient(providerToken: token ?? self.token, baseURL: baseURL)
    }

    func waitHealthy(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        let url = baseURL.appendingPathComponent("healthz")
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestFailure("devbox serve exited with \(process.terminationStatus):\n\(log())")
            }
            let answer = try? await HTTPClient.shared.execute(HTTPClientRequest(url: url.absoluteString), timeout: .seconds(1))
            if let answer, answer.status == .ok { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("devbox serve did not become healthy:\n\(log())")
    }

    /// SIGTERM, then SIGKILL after 30 s; removes the directory.
    func stop() async {
        if process.isRunning {
            process.terminate()
            let deadline = ContinuousClock.now + .seconds(30)
            while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
        try? FileManager.default.removeItem(at: dir)
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Does something accept TCP connections on the SSH port (is the gateway built in)?
    func sshGatewayAnswers() -> Bool { Self.portAnswers(sshPort) }

    // MARK: helpers

    /// Runs a program to completion; returns its stdout, throws on a non-zero exit.
    @discardableResult
    static func run(_ path: String, _ args: [String]) throws -> String {
        let r = try runStatus(path, args)
        guard r.status == 0 else {
            throw TestFailure("\(path) \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)")
        }
        return r.stdout
    }

    /// Runs a program to completion with stdin from /dev/null; returns status, stdout, stderr.
    static func runStatus(_ path: String, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Drain both pipes before waiting, so a chatty child cannot block on a full pipe.
        let errData = ThreadBox<Data>()
        let t = Thread { errData.value = err.fileHandleForReading.readDataToEndOfFile() }
        t.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while errData.value == nil { usleep(1000) }
        return (
            p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: errData.value ?? Data(), as: UTF8.self)
        )
    }

    static func portAnswers(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// Starts a server, runs `body`, destroys what is left and stops the server — also on failure.
func withLiveServer(_ body: (LiveServer) async throws -> Void) async throws {
    let server = try await LiveServer.start()
    do {
        try await body(server)
    } catch {
        let log = String(server.log().suffix(4000))
        await cleanup(server)
        throw TestFailure("\(error)\n--- server log (tail) ---\n\(log)")
    }
    await cleanup(server)
}

private func cleanup(_ server: LiveServer) async {
    let client = server.client()
    if let boxes = try? await client.devboxes.list() {
        for b in boxes where b.state != .destroyed { try? await client.devboxes.delete(b.id) }
    }
    await server.stop()
}
