// User namespaces and idmapped mounts for boxes (see CDevbox.h, UserNamespace.swift).
#define _GNU_SOURCE
#include "CDevbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
#endif
#ifndef MOUNT_ATTR_NODEV
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct dbx_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

// The child only holds the new namespace open until the parent has its descriptor: it
// shares the parent's memory (CLONE_VM, no page-table copy of a large service), so it
// touches nothing but its own stack and raw syscalls. It drops its copy of the descriptor
// table at once (it held serve.lock's flock, among others) and dies with its parent: a
// serve killed with -9 in this window must leave no process that keeps the data dir locked.
static int userns_child(void *arg) {
    pid_t parent = (pid_t)(intptr_t)arg;
    syscall(SYS_close_range, 0U, ~0U, 0U);
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (syscall(SYS_getppid) != parent) syscall(SYS_exit, 0);
    for (;;) syscall(SYS_pause);
    return 0;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int e = errno;
    close(fd);
    if (n != (ssize_t)len) { errno = n < 0 ? e : EIO; return -1; }
    return 0;
}

int dbx_userns_create(uint32_t uid_base, uint32_t gid_base, uint32_t count) {
    const size_t stack_size = 64 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    pid_t pid = clone(userns_child, (char *)stack + stack_size, CLONE_NEWUSER | CLONE_VM | SIGCHLD,
                      (void *)(intptr_t)getpid());
    if (pid < 0) { int e = errno; munmap(stack, stack_size); errno = e; return -1; }
    int result = -1, err = 0;
    char path[64], map[96];
    snprintf(map, sizeof map, "0 %u %u\n", uid_base, count);
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_file(path, map) != 0) { err = errno; goto done; }
    snprintf(map, sizeof map, "0 %u %u\n", gid_base, count);
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    if (write_file(path, map) != 0) { err = errno; goto done; }
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    result = open(path, O_RDONLY | O_CLOEXEC);
    if (result < 0) err = errno;
done:
    kill(pid, SIGKILL);
    // (A reaper of the service may collect it first: ECHILD then.)
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {}
    munmap(stack, stack_size);
    if (result < 0) errno = err;
    return result;
}

int dbx_idmapped_mount(const char *source, int userns_fd, const char *target, int readonly) {
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0) return -1;
    struct dbx_mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV | (readonly ? MOUNT_ATTR_RDONLY : 0);
    attr.userns_fd = (uint64_t)userns_fd;
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    close(fd);
    return 0;
}

int dbx_bind_fd(int fd, const char *target) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return mount(path, target, NULL, MS_BIND, NULL);
}
