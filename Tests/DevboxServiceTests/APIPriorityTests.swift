import Foundation
import Testing

@testable import DevboxApp

/// The API's threads ahead of box work (DevboxApp/APIPriority.swift, issue 21).
@Suite struct APIPriorityTests {
    @Test func theNiceComesFromTheEnvironment() {
        #expect(APIPriority.configuredNice([:]) == -2)
        #expect(APIPriority.configuredNice(["DEVBOX_API_NICE": "0"]) == 0)
        #expect(APIPriority.configuredNice(["DEVBOX_API_NICE": "-5"]) == -5)
        // Out of range or not a number: the default.
        #expect(APIPriority.configuredNice(["DEVBOX_API_NICE": "3"]) == -2)
        #expect(APIPriority.configuredNice(["DEVBOX_API_NICE": "-21"]) == -2)
        #expect(APIPriority.configuredNice(["DEVBOX_API_NICE": "high"]) == -2)
    }

    @Test func aNegativeNiceRunsTheServicesAtHighPriority() {
        #expect(APIPriority.taskPriority(nice: -2) == .high)
        #expect(APIPriority.taskPriority(nice: 0) == .medium)
    }

    /// What the design rests on: on Linux, libdispatch runs a `.high` task on threads 2 below
    /// the process's nice and a `.medium` one at it, and a task detached at `.high` keeps its
    /// children there.
    @Test func swiftTaskPriorityIsANiceValueOnLinux() async {
        func nice() -> Int32 { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }
        let base = nice()
        let high = await Task.detached(priority: .high) {
            await withTaskGroup(of: Int32.self) { g in
                g.addTask { nice() }
                return await g.next() ?? 99
            }
        }.value
        let medium = await Task.detached(priority: .medium) { nice() }.value
        #expect(medium == base)
        // Lowering a nice value needs CAP_SYS_NICE (the serve runs as root; `make unit` as nobody).
        if geteuid() == 0 {
            #expect(high == max(-20, base - 2))
        } else {
            #expect(high == base || high == base - 2)
        }
    }
}
