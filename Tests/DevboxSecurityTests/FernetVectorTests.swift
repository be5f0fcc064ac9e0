import DevboxSecurity
import Foundation
import Testing

/// Every vector of the Fernet spec, from the repository's `Tests/Vectors/fernet`.
@Suite struct FernetVectorTests {
    struct GenerateVector: Decodable {
        let token: String
        let now: String
        let iv: [UInt8]
        let src: String
        let secret: String
    }

    struct VerifyVector: Decodable {
        let token: String
        let now: String
        let ttl_sec: Double
        let src: String
        let secret: String
    }

    struct InvalidVector: Decodable {
        let desc: String
        let token: String
        let now: String
        let ttl_sec: Double
        let secret: String
    }

    static func date(_ string: String) throws -> Date {
        try Date(string, strategy: .iso8601)
    }

    /// A fresh clone has nothing next to it: the vectors must come from inside the checkout
    /// (they once came from a folder beside the checkout, and `make test` failed in a clone).
    @Test func vectorsAreInsideTheRepository() throws {
        let root = TestSupport.packageRoot.standardizedFileURL.resolvingSymlinksInPath().path
        let directory = TestSupport.fernetVectorsDirectory.standardizedFileURL.resolvingSymlinksInPath().path
        #expect(directory.hasPrefix(root + "/"), "\(directory) is outside \(root)")
        for name in ["generate.json", "verify.json", "invalid.json"] {
            #expect(FileManager.default.isReadableFile(atPath: directory + "/" + name), "\(name) missing")
        }
    }

    @Test func generateVectors() throws {
        let vectors = try TestSupport.loadVectors("generate.json", as: [GenerateVector].self)
        #expect(!vectors.isEmpty)
        for vector in vectors {
            let key = try FernetKey(base64: vector.secret)
            let now = try Self.date(vector.now)
            let token = key.encrypt(Array(vector.src.utf8), now: now, iv: vector.iv)
            #expect(token == vector.token, "generate: \(vector.src)")
            #expect(try key.decrypt(token) == Array(vector.src.utf8))
        }
    }

    @Test func verifyVectors() throws {
        let vectors = try TestSupport.loadVectors("verify.json", as: [VerifyVector].self)
        #expect(!vectors.isEmpty)
        for vector in vectors {
            let key = try FernetKey(base64: vector.secret)
            let now = try Self.date(vector.now)
            let plaintext = try key.decrypt(vector.token, ttl: vector.ttl_sec, now: now)
            #expect(plaintext == Array(vector.src.utf8))
        }
    }

    /// The reason each known vector must be rejected for; vectors added later need only be rejected.
    static let expectedReasons: [String: FernetError] = [
        "incorrect mac": .invalidSignature,
        "too short": .malformedToken,
        "invalid base64": .malformedToken,
        "payload size not multiple of block size": .malformedToken,
        "payload padding error": .decryptionFailed,
        "far-future TS (unacceptable clock skew)": .timestampInFuture,
        "expired TTL": .expired,
        "incorrect IV (causes padding error)": .decryptionFailed,
    ]

    @Test func invalidVectors() throws {
        let vectors = try TestSupport.loadVectors("invalid.json", as: [InvalidVector].self)
        #expect(!vectors.isEmpty)
        for vector in vectors {
            let key = try FernetKey(base64: vector.secret)
            let now = try Self.date(vector.now)
            do {
                let plaintext = try key.decrypt(vector.token, ttl: vector.ttl_sec, now: now)
                Issue.record("\(vector.desc): accepted, decrypted to \(plaintext.count) bytes")
            } catch let error as FernetError {
                if let expected = Self.expectedReasons[vector.desc] {
                    #expect(error == expected, "\(vector.desc)")
                }
                #expect(!String(describing: error).contains(vector.token))
            }
        }
    }
}
