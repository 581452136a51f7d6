/*
 * An LD_PRELOAD library for tests: fdatasync (and fsync) fail with EIO while the file named
 * by FAIL_FSYNC_IF_EXISTS exists, and behave normally otherwise. The pages stay in the page
 * cache, so this is the kindest form of a failed fsync; the broker must still treat it as
 * the real thing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *trigger = getenv("FAIL_FSYNC_IF_EXISTS");
    return trigger != NULL && access(trigger, F_OK) == 0;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
