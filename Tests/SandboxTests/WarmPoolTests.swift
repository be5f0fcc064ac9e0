import CDevbox
import Foundation
import Logging
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The warm pool (WarmPool.swift): boxes started ahead of demand and handed to creates.
@Suite struct WarmPoolTests {
    /// Waits until the pool holds `idle` boxes.
    static func fill(_ h: Harness, _ idle: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while h.runtime.warmPoolStatus.idle < idle {
            guard ContinuousClock.now < deadline else { throw BoxRuntimeError.notRunning("pool did not fill: \(h.runtime.warmPoolStatus)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Starts a pool of `size`, waits until it is full, then stops refills (the quiet period
    /// becomes a minute): what the test takes out stays taken.
    static func fullPoolWithoutRefill(_ h: Harness, size: Int) async throws {
        h.runtime.pool.setQuiet(nanos: 0)
        h.runtime.startWarmPool(size: size, limits: Harness.limits)
        try await fill(h, size)
        h.runtime.pool.setQuiet(nanos: 60_000_000_000)
        h.runtime.pool.noteDemand()
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        _ = gethostname(&buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A box taken from the pool is the devbox's box in every respect: its name, files,
    /// env, setup shell, workspace, stop/start, destroy. The host's hostname is untouched.
    @Test func pooledBoxBecomesTheDevboxBox() async throws {
        let hostBefore = Self.hostname()
        try await withHarness("pool") { h in
            h.runtime.pool.setQuiet(nanos: 0)
            h.runtime.startWarmPool(size: 2, limits: Harness.limits)
            try await Self.fill(h, 2)
            let pooled = h.runtime.pool.idleNames()
            #expect(pooled.count == 2 && pooled.allSatisfy { $0.hasPrefix(CrunRuntime.poolNamePrefix) })

            let warm = try await h.runtime.create(id: "w1", limits: Harness.limits, env: ["FOO": "b a'r"], setupShell: true)
            #expect(warm)
            let name = h.runtime.boxName("w1")
            #expect(pooled.contains(name))
            #expect(h.runtime.containerName("w1") == h.prefix + name)
            var link = [CChar](repeating: 0, count: 256)
            #expect(readlink(h.runtime.aliasPath("w1"), &link, 255) > 0)
            #expect(String(decoding: link.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == h.prefix + name)

            // The setup shell has the devbox env and sees the devbox's name everywhere.
            let setup = try #require(try await h.runtime.runSetupCommand(
                id: "w1", command: "echo \"$FOO\"; hostname; cat /etc/hostname; grep -c '127.0.1.1\tw1$' /etc/hosts; pwd",
                timeout: .seconds(20), outputLimit: 1 << 16))
            #expect(setup.exitCode == 0)
            #expect(String(decoding: setup.stdout, as: UTF8.self) == "b a'r\nw1\nw1\n1\n/workspace\n")
            await h.runtime.finishSetup(id: "w1")
            #expect(await h.runtime.isRunning(id: "w1"))
            // The workspace path the service clones into is the box's.
            #expect(FileManager.default.createFile(atPath: h.runtime.workspaceHostPath(id: "w1") + "/from-host", contents: Data("hi\n".utf8)))
            let exec2 = try await h.sh("w1", "echo \"$FOO\"; hostname; cat /workspace/from-host")
            #expect(exec2.out == "b a'r\nw1\nhi\n")

            // Stop and start: the box runs again under the devbox's hostname.
            try await h.runtime.stop(id: "w1")
            #expect(await !h.runtime.isRunning(id: "w1"))
            try await h.runtime.start(id: "w1")
            #expect(try await h.sh("w1", "hostname; cat /etc/hostname; cat /workspace/from-host").out == "w1\nw1\nhi\n")

            // The pool refills with new boxes.
            try await Self.fill(h, 2)
            #expect(!h.runtime.pool.idleNames().contains(name))

            try await h.runtime.destroy(id: "w1")
            #expect(await !h.runtime.isRunning(id: "w1"))
            var st = stat()
            #expect(lstat(h.runtime.aliasPath("w1"), &st) != 0, "the alias goes with the box")
            #expect(access(h.state + "/" + h.prefix + name, F_OK) != 0)
            // (The box directory's trash is deleted on a thread of its own, at the destroy's low
            // priority: it may still be there; the harness's sweep checks it is gone.)
            #expect(!h.leftovers().contains { $0.contains(name) && !$0.contains(CrunRuntime.trashMarker) })
            #expect(h.runtime.boxName("w1") == "w1")
        }
        #expect(Self.hostname() == hostBefore)
    }

    /// A devbox without setup commands gets a pooled box too; its shell becomes the pause process.
    @Test func pooledBoxWithoutSetupShell() async throws {
        try await withHarness("poolns") { h in
            h.runtime.pool.setQuiet(nanos: 0)
            h.runtime.startWarmPool(size: 1, limits: Harness.limits)
            try await Self.fill(h, 1)
            #expect(try await h.runtime.create(id: "n1", limits: Harness.limits, env: [:], setupShell: false))
            #expect(try await h.runtime.runSetupCommand(id: "n1", command: "true", timeout: .seconds(5), outputLimit: 10) == nil)
            let ps = try await h.sh("n1", "hostname; cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
            #expect(ps.out.hasPrefix("n1\n"))
            #expect(ps.out.contains("/.devbox/init -P"), "the shell became the pause process: \(ps.out)")
            try await h.runtime.destroy(id: "n1")
        }
    }

    /// Other limits than the pool's, or an empty pool: the box is made cold, named after the devbox.
    @Test func otherLimitsOrEmptyPoolGoCold() async throws {
        try await withHarness("poolcold") { h in
            h.runtime.pool.setQuiet(nanos: 60_000_000_000)  // no refill during the test
            h.runtime.pool.noteDemand()
            h.runtime.startWarmPool(size: 1, limits: Harness.limits)
            let other = BoxLimits(memoryBytes: 128 << 20, cpus: 1, pids: 128)
            #expect(try await h.runtime.create(id: "c1", limits: other, env: [:], setupShell: true) == false)
            #expect(h.runtime.containerName("c1") == h.prefix + "c1")
            #expect(try await h.sh("c1", "hostname").out == "c1\n")
            // Nothing was started ahead (no quiet period yet): the default limits go cold too.
            #expect(try await h.runtime.create(id: "c2", limits: Harness.limits, env: [:], setupShell: true) == false)
            #expect(h.runtime.warmPoolStatus == WarmPoolStatus(target: 1, idle: 0))
            // A second create of the same id is refused either way.
            await #expect(throws: BoxRuntimeError.self) {
                try await h.runtime.create(id: "c2", limits: Harness.limits, env: [:], setupShell: true)
            }
            try await h.runtime.destroy(id: "c1")
            try await h.runtime.destroy(id: "c2")
        }
    }

    /// A pooled box whose init died, or whose root predates the current mask layer, is never
    /// handed out: it is discarded (and destroyed) and the create takes another or goes cold.
    @Test func deadOrStaleBoxesAreDiscarded() async throws {
        try await withHarness("pooldead") { h in
            try await Self.fullPoolWithoutRefill(h, size: 2)
            let names = Array(h.runtime.pool.idleNames())
            // Kill the init of the box that would be taken first.
            let first = try #require(h.runtime.pool.take(limits: Harness.limits))
            let pid = try #require(h.runtime.knownInitPid(first.name))
            #expect(kill(pid, SIGKILL) == 0)
            try await Task.sleep(for: .milliseconds(300))
            #expect(await onDedicatedThread { h.runtime.withBoxLock("d1") { h.runtime.claimPooled(first, id: "d1", env: [:], setupShell: true) } } == false)
            // A stale layer is refused as well.
            let second = try #require(h.runtime.pool.take(limits: Harness.limits))
            let stale = PooledBox(name: second.name, limits: second.limits, maskLayer: "/nonexistent-layer")
            #expect(await onDedicatedThread { h.runtime.withBoxLock("d1") { h.runtime.claimPooled(stale, id: "d1", env: [:], setupShell: true) } } == false)
            #expect(h.runtime.boxName("d1") == "d1")
            // The filler destroys both.
            let deadline = ContinuousClock.now + .seconds(20)
            while names.contains(where: { access(h.state + "/" + h.prefix + $0, F_OK) == 0 }) {
                #expect(ContinuousClock.now < deadline)
                if ContinuousClock.now >= deadline { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            // With the pool empty, the create goes cold and works.
            #expect(try await h.runtime.create(id: "d1", limits: Harness.limits, env: [:], setupShell: true) == false)
            #expect(try await h.sh("d1", "hostname").out == "d1\n")
            try await h.runtime.destroy(id: "d1")
        }
    }

    /// After a restart (a new runtime on the same state directory): a claimed box still
    /// answers to its devbox id; the sweep keeps it and removes the unclaimed pool boxes.
    @Test func restartKeepsClaimedBoxesAndSweepsIdleOnes() async throws {
        try await withHarness("poolrestart") { h in
            try await Self.fullPoolWithoutRefill(h, size: 3)
            #expect(try await h.runtime.create(id: "r1", limits: Harness.limits, env: ["K": "v"], setupShell: true))
            await h.runtime.finishSetup(id: "r1")
            let claimed = h.runtime.boxName("r1")
            let idle = h.runtime.pool.idleNames()
            #expect(idle.count == 2)

            // The new runtime: no pool of its own yet, aliases read from disk.
            var logger = Logger(label: "sandbox-test")
            logger.logLevel = .warning
            let again = CrunRuntime(configuration: h.runtime.configuration, logger: logger)
            #expect(again.boxName("r1") == claimed)
            let removed = Set(await again.sweep(keeping: ["r1"]))
            #expect(removed == idle)
            #expect(await again.isRunning(id: "r1"))
            let r = try await again.exec(id: "r1", BoxProcessSpec(argv: ["/bin/sh", "-c", "echo $K; hostname"]), stdin: nil,
                                         timeout: .seconds(10), outputLimit: 1024, mergeStderr: false)
            #expect(r.out == "v\nr1\n")
            // Sweeping without the devbox removes its box and its alias.
            #expect(Set(await again.sweep(keeping: [])).contains("r1"))
            var st = stat()
            #expect(lstat(again.aliasPath("r1"), &st) != 0)
            #expect(access(h.state + "/" + h.prefix + claimed, F_OK) != 0)
        }
    }

    /// The hostname helper never renames the namespace it runs in (the host's).
    @Test func hostnameHelperRefusesOwnNamespace() throws {
        let before = Self.hostname()
        let pidfd = dbx_pidfd_open(getpid())
        #expect(pidfd >= 0)
        defer { close(pidfd) }
        let rc = "not-the-host".withCString { dbx_sethostname_in(pidfd, getpid(), $0, strlen($0)) }
        #expect(rc == -1)
        #expect(dbx_errno() == EPERM)
        #expect(Self.hostname() == before)
    }

    /// Stopping the pool destroys its idle boxes and leaves claimed ones alone.
    @Test func stoppingThePoolDestroysIdleBoxes() async throws {
        try await withHarness("poolstop") { h in
            try await Self.fullPoolWithoutRefill(h, size: 2)
            #expect(try await h.runtime.create(id: "s1", limits: Harness.limits, env: [:], setupShell: false))
            let idle = h.runtime.pool.idleNames()
            await h.runtime.stopWarmPool()
            #expect(h.runtime.warmPoolStatus == WarmPoolStatus(target: 0, idle: 0))
            for name in idle { #expect(access(h.state + "/" + h.prefix + name, F_OK) != 0) }
            #expect(await h.runtime.isRunning(id: "s1"))
            try await h.runtime.destroy(id: "s1")
        }
    }
}
