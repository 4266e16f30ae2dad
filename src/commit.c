/*
** commit.c — group commit and the output gate.
**
** After a turn, its server's new state becomes a write request (wreq) in
** one FIFO of pending writes; a batch of them is committed in one storage
** transaction, and only then are the outputs of the turns behind them
** released: replies, the casts and infos they sent, async-call replies
** (Durable Objects' output gate).  The owner does not wait for the write:
** it may run the server's next message at once — that turn's outputs wait
** behind the same write — or give the server up.  So one server handles
** messages while its previous write is in flight, and nothing it says
** escapes before the state that said it is durable.
**
** Who commits.  A caller that waits for its own reply commits the batch
** itself when no commit is running: at low load there is no thread hop,
** and one caller costs one transaction per call, like raw SQLite.  Any
** other time a committer thread commits, as soon as the running commit
** ends.  Workers never commit: they go on to other servers while the disk
** works, so writes pile up for the next batch.  Batches grow with load
** without a timer and without added latency at low load.  Commits run one
** at a time; releasing a batch's outputs overlaps the next commit, in
** commit order (two committer threads take turns).
**
** Per server at most one write is pending: a write made before the batch
** takes the previous one replaces its state (coalescing), so a batch names
** each server once and ten updates between flushes are one write.  A write
** taken into a batch is `committing`; one newer write may be pending
** behind it.  Batches run one at a time, in order.
**
** Async writes (write mode async) release their outputs at once and wait
** in the queue up to rt->opts.flush_interval_ms, coalescing; a sync write
** or a flush request takes them along earlier.
**
** What the rest of the runtime relies on:
**   - while s->writes > 0 the server stays in the registry, and loading
**     its state first waits for those writes (pgsi_wait_writes), so a
**     reload always sees the last write;
**   - a failed write sets s->write_error: every output held behind the
**     server's writes, or gated later, fails with that error, until the
**     owner drops the state and reloads it (pgsi_recover).
**
** Locks: the commit lock nests inside a shard lock (shard → commit), never
** the other way.  Storage calls and deliveries run with neither held.
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 1024

/* ------------------------------------------------------------------------
** Write requests.  A wreq's bytes (args, state, then options) live in its inline
** room or, when larger, in a buffer of their own, so a pending wreq can
** grow without moving: the queue links it.
*/
static wreq *wreq_new(size_t need)
{
    wreq *w = malloc(sizeof *w);
    if (!w)
        return NULL;
    memset(w, 0, sizeof *w);
    w->data = w->room;
    w->cap = sizeof w->room;
    if (need > w->cap && !(w->data = malloc(need))) {
        free(w);
        return NULL;
    }
    w->cap = need > w->cap ? need : w->cap;
    return w;
}

static void wreq_free(wreq *w)
{
    if (w && w->data != w->room)
        free(w->data);
    free(w);
}

/* Copies the record into w (which has room), as version base + 1. */
static void wreq_fill(wreq *w, const pgs_record *rec)
{
    unsigned char *p = w->data;
    w->op = PGS_OP_PUT;
    w->rec = *rec;
    w->rec.version = w->base + 1;
    w->rec.args = rec->args_len ? memcpy(p, rec->args, rec->args_len) : NULL;
    p += rec->args_len;
    w->rec.state = rec->state_len ? memcpy(p, rec->state, rec->state_len) : NULL;
    p += rec->state_len;
    w->rec.options = rec->options_len ? memcpy(p, rec->options, rec->options_len) : NULL;
}

static void queue_push(pgs_runtime *rt, wreq *w)
{
    w->next = NULL;
    if (rt->c_tail)
        rt->c_tail->next = w;
    else
        rt->c_head = w;
    rt->c_tail = w;
}

/* Counts w as sync (someone waits for it: commit it soon). */
static void make_sync(pgs_runtime *rt, wreq *w)
{
    if (w->async) {
        w->async = 0;
        rt->c_nsync++;
    }
}

/* Makes s->pending a wreq with room for `need` bytes, allocating outside
** the lock.  Returns with the commit lock held, or PGS_ENOMEM without. */
static int pending_with_room(pgs_runtime *rt, server *s, size_t need)
{
    wreq *fresh = NULL;
    unsigned char *buf = NULL;
    for (;;) {
        pthread_mutex_lock(&rt->c_lock);
        wreq *w = s->pending;
        if (w && need <= w->cap)
            break;
        if (w && buf) { /* grow the pending one in place */
            unsigned char *old = w->data != w->room ? w->data : NULL;
            w->data = buf;
            w->cap = need;
            buf = old;
            break;
        }
        if (!w && fresh) { /* a new write, last in the queue */
            fresh->s = s;
            fresh->base = s->version;
            fresh->async = 1; /* the caller makes it sync if it is */
            fresh->queued = pgsi_now_ns();
            fresh->due = fresh->queued + (int64_t)rt->opts.flush_interval_ms * 1000000;
            s->pending = fresh;
            atomic_fetch_add_explicit(&s->writes, 1, memory_order_relaxed);
            queue_push(rt, fresh);
            fresh = NULL;
            break;
        }
        pthread_mutex_unlock(&rt->c_lock);
        if (w ? !(buf = malloc(need)) : !(fresh = wreq_new(need)))
            return PGS_ENOMEM;
    }
    free(buf); /* unused, or the buffer it replaced; free() takes no lock of ours */
    wreq_free(fresh);
    return PGS_OK;
}

/* Puts a PUT of rec (or, rec NULL, a DELETE of ref) behind s's writes.  Its
** version and expected version follow s->version: the version storage will
** hold once every write of s before this one is done. */
static int submit(pgs_runtime *rt, server *s, const pgs_record *rec, const pgs_ref *ref,
                  int async)
{
    size_t need = rec ? rec->args_len + rec->state_len + rec->options_len : 0;
    int rc = pending_with_room(rt, s, need);
    if (rc)
        return rc;
    wreq *w = s->pending;
    int was_empty = rt->c_head == w && !w->next;
    if (!async)
        make_sync(rt, w);
    if (rec) {
        wreq_fill(w, rec);
        w->keep = pgsi_keep(s);
        s->version = w->base + 1;
    } else {
        w->op = PGS_OP_DELETE;
        memset(&w->rec, 0, sizeof w->rec);
        w->rec.ref = *ref;
        s->version = 0;
    }
    /* Wake the committer for a sync write, unless this thread commits it
    ** itself (a caller: no hop), or to arm the deadline of the first async
    ** write. */
    pgs_ctx *ctx = pgsi_current_ctx();
    int lead = ctx && ctx->rt == rt && ctx->lead;
    int wake = !rt->c_busy && (rt->c_nsync ? !lead : was_empty && w->async);
    pthread_mutex_unlock(&rt->c_lock);
    if (wake)
        pthread_cond_signal(&rt->c_cv);
    return PGS_OK;
}

int pgsi_submit_put(pgs_runtime *rt, server *s, const pgs_record *rec, int async)
{
    return submit(rt, s, rec, &rec->ref, async);
}

int pgsi_submit_delete(pgs_runtime *rt, server *s, const pgs_ref *ref)
{
    return submit(rt, s, NULL, ref, 0);
}

/* ------------------------------------------------------------------------
** Batches.  Only the one thread that set c_busy runs a batch.
*/

/* Moves queued writes into a batch (commit lock held).  A write of a
** server whose earlier write failed fails too, without storage. */
static wreq *take(pgs_runtime *rt)
{
    wreq *batch = NULL, **tail = &batch;
    int n = 0;
    while (rt->c_head && n < MAX_BATCH) {
        wreq *w = rt->c_head;
        if (!(rt->c_head = w->next))
            rt->c_tail = NULL;
        if (!w->async)
            rt->c_nsync--;
        server *s = w->s;
        s->pending = NULL;
        s->committing = w;
        w->status = atomic_load_explicit(&s->write_error, memory_order_relaxed);
        w->next = NULL;
        *tail = w;
        tail = &w->next;
        n++;
    }
    return batch;
}

/* One storage transaction of the batch's writes [i, i + n). */
static int transact(pgs_runtime *rt, size_t i, size_t n)
{
    int rc = pgs_storage_batch(rt->st, &rt->c_writes[i], n);
    PGSI_STAT(rt, rt->c_which[i]->s, commits, 1);
    pgsi_hist_add(&rt->c_batch, n);
    return rc;
}

/* Counts a committed write: its record's birth or death, and how long it
** waited since it was queued. */
static void count_write(pgs_runtime *rt, wreq *w, int64_t now)
{
    PGSI_STAT(rt, w->s, writes, 1);
    if (w->op == PGS_OP_PUT && !w->base)
        PGSI_STAT(rt, w->s, stored, 1);
    else if (w->op == PGS_OP_DELETE && w->base)
        PGSI_STAT(rt, w->s, stored, -1);
    pgsi_hist_add(&rt->c_latency, (uint64_t)(now - w->queued) / 1000);
}

/* Commits the batch's writes in one transaction.  If it fails and holds
** more than one write, each is retried alone, so one bad record (a
** conflict, say) does not fail its neighbours. */
static void commit_batch(pgs_runtime *rt, wreq *batch)
{
    size_t n = 0;
    for (wreq *w = batch; w; w = w->next) {
        if (w->status)
            continue;
        rt->c_writes[n] = (pgs_write){.op = w->op, .record = &w->rec, .ref = &w->rec.ref,
                                      .expected_version = w->base, .keep = w->keep};
        rt->c_which[n++] = w;
    }
    if (!n)
        return;
    int rc = transact(rt, 0, n);
    for (size_t i = 0; i < n; i++)
        rt->c_which[i]->status = rc && n > 1 ? transact(rt, i, 1) : rc;
    int64_t now = pgsi_now_ns();
    for (size_t i = 0; i < n; i++) {
        wreq *w = rt->c_which[i];
        /* Deleting what was never stored (a server stopped before its first
        ** write landed) has the outcome wanted. */
        if (w->status == PGS_ENOTFOUND && w->op == PGS_OP_DELETE)
            w->status = PGS_OK;
        if (!w->status)
            count_write(rt, w, now);
    }
}

/* Releases what waited behind w, in order, until nothing more is attached:
** a turn gated while this runs attaches to w and is released in the next
** round, so per-sender order holds.  Then w stops counting for its server. */
static void complete_one(pgs_runtime *rt, wreq *w)
{
    server *s = w->s;
    for (;;) {
        pthread_mutex_lock(&rt->c_lock);
        held *h = w->held_head;
        w->held_head = w->held_tail = NULL;
        if (!h && s->committing == w)
            s->committing = NULL;
        pthread_mutex_unlock(&rt->c_lock);
        if (!h)
            break;
        pgsi_held_release_all(rt, s, h, w->status);
    }
    pgsi_writes_done(rt, s);
    wreq_free(w);
}

/* Takes the next batch (commit lock held): this thread now commits it. */
static wreq *start_batch(pgs_runtime *rt, uint64_t *seq)
{
    rt->c_busy = 1;
    *seq = ++rt->c_seq;
    return take(rt);
}

/* Commits a batch, lets the next batch start at once (on another thread),
** then releases this batch's outputs — after the previous batch's, so
** outputs leave in commit order.  Delivering wakes many callers, one
** system call each: overlapping it with the next commit keeps the disk
** busy.  A failure is recorded before the next batch is taken, so a
** server's later write fails with it. */
static void run_batch(pgs_runtime *rt, wreq *batch, uint64_t seq)
{
    commit_batch(rt, batch);
    pthread_mutex_lock(&rt->c_lock);
    for (wreq *w = batch; w; w = w->next)
        if (w->status && !atomic_load_explicit(&w->s->write_error, memory_order_relaxed))
            atomic_store_explicit(&w->s->write_error, w->status, memory_order_relaxed);
    rt->c_busy = 0;
    int more = rt->c_head != NULL;
    while (rt->c_delivered != seq - 1)
        pthread_cond_wait(&rt->c_done, &rt->c_lock);
    pthread_mutex_unlock(&rt->c_lock);
    if (more)
        pthread_cond_signal(&rt->c_cv); /* a committer takes the next batch */
    for (wreq *w = batch, *next; w; w = next) {
        next = w->next;
        complete_one(rt, w);
    }
    pthread_mutex_lock(&rt->c_lock);
    rt->c_delivered = seq;
    pthread_mutex_unlock(&rt->c_lock);
    pthread_cond_broadcast(&rt->c_done);
}

/* Commits a batch on this thread if none is running and a sync write waits.
** Returns 1 if it did. */
int pgsi_commit_lead(pgs_runtime *rt)
{
    pthread_mutex_lock(&rt->c_lock);
    if (rt->c_busy || !rt->c_nsync) {
        pthread_mutex_unlock(&rt->c_lock);
        return 0;
    }
    uint64_t seq;
    wreq *batch = start_batch(rt, &seq);
    pthread_mutex_unlock(&rt->c_lock);
    run_batch(rt, batch, seq);
    return 1;
}

/* ------------------------------------------------------------------------
** The committer thread.
*/

/* 1 if the queue should be committed now; else *until is when the oldest
** async write falls due (0: nothing queued).  Commit lock held. */
static int ready(pgs_runtime *rt, int64_t *until)
{
    *until = 0;
    if (!rt->c_head)
        return 0;
    if (rt->c_nsync || rt->c_flush)
        return 1;
    *until = rt->c_head->due; /* the oldest write: all queued ones are async */
    return *until <= pgsi_now_ns();
}

static void *committer_main(void *arg)
{
    pgs_runtime *rt = arg;
    pthread_mutex_lock(&rt->c_lock);
    for (;;) {
        int64_t until = 0;
        if (!rt->c_busy && ready(rt, &until)) {
            uint64_t seq;
            wreq *batch = start_batch(rt, &seq);
            pthread_mutex_unlock(&rt->c_lock);
            run_batch(rt, batch, seq);
            pthread_mutex_lock(&rt->c_lock);
            continue;
        }
        if (rt->c_stop && !rt->c_head && !rt->c_busy)
            break;
        if (until && !rt->c_busy) {
            struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
            pthread_cond_timedwait(&rt->c_cv, &rt->c_lock, &ts);
        } else {
            pthread_cond_wait(&rt->c_cv, &rt->c_lock); /* work, or a leader's batch ends */
        }
    }
    pthread_mutex_unlock(&rt->c_lock);
    return NULL;
}

int pgsi_commit_start(pgs_runtime *rt)
{
    rt->c_writes = calloc(MAX_BATCH, sizeof *rt->c_writes);
    rt->c_which = calloc(MAX_BATCH, sizeof *rt->c_which);
    if (!rt->c_writes || !rt->c_which)
        return PGS_ENOMEM;
    for (; rt->c_running < PGSI_COMMITTERS; rt->c_running++)
        if (pthread_create(&rt->c_threads[rt->c_running], NULL, committer_main, rt) != 0)
            return PGS_ENOMEM;
    return PGS_OK;
}

/* Waits until every queued write is committed and released (the queue may
** refill meanwhile from released outputs; this waits for those too). */
void pgsi_commit_drain(pgs_runtime *rt)
{
    pthread_mutex_lock(&rt->c_lock);
    rt->c_flush++;
    pthread_cond_signal(&rt->c_cv);
    while (rt->c_head || rt->c_busy || rt->c_delivered != rt->c_seq)
        pthread_cond_wait(&rt->c_done, &rt->c_lock);
    rt->c_flush--;
    pthread_mutex_unlock(&rt->c_lock);
}

void pgsi_commit_stop(pgs_runtime *rt)
{
    pthread_mutex_lock(&rt->c_lock);
    rt->c_stop = 1;
    rt->c_flush++;
    pthread_cond_broadcast(&rt->c_cv);
    pthread_mutex_unlock(&rt->c_lock);
    for (; rt->c_running > 0; rt->c_running--)
        pthread_join(rt->c_threads[rt->c_running - 1], NULL);
    free(rt->c_writes);
    free(rt->c_which);
    rt->c_writes = NULL;
    rt->c_which = NULL;
}

/* ------------------------------------------------------------------------
** What the owner asks of the pipeline.
*/

/* Waits until s has no write in flight (the owner, before loading),
** committing batches itself while no one else does, and taking its async
** write along now rather than at its deadline. */
void pgsi_wait_writes(pgs_runtime *rt, server *s)
{
    pthread_mutex_lock(&rt->c_lock);
    while (atomic_load_explicit(&s->writes, memory_order_relaxed)) {
        if (s->pending)
            make_sync(rt, s->pending);
        if (!rt->c_busy && rt->c_nsync) { /* nobody commits: this thread does */
            uint64_t seq;
            wreq *batch = start_batch(rt, &seq);
            pthread_mutex_unlock(&rt->c_lock);
            run_batch(rt, batch, seq);
            pthread_mutex_lock(&rt->c_lock);
            continue;
        }
        pthread_cond_wait(&rt->c_done, &rt->c_lock);
    }
    pthread_mutex_unlock(&rt->c_lock);
}

/* The write s's next outputs must wait for, or NULL; *err: the server's
** write error.  Commit lock held. */
static wreq *last_write(server *s, int *err)
{
    *err = atomic_load_explicit(&s->write_error, memory_order_relaxed);
    return s->pending ? s->pending : s->committing;
}

/* Decides what happens to a turn's outputs h (malloc'd by the caller, who
** holds s's shard lock, which also guards h->w): returns GATE_NOW if they
** may go now (nothing of s is in flight), GATE_HELD if h now waits behind
** s's last write (it belongs to the pipeline: the caller must not touch it
** once it unlocks), or GATE_FAILED after a write error (h->failed is set;
** the caller releases it). */
int pgsi_gate(pgs_runtime *rt, server *s, held *h, int lead)
{
    int err, wake = 0;
    pthread_mutex_lock(&rt->c_lock);
    wreq *w = last_write(s, &err);
    if (!w && !err) {
        pthread_mutex_unlock(&rt->c_lock);
        return GATE_NOW;
    }
    int result = GATE_FAILED;
    if (w && !err) {
        result = GATE_HELD;
        h->next = NULL;
        if (w->held_tail)
            w->held_tail->next = h;
        else
            w->held_head = h;
        w->held_tail = h;
        make_sync(rt, w); /* someone's outputs wait on it now */
        wake = !lead && !rt->c_busy;
    } else {
        h->failed = err; /* released by the caller once it unlocks */
    }
    pthread_mutex_unlock(&rt->c_lock);
    if (wake) /* a worker does not commit: the committer thread does */
        pthread_cond_signal(&rt->c_cv);
    return result;
}

int pgsi_nothing_in_flight(server *s)
{
    return !atomic_load_explicit(&s->writes, memory_order_acquire) &&
           !atomic_load_explicit(&s->write_error, memory_order_acquire);
}

/* 1 if nothing of s is in flight or held (commit lock taken here). */
int pgsi_writes_idle(pgs_runtime *rt, server *s)
{
    return !atomic_load_explicit(&s->writes, memory_order_acquire);
}

/* After a failed write: once nothing of s is in flight, clears the error;
** the caller reloads the state. */
void pgsi_recover(pgs_runtime *rt, server *s)
{
    pgsi_wait_writes(rt, s);
    pthread_mutex_lock(&rt->c_lock);
    atomic_store_explicit(&s->write_error, 0, memory_order_relaxed);
    pthread_mutex_unlock(&rt->c_lock);
}

/* Drops a write's count (commit lock taken here); the struct may leave the
** registry now if it was only kept for its writes. */
void pgsi_writes_done(pgs_runtime *rt, server *s)
{
    shard *sh = pgsi_shard_of(rt, s->hash);
    pthread_mutex_lock(&sh->lock);
    pthread_mutex_lock(&rt->c_lock);
    atomic_fetch_sub_explicit(&s->writes, 1, memory_order_release);
    pthread_mutex_unlock(&rt->c_lock);
    int free_it = pgsi_release_idle(rt, sh, s);
    pthread_mutex_unlock(&sh->lock);
    if (free_it)
        pgsi_server_free(s);
}
