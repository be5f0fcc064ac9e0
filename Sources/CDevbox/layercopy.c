// See CDevbox.h ("Layer copies"). Snapshot layers (Sandbox/LayerCopy.swift).
#define _GNU_SOURCE
#include "CDevbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

long long dbx_copy_file_range(int in_fd, long long *in_off, int out_fd, long long *out_off, long long len) {
    loff_t a = (loff_t)*in_off, b = (loff_t)*out_off;
    ssize_t n = copy_file_range(in_fd, &a, out_fd, &b, (size_t)len, 0);
    *in_off = (long long)a;
    *out_off = (long long)b;
    return (long long)n;
}

long long dbx_seek_data(int fd, long long offset) { return (long long)lseek(fd, (off_t)offset, SEEK_DATA); }
long long dbx_seek_hole(int fd, long long offset) { return (long long)lseek(fd, (off_t)offset, SEEK_HOLE); }
int dbx_o_noatime(void) { return O_NOATIME; }

long dbx_llistxattr(const char *path, char *list, unsigned long size) { return (long)llistxattr(path, list, size); }
long dbx_lgetxattr(const char *path, const char *name, void *value, unsigned long size) {
    return (long)lgetxattr(path, name, value, size);
}
int dbx_lsetxattr(const char *path, const char *name, const void *value, unsigned long size) {
    return lsetxattr(path, name, value, size, 0);
}
