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
#include <time.h>

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

/* sh: s's shard, whose lock is held; it keeps the mailbox figures. */
static void mb_push(shard *sh, server *s, msg *m)
{
    m->next = NULL;
    if (s->mb_tail)
        s->mb_tail->next = m;
    else
        s->mb_head = m;
    s->mb_tail = m;
    PGSI_STAT_LOCKED(sh, queued, 1);
    if (++s->mb_len > atomic_load_explicit(&sh->st.queued_max, memory_order_relaxed))
        atomic_store_explicit(&sh->st.queued_max, s->mb_len, memory_order_relaxed);
}

static msg *mb_pop(shard *sh, server *s)
{
    msg *m = s->mb_head;
    if (!m)
        return NULL;
    if (!(s->mb_head = m->next))
        s->mb_tail = NULL;
    s->mb_len--;
    PGSI_STAT_LOCKED(sh, queued, -1);
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

static int backing_off(pgs_runtime *rt, server *s);

/* The struct may leave the registry: idle, nothing in memory, nothing
** queued, no write in flight (shard lock held).  Returns 1 if nothing else
** links it either: the caller frees it after unlocking. */
int pgsi_release_idle(pgs_runtime *rt, shard *sh, server *s)
{
    if (s->dead || s->status != S_IDLE || s->mb_head ||
        atomic_load_explicit(&s->loaded, memory_order_relaxed) || backing_off(rt, s) ||
        !pgsi_writes_idle(rt, s))
        return 0; /* (a backoff lives in the struct: it stays until the timer) */
    pgsi_reg_remove(sh, s);
    s->dead = 1;
    return !s->in_runq && !s->in_timer;
}

/* A server with queued messages and no owner gets one: a blocked caller
** (no worker needed), else a worker through the run queue. */
static void wake_owner(pgs_runtime *rt, server *s)
{
    waiter *w = take_waiting(s);
    if (w) {
        s->status = S_RUNNING;
        s->owner = w->token;
        w->handoff = s;
        atomic_fetch_add_explicit(&w->wake, 1, memory_order_relaxed);
        pgsi_wake(w); /* rare: under the lock, as it must not wait for the unlock */
        return;
    }
    s->status = S_SCHEDULED;
    s->owner = NULL;
    if (!s->in_runq)
        pgsi_runq_push(rt, s);
}

/* 1 if s is backing off after a crash: its next turn must wait (shard
** lock held).  Not while the runtime closes: queued work is handled. */
static int backing_off(pgs_runtime *rt, server *s)
{
    if (!s->backoff_until)
        return 0;
    if (s->backoff_until > pgsi_now_ns() && !atomic_load_explicit(&rt->closing, memory_order_relaxed))
        return 1;
    s->backoff_until = 0;
    return 0;
}

/* A worker gives up a server that backs off: its messages wait for the
** backoff's wake (pgsi_wake_due), which finds an owner then. */
static void release_backoff(server *s)
{
    s->status = S_IDLE;
    s->owner = NULL;
}

static int release_locked(pgs_runtime *rt, shard *sh, server *s)
{
    if (!s->mb_head) {
        s->status = S_IDLE;
        s->owner = NULL;
        if (!atomic_load_explicit(&s->loaded, memory_order_relaxed)) {
            if (backing_off(rt, s)) /* the struct keeps the backoff: its wake frees it */
                return 0;
            return pgsi_release_idle(rt, sh, s); /* else its last write takes it out */
        }
        s->last_active = pgsi_now_ns();
        int64_t due = s->last_active + (int64_t)s->idle_ms * 1000000;
        int arm = s->idle_ms != PGS_IDLE_NEVER &&
                  !atomic_load_explicit(&rt->closing, memory_order_relaxed);
        if (arm && s->rearm) /* pgs_reconfigure changed the timeout */
            pgsi_idle_rearm(rt, s, due);
        else if (arm && !s->in_timer)
            pgsi_idle_arm(rt, s, due);
        s->rearm = 0;
        return 0;
    }
    if (backing_off(rt, s))
        release_backoff(s);
    else
        wake_owner(rt, s);
    return 0;
}

/* ------------------------------------------------------------------------
** Turns.  A turn handles one message as the owner, with no lock held.
** Writes go to the commit pipeline (commit.c); they do not wait.
*/

/* Discards the in-memory state (terminate first). */
void pgsi_unload(pgs_runtime *rt, server *s, pgs_ctx *ctx, int reason)
{
    if (!atomic_load_explicit(&s->loaded, memory_order_relaxed))
        return;
    if (s->beh->b->terminate)
        s->beh->b->terminate(ctx, pgsi_server_state(s), reason);
    atomic_store_explicit(&s->loaded, 0, memory_order_relaxed);
    PGSI_STAT(rt, s, active, -1);
    s->dirty = 0;
}

/* A failed turn: drop the state.  What comes back, and when, is
** fault.c's to say once the turn is over (pgsi_fault_crashed). */
static void crash(pgs_runtime *rt, server *s, pgs_ctx *ctx)
{
    pgsi_unload(rt, s, ctx, PGS_REASON_CRASH);
    PGSI_STAT(rt, s, crashes, 1);
    ctx->crashed = 1;
}

/* A normal stop: permanent servers keep their state and are revived. */
static int stop(pgs_runtime *rt, server *s, pgs_ctx *ctx, int reason)
{
    int rc = PGS_OK;
    if (s->lifecycle == PGS_PERMANENT && reason == PGS_REASON_STOP) {
        if (s->dirty && (rc = pgsi_write(rt, s, &ctx->self, 0, NULL)))
            return rc;
        pgsi_unload(rt, s, ctx, reason);
        pgsi_monitor_event(rt, &ctx->self, s->hash, PGS_EVENT_STOP);
        pgsi_load(rt, s, &ctx->self, 0);
        return PGS_OK;
    }
    pgsi_unload(rt, s, ctx, reason);
    rc = pgsi_erase(rt, s, &ctx->self);
    pgsi_monitor_event(rt, &ctx->self, s->hash,
                       reason == PGS_REASON_DELETE ? PGS_EVENT_DELETE : PGS_EVENT_STOP);
    pgsi_fault_forget(rt, &ctx->self);
    return rc;
}

/* Writes the state as the write mode says. */
static int persist(pgs_runtime *rt, server *s, pgs_ctx *ctx, const msg *m)
{
    if (s->write_mode == PGS_WRITE_ON_PASSIVATE) {
        s->dirty = 1;
        return PGS_OK;
    }
    return pgsi_write(rt, s, &ctx->self, s->write_mode == PGS_WRITE_ASYNC, m);
}

/* Runs init for a server that has no record, and writes it. */
static int create(pgs_runtime *rt, server *s, pgs_ctx *ctx, const void *args,
                  size_t len, const pgs_server_opts *opts)
{
    int rc = pgsi_init_state(rt, ctx, s, args, len, opts);
    if (rc)
        return rc;
    if ((rc = pgsi_write(rt, s, &ctx->self, 0, NULL)))
        pgsi_unload(rt, s, ctx, PGS_REASON_CRASH);
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
    if (m->kind == M_DELETE) {
        int rc = pgsi_erase_stored(rt, s, &ctx->self);
        if (rc == PGS_OK) {
            pgsi_monitor_event(rt, &ctx->self, s->hash, PGS_EVENT_DELETE);
            pgsi_fault_forget(rt, &ctx->self);
        }
        return rc;
    }
    int rc = pgsi_load(rt, s, &ctx->self, m->kind == M_STOP || M_IS_OPERATOR(m->kind));
    if (rc == PGS_OK) {
        pgsi_monitor_event(rt, &ctx->self, s->hash, PGS_EVENT_ACTIVATE);
        return m->kind == M_START ? PGS_OK : CONTINUE;
    }
    if (rc != PGS_ENOTFOUND)
        return rc;
    if (m->kind == M_START)
        rc = create(rt, s, ctx, m->data, m->len, &m->opts);
    else if (m->kind == M_STOP || M_IS_OPERATOR(m->kind) || !(s->beh->b->flags & PGS_VIRTUAL))
        return PGS_ENOTFOUND;
    else
        rc = create(rt, s, ctx, NULL, 0, &no_opts);
    if (rc == PGS_OK)
        pgsi_monitor_event(rt, &ctx->self, s->hash, PGS_EVENT_ACTIVATE);
    return rc ? rc : m->kind == M_START ? PGS_OK : CONTINUE;
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
static int after_handler(pgs_runtime *rt, server *s, pgs_ctx *ctx, const msg *m, int r)
{
    int rc;
    switch (r) {
    case PGS_PERSIST:
        if ((rc = persist(rt, s, ctx, m)) == PGS_ECALLBACK || rc == PGS_ETOOBIG)
            crash(rt, s, ctx); /* encode failed: the behaviour's fault */
        else if (rc)           /* no memory, or an inline engine failed */
            pgsi_unload(rt, s, ctx, PGS_REASON_CRASH); /* drop what was not written */
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

/* One attempt at m: activation, then the handler or the runtime's own
** action. */
static int attempt(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m)
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
    case M_CALL: case M_CAST: case M_INFO:
        break;
    default:
        return pgsi_fault_operator(rt, s, ctx, m);
    }
    int r = invoke(s, ctx, m);
    if (r == -1) /* a call to a behaviour without handle_call */
        return PGS_ENOTSUP;
    return after_handler(rt, s, ctx, m, r);
}

static void drop_msgs(msg *m);

/* Forgets what a crashed attempt said and sent. */
static void forget_outputs(pgs_ctx *ctx)
{
    drop_msgs(ctx->out_head);
    ctx->out_head = ctx->out_tail = NULL;
    ctx->reply.len = 0;
    ctx->has_reply = 0;
    ctx->reply_rc = 0;
    ctx->crashed = 0;
}

static int turn(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m)
{
    if (atomic_load_explicit(&s->write_error, memory_order_relaxed)) {
        /* A write failed: what is in memory may be ahead of storage. */
        pgsi_unload(rt, s, ctx, PGS_REASON_CRASH);
        pgsi_recover(rt, s);
    }
    for (;;) {
        int rc = attempt(rt, s, ctx, m);
        if (!ctx->crashed) {
            s->streak = 0;
            return rc;
        }
        if (!pgsi_fault_crashed(rt, s, ctx, m, rc))
            return rc;
        forget_outputs(ctx); /* and again, on the state storage has */
    }
}

/* ------------------------------------------------------------------------
** Outputs.  A turn's reply and the messages it sent go out now if nothing
** of its server is in flight, else they wait behind the server's last
** write (commit.c, pgsi_gate) and go when it is durable.
*/
static void drop_msgs(msg *m)
{
    for (msg *next; m; m = next) {
        next = m->next;
        pgsi_msg_free(m);
    }
}

/* Sends a turn's messages, in the order it sent them. */
static void send_outbox(pgs_runtime *rt, msg *m)
{
    for (msg *next; m; m = next) {
        next = m->next;
        const beh *b = pgsi_beh_find(rt, m->target->name);
        pgs_ref *target = m->target;
        m->target = NULL;
        if (b)
            pgsi_send(rt, b, target, m);
        else
            pgsi_msg_free(m);
        free(target);
    }
}

static void send_async_reply(pgs_runtime *rt, held *h)
{
    const beh *b = pgsi_beh_find(rt, h->reply_to->name);
    msg *rm = b ? pgsi_msg_new(M_INFO, h->reply.data, h->reply.len) : NULL;
    if (rm) {
        rm->info_kind = PGS_INFO_REPLY;
        rm->status = h->status;
        rm->tag = h->tag;
        pgsi_send(rt, b, h->reply_to, rm);
    }
}

/* Hands the status and reply to a waiting caller (shard lock held); the
** caller wakes it with pgsi_wake once unlocked. */
static void to_waiter(waiter *w, held *h)
{
    w->status = h->status;
    w->reply = h->reply;
    w->done = 1;
    w->held = NULL;
    h->reply = (pgs_bytes){0};
    atomic_fetch_add_explicit(&w->wake, 1, memory_order_relaxed);
}

/* Releases one turn's outputs.  write_status is the outcome of the write
** they waited for: if it failed, the turn's effects are void.  *wp is where
** a synchronous caller's waiter is (h->w, or m->w for a turn that did not
** wait): a caller that gives up clears it, so it is read under the lock. */
static void release(pgs_runtime *rt, server *s, held *h, waiter **wp, int write_status)
{
    int fail = h->failed ? h->failed : write_status;
    if (fail) {
        if (h->status == PGS_OK)
            h->status = fail;
        pgs_bytes_free(&h->reply);
        drop_msgs(h->outbox);
        h->outbox = NULL;
    }
    if (h->sync) {
        shard *sh = pgsi_shard_of(rt, s->hash);
        pthread_mutex_lock(&sh->lock);
        waiter *w = *wp; /* NULL if the caller gave up waiting */
        if (w)
            to_waiter(w, h);
        pthread_mutex_unlock(&sh->lock);
        if (w)
            pgsi_wake(w);
    } else if (h->reply_to) {
        send_async_reply(rt, h);
    }
    send_outbox(rt, h->outbox);
    pgs_bytes_free(&h->reply);
    free(h->reply_to);
}

void pgsi_held_release_all(pgs_runtime *rt, server *s, held *h, int write_status)
{
    for (held *next; h; h = next) {
        next = h->next;
        release(rt, s, h, &h->w, write_status);
        free(h);
    }
}

/* Holds h behind s's last write, or fails it after a write error.
** Returns 0 if nothing of s is in flight after all: h may go now. */
static int gate(pgs_runtime *rt, server *s, msg *m, held *h, int lead)
{
    held *copy = malloc(sizeof *copy);
    if (!copy) { /* cannot wait: the outputs cannot go early either */
        h->failed = PGS_ENOMEM;
        return 0;
    }
    *copy = *h;
    shard *sh = pgsi_shard_of(rt, s->hash);
    pthread_mutex_lock(&sh->lock); /* guards m->w, and the completion's delivery */
    waiter *w = copy->w = h->sync ? m->w : NULL;
    /* Once held, a copy without a waiter may be released and freed at any
    ** moment; one with a waiter is released under this lock, not before. */
    int gated = pgsi_gate(rt, s, copy, lead);
    if (gated == GATE_HELD && w)
        w->held = copy;
    pthread_mutex_unlock(&sh->lock);
    if (gated == GATE_NOW) {
        free(copy);
        return 0;
    }
    if (gated == GATE_FAILED) { /* a write of this server failed: so does this turn */
        /* Through m->w, not the copy: the caller may give up once the lock
        ** is dropped, and it clears m->w, not the copy, as it goes. */
        release(rt, s, copy, &m->w, 0);
        free(copy);
    }
    return 1;
}

/* Gives a turn's outputs to whoever waits: now if nothing of the server is
** in flight (only this owner could add a write, so the check is stable),
** else once the server's last write is durable.  In async mode they go now. */
static void output(pgs_runtime *rt, server *s, msg *m, held *h, int lead)
{
    h->sync = m->sync || m->direct;
    if (s->write_mode != PGS_WRITE_ASYNC && !pgsi_nothing_in_flight(s) &&
        gate(rt, s, m, h, lead))
        return;
    if (m->direct && !h->failed) { /* the caller is this thread, up the stack */
        m->w->status = h->status;
        m->w->reply = h->reply;
        m->w->done = 1;
        send_outbox(rt, h->outbox);
        free(h->reply_to);
        return;
    }
    release(rt, s, h, &m->w, 0);
}

/* One message, start to finish.  `lead`: this thread waits for the outputs
** (a caller), so it may commit the turn's write itself, at once. */
static void process(pgs_runtime *rt, server *s, msg *m, int lead)
{
    pgs_ctx *outer = pgsi_current_ctx();
    pgs_ctx ctx = {.rt = rt, .s = s, .kind = m->kind, .outer = outer,
                   .depth = outer ? outer->depth + 1 : 1, .lead = lead};
    pgsi_ref_of(s, &ctx.self);
    pgsi_buf_init(&ctx.reply, rt->opts.max_message_size);
    pgsi_set_ctx(&ctx);
    int status = turn(rt, s, &ctx, m);
    pgsi_set_ctx(outer);
    PGSI_STAT(rt, s, messages, 1);

    held h = {.status = status, .tag = m->tag, .reply_to = m->reply_to};
    m->reply_to = NULL;
    if (status == PGS_OK) {
        h.outbox = ctx.out_head; /* the turn stands: what it sent goes */
        if (ctx.reply_rc) {      /* ...but its reply could not be made */
            h.status = ctx.reply_rc;
        } else if (ctx.has_reply) {
            h.reply = (pgs_bytes){ctx.reply.data, ctx.reply.len};
            ctx.reply.data = NULL; /* moved */
        }
    } else {
        drop_msgs(ctx.out_head);
    }
    pgsi_buf_free(&ctx.reply);
    if (lead && !pgsi_nothing_in_flight(s))
        pgsi_commit_lead(rt); /* the common case at low load: no thread hop */
    output(rt, s, m, &h, lead);
    if (!m->direct)
        pgsi_msg_free(m);
}

/* Idle passivation: write if dirty, terminate, unload.  The write must be
** durable before the state goes: if it fails, the server stays active (the
** timer tries again later).  A write still in flight from an earlier turn
** needs no wait: the struct stays registered until it lands, and a reload
** waits for it. */
static void passivate(pgs_runtime *rt, server *s, int reason)
{
    pgs_ctx *outer = pgsi_current_ctx();
    pgs_ctx ctx = {.rt = rt, .s = s, .outer = outer, .depth = outer ? outer->depth + 1 : 1,
                   .lead = 1 /* it waits for its write */};
    pgsi_ref_of(s, &ctx.self);
    pgsi_set_ctx(&ctx);
    int rc = PGS_OK;
    if (s->dirty && (rc = pgsi_write(rt, s, &ctx.self, 0, NULL)) == PGS_OK)
        rc = pgsi_wait_durable(rt, s, &ctx.self);
    if (rc == PGS_OK) {
        pgsi_unload(rt, s, &ctx, reason);
        PGSI_STAT(rt, s, passivations, 1);
        pgsi_monitor_event(rt, &ctx.self, s->hash, PGS_EVENT_PASSIVATE);
    }
    pgsi_set_ctx(outer);
    drop_msgs(ctx.out_head); /* terminate has no outputs to hold */
}

/* Sleeps until `until` (ns, monotonic), but not past `deadline` (0:
** none).  Returns 1 if the deadline came first. */
static int sleep_until(int64_t until, int64_t deadline)
{
    int64_t end = deadline && deadline < until ? deadline : until;
    for (int64_t now; (now = pgsi_now_ns()) < end;) {
        int64_t d = end - now;
        struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
        nanosleep(&ts, NULL);
    }
    return end != until;
}

/* ------------------------------------------------------------------------
** Owners.  run_owned() runs s's mailbox as its owner until `mine` has been
** handled (a caller), or `budget` messages ran (a worker), then releases.
** A caller whose deadline passes while it runs messages queued before its
** own detaches its message (still handled later) and gives the server up.
*/
static int run_owned(pgs_runtime *rt, server *s, msg *mine, int64_t deadline, int budget)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    int handled = 0; /* mine was handled */
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        msg *m = s->mb_head;
        int done = !m || (!mine && budget-- <= 0);
        if (!done && mine && deadline && (m != mine || backing_off(rt, s)) &&
            pgsi_now_ns() > deadline) {
            mine->w = NULL; /* the caller gives up; the message stays queued */
            done = 1;
        }
        if (!done && backing_off(rt, s)) {
            if (!mine) { /* a worker does not wait: the timer brings it back */
                release_backoff(s);
                pthread_mutex_unlock(&sh->lock);
                return handled;
            }
            int64_t until = s->backoff_until;
            pthread_mutex_unlock(&sh->lock); /* a caller waits, on its own thread */
            sleep_until(until, deadline);
            continue;
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
            return handled;
        }
        mb_pop(sh, s);
        unwait(s, m);
        s->passivate_pending = 0;
        pthread_mutex_unlock(&sh->lock);
        int is_mine = m == mine;
        process(rt, s, m, is_mine);
        if (is_mine) {
            mine = NULL;
            budget = 0;
            handled = 1;
        }
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
        mb_push(sh, s, m);
        if (s->status == S_IDLE && !backing_off(rt, s)) {
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
    m->waiting = 1;
    s->nwaiting++;
    while (!w->done && !w->handoff) {
        if (pgsi_sleep(w, &sh->lock, deadline) && !w->done && !w->handoff) {
            if (w->held) { /* handled; its reply waits for a write: stop waiting for it */
                w->held->w = NULL;
                w->held = NULL;
            } else {
                unwait(s, m);
                m->w = NULL; /* detach: the message is handled later, reply dropped */
            }
            return 0;
        }
    }
    return w->handoff != NULL;
}

/* A caller whose turn ran (on this thread or another) and whose reply waits
** for a write: commit batches while no one else does, then wait for the
** reply until the deadline.  Returns 0, or PGS_ETIMEDOUT. */
static int await_durable(pgs_runtime *rt, shard *sh, waiter *w, int64_t deadline)
{
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        int done = w->done;
        pthread_mutex_unlock(&sh->lock);
        if (done || !pgsi_commit_lead(rt))
            break;
    }
    int rc = PGS_OK;
    pthread_mutex_lock(&sh->lock);
    while (!w->done) {
        if (pgsi_sleep(w, &sh->lock, deadline) && !w->done) {
            if (w->held)
                w->held->w = NULL; /* the reply is dropped when it comes */
            w->held = NULL;
            rc = PGS_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

/* The direct path: the server was idle, this thread runs the message
** (after the backoff of a crash, if one is on: it owns the server, so
** nothing else runs it meanwhile). */
static int run_direct(pgs_runtime *rt, server *s, msg *m, waiter *w, int timeout_ms,
                      int64_t backoff)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    int64_t wait_ns = (int64_t)timeout_ms * 1000000;
    /* The clock is read only when there is something to wait for: the
    ** direct path's common case never does. */
    if (backoff && sleep_until(backoff, pgsi_now_ns() + wait_ns)) {
        w->status = PGS_ETIMEDOUT; /* never ran: give the server back */
        m = NULL;
    }
    if (m)
        process(rt, s, m, 1);
    pthread_mutex_lock(&sh->lock);
    s->passivate_pending = 0;
    int free_it = release_locked(rt, sh, s);
    int done = w->done;
    pthread_mutex_unlock(&sh->lock);
    if (free_it)
        pgsi_server_free(s);
    if (m && !done && await_durable(rt, sh, w, pgsi_now_ns() + wait_ns))
        return PGS_ETIMEDOUT;
    return w->status;
}

/* Queues m behind the server's current work and waits for it. */
static int run_queued(pgs_runtime *rt, shard *sh, server *s, msg *m, waiter *w,
                      int64_t deadline)
{
    const void *me = w->token;
    int own = 0;
    m->w = w;
    m->sync = 1;
    mb_push(sh, s, m);
    /* Take it over: no thread hop.  An idle server with a queue is waiting
    ** out a backoff: its owner-to-be (this thread) waits it out. */
    if (s->status == S_SCHEDULED || s->status == S_IDLE) {
        s->status = S_RUNNING;
        s->owner = me;
        own = 1;
    } else {
        own = wait_reply(sh, s, m, w, deadline);
    }
    pthread_mutex_unlock(&sh->lock);
    /* An owner runs the mailbox up to its message; if that was handled and
    ** the reply waits for a write, it waits (committing) like a direct call. */
    if (own && run_owned(rt, s, m, deadline, 0))
        await_durable(rt, sh, w, deadline);
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
    if (s->status == S_IDLE && !s->mb_head) {
        int64_t backoff = backing_off(rt, s) ? s->backoff_until : 0;
        s->status = S_RUNNING;
        s->owner = w.token;
        pthread_mutex_unlock(&sh->lock);
        msg m = {.kind = (uint8_t)kind, .direct = 1, .w = &w, .data = data, .len = len};
        if (opts)
            m.opts = *opts;
        rc = run_direct(rt, s, &m, &w, timeout_ms, backoff);
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

/* A second look at an idle server (shard lock held): a backoff that has
** ended, an idle timeout that has passed.  Returns 1 if the struct left
** the registry and the caller must free it. */
static int examine(pgs_runtime *rt, shard *sh, server *s)
{
    if (s->status != S_IDLE || backing_off(rt, s))
        return 0; /* busy; or a later backoff, whose own wake comes */
    if (s->mb_head) {
        wake_owner(rt, s);
        return 0;
    }
    if (!atomic_load_explicit(&s->loaded, memory_order_relaxed))
        return pgsi_release_idle(rt, sh, s);
    if (atomic_load_explicit(&rt->closing, memory_order_relaxed) || s->idle_ms == PGS_IDLE_NEVER)
        return 0;
    int64_t due = s->last_active + (int64_t)s->idle_ms * 1000000;
    if (due <= pgsi_now_ns()) {
        s->status = S_SCHEDULED;
        s->passivate_pending = 1;
        if (!s->in_runq)
            pgsi_runq_push(rt, s);
    } else if (!s->in_timer) {
        pgsi_idle_arm(rt, s, due);
    } /* else armed already: a changed timeout was re-armed at release */
    return 0;
}

void pgsi_idle_due(pgs_runtime *rt, server *s)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    pthread_mutex_lock(&sh->lock);
    s->in_timer = 0;
    int free_it = s->dead ? !s->in_runq : examine(rt, sh, s);
    pthread_mutex_unlock(&sh->lock);
    if (free_it)
        pgsi_server_free(s);
}

void pgsi_wake_due(pgs_runtime *rt, const beh *b, const pgs_ref *ref)
{
    uint64_t h = pgsi_ref_hash(ref);
    shard *sh = pgsi_shard_of(rt, h);
    pthread_mutex_lock(&sh->lock);
    server *s = pgsi_reg_find(sh, b, h, ref->key, ref->key_len);
    int free_it = s ? examine(rt, sh, s) : 0;
    pthread_mutex_unlock(&sh->lock);
    if (free_it)
        pgsi_server_free(s);
}

/* Shutdown, single-threaded but for the committer: workers and the timer
** are stopped, so nothing links a server but the registry and every
** mailbox is empty.  Unwritten changes are queued for every server at
** once, committed together, then every state is dropped.  Returns
** PGS_ESTORAGE if some state could not be written (it is lost), else
** PGS_OK. */
int pgsi_passivate_all(pgs_runtime *rt)
{
    server *all = NULL;
    for (size_t i = 0; i < PGSI_SHARDS; i++) {
        server *s = pgsi_reg_take_all(&rt->shards[i]), *next;
        for (; s; s = next) {
            next = s->hnext;
            pgs_ref ref;
            pgsi_ref_of(s, &ref);
            if (atomic_load_explicit(&s->loaded, memory_order_relaxed) && s->dirty &&
                pgsi_write(rt, s, &ref, 0, NULL) == PGS_OK)
                s->dirty = 0;
            s->hnext = all;
            all = s;
        }
    }
    pgsi_commit_drain(rt);
    int first = PGS_OK;
    for (server *s = all, *next; s; s = next) {
        next = s->hnext;
        msg *m;
        while ((m = mb_pop(pgsi_shard_of(rt, s->hash), s))) /* none expected: drained */
            pgsi_msg_free(m);
        int lost = s->dirty || atomic_load_explicit(&s->write_error, memory_order_relaxed);
        if (atomic_load_explicit(&s->loaded, memory_order_relaxed)) {
            pgs_ctx ctx = {.rt = rt, .s = s};
            pgsi_ref_of(s, &ctx.self);
            pgsi_unload(rt, s, &ctx, PGS_REASON_SHUTDOWN);
            PGSI_STAT(rt, s, passivations, 1);
            pgsi_monitor_event(rt, &ctx.self, s->hash, PGS_EVENT_PASSIVATE);
        }
        first = first ? first : lost ? PGS_ESTORAGE : PGS_OK;
        pgsi_server_free(s);
    }
    return first;
}

/* At shutdown: servers waiting out a backoff get an owner now, so their
** queued messages are handled before the pool stops. */
void pgsi_kick_waiting(pgs_runtime *rt)
{
    for (size_t i = 0; i < PGSI_SHARDS; i++) {
        shard *sh = &rt->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b < sh->nbuckets; b++)
            for (server *s = sh->buckets[b]; s; s = s->hnext)
                if (s->status == S_IDLE && s->mb_head)
                    wake_owner(rt, s);
        pthread_mutex_unlock(&sh->lock);
    }
}

int pgsi_revive(pgs_runtime *rt, const beh *b, const pgs_ref *ref)
{
    return pgsi_request(rt, b, ref, M_START, NULL, 0, NULL, NULL, -1);
}
