/*
** runtime.c — the runtime: open and close, behaviours, the worker pool and
** its run queue.
**
** Workers run servers that have queued messages (casts, infos, timers,
** calls that found their server busy).  A call to an idle server does not
** come here at all: the calling thread runs the handler itself
** (server.c), because on this machine waking a thread on the other core
** costs about 50 µs while a handler runs in well under one.
**
** Sections: thread context, behaviours, run queue and workers, open,
** register, shutdown and close.
*/
#include "runtime.h"

#include <errno.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
** Thread context.  Thread-locals, not globals: the token identifies the
** thread that owns a server (to refuse self-calls), and the current turn
** lets pgs_cast inside a handler hold its message behind the output gate.
*/
static _Thread_local char tls_token;
static _Thread_local pgs_ctx *tls_ctx;

const void *pgsi_thread_token(void) { return &tls_token; }

/* The token's address, mixed: thread-local blocks sit at like offsets in
** each thread's stack area, so their low bits alone would collide. */
unsigned pgsi_thread_slot(void)
{
    uint64_t a = (uint64_t)(uintptr_t)&tls_token * 0x9E3779B97F4A7C15ull;
    return (unsigned)(a >> 59) % PGSI_SLOTS;
}

long pgsi_inflight(pgs_runtime *rt)
{
    long n = 0;
    for (size_t i = 0; i < PGSI_SLOTS; i++)
        n += atomic_load(&rt->inflight[i].n);
    return n;
}
pgs_ctx *pgsi_current_ctx(void) { return tls_ctx; }
void pgsi_set_ctx(pgs_ctx *ctx) { tls_ctx = ctx; }

/* ------------------------------------------------------------------------
** Waiters sleep on a futex, not a condition variable: a condvar's waker
** must signal while holding the lock (the waiter may return and destroy it
** right after the unlock), and then the woken thread runs straight into
** that held lock, a second context switch per call.  A futex can be woken
** after the unlock: FUTEX_WAKE only names an address.
*/
int pgsi_sleep(waiter *w, pthread_mutex_t *m, int64_t deadline)
{
    uint32_t seen = atomic_load_explicit(&w->wake, memory_order_relaxed);
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    pthread_mutex_unlock(m);
    long rc = syscall(SYS_futex, &w->wake, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, seen, &ts,
                      NULL, FUTEX_BITSET_MATCH_ANY);
    int timed_out = rc != 0 && errno == ETIMEDOUT;
    pthread_mutex_lock(m);
    return timed_out || pgsi_now_ns() >= deadline;
}

void pgsi_wake(waiter *w)
{
    syscall(SYS_futex, &w->wake, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
}

/* ------------------------------------------------------------------------
** Behaviours: an append-only array published with release order, so
** lookups take no lock.
*/
const beh *pgsi_beh_find(pgs_runtime *rt, const char *name)
{
    size_t n = atomic_load_explicit(&rt->nbehs, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rt->behs[i].b->name, name) == 0)
            return &rt->behs[i];
    return NULL;
}

const beh *pgsi_beh_of_ref(pgs_runtime *rt, const pgs_ref *ref)
{
    size_t n = atomic_load_explicit(&rt->nbehs, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (memcmp(ref->name, rt->behs[i].b->name, rt->behs[i].name_len + 1u) == 0)
            return &rt->behs[i];
    return NULL;
}

/* ------------------------------------------------------------------------
** Run queue and workers.
*/
void pgsi_runq_push(pgs_runtime *rt, server *s)
{
    s->in_runq = 1; /* shard lock held */
    pthread_mutex_lock(&rt->rq_lock);
    s->rnext = NULL;
    if (rt->rq_tail)
        rt->rq_tail->rnext = s;
    else
        rt->rq_head = s;
    rt->rq_tail = s;
    if (rt->rq_sleeping) /* no syscall while every worker is busy */
        pthread_cond_signal(&rt->rq_cv);
    pthread_mutex_unlock(&rt->rq_lock);
}

static server *runq_pop(pgs_runtime *rt)
{
    server *s = rt->rq_head;
    if (s && !(rt->rq_head = s->rnext))
        rt->rq_tail = NULL;
    return s;
}

static void *worker_main(void *arg)
{
    pgs_runtime *rt = arg;
    pthread_mutex_lock(&rt->rq_lock);
    for (;;) {
        server *s = runq_pop(rt);
        if (!s) {
            if (rt->rq_stop)
                break;
            rt->rq_sleeping++;
            pthread_cond_wait(&rt->rq_cv, &rt->rq_lock);
            rt->rq_sleeping--;
            continue;
        }
        rt->rq_busy++;
        pthread_mutex_unlock(&rt->rq_lock);
        pgsi_run_popped(rt, s);
        pthread_mutex_lock(&rt->rq_lock);
        if (--rt->rq_busy == 0 && !rt->rq_head)
            pthread_cond_broadcast(&rt->quiet_cv);
    }
    pthread_mutex_unlock(&rt->rq_lock);
    return NULL;
}

static int workers_start(pgs_runtime *rt)
{
    int n = rt->opts.workers;
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    if (!(rt->workers = calloc((size_t)n, sizeof *rt->workers)))
        return PGS_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&rt->workers[i], NULL, worker_main, rt) != 0)
            return PGS_ENOMEM;
        rt->nworkers++;
    }
    return PGS_OK;
}

static void workers_stop(pgs_runtime *rt)
{
    pthread_mutex_lock(&rt->rq_lock);
    rt->rq_stop = 1;
    pthread_cond_broadcast(&rt->rq_cv);
    pthread_mutex_unlock(&rt->rq_lock);
    for (int i = 0; i < rt->nworkers; i++)
        pthread_join(rt->workers[i], NULL);
    rt->nworkers = 0;
}

/* ------------------------------------------------------------------------
** Open.
*/
static int check_options(const pgs_options *o)
{
    if (o->version < 1 || o->version > PGS_OPTIONS_VERSION)
        return PGS_EVERSION;
    return o->workers < 0 || o->workers > 1024 ? PGS_EINVAL : PGS_OK;
}

static void init_locks(pgs_runtime *rt)
{
    /* The hot locks spin a little before sleeping: their critical sections
    ** are a few dozen instructions, shorter than a futex round trip. */
    pthread_mutexattr_t hot;
    pthread_mutexattr_init(&hot);
    pthread_mutexattr_settype(&hot, PTHREAD_MUTEX_ADAPTIVE_NP);
    for (size_t i = 0; i < PGSI_SHARDS; i++)
        pthread_mutex_init(&rt->shards[i].lock, &hot);
    pthread_mutex_init(&rt->reg_lock, NULL);
    pthread_mutex_init(&rt->rq_lock, &hot);
    pthread_cond_init(&rt->rq_cv, NULL);
    pthread_cond_init(&rt->quiet_cv, NULL);
    pthread_mutex_init(&rt->close_lock, NULL);
    pthread_condattr_t a; /* the timer waits for monotonic deadlines */
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->t_cv, &a);
    pthread_cond_init(&rt->c_cv, &a); /* the committer waits for async deadlines */
    pthread_condattr_destroy(&a);
    pthread_mutex_init(&rt->t_lock, NULL);
    pthread_mutex_init(&rt->c_lock, &hot);
    pthread_mutexattr_destroy(&hot);
    pthread_cond_init(&rt->c_done, NULL);
    pgsi_monitor_init(rt);
}

int pgs_open(pgs_runtime **out, const char *url, const pgs_options *opts)
{
    if (!out)
        return PGS_EINVAL;
    *out = NULL;
    pgs_options o;
    pgs_options_init(&o);
    if (opts) {
        int rc = check_options(opts);
        if (rc)
            return rc;
        /* A version 1 struct ends before on_event. */
        memcpy(&o, opts, opts->version >= 2 ? sizeof o : offsetof(pgs_options, on_event));
        if (!o.idle_timeout_ms)
            o.idle_timeout_ms = 30000;
        if (!o.max_message_size)
            o.max_message_size = 16u << 20;
        if (!o.default_call_timeout_ms)
            o.default_call_timeout_ms = 5000;
        if (!o.flush_interval_ms)
            o.flush_interval_ms = 50;
        if (!o.backoff_max_ms)
            o.backoff_max_ms = 5000;
    }
    if (!o.storage && !url)
        url = PGS_DEFAULT_URL;
    pgs_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return PGS_ENOMEM;
    rt->opts = o;
    init_locks(rt);
    int rc = PGS_OK;
    if (o.storage) {
        rt->st = o.storage;
    } else if ((rc = pgs_storage_open(&rt->st, url, NULL)) == PGS_OK) {
        rt->own_st = 1;
    }
    if (!rc) {
        rt->inline_writes = (rt->st->ops->flags & PGS_STORAGE_INLINE) != 0;
        rc = pgsi_commit_start(rt);
    }
    if (!rc)
        rc = pgsi_timer_start(rt);
    if (!rc)
        rc = workers_start(rt);
    if (rc) {
        pgs_close(rt);
        return rc;
    }
    *out = rt;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Register, and revive the behaviour's permanent servers.  The one scan of
** the behaviour's records also counts them, for the figure of stored
** servers (metrics.c).  It runs before the behaviour is published, so no
** record of it can be created meanwhile and counted twice.
*/
typedef struct ref_list {
    pgs_ref *refs;
    size_t len, cap;
    uint8_t default_lifecycle;
    uint64_t records;
} ref_list;

static int collect_permanent(void *arg, const pgs_record *rec)
{
    ref_list *l = arg;
    l->records++;
    pgs_server_opts o;
    int parked;
    if (pgsi_opts_decode(rec->options, rec->options_len, &o, &parked))
        return 0; /* reported when the server is used */
    uint8_t lc = o.lifecycle ? o.lifecycle : l->default_lifecycle;
    if (lc != PGS_PERMANENT)
        return 0;
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        pgs_ref *r = realloc(l->refs, cap * sizeof *r);
        if (!r)
            return PGS_ENOMEM;
        l->refs = r;
        l->cap = cap;
    }
    l->refs[l->len++] = rec->ref;
    return 0;
}

static void revive_permanent(pgs_runtime *rt, const beh *b, ref_list *l)
{
    for (size_t i = 0; i < l->len; i++)
        pgsi_revive(rt, b, &l->refs[i]);
}

static int check_behaviour(const pgs_behaviour *b)
{
    if (!b || !b->name || !b->init)
        return PGS_EINVAL;
    /* 1 and 2 differ only by format, which the runtime never reads: a
    ** version 1 struct (shorter) is safe wherever it is used here. */
    if (b->version < 1 || b->version > PGS_BEHAVIOUR_VERSION)
        return PGS_EVERSION;
    size_t n = strnlen(b->name, PGS_NAME_MAX + 1);
    if (!pgsi_name_valid(b->name, n) || strncmp(b->name, "pgs.", 4) == 0)
        return PGS_EREF; /* "pgs." names pgs's own records */
    return pgsi_opts_check(&b->defaults) ? PGS_EINVAL : PGS_OK;
}

int pgs_register(pgs_runtime *rt, const pgs_behaviour *b)
{
    if (!rt)
        return PGS_EINVAL;
    int rc = check_behaviour(b);
    if (rc)
        return rc;
    if (atomic_load(&rt->closing))
        return PGS_ECLOSED;
    ref_list l = {.default_lifecycle = b->defaults.lifecycle ? b->defaults.lifecycle
                                                             : PGS_TRANSIENT};
    pgs_storage_scan(rt->st, b->name, collect_permanent, &l);
    pthread_mutex_lock(&rt->reg_lock);
    size_t n = atomic_load_explicit(&rt->nbehs, memory_order_relaxed);
    if (pgsi_beh_find(rt, b->name))
        rc = PGS_EEXIST;
    else if (n == PGSI_MAX_BEHAVIOURS)
        rc = PGS_ENOMEM;
    if (!rc) {
        beh *e = &rt->behs[n];
        e->b = b;
        e->name_len = (uint8_t)strlen(b->name);
        e->idle_ms = b->defaults.idle_timeout_ms ? b->defaults.idle_timeout_ms
                                                 : rt->opts.idle_timeout_ms;
        e->lifecycle = l.default_lifecycle;
        e->write_mode = b->defaults.write_mode ? b->defaults.write_mode : PGS_WRITE_SYNC;
        atomic_fetch_add_explicit(&rt->shards[0].st.stored, l.records, memory_order_relaxed);
        atomic_store_explicit(&rt->nbehs, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&rt->reg_lock);
    if (!rc)
        revive_permanent(rt, &rt->behs[n], &l);
    free(l.refs);
    return rc;
}

/* ------------------------------------------------------------------------
** Shutdown and close.
*/

/* Waits until no API call is in progress, the pool has nothing to do and
** no write is queued.  Released outputs can queue messages, and handled
** messages writes, so it repeats until a round finds all three quiet. */
static void quiesce(pgs_runtime *rt)
{
    while (pgsi_inflight(rt) > 0)
        usleep(200);
    for (int quiet = 0; !quiet;) {
        pthread_mutex_lock(&rt->rq_lock);
        while (rt->rq_head || rt->rq_busy)
            pthread_cond_wait(&rt->quiet_cv, &rt->rq_lock);
        pthread_mutex_unlock(&rt->rq_lock);
        pgsi_commit_drain(rt);
        pthread_mutex_lock(&rt->rq_lock);
        quiet = !rt->rq_head && !rt->rq_busy;
        pthread_mutex_unlock(&rt->rq_lock);
    }
}

/* Frees servers that only the run queue still links (they left the registry). */
static void drain_runq(pgs_runtime *rt)
{
    server *s;
    while ((s = runq_pop(rt))) {
        s->in_runq = 0;
        if (s->dead && !s->in_timer)
            pgsi_server_free(s);
    }
}

int pgs_shutdown(pgs_runtime *rt)
{
    if (!rt)
        return PGS_EINVAL;
    int rc = PGS_OK;
    pthread_mutex_lock(&rt->close_lock);
    if (!rt->shut) {
        atomic_store(&rt->closing, 1);
        pgsi_kick_waiting(rt);
        if (rt->nworkers)
            quiesce(rt);
        pgsi_timer_stop(rt);
        workers_stop(rt);
        drain_runq(rt);
        pgsi_timer_free(rt);
        rc = pgsi_passivate_all(rt);
        pgsi_commit_stop(rt);
        rt->shut = 1;
    }
    pthread_mutex_unlock(&rt->close_lock);
    return rc;
}

void pgs_close(pgs_runtime *rt)
{
    if (!rt)
        return;
    pgs_shutdown(rt);
    for (size_t i = 0; i < PGSI_SHARDS; i++) {
        free(rt->shards[i].buckets);
        pthread_mutex_destroy(&rt->shards[i].lock);
    }
    if (rt->own_st)
        pgs_storage_close(rt->st);
    free(rt->workers);
    pthread_mutex_destroy(&rt->reg_lock);
    pthread_mutex_destroy(&rt->rq_lock);
    pthread_cond_destroy(&rt->rq_cv);
    pthread_cond_destroy(&rt->quiet_cv);
    pthread_mutex_destroy(&rt->close_lock);
    pthread_mutex_destroy(&rt->t_lock);
    pthread_cond_destroy(&rt->t_cv);
    pthread_mutex_destroy(&rt->c_lock);
    pthread_cond_destroy(&rt->c_cv);
    pthread_cond_destroy(&rt->c_done);
    pgsi_monitor_free(rt);
    free(rt);
}
