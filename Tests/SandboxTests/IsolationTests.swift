import Foundation
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

func writeHostFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw BoxRuntimeError.system("open \(path)", errno: errno) }
    defer { close(fd) }
    _ = fchmod(fd, 0o644)
    #expect(writeAll(fd: fd, Array(text.utf8)))
}

@Suite struct IsolationTests {
    @Test func boxCannotSeeHostPrivateTrees() async throws {
        let tag = "iso\(UInt16.random(in: 0...UInt16.max))"
        // World-readable host files in a tree a box would otherwise see (/etc): one hidden
        // through hiddenHostPaths, one control that must stay visible.
        let secretDir = "/etc/dbxt-\(tag)-secret", visibleDir = "/etc/dbxt-\(tag)-visible"
        let rootMarker = "/root/dbxt-\(tag)-marker"
        mkdir(secretDir, 0o755); mkdir(visibleDir, 0o755)
        try writeHostFile(secretDir + "/token", "TOPSECRET")
        try writeHostFile(visibleDir + "/file", "VISIBLE")
        try writeHostFile(rootMarker, "ROOTMARK")
        defer {
            _ = try? HostState.removeTree(secretDir); _ = try? HostState.removeTree(visibleDir); unlink(rootMarker)
        }
        try await withHarness("iso", hidden: [secretDir]) { h in
            try await h.create("a")
            try await h.create("b")
            // Control: host files outside hidden trees are there (the overlay shows the host root).
            #expect(try await h.sh("a", "cat \(visibleDir)/file").out == "VISIBLE")
            let secret = try await h.sh("a", "cat \(secretDir)/token; ls -d \(secretDir)")
            #expect(!secret.out.contains("TOPSECRET") && secret.exitCode != 0)
            #expect(try await h.sh("a", "ls -A /root; cat \(rootMarker)").out.isEmpty)

            // /etc/shadow: present for programs, but not the host's.
            let shadow = try await h.sh("a", "cat /etc/shadow")
            let hostShadow = String(decoding: readFileBytes("/etc/shadow") ?? [], as: UTF8.self)
            #expect(shadow.exitCode == 0 && shadow.out.hasPrefix("root:*:"))
            #expect(shadow.out != hostShadow)
            for line in shadow.out.split(separator: "\n") {
                #expect(line.split(separator: ":", omittingEmptySubsequences: false).dropFirst().first == "*")
            }
            #expect(try await h.sh("a", "ls /etc/ssh/ssh_host_* 2>/dev/null; cat /etc/shadow- /etc/gshadow- /var/backups/shadow.bak 2>/dev/null").out.isEmpty)
            #expect(try await h.sh("a", "ls -A /home /opt /srv /mnt /var/lib /var/log /var/backups /run | grep -v '^/\\|^$' ").out.isEmpty)
            for path in ["/work", "/farm", "/var/lib/\(h.prefix)state", h.state, "/etc/ssl/private"] {
                #expect(try await h.sh("a", "ls -d \(path)").exitCode != 0, "\(path) is visible")
            }

            // Host processes are invisible: only the box's own.
            let procs = try await h.sh("a", "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
            let pids = procs.out.split(separator: " ").compactMap { Int($0) }
            #expect(pids.first == 1)
            #expect(pids.count <= 6, "\(procs.out)")
            #expect(try await h.sh("a", "cat /proc/1/comm").out == "init\n")
            #expect(try await h.sh("a", "ls /proc/\(getpid())").exitCode != 0)

            // Another box's workspace: nowhere in this box.
            let marker = "dbxt-marker-\(tag)"
            _ = try await h.sh("a", "echo A > /workspace/\(marker)")
            let hostPath = h.runtime.workspaceHostPath(id: "a") + "/" + marker
            #expect(access(hostPath, F_OK) == 0)
            #expect(try await h.sh("b", "cat \(hostPath)").exitCode != 0)
            let found = try await h.sh("b", "find / \\( -path /proc -o -path /sys -o -path /usr \\) -prune -o -name '\(marker)*' -print 2>/dev/null")
            #expect(found.out.isEmpty)

            // Tools still work.
            let tools = try await h.sh("a", "bash -c 'echo bash' && git --version >/dev/null && echo git && printf x | sha256sum | cut -c1-8 && ls / >/dev/null && echo ls && cat /etc/passwd >/dev/null && echo cat && test -s /etc/resolv.conf && test -e /etc/ssl/certs/ca-certificates.crt && echo etc")
            #expect(tools.out == "bash\ngit\n2d711642\nls\ncat\netc\n", "\(tools.out) \(tools.err)")
            if access("/usr/bin/python3", X_OK) == 0 {
                #expect(try await h.sh("a", "python3 -c 'print(6*7)'").out == "42\n")
            }
            if access("/usr/lib/openssh/sftp-server", X_OK) == 0 {
                #expect(try await h.sh("a", "test -x /usr/lib/openssh/sftp-server").exitCode == 0)
            }
            // Capabilities: Docker's set minus raw sockets and low ports with the host network.
            let caps = try await h.sh("a", "grep CapEff /proc/self/status")
            #expect(caps.out == "CapEff:\t00000000a80401fb\n", "\(caps.out)")
            // Root inside cannot mount (no CAP_SYS_ADMIN), so hidden trees stay hidden,
            // nor get it back in a new user namespace (seccomp).
            #expect(try await h.sh("a", "mount -t tmpfs none /mnt").exitCode != 0)
            let userns = try await h.sh("a", "unshare -U -r id -u")
            #expect(userns.exitCode != 0 && !userns.out.contains("0"), "\(userns.out) \(userns.err)")
            #expect(try await h.sh("a", "unshare -p -f true; echo $?").out == "1\n")  // no CAP_SYS_ADMIN either
            if access("/usr/bin/python3", X_OK) == 0 {
                // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0): the host root's keyring.
                let key = try await h.sh("a", "python3 -c 'import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.syscall(250,0,-4,0); print(r, ctypes.get_errno())'")
                #expect(key.out == "-1 1\n", "\(key.out) \(key.err)")
                // Threads still start (clone3 -> ENOSYS -> clone fallback).
                #expect(try await h.sh("a", "python3 -c 'import threading; t=threading.Thread(target=print, args=(\"thr\",)); t.start(); t.join()'").out == "thr\n")
            }
        }
    }

    @Test func memoryPidsAndCpuLimits() async throws {
        try await withHarness("lim") { h in
            try await h.create("l1", limits: BoxLimits(memoryBytes: 64 << 20, cpus: 0.5, pids: 40))
            // Over the memory limit: OOM-killed.
            let oom = try await h.sh("l1", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}", timeout: .seconds(30), merge: true)
            #expect(oom.signal == SIGKILL || oom.exitCode == 137, "\(oom.exitCode as Any) \(oom.signal as Any) \(oom.out)")
            #expect(!oom.out.contains("survived"))
            let py = access("/usr/bin/python3", X_OK) == 0
            if py {
                let p = try await h.sh("l1", "python3 -c 'b = bytearray(300 * 1024 * 1024); print(len(b))'", timeout: .seconds(30))
                #expect(p.signal == SIGKILL || p.exitCode == 137, "\(p)")
            }
            // The box survives its OOM kill.
            #expect(try await h.sh("l1", "echo ok").out == "ok\n")
            // Past the pids limit, fork fails.
            let fork = try await h.sh("l1", "for i in $(seq 1 80); do sleep 5 & done; echo spawned", timeout: .seconds(20), merge: true)
            #expect(fork.out.lowercased().contains("fork"), "\(fork.out)")
            _ = try await h.sh("l1", "pkill sleep; true")
            // cgroup files hold the limits.
            let name = h.runtime.containerName("l1"), parent = h.runtime.cgroupParent
            #expect(readSmallFile("/sys/fs/cgroup/memory/\(parent)/\(name)/memory.limit_in_bytes") == "\(64 << 20)\n")
            #expect(readSmallFile("/sys/fs/cgroup/pids/\(parent)/\(name)/pids.max") == "40\n")
            #expect(readSmallFile("/sys/fs/cgroup/cpu/\(parent)/\(name)/cpu.cfs_quota_us") == "50000\n")
        }
    }
}
