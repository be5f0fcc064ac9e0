import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Box teardown and the pools' refills run at a lower CPU priority than the API (issue 21),
/// creates at `DEVBOX_CREATE_NICE`; the boxes they start do not inherit it.
@Suite struct PriorityTests {
    static func threadNice() -> Int32 { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }

    @Test("background work runs at nice 10, and so do the processes it starts; normal work keeps the service's")
    func backgroundThreadsAreNiced() async throws {
        let service = await onDedicatedThread { Self.threadNice() }
        let background = await onDedicatedThread(priority: .background) { Self.threadNice() }
        #expect(background == backgroundNice && service != backgroundNice)
        // A helper process started from a background thread (as `crun` is) inherits it.
        let child = try await onDedicatedThread(priority: .background) {
            try runCommandBlocking("/bin/sh", ["sh", "-c", "cut -d' ' -f19 /proc/self/stat"])
        }
        #expect(child.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "\(backgroundNice)")
    }

    @Test("creates run at DEVBOX_CREATE_NICE (default 0: ahead of teardown and refills, beside the API)")
    func createsRunAtTheirOwnNice() async throws {
        let create = await onDedicatedThread(priority: .create) { Self.threadNice() }
        let expected = ProcessInfo.processInfo.environment["DEVBOX_CREATE_NICE"].flatMap { Int32($0) } ?? 0
        #expect(create == expected && createNice == expected)
        #expect(WorkPriority.background.nice == backgroundNice && WorkPriority.normal.nice == 0)
    }

    @Test("a box created by a background thread runs its processes at nice 0")
    func boxProcessesAreNotNiced() async throws {
        try await withHarness("nice") { h in
            try await h.create("n1")
            // Every process of the box: its init (and what the init started) and this exec.
            let r = try await h.sh("n1", "for s in /proc/[0-9]*/stat; do cut -d' ' -f2,19 $s; done")
            let lines = r.out.split(separator: "\n")
            #expect(lines.count >= 2, "\(r.out)")
            for l in lines { #expect(l.hasSuffix(" 0"), "\(r.out)") }
            try await h.runtime.destroy(id: "n1")
        }
    }
}
