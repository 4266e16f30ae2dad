/*
** check.h — the tests' tiny harness.  A failed check prints what was
** expected and what came, with file and line, and the test exits non-zero.
** Each test is its own program (run by CTest with a timeout), so one
** crash cannot hide another test's result.
*/
#ifndef PGS_CHECK_H
#define PGS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_ __attribute__((unused));

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            check_failures_++;                                               \
        }                                                                    \
    } while (0)

/* Compares two integers (error codes print with their names). */
#define CHECK_EQ(got, want)                                                  \
    do {                                                                     \
        long long g_ = (long long)(got), w_ = (long long)(want);             \
        if (g_ != w_) {                                                      \
            fprintf(stderr, "%s:%d: %s: expected %lld (%s), got %lld (%s)\n",\
                    __FILE__, __LINE__, #got, w_, pgs_errname((int)w_), g_,  \
                    pgs_errname((int)g_));                                   \
            check_failures_++;                                               \
        }                                                                    \
    } while (0)

/* Fatal: stop the test now (use when later steps depend on it). */
#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                        \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define REQUIRE_OK(expr)                                                     \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        if (rc_ != 0) {                                                      \
            fprintf(stderr, "%s:%d: %s: expected PGS_OK, got %s (%s)\n",     \
                    __FILE__, __LINE__, #expr, pgs_errname(rc_),             \
                    pgs_strerror(rc_));                                      \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* Runs one named case and reports it. */
#define RUN(fn)                                                              \
    do {                                                                     \
        int before_ = check_failures_;                                       \
        fn();                                                                \
        fprintf(stderr, "%-52s %s\n", #fn,                                   \
                check_failures_ == before_ ? "ok" : "FAILED");               \
    } while (0)

#define CHECK_DONE() (check_failures_ ? 1 : 0)

#endif
