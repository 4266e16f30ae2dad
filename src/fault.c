/*
** fault.c — what a crash leads to, and the operator's repairs.
**
** A crashed turn has already dropped its state (server.c).  Here:
**   1. The crash is counted in the server's crash record, in storage, so
**      a crash loop is seen across process restarts: a window of
**      restart_window_ms opens at the first crash, and crashes within it
**      count.  The record keeps the last error and the crashing message.
**   2. The message runs again on the state reloaded from storage until it
**      has crashed the server poison_after times; then it is set aside in
**      a record of its own (with the state it met and the error) and the
**      server goes on with its next message.
**   3. More than max_restarts crashes in the window: the fault policy acts
**      (rollback, reset or park), and the count starts again.
**   4. The next turn of the server waits out a backoff (server.c:
**      backing_off), exponential in the crashes since its last good turn
**      (kept in memory: a server that sits out a backoff keeps its struct,
**      and messages that come meanwhile keep it too).
**
** pgs's own records live under behaviour names that start with "pgs.",
** which no behaviour may take:
**   pgs.fault/H+P   a server's crash record; H: the 8-byte hash of its ref,
**                   P: a probe byte (0..PROBES-1) in case two refs share H.
**                   args: the ref's text form (checked on every read).
**                   state: the counts (FAULT_HEAD bytes) and the message.
**   pgs.poison/ID   a set-aside message; ID: 8 bytes.  args: the ref's
**                   text form; options: what it was (POISON_HEAD bytes);
**                   state: the message's length (8), bytes, then the state
**                   it met.
** Integers in them are little-endian.  These writes bypass group commit:
** they happen only on crashes and repairs, and must be durable before
** the crash is reported.
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAULT_NAME "pgs.fault"
#define POISON_NAME "pgs.poison"
#define PROBES 4
#define FAULT_HEAD 56
#define POISON_HEAD 40
#define BACKOFF_MIN_NS (10 * 1000000LL)
#define DEFAULT_MAX_RESTARTS 5
#define DEFAULT_WINDOW_MS 60000

static int policy_of(const server *s)
{
    return PGSI_EFFECTIVE(s, fault_policy, PGS_POLICY_BACKOFF);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
** Crash records.
*/
typedef struct fault {
    uint32_t crashes;         /* in the window */
    int32_t last_error;
    int64_t window_start_ms;
    int64_t last_crash_ms;
    uint64_t since_version;   /* the stored version at the window's first crash */
    uint64_t crash_version;   /* ...at the last crash */
    uint8_t kind, info_kind;  /* the last crashing message */
    uint64_t tag;
    const unsigned char *msg; /* points into the record read, or the msg */
    size_t msg_len;
} fault;

static void fault_encode(const fault *f, unsigned char h[FAULT_HEAD])
{
    memset(h, 0, FAULT_HEAD);
    pgsi_put_le(h, f->crashes, 4);
    pgsi_put_le(h + 4, (uint32_t)f->last_error, 4);
    pgsi_put_le(h + 8, (uint64_t)f->window_start_ms, 8);
    pgsi_put_le(h + 16, (uint64_t)f->last_crash_ms, 8);
    pgsi_put_le(h + 24, f->since_version, 8);
    pgsi_put_le(h + 32, f->crash_version, 8);
    h[40] = f->kind;
    h[41] = f->info_kind;
    pgsi_put_le(h + 48, f->tag, 8);
}

static int fault_decode(const pgs_record *rec, fault *f)
{
    const unsigned char *h = rec->state;
    if (rec->state_len < FAULT_HEAD)
        return PGS_ECORRUPT;
    f->crashes = (uint32_t)pgsi_get_le(h, 4);
    f->last_error = (int32_t)(uint32_t)pgsi_get_le(h + 4, 4);
    f->window_start_ms = (int64_t)pgsi_get_le(h + 8, 8);
    f->last_crash_ms = (int64_t)pgsi_get_le(h + 16, 8);
    f->since_version = pgsi_get_le(h + 24, 8);
    f->crash_version = pgsi_get_le(h + 32, 8);
    f->kind = h[40];
    f->info_kind = h[41];
    f->tag = pgsi_get_le(h + 48, 8);
    f->msg = h + FAULT_HEAD;
    f->msg_len = rec->state_len - FAULT_HEAD;
    return PGS_OK;
}

/* The crash record slot of ref: *rec is its record (NULL if it has
** none; free() it) and *slot the ref to write it under. */
static int fault_find(pgs_storage *st, const pgs_ref *ref, pgs_record **rec, pgs_ref *slot)
{
    char text[PGS_REF_TEXT_MAX];
    size_t tl;
    unsigned char key[9];
    int rc = pgs_ref_format(ref, text, sizeof text, &tl), have_free = 0;
    if (rc)
        return rc;
    for (int i = 0; i < 8; i++)
        key[i] = (unsigned char)(pgsi_ref_hash(ref) >> (56 - 8 * i));
    *rec = NULL;
    /* Probing stops at the first free slot: a record behind a hole is
    ** missed only if two refs' 64-bit hashes met and one was deleted. */
    for (int p = 0; p < PROBES && !have_free; p++) {
        pgs_ref r;
        pgs_record *got = NULL;
        key[8] = (unsigned char)p;
        pgs_ref_make(&r, FAULT_NAME, key, sizeof key);
        rc = pgs_storage_get(st, &r, &got);
        if (rc == PGS_OK && got->args_len == tl && memcmp(got->args, text, tl) == 0) {
            *rec = got;
            *slot = r;
            return PGS_OK;
        }
        free(got);
        if (rc != PGS_OK && rc != PGS_ENOTFOUND && rc != PGS_ECORRUPT)
            return rc;
        if (rc != PGS_OK) { /* free (a corrupt one is overwritten) */
            *slot = r;
            have_free = 1;
        }
    }
    if (!have_free) /* PROBES refs share this hash: take the last slot */
        *slot = (pgs_ref){0}, pgs_ref_make(slot, FAULT_NAME, key, sizeof key);
    return PGS_OK;
}

/* Reads ref's crash record into *f (zeroed if none); *rec keeps the bytes
** f points into (free() it). */
static int fault_read(pgs_storage *st, const pgs_ref *ref, fault *f, pgs_record **rec,
                      pgs_ref *slot)
{
    memset(f, 0, sizeof *f);
    int rc = fault_find(st, ref, rec, slot);
    if (rc || !*rec)
        return rc;
    if (fault_decode(*rec, f)) /* unreadable: start again */
        memset(f, 0, sizeof *f);
    return PGS_OK;
}

/* Writes f as ref's crash record over the one read (version `base`). */
static int fault_write(pgs_storage *st, const pgs_ref *ref, const pgs_ref *slot,
                       const fault *f, uint64_t base)
{
    char text[PGS_REF_TEXT_MAX];
    size_t tl;
    pgs_ref_format(ref, text, sizeof text, &tl);
    unsigned char *buf = malloc(FAULT_HEAD + f->msg_len);
    if (!buf)
        return PGS_ENOMEM;
    fault_encode(f, buf);
    if (f->msg_len)
        memcpy(buf + FAULT_HEAD, f->msg, f->msg_len);
    pgs_record rec = {.ref = *slot, .version = base + 1, .args = text, .args_len = tl,
                      .state = buf, .state_len = FAULT_HEAD + f->msg_len};
    int rc = pgs_storage_put(st, &rec, base);
    if (rc == PGS_ECONFLICT) { /* a corrupt or foreign record sat there */
        pgs_storage_del(st, slot);
        rec.version = 1;
        rc = pgs_storage_put(st, &rec, 0);
    }
    free(buf);
    return rc;
}

/* Counts a crash of s by m in its record.  *out: the counts after it. */
static int count_crash(pgs_runtime *rt, server *s, const pgs_ref *ref, const msg *m,
                       int error, fault *out)
{
    pgs_record *rec;
    pgs_ref slot;
    int rc = fault_read(rt->st, ref, out, &rec, &slot);
    if (rc)
        return rc;
    int64_t now = wall_ms();
    uint32_t window = PGSI_EFFECTIVE(s, restart_window_ms, DEFAULT_WINDOW_MS);
    if (!out->crashes || now - out->window_start_ms > (int64_t)window ||
        now < out->window_start_ms || out->since_version > s->version) {
        out->crashes = 0; /* a new window (the clock moved back, or a new life) */
        out->window_start_ms = now;
        out->since_version = s->version;
    }
    out->crashes++;
    out->last_error = error;
    out->last_crash_ms = now;
    out->crash_version = s->version;
    out->kind = m->kind;
    out->info_kind = m->info_kind;
    out->tag = m->tag;
    out->msg = m->data;
    out->msg_len = m->len;
    rc = fault_write(rt->st, ref, &slot, out, rec ? rec->version : 0);
    free(rec);
    return rc;
}

/* After a policy or a repair the window starts again (the last crash
** stays on record for the operator); after a delete the record goes. */
int pgs_storage_fault_clear(pgs_storage *st, const pgs_ref *ref, int erase)
{
    pgs_record *rec;
    pgs_ref slot;
    fault f;
    int rc = st ? pgsi_ref_check(ref, NULL) : PGS_EINVAL;
    if (!rc)
        rc = fault_read(st, ref, &f, &rec, &slot);
    if (rc || !rec)
        return rc;
    if (erase)
        rc = pgs_storage_del(st, &slot);
    else if (f.crashes) {
        f.crashes = 0;
        rc = fault_write(st, ref, &slot, &f, rec->version);
    }
    free(rec);
    return rc;
}

static void clear_count(pgs_runtime *rt, const pgs_ref *ref)
{
    pgs_storage_fault_clear(rt->st, ref, 0);
}

/* The server is gone (deleted, or stopped and wiped): a new one under its
** ref starts with no crashes. */
void pgsi_fault_forget(pgs_runtime *rt, const pgs_ref *ref)
{
    pgs_storage_fault_clear(rt->st, ref, 1);
}

/* ------------------------------------------------------------------------
** Set-aside messages.
*/
typedef struct poison_head {
    uint8_t kind, info_kind;
    int32_t error;
    uint32_t attempts;
    int64_t time_ms;
    uint64_t state_version, tag;
} poison_head;

static void poison_key(uint64_t id, pgs_ref *ref)
{
    unsigned char key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (unsigned char)(id >> (56 - 8 * i));
    pgs_ref_make(ref, POISON_NAME, key, sizeof key);
}

/* Stores m, set aside after crashing s `error` m->attempts times, with
** the state it met (read back from storage: the turn's copy is gone). */
static int set_aside(pgs_runtime *rt, server *s, const pgs_ref *ref, const msg *m, int error)
{
    char text[PGS_REF_TEXT_MAX];
    size_t tl;
    pgs_ref_format(ref, text, sizeof text, &tl);
    pgs_record *met = NULL;
    if (pgs_storage_get(rt->st, ref, &met) != PGS_OK)
        met = NULL; /* none (a virtual server's first message) or unreadable */
    size_t state_len = met ? met->state_len : 0, len = 8 + m->len + state_len;
    unsigned char head[POISON_HEAD] = {m->kind, m->info_kind}, *body = malloc(len);
    if (!body) {
        free(met);
        return PGS_ENOMEM;
    }
    pgsi_put_le(head + 4, (uint32_t)error, 4);
    pgsi_put_le(head + 8, m->attempts, 4);
    pgsi_put_le(head + 16, (uint64_t)wall_ms(), 8);
    pgsi_put_le(head + 24, met ? met->version : 0, 8);
    pgsi_put_le(head + 32, m->tag, 8);
    pgsi_put_le(body, m->len, 8);
    if (m->len)
        memcpy(body + 8, m->data, m->len);
    if (state_len)
        memcpy(body + 8 + m->len, met->state, state_len);
    pgs_record rec = {.version = 1, .args = text, .args_len = tl, .options = head,
                      .options_len = sizeof head, .state = body, .state_len = len};
    /* An id from the clock and the ref: unique enough that a clash (two
    ** processes sharing a store) is retried, not expected. */
    uint64_t id = (uint64_t)pgsi_now_ns() ^ (s->hash << 17), tries = 0;
    int rc;
    do {
        poison_key(id + tries, &rec.ref);
        rc = pgs_storage_put(rt->st, &rec, 0);
    } while (rc == PGS_ECONFLICT && ++tries < 8);
    free(body);
    free(met);
    return rc;
}

static int poison_decode(const pgs_record *rec, pgs_poison *p)
{
    const unsigned char *h = rec->options, *b = rec->state;
    memset(p, 0, sizeof *p);
    if (rec->options_len != POISON_HEAD || rec->state_len < 8 || rec->ref.key_len != 8 ||
        pgs_ref_parse(&p->ref, rec->args, rec->args_len))
        return PGS_ECORRUPT;
    uint64_t ml = pgsi_get_le(b, 8);
    if (ml > rec->state_len - 8)
        return PGS_ECORRUPT;
    for (int i = 0; i < 8; i++)
        p->id = p->id << 8 | rec->ref.key[i];
    p->kind = h[0];
    p->info_kind = h[1];
    p->error = (int32_t)(uint32_t)pgsi_get_le(h + 4, 4);
    p->attempts = (uint32_t)pgsi_get_le(h + 8, 4);
    p->time_ms = (int64_t)pgsi_get_le(h + 16, 8);
    p->state_version = pgsi_get_le(h + 24, 8);
    p->tag = pgsi_get_le(h + 32, 8);
    p->msg = b + 8;
    p->msg_len = (size_t)ml;
    p->state = b + 8 + ml;
    p->state_len = rec->state_len - 8 - (size_t)ml;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Fault policies and repairs.  The server is the caller's, unloaded or
** loaded; each ends with the new state written (sync: a caller hears
** only once it is durable).
*/

/* Replaces the in-memory state by `data` at `schema`, terminating the
** old one.  On failure the server is left unloaded (the next message
** reloads it from storage). */
static int replace_state(pgs_runtime *rt, server *s, pgs_ctx *ctx, const void *data,
                         size_t len, uint32_t schema)
{
    uint8_t parked = s->parked;
    pgsi_unload(rt, s, ctx, PGS_REASON_PASSIVATE);
    s->parked = parked;
    int rc = pgsi_decode_state(s, data, len, schema);
    if (rc)
        return rc;
    atomic_store_explicit(&s->loaded, 1, memory_order_relaxed);
    PGSI_STAT(rt, s, active, 1);
    return PGS_OK;
}

/* Finds kept version `version` (or, with `below`, the newest kept one
** under it) of ref and puts it into s.  PGS_ENOTFOUND if none. */
typedef struct {
    uint64_t version;
    int below;
    pgs_record *found;
} find_ctx;

static int find_version(void *arg, const pgs_record *rec)
{
    find_ctx *f = arg;
    if (f->below ? rec->version >= f->version : rec->version != f->version)
        return 0;
    return pgs_record_copy(rec, &f->found) ? -1 : 1;
}

static int restore_version(pgs_runtime *rt, server *s, pgs_ctx *ctx, uint64_t version,
                           int below)
{
    find_ctx f = {version, below, NULL};
    int rc = pgs_storage_history(rt->st, &ctx->self, find_version, &f);
    if (!f.found)
        return rc < 0 ? rc : PGS_ENOTFOUND;
    rc = replace_state(rt, s, ctx, f.found->state, f.found->state_len,
                       f.found->schema_version);
    free(f.found);
    return rc;
}

/* Writes the state now in memory as the next version, and waits for it:
** the policy must have landed before anything reads the crash count. */
static int rewrite(pgs_runtime *rt, server *s, pgs_ctx *ctx)
{
    int rc = pgsi_write(rt, s, &ctx->self, 0, NULL);
    return rc ? rc : pgsi_wait_durable(rt, s, &ctx->self);
}

static int park(pgs_runtime *rt, server *s, pgs_ctx *ctx)
{
    int rc = pgsi_load(rt, s, &ctx->self, 1);
    if (rc)
        return rc;
    s->parked = 1;
    rc = rewrite(rt, s, ctx);
    pgsi_unload(rt, s, ctx, PGS_REASON_PASSIVATE); /* parked servers stay out */
    return rc;
}

static int reset(pgs_runtime *rt, server *s, pgs_ctx *ctx)
{
    int rc = pgsi_load(rt, s, &ctx->self, 1); /* for the version and start args */
    if (rc)
        return rc;
    pgs_server_opts o = s->opts;
    uint64_t version = s->version;
    pgsi_unload(rt, s, ctx, PGS_REASON_CRASH);
    if ((rc = pgsi_init_state(rt, ctx, s, s->args, s->args_len, &o)))
        return rc;
    s->version = version;
    return rewrite(rt, s, ctx);
}

static int rollback(pgs_runtime *rt, server *s, pgs_ctx *ctx, uint64_t before)
{
    int rc = pgsi_load(rt, s, &ctx->self, 1);
    if (!rc)
        rc = restore_version(rt, s, ctx, before, 1);
    if (rc) {
        pgsi_unload(rt, s, ctx, PGS_REASON_CRASH);
        return rc;
    }
    s->parked = 0;
    return rewrite(rt, s, ctx);
}

/* A crash loop: the policy acts.  Returns the event it caused (0: none). */
static int apply_policy(pgs_runtime *rt, server *s, pgs_ctx *ctx, const fault *f)
{
    int policy = policy_of(s), event = 0;
    if (policy == PGS_POLICY_ROLLBACK && rollback(rt, s, ctx, f->since_version) == PGS_OK)
        event = PGS_EVENT_ROLLBACK;
    else if (policy == PGS_POLICY_RESET && reset(rt, s, ctx) == PGS_OK)
        event = PGS_EVENT_RESET;
    else if (policy != PGS_POLICY_BACKOFF && park(rt, s, ctx) == PGS_OK)
        event = PGS_EVENT_PARK; /* park, or a rollback with nothing to go back to */
    if (event)
        clear_count(rt, &ctx->self);
    return event;
}

/* 10 ms after a first crash, doubling with each crash in a row, capped; jitter of
** +-25% from the ref and the clock, so servers that crash together do not
** come back together. */
static int64_t backoff_ns(pgs_runtime *rt, const server *s, uint32_t crashes)
{
    int64_t max = (int64_t)rt->opts.backoff_max_ms * 1000000;
    int64_t d = BACKOFF_MIN_NS;
    for (uint32_t i = 1; i < crashes && d < max; i++)
        d *= 2;
    d = d < max ? d : max;
    uint64_t r = (s->hash ^ (uint64_t)pgsi_now_ns()) * 0x9E3779B97F4A7C15ULL;
    return d * 3 / 4 + (int64_t)((r >> 32) % (uint64_t)(d / 2 + 1));
}

static void start_backoff(pgs_runtime *rt, server *s, const pgs_ref *ref, uint32_t crashes)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    int64_t until = pgsi_now_ns() + backoff_ns(rt, s, crashes ? crashes : 1);
    pthread_mutex_lock(&sh->lock);
    s->backoff_until = until;
    pthread_mutex_unlock(&sh->lock);
    /* Brings back (or frees) the struct then.  Without it (no memory) the
    ** next message or close does. */
    pgsi_timer_wake(rt, s->beh, ref, until);
}

int pgsi_fault_crashed(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m, int status)
{
    const pgs_ref *ref = &ctx->self;
    int error = status == PGS_ECRASH ? PGS_ECRASH : PGS_ECALLBACK;
    m->attempts++;
    pgsi_monitor_event(rt, ref, s->hash, PGS_EVENT_CRASH);
    if (s->lifecycle == PGS_TEMPORARY) { /* gone: later messages find no record */
        pgsi_erase(rt, s, ref);
        pgsi_monitor_event(rt, ref, s->hash, PGS_EVENT_DELETE);
        return 0;
    }
    fault f = {0};
    count_crash(rt, s, ref, m, error, &f); /* storage down: counted as one */
    int again = m->attempts < PGSI_EFFECTIVE(s, poison_after, 1);
    if (!again && set_aside(rt, s, ref, m, error) == PGS_OK)
        pgsi_monitor_event(rt, ref, s->hash, PGS_EVENT_POISON);
    int event = 0;
    if (f.crashes > PGSI_EFFECTIVE(s, max_restarts, DEFAULT_MAX_RESTARTS))
        event = apply_policy(rt, s, ctx, &f);
    if (event)
        pgsi_monitor_event(rt, ref, s->hash, event);
    if (s->streak < UINT8_MAX)
        s->streak++;
    start_backoff(rt, s, ref, event ? 1 : s->streak);
    if (event == PGS_EVENT_PARK)
        return 0; /* the message meets a parked server: no more tries */
    if (!again && s->lifecycle == PGS_PERMANENT &&
        !atomic_load_explicit(&s->loaded, memory_order_relaxed))
        pgsi_load(rt, s, ref, 0); /* eager revival; a failure waits for the next message */
    return again;
}

/* ------------------------------------------------------------------------
** Operator messages (the server is loaded, parked or not).
*/
static void merge_opts(pgs_server_opts *to, const pgs_server_opts *from)
{
    if (from->idle_timeout_ms) to->idle_timeout_ms = from->idle_timeout_ms;
    if (from->lifecycle) to->lifecycle = from->lifecycle;
    if (from->write_mode) to->write_mode = from->write_mode;
    if (from->fault_policy) to->fault_policy = from->fault_policy;
    if (from->poison_after) to->poison_after = from->poison_after;
    if (from->max_restarts) to->max_restarts = from->max_restarts;
    if (from->history) to->history = from->history;
    if (from->restart_window_ms) to->restart_window_ms = from->restart_window_ms;
    if (from->history_messages) to->history_messages = from->history_messages;
}

int pgsi_fault_operator(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m)
{
    int was_parked = s->parked, rc = PGS_OK, event = 0;
    if (m->kind == M_RECONF) {
        pgs_server_opts o = s->opts;
        merge_opts(&o, &m->opts);
        pgsi_apply_opts(s, &o);
        s->rearm = 1; /* a new idle timeout applies from this release */
    } else if (m->kind == M_REPAIR) {
        rc = replace_state(rt, s, ctx, m->data, m->len, s->beh->b->schema_version);
    } else if (m->kind == M_ROLLBACK) {
        uint64_t v = m->len == 8 ? pgsi_get_le(m->data, 8) : 0;
        rc = v == s->version ? PGS_OK : restore_version(rt, s, ctx, v, 0);
        event = PGS_EVENT_ROLLBACK;
    }
    if (rc)
        return rc;
    if (m->kind != M_RECONF)
        s->parked = 0;
    if ((rc = pgsi_write(rt, s, &ctx->self, 0, NULL)))
        return rc;
    if (m->kind != M_RECONF)
        clear_count(rt, &ctx->self);
    if (event)
        pgsi_monitor_event(rt, &ctx->self, s->hash, event);
    if (was_parked && !s->parked)
        pgsi_monitor_event(rt, &ctx->self, s->hash, PGS_EVENT_UNPARK);
    if (s->parked) /* reconfigured while parked: it stays out */
        pgsi_unload(rt, s, ctx, PGS_REASON_PASSIVATE);
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Reading what storage says (any thread; the pgs_storage_* forms need no
** runtime: the pgs command uses them).
*/
int pgs_storage_server_info(pgs_storage *st, const pgs_ref *ref, pgs_server_info *out)
{
    pgs_record *rec = NULL;
    if (!out)
        return PGS_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = st ? pgs_storage_get(st, ref, &rec) : PGS_EINVAL;
    if (!rc) {
        out->version = rec->version;
        rc = pgsi_opts_decode(rec->options, rec->options_len, &out->opts, &out->parked);
    }
    free(rec);
    if (rc)
        return rc;
    fault f;
    pgs_ref slot;
    if ((rc = fault_read(st, ref, &f, &rec, &slot)))
        return rc;
    out->crashes = f.crashes;
    out->last_error = f.last_error;
    out->last_crash_ms = f.last_crash_ms;
    out->crash_version = f.crash_version;
    out->last_kind = f.kind;
    if (f.msg_len && !(out->last_message.data = malloc(f.msg_len)))
        rc = PGS_ENOMEM;
    else if (f.msg_len)
        memcpy(out->last_message.data, f.msg, out->last_message.len = f.msg_len);
    free(rec);
    return rc;
}

typedef struct {
    const pgs_ref *ref;
    int (*fn)(void *arg, const pgs_poison *p);
    void *arg;
} list_ctx;

static int list_one(void *arg, const pgs_record *rec)
{
    list_ctx *c = arg;
    pgs_poison p;
    if (poison_decode(rec, &p))
        return PGS_ECORRUPT;
    return c->ref && !pgs_ref_equal(c->ref, &p.ref) ? 0 : c->fn(c->arg, &p);
}

int pgs_storage_poison_list(pgs_storage *st, const pgs_ref *ref,
                            int (*fn)(void *arg, const pgs_poison *p), void *arg)
{
    if (!st || !fn)
        return PGS_EINVAL;
    int rc = ref ? pgsi_ref_check(ref, NULL) : PGS_OK;
    list_ctx c = {ref, fn, arg};
    return rc ? rc : pgs_storage_scan(st, POISON_NAME, list_one, &c);
}

/* Takes set-aside message `id` out of storage: *rec holds it (free()). */
static int poison_take(pgs_storage *st, uint64_t id, pgs_record **rec, pgs_poison *p)
{
    pgs_ref key;
    poison_key(id, &key);
    int rc = pgs_storage_get(st, &key, rec);
    if (!rc && (rc = poison_decode(*rec, p)) == PGS_OK)
        rc = pgs_storage_del(st, &key);
    if (rc) {
        free(*rec);
        *rec = NULL;
    }
    return rc;
}

int pgsi_poison_take(pgs_runtime *rt, uint64_t id, pgs_record **rec, pgs_poison *p)
{
    return poison_take(rt->st, id, rec, p);
}

int pgs_storage_poison_drop(pgs_storage *st, uint64_t id)
{
    pgs_record *rec = NULL;
    pgs_poison p;
    int rc = st ? poison_take(st, id, &rec, &p) : PGS_EINVAL;
    free(rec);
    return rc;
}
