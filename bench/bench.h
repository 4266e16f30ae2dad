/*
** bench.h — the few helpers every benchmark program shares: a monotonic
** clock, a sleep, failure reports and cheap per-thread randomness.  Each
** program defines BENCH_NAME (its name in messages) before including it.
** The programs that measure durable calls on a storage engine also define
** BENCH_STORE, for the machinery they share (the second half).
*/
#ifndef PGS_BENCH_H
#define PGS_BENCH_H

#include "pgs.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Prints a pgs failure; returns -1 so callers can `return fail(...)`. */
static inline int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", BENCH_NAME, what, pgs_errname(rc), pgs_strerror(rc));
    return -1;
}

/* xorshift64*: cheap per-thread randomness, no shared state. */
static inline uint64_t rand_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* A reply holding one uint64_t, or 0. */
static inline uint64_t read_u64(const void *p, size_t len)
{
    uint64_t v = 0;
    if (len == sizeof v)
        memcpy(&v, p, sizeof v);
    return v;
}

#ifdef BENCH_COUNTER
/* The counter behaviour of calls and peer: a flat 8-byte state.  A call or
** cast adds the message's value; a call replies with the new total.  A
** call with no value is a read: nothing to store. */
typedef struct counter {
    uint64_t n;
} counter;

static int counter_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    (void)ctx, (void)state, (void)args, (void)len;
    return PGS_PERSIST; /* the count starts at 0 */
}

static int counter_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    counter *c = state;
    uint64_t v = read_u64(msg, len);
    c->n += v;
    if (pgs_reply(ctx, &c->n, sizeof c->n) != PGS_OK)
        return PGS_CRASH; /* the caller sees the failure; nothing persists */
    return v ? PGS_PERSIST : PGS_UNCHANGED;
}

static int counter_cast(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    (void)ctx;
    counter *c = state;
    c->n += read_u64(msg, len);
    return PGS_PERSIST;
}

static const pgs_behaviour counter_behaviour = {
    .version = PGS_BEHAVIOUR_VERSION,
    .name = "counter",
    .state_size = sizeof(counter),
    .init = counter_init,
    .handle_call = counter_call,
    .handle_cast = counter_cast,
};
#endif /* BENCH_COUNTER */

#ifdef BENCH_STORE
/* ========================================================================
** Store benchmarks (durable.c, engines.c), shared: --servers counter
** servers on a real engine, called by 1, 8, 64 and 256 threads in write
** mode sync, beside a raw reference doing that engine's own durable work at
** the batch size pgs achieved, in alternating slices; then cold
** reactivation of stored, never-touched servers beside raw point reads of
** the same engine.  Each program's header comment says what every figure
** is and why its reference is fair; here is the machinery they share, and
** the raw SQLite reference both use.  A program defines BENCH_STORE before
** including this file (calls.c needs none of it).
*/
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define NCALLER_SETS 4
#define FILL_BATCH 4096            /* puts per storage transaction when filling */
#define SCALE_B 100                /* the raw reference's "large batch" */
#define IDLE_MS 3600000u           /* nothing passivates during a run */
#define CALL_TIMEOUT_MS 120000u    /* 256 callers behind one fsync each can wait long */
#define MAX_RAW_POINTS (NCALLER_SETS + 2)
#define SLICES 6                   /* pgs and raw alternate this often per phase */

static const int caller_sets[NCALLER_SETS] = {1, 8, 64, 256};

typedef struct store_config {
    size_t servers;       /* servers of the durable phases */
    size_t stored;        /* extra stored servers of the reactivation phase */
    size_t reactivations; /* how many of them to wake */
    double seconds;       /* per concurrency, for pgs and for the raw reference each */
    const char *dir;      /* parent of the temporary directory */
    int quick;
} store_config;

/* One concurrency's pgs phase and its raw reference, summed over slices. */
typedef struct durable_result {
    int callers;
    uint64_t calls, writes, commits; /* calls acknowledged; runtime counters */
    double secs;
    long raw_b;        /* rows per transaction of the raw reference */
    uint64_t raw_rows;
    double raw_secs;
    double rate, batch, raw_rate; /* calls/s, writes/commits, rows/s */
} durable_result;

typedef struct raw_point {
    long b;
    uint64_t rows; /* over every measurement at this batch */
    double secs;
} raw_point;

typedef struct cold_result {
    size_t stored, m;
    double fill_s, open_s, close_s;
    double rate, raw_rate;       /* reactivations/s, raw point reads/s */
    uint64_t activations, writes; /* runtime counters during the timed loop */
} cold_result;

typedef struct results {
    durable_result d[NCALLER_SETS];
    raw_point raw[MAX_RAW_POINTS];
    int nraw;
    uint64_t sent; /* increments acknowledged over all durable phases */
    cold_result cold;
} results;

/* Server i's key: its index, 8 bytes big-endian, so filling in index order
** appends to the B-tree instead of splitting pages all over it. */
static void key_of(uint64_t i, unsigned char key[8])
{
    for (int b = 0; b < 8; b++)
        key[b] = (unsigned char)(i >> (56 - 8 * b));
}

static uint64_t index_of(const unsigned char key[8])
{
    uint64_t i = 0;
    for (int b = 0; b < 8; b++)
        i = i << 8 | key[b];
    return i;
}

static void ref_of(uint64_t i, pgs_ref *ref)
{
    unsigned char key[8];
    key_of(i, key);
    pgs_ref_make(ref, "counter", key, sizeof key); /* cannot fail: valid name, 8 bytes */
}

/* The counter every stored server starts with: not 0, and different
** between neighbours, so a reply from the wrong record shows. */
static uint64_t start_value(uint64_t i)
{
    return i % 1009 * 7 + 1;
}

/* a / b, or 0 when there is no b. */
static double per(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static long round_batch(double b)
{
    long r = (long)(b + 0.5);
    return r < 1 ? 1 : r;
}

/* ------------------------------------------------------------------------
** The counter behaviour: a flat 16-byte state.  A call with a value adds
** it and bumps turns (both stored bytes change every time: SQLite skips
** writing a row whose bytes did not change, which would measure nothing);
** a call with no value is a read and returns PGS_UNCHANGED.  Either
** replies with n.
*/
typedef struct counter {
    uint64_t n, turns;
} counter;

static int counter_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    (void)ctx, (void)state, (void)args, (void)len;
    return PGS_PERSIST;
}

static int counter_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    counter *c = state;
    uint64_t v = 0;
    if (len == sizeof v)
        memcpy(&v, msg, sizeof v);
    c->n += v;
    c->turns += v != 0;
    if (pgs_reply(ctx, &c->n, sizeof c->n) != PGS_OK)
        return PGS_CRASH;
    return v ? PGS_PERSIST : PGS_UNCHANGED;
}

static const pgs_behaviour counter_behaviour = {
    .version = PGS_BEHAVIOUR_VERSION,
    .name = "counter",
    .state_size = sizeof(counter),
    .init = counter_init,
    .handle_call = counter_call,
};

/* Calls `ref` with value v; *n receives the counter's total. */
static int call_counter(pgs_runtime *rt, const pgs_ref *ref, uint64_t v, uint64_t *n)
{
    pgs_bytes r = {0};
    int rc = pgs_call(rt, ref, &v, sizeof v, &r, -1);
    if (rc == PGS_OK && r.len != sizeof *n)
        rc = PGS_ECALLBACK; /* not a counter's reply */
    if (rc == PGS_OK)
        memcpy(n, r.data, sizeof *n);
    pgs_bytes_free(&r);
    return rc;
}

/* Opens a runtime on url with the counter registered; *rt is NULL on
** failure. */
static int runtime_open(const char *url, pgs_runtime **rt)
{
    pgs_options o;
    pgs_options_init(&o);
    o.idle_timeout_ms = IDLE_MS;
    o.default_call_timeout_ms = CALL_TIMEOUT_MS;
    int rc = pgs_open(rt, url, &o);
    if (rc)
        return fail("pgs_open", rc);
    if ((rc = pgs_register(*rt, &counter_behaviour))) {
        pgs_close(*rt);
        *rt = NULL;
        return fail("pgs_register", rc);
    }
    return 0;
}

/* ------------------------------------------------------------------------
** The stored records.
*/

/* What a stored record of the counter behaviour carries besides its state,
** learnt from one the runtime wrote itself. */
typedef struct tmpl {
    unsigned char options[64];
    size_t options_len;
    uint32_t schema;
} tmpl;

/* Starts one throwaway server through the runtime, copies what its record
** carries besides the state, and deletes it again. */
static int learn_template(const char *url, tmpl *t)
{
    pgs_runtime *rt;
    pgs_ref ref;
    if (runtime_open(url, &rt))
        return -1;
    int rc = pgs_start(rt, "counter", "template", 8, NULL, 0, NULL, &ref);
    pgs_close(rt);
    if (rc)
        return fail("pgs_start(template)", rc);
    pgs_storage *st;
    pgs_record *rec = NULL;
    if ((rc = pgs_storage_open(&st, url, NULL)))
        return fail("pgs_storage_open", rc);
    if (!(rc = pgs_storage_get(st, &ref, &rec))) {
        if (rec->options_len > sizeof t->options || rec->args_len ||
            rec->state_len != sizeof(counter)) {
            fprintf(stderr, "%s: unexpected template record (options %zu, args %zu, "
                    "state %zu bytes)\n", BENCH_NAME, rec->options_len, rec->args_len,
                    rec->state_len);
            rc = PGS_ECORRUPT;
        } else {
            memcpy(t->options, rec->options, rec->options_len);
            t->options_len = rec->options_len;
            t->schema = rec->schema_version;
        }
        free(rec);
        if (!rc)
            rc = pgs_storage_del(st, &ref);
    }
    pgs_storage_close(st);
    return rc ? fail("template record", rc) : 0;
}

/* The record of server i as first stored: version 1, start_value(i), no
** checksum yet (pgs_storage_batch fills it in). */
static void record_of(uint64_t i, const tmpl *t, counter *state, pgs_record *rec)
{
    *state = (counter){.n = start_value(i)};
    memset(rec, 0, sizeof *rec);
    ref_of(i, &rec->ref);
    rec->version = 1;
    rec->schema_version = t->schema;
    rec->options = t->options;
    rec->options_len = t->options_len;
    rec->state = state;
    rec->state_len = sizeof *state;
}

/* What a raw reference stores as row i's checksum at `version`: pgs stores
** an XXH3 of the record, the raw side a value as cheap as it changes often. */
static uint64_t raw_checksum(uint64_t i, uint64_t version)
{
    return version * 0x9E3779B97F4A7C15ULL ^ i;
}

typedef struct fill_buf {
    pgs_record rec[FILL_BATCH];
    pgs_write w[FILL_BATCH];
    counter state[FILL_BATCH];
} fill_buf;

/* Stores servers [first, first + n) straight through the storage layer,
** FILL_BATCH per transaction.  *secs receives the time taken. */
static int fill_store(const char *url, const tmpl *t, uint64_t first, uint64_t n,
                      double *secs)
{
    pgs_storage *st;
    fill_buf *fb = malloc(sizeof *fb);
    if (!fb)
        return fail("fill buffer", PGS_ENOMEM);
    double t0 = now_s();
    int rc = pgs_storage_open(&st, url, NULL);
    if (rc) {
        free(fb);
        return fail("pgs_storage_open", rc);
    }
    for (uint64_t done = 0; !rc && done < n;) {
        size_t k = n - done < FILL_BATCH ? (size_t)(n - done) : FILL_BATCH;
        for (size_t j = 0; j < k; j++) {
            record_of(first + done + j, t, &fb->state[j], &fb->rec[j]);
            fb->w[j] = (pgs_write){.op = PGS_OP_PUT, .record = &fb->rec[j]};
        }
        rc = pgs_storage_batch(st, fb->w, k);
        done += k;
    }
    pgs_storage_close(st);
    *secs = now_s() - t0;
    free(fb);
    return rc ? fail("pgs_storage_batch (fill)", rc) : 0;
}

/* ------------------------------------------------------------------------
** The raw reference's writes: an engine supplies txn, which writes the
** given rows in one transaction; raw_run decides which rows, and times it.
*/
typedef struct raw_writer raw_writer;
struct raw_writer {
    void *self; /* the engine's connection */
    /* Writes rows idx[0 .. b) in one transaction (b == 1: as the adapter
    ** writes a lone record), each one's next turn from raw_turn.  Returns
    ** 0, or -1 once it has said what failed. */
    int (*txn)(raw_writer *w, const size_t *idx, size_t b);
    size_t rows;       /* rows 0 .. rows-1: the servers' keys and records */
    size_t round;      /* transactions so far */
    counter *state;    /* each row's current state */
    uint64_t *version; /* each row's stored version */
};

/* The rows start as the pgs store's servers do: start_value, version 1. */
static int raw_writer_init(raw_writer *w, size_t rows, void *self,
                           int (*txn)(raw_writer *, const size_t *, size_t))
{
    *w = (raw_writer){.self = self, .txn = txn, .rows = rows,
                      .state = calloc(rows, sizeof(counter)),
                      .version = calloc(rows, sizeof(uint64_t))};
    if (!w->state || !w->version)
        return fail("raw rows", PGS_ENOMEM);
    for (size_t i = 0; i < rows; i++) {
        w->state[i] = (counter){.n = start_value(i)};
        w->version[i] = 1;
    }
    return 0;
}

static void raw_writer_free(raw_writer *w)
{
    free(w->state);
    free(w->version);
}

/* Row i's next write: its state changes as a pgs call's does, and its
** version advances; *expected receives the version stored now. */
static const counter *raw_turn(raw_writer *w, size_t i, uint64_t *expected)
{
    counter *c = &w->state[i];
    c->n++;
    c->turns++;
    *expected = w->version[i]++;
    return c;
}

/* Writes for `seconds` at b rows per transaction; *rows and *secs receive
** the rows written and the time taken. */
static int raw_run(raw_writer *w, long b, double seconds, uint64_t *rows, double *secs)
{
    size_t *idx = malloc((size_t)b * sizeof *idx);
    if (!idx)
        return fail("raw batch", PGS_ENOMEM);
    uint64_t n = 0;
    int rc = 0;
    double t0 = now_s(), t1 = t0;
    do {
        /* The rows B callers write at once: each goes through the rows in
        ** turn from its own offset, as the pgs clients do, so a
        ** transaction touches B places in the table, not one run of rows
        ** that would share a page or two. */
        for (long j = 0; j < b; j++)
            idx[j] = ((size_t)j * w->rows / (size_t)b + w->round) % w->rows;
        w->round++;
        rc = w->txn(w, idx, (size_t)b);
        n += (uint64_t)b;
    } while (!rc && (t1 = now_s()) < t0 + seconds);
    free(idx);
    *rows = n;
    *secs = t1 - t0;
    return rc;
}

/* The accumulated measurement at batch b (added if new). */
static raw_point *raw_point_at(results *res, long b)
{
    for (int i = 0; i < res->nraw; i++)
        if (res->raw[i].b == b)
            return &res->raw[i];
    res->raw[res->nraw] = (raw_point){.b = b};
    return &res->raw[res->nraw++];
}

static double raw_point_rate(const raw_point *p)
{
    return per((double)p->rows, p->secs);
}

/* Measures b rows per transaction; adds the rows and seconds to the
** pooled table and to *d (may be NULL). */
static int raw_measure(raw_writer *w, long b, double seconds, results *res, durable_result *d)
{
    uint64_t rows = 0;
    double secs = 0;
    if (raw_run(w, b, seconds, &rows, &secs))
        return -1;
    raw_point *p = raw_point_at(res, b);
    p->rows += rows;
    p->secs += secs;
    if (d) {
        d->raw_rows += rows;
        d->raw_secs += secs;
    }
    return 0;
}

static int raw_point_cmp(const void *a, const void *b)
{
    long x = ((const raw_point *)a)->b, y = ((const raw_point *)b)->b;
    return x < y ? -1 : x > y;
}

/* The scale points (B = 1 and SCALE_B), unless the pairs already
** measured them. */
static int raw_scale(raw_writer *w, double seconds, results *res)
{
    static const long scale[] = {1, SCALE_B};
    for (size_t i = 0; i < sizeof scale / sizeof scale[0]; i++) {
        int seen = 0;
        for (int j = 0; j < res->nraw; j++)
            seen |= res->raw[j].b == scale[i];
        if (!seen && raw_measure(w, scale[i], seconds, res, NULL))
            return -1;
    }
    qsort(res->raw, (size_t)res->nraw, sizeof res->raw[0], raw_point_cmp);
    return 0;
}

/* ------------------------------------------------------------------------
** Durable calls.
*/
typedef struct phase {
    pgs_runtime *rt;
    const pgs_ref *refs;
    size_t nrefs;
    double end; /* deadline, set when the gate opens */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int open;
    _Atomic int rc; /* first failure */
} phase;

typedef struct caller {
    pthread_t th;
    phase *p;
    size_t next;
    uint64_t done; /* increments acknowledged */
} caller;

static void set_rc(phase *p, int rc)
{
    int none = 0;
    atomic_compare_exchange_strong(&p->rc, &none, rc);
}

static void gate_wait(phase *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->open)
        pthread_cond_wait(&p->cv, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

static void gate_open(phase *p, double seconds)
{
    pthread_mutex_lock(&p->lock);
    p->end = now_s() + seconds;
    p->open = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
}

static void *caller_main(void *arg)
{
    caller *c = arg;
    phase *p = c->p;
    gate_wait(p);
    while (!atomic_load_explicit(&p->rc, memory_order_relaxed) && now_s() < p->end) {
        uint64_t n = 0;
        int rc = call_counter(p->rt, &p->refs[c->next++ % p->nrefs], 1, &n);
        if (rc) {
            set_rc(p, rc);
            break;
        }
        c->done++;
    }
    return NULL;
}

/* Runs d->callers callers for `seconds` and adds to *d what the clock and
** the runtime's counters saw. */
static int run_callers(phase *p, double seconds, durable_result *d)
{
    int nc = d->callers;
    caller *cl = calloc((size_t)nc, sizeof *cl);
    if (!cl)
        return fail("callers", PGS_ENOMEM);
    pgs_stats s0, s1;
    pgs_stats_get(p->rt, &s0);
    p->open = 0;
    int started = 0;
    for (; started < nc; started++) {
        cl[started] = (caller){.p = p, .next = p->nrefs * (size_t)started / (size_t)nc};
        if (pthread_create(&cl[started].th, NULL, caller_main, &cl[started]) != 0) {
            set_rc(p, PGS_ENOMEM); /* the started ones see it and leave */
            break;
        }
    }
    double t0 = now_s();
    gate_open(p, seconds);
    uint64_t calls = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(cl[i].th, NULL);
        calls += cl[i].done;
    }
    double t1 = now_s();
    pgs_stats_get(p->rt, &s1);
    free(cl);
    d->calls += calls;
    d->secs += t1 - t0;
    d->writes += s1.writes - s0.writes;
    d->commits += s1.commits - s0.commits;
    int rc = atomic_load(&p->rc);
    return rc ? fail(started < nc ? "pthread_create" : "pgs_call", rc) : 0;
}

/* One read-only call per server: loads each one before timing starts, and
** checks that it is the record the fill stored. */
static int warm_up(pgs_runtime *rt, const pgs_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        int rc = call_counter(rt, &refs[i], 0, &v);
        if (rc)
            return fail("pgs_call (warm-up)", rc);
        if (v != start_value(i)) {
            fprintf(stderr, "%s: server %zu holds %" PRIu64 ", stored %" PRIu64 "\n",
                    BENCH_NAME, i, v, start_value(i));
            return -1;
        }
    }
    return 0;
}

/* The live counters must have grown by exactly the increments sent. */
static int verify_live(pgs_runtime *rt, const pgs_ref *refs, size_t n, uint64_t sent)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        int rc = call_counter(rt, &refs[i], 0, &v);
        if (rc)
            return fail("pgs_call (verify)", rc);
        sum += v - start_value(i);
    }
    if (sum != sent) {
        fprintf(stderr, "%s: ERROR: live counters grew by %" PRIu64 ", but %" PRIu64
                " increments were acknowledged\n", BENCH_NAME, sum, sent);
        return -1;
    }
    return 0;
}

typedef struct tally {
    size_t servers;
    uint64_t seen, grown, turns;
} tally;

static int tally_one(void *arg, const pgs_record *rec)
{
    tally *t = arg;
    counter c;
    if (rec->ref.key_len != 8 || rec->state_len != sizeof c)
        return 0;
    uint64_t i = index_of(rec->ref.key);
    if (i >= t->servers)
        return 0;
    memcpy(&c, rec->state, sizeof c);
    t->seen++;
    t->grown += c.n - start_value(i);
    t->turns += c.turns;
    return 0;
}

/* After pgs_close: the store itself must hold every acknowledged increment. */
static int verify_stored(const char *url, size_t n, uint64_t sent)
{
    pgs_storage *st;
    tally t = {.servers = n};
    int rc = pgs_storage_open(&st, url, NULL);
    if (rc)
        return fail("pgs_storage_open (verify)", rc);
    rc = pgs_storage_scan(st, "counter", tally_one, &t);
    pgs_storage_close(st);
    if (rc)
        return fail("pgs_storage_scan (verify)", rc);
    if (t.seen != n || t.grown != sent || t.turns != sent) {
        fprintf(stderr, "%s: ERROR: the store holds %" PRIu64 " of %zu servers, grown by %"
                PRIu64 " in %" PRIu64 " turns; %" PRIu64 " increments were acknowledged\n",
                BENCH_NAME, t.seen, n, t.grown, t.turns, sent);
        return -1;
    }
    return 0;
}

/* pgs at d->callers and the raw reference at the batch pgs achieved, in
** SLICES rounds that alternate which goes first (pgs in the first round:
** it sets B), so the pair sees the same disk weather.  A pgs slice ends
** when its callers' last calls return, which can be long after the
** deadline with slow fsyncs; each raw slice runs as long as the pgs slice
** before it. */
static int durable_phase(phase *p, raw_writer *w, double seconds, results *res,
                         durable_result *d)
{
    double slice = seconds / SLICES, last = slice;
    int rc = 0;
    for (int k = 0; !rc && k < SLICES; k++) {
        int raw_first = k % 2;
        if (raw_first)
            rc = raw_measure(w, d->raw_b, last, res, d);
        double before = d->secs;
        if (!rc)
            rc = run_callers(p, slice, d);
        last = d->secs - before;
        if (k == 0)
            d->raw_b = round_batch(per((double)d->writes, (double)d->commits));
        if (!rc && !raw_first)
            rc = raw_measure(w, d->raw_b, last, res, d);
    }
    d->rate = per((double)d->calls, d->secs);
    d->batch = per((double)d->writes, (double)d->commits);
    d->raw_rate = per((double)d->raw_rows, d->raw_secs);
    return rc;
}

static int durable_phases(pgs_runtime *rt, const pgs_ref *refs, raw_writer *w,
                          const store_config *cfg, results *res)
{
    phase p = {.rt = rt, .refs = refs, .nrefs = cfg->servers};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cv, NULL);
    int rc = warm_up(rt, refs, cfg->servers);
    for (int i = 0; !rc && i < NCALLER_SETS; i++) {
        durable_result *d = &res->d[i];
        d->callers = caller_sets[i];
        rc = durable_phase(&p, w, cfg->seconds, res, d);
        res->sent += d->calls; /* acknowledged, even in a failed phase */
    }
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.lock);
    return rc ? rc : verify_live(rt, refs, cfg->servers, res->sent);
}

/* Stores the servers in url's store, runs the durable phases beside w (its
** rows the same servers), then w's scale points, and checks the store. */
static int bench_durable(const store_config *cfg, const char *url, const tmpl *t,
                         raw_writer *w, results *res)
{
    double fill_s;
    if (fill_store(url, t, 0, cfg->servers, &fill_s))
        return -1;
    pgs_ref *refs = malloc(cfg->servers * sizeof *refs);
    if (!refs)
        return fail("refs", PGS_ENOMEM);
    for (size_t i = 0; i < cfg->servers; i++)
        ref_of(i, &refs[i]);
    pgs_runtime *rt = NULL;
    int rc = runtime_open(url, &rt);
    if (!rc)
        rc = durable_phases(rt, refs, w, cfg, res);
    pgs_close(rt);
    if (!rc)
        rc = raw_scale(w, cfg->seconds, res);
    free(refs);
    return rc ? rc : verify_stored(url, cfg->servers, res->sent);
}

/* ------------------------------------------------------------------------
** Cold reactivation.
*/

/* The raw reference's point reads, set up beside a runtime. */
typedef struct raw_reader {
    void *self; /* the engine's, given to each function */
    int (*open)(void *self);               /* called with the runtime open */
    int (*read)(void *self, uint64_t idx); /* 0 if server idx's stored record holds
                                              start_value(idx); else -1, said */
    void (*close)(void *self);             /* after open, even a failed one */
} raw_reader;

/* 0 .. n-1 shuffled (Fisher-Yates). */
static uint32_t *shuffled(size_t n, uint64_t seed)
{
    uint32_t *p = malloc(n * sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rand_next(&seed) % i);
        uint32_t x = p[i - 1];
        p[i - 1] = p[j];
        p[j] = x;
    }
    return p;
}

/* The servers both sides visit: stored server first + perm[(off + i) % n]
** for i in [from, to). */
typedef struct sample {
    uint64_t first;
    const uint32_t *perm;
    size_t n, off;
} sample;

static uint64_t sample_at(const sample *sm, size_t i)
{
    return sm->first + sm->perm[(sm->off + i) % sm->n];
}

/* Wakes the sample's servers [from, to) one after the other with a read;
** adds the time taken to *secs. */
static int reactivate(pgs_runtime *rt, const sample *sm, size_t from, size_t to, double *secs)
{
    double t0 = now_s();
    for (size_t i = from; i < to; i++) {
        pgs_ref ref;
        uint64_t idx = sample_at(sm, i), v = 0;
        ref_of(idx, &ref);
        int rc = call_counter(rt, &ref, 0, &v);
        if (rc)
            return fail("pgs_call (reactivation)", rc);
        if (v != start_value(idx)) {
            fprintf(stderr, "%s: stored server %" PRIu64 " replied %" PRIu64 "\n", BENCH_NAME,
                    idx, v);
            return -1;
        }
    }
    *secs += now_s() - t0;
    return 0;
}

/* Reads the sample's records [from, to); adds the time taken to *secs. */
static int raw_reads(const raw_reader *rd, const sample *sm, size_t from, size_t to,
                     double *secs)
{
    double t0 = now_s();
    for (size_t i = from; i < to; i++)
        if (rd->read(rd->self, sample_at(sm, i)))
            return -1;
    *secs += now_s() - t0;
    return 0;
}

/* M reactivations and M raw reads of a different sample, in SLICES
** alternating slices, like the durable phases. */
static int cold_loop(pgs_runtime *rt, const raw_reader *rd, const uint32_t *perm,
                     uint64_t first, cold_result *c)
{
    sample mine = {first, perm, c->stored, 0}, theirs = {first, perm, c->stored, c->m};
    double secs = 0, raw_secs = 0;
    pgs_stats s0, s1;
    pgs_stats_get(rt, &s0);
    int rc = 0;
    for (int k = 0; !rc && k < SLICES; k++) {
        size_t from = c->m * (size_t)k / SLICES, to = c->m * (size_t)(k + 1) / SLICES;
        if (k % 2)
            rc = raw_reads(rd, &theirs, from, to, &raw_secs);
        if (!rc)
            rc = reactivate(rt, &mine, from, to, &secs);
        if (!rc && !(k % 2))
            rc = raw_reads(rd, &theirs, from, to, &raw_secs);
    }
    pgs_stats_get(rt, &s1);
    c->rate = per((double)c->m, secs);
    c->raw_rate = per((double)c->m, raw_secs);
    c->activations = s1.activations - s0.activations;
    c->writes = s1.writes - s0.writes;
    return rc;
}

/* Stores --stored more servers after the durable phases' ones, opens a
** runtime on them and the raw reader beside it, and wakes --reactivations
** of them beside as many raw reads. */
static int bench_cold(const store_config *cfg, const char *url, const tmpl *t,
                      const raw_reader *rd, cold_result *c)
{
    uint64_t first = cfg->servers; /* after the durable phases' servers */
    c->stored = cfg->stored;
    c->m = cfg->reactivations < cfg->stored ? cfg->reactivations : cfg->stored;
    if (fill_store(url, t, first, c->stored, &c->fill_s))
        return -1;
    uint32_t *perm = shuffled(c->stored, 0x243F6A8885A308D3ULL);
    if (!perm)
        return fail("permutation", PGS_ENOMEM);
    pgs_runtime *rt;
    double t0 = now_s();
    int rc = runtime_open(url, &rt);
    c->open_s = now_s() - t0;
    if (!rc) {
        if (!(rc = rd->open(rd->self)))
            rc = cold_loop(rt, rd, perm, first, c);
        rd->close(rd->self);
        t0 = now_s();
        pgs_close(rt);
        c->close_s = now_s() - t0;
    }
    free(perm);
    return rc;
}

/* ------------------------------------------------------------------------
** The raw SQLite reference: the adapter's table, UPDATE and SELECT
** (src/storage/sqlite.c), verbatim, on a plain connection.
*/
static const char sqlite_raw_schema[] =
    "CREATE TABLE pgs_records(behaviour TEXT NOT NULL, key BLOB NOT NULL,"
    " version INTEGER NOT NULL, schema_version INTEGER NOT NULL, args BLOB,"
    " options BLOB, state BLOB, checksum INTEGER NOT NULL,"
    " PRIMARY KEY(behaviour, key)) WITHOUT ROWID;";
static const char sqlite_raw_insert[] =
    "INSERT INTO pgs_records(behaviour, key, version, schema_version, "
    "args, options, state, checksum) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)";
static const char sqlite_raw_update[] =
    "UPDATE pgs_records SET version = ?3, schema_version = ?4, args = ?5, "
    "options = ?6, state = ?7, checksum = ?8 "
    "WHERE behaviour = ?1 AND key = ?2 AND version = ?9";
static const char sqlite_raw_get[] =
    "SELECT version, schema_version, args, options, state, checksum "
    "FROM pgs_records WHERE behaviour = ?1 AND key = ?2";

static int sql_fail(sqlite3 *db, const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", BENCH_NAME, what, sqlite3_errstr(rc),
            db ? sqlite3_errmsg(db) : "no connection");
    return -1;
}

typedef struct sqlite_raw {
    sqlite3 *db;
    sqlite3_stmt *upd;
    const tmpl *t;
    raw_writer w;
} sqlite_raw;

static int sqlite_raw_bind(sqlite3_stmt *st, uint64_t i, const tmpl *t, const counter *c,
                           uint64_t version)
{
    unsigned char key[8];
    key_of(i, key);
    int rc = sqlite3_bind_text(st, 1, "counter", -1, SQLITE_STATIC);
    if (!rc) rc = sqlite3_bind_blob(st, 2, key, sizeof key, SQLITE_TRANSIENT);
    if (!rc) rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)version);
    if (!rc) rc = sqlite3_bind_int64(st, 4, t->schema);
    if (!rc) rc = sqlite3_bind_zeroblob(st, 5, 0); /* the adapter's empty args */
    if (!rc) rc = sqlite3_bind_blob(st, 6, t->options, (int)t->options_len, SQLITE_STATIC);
    if (!rc) rc = sqlite3_bind_blob(st, 7, c, sizeof *c, SQLITE_STATIC);
    if (!rc) rc = sqlite3_bind_int64(st, 8, (sqlite3_int64)raw_checksum(i, version));
    return rc;
}

/* Runs st to completion; SQLITE_OK if it did. */
static int sqlite_step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The same rows as the pgs store, in one transaction. */
static int sqlite_raw_fill(sqlite_raw *r)
{
    sqlite3_stmt *ins;
    int rc = sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL);
    if (!rc)
        rc = sqlite3_prepare_v2(r->db, sqlite_raw_insert, -1, &ins, NULL);
    if (rc)
        return sql_fail(r->db, "raw prepare insert", rc);
    for (size_t i = 0; !rc && i < r->w.rows; i++) {
        rc = sqlite_raw_bind(ins, i, r->t, &r->w.state[i], 1);
        if (!rc)
            rc = sqlite_step(ins);
    }
    sqlite3_finalize(ins);
    if (!rc)
        rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    return rc ? sql_fail(r->db, "raw fill", rc) : 0;
}

/* Row i's next turn, version checked. */
static int sqlite_raw_update_one(sqlite_raw *r, size_t i)
{
    uint64_t v;
    const counter *c = raw_turn(&r->w, i, &v);
    int rc = sqlite_raw_bind(r->upd, i, r->t, c, v + 1);
    if (!rc)
        rc = sqlite3_bind_int64(r->upd, 9, (sqlite3_int64)v);
    if (!rc)
        rc = sqlite_step(r->upd);
    if (!rc && sqlite3_changes(r->db) != 1)
        rc = SQLITE_MISMATCH; /* the version check failed: a bug here */
    return rc;
}

static int sqlite_raw_txn(raw_writer *w, const size_t *idx, size_t b)
{
    sqlite_raw *r = w->self;
    int rc = b > 1 ? sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) : SQLITE_OK;
    for (size_t j = 0; !rc && j < b; j++)
        rc = sqlite_raw_update_one(r, idx[j]);
    if (!rc && b > 1)
        rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    return rc ? sql_fail(r->db, "raw update", rc) : 0;
}

/* A new SQLite file at path with the adapter's table, pragmas (WAL,
** synchronous=FULL) and rows.  sqlite_raw_close frees it, even after a
** failure. */
static int sqlite_raw_open(sqlite_raw *r, const char *path, const tmpl *t, size_t rows)
{
    *r = (sqlite_raw){.t = t};
    if (raw_writer_init(&r->w, rows, r, sqlite_raw_txn))
        return -1;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &r->db, flags, NULL);
    if (!rc)
        rc = sqlite3_exec(r->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL,
                          NULL, NULL);
    if (!rc)
        rc = sqlite3_exec(r->db, sqlite_raw_schema, NULL, NULL, NULL);
    if (rc)
        return sql_fail(r->db, "raw open", rc);
    if (sqlite_raw_fill(r))
        return -1;
    rc = sqlite3_prepare_v3(r->db, sqlite_raw_update, -1, SQLITE_PREPARE_PERSISTENT, &r->upd,
                            NULL);
    return rc ? sql_fail(r->db, "raw prepare update", rc) : 0;
}

static void sqlite_raw_close(sqlite_raw *r)
{
    sqlite3_finalize(r->upd);
    sqlite3_close(r->db);
    raw_writer_free(&r->w);
}

/* Point reads of the pgs store's own file on a plain connection (WAL lets
** it read while pgs holds its lock file). */
typedef struct sqlite_reader {
    const char *path;
    sqlite3 *db;
    sqlite3_stmt *get;
} sqlite_reader;

static int sqlite_reader_open(void *self)
{
    sqlite_reader *r = self;
    int rc = sqlite3_open_v2(r->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (!rc)
        rc = sqlite3_prepare_v3(r->db, sqlite_raw_get, -1, SQLITE_PREPARE_PERSISTENT, &r->get,
                                NULL);
    return rc ? sql_fail(r->db, "raw reader open", rc) : 0;
}

static int sqlite_reader_read(void *self, uint64_t idx)
{
    sqlite_reader *r = self;
    unsigned char key[8];
    counter c = {0};
    key_of(idx, key);
    int rc = sqlite3_bind_text(r->get, 1, "counter", -1, SQLITE_STATIC);
    if (!rc)
        rc = sqlite3_bind_blob(r->get, 2, key, sizeof key, SQLITE_STATIC);
    if (!rc && (rc = sqlite3_step(r->get)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(r->get, 4) == sizeof c)
            memcpy(&c, sqlite3_column_blob(r->get, 4), sizeof c);
        rc = c.n == start_value(idx) ? SQLITE_OK : SQLITE_MISMATCH;
    } else if (!rc) {
        rc = SQLITE_NOTFOUND;
    }
    sqlite3_reset(r->get);
    return rc ? sql_fail(r->db, "raw point read", rc) : 0;
}

static void sqlite_reader_close(void *self)
{
    sqlite_reader *r = self;
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
    r->get = NULL;
    r->db = NULL;
}

/* A raw_reader over sr, which reads the SQLite file at path. */
static raw_reader sqlite_reader_of(sqlite_reader *sr, const char *path)
{
    *sr = (sqlite_reader){.path = path};
    return (raw_reader){sr, sqlite_reader_open, sqlite_reader_read, sqlite_reader_close};
}

/* ------------------------------------------------------------------------
** Output.  Figures are named NAME<suffix>; raw ones raw_<engine>_...
*/
static void print_durable_rows(const results *r, const char *label)
{
    printf("durable calls vs raw %s writes at the batch pgs achieved:\n", label);
    printf("  %7s %12s %10s %9s %9s %11s %6s %12s %7s\n", "callers", "calls/s", "us/call",
           "writes", "commits", "rows/commit", "raw B", "raw rows/s", "ratio");
    for (int i = 0; i < NCALLER_SETS; i++) {
        const durable_result *d = &r->d[i];
        printf("  %7d %12.0f %10.1f %9" PRIu64 " %9" PRIu64 " %11.2f %6ld %12.0f %7.3f\n",
               d->callers, d->rate, per(1e6, d->rate), d->writes, d->commits,
               d->batch, d->raw_b, d->raw_rate, per(d->rate, d->raw_rate));
    }
    printf("  raw %s, one thread, rows per transaction:", label);
    for (int i = 0; i < r->nraw; i++)
        printf("  B=%ld %.0f/s", r->raw[i].b, raw_point_rate(&r->raw[i]));
    printf("\n  (%" PRIu64 " increments acknowledged; the live counters and, after close,\n"
           "   the stored records summed to exactly that)\n", r->sent);
}

static void print_cold_rows(const cold_result *c, const char *label)
{
    printf("\ncold reactivation: %zu stored servers (filled in %.2f s, %.0f rows/s;\n"
           "runtime open + register %.2f s), %zu never-touched servers in random order,\n"
           "one thread, read-only message (PGS_UNCHANGED):\n", c->stored, c->fill_s,
           per((double)c->stored, c->fill_s), c->open_s, c->m);
    char what[64];
    snprintf(what, sizeof what, "raw %s point read", label);
    printf("  %-34s %12.0f /s %9.2f us\n", "pgs reactivation (load+turn+reply)", c->rate,
           per(1e6, c->rate));
    printf("  %-34s %12.0f /s %9.2f us\n", what, c->raw_rate, per(1e6, c->raw_rate));
    printf("  ratio %.3f; during the loop: %" PRIu64 " activations, %" PRIu64 " writes;\n"
           "  pgs_close with them all active: %.2f s\n",
           per(c->rate, c->raw_rate), c->activations, c->writes, c->close_s);
}

static void print_figures(const results *r, const char *engine, const char *suffix)
{
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("durable%d_calls%s %.1f per_s\n", r->d[i].callers, suffix, r->d[i].rate);
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("durable%d_batch%s %.2f rows\n", r->d[i].callers, suffix, r->d[i].batch);
    for (int i = 0; i < r->nraw; i++)
        printf("raw_%s_batch%ld %.1f per_s\n", engine, r->raw[i].b,
               raw_point_rate(&r->raw[i]));
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("durable%d_vs_raw_%s %.3f ratio\n", r->d[i].callers, engine,
               per(r->d[i].rate, r->d[i].raw_rate));
    printf("reactivations%s %.1f per_s\n", suffix, r->cold.rate);
    printf("raw_%s_reads %.1f per_s\n", engine, r->cold.raw_rate);
    printf("reactivations_vs_raw_reads%s %.3f ratio\n", suffix,
           per(r->cold.rate, r->cold.raw_rate));
}

/* ------------------------------------------------------------------------
** Options and the run's directory.
*/

/* Parses the options every store benchmark takes into cfg; `more` (may be
** NULL) is offered any other option with its value and returns 0 if it
** took it.  --quick shrinks whatever was not given.  0, or -1: usage. */
static int store_args(int argc, char **argv, store_config *cfg,
                      int (*more)(void *arg, const char *opt, const char *val), void *arg)
{
    int got_servers = 0, got_stored = 0, got_m = 0, got_secs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            cfg->quick = 1;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--seconds") == 0)
            got_secs = 1, cfg->seconds = strtod(v, NULL);
        else if (strcmp(a, "--servers") == 0)
            got_servers = 1, cfg->servers = strtoull(v, NULL, 10);
        else if (strcmp(a, "--stored") == 0)
            got_stored = 1, cfg->stored = strtoull(v, NULL, 10);
        else if (strcmp(a, "--reactivations") == 0)
            got_m = 1, cfg->reactivations = strtoull(v, NULL, 10);
        else if (strcmp(a, "--dir") == 0)
            cfg->dir = v;
        else if (!more || more(arg, a, v))
            return -1;
    }
    if (cfg->quick) {
        cfg->servers = got_servers ? cfg->servers : 1000;
        cfg->stored = got_stored ? cfg->stored : 20000;
        cfg->reactivations = got_m ? cfg->reactivations : 5000;
        cfg->seconds = got_secs ? cfg->seconds : 0.5;
    }
    return cfg->servers >= NCALLER_SETS && cfg->stored && cfg->stored <= UINT32_MAX &&
           cfg->reactivations && cfg->seconds > 0 ? 0 : -1;
}

/* A fresh directory PARENT/pgs-NAME-XXXXXX for the run's files. */
static int run_dir_make(char dir[PATH_MAX], const char *parent)
{
    int n = snprintf(dir, PATH_MAX, "%s/pgs-%s-XXXXXX", parent, BENCH_NAME);
    if (n < 0 || n >= PATH_MAX || !mkdtemp(dir)) {
        fprintf(stderr, "%s: cannot make a directory under %s: %s\n", BENCH_NAME, parent,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "%s: cannot remove %s: %s\n", BENCH_NAME, path, strerror(errno));
    return 0; /* remove what can be removed */
}

/* Removes the run's directory and everything in it. */
static void run_dir_remove(const char *dir)
{
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
#endif /* BENCH_STORE */

#endif
