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

/// 1 if `path` (its last component not followed) is the root of a mount, 0 if not; -1 with
/// errno if it cannot be looked up, or ENOTSUP if the kernel does not say (statx(2)'s
/// STATX_ATTR_MOUNT_ROOT, Linux >= 5.8).
int dbx_is_mount_root(const char *path);

/// Sets the calling thread's filesystem uid and gid (setfsuid(2)/setfsgid(2), per thread);
/// returns 0, or -1 if the kernel kept the old ids.
int dbx_set_fsids(unsigned int uid, unsigned int gid);

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


// ---- Netlink: per-box network plumbing (netlink.c) --------------------------------------
// Unlike the functions above, these return 0 (or a descriptor, ifindex or count) on
// success and -errno on failure; none aborts except dbx_socket_in_netns (see there).
// `fd` is a NETLINK_ROUTE socket from dbx_nl_open or dbx_socket_in_netns: a request acts
// on the network namespace that socket was created in. One socket must not be used by
// two threads at once. IPv4 addresses are uint32_t in host byte order (10.200.0.2 is
// 0x0AC80002). Interface names are 1 to 15 bytes (-EINVAL otherwise).

/// Buffer size of one interface name, NUL included (IFNAMSIZ).
#define DBX_IFNAMSIZ 16

/// One IPv4 route of the main table (RTM_NEWROUTE as dumped).
struct dbx_route4 {
    uint32_t dst;       ///< destination, host byte order (0 with dst_len 0: default)
    uint32_t gateway;   ///< 0: none
    int32_t oif;        ///< output ifindex, 0: none
    uint8_t dst_len;
    uint8_t type;       ///< RTN_UNICAST (1), RTN_LOCAL (2), RTN_UNREACHABLE (7)...
    uint8_t protocol;   ///< RTPROT_KERNEL (2), RTPROT_BOOT (3), RTPROT_STATIC (4), or ours
    uint8_t scope;      ///< RT_SCOPE_UNIVERSE (0), RT_SCOPE_LINK (253), RT_SCOPE_HOST (254)
};

/// A close-on-exec NETLINK_ROUTE socket in the calling thread's network namespace.
int dbx_nl_open(void);

/// Creates a socket in the network namespace `nsfd` (an open /proc/<pid>/ns/net): the
/// calling thread enters it (setns), creates the socket (SOCK_CLOEXEC added) and returns
/// to its own namespace. A socket stays in the namespace it was created in, so a
/// NETLINK_ROUTE socket made here configures that namespace, an AF_INET one binds and
/// connects from inside it. If the thread cannot return to its namespace the process
/// aborts: a thread left in a box's namespace must never run on.
int dbx_socket_in_netns(int nsfd, int domain, int type, int protocol);

/// Creates a veth pair: `host_name` in `fd`'s namespace, its peer `peer_name` created
/// directly in the namespace `peer_nsfd` (-1: in `fd`'s namespace too). Both down.
/// -EEXIST if either name is taken in its namespace.
int dbx_nl_veth_create(int fd, const char *host_name, const char *peer_name, int peer_nsfd);

/// The ifindex (> 0) of the link named `name`; -ENODEV if there is none.
int dbx_nl_link_index(int fd, const char *name);

/// Sets IFF_UP on the link `ifindex`.
int dbx_nl_link_set_up(int fd, int ifindex);

/// Deletes the link named `name` (for a veth, both ends). -ENODEV if there is none:
/// callers that want idempotence treat that as done.
int dbx_nl_link_delete(int fd, const char *name);

/// Names of the links whose name starts with `prefix` ("" or NULL: all): the first
/// `max` are stored in `names` (`max` slots of DBX_IFNAMSIZ bytes, NUL-terminated); returns how many there are (call again with a larger
/// buffer if that exceeds `max`).
int dbx_nl_link_names(int fd, const char *prefix, char *names, int max);

/// Adds the IPv4 address `address`/`prefix_len` to the link `ifindex` (which also
/// installs the kernel's route of the subnet). -EEXIST if already there.
int dbx_nl_addr_add4(int fd, int ifindex, uint32_t address, uint8_t prefix_len);

/// Adds a route `dst`/`dst_len` to the main table. `type`: RTN_UNICAST (1, `gateway`
/// and/or `oif` > 0 say where; without a gateway the route is link-scoped) or
/// RTN_UNREACHABLE (7, neither gateway nor oif). `protocol` tags the route's owner
/// (RTPROT_STATIC 4, or a private number above 4). `replace` 0: -EEXIST if a route of
/// that prefix (and metric) exists; 1: it is replaced, whoever made it (`ip route replace`).
int dbx_nl_route_add4(int fd, uint32_t dst, uint8_t dst_len, uint32_t gateway, int oif,
                      uint8_t type, uint8_t protocol, int replace);

/// Deletes the main-table route `dst`/`dst_len` of that `type` and `protocol` (0: any);
/// -ESRCH if there is no such route.
int dbx_nl_route_del4(int fd, uint32_t dst, uint8_t dst_len, uint8_t type, uint8_t protocol);

/// Dumps the IPv4 routes of the main table: the first `max` go to `out`; returns how
/// many there are (call again with a larger buffer if that exceeds `max`).
int dbx_nl_route_dump4(int fd, struct dbx_route4 *out, int max);
// ---- end of Netlink ----------------------------------------------------------------------

// ---- User namespaces and idmapped mounts (userns.c) -------------------------------------
/// A new user namespace mapping ids 0..count-1 to uid_base.. / gid_base.. of the caller's:
/// an O_CLOEXEC descriptor of it, or -1 with errno. Made by a short-lived child (clone
/// with CLONE_NEWUSER|CLONE_VM) that exits before this returns.
int dbx_userns_create(uint32_t uid_base, uint32_t gid_base, uint32_t count);
/// Clones the mount at `source` (not its submounts), idmaps it with `userns_fd`
/// (MOUNT_ATTR_IDMAP, nodev, read-only if asked) and attaches it at `target`. 0 or -1/errno.
int dbx_idmapped_mount(const char *source, int userns_fd, const char *target, int readonly);
/// Bind-mounts what descriptor `fd` refers to (e.g. a namespace) onto `target`. 0 or -1/errno.
int dbx_bind_fd(int fd, const char *target);
// ---- end of user namespaces ---------------------------------------------------------------

// ---- Loop devices (loop.c): per-box disk images ------------------------------------------
/// Binds the open image file `image_fd` to a free loop device (LOOP_CTL_GET_FREE, then
/// LOOP_CONFIGURE with LO_FLAGS_AUTOCLEAR and 4 KiB blocks; a device another process took
/// in between, EBUSY, is skipped and the next free one tried). Returns an O_RDWR
/// close-on-exec descriptor of /dev/loop<n> and stores n. Keep it open until the
/// filesystem on it is mounted: autoclear unbinds the device at its last close.
int dbx_loop_attach(int image_fd, int *number_out);
/// LOOP_CLR_FD on an open loop device (with autoclear: at its last close).
int dbx_loop_detach(int loop_fd);
// ---- end of loop devices -------------------------------------------------------------------

// ---- Layer copies (layercopy.c): snapshots, Sandbox/LayerCopy.swift -------------------------
/// copy_file_range(2) between offsets of two descriptors; bytes copied or -1/errno.
long long dbx_copy_file_range(int in_fd, long long *in_off, int out_fd, long long *out_off, long long len);
/// lseek(fd, offset, SEEK_DATA) and SEEK_HOLE; -1/errno (ENXIO: no data after offset).
long long dbx_seek_data(int fd, long long offset);
long long dbx_seek_hole(int fd, long long offset);
/// O_NOATIME for open(2).
int dbx_o_noatime(void);
/// llistxattr / lgetxattr / lsetxattr (never following a symlink).
long dbx_llistxattr(const char *path, char *list, unsigned long size);
long dbx_lgetxattr(const char *path, const char *name, void *value, unsigned long size);
int dbx_lsetxattr(const char *path, const char *name, const void *value, unsigned long size);
// ---- end of layer copies --------------------------------------------------------------------

#ifdef __cplusplus
}
#endif
