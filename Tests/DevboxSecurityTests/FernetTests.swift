import DevboxSecurity
import Foundation
import Testing

@Suite struct FernetTests {
    static let keyText = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    @Test(arguments: [0, 1, 15, 16, 17, 31, 32, 33, 1000])
    func roundTripsEveryLength(length: Int) throws {
        let key = FernetKey.generate()
        let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let token = key.encrypt(plaintext)
        #expect(try key.decrypt(token) == plaintext)

        // Layout: version, timestamp, IV, whole PKCS7-padded blocks, 32-byte MAC.
        let raw = try #require(TestSupport.base64urlDecode(token))
        #expect(raw.count == 1 + 8 + 16 + (length / 16 + 1) * 16 + 32)
        #expect(token.count % 4 == 0)
        #expect(token.allSatisfy { $0.isLetter || $0.isNumber || "-_=".contains($0) })
    }

    @Test func tokenCarriesVersionAndBigEndianTimestamp() throws {
        let key = try FernetKey(base64: Self.keyText)
        let token = key.encrypt(Array("x".utf8), now: Date(timeIntervalSince1970: Double(0x0102_0304_0506) + 0.9))
        let raw = try #require(TestSupport.base64urlDecode(token))
        #expect(raw[0] == 0x80)
        #expect(Array(raw[1..<9]) == [0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
    }

    @Test func freshIVEachTime() throws {
        let key = FernetKey.generate()
        let a = key.encrypt([1, 2, 3], now: Self.t0)
        let b = key.encrypt([1, 2, 3], now: Self.t0)
        #expect(a != b)
        let ivA = try #require(TestSupport.base64urlDecode(a))[9..<25]
        let ivB = try #require(TestSupport.base64urlDecode(b))[9..<25]
        #expect(ivA != ivB)
    }

    @Test func wrongKeyIsInvalidSignature() throws {
        let token = FernetKey.generate().encrypt([1, 2, 3])
        #expect(throws: FernetError.invalidSignature) { try FernetKey.generate().decrypt(token) }
    }

    @Test func everyAlteredByteIsRejected() throws {
        let key = FernetKey.generate()
        let token = key.encrypt(Array("attack at dawn".utf8), now: Self.t0)
        let raw = try #require(TestSupport.base64urlDecode(token))
        for index in raw.indices {
            var altered = raw
            altered[index] ^= 0x01
            let alteredToken = Data(altered).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            let expected: FernetError = index == 0 ? .malformedToken : .invalidSignature
            #expect(throws: expected, "byte \(index)") { try key.decrypt(alteredToken) }
        }
    }

    @Test func ttlFollowsPython() throws {
        let key = FernetKey.generate()
        let token = key.encrypt([42], now: Self.t0)
        // timestamp + ttl < now → expired; the boundary itself is accepted.
        #expect(try key.decrypt(token, ttl: 100, now: Self.t0.addingTimeInterval(100)) == [42])
        #expect(try key.decrypt(token, ttl: 100, now: Self.t0.addingTimeInterval(100.9)) == [42])
        #expect(throws: FernetError.expired) { try key.decrypt(token, ttl: 100, now: Self.t0.addingTimeInterval(101)) }
        #expect(throws: FernetError.expired) { try key.decrypt(token, ttl: .nan, now: Self.t0) }
        // Without a ttl, age does not matter.
        #expect(try key.decrypt(token, now: Self.t0.addingTimeInterval(10 * 365 * 86400)) == [42])
    }

    @Test func futureTimestampsAllowSixtySecondsOfSkewWhenTTLIsChecked() throws {
        let key = FernetKey.generate()
        let token = key.encrypt([7], now: Self.t0)
        #expect(try key.decrypt(token, ttl: 10, now: Self.t0.addingTimeInterval(-60)) == [7])
        #expect(throws: FernetError.timestampInFuture) {
            try key.decrypt(token, ttl: 10, now: Self.t0.addingTimeInterval(-61))
        }
        // Python only looks at the clock when given a ttl.
        #expect(try key.decrypt(token, now: Self.t0.addingTimeInterval(-3600)) == [7])
    }

    @Test func malformedTokens() throws {
        let key = try FernetKey(base64: Self.keyText)
        let good = key.encrypt([1], now: Self.t0)
        let cases = [
            "",
            "gA==",
            good.replacingOccurrences(of: "=", with: ""),  // padding is required
            " " + good,
            good + "\n",
            good.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/") + "+",
            String(good.dropLast(4)),  // not a whole number of blocks + MAC
        ]
        for token in cases {
            #expect(throws: FernetError.malformedToken, "\(token.debugDescription)") { try key.decrypt(token) }
        }
    }

    @Test func keyParsing() throws {
        let key = try FernetKey(base64: Self.keyText)
        #expect(key.base64 == Self.keyText)

        #expect(throws: FernetKeyError.notBase64) { try FernetKey(base64: String(Self.keyText.dropLast())) }
        #expect(throws: FernetKeyError.notBase64) { try FernetKey(base64: Self.keyText + " ") }
        #expect(throws: FernetKeyError.notBase64) { try FernetKey(base64: "cw/0x689RpI+jtRR7oE8h/eQsKImvJapLeSbXpwF4e4=") }
        #expect(throws: FernetKeyError.wrongLength(byteCount: 16)) { try FernetKey(base64: "AAAAAAAAAAAAAAAAAAAAAA==") }
        #expect(throws: FernetKeyError.wrongLength(byteCount: 0)) { try FernetKey(base64: "") }
        #expect(throws: FernetKeyError.wrongLength(byteCount: 31)) { try FernetKey(bytes: Array(repeating: 0, count: 31)) }

        do {
            _ = try FernetKey(base64: "AAAAAAAAAAAAAAAAAAAAAA==")
            Issue.record("a 16-byte key was accepted")
        } catch {
            let message = String(describing: error)
            #expect(message.contains("urlsafe base64 of 32 bytes, as Python's Fernet.generate_key()"))
            #expect(message.contains("16 bytes"))
            #expect(!message.contains("AAAA"))
        }
    }

    @Test func keysAreRandomAndNeverPrinted() throws {
        let a = FernetKey.generate()
        let b = FernetKey.generate()
        #expect(a.base64 != b.base64)
        #expect(a.base64.count == 44)
        #expect(try FernetKey(base64: a.base64).decrypt(a.encrypt([9])) == [9])
        #expect("\(a)" == "FernetKey(redacted)")
        #expect(!String(reflecting: a).contains(a.base64))
        #expect(!String(describing: [a]).contains(a.base64))
    }
}
