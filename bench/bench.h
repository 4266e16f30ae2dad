/*
** bench.h — the few helpers every benchmark program shares: a monotonic
** clock, a sleep, failure reports and cheap per-thread randomness.  Each
** program defines BENCH_NAME (its name in messages) before including it.
*/
#ifndef PGS_BENCH_H
#define PGS_BENCH_H

#include "pgs.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Prints a pgs failure; returns -1 so callers can `return fail(...)`. */
static inline int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", BENCH_NAME, what, pgs_errname(rc), pgs_strerror(rc));
    return -1;
}

/* xorshift64*: cheap per-thread randomness, no shared state. */
static inline uint64_t rand_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* A reply holding one uint64_t, or 0. */
static inline uint64_t read_u64(const void *p, size_t len)
{
    uint64_t v = 0;
    if (len == sizeof v)
        memcpy(&v, p, sizeof v);
    return v;
}

#endif
