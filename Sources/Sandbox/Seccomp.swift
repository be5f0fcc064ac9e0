// The seccomp profile of every box: an allow list in the spirit of Docker's default profile
// (moby profiles/seccomp/default.json) for the capabilities a box has (Docker's default set,
// BundleSpec.dockerCapabilities: no CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE...).
//
// - A syscall the profile does not name fails with ENOSYS: a program that probes a newer
//   syscall (clone3, fchmodat2, futex_waitv on an older libseccomp...) takes its fallback,
//   as it would on an older kernel. That is also the answer to a raw syscall number the
//   profile does not know.
// - A syscall the profile refuses on purpose fails with EPERM, as it would for a process
//   without the privilege: the kernel keyring (keyrings are not namespaced: box root would
//   share host root's user keyring), mount and the new mount API, new namespaces (unshare,
//   setns, clone with a CLONE_NEW* flag: a new user namespace hands box root
//   CAP_SYS_ADMIN over fresh namespaces and a large kernel surface), bpf, perf_event_open,
//   userfaultfd, io_uring (Docker refuses it since 25.0: a large, often-exploited kernel
//   surface; programs fall back to epoll/threads), kexec, modules, swap, clock setting,
//   quotactl, open_by_handle_at (the "shocker" escape), raw I/O ports, kcmp, pidfd_getfd,
//   NUMA policy, socket(AF_VSOCK) (the host's hypervisor sockets).
// - clone3 answers ENOSYS: its flags sit in memory seccomp cannot read, so libc falls back
//   to clone, whose flags are checked.
// - personality: only the values Docker allows (Linux, 32-bit Linux, UNAME26, query);
//   others (ADDR_NO_RANDOMIZE: `setarch -R`, gdb's "disable-randomization") answer ENOSYS.
// - ptrace and process_vm_* are allowed (Docker allows them on kernels >= 4.8): gdb and
//   strace work on the box's own processes.
//
// - Only the native x86-64 ABI: a syscall through the i386 (int 0x80) or x32 ABI is a "bad
//   architecture" for the filter and kills the thread with SIGSYS. Docker allows both; a dev
//   box runs 64-bit toolchains, those compat paths have a history of kernel bugs, and each
//   extra architecture made crun's compile of the filter (at every `crun run`: a cold create,
//   a start) about 10 ms slower on this machine.
//
// Built and serialized once per process (`profile`); every config.json copies those bytes.
// x86-64 hosts only.

enum Seccomp {
    static let eperm: Int64 = 1
    static let enosys: Int64 = 38

    /// Allowed with any arguments.
    static let allowed: [String] = [
        // files and directories
        "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat",
        "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fchdir",
        "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
        "fgetxattr", "flistxattr", "flock", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
        "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
        "getdents64", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1",
        "inotify_rm_watch", "fanotify_mark", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listxattr",
        "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
        "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2",
        "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
        "readlinkat", "readv", "removexattr", "removexattrat", "rename", "renameat", "renameat2", "rmdir",
        "sendfile", "sendfile64", "setxattr", "setxattrat", "splice", "stat", "stat64", "statfs", "statfs64",
        "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
        "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice", "write",
        "writev", "cachestat",
        // memory
        "brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock", "mlock2",
        "mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap",
        "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages", "map_shadow_stack", "mseal",
        // processes, threads, signals
        "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork", "futex",
        "futex_time64", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "get_robust_list",
        "set_robust_list", "get_thread_area", "set_thread_area", "set_tid_address", "getcpu", "getegid",
        "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getpgid",
        "getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresgid32", "getresuid", "getresuid32",
        "getrlimit", "getrusage", "getsid", "gettid", "getuid", "getuid32", "ioprio_get", "ioprio_set", "kill",
        "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall", "rseq",
        "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
        "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
        "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
        "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsgid32", "setfsuid",
        "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setpgid", "setpriority", "setregid",
        "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
        "setrlimit", "setsid", "setuid", "setuid32", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
        "sigreturn", "tgkill", "tkill", "ugetrlimit", "uname", "wait4", "waitid", "waitpid",
        "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "chroot",
        "ptrace", "process_vm_readv", "process_vm_writev", "arch_prctl", "modify_ldt",
        // time
        "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
        "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
        "gettimeofday", "nanosleep", "pause", "setitimer", "time", "timer_create", "timer_delete",
        "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
        "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
        "times", "sysinfo",
        // waiting and I/O multiplexing, aio
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
        "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "_newselect", "select", "pselect6",
        "pselect6_time64", "poll", "ppoll", "ppoll_time64", "pipe", "pipe2", "ioctl", "io_cancel",
        "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit",
        // IPC
        "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
        "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl",
        "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
        // sockets (socket itself: below, without AF_VSOCK)
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv",
        "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
        "setsockopt", "shutdown", "socketcall", "socketpair", "getrandom",
    ]

    /// Refused with EPERM whatever the arguments (see the file comment).
    static let refused: [String] = [
        "add_key", "keyctl", "request_key",
        "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
        "open_tree", "open_tree_attr", "mount_setattr", "statmount", "listmount",
        "unshare", "setns",
        "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "lookup_dcookie",
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
        "query_module", "get_kernel_syms", "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl",
        "quotactl_fd", "open_by_handle_at", "settimeofday", "stime", "clock_settime", "clock_settime64",
        "sethostname", "setdomainname", "iopl", "ioperm", "vhangup", "kcmp", "pidfd_getfd", "process_madvise",
        "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "migrate_pages", "move_pages",
        "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "bdflush",
        "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
    ]

    /// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
    static let cloneNamespaceFlags: [Int64] = [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000,
                                               0x2000_0000, 0x4000_0000]
    /// PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query).
    static let personalities: [Int64] = [0, 8, 0x20000, 0x20008, 0xffff_ffff]
    static let afVsock: Int64 = 40

    /// The profile, built and serialized once (every config.json copies the bytes).
    static let profile: JSON = .raw(build().serialized())

    static func build() -> JSON {
        func rule(_ names: [String], allow: Bool, errno: Int64 = eperm, _ args: [(Int64, Int64, Int64, String)] = []) -> JSON {
            var o: [(String, JSON)] = [("names", .strings(names))]
            if allow {
                o.append(("action", .string("SCMP_ACT_ALLOW")))
            } else {
                o.append(("action", .string("SCMP_ACT_ERRNO")))
                o.append(("errnoRet", .int(errno)))
            }
            if !args.isEmpty {
                o.append(("args", .array(args.map { index, value, valueTwo, op in
                    .object([("index", .int(index)), ("value", .int(value)), ("valueTwo", .int(valueTwo)),
                             ("op", .string(op))])
                })))
            }
            return .object(o)
        }
        let allNamespaces = cloneNamespaceFlags.reduce(0, |)
        var rules: [JSON] = [
            rule(allowed, allow: true),
            rule(refused, allow: false),
            rule(["clone3"], allow: false, errno: enosys),
            rule(["clone"], allow: true, [(0, allNamespaces, 0, "SCMP_CMP_MASKED_EQ")]),
            rule(["socket"], allow: true, [(0, afVsock, 0, "SCMP_CMP_NE")]),
            rule(["socket"], allow: false, [(0, afVsock, 0, "SCMP_CMP_EQ")]),
        ]
        // One refusing rule per namespace flag: none overlaps the allowing rule above.
        for flag in cloneNamespaceFlags {
            rules.append(rule(["clone"], allow: false, [(0, flag, flag, "SCMP_CMP_MASKED_EQ")]))
        }
        for p in personalities {
            rules.append(rule(["personality"], allow: true, [(0, p, 0, "SCMP_CMP_EQ")]))
        }
        return .object([
            ("defaultAction", .string("SCMP_ACT_ERRNO")),
            ("defaultErrnoRet", .int(enosys)),
            ("architectures", .strings(["SCMP_ARCH_X86_64"])),
            ("syscalls", .array(rules)),
        ])
    }
}
