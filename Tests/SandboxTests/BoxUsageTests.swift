import Foundation
import Testing

@testable import Sandbox

/// Issue 24: the parts of `CrunRuntime.usage` that need no box.
@Suite("Box usage")
struct BoxUsageTests {
    @Test("cpu.stat's usage_usec is read by key, other lines ignored")
    func cpuStat() {
        let text = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n"
        #expect(CrunRuntime.field(text, "usage_usec") == 1_234_567)
        #expect(CrunRuntime.field(text, "nr_throttled") == nil)
    }

    @Test("the disk walk counts allocated bytes, never follows a symlink and stops at its bound")
    func walk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("boxusage-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/a/b", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let blob = [UInt8](repeating: 7, count: 1 << 20)
        try Data(blob).write(to: URL(fileURLWithPath: dir + "/a/b/blob"))
        // A symlink to a big tree outside must not be followed.
        try FileManager.default.createSymbolicLink(atPath: dir + "/a/usr", withDestinationPath: "/usr")
        var budget = 1000
        let total = CrunRuntime.walk(dir, budget: &budget)
        #expect(total >= 1 << 20 && total < 2 << 20, "\(total)")
        #expect(budget == 1000 - 4)  // a, b, blob, usr
        for i in 0..<50 { _ = FileManager.default.createFile(atPath: dir + "/f\(i)", contents: Data([1])) }
        var small = 10
        _ = CrunRuntime.walk(dir, budget: &small)
        #expect(small == 0)
    }
}
