/*
** tcounter.h — the tests' workhorse behaviour, driven by text commands so a
** test reads like what it does:  call(rt, &ref, "add 5") == 5.
**
** The state is flat (an int64 value and a count of infos).  A probe, reached
** through pgs_user(), counts inits and terminates by reason, so a test can
** see which lifecycle path ran.  Commands (calls, casts and infos alike):
**   add N        value += N; persist; reply the value
**   lazy N       value += N; don't persist this one
**   get          reply the value; unchanged
**   crash N      value += N, then crash (the addition must never persist)
**   stop         stop normally
**   bad          return an unknown result code
**   sleep MS     sleep, unchanged
**   call R CMD   call server R (text ref) with CMD; reply its reply or "E<code>"
**   async R CMD  pgs_call_async R CMD, reply to self with tag 77
**   cast R CMD   cast CMD to R, then persist (the cast waits for the write)
**   castcrash R CMD  cast, then crash (the output gate must drop the cast)
**   timer MS     send_after(self, MS, "add 1"); reply the timer id
**   big N        reply N bytes
** An async reply (PGS_INFO_REPLY) sets value to the reply's number + 1000.
*/
#ifndef PGS_TCOUNTER_H
#define PGS_TCOUNTER_H

#include "check.h"
#include "pgs.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct probe {
    atomic_int inits;
    atomic_int terminates[8]; /* by enum pgs_reason */
    atomic_int handled;
    atomic_int replies;       /* async replies seen */
    atomic_int last_status;   /* of the last async reply */
} probe;

typedef struct cstate {
    int64_t value;
    int64_t infos;
} cstate;

static inline int tc_reply_num(pgs_ctx *ctx, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    return pgs_reply(ctx, buf, (size_t)n);
}

/* Splits "R CMD" into a ref and the rest. */
static inline int tc_ref_cmd(const char *arg, pgs_ref *ref, const char **cmd)
{
    const char *sp = strchr(arg, ' ');
    if (!sp || pgs_ref_parse(ref, arg, (size_t)(sp - arg)))
        return -1;
    *cmd = sp + 1;
    return 0;
}

static inline int tc_forward(pgs_ctx *ctx, const char *op, const char *arg)
{
    pgs_runtime *rt = pgs_ctx_runtime(ctx);
    pgs_ref ref;
    const char *cmd;
    if (tc_ref_cmd(arg, &ref, &cmd))
        return PGS_CRASH;
    if (!strcmp(op, "call")) {
        pgs_bytes rep;
        int rc = pgs_call(rt, &ref, cmd, strlen(cmd), &rep, 5000);
        char buf[64];
        int n = snprintf(buf, sizeof buf, "E%d", rc);
        if (rc == PGS_OK)
            pgs_reply(ctx, rep.data, rep.len);
        else
            pgs_reply(ctx, buf, (size_t)n);
        pgs_bytes_free(&rep);
        return PGS_UNCHANGED;
    }
    if (!strcmp(op, "async"))
        return pgs_call_async(rt, &ref, cmd, strlen(cmd), NULL, 77) ? PGS_CRASH : PGS_UNCHANGED;
    if (pgs_cast(rt, &ref, cmd, strlen(cmd)))
        return PGS_CRASH;
    return !strcmp(op, "castcrash") ? PGS_CRASH : PGS_PERSIST;
}

static inline int tc_command(pgs_ctx *ctx, cstate *s, const void *msg, size_t len)
{
    char text[512], op[16] = "";
    if (len >= sizeof text)
        return PGS_CRASH;
    if (len)
        memcpy(text, msg, len);
    text[len] = 0;
    long long n = 0;
    int used = 0;
    sscanf(text, "%15s %n", op, &used);
    const char *arg = text + used;
    n = atoll(arg);
    probe *p = pgs_user(ctx);
    if (p)
        atomic_fetch_add(&p->handled, 1);
    if (!strcmp(op, "add") || !strcmp(op, "lazy") || !strcmp(op, "crash")) {
        s->value += n;
        tc_reply_num(ctx, s->value);
        return op[0] == 'a' ? PGS_PERSIST : op[0] == 'l' ? PGS_NOPERSIST : PGS_CRASH;
    }
    if (!strcmp(op, "get")) {
        tc_reply_num(ctx, s->value);
        return PGS_UNCHANGED;
    }
    if (!strcmp(op, "stop"))
        return PGS_STOP;
    if (!strcmp(op, "bad"))
        return 42;
    if (!strcmp(op, "sleep")) {
        usleep((useconds_t)n * 1000);
        return PGS_UNCHANGED;
    }
    if (!strcmp(op, "timer")) {
        uint64_t id = 0;
        if (pgs_send_after(pgs_ctx_runtime(ctx), pgs_self(ctx), (uint32_t)n, "add 1", 5, &id))
            return PGS_CRASH;
        tc_reply_num(ctx, (int64_t)id);
        return PGS_UNCHANGED;
    }
    if (!strcmp(op, "big")) {
        char *b = calloc(1, (size_t)n + 1);
        int rc = b ? pgs_reply(ctx, b, (size_t)n) : PGS_ENOMEM;
        free(b);
        (void)rc;
        return PGS_UNCHANGED;
    }
    if (!strcmp(op, "call") || !strcmp(op, "async") || !strcmp(op, "cast") ||
        !strcmp(op, "castcrash"))
        return tc_forward(ctx, op, arg);
    return PGS_CRASH;
}

static inline int tc_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    probe *p = pgs_user(ctx);
    if (p)
        atomic_fetch_add(&p->inits, 1);
    char buf[32] = "";
    if (len && len < sizeof buf)
        memcpy(buf, args, len);
    ((cstate *)state)->value = atoll(buf);
    return PGS_PERSIST;
}

/* init that refuses: key "crash" → PGS_CRASH, "bad" → an unknown code. */
static inline int tc_init_refuse(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    const pgs_ref *self = pgs_self(ctx);
    if (self->key_len == 5 && !memcmp(self->key, "crash", 5))
        return PGS_CRASH;
    if (self->key_len == 3 && !memcmp(self->key, "bad", 3))
        return 77;
    return PGS_PERSIST;
}

/* init for behaviours with nothing to set up. */
static inline int tc_init_plain(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    return PGS_PERSIST;
}

static inline int tc_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    return tc_command(ctx, state, msg, len);
}

static inline int tc_info(pgs_ctx *ctx, void *state, const pgs_info *info)
{
    cstate *s = state;
    s->infos++;
    if (info->kind == PGS_INFO_REPLY) {
        probe *p = pgs_user(ctx);
        char buf[32] = "";
        if (info->len && info->len < sizeof buf)
            memcpy(buf, info->data, info->len);
        s->value = atoll(buf) + 1000;
        if (p) {
            atomic_store(&p->last_status, info->status);
            atomic_fetch_add(&p->replies, 1);
        }
        return PGS_PERSIST;
    }
    return tc_command(ctx, s, info->data, info->len);
}

static inline void tc_terminate(pgs_ctx *ctx, void *state, int reason)
{
    probe *p = pgs_user(ctx);
    if (p && reason > 0 && reason < 8)
        atomic_fetch_add(&p->terminates[reason], 1);
}

#define TC_BEHAVIOUR(nm)                                                          \
    {.version = PGS_BEHAVIOUR_VERSION, .name = nm, .state_size = sizeof(cstate), \
     .init = tc_init, .handle_call = tc_call, .handle_cast = tc_call,            \
     .handle_info = tc_info, .terminate = tc_terminate}

/* ------------------------------------------------------------------------
** Helpers for test bodies.
*/

/* Opens a runtime on `st` (borrowed; NULL: a fresh memory: store owned by
** the runtime) with the probe as user pointer. */
static inline pgs_runtime *tc_open(pgs_storage *st, probe *p, uint32_t idle_ms, int workers)
{
    pgs_options o;
    pgs_options_init(&o);
    o.storage = st;
    o.user = p;
    o.workers = workers;
    if (idle_ms)
        o.idle_timeout_ms = idle_ms;
    pgs_runtime *rt = NULL;
    REQUIRE_OK(pgs_open(&rt, st ? NULL : "memory:", &o));
    return rt;
}

/* Calls with a text command; returns the status and stores the reply's
** number in *v (may be NULL). */
static inline int tc_callv(pgs_runtime *rt, const pgs_ref *ref, const char *cmd, long long *v)
{
    pgs_bytes rep;
    int rc = pgs_call(rt, ref, cmd, strlen(cmd), &rep, 5000);
    if (rc == PGS_OK && v) {
        char buf[32] = "";
        if (rep.len && rep.len < sizeof buf)
            memcpy(buf, rep.data, rep.len);
        *v = atoll(buf);
    }
    pgs_bytes_free(&rep);
    return rc;
}

/* The reply's number, or a large negative sentinel on failure. */
static inline long long tc_value(pgs_runtime *rt, const pgs_ref *ref, const char *cmd)
{
    long long v = 0;
    int rc = tc_callv(rt, ref, cmd, &v);
    return rc == PGS_OK ? v : -1000000 + rc;
}

/* 1 if the call succeeds with exactly the reply text `want`. */
static inline int tc_reply_is(pgs_runtime *rt, const pgs_ref *ref, const char *cmd,
                              const char *want)
{
    pgs_bytes rep;
    int rc = pgs_call(rt, ref, cmd, strlen(cmd), &rep, 5000);
    int ok = rc == PGS_OK && rep.len == strlen(want) && memcmp(rep.data, want, rep.len) == 0;
    if (!ok)
        fprintf(stderr, "  %s: %s, reply \"%.*s\", wanted \"%s\"\n", cmd, pgs_errname(rc),
                (int)rep.len, rep.data ? (const char *)rep.data : "", want);
    pgs_bytes_free(&rep);
    return ok;
}

static inline pgs_ref tc_ref(const char *text)
{
    pgs_ref r;
    REQUIRE_OK(pgs_ref_parse(&r, text, (size_t)-1));
    return r;
}

/* Waits up to 5 s for pgs_is_active to become `want`; returns the last value. */
static inline int tc_wait_active(pgs_runtime *rt, const pgs_ref *ref, int want)
{
    int v = -1;
    for (int i = 0; i < 5000 && (v = pgs_is_active(rt, ref)) != want; i++)
        usleep(1000);
    return v;
}

/* Waits up to 5 s for an atomic counter to reach `want`. */
static inline int tc_wait_count(atomic_int *c, int want)
{
    for (int i = 0; i < 5000 && atomic_load(c) < want; i++)
        usleep(1000);
    return atomic_load(c);
}

/* The stored record's version (0 if none). */
static inline uint64_t tc_version(pgs_storage *st, const pgs_ref *ref)
{
    pgs_record *rec = NULL;
    uint64_t v = pgs_storage_get(st, ref, &rec) == PGS_OK ? rec->version : 0;
    free(rec);
    return v;
}

/* The stored state's value (or -1 if no record). */
static inline long long tc_stored(pgs_storage *st, const pgs_ref *ref)
{
    pgs_record *rec = NULL;
    long long v = -1;
    if (pgs_storage_get(st, ref, &rec) == PGS_OK && rec->state_len == sizeof(cstate)) {
        cstate c;
        memcpy(&c, rec->state, sizeof c);
        v = c.value;
    }
    free(rec);
    return v;
}

#endif
