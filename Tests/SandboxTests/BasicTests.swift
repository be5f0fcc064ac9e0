import Foundation
import Synchronization
import Testing
@testable import Sandbox
import CDevbox
#if canImport(Glibc)
import Glibc
#endif

@Suite struct BasicTests {
    @Test func createExecDestroy() async throws {
        try await withHarness("basic") { h in
            try await h.create("b1")
            #expect(await h.runtime.isRunning(id: "b1"))
            let r = try await h.runtime.exec(id: "b1", BoxProcessSpec(argv: ["echo", "hi"]), stdin: nil,
                                             timeout: .seconds(10), outputLimit: 1024, mergeStderr: false)
            #expect(r.exitCode == 0)
            #expect(r.signal == nil)
            #expect(r.out == "hi\n")
            #expect(r.stderr.isEmpty)
            #expect(!r.timedOut && !r.truncated)
            let host = try await h.sh("b1", "hostname; pwd; id -u; cat /proc/1/cmdline | tr '\\0' ' '")
            #expect(host.out == "b1\n/workspace\n0\n/.devbox/init -P ")
            try await h.runtime.destroy(id: "b1")
            #expect(await !h.runtime.isRunning(id: "b1"))
            #expect(access(h.runtime.boxDirectory("b1"), F_OK) != 0)
            try await h.runtime.destroy(id: "b1")  // idempotent
        }
    }

    /// On ext4 the box directory carries FS_TOPDIR_FL, so box trees spread over block groups
    /// (see prepareHost); elsewhere the hint is skipped without failing.
    @Test func boxDirectoryIsMarkedTopDirectory() async throws {
        try await withHarness("topdir") { h in
            let fd = open(h.state, O_RDONLY | O_DIRECTORY)
            #expect(fd >= 0)
            let type = dbx_fs_type(fd)
            close(fd)
            if type == 0xEF53 {
                #expect(dbx_is_topdir(h.state) == 1)
            } else {
                #expect(dbx_is_topdir(h.state) != 1)
            }
        }
    }

    /// A mask plan past its age is rescanned by one caller: the others (a burst of creates)
    /// keep the current layer instead of each scanning the host at the same moment.
    @Test func staleMaskPlanIsRescannedOnce() async throws {
        try await withHarness("mask") { h in
            let before = h.runtime.maskScans.load(ordering: .relaxed)
            let current = try #require(try h.runtime.maskLayer())
            #expect(h.runtime.maskScans.load(ordering: .relaxed) == before, "a fresh plan is not rescanned")
            let later = monotonicNanos() + CrunRuntime.maskMaxAgeNanos + 1_000_000_000
            let layers = Mutex<[String?]>([])
            DispatchQueue.concurrentPerform(iterations: 16) { _ in
                let layer = try? h.runtime.maskLayer(now: later)
                layers.withLock { $0.append(layer) }
            }
            #expect(h.runtime.maskScans.load(ordering: .relaxed) == before + 1)
            // The host did not change: the rescan finds the same plan, hence the same layer.
            #expect(layers.withLock { $0 } == Array(repeating: current, count: 16))
            // A box created now mounts it.
            try await h.create("m1")
            #expect(try await h.sh("m1", "true").exitCode == 0)
            #expect(h.runtime.maskScans.load(ordering: .relaxed) == before + 1)
            try await h.runtime.destroy(id: "m1")
        }
    }

    /// `isRunning` answers from the init's /proc entry when it knows the pid: a box whose init
    /// was killed behind the runtime's back (OOM killer, `crun kill`) must read as not running
    /// at once, not only after the reaper noticed.
    @Test func isRunningSeesAnInitKilledOutside() async throws {
        try await withHarness("kill") { h in
            try await h.create("k1")
            #expect(await h.runtime.isRunning(id: "k1"))
            let state = try runCommandBlocking(h.runtime.crun, ["crun", "state", h.runtime.containerName("k1")]).stdoutText
            let json = try #require(try JSONSerialization.jsonObject(with: Data(state.utf8)) as? [String: Any])
            let pid = try #require(json["pid"] as? Int).asPid
            #expect(kill(pid, SIGKILL) == 0)
            var running = true
            for _ in 0..<50 {
                running = await h.runtime.isRunning(id: "k1")
                if !running { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(!running)
            try await h.runtime.destroy(id: "k1")
        }
    }
}

extension Int {
    fileprivate var asPid: pid_t { pid_t(self) }
}
