// The OCI bundle of a box, and what a box can see of the host.
//
// Root filesystem: overlayfs mounted on the host at <box>/rootfs,
//   lowerdir = the base image, or the host's own "/" (read-only: overlay never writes
//   a lower layer; host mounts below "/" such as /proc, /sys, /dev, /mnt/... do not
//   appear at all, overlay works on one filesystem), upperdir/workdir per box.
//   The upper dir persists across stop/start; it is the box's own writable layer.
//
// With the host's "/" as the lower layer (`baseImage == nil`) the box would be the host
// minus capabilities (SANDBOX.md trap 8). Private trees are hidden *in the overlay
// itself*, by a shared read-only "mask" layer stacked between the box's upper dir and
// the host root (lowerdir=<state>/.mask/g<hash>:/, built once per distinct plan on a
// tmpfs, see CrunRuntime.maskLayer):
//   - an opaque directory (trusted.overlay.opaque=y) shows as an empty directory the box
//     may use (writes go to its upper dir); a whiteout (char 0/0) makes a path absent.
//     Unlike a tmpfs over a path these cannot be unmounted or looked behind from
//     inside: the host entry is simply not reachable through the overlay. Deleting or
//     renaming them in the box leaves a whiteout, and a box without CAP_SYS_ADMIN
//     cannot mount.
//   - top level of "/": visible are only bin sbin lib lib32 lib64 libx32 usr etc;
//     root home opt srv mnt media boot var tmp run are empty opaque dirs (/root and
//     /home are the box's own and persist; /tmp and /run are tmpfs as well, capped at half
//     and an eighth of the box's memory: `tmpSizeKiB`, `runSizeKiB`);
//     /proc /sys /dev are mounted; every other top-level entry of the host (work trees
//     such as /work, /farm, stray files) is whited out.
//   - /opt is hidden: on a host it holds vendor software and agents that may carry
//     their own credentials/config; programs a box needs come from /usr. (Here it holds
//     the Swift toolchain: a box that needs it should get it from a base image.)
//   - /var is an empty skeleton (lib, cache, log, spool, tmp..., run -> /run): /var/lib
//     holds service state (databases, the service's own data), /var/backups holds
//     copies of /etc/shadow, /var/log and /var/mail may hold secrets. dpkg's database is
//     therefore absent: apt does not work in a host-root box (use a base image).
//   - /etc stays the host's (passwd, group, hosts, resolv.conf, nsswitch.conf, ssl
//     certs, ld.so.cache, alternatives: programs work unchanged) minus secrets:
//     every entry below /etc that an unprivileged host user could not read (mode lacks
//     o+r, or o+x on a directory: shadow-, gshadow-, ssl/private, sudoers,
//     security/opasswd, pg_hba.conf...) is whited out; all ssh_host_* keys are whited
//     out; /etc/shadow and /etc/gshadow are replaced by locked-password copies made
//     from the host's user and group names; /etc/devbox is the box's own (env file);
//     /etc/hostname holds the box id and /etc/hosts gains "127.0.1.1 <id>".
//   - the state directory (every box's upper, workspace, env) and each path of
//     `hiddenHostPaths` is whited out wherever it sits (its real path and the given one).
//   Limits: this is a deny list over a live host root. A world-readable secret placed in
//   /etc or /usr, or a new top-level host directory created after a box was started,
//   is visible to that box until its next start. A debootstrapped `baseImage` has none
//   of these concerns and should become the default once it is built.
//
// Processes: pid, ipc, uts and mount namespaces; network shared with the host for now
// (`SandboxNetwork.namespace(path:)` is the seam for a per-box netns). PID 1 is the
// host's catatonit bind-mounted read-only at /.devbox/init, run with -P, or for a box with
// setup commands with the setup shell as its child (SetupShell.swift), which ends as a
// second `catatonit -P`.
// Capabilities: Docker's default set; with the host network, minus CAP_NET_RAW and
// CAP_NET_BIND_SERVICE. Masked and read-only /proc paths as Docker. NOFILE rlimit is the
// caller's hard limit (SANDBOX.md trap 2). Seccomp: an allow list in the spirit of Docker's
// default profile (Seccomp.swift): unknown syscalls answer ENOSYS, the refused ones EPERM
// (kernel keyring, mount, new namespaces, bpf, perf_event_open, userfaultfd, io_uring...).

#if canImport(Glibc)
import Glibc
#endif

enum BundleSpec {
    static let dockerCapabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ]
    static let maskedPaths = [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
        "/sys/firmware", "/sys/devices/virtual/powercap",
    ]
    static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    static func capabilities(for network: SandboxNetwork) -> [String] {
        switch network {
        case .host: return dockerCapabilities.filter { $0 != "CAP_NET_RAW" && $0 != "CAP_NET_BIND_SERVICE" }
        case .namespace: return dockerCapabilities
        case .isolated: return dockerCapabilities.filter { $0 != "CAP_NET_RAW" }
        }
    }

    static func nofileLimit() -> Int64 {
        let hard = dbxHardNofile()
        return hard > 0 ? min(hard, 1_048_576) : 1_048_576
    }

    static func rlimits() -> JSON {
        let n = nofileLimit()
        return .array([.object([("type", .string("RLIMIT_NOFILE")), ("hard", .int(n)), ("soft", .int(n))])])
    }

    /// Size cap of the box's /tmp: half its memory limit (tmpfs pages count against the
    /// box's memory, so without a cap a full /tmp is an out-of-memory kill instead of ENOSPC).
    static func tmpSizeKiB(_ limits: BoxLimits) -> Int64 { max(16 << 10, (limits.memoryBytes / 2) >> 10) }
    /// Size cap of the box's /run: an eighth of its memory, between 16 and 256 MiB.
    static func runSizeKiB(_ limits: BoxLimits) -> Int64 { min(256 << 10, max(16 << 10, (limits.memoryBytes / 8) >> 10)) }

    /// config.json for `crun run`.
    static func config(hostname: String, rootfs: String, workspace: String, catatonit: String,
                       cgroupsPath: String, limits: BoxLimits, network: SandboxNetwork,
                       setupShell: Bool = false, envDirectory: String? = nil, userNamespace: String? = nil) -> JSON {
        let caps = JSON.strings(capabilities(for: network))
        let process: JSON = .object([
            ("terminal", .bool(false)),
            ("user", .object([("uid", .int(0)), ("gid", .int(0))])),
            ("args", .strings(setupShell ? SetupShell.boxArgs : ["/.devbox/init", "-P"])),
            ("env", .strings(["PATH=\(defaultPath)"])),
            ("cwd", .string("/")),
            ("capabilities", .object([("bounding", caps), ("effective", caps), ("permitted", caps)])),
            ("rlimits", rlimits()),
            ("noNewPrivileges", .bool(false)),
        ])
        func mount(_ dest: String, _ type: String, _ src: String, _ opts: [String]) -> JSON {
            .object([("destination", .string(dest)), ("type", .string(type)), ("source", .string(src)),
                     ("options", .strings(opts))])
        }
        let mounts: [JSON] = [
            mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
            mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
            mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
            mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1777", "size=\(tmpSizeKiB(limits))k"]),
            mount("/run", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=755", "size=\(runSizeKiB(limits))k"]),
            mount("/workspace", "bind", workspace, ["rbind", "rw"]),
            mount("/.devbox/init", "bind", catatonit, ["bind", "ro", "nosuid", "nodev"]),
        ] + (envDirectory.map { [mount(EnvFile.boxDirectory, "bind", $0, ["bind", "ro", "nosuid", "nodev", "noexec"])] } ?? [])
        var namespaces: [JSON] = ["pid", "ipc", "uts", "mount"].map { .object([("type", .string($0))]) }
        if let userNamespace {
            // Joined first by crun: every namespace it makes (network included) is owned by it.
            // UserNamespace.swift makes it and binds it at this path.
            namespaces.insert(.object([("type", .string("user")), ("path", .string(userNamespace))]), at: 0)
            namespaces.append(.object([("type", .string("cgroup"))]))
        }
        switch network {
        case .host: break
        case .namespace(let path):
            namespaces.append(.object([("type", .string("network")), ("path", .string(path))]))
        case .isolated:
            namespaces.append(.object([("type", .string("network"))]))
        }
        var resources: [(String, JSON)] = [
            ("devices", .array(deviceRules())),
            ("memory", .object([("limit", .int(limits.memoryBytes)), ("swap", .int(limits.memoryBytes))])),
            ("pids", .object([("limit", .int(Int64(limits.pids)))])),
        ]
        if limits.cpus > 0 {
            let period: Int64 = 100_000
            resources.append(("cpu", .object([("quota", .int(max(1000, Int64(limits.cpus * Double(period))))),
                                              ("period", .int(period))])))
        }
        let linux: JSON = .object([
            ("seccomp", Seccomp.profile),
            ("namespaces", .array(namespaces)),
            ("cgroupsPath", .string(cgroupsPath)),
            ("resources", .object(resources)),
            ("maskedPaths", .strings(maskedPaths)),
            ("readonlyPaths", .strings(readonlyPaths)),
        ])
        return .object([
            ("ociVersion", .string("1.0.2")),
            ("process", process),
            ("root", .object([("path", .string(rootfs)), ("readonly", .bool(false))])),
            ("hostname", .string(hostname)),
            ("mounts", .array(mounts)),
            ("linux", linux),
        ])
    }

    /// Docker's default device cgroup rules.
    static func deviceRules() -> [JSON] {
        func rule(_ allow: Bool, _ type: String?, _ major: Int64?, _ minor: Int64?, _ access: String) -> JSON {
            var o: [(String, JSON)] = [("allow", .bool(allow))]
            if let type { o.append(("type", .string(type))) }
            if let major { o.append(("major", .int(major))) }
            if let minor { o.append(("minor", .int(minor))) }
            o.append(("access", .string(access)))
            return .object(o)
        }
        return [
            rule(false, nil, nil, nil, "rwm"),
            rule(true, "c", nil, nil, "m"), rule(true, "b", nil, nil, "m"),
            rule(true, "c", 1, 3, "rwm"), rule(true, "c", 1, 5, "rwm"), rule(true, "c", 1, 7, "rwm"),
            rule(true, "c", 1, 8, "rwm"), rule(true, "c", 1, 9, "rwm"), rule(true, "c", 5, 0, "rwm"),
            rule(true, "c", 5, 1, "rwm"), rule(true, "c", 5, 2, "rwm"), rule(true, "c", 136, nil, "rwm"),
        ]
    }

    /// process.json for `crun exec --process`.
    static func execProcess(argv: [String], env: [String], cwd: String, tty: TerminalSize?) -> JSON {
        var o: [(String, JSON)] = [("terminal", .bool(tty != nil))]
        if let tty {
            o.append(("consoleSize", .object([("height", .int(Int64(tty.rows))), ("width", .int(Int64(tty.cols)))])))
        }
        o += [
            ("user", .object([("uid", .int(0)), ("gid", .int(0))])),
            ("args", .strings(argv)),
            ("env", .strings(env)),
            ("cwd", .string(cwd)),
            ("rlimits", rlimits()),
        ]
        return .object(o)
    }
}

import CDevbox
func dbxHardNofile() -> Int64 { Int64(dbx_nofile_hard_limit()) }
