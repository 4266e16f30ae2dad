/*
** test_kill.c — durability under a real kill -9.
**
** What it proves: in the default write mode (sync), a process that dies
** outright loses nothing it acknowledged, applies nothing twice, and keeps
** each sender's order — while servers passivate and reactivate all the
** time (idle timeout 3 ms).  Not argued: the process is SIGKILLed at a
** random moment, over and over, on one store that persists across rounds.
**
** How:
**   - Each round the harness forks a child that opens a runtime on the
**     store and runs T client threads sending calls (~70%) and casts to K
**     virtual servers "kill/kNNNNNNN" as fast as they can.  Thread t numbers
**     its messages seq = 1, 2, ... (continuing across rounds).  Before each
**     send it writes an INTENT record to a pipe; after pgs_call returns
**     PGS_OK it writes an ACK with the reply.  Records are fixed-size, one
**     write(2) of at most PIPE_BUF bytes each, so they never tear.
**   - The parent drains the pipe, SIGKILLs the child 10-150 ms after it
**     reported ready, reaps it and drains the pipe to EOF: what it read is
**     exactly what the child did before dying.
**   - It then opens the store with pgs_storage_open and reads every server.
**     Each server's flat state holds, per sender t: calls[t], casts[t] and
**     last_seq[t] (the last of t's messages applied), plus a counter of
**     seqs that did not rise.  Because the stored state is a snapshot after
**     some turn, and t's messages to a key are handled in t's order, the
**     stored last_seq[t] pins the exact prefix of t's messages to that key
**     that survived, and so the exact calls[t] and casts[t].  The checks:
**       * last_seq[t] is a seq t sent to that key (this round) or the value
**         stored at the end of the last round — nothing invented;
**       * last_seq[t] >= the seq of every ACKed call from t to that key —
**         no acknowledged update lost (sync mode's output gate);
**       * calls[t] and casts[t] equal the model's counts up to last_seq[t]:
**         no message lost from the middle, none applied twice, and every
**         cast sent before an ACKed call is stored with it.  Only the one
**         un-ACKed call in flight per thread, and casts sent after the
**         thread's last ACKed call to that key, may or may not be there;
**       * each ACKed reply equals the sender's call count at that point;
**       * the violations counter is 0.
**     The model then adopts the stored truth and the next round starts.
**   - At the end a runtime is opened on the store in this process: a few
**     servers are called and must resume from their stored counts.
**
** Self-test (proves the harness can fail), off by default:
**   PGS_KILL_SELFTEST=1  the child ACKs each call before pgs_call runs
**                        (claims what is not yet durable): expect a loss;
**   PGS_KILL_SELFTEST=2  calls return PGS_NOPERSIST (reply without a
**                        write): expect a loss once a kill lands in the gap.
**
** Usage: test_kill [--kills N] [--seed S] [--store URL] [--threads T]
**                  [--keys K]
** The seed drives key choice, message kinds and kill delays; thread
** interleavings (and so how far each round gets) differ between runs.
** Default store: a fresh temp dir, sqlite:DIR/kill.db, removed on success.
** The store must outlive a process (not "memory:").  An existing store is
** adopted: its "kill" records become the starting model.
*/
#include "pgs.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16
#define KEY_LEN 8
#define CALL_TIMEOUT_MS 60000 /* far beyond any round: a timeout is a hang */
#define READY_TIMEOUT_MS 30000

enum kind { K_CALL = 1, K_CAST = 2 };
enum rtype { R_READY = 1, R_INTENT, R_ACK, R_FAIL };
/* Child exit statuses other than death by SIGKILL. */
enum { X_OPEN = 10, X_PIPE, X_CALL, X_THREAD };

/* One pipe record; written with one write(2), so atomic. */
typedef struct rec {
    uint8_t type;  /* enum rtype */
    uint8_t t;     /* sender thread */
    uint8_t kind;  /* enum kind */
    uint8_t pad;
    int32_t rc;    /* R_FAIL: the pgs status */
    uint32_t key;  /* key index */
    uint32_t value; /* R_ACK: calls[t] from the reply */
    uint64_t seq;
} rec;
_Static_assert(sizeof(rec) <= PIPE_BUF, "records must be written atomically");

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
    uint32_t cum_calls, cum_casts;
    uint8_t kind;
} intent;

/* The model of one (key, thread): the stored truth after the last round
** (base_*) and this round's messages. */
typedef struct lane {
    uint64_t base_last;
    uint32_t base_calls, base_casts;
    intent *v;
    size_t n, cap;
    uint64_t acked_seq; /* seq of the last ACKed call this round, 0: none */
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
} round_stats;

/* The whole test; a single instance, inherited by each child at fork. */
static struct {
    int kills, threads, keys, selftest;
    uint64_t seed;
    char *url;
    char tmpdir[64];   /* non-empty: ours, removed on success */
    lane *lanes;       /* keys * threads, lane(k, t) */
    uint64_t *base_version; /* per key: record version after the last round */
    sender senders[MAX_THREADS];
    int round;
    pid_t child;       /* > 0 while a child may be alive */
    int wfd;           /* child: the pipe's write end */
    pgs_runtime *rt;   /* child: its runtime */
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    fprintf(stderr, "test_kill: FAILED (seed %" PRIu64 ", round %d): ", g.seed, g.round);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntest_kill: store kept: %s  (replay: test_kill --seed %" PRIu64
                    " --kills %d --threads %d --keys %d)\n",
            g.url, g.seed, g.kills, g.threads, g.keys);
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
    return apply(state, msg, len, K_CAST) == PGS_OK ? PGS_PERSIST : PGS_CRASH;
}

static const pgs_behaviour kill_behaviour = {
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
static void put_rec(const rec *r)
{
    /* At most PIPE_BUF bytes on a blocking pipe: all or nothing. */
    if (write(g.wfd, r, sizeof *r) != (ssize_t)sizeof *r)
        _exit(X_PIPE);
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
    if (g.selftest == 1)
        put_rec(&ack); /* a lie: nothing is durable yet */
    pgs_bytes reply = {0};
    int rc = pgs_call(g.rt, &ref, &w, sizeof w, &reply, CALL_TIMEOUT_MS);
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

/* Never returns: the child ends by SIGKILL, or _exit on a failure. */
__attribute__((noreturn)) static void child_main(pid_t parent)
{
    /* If the harness dies, so does its child (no strays). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(X_PIPE);
    pgs_options opts;
    pgs_options_init(&opts);
    opts.idle_timeout_ms = 3; /* passivate all the time */
    int rc = pgs_open(&g.rt, g.url, &opts);
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
    uint32_t want = l->base_calls + l->v[l->n - 1].cum_calls;
    if (r->value != want)
        die("kill/k%07u: call seq %" PRIu64 " from thread %u replied calls=%u, expected %u",
            r->key, r->seq, r->t, r->value, want);
    s->last_acked = 1;
    l->acked_seq = r->seq;
    rs->acked++;
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
** every record it wrote handled. */
static void run_child(int delay_ms, round_stats *rs)
{
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    fflush(stdout); /* the child must not inherit unflushed output */
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
    ** wrote one, has already been reported). */
    kill(pid, SIGKILL);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        die("waitpid: %s", strerror(errno));
    g.child = 0;
    while (pump(&rd, -1, rs, &ready))
        ;
    close(fds[0]);
    check_death(status);
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

/* The lane's message with this seq (seqs rise within a lane). */
static const intent *find_seq(const lane *l, uint64_t seq)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo].seq == seq ? &l->v[lo] : NULL;
}

/* Checks one (key, thread) and returns how many of its casts this round
** were applied. */
static uint32_t verify_lane(uint32_t key, uint32_t t, const kstate *s)
{
    const lane *l = lane_of(key, t);
    uint64_t last = s->last_seq[t];
    intent none = {0};
    const intent *upto = &none; /* nothing from this round survived */
    if (last != l->base_last && !(upto = find_seq(l, last)))
        die("kill/k%07u thread %u: stored last_seq %" PRIu64 " is neither the previous %"
            PRIu64 " nor a seq it sent this round (%zu sent, last %" PRIu64 ")",
            key, t, last, l->base_last, l->n, l->n ? l->v[l->n - 1].seq : 0);
    if (l->acked_seq > last)
        die("kill/k%07u thread %u: ACKNOWLEDGED call seq %" PRIu64 " LOST: stored "
            "last_seq %" PRIu64 ", calls %u (acked calls imply >= %u)",
            key, t, l->acked_seq, last, s->calls[t],
            l->base_calls + find_seq(l, l->acked_seq)->cum_calls);
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

/* Checks every server, then makes the stored truth the next base. */
static void verify_round(round_stats *rs)
{
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
            rs->casts_applied += verify_lane(key, t, &s);
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
            l->base_last = s.last_seq[t];
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
    pgs_close(rt);
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
    fprintf(stderr, "usage: test_kill [--kills N] [--seed S] [--store URL] "
                    "[--threads T (1-%d)] [--keys K]\n", MAX_THREADS);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    g.kills = 50;
    g.threads = 4;
    g.keys = 300;
    g.seed = mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--kills")) g.kills = atoi(v);
        else if (!strcmp(a, "--seed")) g.seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--store")) g.url = strdup(v);
        else if (!strcmp(a, "--threads")) g.threads = atoi(v);
        else if (!strcmp(a, "--keys")) g.keys = atoi(v);
        else usage();
    }
    if (g.kills < 1 || g.threads < 1 || g.threads > MAX_THREADS || g.keys < 1 ||
        g.keys > 9999999)
        usage();
    const char *st = getenv("PGS_KILL_SELFTEST");
    g.selftest = st ? atoi(st) : 0;
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
    printf("round %3d: kill at %3d ms: %5" PRIu64 " calls sent, %5" PRIu64 " acked; %4"
           PRIu64 " casts sent, %4" PRIu64 " applied; in flight %" PRIu64 " calls, %"
           PRIu64 " applied\n", g.round, delay_ms, rs->calls, rs->acked, rs->casts,
           rs->casts_applied, rs->inflight, rs->inflight_applied);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    printf("test_kill: seed %" PRIu64 "\n", g.seed);
    make_store();
    printf("test_kill: %d kills, %d threads, %d keys, store %s%s\n", g.kills, g.threads,
           g.keys, g.url, g.selftest ? " (SELF-TEST: a loss must be reported)" : "");
    atexit(reap_child); /* whatever path exits, no child outlives us */
    g.lanes = calloc((size_t)g.keys * (size_t)g.threads, sizeof *g.lanes);
    g.base_version = calloc((size_t)g.keys, sizeof *g.base_version);
    if (!g.lanes || !g.base_version)
        die("out of memory");
    adopt_store();
    uint64_t rng = g.seed, t0 = (uint64_t)now_ms();
    round_stats total = {0};
    for (g.round = 1; g.round <= g.kills; g.round++) {
        round_stats rs = {0};
        int delay_ms = 10 + (int)(rng_next(&rng) % 141);
        run_child(delay_ms, &rs);
        verify_round(&rs);
        next_round();
        print_round(&rs, delay_ms);
        total.calls += rs.calls, total.acked += rs.acked, total.casts += rs.casts;
        total.casts_applied += rs.casts_applied, total.inflight += rs.inflight;
        total.inflight_applied += rs.inflight_applied;
    }
    g.round = 0;
    resume_check(&rng);
    if (!total.acked)
        die("no call was ever acknowledged: the child made no progress");
    printf("test_kill: ok: %d kills in %.1f s, %" PRIu64 " calls acked, %" PRIu64
           " casts sent (%" PRIu64 " applied), %" PRIu64 " calls in flight at a kill (%"
           PRIu64 " applied), nothing lost or duplicated; resume ok\n",
           g.kills, (double)((uint64_t)now_ms() - t0) / 1000.0, total.acked, total.casts,
           total.casts_applied, total.inflight, total.inflight_applied);
    remove_store();
    for (size_t i = 0; i < (size_t)g.keys * (size_t)g.threads; i++)
        free(g.lanes[i].v);
    free(g.lanes);
    free(g.base_version);
    free(g.url);
    return 0;
}
