import Foundation
import Synchronization
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// The helper programs of image import and the base image build (tar, sha256sum,
/// debootstrap) on the sandbox's spawn primitive (issue 20): output tails, exit status,
/// lines as they come, a timeout that kills the process group, no leftovers.
@Suite struct HostCommandTests {
    @Test func stdoutStderrAndExitStatus() async throws {
        let r = try await onDedicatedThread {
            try HostCommand.run("/bin/sh", ["-c", "printf 'out'; printf 'err' >&2; exit 3"])
        }
        #expect(r.status == 3)
        #expect(r.stdoutText == "out")
        #expect(r.stderrText == "err")
        #expect(!r.timedOut && !r.stdout.truncated && !r.stderr.truncated)
    }

    @Test func tailsKeepTheLastBytes() async throws {
        // 300 KiB on each stream through 4 KiB tails: the last bytes, marked truncated.
        let script = "head -c 307200 /dev/zero | tr '\\0' a; printf END; head -c 307200 /dev/zero | tr '\\0' b >&2; printf FIN >&2"
        let r = try await onDedicatedThread {
            try HostCommand.run("/bin/sh", ["-c", script], options: .init(stdoutLimit: 4096, stderrLimit: 4096))
        }
        #expect(r.status == 0)
        #expect(r.stdout.bytes.count == 4096 && r.stdout.truncated)
        #expect(r.stdoutText.hasSuffix("aaaEND"))
        #expect(r.stderr.bytes.count == 4096 && r.stderr.truncated)
        #expect(r.stderrText.hasSuffix("bbbFIN"))
    }

    @Test func mergedOutputInLines() async throws {
        let lines = Mutex<[String]>([])
        let r = try await onDedicatedThread {
            try HostCommand.run("/bin/sh", ["-c", "echo one; echo two >&2; echo; printf three"],
                                options: .init(mergeStderr: true)) { line in lines.withLock { $0.append(line) } }
        }
        #expect(r.status == 0)
        #expect(lines.withLock { $0 } == ["one", "two", "three"])
        #expect(r.stdoutText == "one\ntwo\n\nthree")
        #expect(r.stderr.bytes.isEmpty)
    }

    @Test func signalAndMissingProgram() async throws {
        let r = try await onDedicatedThread { try HostCommand.run("/bin/sh", ["-c", "kill -TERM $$"]) }
        #expect(r.status == 128 + SIGTERM)
        #expect(throws: (any Error).self) { try HostCommand.run("/nonexistent/tool", []) }
    }

    @Test func timeoutKillsTheProcessGroup() async throws {
        // The shell's child (a sleep in the background, holding the pipes) goes with it.
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("hostcmd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { unlink(pidFile) }
        let started = monotonicNanos()
        let r = try await onDedicatedThread {
            try HostCommand.run("/bin/sh", ["-c", "sleep 30 & echo $! > \(pidFile); echo started; wait"],
                                options: .init(timeout: .seconds(2), newSession: true))
        }
        let elapsed = Double(monotonicNanos() - started) / 1e9
        #expect(r.timedOut)
        #expect(r.status == 128 + SIGKILL)
        #expect(r.stdoutText == "started\n")
        // Far under the sleep's 30 s (loose: a full run keeps the machine busy).
        #expect(elapsed < 15, "took \(elapsed) s")
        let sleeper = pid_t((try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        #expect(sleeper > 0)
        // Killed with its group (SIGKILL; the reaper collects the orphan): gone within a moment.
        var alive = true
        for _ in 0..<100 where alive {
            let state = readSmallFile("/proc/\(sleeper)/stat").flatMap { s in s.lastIndex(of: ")").map { s[s.index($0, offsetBy: 2)] } }
            alive = state != nil && state != "Z"
            if alive { usleep(20_000) }
        }
        #expect(!alive, "the background sleep survived the timeout")
    }

    @Test func aStragglerHoldingThePipeDoesNotHoldTheCaller() async throws {
        // Exits at once, leaving a background sleep with stdout: the read stops a grace later.
        let started = monotonicNanos()
        var options = HostCommand.Options(newSession: true)
        options.stragglerGrace = .milliseconds(200)
        let opts = options
        let r = try await onDedicatedThread { try HostCommand.run("/bin/sh", ["-c", "sleep 30 & echo bye"], options: opts) }
        let elapsed = Double(monotonicNanos() - started) / 1e9
        #expect(r.status == 0 && !r.timedOut)
        #expect(r.stdoutText == "bye\n")
        #expect(elapsed < 15, "took \(elapsed) s")
    }

    @Test func sha256OfAFileAsImageImportTakesIt() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hostcmd-sha-\(getpid())").path
        defer { unlink(path) }
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        let store = ImageStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("hostcmd-store-\(getpid())").path)
        let hex = try await onDedicatedThread { try store.sha256(path) }
        #expect(hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
