/*
 * An LD_PRELOAD library for tests: fdatasync, fsync and syncfs fail with EIO while the file
 * named by FAIL_FSYNC_IF_EXISTS exists, and behave normally otherwise. The pages stay in the
 * page cache, so this is the kindest form of a failed fsync; the broker must still treat it as
 * the real thing. Optional: while the file named by SLOW_FSYNC_IF_EXISTS exists, a call that
 * does not fail first sleeps 1 s (so a test can have writes pile up behind it); every
 * failed call appends its function's name and a newline to the file named by FAIL_FSYNC_LOG.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int exists(const char *variable) {
    const char *path = getenv(variable);
    return path != NULL && access(path, F_OK) == 0;
}

/* 1 (with errno EIO, the failure logged) if the call must fail; sleeps first if slow. */
static int intercept(const char *name) {
    if (exists("FAIL_FSYNC_IF_EXISTS")) {
        const char *log = getenv("FAIL_FSYNC_LOG");
        if (log != NULL) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                char line[32];
                int n = snprintf(line, sizeof line, "%s\n", name);
                (void)!write(fd, line, (size_t)n); /* one write: lines never interleave */
                close(fd);
            }
        }
        errno = EIO;
        return 1;
    }
    if (exists("SLOW_FSYNC_IF_EXISTS"))
        usleep(1000 * 1000);
    return 0;
}

#define INTERCEPT(name)                                          \
    int name(int fd) {                                           \
        static int (*real)(int);                                 \
        if (intercept(#name))                                    \
            return -1;                                           \
        if (real == NULL)                                        \
            real = (int (*)(int))dlsym(RTLD_NEXT, #name);        \
        return real(fd);                                         \
    }

INTERCEPT(fdatasync)
INTERCEPT(fsync)
INTERCEPT(syncfs)
