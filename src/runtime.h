/*
** runtime.h — the runtime's internal structures, shared by runtime.c,
** registry.c, server.c, persist.c, timer.c and api.c.
**
** Locks, in the only order they may nest:
**     shard lock  →  run-queue lock  →  timer lock
**     shard lock  →  commit lock
** A callback (user code) never runs with any of them held, and storage is
** never called with any of them held.  Each field below says what guards it.
** See docs/protocol.md for the activation/passivation protocol.
*/
#ifndef PGS_RUNTIME_H
#define PGS_RUNTIME_H

#include "internal.h"

#include <stdatomic.h>

typedef struct server server;
typedef struct msg msg;
typedef struct waiter waiter;
typedef struct held held;
typedef struct wreq wreq;

#define PGSI_SHARDS 64          /* registry shards (power of two) */
#define PGSI_MAX_BEHAVIOURS 256
#define PGSI_MAX_DEPTH 128      /* nested direct calls on one thread */
#define PGSI_BATCH 64           /* messages a worker runs per turn of a server */
#define PGSI_COMMITTERS 2       /* committer threads: one commits while one delivers */

/* A registered behaviour with its effective defaults.  Immutable once
** published (rt->nbehs is stored with release order after it is filled). */
typedef struct beh {
    const pgs_behaviour *b;
    uint32_t idle_ms;
    uint8_t lifecycle, write_mode;
    uint8_t name_len;
} beh;

/* Timer heap node: embedded in a server (idle timeout) or a timer entry. */
enum { TN_IDLE = 1, TN_SEND = 2, TN_WAKE = 3 };
typedef struct tnode {
    int64_t deadline; /* timer lock */
    uint32_t idx;     /* position in the heap; timer lock */
    uint8_t kind;     /* immutable */
} tnode;

/* Server scheduling status (docs/protocol.md). */
enum { S_IDLE = 0, S_SCHEDULED = 1, S_RUNNING = 2 };

struct server {
    server *hnext;          /* registry chain; shard lock */
    uint64_t hash;          /* immutable; beside hnext so a chain walk reads
                               one cache line per server it passes */
    const beh *beh;         /* immutable */
    server *rnext;          /* run-queue link; run-queue lock */
    msg *mb_head, *mb_tail; /* mailbox; shard lock */
    const void *owner;      /* owning thread's token when RUNNING; shard lock */
    int64_t last_active;    /* ns, when last released; shard lock */
    tnode idle;             /* idle-timeout node; timer lock */
    /* Shard lock: */
    uint8_t status, in_runq, in_timer, dead, passivate_pending;
    int64_t backoff_until;  /* ns: after a crash, no turn runs before this;
                               its messages wait (fault.c); shard lock */
    uint32_t nwaiting;      /* queued calls whose thread is blocked; shard lock */
    uint32_t mb_len;        /* messages in the mailbox; shard lock */
    /* Owner only: */
    uint8_t dirty;
    uint8_t parked;         /* loaded for an operator action while parked */
    uint8_t rearm;          /* its idle timeout changed: re-arm at release */
    uint8_t streak;         /* crashes since the last turn that did not: the
                               backoff grows with it */
    _Atomic uint8_t loaded; /* written by the owner, read by anyone */
    uint8_t lifecycle, write_mode; /* effective; owner */
    uint16_t key_len;       /* immutable */
    uint32_t idle_ms;       /* effective; owner writes, shard lock readers */
    uint32_t args_len;      /* owner */
    pgs_server_opts opts;   /* the stored overrides; owner */
    uint64_t version;       /* version stored once its writes land, 0: none; owner */
    void *args;             /* start arguments (malloc'd) ; owner */
    /* Commit lock (commit.c): */
    wreq *pending;          /* its write waiting for a batch, or NULL */
    wreq *committing;       /* its write in the batch being committed, or NULL */
    _Atomic uint32_t writes; /* its wreqs alive: while > 0 it stays registered;
                               changed under the commit lock, read by the owner
                               without it (only the owner adds one) */
    _Atomic int write_error; /* a write failed: outputs fail until the owner
                               reloads; written under the commit lock */
    unsigned char key[];    /* key bytes, then the state, aligned */
};

/* The server's state block, allocated with the struct. */
void *pgsi_server_state(server *s);

/* Message kinds: the three a behaviour handles, then the runtime's own
** (lifecycle, then operator actions, which also reach parked servers). */
enum { M_CALL = 1, M_CAST, M_INFO, M_START, M_STOP, M_DELETE, M_RECONF, M_UNPARK,
       M_REPAIR, M_ROLLBACK };
#define M_IS_OPERATOR(k) ((k) >= M_RECONF)

struct msg {
    msg *next;             /* mailbox or outbox link */
    uint8_t kind;
    uint8_t info_kind;     /* M_INFO: enum pgs_info_kind */
    uint8_t direct;        /* on the caller's stack: reply without locking */
    uint8_t waiting;       /* its caller is blocked waiting; shard lock */
    uint8_t sync;          /* queued by a synchronous caller (w may be set);
                              immutable once queued */
    uint8_t attempts;      /* times it crashed the server so far (owner) */
    int32_t status;        /* M_INFO reply: the call's status */
    waiter *w;             /* synchronous caller, or NULL; shard lock */
    pgs_ref *reply_to;     /* async call: where the reply goes (owned) */
    uint64_t tag;
    pgs_server_opts opts;  /* M_START */
    const void *data;      /* payload: inline bytes, or the caller's for direct */
    size_t len;
    pgs_ref *target;       /* outbox only: destination (owned) */
    unsigned char inline_data[];
};

/* A thread blocked in a call.  Lives on that thread's stack; every field is
** guarded by the shard lock of the server it waits on.  It sleeps on `wake`
** (a futex, see pgsi_sleep): a waker bumps it under the lock and wakes it
** after unlocking, so the sleeper never wakes straight into a held lock,
** and a waiter that has already returned costs the waker nothing but a
** harmless wake-up call on a stale address. */
struct waiter {
    _Atomic uint32_t wake;
    int done;          /* the reply (or an error) is in */
    int status;
    pgs_bytes reply;
    server *handoff;   /* ownership of this server was handed to me */
    held *held;        /* my reply waits behind a write, here */
    const void *token; /* my thread token */
};

/* A turn's outputs: its status and reply, and the messages it sent.  On the
** owner's stack while it decides; malloc'd while it waits behind a write. */
struct held {
    held *next;          /* behind the same write; commit lock */
    int status;          /* the turn's own */
    int failed;          /* a write of the server had failed when it was gated */
    uint8_t sync;        /* a synchronous caller may wait on w */
    waiter *w;           /* that caller, or NULL if it gave up; shard lock */
    pgs_ref *reply_to;   /* async call: where the reply goes (owned) */
    uint64_t tag;
    pgs_bytes reply;     /* owned */
    msg *outbox;         /* sends of the turn, in order (owned) */
};

/* One server's pending or committing state write (commit.c). */
struct wreq {
    wreq *next;          /* queue or batch link; commit lock */
    server *s;
    int op;              /* PGS_OP_PUT or PGS_OP_DELETE */
    int status;          /* outcome, once committed */
    uint8_t async;       /* no one waits yet: may wait until `due` */
    int64_t due;         /* async: committed by then */
    int64_t queued;      /* ns, when its first turn queued it (metrics) */
    uint64_t base;       /* the version storage holds before this write */
    uint32_t keep;       /* PUT: older versions to keep (pgs_write.keep) */
    held *held_head, *held_tail; /* outputs released when it is durable */
    pgs_record rec;      /* PUT: the record; DELETE: rec.ref */
    unsigned char *data; /* args, state, options: room[] or malloc'd */
    size_t cap;
    unsigned char room[96];
};

/* The context of one turn (one message handled by one server).  Turns nest
** on a thread when a handler calls an idle server directly. */
struct pgs_ctx {
    pgs_runtime *rt;
    server *s;
    pgs_ref self;
    struct pgs_ctx *outer; /* enclosing turn on this thread */
    int depth;
    int lead;              /* this thread waits for the turn's outputs: it
                              commits the turn's write itself if it can */
    int kind;              /* M_* being handled */
    int crashed;           /* the turn crashed: its state was dropped */
    int has_reply;
    int reply_rc;          /* pgs_reply's failure (e.g. too big): the call's status */
    pgs_buf reply;
    msg *out_head, *out_tail; /* sends held back until the turn's write */
};

/* Statistics, kept per shard beside the shard lock (whose cache line the
** updating thread already holds), and summed by pgs_stats_get: a global
** counter bumped on every message would bounce between cores.  Relaxed
** atomics: counters, no ordering needed. */
typedef struct stats {
    _Atomic uint64_t active, activations, reactivations, passivations, crashes, messages,
        writes, commits, stored, parked, poison;
    /* Written only under the shard lock (mailboxes), so a plain load and
    ** store (PGSI_STAT_LOCKED) replace the locked add; read by anyone. */
    _Atomic uint64_t queued, queued_max;
} stats;

/* A pgs_histogram kept by the group commit (metrics.c).  Written only by
** the thread running a batch: batches run one at a time, handed over under
** the commit lock, so relaxed loads and stores lose no update; snapshots
** read them without the lock. */
typedef struct hist {
    _Atomic uint64_t sum, max, buckets[PGS_HIST_BUCKETS];
} hist;

typedef struct shard {
    pthread_mutex_t lock;
    server **buckets;
    size_t nbuckets, count;
    stats st;
} __attribute__((aligned(64))) shard;

/* Adds n to statistic `f` of s's shard. */
#define PGSI_STAT(rt, s, f, n) \
    atomic_fetch_add_explicit(&pgsi_shard_of((rt), (s)->hash)->st.f, (uint64_t)(n), \
                              memory_order_relaxed)

/* Adds n to statistic `f` of shard sh, whose lock is held: no other thread
** writes it meanwhile. */
#define PGSI_STAT_LOCKED(sh, f, n) \
    atomic_store_explicit(&(sh)->st.f, \
                          atomic_load_explicit(&(sh)->st.f, memory_order_relaxed) + \
                              (uint64_t)(n), memory_order_relaxed)

/* API calls in progress, counted in one of PGSI_SLOTS padded slots chosen
** by the calling thread, so concurrent callers do not share a line. */
#define PGSI_SLOTS 16
typedef struct slot {
    _Atomic long n;
} __attribute__((aligned(64))) inflight_slot;

struct pgs_runtime {
    pgs_storage *st;
    int own_st;                 /* opened by pgs_open: closed by pgs_close */
    int inline_writes;          /* the engine is PGS_STORAGE_INLINE: no group commit */
    pgs_options opts;

    shard shards[PGSI_SHARDS];

    beh behs[PGSI_MAX_BEHAVIOURS];
    _Atomic size_t nbehs;       /* published count */
    pthread_mutex_t reg_lock;   /* serialises pgs_register */

    /* Run queue of servers with work; run-queue lock. */
    pthread_mutex_t rq_lock;
    pthread_cond_t rq_cv;       /* workers wait here */
    pthread_cond_t quiet_cv;    /* shutdown waits for quiescence here */
    server *rq_head, *rq_tail;
    int rq_sleeping, rq_busy, rq_stop;
    int nworkers;
    pthread_t *workers;

    /* Timers; timer lock. */
    pthread_mutex_t t_lock;
    pthread_cond_t t_cv;
    tnode **heap;
    size_t heap_len, heap_cap;
    struct tentry **tmap;       /* id → entry, chained */
    size_t tmap_cap, tmap_count;
    uint64_t next_timer_id;
    int t_stop;
    int t_running;              /* the timer thread exists (owner: open/shutdown) */
    pthread_t timer_thread;

    /* Group commit (commit.c); commit lock. */
    pthread_mutex_t c_lock;
    pthread_cond_t c_cv;        /* the committer thread waits here */
    pthread_cond_t c_done;      /* a batch's outputs were released */
    wreq *c_head, *c_tail;      /* pending writes, oldest first */
    uint32_t c_nsync;           /* pending writes someone waits for */
    int c_busy;                 /* a batch is being committed */
    int c_flush;                /* commit everything now (drain, shutdown) */
    uint64_t c_seq;             /* batches taken */
    uint64_t c_delivered;       /* batches whose outputs are all released */
    int c_stop, c_running;
    pthread_t c_threads[PGSI_COMMITTERS];
    pgs_write *c_writes;        /* the batch being committed (c_busy owner) */
    wreq **c_which;
    hist c_batch;               /* writes per transaction (c_busy owner) */
    hist c_latency;             /* µs from queued to durable (c_busy owner) */

    /* Monitors (monitor.c); monitor lock. */
    pthread_mutex_t m_lock;
    struct monitor **m_buckets; /* by ref hash, chained */
    size_t m_nbuckets;
    _Atomic size_t m_count;     /* read without the lock: 0 skips everything */
    uint64_t m_next_id;

    _Atomic int closing;
    inflight_slot inflight[PGSI_SLOTS];  /* API calls in progress (api.c) */
    pthread_mutex_t close_lock; /* serialises pgs_shutdown */
    int shut;
};

/* ---- api.c */
/* A caller's ref: well formed and of a registered behaviour (*out).
** PGS_EINVAL, PGS_EREF or PGS_ENOBEHAVIOUR. */
int pgsi_check_ref(pgs_runtime *rt, const pgs_ref *ref, const beh **out);

/* ---- runtime.c */
const beh *pgsi_beh_find(pgs_runtime *rt, const char *name);
/* The behaviour whose name ref carries, or NULL (unknown or malformed). */
const beh *pgsi_beh_of_ref(pgs_runtime *rt, const pgs_ref *ref);
void pgsi_runq_push(pgs_runtime *rt, server *s); /* shard lock held, !in_runq */
const void *pgsi_thread_token(void);
/* This thread's slot in rt->inflight. */
unsigned pgsi_thread_slot(void);
/* Sum of rt->inflight. */
long pgsi_inflight(pgs_runtime *rt);
pgs_ctx *pgsi_current_ctx(void);
void pgsi_set_ctx(pgs_ctx *ctx);

/* ---- registry.c (shard lock held for all but pgsi_shard_of) */
shard *pgsi_shard_of(pgs_runtime *rt, uint64_t hash);
server *pgsi_reg_find(shard *sh, const beh *b, uint64_t hash, const void *key, size_t key_len);
int pgsi_reg_insert(shard *sh, server *s);
void pgsi_reg_remove(shard *sh, server *s);
/* Empties the shard; returns its servers linked through hnext (shutdown). */
server *pgsi_reg_take_all(shard *sh);
server *pgsi_server_new(const beh *b, uint64_t hash, const void *key, size_t key_len);
void pgsi_server_free(server *s);

/* ---- server.c */
/* Delivers msg to the server named by ref (creating its struct).  Takes
** ownership of m.  Used by sends, timers and outbox flushes. */
int pgsi_send(pgs_runtime *rt, const beh *b, const pgs_ref *ref, msg *m);
/* Synchronous request of any kind (call, start, stop, delete). */
int pgsi_request(pgs_runtime *rt, const beh *b, const pgs_ref *ref, int kind,
                 const void *data, size_t len, const pgs_server_opts *opts,
                 pgs_bytes *reply, int timeout_ms);
/* 1 if s may leave the registry now; does so (shard lock held).  Returns
** 1 if the caller must free it. */
int pgsi_release_idle(pgs_runtime *rt, shard *sh, server *s);
/* Releases a chain of held outputs; write_status: their write's outcome. */
void pgsi_held_release_all(pgs_runtime *rt, server *s, held *h, int write_status);
/* Sleeps on w->wake until bumped or the deadline (ns, monotonic) passes:
** unlocks m around the sleep.  Returns 1 if the deadline passed. */
int pgsi_sleep(waiter *w, pthread_mutex_t *m, int64_t deadline);
/* Wakes a waiter whose `wake` was bumped; call with no lock held. */
void pgsi_wake(waiter *w);
/* A worker runs a server popped from the run queue. */
void pgsi_run_popped(pgs_runtime *rt, server *s);
/* The timer found s's idle entry due. */
void pgsi_idle_due(pgs_runtime *rt, server *s);
/* A wake came due: a second look at ref's server, if it has a struct. */
void pgsi_wake_due(pgs_runtime *rt, const beh *b, const pgs_ref *ref);
/* Shutdown: passivate and free every server (single-threaded by then).
** PGS_ESTORAGE if some dirty state could not be written. */
int pgsi_passivate_all(pgs_runtime *rt);
/* Shutdown: servers waiting out a crash backoff are scheduled now. */
void pgsi_kick_waiting(pgs_runtime *rt);
/* Revives a permanent server (start-like activation without args). */
int pgsi_revive(pgs_runtime *rt, const beh *b, const pgs_ref *ref);
msg *pgsi_msg_new(int kind, const void *data, size_t len);
void pgsi_msg_free(msg *m);

/* Discards the in-memory state, terminate first (owner). */
void pgsi_unload(pgs_runtime *rt, server *s, pgs_ctx *ctx, int reason);

/* ---- persist.c (owner only, no lock held) */
/* PGS_EPARKED (and nothing loaded) if the record says parked, unless
** allow_parked (operator actions): then s->parked tells. */
int pgsi_load(pgs_runtime *rt, server *s, const pgs_ref *ref, int allow_parked);
/* Decodes a stored state into s's block (owner).  PGS_ESCHEMA if it is
** newer than the behaviour, PGS_ECORRUPT if decode refuses it. */
int pgsi_decode_state(server *s, const void *data, size_t len, uint32_t schema);
int pgsi_init_state(pgs_runtime *rt, pgs_ctx *ctx, server *s, const void *args,
                    size_t args_len, const pgs_server_opts *opts);
/* Queues the state's next version (async: the outputs need not wait). */
/* cause: the message whose turn made this state (stored with it when the
** server keeps history messages), or NULL. */
int pgsi_write(pgs_runtime *rt, server *s, const pgs_ref *ref, int async, const msg *cause);
/* Queues the record's deletion. */
int pgsi_erase(pgs_runtime *rt, server *s, const pgs_ref *ref);
/* For an unloaded server: PGS_ENOTFOUND if it has no record, else queues
** its deletion. */
int pgsi_erase_stored(pgs_runtime *rt, server *s, const pgs_ref *ref);
/* Waits for s's writes; if one failed, re-reads the stored version, clears
** the error and returns it (the state in memory is kept: still dirty). */
int pgsi_wait_durable(pgs_runtime *rt, server *s, const pgs_ref *ref);

/* ---- commit.c */
int pgsi_commit_start(pgs_runtime *rt);
void pgsi_commit_drain(pgs_runtime *rt);
void pgsi_commit_stop(pgs_runtime *rt);
int pgsi_submit_put(pgs_runtime *rt, server *s, const pgs_record *rec, int async);
int pgsi_submit_delete(pgs_runtime *rt, server *s, const pgs_ref *ref);
/* Commits one batch on this thread if none runs and a sync write waits. */
int pgsi_commit_lead(pgs_runtime *rt);
/* Holds h behind s's last write (shard lock held): GATE_NOW, GATE_HELD or
** GATE_FAILED (see commit.c). */
enum { GATE_NOW, GATE_HELD, GATE_FAILED };
int pgsi_gate(pgs_runtime *rt, server *s, held *h, int lead);
/* 1 if s has no write in flight or waiting. */
int pgsi_writes_idle(pgs_runtime *rt, server *s);
/* Lock-free: 1 if the owner's outputs may go at once (no write of s in
** flight, no write error). */
int pgsi_nothing_in_flight(server *s);
void pgsi_wait_writes(pgs_runtime *rt, server *s);
void pgsi_recover(pgs_runtime *rt, server *s);
void pgsi_writes_done(pgs_runtime *rt, server *s);
void pgsi_apply_opts(server *s, const pgs_server_opts *o);
void pgsi_ref_of(const server *s, pgs_ref *ref);

/* ---- fault.c (owner only, no lock held, unless said) */
/* A crashed turn (ctx->crashed) of message m, on its attempt-th try:
** counts it in storage, sets m aside if it is poison, applies the fault
** policy to a crash loop and starts the backoff.  Returns 1 if m should
** run again (on the state reloaded from storage). */
int pgsi_fault_crashed(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m, int status);
/* Runs an operator message (M_RECONF ... M_ROLLBACK) on the loaded server. */
int pgsi_fault_operator(pgs_runtime *rt, server *s, pgs_ctx *ctx, msg *m);
/* An effective setting: the server's override, the behaviour's, else
** dflt.  Inline: pgsi_keep and pgsi_keeps_messages run on every write. */
#define PGSI_EFFECTIVE(s, field, dflt) \
    ((s)->opts.field ? (s)->opts.field \
                     : (s)->beh->b->defaults.field ? (s)->beh->b->defaults.field : (dflt))
#define PGSI_ROLLBACK_HISTORY 3 /* versions kept by default under rollback */

/* Older versions s keeps in storage (0: none). */
static inline uint32_t pgsi_keep(const server *s)
{
    int rollback = PGSI_EFFECTIVE(s, fault_policy, PGS_POLICY_BACKOFF) == PGS_POLICY_ROLLBACK;
    uint16_t h = PGSI_EFFECTIVE(s, history, rollback ? PGSI_ROLLBACK_HISTORY : 0);
    return h == PGS_HISTORY_NONE ? 0 : h;
}

/* 1 if s stores with each version the message that made it. */
static inline int pgsi_keeps_messages(const server *s)
{
    return PGSI_EFFECTIVE(s, history_messages, 2) == 1;
}
/* Deletes ref's crash record (its server was deleted or wiped):
** pgs_storage_fault_clear. */
void pgsi_fault_forget(pgs_runtime *rt, const pgs_ref *ref);
/* Removes set-aside message id from storage; *rec holds its bytes, which
** *p points into (free(*rec) after). */
int pgsi_poison_take(pgs_runtime *rt, uint64_t id, pgs_record **rec, pgs_poison *p);

/* ---- metrics.c */
/* Adds an observation (the batch-running thread only). */
void pgsi_hist_add(hist *h, uint64_t v);

/* ---- monitor.c */
void pgsi_monitor_init(pgs_runtime *rt);
void pgsi_monitor_free(pgs_runtime *rt);
/* Tells ref's monitors of event (no lock held); DELETE removes them. */
void pgsi_monitor_event(pgs_runtime *rt, const pgs_ref *ref, uint64_t hash, int event);

/* ---- timer.c */
int pgsi_timer_start(pgs_runtime *rt);
void pgsi_timer_stop(pgs_runtime *rt);
void pgsi_timer_free(pgs_runtime *rt);
void pgsi_idle_arm(pgs_runtime *rt, server *s, int64_t deadline); /* shard lock held, !in_timer */
void pgsi_idle_rearm(pgs_runtime *rt, server *s, int64_t deadline); /* shard lock held */
/* At `deadline` (ns, monotonic), pgsi_wake_due(b, ref). */
int pgsi_timer_wake(pgs_runtime *rt, const beh *b, const pgs_ref *ref, int64_t deadline);
int pgsi_timer_add(pgs_runtime *rt, const beh *b, const pgs_ref *ref, uint32_t delay_ms,
                   const void *data, size_t len, uint64_t *id);

#endif
