// See CDevbox.h ("Loop devices"). Per-box disk images (Sandbox/BoxDisk.swift).
#define _GNU_SOURCE
#include "CDevbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
#endif

static void short_sleep(long nanos) {
    struct timespec ts = { 0, nanos };
    nanosleep(&ts, NULL);
}

// Opens /dev/loop<n>; the node may lag the device LOOP_CTL_GET_FREE just added by a moment.
static int open_loop_node(int n) {
    char path[32];
    snprintf(path, sizeof path, "/dev/loop%d", n);
    for (int i = 0; i < 50; i++) {
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT) return fd;
        short_sleep(1000000);
    }
    errno = ENOENT;
    return -1;
}

int dbx_loop_attach(int image_fd, int *number_out) {
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) return -1;
    int result = -1, saved = EBUSY;
    // LOOP_CTL_GET_FREE only names a device that is free now: another process (another
    // service, losetup) may bind it first, and LOOP_CONFIGURE then fails with EBUSY: retry.
    for (int attempt = 0; attempt < 64; attempt++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) { saved = errno; break; }
        int fd = open_loop_node(n);
        if (fd < 0) { saved = errno; if (saved == EBUSY || saved == ENXIO) continue; break; }
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned)image_fd;
        cfg.block_size = 4096;
        // Autoclear: the device unbinds itself when its last user goes (the unmount of the
        // filesystem on it, or this descriptor's close if nothing was mounted).
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
            *number_out = n;
            result = fd;
            break;
        }
        saved = errno;
        close(fd);
        if (saved != EBUSY) break;
    }
    close(ctl);
    if (result < 0) errno = saved;
    return result;
}

int dbx_loop_detach(int loop_fd) { return ioctl(loop_fd, LOOP_CLR_FD, 0); }
