import DevboxModel
import Foundation
import Testing

@testable import DevboxService

/// A name the validation accepts is one the database stores: both count code points.
@Suite struct NameLengthTests {
    static func field(_ name: String) -> String? {
        do {
            _ = try CreateValidation.validate(CreateDevboxRequest(name: name), plans: Plan.defaults, defaultPlan: "small")
            return nil
        } catch {
            return error.field
        }
    }

    @Test func combiningMarksCountAsTheyAreStored() async throws {
        let decomposed = String(repeating: "e\u{301}", count: 64)  // 64 letters, 128 code points
        #expect(decomposed.count == 64)
        #expect(Self.field(decomposed) == "name", "a name the database refuses must be a 422 naming it")
        let precomposed = String(repeating: "\u{E9}", count: 64)  // 64 letters, 64 code points
        #expect(Self.field(precomposed) == nil)

        // and the longest accepted name is stored (the CHECK counts length() in code points)
        let (db, dir) = try PipelineCommitTests.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await PipelineCommitTests.addUser(db)
        var new = PipelineCommitTests.newDevbox("dbx_name")
        new.record.name = precomposed
        _ = try await db.insertDevbox(new)
        #expect(try await db.devboxRecord(id: "dbx_name")?.name == precomposed)
    }
}
