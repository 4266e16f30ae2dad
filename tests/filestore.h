/*
** filestore.h — what the file engines (sqlite:, lmdb:) promise beyond the
** conformance suite: the store belongs to one process at a time.
*/
#ifndef PGS_FILESTORE_H
#define PGS_FILESTORE_H

#include "check.h"
#include "pgs.h"

#include <sys/wait.h>
#include <unistd.h>

/* In a child process: opens url and exits 0 if that gave `want`. */
static inline int open_in_child(const char *url, int want)
{
    pid_t pid = fork();
    if (pid == 0) {
        pgs_storage *other = NULL;
        int rc = pgs_storage_open(&other, url, NULL);
        pgs_storage_close(other);
        _exit(rc == want ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Open here: another process gets PGS_EBUSY; closed: it may have it. */
static inline void store_in_use_is_busy_at(const char *url)
{
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, url, NULL));
    CHECK(open_in_child(url, PGS_EBUSY));
    pgs_storage_close(st);
    CHECK(open_in_child(url, PGS_OK));
}

#endif
