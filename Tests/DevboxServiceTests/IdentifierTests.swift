import Testing
@testable import DevboxService

@Suite("Identifiers")
struct IdentifierTests {
    /// Shape, uniqueness, and every character of the alphabet at every position (a position
    /// that drew no fresh bits would show one character only).
    @Test func randomAtEveryPosition() {
        let alphabet = Set("abcdefghijklmnopqrstuvwxyz234567")
        let ids = (0..<3000).map { _ in Identifier.make("dbx_") }
        #expect(Set(ids).count == ids.count)
        var seen = Array(repeating: Set<Character>(), count: 20)
        for id in ids {
            #expect(id.hasPrefix("dbx_") && id.count == 24)
            for (i, c) in id.dropFirst(4).enumerated() {
                #expect(alphabet.contains(c))
                seen[i].insert(c)
            }
        }
        #expect(seen.allSatisfy { $0 == alphabet })
        #expect(Identifier.make("ses_", length: 52).count == 56)
        #expect(Identifier.make("x_", length: 0) == "x_")
    }
}
