/*
** server.c — one server's lifecycle: ownership, turns, passivation.
**
** This file implements docs/protocol.md; model/activation.pml checks the
** same protocol on every interleaving.  The rules in one breath: messages
** enter a mailbox only under the shard lock, on a struct that is in the
** registry; only the owner (status RUNNING, one thread) pops them, touches
** the state or calls storage for the ref; the struct leaves the registry
** only under the shard lock with an empty mailbox.
**
** Sections:
**   messages and mailboxes
**   release: what an owner does when it stops running a server
**   turns: one message, from activation to reply
**   owners: running a mailbox (direct calls, take-over, hand-off, workers)
**   entry points: send, request, worker, idle timer, shutdown, revive
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

/* Sentinel from activate(): the server is loaded, go on to the handler. */
#define CONTINUE 1

/* ------------------------------------------------------------------------
** Messages and mailboxes (shard lock held for the mailbox).
*/
msg *pgsi_msg_new(int kind, const void *data, size_t len)
{
    msg *m = malloc(sizeof *m + len);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->kind = (uint8_t)kind;
    m->len = len;
    m->data = m->inline_data;
    if (len)
        memcpy(m->inline_data, data, len);
    return m;
}

void pgsi_msg_free(msg *m)
{
    if (!m)
        return;
    free(m->reply_to);
    free(m->target);
    free(m);
}

static void mb_push(server *s, msg *m)
{
    m->next = NULL;
    if (s->mb_tail)
        s->mb_tail->next = m;
    else
        s->mb_head = m;
    s->mb_tail = m;
}

static msg *mb_pop(server *s)
{
    msg *m = s->mb_head;
    if (m && !(s->mb_head = m->next))
        s->mb_tail = NULL;
    return m;
}

/* Finds or creates the struct for ref.  Shard lock held. */
static int lookup(shard *sh, const beh *b, const pgs_ref *ref, uint64_t h, server **out)
{
    server *s = pgsi_reg_find(sh, b, h, ref->key, ref->key_len);
    if (!s) {
        if (!(s = pgsi_server_new(b, h, ref->key, ref->key_len)))
            return PGS_ENOMEM;
        int rc = pgsi_reg_insert(sh, s);
        if (rc) {
            pgsi_server_free(s);
            return rc;
        }
    }
    *out = s;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Release (shard lock held): the owner gives the server up.  Returns 1 if
** the struct left the registry and nothing else links it: the caller frees
** it after unlocking.
*/
/* The first queued call whose thread is blocked; it stops waiting. */
static waiter *take_waiting(server *s)
{
    if (!s->nwaiting)
        return NULL;
    for (msg *m = s->mb_head; m; m = m->next)
        if (m->waiting) {
            m->waiting = 0;
            s->nwaiting--;
            return m->w;
        }
    return NULL;
}

/* m no longer has a blocked caller (popped, or its caller gave up). */
static void unwait(server *s, msg *m)
{
    if (m->waiting) {
        m->waiting = 0;
        s->nwaiting--;
    }
}

static int release_locked(pgs_runtime *rt, shard *sh, server *s)
{
    waiter *w;
    if (!s->mb_head) {
        s->status = S_IDLE;
        s->owner = NULL;
        if (!atomic_load_explicit(&s->loaded, memory_order_relaxed)) {
            pgsi_reg_remove(sh, s);
            s->dead = 1;
            return !s->in_runq && !s->in_timer;
        }
        s->last_active = pgsi_now_ns();
        if (!s->in_timer && s->idle_ms != PGS_IDLE_NEVER &&
            !atomic_load_explicit(&rt->closing, memory_order_relaxed))
            pgsi_idle_arm(rt, s, s->last_active + (int64_t)s->idle_ms * 1000000);
        return 0;
    }
    if ((w = take_waiting(s))) {
        /* A blocked caller gets the work it waits for: no worker needed. */
        s->owner = w->token;
        w->handoff = s;
        pthread_cond_signal(&w->cv);
        return 0;
    }
    s->status = S_SCHEDULED;
    s->owner = NULL;
    if (!s->in_runq)
        pgsi_runq_push(rt, s);
    return 0;
}

/* ------------------------------------------------------------------------
** Turns.  A turn handles one message as the owner, with no lock held.
*/

/* Discards the in-memory state (terminate first). */
static void unload(pgs_runtime *rt, server *s, pgs_ctx *ctx, int reason)
{
    if (!atomic_load_explicit(&s->loaded, memory_order_relaxed))
        return;
    if (s->beh->b->terminate)
        s->beh->b->terminate(ctx, pgsi_server_state(s), reason);
    atomic_store_explicit(&s->loaded, 0, memory_order_relaxed);
    PGSI_STAT(rt, s, active, -1);
    s->dirty = 0;
}

/* A failed turn: drop the state; the lifecycle says what comes back. */
static void crash(pgs_runtime *rt, server *s, pgs_ctx *ctx)
{
    unload(rt, s, ctx, PGS_REASON_CRASH);
    PGSI_STAT(rt, s, crashes, 1);
    if (s->lifecycle == PGS_TEMPORARY)
        pgsi_erase(rt, s, &ctx->self); /* gone: later messages find no record */
    else if (s->lifecycle == PGS_PERMANENT)
        pgsi_load(rt, s, &ctx->self); /* eager revival; a failure waits for the next message */
}

/* A normal stop: permanent servers keep their state and are revived. */
static int stop(pgs_runtime *rt, server *s, pgs_ctx *ctx, int reason)
{
    int rc = PGS_OK;
    if (s->lifecycle == PGS_PERMANENT && reason == PGS_REASON_STOP) {
        if (s->dirty && (rc = pgsi_write(rt, s, &ctx->self)))
            return rc;
        unload(rt, s, ctx, reason);
        pgsi_load(rt, s, &ctx->self);
        return PGS_OK;
    }
    unload(rt, s, ctx, reason);
    rc = pgsi_erase(rt, s, &ctx->self);
    return rc == PGS_ENOTFOUND && reason == PGS_REASON_STOP ? PGS_OK : rc;
}

/* Writes the state as the write mode says. */
static int persist(pgs_runtime *rt, server *s, pgs_ctx *ctx)
{
    if (s->write_mode == PGS_WRITE_ON_PASSIVATE) {
        s->dirty = 1;
        return PGS_OK;
    }
    return pgsi_write(rt, s, &ctx->self);
}

/* Runs init for a server that has no record, and writes it. */
static int create(pgs_runtime *rt, server *s, pgs_ctx *ctx, const void *args,
                  size_t len, const pgs_server_opts *opts)
{
    int rc = pgsi_init_state(rt, ctx, s, args, len, opts);
    if (rc)
        return rc;
    if ((rc = pgsi_write(rt, s, &ctx->self)))
        unload(rt, s, ctx, PGS_REASON_CRASH);
    return rc;
}

/* Brings an unloaded server into memory for message m.  Returns CONTINUE
** when the handler should run, or the message's final status.  A stopped
** or deleted server is simply one without a record: messages queued behind
** the stop meet it exactly as later ones do (PGS_ENOTFOUND, or a fresh
** init for a virtual behaviour). */
static int activate(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m)
{
    static const pgs_server_opts no_opts;
    if (m->kind == M_DELETE)
        return pgsi_erase(rt, s, &ctx->self);
    int rc = pgsi_load(rt, s, &ctx->self);
    if (rc == PGS_OK)
        return m->kind == M_START ? PGS_OK : CONTINUE;
    if (rc != PGS_ENOTFOUND)
        return rc;
    if (m->kind == M_START)
        return create(rt, s, ctx, m->data, m->len, &m->opts);
    if (m->kind == M_STOP || !(s->beh->b->flags & PGS_VIRTUAL))
        return PGS_ENOTFOUND;
    rc = create(rt, s, ctx, NULL, 0, &no_opts);
    return rc ? rc : CONTINUE;
}

/* Calls the behaviour's handler for m. */
static int invoke(server *s, pgs_ctx *ctx, msg *m)
{
    const pgs_behaviour *b = s->beh->b;
    void *state = pgsi_server_state(s);
    switch (m->kind) {
    case M_CALL:
        return b->handle_call ? b->handle_call(ctx, state, m->data, m->len) : -1;
    case M_CAST:
        return b->handle_cast ? b->handle_cast(ctx, state, m->data, m->len) : PGS_NOPERSIST;
    default: {
        pgs_info info = {.kind = m->info_kind, .status = m->status, .tag = m->tag,
                         .data = m->data, .len = m->len};
        return b->handle_info ? b->handle_info(ctx, state, &info) : PGS_NOPERSIST;
    }
    }
}

/* What the handler's result does.  Returns the message's status. */
static int after_handler(pgs_runtime *rt, server *s, pgs_ctx *ctx, int r)
{
    int rc;
    switch (r) {
    case PGS_PERSIST:
        if ((rc = persist(rt, s, ctx)) == PGS_ECALLBACK || rc == PGS_ETOOBIG)
            crash(rt, s, ctx); /* encode failed: the behaviour's fault */
        else if (rc)           /* storage failed: drop what was not written */
            unload(rt, s, ctx, PGS_REASON_CRASH);
        return rc;
    case PGS_NOPERSIST:
        s->dirty = 1;
        return PGS_OK;
    case PGS_UNCHANGED:
        return PGS_OK;
    case PGS_STOP:
        if (s->lifecycle == PGS_PERMANENT)
            s->dirty = 1; /* the turn completed: keep what it did */
        return stop(rt, s, ctx, PGS_REASON_STOP);
    case PGS_CRASH:
        crash(rt, s, ctx);
        return PGS_ECRASH;
    default:
        crash(rt, s, ctx);
        return PGS_ECALLBACK;
    }
}

static int turn(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m)
{
    if (!atomic_load_explicit(&s->loaded, memory_order_relaxed)) {
        int rc = activate(rt, s, ctx, m);
        if (rc != CONTINUE)
            return rc;
    }
    switch (m->kind) {
    case M_START:
        return PGS_OK;
    case M_STOP:
        return stop(rt, s, ctx, PGS_REASON_STOP);
    case M_DELETE:
        return stop(rt, s, ctx, PGS_REASON_DELETE);
    }
    int r = invoke(s, ctx, m);
    if (r == -1) /* a call to a behaviour without handle_call */
        return PGS_ENOTSUP;
    return after_handler(rt, s, ctx, r);
}

/* Sends what the turn queued, now that its write is done. */
static void flush_outbox(pgs_runtime *rt, pgs_ctx *ctx, int ok)
{
    msg *m = ctx->out_head, *next;
    for (; m; m = next) {
        next = m->next;
        const beh *b = ok ? pgsi_beh_find(rt, m->target->name) : NULL;
        pgs_ref *target = m->target;
        m->target = NULL;
        if (b)
            pgsi_send(rt, b, target, m);
        else
            pgsi_msg_free(m);
        free(target);
    }
    ctx->out_head = ctx->out_tail = NULL;
}

/* Gives the message's status (and reply) to whoever waits for it. */
static void deliver(pgs_runtime *rt, server *s, msg *m, int status, pgs_ctx *ctx)
{
    pgs_bytes r = {0};
    if (status == PGS_OK && ctx->has_reply) {
        r.data = ctx->reply.data;
        r.len = ctx->reply.len;
        ctx->reply.data = NULL;
    }
    pgsi_buf_free(&ctx->reply);
    if (m->direct) { /* the caller is this thread, further up the stack */
        m->w->status = status;
        m->w->reply = r;
        m->w->done = 1;
        return;
    }
    if (m->sync) { /* m->w may be detached by a timed-out caller: read it locked */
        shard *sh = pgsi_shard_of(rt, s->hash);
        pthread_mutex_lock(&sh->lock);
        waiter *w = m->w;
        if (w) {
            w->status = status;
            w->reply = r;
            w->done = 1;
            pthread_cond_signal(&w->cv);
            r.data = NULL;
        }
        pthread_mutex_unlock(&sh->lock);
    } else if (m->reply_to) {
        const beh *b = pgsi_beh_find(rt, m->reply_to->name);
        msg *rm = b ? pgsi_msg_new(M_INFO, r.data, r.len) : NULL;
        if (rm) {
            rm->info_kind = PGS_INFO_REPLY;
            rm->status = status;
            rm->tag = m->tag;
            pgsi_send(rt, b, m->reply_to, rm);
        }
    }
    free(r.data);
    pgsi_msg_free(m);
}

/* One message, start to finish. */
static void process(pgs_runtime *rt, server *s, msg *m)
{
    pgs_ctx *outer = pgsi_current_ctx();
    pgs_ctx ctx = {.rt = rt, .s = s, .kind = m->kind, .outer = outer,
                   .depth = outer ? outer->depth + 1 : 1};
    pgsi_ref_of(s, &ctx.self);
    pgsi_buf_init(&ctx.reply, rt->opts.max_message_size);
    pgsi_set_ctx(&ctx);
    int status = turn(rt, s, &ctx, m);
    if (status == PGS_OK && ctx.reply_rc)
        status = ctx.reply_rc; /* the turn stands; the reply could not be made */
    pgsi_set_ctx(outer);
    flush_outbox(rt, &ctx, status == PGS_OK);
    PGSI_STAT(rt, s, messages, 1);
    deliver(rt, s, m, status, &ctx);
}

/* Idle passivation: write if dirty, terminate, unload.  On a failed write
** the server stays active and the timer tries again later. */
static void passivate(pgs_runtime *rt, server *s, int reason)
{
    pgs_ctx *outer = pgsi_current_ctx();
    pgs_ctx ctx = {.rt = rt, .s = s, .outer = outer, .depth = outer ? outer->depth + 1 : 1};
    pgsi_ref_of(s, &ctx.self);
    pgsi_set_ctx(&ctx);
    int rc = s->dirty ? pgsi_write(rt, s, &ctx.self) : PGS_OK;
    if (rc == PGS_OK) {
        unload(rt, s, &ctx, reason);
        PGSI_STAT(rt, s, passivations, 1);
    }
    pgsi_set_ctx(outer);
    flush_outbox(rt, &ctx, rc == PGS_OK);
}

/* ------------------------------------------------------------------------
** Owners.  run_owned() runs s's mailbox as its owner until `mine` has been
** handled (a caller), or `budget` messages ran (a worker), then releases.
** A caller whose deadline passes while it runs messages queued before its
** own detaches its message (still handled later) and gives the server up.
*/
static void run_owned(pgs_runtime *rt, server *s, msg *mine, int64_t deadline, int budget)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        msg *m = s->mb_head;
        int done = !m || (!mine && budget-- <= 0);
        if (!done && mine && m != mine && deadline && pgsi_now_ns() > deadline) {
            mine->w = NULL; /* the caller gives up; the message stays queued */
            done = 1;
        }
        if (done) {
            if (!m && s->passivate_pending) {
                s->passivate_pending = 0;
                pthread_mutex_unlock(&sh->lock);
                passivate(rt, s, PGS_REASON_PASSIVATE);
                continue;
            }
            int free_it = release_locked(rt, sh, s);
            pthread_mutex_unlock(&sh->lock);
            if (free_it)
                pgsi_server_free(s);
            return;
        }
        mb_pop(s);
        unwait(s, m);
        s->passivate_pending = 0;
        pthread_mutex_unlock(&sh->lock);
        if (m == mine) {
            mine = NULL;
            budget = 0;
        }
        process(rt, s, m);
    }
}

/* ------------------------------------------------------------------------
** Entry points.
*/
int pgsi_send(pgs_runtime *rt, const beh *b, const pgs_ref *ref, msg *m)
{
    uint64_t h = pgsi_ref_hash(ref);
    shard *sh = pgsi_shard_of(rt, h);
    server *s;
    pthread_mutex_lock(&sh->lock);
    int rc = lookup(sh, b, ref, h, &s);
    if (rc == PGS_OK) {
        mb_push(s, m);
        if (s->status == S_IDLE) {
            s->status = S_SCHEDULED;
            if (!s->in_runq)
                pgsi_runq_push(rt, s);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc)
        pgsi_msg_free(m);
    return rc;
}

/* Waits (shard lock held) until the reply comes, ownership is handed to us,
** or the deadline passes.  Returns 1 if we now own the server. */
static int wait_reply(shard *sh, server *s, msg *m, waiter *w, int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    m->waiting = 1;
    s->nwaiting++;
    while (!w->done && !w->handoff) {
        if (pthread_cond_timedwait(&w->cv, &sh->lock, &ts) != 0 && !w->done &&
            !w->handoff && pgsi_now_ns() >= deadline) {
            unwait(s, m);
            m->w = NULL; /* detach: the message is handled later, reply dropped */
            return 0;
        }
    }
    return w->handoff != NULL;
}

static void cv_init(waiter *w)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &a);
    pthread_condattr_destroy(&a);
}

/* The direct path: the server was idle, this thread runs the message. */
static int run_direct(pgs_runtime *rt, server *s, msg *m, waiter *w)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    process(rt, s, m);
    pthread_mutex_lock(&sh->lock);
    s->passivate_pending = 0;
    int free_it = release_locked(rt, sh, s);
    pthread_mutex_unlock(&sh->lock);
    if (free_it)
        pgsi_server_free(s);
    return w->status;
}

/* Queues m behind the server's current work and waits for it. */
static int run_queued(pgs_runtime *rt, shard *sh, server *s, msg *m, waiter *w,
                      int64_t deadline)
{
    const void *me = w->token;
    int own = 0;
    cv_init(w);
    m->w = w;
    m->sync = 1;
    mb_push(s, m);
    if (s->status == S_SCHEDULED) { /* take it over: no thread hop */
        s->status = S_RUNNING;
        s->owner = me;
        own = 1;
    } else {
        own = wait_reply(sh, s, m, w, deadline);
    }
    pthread_mutex_unlock(&sh->lock);
    if (own)
        run_owned(rt, s, m, deadline, 0);
    pthread_cond_destroy(&w->cv);
    return w->done ? w->status : PGS_ETIMEDOUT;
}

int pgsi_request(pgs_runtime *rt, const beh *b, const pgs_ref *ref, int kind,
                 const void *data, size_t len, const pgs_server_opts *opts,
                 pgs_bytes *reply, int timeout_ms)
{
    pgs_ctx *cur = pgsi_current_ctx();
    if (cur && cur->depth >= PGSI_MAX_DEPTH)
        return PGS_ELOOP;
    if (timeout_ms < 0)
        timeout_ms = (int)rt->opts.default_call_timeout_ms;
    waiter w = {.token = pgsi_thread_token()};
    uint64_t h = pgsi_ref_hash(ref);
    shard *sh = pgsi_shard_of(rt, h);
    server *s;
    int rc;

    pthread_mutex_lock(&sh->lock);
    if ((rc = lookup(sh, b, ref, h, &s))) {
        pthread_mutex_unlock(&sh->lock);
        return rc;
    }
    if (s->status == S_RUNNING && s->owner == w.token) {
        pthread_mutex_unlock(&sh->lock);
        return PGS_EDEADLK;
    }
    if (s->status == S_IDLE) {
        s->status = S_RUNNING;
        s->owner = w.token;
        pthread_mutex_unlock(&sh->lock);
        msg m = {.kind = (uint8_t)kind, .direct = 1, .w = &w, .data = data, .len = len};
        if (opts)
            m.opts = *opts;
        rc = run_direct(rt, s, &m, &w);
    } else {
        msg *m = pgsi_msg_new(kind, data, len);
        if (!m) {
            pthread_mutex_unlock(&sh->lock);
            return PGS_ENOMEM;
        }
        if (opts)
            m->opts = *opts;
        /* Only a call that may wait reads the clock: the direct path never does. */
        rc = run_queued(rt, sh, s, m, &w, pgsi_now_ns() + (int64_t)timeout_ms * 1000000);
    }
    if (reply && rc == PGS_OK)
        *reply = w.reply;
    else
        free(w.reply.data);
    return rc;
}

void pgsi_run_popped(pgs_runtime *rt, server *s)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    pthread_mutex_lock(&sh->lock);
    s->in_runq = 0;
    if (s->dead && !s->in_timer) {
        pthread_mutex_unlock(&sh->lock);
        pgsi_server_free(s);
        return;
    }
    if (s->dead || s->status != S_SCHEDULED) { /* a caller took it */
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    s->status = S_RUNNING;
    s->owner = pgsi_thread_token();
    pthread_mutex_unlock(&sh->lock);
    run_owned(rt, s, NULL, 0, PGSI_BATCH);
}

void pgsi_idle_due(pgs_runtime *rt, server *s)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    pthread_mutex_lock(&sh->lock);
    s->in_timer = 0;
    if (s->dead) {
        int free_it = !s->in_runq;
        pthread_mutex_unlock(&sh->lock);
        if (free_it)
            pgsi_server_free(s);
        return;
    }
    if (s->status == S_IDLE && !atomic_load_explicit(&rt->closing, memory_order_relaxed)) {
        int64_t due = s->last_active + (int64_t)s->idle_ms * 1000000;
        if (due <= pgsi_now_ns()) {
            s->status = S_SCHEDULED;
            s->passivate_pending = 1;
            if (!s->in_runq)
                pgsi_runq_push(rt, s);
        } else {
            pgsi_idle_arm(rt, s, due);
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

/* Shutdown, single-threaded: workers and the timer are stopped, so nothing
** links a server but the registry, and every mailbox is empty.  Returns the
** first failed passivation write (that state is lost), else PGS_OK. */
int pgsi_passivate_all(pgs_runtime *rt)
{
    int first = PGS_OK;
    for (size_t i = 0; i < PGSI_SHARDS; i++) {
        server *s = pgsi_reg_take_all(&rt->shards[i]), *next;
        for (; s; s = next) {
            next = s->hnext;
            msg *m;
            while ((m = mb_pop(s))) /* none expected: the pool drained */
                pgsi_msg_free(m);
            if (atomic_load_explicit(&s->loaded, memory_order_relaxed))
                passivate(rt, s, PGS_REASON_SHUTDOWN);
            if (atomic_load_explicit(&s->loaded, memory_order_relaxed)) { /* write failed */
                unload(rt, s, &(pgs_ctx){.rt = rt, .s = s}, PGS_REASON_SHUTDOWN);
                first = first ? first : PGS_ESTORAGE;
            }
            pgsi_server_free(s);
        }
    }
    return first;
}

int pgsi_revive(pgs_runtime *rt, const beh *b, const pgs_ref *ref)
{
    return pgsi_request(rt, b, ref, M_START, NULL, 0, NULL, NULL, -1);
}
