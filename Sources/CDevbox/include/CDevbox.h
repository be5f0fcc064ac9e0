// CDevbox: the few Linux calls the Sandbox target needs that Swift's Glibc module
// does not expose (variadic ioctl/prctl, syscalls without glibc wrappers, posix_spawn
// GNU extensions, SCM_RIGHTS). Every function returns -1 and leaves errno set on error
// unless documented otherwise. No function here allocates memory the caller must free.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Spawns `path` with `argv`/`envp` (NULL-terminated) through posix_spawn.
/// `fds[i]` becomes file descriptor `i` in the child for i < nfds (-1: opened on /dev/null).
/// Every other descriptor of the parent is expected to be close-on-exec.
/// `new_session`: POSIX_SPAWN_SETSID, so the child leads its own session and process group.
/// All signals get their default disposition and an empty mask in the child.
/// `cwd` may be NULL. Returns 0 and stores the pid, or an errno value (not -1).
int dbx_spawn(const char *path, char *const argv[], char *const envp[],
              const int *fds, int nfds, int new_session, const char *cwd, pid_t *pid_out);

/// pidfd_open(2): a close-on-exec descriptor that becomes readable when `pid` exits.
int dbx_pidfd_open(pid_t pid);
/// Sets the hostname of the UTS namespace of the process behind `pidfd` (never the caller's own).
int dbx_sethostname_in(int pidfd, pid_t pid, const char *name, size_t len);

/// pidfd_send_signal(2).
int dbx_pidfd_signal(int pidfd, int sig);

/// waitid(P_PIDFD) on `pidfd` (a child of ours). `nohang`: return 1 if it has not exited.
/// `keep`: WNOWAIT (report the status, leave the zombie). On exit returns 0 and stores
/// either the exit code (signal = 0) or the terminating signal (exit_code = -1).
int dbx_wait_pidfd(int pidfd, int nohang, int keep, int *exit_code, int *signal);

/// waitid(P_PID) for `pid` (a child of ours); same conventions as dbx_wait_pidfd.
int dbx_wait_pid(pid_t pid, int nohang, int *exit_code, int *signal);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to us.
int dbx_set_child_subreaper(void);

/// Sets the "top of directory hierarchies" inode flag (FS_TOPDIR_FL, chattr +T) on a
/// directory: ext4's Orlov allocator then spreads its subdirectories over block groups.
/// -1 with errno when the filesystem has no such flag (tmpfs: ENOTTY) or it cannot be set.
int dbx_set_topdir(const char *path);
/// 1 if the directory has FS_TOPDIR_FL, 0 if not, -1 if the flags cannot be read.
int dbx_is_topdir(const char *path);

/// A sealed-size memfd holding `len` bytes of `data`, offset rewound to 0, close-on-exec.
int dbx_memfd_with(const char *name, const void *data, size_t len);

/// pipe2(O_CLOEXEC [| O_NONBLOCK on the read end if `nonblock_read`]).
int dbx_pipe(int fds[2], int nonblock_read, int nonblock_write);

/// Sets or clears O_NONBLOCK.
int dbx_set_nonblocking(int fd, int on);

/// A listening AF_UNIX stream socket bound at `name` inside the directory `dirfd`
/// (bound through /proc/self/fd so long directory paths work). Close-on-exec.
int dbx_listen_unix_at(int dirfd, const char *name);

/// Waits up to `timeout_ms` for one connection on `listen_fd`, receives one descriptor
/// sent with SCM_RIGHTS (crun's --console-socket protocol) and returns it (close-on-exec).
/// Returns -1 with errno ETIMEDOUT on timeout. Also returns early (-1, ECHILD) if
/// `watch_pidfd` >= 0 becomes readable first (the sender died).
int dbx_recv_fd(int listen_fd, int timeout_ms, int watch_pidfd);

/// TIOCSWINSZ / TIOCGWINSZ.
int dbx_set_winsize(int fd, unsigned short rows, unsigned short cols);
int dbx_get_winsize(int fd, unsigned short *rows, unsigned short *cols);

/// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
/// RESOLVE_NO_XDEV: `path` (relative) cannot escape `dirfd` nor follow any symlink.
/// Used for every host-side access to a tree a box controls. O_CLOEXEC is added.
int dbx_open_beneath(int dirfd, const char *path, int flags, mode_t mode);

/// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: symlinks are followed only
/// while they stay beneath `dirfd` (an absolute target, or `..` climbing above `dirfd`,
/// fails with EXDEV); mount points below `dirfd` are crossed. The files API's resolver.
int dbx_open_inside(int dirfd, const char *path, int flags, mode_t mode);

/// O_PATH (Swift's Glibc module does not export it).
int dbx_o_path(void);

/// fstatfs(2) f_type of `fd`, or -1 (errno set).
long long dbx_fs_type(int fd);

/// An overlayfs whiteout (char device 0/0) named `name` in `dirfd`.
int dbx_mkwhiteout_at(int dirfd, const char *name);

/// Marks the directory `fd` opaque for overlayfs (trusted.overlay.opaque = "y").
int dbx_set_opaque(int fd);

/// 1 if `fd` is a directory marked opaque, 0 if not.
int dbx_is_opaque(int fd);

/// mount(2) / umount2(2) without Swift's optional-pointer dance.
int dbx_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data);
int dbx_umount(const char *target, int flags);

/// getrlimit(RLIMIT_NOFILE) hard limit.
long long dbx_nofile_hard_limit(void);

/// The current errno (Swift reads it unreliably across calls).
int dbx_errno(void);

#ifdef __cplusplus
}
#endif
