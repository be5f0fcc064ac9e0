import Foundation
import Testing
@testable import Sandbox

/// The profile's shape (Seccomp.swift); what it does in a real box: Tests/e2e/test_seccomp.py.
@Suite struct SeccompTests {
    @Test func profileIsAnAllowListWithEnosysDefault() throws {
        let allowed = Set(Seccomp.allowed), refused = Set(Seccomp.refused)
        #expect(allowed.count == Seccomp.allowed.count, "a name twice in the allow list")
        #expect(refused.count == Seccomp.refused.count, "a name twice in the refused list")
        #expect(allowed.isDisjoint(with: refused))
        // What the box must never get, and what is only allowed with arguments checked.
        for name in ["keyctl", "add_key", "request_key", "mount", "umount2", "unshare", "setns", "bpf",
                     "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
                     "kexec_load", "init_module", "finit_module", "open_by_handle_at", "pivot_root", "fsopen",
                     "move_mount", "open_tree", "swapon", "reboot", "settimeofday", "clock_settime", "iopl"] {
            #expect(refused.contains(name), "\(name)")
            #expect(!allowed.contains(name), "\(name)")
        }
        for name in ["clone", "clone3", "socket", "personality"] { #expect(!allowed.contains(name) && !refused.contains(name)) }
        let text = String(decoding: Seccomp.profile.serialized(), as: UTF8.self)
        #expect(text.hasPrefix(#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"#))
        #expect(text.contains(#"{"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38}"#))
        // clone is allowed only without a namespace flag (mask 0x7E020000 → 2114060288).
        #expect(text.contains(#"{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}"#))
    }

    /// The figure for the create path: what the profile adds to every config.json.
    @Test func configSizeAndSerializationTime() {
        let limits = BoxLimits(memoryBytes: 512 << 20, cpus: 1, pids: 256)
        func config() -> [UInt8] {
            BundleSpec.config(hostname: "h", rootfs: "/r", workspace: "/w", catatonit: "/c", cgroupsPath: "/g/b",
                              limits: limits, network: .isolated).serialized()
        }
        _ = config()
        let n = 200
        let t0 = monotonicNanos()
        var size = 0
        for _ in 0..<n { size = config().count }
        let perConfig = Double(monotonicNanos() - t0) / Double(n) / 1000
        let profile = Seccomp.profile.serialized().count
        let t1 = monotonicNanos()
        for _ in 0..<n { _ = Seccomp.build().serialized() }
        let rebuild = Double(monotonicNanos() - t1) / Double(n) / 1000
        print(String(format: "BENCH config.json %d bytes (seccomp profile %d), serialized in %.0f µs (building and serializing the profile each time would add %.0f µs)",
                     size, profile, perConfig, rebuild))
        #expect(profile < 16 << 10)
    }
}
