import DevboxSecurity
import Foundation
import Testing

/// Interoperability with Python's `cryptography.fernet`, run with `$DEVBOX_TEST_PYTHON`
/// (default `python3`). These fail, rather than skip, when Python or `cryptography` is missing.
@Suite struct FernetPythonInteropTests {
    static let payloads: [[UInt8]] = [
        [],
        Array("hello".utf8),
        Array(repeating: 0xAB, count: 16),
        (0..<255).map { UInt8($0) },
        Array("ünïcødé ✓".utf8),
    ]

    struct SwiftToPython: Codable {
        let key: String
        let tokens: [String]
    }

    struct PythonDecrypted: Codable {
        let plaintexts: [String]
        let timestamps: [Int]
    }

    @Test func pythonDecryptsOurTokens() throws {
        let key = FernetKey.generate()
        let now = Date(timeIntervalSince1970: 1_750_000_000)
        let tokens = Self.payloads.map { key.encrypt($0, now: now) }
        let input = try JSONEncoder().encode(SwiftToPython(key: key.base64, tokens: tokens))
        let script = """
            import json, sys
            from cryptography.fernet import Fernet
            req = json.load(sys.stdin)
            f = Fernet(req["key"])
            print(json.dumps({
                "plaintexts": [f.decrypt(t).hex() for t in req["tokens"]],
                "timestamps": [f.extract_timestamp(t) for t in req["tokens"]],
            }))
            """
        let result = try TestSupport.runPython(script, input: input)
        try #require(result.status == 0, "python failed: \(result.stderr)")
        let decoded = try JSONDecoder().decode(PythonDecrypted.self, from: result.stdout)
        #expect(decoded.plaintexts == Self.payloads.map(TestSupport.hex))
        #expect(decoded.timestamps == Array(repeating: 1_750_000_000, count: Self.payloads.count))
    }

    struct PythonEncrypted: Codable {
        let key: String
        let at_time: [String]
        let now: [String]
    }

    @Test func weDecryptPythonTokens() throws {
        let input = try JSONEncoder().encode(Self.payloads.map(TestSupport.hex))
        let script = """
            import json, sys
            from cryptography.fernet import Fernet
            payloads = [bytes.fromhex(p) for p in json.load(sys.stdin)]
            key = Fernet.generate_key()
            f = Fernet(key)
            print(json.dumps({
                "key": key.decode(),
                "at_time": [f.encrypt_at_time(p, 1600000000).decode() for p in payloads],
                "now": [f.encrypt(p).decode() for p in payloads],
            }))
            """
        let result = try TestSupport.runPython(script, input: input)
        try #require(result.status == 0, "python failed: \(result.stderr)")
        let produced = try JSONDecoder().decode(PythonEncrypted.self, from: result.stdout)

        let key = try FernetKey(base64: produced.key)
        let issued = Date(timeIntervalSince1970: 1_600_000_000)
        #expect(produced.at_time.count == Self.payloads.count)
        for (token, payload) in zip(produced.at_time, Self.payloads) {
            #expect(try key.decrypt(token) == payload)
            #expect(try key.decrypt(token, ttl: 30, now: issued.addingTimeInterval(30)) == payload)
            #expect(throws: FernetError.expired) { try key.decrypt(token, ttl: 30, now: issued.addingTimeInterval(31)) }
        }
        for (token, payload) in zip(produced.now, Self.payloads) {
            #expect(try key.decrypt(token, ttl: 600) == payload)
        }
        // And a key Python did not make cannot read them.
        #expect(throws: FernetError.invalidSignature) { try FernetKey.generate().decrypt(produced.now[0]) }
    }
}
