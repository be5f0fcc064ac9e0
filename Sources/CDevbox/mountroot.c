// See CDevbox.h. Linux only.
#define _GNU_SOURCE
#include "CDevbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/stat.h>

int dbx_is_mount_root(const char *path) {
    struct statx st;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &st) != 0) return -1;
    if (!(st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) {
        errno = ENOTSUP;
        return -1;
    }
    return (st.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
}

int dbx_set_fsids(unsigned int uid, unsigned int gid) {
    setfsgid(gid);
    setfsuid(uid);
    // Each call answers the previous id; asking again with an invalid id reads the current one.
    int nowU = setfsuid((uid_t)-1), nowG = setfsgid((gid_t)-1);
    return ((unsigned int)nowU == uid && (unsigned int)nowG == gid) ? 0 : -1;
}
