/*
** test_kill.c — durability under a real kill -9, in write mode sync (the
** default) or async (--mode async).
**
** What it proves.  Sync: a process that dies outright loses nothing it
** acknowledged, applies nothing twice, and keeps each sender's order —
** while servers passivate and reactivate all the time, or stay active with
** writes in flight behind their turns.  Async: the same, except that
** acknowledged updates may be lost, but only recent ones: none ACKed more
** than the loss window W before the kill.  Not argued: the process is
** SIGKILLed at a random moment, over and over, on one store that persists
** across rounds.
**
** How:
**   - Each round the harness forks a child that opens a runtime on the
**     store and runs T client threads sending calls (~70%) and casts to K
**     virtual servers "kill/kNNNNNNN" as fast as they can.  Thread t numbers
**     its messages seq = 1, 2, ... (continuing across rounds).  Before each
**     send it writes an INTENT record to a pipe; after pgs_call returns
**     PGS_OK it writes an ACK with the reply and the time pgs_call returned
**     (CLOCK_MONOTONIC: one clock for the whole machine, so the child's
**     stamps and the parent's compare).  Records are fixed-size, written
**     PIPE_BUF bytes at most at a time, so they never tear.  The round's
**     idle timeout is drawn from the seed: 3 ms (servers passivate between
**     most messages; a reactivation commits the server's pending write at
**     once) or never (servers stay active: in async mode only the flush
**     deadline writes them).  --idle MS fixes it.
**   - The trace (on by default; --trace off drops it): the child's runtime
**     stores through a thin adapter in front of SQLite (opts.storage).  It
**     times each commit into memory shared with the parent (so the figures
**     survive the kill, including a commit cut short by it), and after each
**     commit reports, for every (key, thread) whose stored last_seq
**     changed, a DURABLE record: that seq and the commit's end time.  A
**     reporter thread writes those to the pipe, so a slow parent never
**     stalls a commit (what is still queued at the kill is lost: the trace
**     checks what it saw, the store checks the rest).
**   - The parent drains the pipe, stamps the time and SIGKILLs the child
**     (sync: 10-150 ms after it reported ready; async: 10 ms to 3 W, so
**     most ACKs of a round are older than W at the kill), reaps it and
**     drains the pipe to EOF: what it read is exactly what the child did
**     before dying.
**   - It then opens the store with pgs_storage_open and reads every server.
**     Each server's flat state holds, per sender t: calls[t], casts[t] and
**     last_seq[t] (the last of t's messages applied), plus a counter of
**     seqs that did not rise.  Because the stored state is a snapshot after
**     some turn, and t's messages to a key are handled in t's order, the
**     stored last_seq[t] pins the exact prefix of t's messages to that key
**     that survived, and so the exact calls[t] and casts[t].  The checks
**     (both modes unless said):
**       * last_seq[t] is a seq t sent to that key (this round) or the value
**         stored at the end of the last round — nothing invented, nothing
**         that was never sent (no INTENT);
**       * sync: last_seq[t] >= the seq of every ACKed call from t to that
**         key — no acknowledged update lost (the output gate);
**         async: every ACKed call from t to that key whose ACK is older
**         than the round's window at the kill has seq <= last_seq[t]; the
**         age of the oldest lost ACK is recorded (the observed loss window);
**       * calls[t] and casts[t] equal the model's counts up to last_seq[t]:
**         what is stored for (key, t) is a prefix of what t sent to key —
**         no message lost from the middle, none applied twice, none out of
**         order, and every cast sent before a surviving call is stored
**         with it.  Sync: only the one un-ACKed call in flight per thread,
**         and casts sent after the thread's last ACKed call to that key,
**         may or may not be there;
**       * each ACKed reply equals the sender's call count at that point;
**       * the violations counter is 0; a record's version never goes back.
**     And first, from the trace, on every write while the child ran:
**       * every write's last_seq[t] is a seq t sent (or the stored base),
**         and never goes back from one write of a key to the next;
**       * sync: every ACKed call was durable before its ACK (commit end <=
**         ACK time): the output gate, checked on every call, not only at
**         the kill;
**         async: every ACKed call that became durable did so within the
**         round's window of its ACK (the flush lag: had the kill come just
**         then, the update would have been lost older than the window).
**     The model then adopts the stored truth and the next round starts.
**   - At the end a runtime is opened on the store in this process: a few
**     servers are called and must resume from their stored counts.
**
** The async loss window.  An update is ACKed after the turn that made its
** server's write pending; that write falls due flush_interval later, the
** committer takes it then, after the commit running at that moment if any,
** and it is durable when its own commit ends.  So an ACKed update is
** durable within flush + 2 commits + the committer's wake-up:
**     window = flush + 2 x max(flush, C) + 100 ms
** where C is the round's longest commit (finished, or cut short by the
** kill; from the trace, 0 with --trace off) and 100 ms is left for the
** committer's scheduling on a loaded machine.  With commits no slower than
** the flush interval that is the documented
**     W = 3 x flush_interval + 100 ms       (250 ms at the default 50 ms)
** which the README states; a round with slower commits (SQLite's WAL
** checkpoints, a busy disk, a starved CPU) gets the longer window, which
** the test reports.  It prints the largest observed loss age (kill time
** minus the ACK time of the oldest lost ACKed call, over all rounds), the
** flush lag's quantiles and worst, and W:
**   async loss window: observed max 83 ms, bound 250 ms ...
**
** Self-test (proves the harness can fail), off by default.  The trace's
** checks run first; --trace off leaves only the checks on the store:
**   PGS_KILL_SELFTEST=1  the child ACKs each call before pgs_call runs
**                        (claims what is not yet durable).  Sync: caught
**                        by the trace's gate check on the first call, or
**                        (--trace off) as a loss at a kill.  Async: acking
**                        early is within the contract unless it runs past
**                        the window, so the child also waits 2 W between
**                        the ACK and the call: caught as a flush lag beyond
**                        the window, or (--trace off) as an ACKed call
**                        lost older than the window when a kill lands in
**                        the wait.
**   PGS_KILL_SELFTEST=2  handlers return PGS_NOPERSIST (reply without a
**                        write).  Sync: calls only; caught by the gate
**                        check, or a loss once a kill lands in the gap.
**                        Async: calls and casts, and no idle passivation
**                        (which would write the dirty state): nothing after
**                        init ever reaches storage, as if async writes
**                        were never flushed; caught as ACKed calls lost
**                        older than the window at the first kill later
**                        than W.
**   PGS_KILL_SELFTEST=3  async only: the runtime's flush interval is 10x
**                        the --flush the window is computed from (a library
**                        that flushes late); caught as a flush lag beyond
**                        the window, or as a loss older than it at a kill.
**   PGS_KILL_SELFTEST=4  each cast is sent twice: caught as messages
**                        applied twice (the violations counter).
**   PGS_KILL_SELFTEST=5  a cast whose seq is a multiple of 64 is followed
**                        by one no INTENT announced: caught as a write
**                        holding a seq never sent (trace), or as a stored
**                        last_seq never sent or messages out of order.
**
** Usage: test_kill [--mode sync|async] [--kills N] [--seed S] [--store URL]
**                  [--engine sqlite|lmdb] [--threads T] [--keys K]
**                  [--flush MS] [--idle MS] [--trace on|off]
** The seed drives key choice, message kinds, idle timeouts and kill
** delays; thread interleavings (and so how far each round gets) differ
** between runs.  Default store: a fresh temp dir, sqlite:DIR/kill.db
** (--engine lmdb: lmdb:DIR), removed on success.  The store must outlive
** a process (not "memory:"); postgresql://... works too (a database of
** its own: each round waits for the server to end the dead child's
** sessions before it reads the store).
** An existing store is adopted: its "kill" records become the starting
** model.
*/
#include "pgs.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16
#define KEY_LEN 8
#define CALL_TIMEOUT_MS 60000 /* far beyond any round: a timeout is a hang */
#define READY_TIMEOUT_MS 30000
#define LAG_BUCKETS 10001     /* flush lag histogram: 1 ms buckets, last = more */

enum kind { K_CALL = 1, K_CAST = 2 };
enum rtype { R_READY = 1, R_INTENT, R_ACK, R_FAIL, R_DURABLE };
/* Child exit statuses other than death by SIGKILL. */
enum { X_OPEN = 10, X_PIPE, X_CALL, X_THREAD };

/* One pipe record.  Records are written alone or a few together, never
** more than PIPE_BUF bytes in one write(2), so each write is atomic. */
typedef struct rec {
    uint8_t type;   /* enum rtype */
    uint8_t t;      /* sender thread */
    uint8_t kind;   /* enum kind */
    uint8_t pad;
    int32_t rc;     /* R_FAIL: the pgs status */
    uint32_t key;   /* key index */
    uint32_t value; /* R_ACK: calls[t] from the reply */
    uint64_t seq;   /* R_DURABLE: the last_seq[t] now stored */
    int64_t ns;     /* R_ACK: when pgs_call returned; R_DURABLE: when the commit
                       returned (CLOCK_MONOTONIC) */
} rec;
_Static_assert(sizeof(rec) <= PIPE_BUF, "records must be written atomically");
#define RECS_PER_WRITE (PIPE_BUF / sizeof(rec))

/* The trace's commit timings, in memory shared with the child (so they
** survive its death, unlike what is still queued for the pipe).  Commits
** run one at a time, so the child has one writer. */
typedef struct commit_stats {
    _Atomic int64_t running;   /* start of the commit in progress; 0: none */
    _Atomic int64_t worst_ns;  /* longest finished commit */
    _Atomic uint64_t commits, writes, failed;
} commit_stats;

/* A message as sent. */
typedef struct wire {
    uint64_t seq;
    uint32_t t;
    uint32_t kind;
} wire;

/* Every server's state: flat, stored as is. */
typedef struct kstate {
    uint64_t last_seq[MAX_THREADS];
    uint32_t calls[MAX_THREADS];
    uint32_t casts[MAX_THREADS];
    uint32_t violations; /* messages whose seq did not rise */
    uint32_t pad;
} kstate;

/* One message of this round in the model, in its (key, thread) lane.
** cum_* count the lane's calls and casts this round up to and including
** it, so a stored last_seq maps to exact expected counts. */
typedef struct intent {
    uint64_t seq;
    int64_t ack_ns; /* acked: when pgs_call returned */
    int64_t dur_ns; /* durable: when the first write holding it committed */
    uint32_t cum_calls, cum_casts;
    uint8_t kind;
    uint8_t acked;
} intent;

/* The model of one (key, thread): the stored truth after the last round
** (base_*) and this round's messages. */
typedef struct lane {
    uint64_t base_last;
    uint32_t base_calls, base_casts;
    intent *v;
    size_t n, cap;
    uint64_t acked_seq; /* seq of the last ACKed call this round, 0: none */
    uint64_t dur_seq;   /* the last traced write's last_seq (from base_last) */
    size_t dur_idx;     /* v[0..dur_idx) are known durable */
} lane;

/* One client thread's progress this round. */
typedef struct sender {
    uint64_t next_seq;   /* first seq of the round */
    uint64_t expect_seq; /* next INTENT's seq */
    uint32_t last_key;
    uint8_t last_kind;   /* 0: nothing sent this round */
    uint8_t last_acked;
} sender;

typedef struct round_stats {
    uint64_t calls, casts, acked;       /* sent, sent, ACKed */
    uint64_t casts_applied;             /* found in the store */
    uint64_t inflight, inflight_applied; /* un-ACKed calls at the kill */
    uint64_t records;
    uint64_t lost_acked;                /* async: ACKed calls lost (all within W) */
    int64_t loss_ns;                    /* async: age of the oldest lost ACK */
    uint64_t commits, commit_errors, commit_writes;
    int64_t commit_worst_ns;            /* finished, or running at the kill */
    int64_t bound_ns;                   /* async: this round's loss window */
    uint64_t traced;                    /* ACKed calls seen durable */
    int64_t lag_max_ns;                 /* ACK to durable, worst */
} round_stats;

/* The whole test; a single instance, inherited by each child at fork. */
static struct {
    int kills, threads, keys, selftest;
    int async;          /* --mode async */
    int trace;          /* the child reports its commits */
    uint32_t flush_ms;  /* --flush: the runtime's flush_interval_ms */
    uint32_t idle_ms;   /* --idle: every round's idle timeout; 0: mixed */
    uint32_t round_idle; /* this round's */
    int64_t window_ms;  /* async: W with commits no slower than the flush */
    uint64_t seed;
    char *url;
    const char *engine; /* --engine: the kind of the default store */
    char tmpdir[64];   /* non-empty: ours, removed on success */
    lane *lanes;       /* keys * threads, lane(k, t) */
    uint64_t *base_version; /* per key: record version after the last round */
    sender senders[MAX_THREADS];
    int round;
    pid_t child;       /* > 0 while a child may be alive */
    int64_t kill_ns;   /* when the parent sent this round's SIGKILL */
    int wfd;           /* child: the pipe's write end */
    pgs_runtime *rt;   /* child: its runtime */
    /* Results over all rounds. */
    int64_t loss_max_ns;
    int loss_max_round;
    uint64_t lost_acked;
    int64_t lag_max_ns;
    int lag_max_round;
    uint64_t lag_hist[LAG_BUCKETS];
    uint64_t traced;
    int64_t commit_worst_ns;
    int commit_worst_round;
    int slow_rounds;   /* async: rounds whose bound exceeded W */
    uint64_t commits;
    int64_t bound_max_ns;
    commit_stats *cs;  /* shared with each child */
} g;

/* ------------------------------------------------------------------------
** Small helpers.
*/
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* splitmix64: small, seedable, good enough to pick keys. */
static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    return mix64(*s);
}

/* CLOCK_MONOTONIC is one clock for the machine: a child's stamps and the
** parent's compare. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void)
{
    return now_ns() / 1000000;
}

static double ms_of(int64_t ns)
{
    return (double)ns / 1e6;
}

static lane *lane_of(uint32_t key, uint32_t t)
{
    return &g.lanes[(size_t)key * (size_t)g.threads + t];
}

static void key_bytes(uint32_t key, char out[KEY_LEN + 1])
{
    snprintf(out, KEY_LEN + 1, "k%07u", key);
}

static void make_ref(pgs_ref *ref, uint32_t key)
{
    char kb[KEY_LEN + 1];
    key_bytes(key, kb);
    if (pgs_ref_make(ref, "kill", kb, KEY_LEN) != PGS_OK)
        abort();
}

/* The key index of a "kill/kNNNNNNN" ref, or -1. */
static int64_t key_of(const pgs_ref *ref)
{
    if (strcmp(ref->name, "kill") || ref->key_len != KEY_LEN || ref->key[0] != 'k')
        return -1;
    int64_t k = 0;
    for (int i = 1; i < KEY_LEN; i++) {
        if (ref->key[i] < '0' || ref->key[i] > '9')
            return -1;
        k = k * 10 + (ref->key[i] - '0');
    }
    return k < g.keys ? k : -1;
}

/* Kills and reaps the child, if any: no stray process survives a failure. */
static void reap_child(void)
{
    if (g.child > 0) {
        kill(g.child, SIGKILL);
        waitpid(g.child, NULL, 0);
        g.child = 0;
    }
}

/* Reports a failure with everything needed to replay it, and exits.  The
** store is kept for inspection. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "test_kill: FAILED (%s mode, seed %" PRIu64 ", round %d): ",
            g.async ? "async" : "sync", g.seed, g.round);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    char env[32] = "";
    if (g.selftest)
        snprintf(env, sizeof env, "PGS_KILL_SELFTEST=%d ", g.selftest);
    fprintf(stderr, "\ntest_kill: store kept: %s  (replay: %stest_kill --mode %s --seed %"
                    PRIu64 " --kills %d --threads %d --keys %d --flush %u --trace %s"
                    " %s %s)\n",
            g.url, env, g.async ? "async" : "sync", g.seed, g.kills, g.threads, g.keys, g.flush_ms,
            g.trace ? "on" : "off", g.tmpdir[0] ? "--engine" : "--store",
            g.tmpdir[0] ? g.engine : g.url);
    reap_child();
    exit(1);
}

/* ------------------------------------------------------------------------
** The behaviour (runs in the child, and in the final resume check).
*/
static int kill_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    return PGS_PERSIST;
}

/* Applies one message; PGS_CRASH on a malformed one (the caller then sees
** an error, which the harness reports). */
static int apply(kstate *s, const void *msg, size_t len, int kind)
{
    wire w;
    if (len != sizeof w)
        return PGS_CRASH;
    memcpy(&w, msg, sizeof w);
    if (w.t >= MAX_THREADS || w.kind != (uint32_t)kind)
        return PGS_CRASH;
    if (w.seq <= s->last_seq[w.t])
        s->violations++; /* a duplicate or a reorder */
    s->last_seq[w.t] = w.seq;
    if (kind == K_CALL)
        s->calls[w.t]++;
    else
        s->casts[w.t]++;
    return PGS_OK;
}

static int kill_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    kstate *s = state;
    if (apply(s, msg, len, K_CALL) != PGS_OK)
        return PGS_CRASH;
    uint32_t t = ((const wire *)msg)->t;
    if (pgs_reply(ctx, &s->calls[t], sizeof s->calls[t]) != PGS_OK)
        return PGS_CRASH;
    /* Self-test 2: reply without writing — an ACK that is not durable. */
    return g.selftest == 2 ? PGS_NOPERSIST : PGS_PERSIST;
}

static int kill_cast(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    if (apply(state, msg, len, K_CAST) != PGS_OK)
        return PGS_CRASH;
    /* Self-test 2, async: nothing is ever written after init. */
    return g.selftest == 2 && g.async ? PGS_NOPERSIST : PGS_PERSIST;
}

/* Its defaults are set from the options in main (the write mode). */
static pgs_behaviour kill_behaviour = {
    .version = PGS_BEHAVIOUR_VERSION,
    .name = "kill",
    .state_size = sizeof(kstate),
    .flags = PGS_VIRTUAL,
    .init = kill_init,
    .handle_call = kill_call,
    .handle_cast = kill_cast,
};

/* ------------------------------------------------------------------------
** The child: clients that send until the parent kills the process.
*/
static void put_recs(const rec *r, size_t n)
{
    /* At most PIPE_BUF bytes on a blocking pipe: all or nothing. */
    if (write(g.wfd, r, n * sizeof *r) != (ssize_t)(n * sizeof *r))
        _exit(X_PIPE);
}

static void put_rec(const rec *r)
{
    put_recs(r, 1);
}

static void child_fail(uint32_t t, uint64_t seq, uint32_t key, int kind, int rc)
{
    rec r = {.type = R_FAIL, .t = (uint8_t)t, .kind = (uint8_t)kind, .rc = rc,
             .key = key, .seq = seq};
    put_rec(&r);
    _exit(X_CALL);
}

/* Sends one call and ACKs it.  `predicted` is what the reply must be
** (the child knows the model's base, inherited at fork); self-test 1 uses
** it to ACK before the call has even been made. */
static void send_call(uint32_t t, uint64_t seq, uint32_t key, uint32_t predicted)
{
    pgs_ref ref;
    wire w = {.seq = seq, .t = t, .kind = K_CALL};
    rec ack = {.type = R_ACK, .t = (uint8_t)t, .kind = K_CALL, .key = key, .seq = seq,
               .value = predicted};
    make_ref(&ref, key);
    if (g.selftest == 1) {
        ack.ns = now_ns();
        put_rec(&ack); /* a lie: nothing is durable yet */
        if (g.async) { /* ...and, async, a lie past the window */
            struct timespec d = {.tv_sec = g.window_ms * 2 / 1000,
                                 .tv_nsec = g.window_ms * 2 % 1000 * 1000000};
            while (nanosleep(&d, &d) != 0 && errno == EINTR)
                ;
        }
    }
    pgs_bytes reply = {0};
    int rc = pgs_call(g.rt, &ref, &w, sizeof w, &reply, CALL_TIMEOUT_MS);
    if (g.selftest != 1)
        ack.ns = now_ns(); /* as soon as the reply is in hand */
    if (rc != PGS_OK)
        child_fail(t, seq, key, K_CALL, rc);
    if (reply.len != sizeof ack.value) {
        pgs_bytes_free(&reply);
        child_fail(t, seq, key, K_CALL, PGS_ECALLBACK);
    }
    memcpy(&ack.value, reply.data, sizeof ack.value);
    pgs_bytes_free(&reply);
    if (g.selftest != 1)
        put_rec(&ack);
}

static void send_cast(uint32_t t, uint64_t seq, uint32_t key)
{
    pgs_ref ref;
    wire w = {.seq = seq, .t = t, .kind = K_CAST};
    make_ref(&ref, key);
    int rc = pgs_cast(g.rt, &ref, &w, sizeof w);
    if (rc == PGS_OK && g.selftest == 4)
        rc = pgs_cast(g.rt, &ref, &w, sizeof w); /* the same message twice */
    if (rc == PGS_OK && g.selftest == 5 && seq % 64 == 0) {
        w.seq = seq + (1ull << 40); /* a message no INTENT announced */
        rc = pgs_cast(g.rt, &ref, &w, sizeof w);
    }
    if (rc != PGS_OK)
        child_fail(t, seq, key, K_CAST, rc);
}

/* One client thread: its messages are a pure function of (seed, round, t),
** so a seed replays the same sequence. */
static void *client(void *arg)
{
    uint32_t t = (uint32_t)(uintptr_t)arg;
    uint64_t rng = mix64(g.seed ^ mix64(((uint64_t)g.round << 8) | t));
    uint32_t *mine = calloc((size_t)g.keys, sizeof *mine); /* calls sent per key */
    if (!mine)
        _exit(X_THREAD);
    for (uint64_t seq = g.senders[t].next_seq;; seq++) {
        uint32_t key = (uint32_t)(rng_next(&rng) % (uint64_t)g.keys);
        int kind = rng_next(&rng) % 100 < 70 ? K_CALL : K_CAST;
        rec in = {.type = R_INTENT, .t = (uint8_t)t, .kind = (uint8_t)kind, .key = key,
                  .seq = seq};
        put_rec(&in); /* before sending: the parent must know what may apply */
        if (kind == K_CALL)
            send_call(t, seq, key, lane_of(key, t)->base_calls + ++mine[key]);
        else
            send_cast(t, seq, key);
    }
    return NULL;
}

/* ------------------------------------------------------------------------
** The trace (child): SQLite behind a thin adapter that reports each commit.
** Commits run one at a time (commit.c); the lock only makes the report's
** order the commit order whatever the library does.  Records go to a queue
** that a reporter thread writes to the pipe, so a commit never waits for
** the parent.
*/
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec *v;
    size_t n, cap;
} rq = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

static void report(const rec *r, size_t n)
{
    pthread_mutex_lock(&rq.mu);
    if (rq.n + n > rq.cap) {
        size_t cap = rq.cap ? rq.cap : 1024;
        while (cap < rq.n + n)
            cap *= 2;
        rec *v = realloc(rq.v, cap * sizeof *v);
        if (!v)
            _exit(X_THREAD);
        rq.v = v;
        rq.cap = cap;
    }
    memcpy(rq.v + rq.n, r, n * sizeof *r);
    rq.n += n;
    pthread_cond_signal(&rq.cv);
    pthread_mutex_unlock(&rq.mu);
}

static void *reporter(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&rq.mu);
        while (!rq.n)
            pthread_cond_wait(&rq.cv, &rq.mu);
        rec *v = rq.v;
        size_t n = rq.n;
        rq.v = NULL;
        rq.n = rq.cap = 0;
        pthread_mutex_unlock(&rq.mu);
        for (size_t i = 0; i < n; i += RECS_PER_WRITE)
            put_recs(v + i, n - i < RECS_PER_WRITE ? n - i : RECS_PER_WRITE);
        free(v);
    }
    return NULL;
}

typedef struct trace_store {
    pgs_storage *inner;
    pthread_mutex_t mu;
    uint64_t *seen; /* keys * threads: the last_seq last reported */
    rec *out;       /* a batch's records */
    size_t out_cap;
    pgs_write *copy;
    size_t copy_cap;
} trace_store;

static int tr_open(const char *url, void **state)
{
    trace_store *ts = calloc(1, sizeof *ts);
    if (!ts)
        return PGS_ENOMEM;
    ts->seen = calloc((size_t)g.keys * (size_t)g.threads, sizeof *ts->seen);
    if (!ts->seen) {
        free(ts);
        return PGS_ENOMEM;
    }
    pthread_mutex_init(&ts->mu, NULL);
    int rc = pgs_storage_open(&ts->inner, url + strlen("trace:"), NULL);
    if (rc) {
        free(ts->seen);
        free(ts);
        return rc;
    }
    *state = ts;
    return PGS_OK;
}

static void tr_close(void *state)
{
    trace_store *ts = state;
    pgs_storage_close(ts->inner);
    pthread_mutex_destroy(&ts->mu);
    free(ts->seen);
    free(ts->out);
    free(ts->copy);
    free(ts);
}

static int tr_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    return pgs_storage_get(((trace_store *)state)->inner, ref, out);
}

static int tr_scan(void *state, const char *name, int (*fn)(void *, const pgs_record *),
                   void *arg)
{
    return pgs_storage_scan(((trace_store *)state)->inner, name, fn, arg);
}

static int tr_batch(void *state, const pgs_write *writes, size_t n)
{
    trace_store *ts = state;
    pthread_mutex_lock(&ts->mu);
    size_t need = n * (size_t)g.threads;
    if (ts->out_cap < need) {
        free(ts->out);
        if (!(ts->out = malloc(need * sizeof *ts->out)))
            _exit(X_THREAD);
        ts->out_cap = need;
    }
    if (ts->copy_cap < n) {
        free(ts->copy);
        if (!(ts->copy = malloc(n * sizeof *ts->copy)))
            _exit(X_THREAD);
        ts->copy_cap = n;
    }
    memcpy(ts->copy, writes, n * sizeof *writes);
    int64_t t0 = now_ns();
    atomic_store(&g.cs->running, t0);
    int rc = pgs_storage_batch(ts->inner, ts->copy, n);
    int64_t t1 = now_ns();
    if (t1 - t0 > atomic_load(&g.cs->worst_ns))
        atomic_store(&g.cs->worst_ns, t1 - t0);
    atomic_fetch_add(&g.cs->commits, 1);
    atomic_fetch_add(&g.cs->writes, n);
    if (rc)
        atomic_fetch_add(&g.cs->failed, 1);
    atomic_store(&g.cs->running, 0);
    size_t m = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const pgs_record *r = writes[i].record;
        int64_t key;
        kstate s;
        if (writes[i].op != PGS_OP_PUT || (key = key_of(&r->ref)) < 0 ||
            r->state_len != sizeof s)
            continue;
        memcpy(&s, r->state, sizeof s);
        for (int t = 0; t < g.threads; t++) {
            uint64_t *seen = &ts->seen[(size_t)key * (size_t)g.threads + (size_t)t];
            if (s.last_seq[t] == *seen)
                continue;
            *seen = s.last_seq[t];
            ts->out[m++] = (rec){.type = R_DURABLE, .t = (uint8_t)t, .key = (uint32_t)key,
                                 .seq = s.last_seq[t], .ns = t1};
        }
    }
    if (m)
        report(ts->out, m);
    pthread_mutex_unlock(&ts->mu);
    return rc;
}

static const pgs_storage_ops trace_ops = {
    .version = PGS_STORAGE_VERSION,
    .scheme = "trace",
    .open = tr_open,
    .close = tr_close,
    .get = tr_get,
    .batch = tr_batch,
    .scan = tr_scan,
};

/* Never returns: the child ends by SIGKILL, or _exit on a failure. */
__attribute__((noreturn)) static void child_main(pid_t parent)
{
    /* If the harness dies, so does its child (no strays). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(X_PIPE);
    pgs_options opts;
    pgs_options_init(&opts);
    opts.idle_timeout_ms = g.round_idle;
    /* Self-test 3: the library flushes ten times later than it says. */
    opts.flush_interval_ms = g.flush_ms * (g.selftest == 3 ? 10 : 1);
    int rc = PGS_OK;
    if (g.trace) {
        size_t n = strlen(g.url) + sizeof "trace:";
        char *url = malloc(n);
        pthread_t th;
        if (!url || pthread_create(&th, NULL, reporter, NULL) != 0)
            _exit(X_THREAD);
        snprintf(url, n, "trace:%s", g.url);
        rc = pgs_storage_open(&opts.storage, url, &trace_ops);
        free(url);
    }
    if (!rc)
        rc = pgs_open(&g.rt, g.trace ? NULL : g.url, &opts);
    if (!rc)
        rc = pgs_register(g.rt, &kill_behaviour);
    if (rc) {
        rec r = {.type = R_FAIL, .rc = rc};
        put_rec(&r);
        _exit(X_OPEN);
    }
    for (int t = 0; t < g.threads; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, client, (void *)(uintptr_t)t) != 0)
            _exit(X_THREAD);
    }
    rec ready = {.type = R_READY};
    put_rec(&ready);
    for (;;)
        pause();
}

/* ------------------------------------------------------------------------
** The parent: the pipe's records update this round's model.
*/
static void lane_push(lane *l, uint64_t seq, int kind)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        intent *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            die("out of memory");
        l->v = v;
        l->cap = cap;
    }
    intent prev = l->n ? l->v[l->n - 1] : (intent){0};
    l->v[l->n++] = (intent){.seq = seq, .kind = (uint8_t)kind,
                            .cum_calls = prev.cum_calls + (kind == K_CALL),
                            .cum_casts = prev.cum_casts + (kind == K_CAST)};
}

/* Index of the lane's first message with a seq >= seq (seqs rise). */
static size_t lower_bound(const lane *l, uint64_t seq)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The lane's message with this seq, or NULL. */
static const intent *find_seq(const lane *l, uint64_t seq)
{
    size_t i = lower_bound(l, seq);
    return i < l->n && l->v[i].seq == seq ? &l->v[i] : NULL;
}

static void on_intent(const rec *r, round_stats *rs)
{
    sender *s = &g.senders[r->t];
    if (r->seq != s->expect_seq || r->key >= (uint32_t)g.keys ||
        (r->kind != K_CALL && r->kind != K_CAST))
        die("bad INTENT from thread %u: seq %" PRIu64 " (expected %" PRIu64 "), key %u",
            r->t, r->seq, s->expect_seq, r->key);
    /* A thread sends one message at a time: its previous call was ACKed. */
    if (s->last_kind == K_CALL && !s->last_acked)
        die("thread %u sent seq %" PRIu64 " before its call was ACKed", r->t, r->seq);
    s->expect_seq++;
    s->last_key = r->key;
    s->last_kind = r->kind;
    s->last_acked = 0;
    lane_push(lane_of(r->key, r->t), r->seq, r->kind);
    if (r->kind == K_CALL)
        rs->calls++;
    else
        rs->casts++;
}

/* An ACK must be for the thread's latest message, a call, and its reply
** must count exactly the calls the model knows of. */
static void on_ack(const rec *r, round_stats *rs)
{
    sender *s = &g.senders[r->t];
    if (s->last_kind != K_CALL || s->last_acked || r->seq + 1 != s->expect_seq ||
        r->key != s->last_key)
        die("ACK from thread %u for seq %" PRIu64 " key %u that is not its pending call",
            r->t, r->seq, r->key);
    lane *l = lane_of(r->key, r->t);
    intent *in = &l->v[l->n - 1];
    uint32_t want = l->base_calls + in->cum_calls;
    if (r->value != want)
        die("kill/k%07u: call seq %" PRIu64 " from thread %u replied calls=%u, expected %u",
            r->key, r->seq, r->t, r->value, want);
    s->last_acked = 1;
    l->acked_seq = r->seq;
    in->acked = 1;
    in->ack_ns = r->ns;
    rs->acked++;
}

/* A traced write stored last_seq[t] = r->seq for the key: every message of
** the lane up to it is durable since r->ns.  The write holds a snapshot,
** so the seq must be one the thread sent (INTENTs precede the sends, and
** so the writes, in the pipe) and must not go back. */
static void on_durable(const rec *r, round_stats *rs)
{
    if (r->key >= (uint32_t)g.keys)
        die("DURABLE record for bad key %u", r->key);
    lane *l = lane_of(r->key, r->t);
    if (r->seq < l->dur_seq)
        die("kill/k%07u thread %u: a write stored last_seq %" PRIu64 " after one that "
            "stored %" PRIu64 " (a later write lost an update)",
            r->key, r->t, r->seq, l->dur_seq);
    l->dur_seq = r->seq;
    if (r->seq == l->base_last)
        return; /* the base, written again with another thread's update */
    size_t i = lower_bound(l, r->seq);
    if (i == l->n || l->v[i].seq != r->seq)
        die("kill/k%07u thread %u: a write stored last_seq %" PRIu64 ", which the thread "
            "never sent to that key (stored base %" PRIu64 ", %zu sent this round)",
            r->key, r->t, r->seq, l->base_last, l->n);
    for (; l->dur_idx <= i; l->dur_idx++)
        l->v[l->dur_idx].dur_ns = r->ns;
}

static void on_record(const rec *r, round_stats *rs, int *ready)
{
    rs->records++;
    if (r->type != R_READY && r->t >= g.threads)
        die("record with bad thread %u", r->t);
    switch (r->type) {
    case R_READY: *ready = 1; break;
    case R_INTENT: on_intent(r, rs); break;
    case R_ACK: on_ack(r, rs); break;
    case R_DURABLE: on_durable(r, rs); break;
    case R_FAIL:
        die("child: %s to kill/k%07u (thread %u, seq %" PRIu64 ") failed: %s (%s)",
            r->kind == K_CALL ? "call" : r->kind == K_CAST ? "cast" : "pgs_open/register",
            r->key, r->t, r->seq, pgs_errname(r->rc), pgs_strerror(r->rc));
    default: die("unknown record type %u", r->type);
    }
}

/* The pipe's read side: bytes carried over between reads, since a read
** may end inside a record. */
typedef struct reader {
    int fd;
    unsigned char buf[64 * 1024];
    size_t have;
} reader;

/* Waits up to timeout_ms for records and handles them.  0 at EOF. */
static int pump(reader *rd, int timeout_ms, round_stats *rs, int *ready)
{
    struct pollfd p = {.fd = rd->fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("poll: %s", strerror(errno));
    if (n <= 0)
        return 1;
    ssize_t got = read(rd->fd, rd->buf + rd->have, sizeof rd->buf - rd->have);
    if (got < 0 && errno == EINTR)
        return 1;
    if (got < 0)
        die("read: %s", strerror(errno));
    if (got == 0) {
        if (rd->have)
            die("pipe ended inside a record (%zu bytes)", rd->have);
        return 0;
    }
    rd->have += (size_t)got;
    size_t off = 0;
    for (; rd->have - off >= sizeof(rec); off += sizeof(rec)) {
        rec r;
        memcpy(&r, rd->buf + off, sizeof r);
        on_record(&r, rs, ready);
    }
    memmove(rd->buf, rd->buf + off, rd->have - off);
    rd->have -= off;
    return 1;
}

static void check_death(int status)
{
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return;
    if (WIFSIGNALED(status))
        die("child died of signal %d (%s) before the kill", WTERMSIG(status),
            strsignal(WTERMSIG(status)));
    die("child exited with status %d before the kill (sanitizer report above?)",
        WEXITSTATUS(status));
}

/* Forks the child and kills it after `delay_ms` of running; returns with
** every record it wrote handled.  g.kill_ns: when SIGKILL was sent. */
/* A store served by another process may still be applying what the dead
** child sent: PostgreSQL finishes a COMMIT that arrived before the kill,
** and only then finds the client gone.  The round's truth is read once the
** server has let go of every session of the child (none of ours is open
** here).  Files (sqlite:, lmdb:) are settled when the child is dead. */
static void settle_store(void)
{
    if (strncasecmp(g.url, "postgresql://", 13))
        return;
    PGconn *pg = PQconnectdb(g.url);
    if (PQstatus(pg) != CONNECTION_OK)
        die("settle: %s", PQerrorMessage(pg));
    for (int64_t start = now_ms();; usleep(2000)) {
        PGresult *r = PQexec(pg, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND pid <> pg_backend_pid() AND "
                                 "backend_type = 'client backend'");
        int left = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
        if (left == 0)
            break;
        if (left < 0 || now_ms() - start > READY_TIMEOUT_MS)
            die("settle: the dead child's sessions did not end (%d left)", left);
    }
    PQfinish(pg);
}

static void run_child(int delay_ms, round_stats *rs)
{
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    fflush(stdout); /* the child must not inherit unflushed output */
    memset(g.cs, 0, sizeof *g.cs);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        g.wfd = fds[1];
        child_main(parent);
    }
    g.child = pid;
    close(fds[1]); /* so EOF comes when the child is gone */
    static reader rd;
    rd.fd = fds[0];
    rd.have = 0;
    int ready = 0, open = 1;
    int64_t start = now_ms();
    while (open && !ready && now_ms() - start < READY_TIMEOUT_MS)
        open = pump(&rd, 100, rs, &ready);
    if (!ready && open)
        die("child not ready after %d ms", READY_TIMEOUT_MS);
    int64_t deadline = now_ms() + delay_ms;
    for (int64_t left; open && (left = deadline - now_ms()) > 0;)
        open = pump(&rd, (int)left, rs, &ready);
    /* EOF before the kill: the child died by itself (a FAIL record, if it
    ** wrote one, has already been reported).  The kill time is taken just
    ** before the signal: the child may still run a little after it, so an
    ** ACK may even be stamped later (a negative age). */
    g.kill_ns = now_ns();
    kill(pid, SIGKILL);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        die("waitpid: %s", strerror(errno));
    g.child = 0;
    settle_store();
    while (pump(&rd, -1, rs, &ready))
        ;
    close(fds[0]);
    check_death(status);
    /* The commits' timings, and the one cut short by the kill, if any (one
    ** started after the kill time has a negative age: ignored). */
    rs->commits = atomic_load(&g.cs->commits);
    rs->commit_writes = atomic_load(&g.cs->writes);
    rs->commit_errors = atomic_load(&g.cs->failed);
    rs->commit_worst_ns = atomic_load(&g.cs->worst_ns);
    int64_t running = atomic_load(&g.cs->running);
    if (running && g.kill_ns - running > rs->commit_worst_ns)
        rs->commit_worst_ns = g.kill_ns - running;
    /* The round's async loss window: an update is ACKed after its write
    ** became pending; the write falls due flush_interval later, may wait
    ** for the commit running then, and is committed by the next: flush +
    ** 2 commits, a commit taken as no less than the flush interval (so
    ** with fast commits this is the documented W = 3 x flush + 100 ms),
    ** plus 100 ms for the committer's wake-up on a loaded machine. */
    int64_t c = rs->commit_worst_ns > (int64_t)g.flush_ms * 1000000
                    ? rs->commit_worst_ns : (int64_t)g.flush_ms * 1000000;
    rs->bound_ns = (int64_t)g.flush_ms * 1000000 + 2 * c + 100 * 1000000LL;
}

/* ------------------------------------------------------------------------
** Verification: the store against the model.
*/
static pgs_storage *open_store(void)
{
    pgs_storage *st;
    int rc = pgs_storage_open(&st, g.url, NULL);
    if (rc)
        die("pgs_storage_open(%s): %s", g.url, pgs_errname(rc));
    return st;
}

/* Reads key's state; zeros if it has no record.  *version gets the
** record's version (0: none). */
static void read_state(pgs_storage *st, uint32_t key, kstate *out, uint64_t *version)
{
    pgs_ref ref;
    pgs_record *r = NULL;
    make_ref(&ref, key);
    memset(out, 0, sizeof *out);
    *version = 0;
    int rc = pgs_storage_get(st, &ref, &r);
    if (rc == PGS_ENOTFOUND)
        return;
    if (rc)
        die("kill/k%07u: pgs_storage_get: %s (%s)", key, pgs_errname(rc), pgs_strerror(rc));
    if (r->state_len != sizeof *out) {
        size_t len = r->state_len;
        free(r);
        die("kill/k%07u: stored state has %zu bytes, expected %zu", key, len, sizeof *out);
    }
    memcpy(out, r->state, sizeof *out);
    *version = r->version;
    free(r);
}

/* Checks one (key, thread) and returns how many of its casts this round
** were applied. */
static uint32_t verify_lane(uint32_t key, uint32_t t, const kstate *s, round_stats *rs)
{
    const lane *l = lane_of(key, t);
    uint64_t last = s->last_seq[t];
    intent none = {0};
    const intent *upto = &none; /* nothing from this round survived */
    if (last != l->base_last && !(upto = find_seq(l, last)))
        die("kill/k%07u thread %u: stored last_seq %" PRIu64 " is neither the previous %"
            PRIu64 " nor a seq it sent this round (%zu sent, last %" PRIu64 ")",
            key, t, last, l->base_last, l->n, l->n ? l->v[l->n - 1].seq : 0);
    if (l->acked_seq > last) {
        /* v[kept..] did not survive; the first ACKed one is the oldest lost ACK. */
        size_t kept = upto == &none ? 0 : (size_t)(upto - l->v) + 1, lost = 0;
        const intent *oldest = NULL;
        for (size_t i = kept; i < l->n; i++) {
            if (l->v[i].acked) {
                lost++;
                if (!oldest)
                    oldest = &l->v[i];
            }
        }
        int64_t age = g.kill_ns - oldest->ack_ns;
        if (!g.async || age > rs->bound_ns) {
            char why[160] = "";
            if (g.async)
                snprintf(why, sizeof why, ", beyond this round's async loss window of "
                         "%.1f ms: flush %u ms, worst commit %.1f ms", ms_of(rs->bound_ns),
                         g.flush_ms, ms_of(rs->commit_worst_ns));
            die("kill/k%07u thread %u: ACKNOWLEDGED call seq %" PRIu64 " LOST (%zu ACKed "
                "calls lost, the oldest ACKed %.1f ms before the kill%s): stored "
                "last_seq %" PRIu64 ", calls %u (acked calls imply >= %u)",
                key, t, oldest->seq, lost, ms_of(age), why, last, s->calls[t],
                l->base_calls + find_seq(l, l->acked_seq)->cum_calls);
        }
        rs->lost_acked += lost;
        if (age > rs->loss_ns)
            rs->loss_ns = age;
    }
    uint32_t want_calls = l->base_calls + upto->cum_calls;
    uint32_t want_casts = l->base_casts + upto->cum_casts;
    if (s->calls[t] != want_calls || s->casts[t] != want_casts)
        die("kill/k%07u thread %u: last_seq %" PRIu64 " implies calls=%u casts=%u, "
            "found calls=%u casts=%u (lost, duplicated or reordered messages)",
            key, t, last, want_calls, want_casts, s->calls[t], s->casts[t]);
    return upto->cum_casts;
}

/* The fate of each thread's last message, if an un-ACKed call. */
static void count_inflight(pgs_storage *st, round_stats *rs)
{
    for (int t = 0; t < g.threads; t++) {
        const sender *s = &g.senders[t];
        if (s->last_kind != K_CALL || s->last_acked)
            continue;
        kstate ks;
        uint64_t v;
        read_state(st, s->last_key, &ks, &v);
        rs->inflight++;
        rs->inflight_applied += ks.last_seq[t] == s->expect_seq - 1;
    }
}

/* The trace's timing checks: for each ACKed call seen durable, the lag
** from its ACK to the end of the commit that first held it.  Sync: <= 0
** (the output gate).  Async: <= W. */
static void check_lags(round_stats *rs)
{
    for (uint32_t key = 0; key < (uint32_t)g.keys; key++) {
        for (uint32_t t = 0; t < (uint32_t)g.threads; t++) {
            const lane *l = lane_of(key, t);
            for (size_t i = 0; i < l->dur_idx; i++) {
                const intent *in = &l->v[i];
                if (!in->acked)
                    continue;
                int64_t lag = in->dur_ns - in->ack_ns;
                if (!g.async && lag > 0)
                    die("kill/k%07u thread %u: call seq %" PRIu64 " was ACKed %.3f ms "
                        "BEFORE its write was durable (the output gate let a reply out "
                        "early)", key, t, in->seq, ms_of(lag));
                if (g.async && lag > rs->bound_ns)
                    die("kill/k%07u thread %u: call seq %" PRIu64 " became durable only "
                        "%.1f ms after its ACK, beyond this round's async loss window of "
                        "%.1f ms (flush %u ms, worst commit %.1f ms; a kill then would "
                        "have lost it)", key, t, in->seq, ms_of(lag), ms_of(rs->bound_ns),
                        g.flush_ms, ms_of(rs->commit_worst_ns));
                rs->traced++;
                if (lag > rs->lag_max_ns)
                    rs->lag_max_ns = lag;
                int64_t b = lag < 0 ? 0 : lag / 1000000;
                g.lag_hist[b < LAG_BUCKETS - 1 ? b : LAG_BUCKETS - 1]++;
            }
        }
    }
}

/* Checks the trace, then every server, then makes the stored truth the
** next base.  (The trace first: with --trace off the self-tests show the
** kill checks alone catching what the trace would.) */
static void verify_round(round_stats *rs)
{
    check_lags(rs);
    pgs_storage *st = open_store();
    for (uint32_t key = 0; key < (uint32_t)g.keys; key++) {
        kstate s;
        uint64_t version;
        read_state(st, key, &s, &version);
        if (s.violations)
            die("kill/k%07u: %u messages applied twice or out of order", key, s.violations);
        if (version < g.base_version[key])
            die("kill/k%07u: record version went back from %" PRIu64 " to %" PRIu64, key,
                g.base_version[key], version);
        g.base_version[key] = version;
        for (uint32_t t = 0; t < (uint32_t)g.threads; t++) {
            rs->casts_applied += verify_lane(key, t, &s, rs);
            lane *l = lane_of(key, t);
            l->base_last = s.last_seq[t];
            l->base_calls = s.calls[t];
            l->base_casts = s.casts[t];
        }
    }
    count_inflight(st, rs);
    pgs_storage_close(st);
}

/* Resets the round's model; seqs continue where each thread stopped. */
static void next_round(void)
{
    for (size_t i = 0; i < (size_t)g.keys * (size_t)g.threads; i++) {
        g.lanes[i].n = 0;
        g.lanes[i].acked_seq = 0;
        g.lanes[i].dur_idx = 0;
        g.lanes[i].dur_seq = g.lanes[i].base_last;
    }
    for (int t = 0; t < g.threads; t++) {
        sender *s = &g.senders[t];
        s->next_seq = s->expect_seq;
        s->last_kind = 0;
        s->last_acked = 0;
    }
}

/* Adopts what the store already holds (a --store from an earlier run):
** the stored states are the base and each thread's seqs go on from the
** highest stored. */
static void adopt_store(void)
{
    uint64_t top[MAX_THREADS] = {0};
    pgs_storage *st = open_store();
    for (uint32_t key = 0; key < (uint32_t)g.keys; key++) {
        kstate s;
        read_state(st, key, &s, &g.base_version[key]);
        if (s.violations)
            die("kill/k%07u: store already records %u violations", key, s.violations);
        for (int t = 0; t < g.threads; t++) {
            lane *l = lane_of(key, (uint32_t)t);
            l->base_last = l->dur_seq = s.last_seq[t];
            l->base_calls = s.calls[t];
            l->base_casts = s.casts[t];
            if (s.last_seq[t] > top[t])
                top[t] = s.last_seq[t];
        }
    }
    pgs_storage_close(st);
    for (int t = 0; t < g.threads; t++)
        g.senders[t].expect_seq = g.senders[t].next_seq = top[t] + 1;
}

/* ------------------------------------------------------------------------
** The end: servers resume in a fresh runtime from their stored counts.
*/
static void resume_check(uint64_t *rng)
{
    pgs_runtime *rt;
    pgs_options opts;
    pgs_options_init(&opts);
    opts.idle_timeout_ms = 3;
    opts.flush_interval_ms = g.flush_ms;
    int rc = pgs_open(&rt, g.url, &opts);
    if (!rc)
        rc = pgs_register(rt, &kill_behaviour);
    if (rc)
        die("final pgs_open/register: %s", pgs_errname(rc));
    enum { N = 16 };
    uint32_t keys[N], ts[N];
    for (int i = 0; i < N; i++) {
        keys[i] = (uint32_t)(rng_next(rng) % (uint64_t)g.keys);
        ts[i] = (uint32_t)(rng_next(rng) % (uint64_t)g.threads);
        sender *s = &g.senders[ts[i]];
        lane *l = lane_of(keys[i], ts[i]);
        wire w = {.seq = s->expect_seq++, .t = ts[i], .kind = K_CALL};
        pgs_ref ref;
        pgs_bytes reply = {0};
        uint32_t got = 0;
        make_ref(&ref, keys[i]);
        rc = pgs_call(rt, &ref, &w, sizeof w, &reply, CALL_TIMEOUT_MS);
        if (rc == PGS_OK && reply.len == sizeof got)
            memcpy(&got, reply.data, sizeof got);
        pgs_bytes_free(&reply);
        if (rc || got != l->base_calls + 1) {
            pgs_close(rt);
            die("resume: kill/k%07u thread %u: call returned %s, reply %u, expected %u",
                keys[i], ts[i], pgs_errname(rc), got, l->base_calls + 1);
        }
        l->base_calls++;
        l->base_last = w.seq;
    }
    pgs_close(rt); /* async: close flushes */
    /* And the resumed servers' writes are in the store. */
    pgs_storage *st = open_store();
    for (int i = 0; i < N; i++) {
        kstate s;
        uint64_t v;
        const lane *l = lane_of(keys[i], ts[i]);
        read_state(st, keys[i], &s, &v);
        if (s.calls[ts[i]] != l->base_calls || s.last_seq[ts[i]] != l->base_last ||
            s.casts[ts[i]] != l->base_casts || s.violations)
            die("resume: kill/k%07u thread %u: stored calls=%u casts=%u last_seq=%" PRIu64
                ", expected %u %u %" PRIu64, keys[i], ts[i], s.calls[ts[i]],
                s.casts[ts[i]], s.last_seq[ts[i]], l->base_calls, l->base_casts,
                l->base_last);
    }
    pgs_storage_close(st);
}

/* ------------------------------------------------------------------------
** Setup and the main loop.
*/
static void usage(void)
{
    fprintf(stderr, "usage: test_kill [--mode sync|async] [--kills N] [--seed S] "
                    "[--store URL] [--engine sqlite|lmdb] [--threads T (1-%d)] [--keys K] "
                    "[--flush MS] "
                    "[--idle MS] [--trace on|off]\n", MAX_THREADS);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    g.kills = 50;
    g.threads = 4;
    g.keys = 300;
    g.flush_ms = 50;
    g.trace = 1;
    g.engine = "sqlite";
    g.seed = mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--kills")) g.kills = atoi(v);
        else if (!strcmp(a, "--seed")) g.seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--store")) g.url = strdup(v);
        else if (!strcmp(a, "--engine") && (!strcmp(v, "sqlite") || !strcmp(v, "lmdb")))
            g.engine = v;
        else if (!strcmp(a, "--threads")) g.threads = atoi(v);
        else if (!strcmp(a, "--keys")) g.keys = atoi(v);
        else if (!strcmp(a, "--flush")) g.flush_ms = (uint32_t)atoi(v);
        else if (!strcmp(a, "--idle")) g.idle_ms = (uint32_t)strtoul(v, NULL, 0);
        else if (!strcmp(a, "--mode") && (!strcmp(v, "sync") || !strcmp(v, "async")))
            g.async = !strcmp(v, "async");
        else if (!strcmp(a, "--trace") && (!strcmp(v, "on") || !strcmp(v, "off")))
            g.trace = !strcmp(v, "on");
        else usage();
    }
    if (g.kills < 1 || g.threads < 1 || g.threads > MAX_THREADS || g.keys < 1 ||
        g.keys > 9999999 || g.flush_ms < 1 || g.flush_ms > 60000)
        usage();
    const char *st = getenv("PGS_KILL_SELFTEST");
    g.selftest = st ? atoi(st) : 0;
    if (g.selftest < 0 || g.selftest > 5 || (g.selftest == 3 && !g.async)) {
        fprintf(stderr, "test_kill: PGS_KILL_SELFTEST is 1 to 5 (3: with --mode async)\n");
        exit(2);
    }
    /* The documented async loss window (see the header comment). */
    g.window_ms = 3 * (int64_t)g.flush_ms + 100;
    if (g.async) {
        kill_behaviour.defaults.write_mode = PGS_WRITE_ASYNC;
        if (g.selftest == 2) /* passivation would write the dirty state */
            kill_behaviour.defaults.idle_timeout_ms = PGS_IDLE_NEVER;
    }
}

static void make_store(void)
{
    if (g.url)
        return;
    snprintf(g.tmpdir, sizeof g.tmpdir, "/tmp/pgs-kill-XXXXXX");
    if (!mkdtemp(g.tmpdir))
        die("mkdtemp: %s", strerror(errno));
    size_t n = strlen(g.tmpdir) + sizeof "sqlite:/kill.db";
    if (!(g.url = malloc(n)))
        die("out of memory");
    if (!strcmp(g.engine, "lmdb")) /* the adapter keeps its files in the dir */
        snprintf(g.url, n, "lmdb:%s", g.tmpdir);
    else
        snprintf(g.url, n, "sqlite:%s/kill.db", g.tmpdir);
}

/* Removes our temp dir (the db, its WAL, shm and lock files). */
static void remove_store(void)
{
    if (!g.tmpdir[0])
        return;
    DIR *d = opendir(g.tmpdir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[sizeof g.tmpdir + 256 + 2];
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", g.tmpdir, e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    rmdir(g.tmpdir);
}

static void print_round(const round_stats *rs, int delay_ms)
{
    char idle[16] = "never";
    if (g.round_idle != PGS_IDLE_NEVER)
        snprintf(idle, sizeof idle, "%u ms", g.round_idle);
    printf("round %3d: idle %s, kill at %3d ms: %6" PRIu64 " calls sent, %6" PRIu64 " acked; %5"
           PRIu64 " casts sent, %5" PRIu64 " applied; in flight %" PRIu64 " calls, %"
           PRIu64 " applied", g.round, idle,
           delay_ms, rs->calls, rs->acked, rs->casts,
           rs->casts_applied, rs->inflight, rs->inflight_applied);
    if (g.async)
        printf("; lost %" PRIu64 " acked (oldest %.1f ms)", rs->lost_acked,
               ms_of(rs->loss_ns));
    if (g.trace)
        printf("; %" PRIu64 " commits (worst %.1f ms), lag max %.1f ms", rs->commits,
               ms_of(rs->commit_worst_ns), rs->traced ? ms_of(rs->lag_max_ns) : 0.0);
    printf("\n");
}

/* The lag below which a fraction q of the traced ACKs became durable. */
static double lag_quantile(double q)
{
    uint64_t n = 0, want = (uint64_t)((double)g.traced * q);
    for (int b = 0; b < LAG_BUCKETS; b++)
        if ((n += g.lag_hist[b]) > want || (n && n == g.traced))
            return b + 1;
    return 0;
}

static void add_round(round_stats *total, const round_stats *rs)
{
    total->calls += rs->calls, total->acked += rs->acked, total->casts += rs->casts;
    total->casts_applied += rs->casts_applied, total->inflight += rs->inflight;
    total->inflight_applied += rs->inflight_applied;
    total->commit_errors += rs->commit_errors, total->commit_writes += rs->commit_writes;
    g.commits += rs->commits;
    g.traced += rs->traced;
    g.lost_acked += rs->lost_acked;
    if (rs->commit_worst_ns > g.commit_worst_ns) {
        g.commit_worst_ns = rs->commit_worst_ns;
        g.commit_worst_round = g.round;
    }
    g.slow_rounds += rs->bound_ns > g.window_ms * 1000000;
    if (rs->bound_ns > g.bound_max_ns)
        g.bound_max_ns = rs->bound_ns;
    if (rs->loss_ns > g.loss_max_ns) {
        g.loss_max_ns = rs->loss_ns;
        g.loss_max_round = g.round;
    }
    if (rs->lag_max_ns > g.lag_max_ns) {
        g.lag_max_ns = rs->lag_max_ns;
        g.lag_max_round = g.round;
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    printf("test_kill: seed %" PRIu64 "\n", g.seed);
    make_store();
    printf("test_kill: %s mode", g.async ? "async" : "sync");
    if (g.async)
        printf(" (flush interval %u ms, loss window %" PRId64 " ms)", g.flush_ms,
               g.window_ms);
    printf(", %d kills, %d threads, %d keys, trace %s, store %s%s\n", g.kills, g.threads,
           g.keys, g.trace ? "on" : "off", g.url,
           g.selftest ? " (SELF-TEST: a failure must be reported)" : "");
    atexit(reap_child); /* whatever path exits, no child outlives us */
    g.cs = mmap(NULL, sizeof *g.cs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g.cs == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    g.lanes = calloc((size_t)g.keys * (size_t)g.threads, sizeof *g.lanes);
    g.base_version = calloc((size_t)g.keys, sizeof *g.base_version);
    if (!g.lanes || !g.base_version)
        die("out of memory");
    adopt_store();
    uint64_t rng = g.seed, t0 = (uint64_t)now_ms();
    g.lag_max_ns = INT64_MIN;
    round_stats total = {0};
    for (g.round = 1; g.round <= g.kills; g.round++) {
        round_stats rs = {.lag_max_ns = INT64_MIN};
        int delay_ms = g.async ? 10 + (int)(rng_next(&rng) % (uint64_t)(3 * g.window_ms))
                               : 10 + (int)(rng_next(&rng) % 141);
        g.round_idle = g.idle_ms ? g.idle_ms : rng_next(&rng) % 2 ? 3 : PGS_IDLE_NEVER;
        run_child(delay_ms, &rs);
        verify_round(&rs);
        next_round();
        print_round(&rs, delay_ms);
        add_round(&total, &rs);
    }
    g.round = 0;
    resume_check(&rng);
    if (!total.acked)
        die("no call was ever acknowledged: the child made no progress");
    if (g.trace && !g.traced)
        die("the trace saw no ACKed call become durable");
    double secs = (double)((uint64_t)now_ms() - t0) / 1000.0;
    printf("test_kill: ok: %d kills in %.1f s, %" PRIu64 " calls acked, %" PRIu64
           " casts sent (%" PRIu64 " applied), %" PRIu64 " calls in flight at a kill (%"
           PRIu64 " applied), %s; resume ok\n",
           g.kills, secs, total.acked, total.casts, total.casts_applied, total.inflight,
           total.inflight_applied,
           g.async ? "nothing lost beyond the window, nothing duplicated or reordered"
                   : "nothing lost or duplicated");
    if (g.trace) {
        printf("test_kill: trace: %" PRIu64 " commits (%.1f writes each, %" PRIu64
               " failed), worst %.1f ms (round %d); %" PRIu64 " ACKed calls seen durable",
               g.commits, g.commits ? (double)total.commit_writes / (double)g.commits : 0.0,
               total.commit_errors, ms_of(g.commit_worst_ns), g.commit_worst_round,
               g.traced);
        if (g.async)
            printf(", ACK to durable (flush lag): p50 <%.0f ms, p99 <%.0f ms, max %.1f ms "
                   "(round %d)\n", lag_quantile(0.5), lag_quantile(0.99), ms_of(g.lag_max_ns),
                   g.lag_max_round);
        else
            printf(", every one durable before its ACK (closest %.3f ms before)\n",
                   ms_of(-g.lag_max_ns));
    }
    if (g.async) {
        printf("async loss window: observed max %.0f ms, bound %" PRId64 " ms (round %d; %"
               PRIu64 " ACKed calls lost in %d kills, none beyond the bound; flush %u ms)\n",
               ms_of(g.loss_max_ns), g.window_ms, g.loss_max_round, g.lost_acked, g.kills,
               g.flush_ms);
        if (g.slow_rounds)
            printf("async loss window: %d rounds had a commit slower than the flush "
                   "interval (worst %.1f ms): their bound, flush + 2 x commit + 100 ms, "
                   "reached %.0f ms\n", g.slow_rounds, ms_of(g.commit_worst_ns),
                   ms_of(g.bound_max_ns));
    }
    remove_store();
    for (size_t i = 0; i < (size_t)g.keys * (size_t)g.threads; i++)
        free(g.lanes[i].v);
    free(g.lanes);
    free(g.base_version);
    free(g.url);
    return 0;
}
