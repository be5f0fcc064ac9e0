import CDevbox
import Foundation
import Logging
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Boxes in user namespaces of their own (UserNamespace.swift), attacker-style: what a box
/// root can see and do, who owns what on the host.
@Suite struct UserNamespaceTests {
    func hostOwner(_ path: String) -> (uid: uid_t, gid: gid_t)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_uid, st.st_gid)
    }

    @Test func boxRootIsNotHostRoot() async throws {
        try await withHarness("un") { h in
            try await h.create("a", env: ["SECRET_X": "v1"])
            let map = try #require(h.runtime.idMap("a"))
            #expect(map.base >= 1 << 28)
            // The map inside is the box's range, not the identity.
            let uidMap = try await h.sh("a", "cat /proc/self/uid_map /proc/self/gid_map")
            let fields = uidMap.out.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
            #expect(fields == ["0", "\(map.base)", "65536", "0", "\(map.base)", "65536"], "\(uidMap.out)")
            // Files the box writes belong on the host to its range, never to 0.
            let w = try await h.sh("a", "echo hi > /root/made-in-box && mkdir -p /workspace/d && echo x > /workspace/d/f && chown 1000:1000 /workspace/d/f && id -u && ls -ln /root/made-in-box /workspace /etc/devbox/env /etc/hostname")
            #expect(w.exitCode == 0, "\(w.err)")
            #expect(w.out.hasPrefix("0\n"))
            let upper = h.runtime.writableRoot("a") + "/upper"
            let ws = h.runtime.workspaceHostPath(id: "a")
            #expect(hostOwner(upper + "/root/made-in-box")?.uid == map.base)
            #expect(hostOwner(ws + "/d/f")?.uid == map.base + 1000)
            #expect(hostOwner(ws + "/d")?.uid == map.base)
            // Inside, what the host placed (workspace, env file, /etc/hostname) is the box's root's.
            for line in w.out.split(separator: "\n") where line.contains("made-in-box") || line.contains("/etc/") {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                #expect(f.count > 3 && f[2] == "0" && f[3] == "0", "\(line)")
            }
            let env = try await h.sh("a", "stat -c '%u:%g %a' /etc/devbox/env /workspace / /etc; xargs -0 -a /etc/devbox/env -n1 echo | grep SECRET_X")
            #expect(env.out == "0:0 600\n0:0 755\n0:0 755\n0:0 755\nSECRET_X=v1\n", "\(env.out) \(env.err)")
            // The host sees the box's processes as the mapped uid.
            let pid = try #require(h.runtime.knownInitPid("a"))
            let status = try #require(readSmallFile("/proc/\(pid)/status"))
            let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
            #expect(uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().allSatisfy { $0 == "\(map.base)" }, "\(uidLine)")
            // Its namespaces, cgroup namespace included, are not the host's.
            for ns in ["user", "cgroup", "mnt", "pid"] {
                #expect(usernsReadLink("/proc/\(pid)/ns/\(ns)") != usernsReadLink("/proc/self/ns/\(ns)"), "\(ns)")
            }
            // No new namespaces, no mounts.
            let esc = try await h.sh("a", "unshare -U true; echo u=$?; unshare -m true; echo m=$?; mount -t tmpfs x /mnt; echo t=$?; cat /proc/self/cgroup | head -3", merge: true)
            #expect(esc.out.contains("u=1") && esc.out.contains("m=1") && esc.out.contains("t=32"), "\(esc.out)")
            #expect(esc.out.contains("0::/\n") || esc.out.contains(":/\n"), "cgroup namespace: \(esc.out)")
            // Lower layers stay in canonical ids: nothing of the host root was chowned.
            #expect(hostOwner("/usr/bin/env")?.uid == 0)
            let lower = try await h.sh("a", "stat -c %u /usr/bin/env; touch /usr/bin/env && stat -c %u /usr/bin/env")
            #expect(lower.out == "0\n0\n", "\(lower.out)\(lower.err)")
            #expect(hostOwner("/usr/bin/env")?.uid == 0)
        }
    }

    @Test func filesAPIAndTreesTheHostPlacesBelongToTheBox() async throws {
        try await withHarness("uf") { h in
            try await h.create("a")
            let map = try #require(h.runtime.idMap("a"))
            _ = try await h.runtime.writeFile(id: "a", path: "/workspace/new/dir/file.txt", bytes: Array("x".utf8), mode: nil)
            let ws = h.runtime.workspaceHostPath(id: "a")
            #expect(hostOwner(ws + "/new")?.uid == map.base)
            #expect(hostOwner(ws + "/new/dir/file.txt")?.uid == map.base)
            let ls = try await h.sh("a", "stat -c '%u:%g %n' /workspace/new /workspace/new/dir/file.txt && echo more >> /workspace/new/dir/file.txt")
            #expect(ls.exitCode == 0 && ls.out == "0:0 /workspace/new\n0:0 /workspace/new/dir/file.txt\n", "\(ls.out)\(ls.err)")
            // A tree made by host root (a clone) shifted into the box's range: 0 → its root, 5 → its 5.
            let tree = h.runtime.boxDirectory("a") + "/clone-tmp"
            #expect(mkdir(tree, 0o755) == 0 && mkdir(tree + "/sub", 0o755) == 0)
            #expect(FileManager.default.createFile(atPath: tree + "/sub/f", contents: Data("y".utf8)))
            #expect(symlink("/etc/shadow", tree + "/link") == 0)
            #expect(lchown(tree + "/sub/f", 5, 5) == 0)
            try await h.runtime.adoptTree(id: "a", path: tree)
            #expect(hostOwner(tree)?.uid == map.base && hostOwner(tree + "/sub")?.uid == map.base)
            #expect(hostOwner(tree + "/sub/f")?.uid == map.base + 5)
            #expect(hostOwner(tree + "/link")?.uid == map.base)
            #expect(hostOwner("/etc/shadow")?.uid == 0, "a symlink is never followed")
        }
    }

    @Test func rangesDifferAndSurviveStopStartAndARestart() async throws {
        try await withHarness("ur") { h in
            try await h.create("a")
            try await h.create("b")
            let a = try #require(h.runtime.idMap("a")), b = try #require(h.runtime.idMap("b"))
            #expect(a != b)
            // The claims are machine-wide entries pointing at each box directory.
            let registry = h.runtime.configuration.idRangeRegistry
            #expect(usernsReadLink(registry + "/\(a.block)") == h.runtime.boxDirectory("a"))
            // Box b cannot read a's files (a stranger on the host and in a's tree).
            _ = try await h.sh("a", "echo secret > /root/private && chmod 600 /root/private")
            _ = try await h.sh("a", "echo x > /workspace/mine")
            try await h.runtime.stop(id: "a")
            try await h.runtime.start(id: "a")
            let again = try await h.sh("a", "cat /root/private && echo y >> /workspace/mine && stat -c %u /workspace/mine /root/private")
            #expect(again.out == "secret\n0\n0\n", "\(again.out)\(again.err)")
            // A new runtime on the same state (a service restart) reads the box's range back.
            var logger = Logger(label: "t")
            logger.logLevel = .warning
            let second = CrunRuntime(configuration: h.runtime.configuration, logger: logger)
            #expect(second.idMap("a") == a)
            // Destroy frees the claim.
            try await h.runtime.destroy(id: "b")
            #expect(usernsReadLink(registry + "/\(b.block)") == nil)
        }
    }

    @Test func pooledBoxesHaveTheirOwnRangeToo() async throws {
        try await withHarness("up") { h in
            try await WarmPoolTests.fullPoolWithoutRefill(h, size: 1)
            let name = try #require(h.runtime.pool.idleNames().first)
            let pooledMap = try #require(h.runtime.idMap(name))
            try await h.create("p1", env: ["K": "v"])
            #expect(h.runtime.boxName("p1") == name)
            #expect(h.runtime.idMap("p1") == pooledMap)
            let r = try await h.sh("p1", "cat /proc/self/uid_map; stat -c %u:%g /etc/devbox/env /etc/hostname /workspace; echo x > /root/y")
            let words = r.out.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
            #expect(words == ["0", "\(pooledMap.base)", "65536", "0:0", "0:0", "0:0"], "\(r.out)\(r.err)")
            #expect(hostOwner(h.runtime.writableRoot("p1") + "/upper/root/y")?.uid == pooledMap.base)
            try await h.runtime.destroy(id: "p1")
            let registry = h.runtime.configuration.idRangeRegistry
            #expect(usernsReadLink(registry + "/\(pooledMap.block)") == nil)
            let left = h.leftovers().filter { $0.contains(name) && !$0.contains(".trash-") }
            #expect(left == [], "\(left)")
        }
    }

    @Test func registryTakesBackStaleClaimsOnly() throws {
        let dir = "/tmp/dbx-idreg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? HostState.removeTree(dir) }
        let registry = IDRangeRegistry(directory: dir + "/reg")
        #expect(mkdir(dir, 0o700) == 0 && mkdir(dir + "/b1", 0o700) == 0 && mkdir(dir + "/b2", 0o700) == 0)
        let m1 = try registry.claim(boxDirectory: dir + "/b1")
        #expect(IDRangeRegistry.recorded(boxDirectory: dir + "/b1") == m1)
        // b2 claiming b1's block (its ids file forged) is refused while b1 holds it.
        #expect(FileManager.default.createFile(atPath: dir + "/b2/ids", contents: Data("\(m1.block)\n".utf8)))
        #expect(throws: BoxRuntimeError.self) { try registry.confirm(m1, boxDirectory: dir + "/b2") }
        // Once b1 is gone its entry is stale: taken over.
        try HostState.removeTree(dir + "/b1")
        try registry.confirm(m1, boxDirectory: dir + "/b2")
        #expect(usernsReadLink(dir + "/reg/\(m1.block)") == dir + "/b2")
        // Host accounts' ids are never handed out (nobody, 65534, is below the first block).
        let excluded = registry.excludedBlocks()
        #expect(!excluded.contains(m1.block))
    }

    /// Cold create with and without user namespaces, alternated in one run so both see the
    /// same load: `DEVBOX_BENCH=1 swift test --filter UserNamespaceTests/createWithAndWithout`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["DEVBOX_BENCH"] != nil))
    func createWithAndWithoutUserNamespaces() async throws {
        try await withHarness("ub") { h in
            var config = h.runtime.configuration
            config.userNamespaces = false
            var logger = Logger(label: "t")
            logger.logLevel = .warning
            let plain = CrunRuntime(configuration: config, logger: logger)
            var with: [UInt64] = [], without: [UInt64] = []
            for i in 0..<15 {
                var t = monotonicNanos()
                try await h.runtime.create(id: "u\(i)", limits: Harness.limits, env: ["K": "v"])
                with.append(monotonicNanos() - t)
                t = monotonicNanos()
                try await plain.create(id: "p\(i)", limits: Harness.limits, env: ["K": "v"])
                without.append(monotonicNanos() - t)
                #expect(h.runtime.idMap("u\(i)") != nil && plain.idMap("p\(i)") == nil)
                try await h.runtime.destroy(id: "u\(i)")
                try await plain.destroy(id: "p\(i)")
            }
            func median(_ a: [UInt64]) -> Double { Double(a.sorted()[a.count / 2]) / 1e6 }
            print("cold create median of 15 (ms): with user namespace \(median(with)), without \(median(without))")
        }
    }

    /// What the user namespace and idmapped layers add to a create (printed, like NetlinkTests).
    @Test func measureUserNamespaceSteps() throws {
        let dir = "/var/lib/dbx-usermeasure-\(getpid())"
        #expect(mkdir(dir, 0o700) == 0)
        defer { try? HostState.removeTree(dir) }
        let registry = IDRangeRegistry(directory: IDRangeRegistry.defaultDirectory)
        var claim: [Double] = [], userns: [Double] = [], idmap: [Double] = [], total: [Double] = []
        for i in 0..<20 {
            let box = dir + "/b\(i)"
            #expect(mkdir(box, 0o700) == 0 && mkdir(box + "/l", 0o700) == 0)
            let t0 = monotonicNanos()
            let map = try registry.claim(boxDirectory: box)
            let t1 = monotonicNanos()
            let ns = dbx_userns_create(map.rootUID, map.rootGID, BoxIDMap.size)
            #expect(ns >= 0)
            let t2 = monotonicNanos()
            #expect(dbx_idmapped_mount("/", ns, box + "/l", 1) == 0)
            let t3 = monotonicNanos()
            close(ns)
            claim.append(Double(t1 - t0) / 1000); userns.append(Double(t2 - t1) / 1000)
            idmap.append(Double(t3 - t2) / 1000); total.append(Double(t3 - t0) / 1000)
            _ = dbx_umount(box + "/l", 0)
            registry.release(map, boxDirectory: box)
        }
        func median(_ a: [Double]) -> Int { Int(a.sorted()[a.count / 2]) }
        print("userns steps (median of 20, µs): claim \(median(claim)), userns \(median(userns)), idmap one layer \(median(idmap)), total \(median(total))")
        // A figure to read, not a timed test (speed is measured by benchmarks): only a hang fails.
        #expect(median(total) < 1_000_000)
    }
}

func usernsReadLink(_ path: String) -> String? {
    var buf = [CChar](repeating: 0, count: 4097)
    let n = readlink(path, &buf, 4096)
    guard n > 0 else { return nil }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
