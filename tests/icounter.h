/*
** icounter.h — a counter with examples/counter's state (one int64), so
** the counter plugin formats it: "incr" adds one and persists, "crash"
** crashes, anything else reads.  Calls reply the value's 8 bytes.
*/
#ifndef PGS_ICOUNTER_H
#define PGS_ICOUNTER_H

#include "pgs.h"

#include <stdint.h>
#include <string.h>

static int ic_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    return PGS_PERSIST; /* zero */
}

static int ic_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    int64_t *v = state;
    if (len == 5 && memcmp(msg, "crash", 5) == 0)
        return PGS_CRASH;
    int incr = len == 4 && memcmp(msg, "incr", 4) == 0;
    *v += incr;
    pgs_reply(ctx, v, sizeof *v);
    return incr ? PGS_PERSIST : PGS_UNCHANGED;
}

#endif
