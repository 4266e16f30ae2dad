/*
** filestore.h — what the file engines (sqlite:, lmdb:) promise beyond the
** conformance suite: the store belongs to one process at a time.
*/
#ifndef PGS_FILESTORE_H
#define PGS_FILESTORE_H

#include "check.h"
#include "pgs.h"
#include "tcounter.h"

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

/* A runtime on a store that fills up (url bounds it): the starts that
** cannot be written fail with PGS_ENOSPC, everything acknowledged before
** is there after a reopen, and space freed is space to write again. */
static const pgs_behaviour big_b = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "big", .state_size = 2000,
    .init = tc_init_plain, .handle_call = tc_call};

static inline void big_key(int i, pgs_ref *ref, char key[16])
{
    snprintf(key, 16, "b%d", i);
    pgs_ref_make(ref, "big", key, strlen(key));
}

static inline void store_fills_up_cleanly(const char *url, int tries, int at_least)
{
    pgs_runtime *rt;
    pgs_ref ref;
    char key[16];
    REQUIRE_OK(pgs_open(&rt, url, NULL));
    REQUIRE_OK(pgs_register(rt, &big_b));
    int started = 0, rc = PGS_OK;
    for (int i = 0; i < tries && rc == PGS_OK; i++) {
        big_key(i, &ref, key);
        rc = pgs_start(rt, "big", key, strlen(key), NULL, 0, NULL, NULL);
        started += rc == PGS_OK;
    }
    CHECK_EQ(rc, PGS_ENOSPC);
    CHECK(started > at_least);
    pgs_close(rt);
    REQUIRE_OK(pgs_open(&rt, url, NULL));
    REQUIRE_OK(pgs_register(rt, &big_b));
    int missing = 0;
    for (int i = 0; i < started; i++) {
        big_key(i, &ref, key);
        missing += tc_callv(rt, &ref, "get", NULL) != PGS_OK;
    }
    CHECK_EQ(missing, 0);
    for (int i = 0; i < 4; i++) {
        big_key(i, &ref, key);
        CHECK_EQ(pgs_delete(rt, &ref, 5000), PGS_OK);
    }
    CHECK_EQ(pgs_start(rt, "big", "again", 5, NULL, 0, NULL, NULL), PGS_OK);
    pgs_close(rt);
}

#endif
