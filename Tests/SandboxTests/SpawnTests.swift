import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Reads `fd` until `done(text)` holds, EOF/EIO, or the timeout (on a dedicated thread).
func readUntil(_ fd: Int32, timeoutMillis: Int = 10_000, _ done: @escaping @Sendable (String) -> Bool) async -> String {
    await onDedicatedThread { () -> String in
        var acc: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        let end = monotonicNanos() + UInt64(timeoutMillis) * 1_000_000
        while monotonicNanos() < end {
            var p = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if poll(&p, 1, 50) <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            acc += buf[0..<n]
            if done(String(decoding: acc, as: UTF8.self)) { break }
        }
        return String(decoding: acc, as: UTF8.self)
    }
}

func writeString(_ fd: Int32, _ s: String) { _ = writeAll(fd: fd, Array(s.utf8)) }

@Suite struct SpawnTests {
    @Test func ptyTtyResizeAndCtrlC() async throws {
        try await withHarness("pty") { h in
            try await h.create("p1")
            // tty(1) on the PTY.
            let t = try h.runtime.spawn(id: "p1", BoxProcessSpec(argv: ["tty"], tty: TerminalSize(rows: 24, cols: 80)))
            #expect(t.stdin == t.stdout && t.stderr == nil)
            let out = await readUntil(t.stdout) { $0.contains("\n") }
            #expect(out.range(of: #"^/dev/pts/[0-9]+\r\n"#, options: .regularExpression) != nil, "\(out)")
            let st = await t.wait()
            #expect(st.exitCode == 0)
            closeFD(t.stdout)

            // An interactive shell: initial size, resize, then Ctrl-C interrupts sleep.
            let sh = try h.runtime.spawn(id: "p1", BoxProcessSpec(argv: ["/bin/sh"], tty: TerminalSize(rows: 24, cols: 80)))
            writeString(sh.stdout, "stty size; echo MARK1\n")
            let s1 = await readUntil(sh.stdout) { $0.contains("MARK1\r\n") && $0.components(separatedBy: "MARK1").count > 2 }
            #expect(s1.contains("24 80\r\n"), "\(s1)")
            try sh.resize(TerminalSize(rows: 40, cols: 132))
            writeString(sh.stdout, "stty size; echo MARK2\n")
            let s2 = await readUntil(sh.stdout) { $0.components(separatedBy: "MARK2").count > 2 }
            #expect(s2.contains("40 132\r\n"), "\(s2)")
            writeString(sh.stdout, "sleep 30; echo \"S\"\"LEPT\"\n")
            try await Task.sleep(for: .milliseconds(300))
            let before = ContinuousClock.now
            writeString(sh.stdout, "\u{03}")
            writeString(sh.stdout, "echo AFTER$((1+1))\n")
            let s3 = await readUntil(sh.stdout) { $0.contains("AFTER2") }
            #expect(s3.contains("AFTER2"), "\(s3)")
            #expect(!s3.contains("SLEPT"))
            #expect(ContinuousClock.now - before < .seconds(20))  // the sleep is 30 s
            writeString(sh.stdout, "exit 7\n")
            let st2 = await sh.wait()
            #expect(st2.exitCode == 7)
            closeFD(sh.stdout)
        }
    }

    @Test func pipesSignalAndWait() async throws {
        try await withHarness("spawn") { h in
            try await h.create("s1")
            let p = try h.runtime.spawn(id: "s1", BoxProcessSpec(argv: ["sh", "-c", "read x; echo got:$x; echo e >&2; exit 4"]))
            let stdin = try #require(p.stdin)
            let stderr = try #require(p.stderr)
            writeString(stdin, "abc\n")
            p.closeStdin()
            let out = await readUntil(p.stdout) { $0.contains("\n") }
            let err = await readUntil(stderr) { $0.contains("\n") }
            #expect(out == "got:abc\n")
            #expect(err == "e\n")
            let st = await p.wait()
            #expect(st.exitCode == 4 && st.signal == nil)
            let again = await p.wait()
            #expect(again.exitCode == 4)
            closeFD(p.stdout); closeFD(stderr)

            // signal() reaches the process inside the box and its children.
            let q = try h.runtime.spawn(id: "s1", BoxProcessSpec(argv: ["sh", "-c", "sleep 60 & sleep 60"]))
            try await Task.sleep(for: .milliseconds(200))
            q.signal(SIGTERM)
            let qs = await q.wait()
            #expect(qs.signal == SIGTERM)
            var names: [String] = []
            for _ in 0..<40 {
                names = try await h.sh("s1", "for p in /proc/[0-9]*; do cat $p/comm; done").out.split(separator: "\n").map(String.init)
                if !names.contains("sleep") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(!names.contains("sleep"), "\(names)")
            q.closeStdin(); closeFD(q.stdout); if let e = q.stderr { closeFD(e) }
            // No zombie children left behind by our crun/box processes. Only `crun` children
            // count: suites running in parallel in this process (the SDK's `ssh`, git) have their own.
            var zombies = zombieChildCount(named: "crun")
            for _ in 0..<30 where zombies > 0 {
                try await Task.sleep(for: .milliseconds(100))
                zombies = zombieChildCount(named: "crun")
            }
            #expect(zombies == 0)
        }
    }
}

func zombieChildCount(named comm: String? = nil) -> Int {
    let me = getpid()
    var n = 0
    for tid in MaskPlan.listDirectory("/proc/\(me)/task") {
        for p in (readSmallFile("/proc/\(me)/task/\(tid)/children") ?? "").split(separator: " ") {
            if let stat = readSmallFile("/proc/\(p)/stat"), let i = stat.lastIndex(of: ")"),
               stat[stat.index(after: i)...].dropFirst().first == "Z" {
                if let comm, !stat.contains("(\(comm))") { continue }
                n += 1
            }
        }
    }
    return n
}

@Suite struct SpawnFDTests {
    /// A descriptor opened without O_CLOEXEC (as NIO opens its sockets) must not reach a
    /// spawned program: the child sees its standard streams and the fds it was given only.
    @Test func onlyTheGivenDescriptorsCross() throws {
        let leaky = open("/dev/null", O_RDONLY)  // no O_CLOEXEC
        #expect(leaky > 2)
        defer { close(leaky) }
        let r = try runCommandBlocking("/bin/sh", ["sh", "-c", "ls /proc/$$/fd"])
        #expect(r.status == 0)
        let fds = Set(r.stdoutText.split(separator: "\n").compactMap { Int32($0) })
        #expect(fds.isSubset(of: [0, 1, 2, 3, 4]), "\(fds.sorted())")
        #expect(!fds.contains(leaky) || leaky <= 4)
    }
}
