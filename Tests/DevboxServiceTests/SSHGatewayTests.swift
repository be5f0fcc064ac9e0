import Crypto
import Foundation
import NIOCore
import Testing

@testable import SSHGateway

@Suite("SSH gateway: forward targets")
struct ForwardPolicyTests {
    let policy = ForwardPolicy(deniedPorts: [8080, 2222])

    @Test("loopback names and literals are allowed, in canonical form")
    func loopback() {
        #expect(policy.addresses(host: "localhost", port: 3000)?.compactMap(\.ipAddress) == ["127.0.0.1", "::1"])
        #expect(policy.addresses(host: "LOCALHOST.", port: 3000)?.count == 2)
        #expect(policy.addresses(host: "127.0.0.1", port: 3000)?.first?.ipAddress == "127.0.0.1")
        #expect(policy.addresses(host: "127.1.2.3", port: 3000)?.first?.ipAddress == "127.1.2.3")
        #expect(policy.addresses(host: "::1", port: 3000)?.first?.ipAddress == "::1")
        #expect(policy.addresses(host: "[::1]", port: 3000)?.first?.ipAddress == "::1")
        #expect(policy.addresses(host: "0:0:0:0:0:0:0:1", port: 3000)?.first?.ipAddress == "::1")
        #expect(policy.addresses(host: "::ffff:127.0.0.9", port: 3000)?.first?.ipAddress == "127.0.0.9")
    }

    @Test("anything else, the denied ports and port 0 are refused")
    func refused() {
        for host in ["10.0.0.1", "0.0.0.0", "::", "example.com", "localhost.example.com", "128.0.0.1",
                     "127.0.0.1.nip.io", "::ffff:10.0.0.1", "0x7f000001", "127.1", ""] {
            #expect(policy.addresses(host: host, port: 3000) == nil, "\(host)")
        }
        #expect(policy.addresses(host: "127.0.0.1", port: 8080) == nil)
        #expect(policy.addresses(host: "localhost", port: 2222) == nil)
        #expect(policy.addresses(host: "127.0.0.1", port: 0) == nil)
        #expect(policy.addresses(host: "127.0.0.1", port: 70000) == nil)
    }
}

@Suite("SSH gateway: session requests")
struct SessionRequestPolicyTests {
    @Test("env: LANG, LC_*, TERM only")
    func env() {
        #expect(SessionRequestPolicy.acceptsEnv(name: "LANG", value: "C.UTF-8"))
        #expect(SessionRequestPolicy.acceptsEnv(name: "LC_ALL", value: "C"))
        #expect(SessionRequestPolicy.acceptsEnv(name: "TERM", value: "xterm"))
        for name in ["LC_", "LC_all", "PATH", "LD_PRELOAD", "ANTHROPIC_API_KEY", "lang", "LC_X=Y"] {
            #expect(!SessionRequestPolicy.acceptsEnv(name: name, value: "x"), "\(name)")
        }
        #expect(!SessionRequestPolicy.acceptsEnv(name: "LANG", value: "a\u{0}b"))
        #expect(!SessionRequestPolicy.acceptsEnv(name: "LANG", value: String(repeating: "x", count: 2000)))
    }

    @Test("terminal names and sizes are sanitized")
    func terminal() {
        #expect(SessionRequestPolicy.term("screen-256color") == "screen-256color")
        #expect(SessionRequestPolicy.term("") == "xterm-256color")
        #expect(SessionRequestPolicy.term("evil\nterm") == "xterm-256color")
        #expect(SessionRequestPolicy.size(rows: 0, cols: 0) == .init(rows: 24, cols: 80))
        #expect(SessionRequestPolicy.size(rows: 40, cols: 120) == .init(rows: 40, cols: 120))
        #expect(SessionRequestPolicy.size(rows: 1 << 20, cols: 5) == .init(rows: UInt16.max, cols: 5))
    }

    @Test("signal names round-trip, unknown ones use OpenSSH's spelling")
    func signals() {
        #expect(SSHSignal.name(SIGKILL) == "KILL")
        #expect(SSHSignal.number("INT") == SIGINT)
        #expect(SSHSignal.name(SIGWINCH) == "SIG\(SIGWINCH)@openssh.com")
        #expect(SSHSignal.number("NOPE") == nil)
    }
}

@Suite("SSH gateway: host key")
struct HostKeyTests {
    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hostkey-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("created once with mode 0600, then loaded unchanged")
    func persistent() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ssh_host_ed25519_key"
        let first = try HostKeyStore.loadOrCreate(path: path) { _ in }
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let second = try HostKeyStore.loadOrCreate(path: path) { _ in }
        #expect(first.rawRepresentation == second.rawRepresentation)
        #expect(FileManager.default.fileExists(atPath: path + ".pub"))
        #expect((try FileManager.default.contentsOfDirectory(atPath: dir)).sorted()
            == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"])
    }

    @Test("the OpenSSH encoding round-trips; garbage and other key types are refused")
    func encoding() {
        let key = Curve25519.Signing.PrivateKey()
        let text = HostKeyStore.encode(key)
        #expect(text.hasPrefix("-----BEGIN OPENSSH PRIVATE KEY-----\n"))
        #expect(HostKeyStore.decode(text)?.rawRepresentation == key.rawRepresentation)
        #expect(HostKeyStore.decode("garbage") == nil)
        #expect(HostKeyStore.decode("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n") == nil)
    }

    @Test("a key file readable by others is tightened, with a warning")
    func tightened() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/k"
        _ = try HostKeyStore.loadOrCreate(path: path) { _ in }
        chmod(path, 0o644)
        var warnings: [String] = []
        _ = try HostKeyStore.loadOrCreate(path: path) { warnings.append($0) }
        #expect(warnings.count == 1)
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test("publish never replaces an existing key")
    func noReplace() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/k"
        #expect(try HostKeyStore.publish(path: path, contents: "one"))
        #expect(try !HostKeyStore.publish(path: path, contents: "two"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one")
    }
}
