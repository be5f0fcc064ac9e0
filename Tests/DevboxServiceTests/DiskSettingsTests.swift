import Testing

@testable import DevboxService

@Suite("Plans with disks, the free-disk floor")
struct DiskSettingsTests {
    @Test func defaultPlansHaveTheirDisks() {
        #expect(Plan.defaults.map(\.diskMiB) == [10 << 10, 20 << 10, 40 << 10])
        #expect(Plan.defaults[0].limits.diskBytes == 10 << 30)
    }

    @Test func fourAndFiveFieldEntries() throws {
        let plans = try Plan.parse("tiny:512:0.5:128:1024, old:1024:1:512")
        #expect(plans == [
            Plan(name: "tiny", memoryMiB: 512, cpus: 0.5, pids: 128, diskMiB: 1024),
            Plan(name: "old", memoryMiB: 1024, cpus: 1, pids: 512, diskMiB: Plan.defaultDiskMiB),
        ])
        #expect(plans[0].limits == BoxLimits(memoryBytes: 512 << 20, cpus: 0.5, pids: 128, diskBytes: 1 << 30))
    }

    @Test(arguments: ["a:512:1:128:10", "a:512:1:128:", "a:512:1:128:x", "a:512:1:128:-5", "a:512:1:128:1024:9",
                      "a:512:1:128:99999999999", "a:512:1:128:1024,a:512:1:128", "a:512:nan:128", ""])
    func badEntriesAreRefused(_ spec: String) {
        #expect(throws: ConfigurationError.self) { try Plan.parse(spec) }
    }

    @Test func floorParses() throws {
        #expect(try DiskFloor.parse("5%") == .percent(5))
        #expect(try DiskFloor.parse(" 0.5 % ") == .percent(0.5))
        #expect(try DiskFloor.parse("2GiB") == .bytes(2 << 30))
        #expect(try DiskFloor.parse("2G") == .bytes(2 << 30))
        #expect(try DiskFloor.parse("500MiB") == .bytes(500 << 20))
        #expect(try DiskFloor.parse("1.5T") == .bytes(3 << 39))
        #expect(try DiskFloor.parse("4096") == .bytes(4096))
        #expect(try DiskFloor.parse("0") == .bytes(0))
        for bad in ["lots", "100%", "-1%", "5%%", "GiB", "-2GiB", "1e3", "2 XB", "nan%", "99999999TiB"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try DiskFloor.parse(bad) }
        }
    }

    @Test func floorIsComputedOnTheFilesystemSize() {
        #expect(DiskFloor.percent(5).minimumFree(total: 1000) == 50)
        #expect(DiskFloor.percent(0.5).minimumFree(total: 1001) == 6)
        #expect(DiskFloor.bytes(7).minimumFree(total: 1000) == 7)
        #expect(DiskFloor.standard.description == "5%")
        #expect(DiskFloor.bytes(3 << 29).description == "1.5 GiB")
        #expect(DiskFloor.describe(512 << 20) == "512 MiB")
    }

    @Test func belowTheFloorIs507() {
        let e = ServiceError.insufficientStorage("short")
        #expect(e.statusCode == 507 && e.code == "insufficient_storage" && e.message == "short")
    }
}
