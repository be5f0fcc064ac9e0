// See CDevbox.h. Linux only (the sandbox runtime drives crun).
#define _GNU_SOURCE
#include "CDevbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int dbx_spawn(const char *path, char *const argv[], char *const envp[],
              const int *fds, int nfds, int new_session, const char *cwd, pid_t *pid_out) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int high[16];
    int rc;
    if (nfds < 0 || nfds > 16) return EINVAL;

    // Move every source above the target range first, so dup2(src, i) never clobbers
    // a source that a later target still needs. The copies are close-on-exec.
    for (int i = 0; i < nfds; i++) high[i] = -1;
    for (int i = 0; i < nfds; i++) {
        if (fds[i] < 0) continue;
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 32);
        if (high[i] < 0) { rc = errno; goto close_high; }
    }

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    for (int i = 0; i < nfds; i++) {
        if (high[i] >= 0) posix_spawn_file_actions_adddup2(&fa, high[i], i);
        else posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
    }
    if (cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);
    // Nothing else crosses: descriptors other libraries opened without O_CLOEXEC (NIO's
    // listening and accepted sockets among them) must not leak into crun, git or a box.
    posix_spawn_file_actions_addclosefrom_np(&fa, nfds);

    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);  // e.g. SIGPIPE ignored by the service
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_session) flags |= POSIX_SPAWN_SETSID;
    posix_spawnattr_setflags(&attr, flags);

    rc = posix_spawn(pid_out, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
close_high:
    for (int i = 0; i < nfds; i++) if (high[i] >= 0) close(high[i]);
    return rc;
}

int dbx_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/* Sets the hostname of the UTS namespace of the process behind `pidfd` (whose pid is
   `pid`), from the calling thread: setns into it, sethostname, setns back. Refuses (EPERM)
   when that namespace is the caller's own, so a mistaken target can never rename the host.
   Returns 0, or -1 with errno; -2 when the thread could not return to its own namespace. */
int dbx_sethostname_in(int pidfd, pid_t pid, const char *name, size_t len) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/uts", (int)pid);
    struct stat target, self;
    int own = open("/proc/thread-self/ns/uts", O_RDONLY | O_CLOEXEC);
    if (own < 0) return -1;
    if (stat(path, &target) != 0 || fstat(own, &self) != 0) { int e = errno; close(own); errno = e; return -1; }
    if (target.st_ino == self.st_ino && target.st_dev == self.st_dev) { close(own); errno = EPERM; return -1; }
    if (setns(pidfd, CLONE_NEWUTS) != 0) { int e = errno; close(own); errno = e; return -1; }
    int rc = sethostname(name, len), e = errno;
    if (setns(own, CLONE_NEWUTS) != 0) rc = -2;
    close(own);
    errno = e;
    return rc;
}

int dbx_pidfd_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static int decode(const siginfo_t *si, int *exit_code, int *signal) {
    if (si->si_code == CLD_EXITED) { *exit_code = si->si_status; *signal = 0; }
    else { *exit_code = -1; *signal = si->si_status; }
    return 0;
}

int dbx_wait_pidfd(int pidfd, int nohang, int keep, int *exit_code, int *signal) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int opts = WEXITED | (nohang ? WNOHANG : 0) | (keep ? WNOWAIT : 0);
    int rc;
    do { rc = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, opts); } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    if (si.si_pid == 0) return 1;
    return decode(&si, exit_code, signal);
}

int dbx_wait_pid(pid_t pid, int nohang, int *exit_code, int *signal) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc;
    do { rc = waitid(P_PID, (id_t)pid, &si, WEXITED | (nohang ? WNOHANG : 0)); } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    if (si.si_pid == 0) return 1;
    return decode(&si, exit_code, signal);
}

int dbx_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

/* From linux/fs.h (not included: it clashes with glibc's sys/mount.h on some versions). */
#define DBX_FS_IOC_GETFLAGS _IOR('f', 1, long)
#define DBX_FS_IOC_SETFLAGS _IOW('f', 2, long)
#define DBX_FS_TOPDIR_FL 0x00020000

int dbx_set_topdir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    int flags = 0;
    int r = ioctl(fd, DBX_FS_IOC_GETFLAGS, &flags);
    if (r == 0 && !(flags & DBX_FS_TOPDIR_FL)) {
        flags |= DBX_FS_TOPDIR_FL;
        r = ioctl(fd, DBX_FS_IOC_SETFLAGS, &flags);
    }
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

int dbx_is_topdir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    int flags = 0;
    int r = ioctl(fd, DBX_FS_IOC_GETFLAGS, &flags);
    close(fd);
    return r == 0 ? ((flags & DBX_FS_TOPDIR_FL) != 0) : -1;
}

int dbx_memfd_with(const char *name, const void *data, size_t len) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) { if (errno == EINTR) continue; int e = errno; close(fd); errno = e; return -1; }
        p += n; left -= (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int dbx_pipe(int fds[2], int nonblock_read, int nonblock_write) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -1;
    if (nonblock_read) dbx_set_nonblocking(fds[0], 1);
    if (nonblock_write) dbx_set_nonblocking(fds[1], 1);
    return 0;
}

int dbx_set_nonblocking(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl);
}

int dbx_listen_unix_at(int dirfd, const char *name) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd, name);
    if (n < 0 || (size_t)n >= sizeof addr.sun_path) { errno = ENAMETOOLONG; return -1; }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 1) < 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    return fd;
}

int dbx_recv_fd(int listen_fd, int timeout_ms, int watch_pidfd) {
    struct pollfd p[2] = { { .fd = listen_fd, .events = POLLIN }, { .fd = watch_pidfd, .events = POLLIN } };
    int n;
    do { n = poll(p, watch_pidfd >= 0 ? 2 : 1, timeout_ms); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (n == 0) { errno = ETIMEDOUT; return -1; }
    if (!(p[0].revents & POLLIN)) { errno = ECHILD; return -1; }
    int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) return -1;

    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    memset(&ctl, 0, sizeof ctl);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    ssize_t r;
    do { r = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC); } while (r < 0 && errno == EINTR);
    int e = errno;
    close(conn);
    if (r < 0) { errno = e; return -1; }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) { errno = EPROTO; return -1; }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

int dbx_set_winsize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws = { .ws_row = rows, .ws_col = cols };
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int dbx_get_winsize(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}

int dbx_open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    long rc;
    do { rc = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (rc < 0 && errno == EINTR);
    return (int)rc;
}

int dbx_open_inside(int dirfd, const char *path, int flags, mode_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long rc;
    do { rc = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (rc < 0 && errno == EINTR);
    return (int)rc;
}

int dbx_o_path(void) { return O_PATH; }

long long dbx_fs_type(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    return (long long)(unsigned long)s.f_type;
}

int dbx_mkwhiteout_at(int dirfd, const char *name) {
    return mknodat(dirfd, name, S_IFCHR | 0000, makedev(0, 0));
}

int dbx_set_opaque(int fd) { return fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0); }

int dbx_is_opaque(int fd) {
    char v[4];
    ssize_t n = fgetxattr(fd, "trusted.overlay.opaque", v, sizeof v);
    return n == 1 && v[0] == 'y';
}

int dbx_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data) {
    return mount(source, target, fstype, flags, data);
}

int dbx_umount(const char *target, int flags) { return umount2(target, flags); }

long long dbx_nofile_hard_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -1;
    return rl.rlim_max == RLIM_INFINITY ? -1 : (long long)rl.rlim_max;
}

int dbx_errno(void) { return errno; }
