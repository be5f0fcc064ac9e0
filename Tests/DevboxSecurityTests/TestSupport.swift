import Foundation
import Testing

enum TestSupport {
    /// The package root: this file is `<root>/Tests/DevboxSecurityTests/TestSupport.swift`.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The Fernet spec's vectors, kept in the repository (`Tests/Vectors/fernet`, copied from
    /// the spec's generate/verify/invalid JSON): a test may not read anything outside the
    /// checkout, or a fresh clone fails. The folder is outside every test target's directory,
    /// so SwiftPM neither compiles nor warns about it, and `#filePath` finds it from here.
    static var fernetVectorsDirectory: URL {
        packageRoot.appendingPathComponent("Tests/Vectors/fernet")
    }

    static func loadVectors<T: Decodable>(_ name: String, as: T.Type) throws -> T {
        let url = fernetVectorsDirectory.appendingPathComponent(name)
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }

    struct PythonResult {
        let status: Int32
        let stdout: Data
        let stderr: String
    }

    /// Runs `$DEVBOX_TEST_PYTHON` (default `python3`, found on PATH) with `-c script`, feeding
    /// `input` on stdin.
    static func runPython(_ script: String, input: Data) throws -> PythonResult {
        let python = ProcessInfo.processInfo.environment["DEVBOX_TEST_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, "-c", script]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Inputs and outputs are a few KiB: write, close, then drain both pipes before waiting.
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return PythonResult(status: process.terminationStatus, stdout: out, stderr: String(decoding: err, as: UTF8.self))
    }

    /// A fresh empty directory, removed by the caller with `removeDirectory`.
    static func makeTemporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("devbox-security-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
        return url
    }

    static func removeDirectory(_ url: URL) {
        try? FileManager.default.removeItem(at: url)
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func bytes(hex: String) -> [UInt8]? {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            guard let byte = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
            i += 2
        }
        return out
    }

    /// Unpadded base64url, written independently of the code under test.
    static func base64url(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Decodes padded or unpadded base64url, independently of the code under test.
    static func base64urlDecode(_ string: String) -> [UInt8]? {
        var s = string.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map(Array.init)
    }
}
