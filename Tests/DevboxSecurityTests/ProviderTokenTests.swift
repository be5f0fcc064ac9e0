import DevboxSecurity
import Foundation
import Testing

@Suite struct ProviderTokenTests {
    @Test func format() throws {
        let token = ProviderToken.generate()
        #expect(token.hasPrefix("dbx_pt_"))
        let body = String(token.dropFirst("dbx_pt_".count))
        #expect(body.count == 43)
        #expect(body.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "_" })
        #expect(TestSupport.base64urlDecode(body)?.count == 32)
    }

    @Test func tokensAreUnique() {
        let tokens = Set((0..<200).map { _ in ProviderToken.generate() })
        #expect(tokens.count == 200)
    }

    @Test func hashIsLowercaseHexSHA256() {
        // FIPS 180-2 test vector.
        #expect(ProviderToken.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ProviderToken.hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let token = ProviderToken.generate()
        let hash = ProviderToken.hash(token)
        #expect(hash.count == 64)
        #expect(hash == ProviderToken.hash(token))
        #expect(hash != ProviderToken.hash(ProviderToken.generate()))
    }

    @Test func matches() {
        let token = ProviderToken.generate()
        let stored = ProviderToken.hash(token)
        #expect(ProviderToken.matches(token, storedHash: stored))
        #expect(!ProviderToken.matches(token + "x", storedHash: stored))
        #expect(!ProviderToken.matches(ProviderToken.generate(), storedHash: stored))
        #expect(!ProviderToken.matches(token, storedHash: String(stored.dropLast())))
        #expect(!ProviderToken.matches(token, storedHash: stored.uppercased()))
    }

    @Test func constantTimeEquals() {
        #expect(ConstantTime.equals([UInt8](), [UInt8]()))
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([0, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(!ConstantTime.equals([UInt8](), [0]))
        #expect(ConstantTime.equals(Array("abc".utf8)[1...], [98, 99]))
        #expect(ConstantTime.equals("deadbeef", "deadbeef"))
        #expect(!ConstantTime.equals("deadbeef", "deadbeee"))
        #expect(!ConstantTime.equals("é", "e\u{301}"))  // bytes, not canonical equivalence
    }
}
