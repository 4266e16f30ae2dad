/*
** bench/durable.c — durable throughput of pgs on the SQLite engine,
** measured against raw SQLite doing the same durable work in the same run.
**
** Everything lives in a fresh directory DIR = D/pgs-durable-XXXXXX (D: the
** current directory, or --dir), removed at the end, so pgs and the raw
** reference share one file system and one disk.  Both use WAL with
** synchronous=FULL (the sqlite: adapter's default), so every commit ends
** with an fsync of the WAL on both sides.
**
**   1. durable{1,8,64,256}_calls: --servers (10,000) counter servers (flat
**      16-byte state {n, turns}; handle_call adds the message's value to n,
**      bumps turns and replies with n, so every message changes the stored
**      bytes: SQLite skips writing a row whose bytes did not change, which
**      would measure nothing) on sqlite:DIR/durable.db, write mode sync
**      (the default: the reply is released only once the write is
**      durable).  The servers' records are written straight into the store
**      first (see 3), and one read-only call per server activates them all
**      before timing, so the phases measure steady-state durable writes,
**      not loads.  N = 1, 8, 64, 256 client threads each call the servers
**      in turn from their own offset (i * servers / N) with value 1 for
**      --seconds (3) in all, in SLICES slices (see 2); rate = calls
**      completed / wall time from each slice's start signal until its last
**      client returned, summed over the slices.  pgs_stats_get() before and
**      after each phase gives writes and commits (storage transactions):
**      durableN_batch = writes / commits, the mean group-commit batch the
**      runtime achieved at that concurrency.  At the end the counters are
**      read back twice, through the runtime and, after pgs_close, straight
**      from the store: the increments must sum to the calls acknowledged,
**      or the program says so and exits non-zero.
**
**   2. raw_sqlite_batchB: the reference.  DIR/raw.db, a second SQLite file
**      with the adapter's own table (pgs_records, same columns, PRIMARY
**      KEY(behaviour, key) WITHOUT ROWID), the same pragmas and the same
**      rows (behaviour "counter", the same 8-byte keys, options bytes and
**      16-byte states).  One thread runs the adapter's own prepared UPDATE
**      (every column bound, version checked), the state changing every
**      time, B rows per transaction, the B rows that B clients going
**      through the rows in turn from spread offsets would write at once
**      (as pgs's clients do: consecutive rows of one transaction would
**      share a page or two and flatter the reference) (B = 1: no
**      BEGIN/COMMIT, as the adapter does for a lone write; else BEGIN
**      IMMEDIATE ... COMMIT); rate = rows / s.  B is the batch pgs
**      achieved (rounded, >= 1).  Each concurrency's pgs phase and its raw
**      reference run as SLICES alternating slices (pgs, raw, raw, pgs, ...;
**      B is fixed after the first pgs slice; a raw slice lasts as long as
**      the pgs slice before it really took, its callers' last calls
**      included), so the pair sees the same disk: fsync latency on a
**      shared VM drifts several-fold within seconds.  Then B = 1 and
**      B = 100, for scale, for --seconds each unless already measured.
**      raw_sqlite_batchB pools every measurement at B (rows / seconds).
**      Why this is fair: it is exactly the SQL, the fsyncs and the bytes
**      pgs asks SQLite for at that batch size, minus everything pgs adds
**      (runtime, checksums, record copies, thread hand-offs), and one
**      thread is SQLite's best case, its writer being single anyway.
**      durableN_vs_raw_sqlite = durableN_calls / the raw rate measured
**      beside it at the batch pgs used with N callers: 1.0 means pgs adds
**      nothing to SQLite at the batch it managed; the B = 100 rate shows
**      what a larger group commit could buy.
**
**   3. reactivations: --stored (1,000,000) more counter records are written
**      into durable.db with pgs_storage_batch (FILL_BATCH puts per
**      transaction; the options bytes are copied from a record the runtime
**      itself wrote for a throwaway server, so the runtime loads these
**      exactly like its own), the storage is closed, and a runtime is
**      opened on the URL (idle timeout 1 h: nothing passivates).  One thread
**      then calls --reactivations (100,000) distinct never-touched servers
**      in random order with a read-only message (value 0: the handler
**      returns PGS_UNCHANGED, so nothing is written); each reply must be
**      the stored value.  Rate = reactivations / s: load + turn + reply.
**      raw_sqlite_reads: a plain sqlite3 connection to the same durable.db,
**      opened beside the runtime (WAL lets it read while pgs holds its
**      lock file), runs the adapter's own prepared point SELECT by
**      (behaviour, key) for a different random sample of the same size
**      (disjoint when stored >= 2 * reactivations), on the same thread.
**      The two alternate in SLICES slices, as in 2.  Cache state: both
**      sides start with a cold SQLite page cache (pgs's four reader
**      connections are new at runtime open, 2 MB of cache each by
**      default; the raw connection is new, 2 MB) and a warm OS page cache
**      (the file was just written, and pgs_register scans every record of
**      the behaviour at open), so both measure B-tree lookups through the
**      OS cache, not the disk.  The table also shows the fill rate, the
**      time of runtime open + register with N stored, and pgs_close's
**      time with the M woken servers active.
**
** Output: a human-readable table, then one `NAME VALUE UNIT` line per
** figure.  Options: --seconds S (3), --servers N (10000), --stored N
** (1000000), --reactivations M (100000), --dir D (.), --quick (1000
** servers, 20000 stored, 5000 reactivations, 0.5 s: a smoke test).
*/
#define BENCH_NAME "durable"
#include "bench.h"
#include "pgs.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NCALLER_SETS 4
#define FILL_BATCH 4096            /* puts per storage transaction when filling */
#define SCALE_B 100                /* the raw reference's "large batch" */
#define IDLE_MS 3600000u           /* nothing passivates during a run */
#define CALL_TIMEOUT_MS 120000u    /* 256 callers behind one fsync each can wait long */
#define MAX_RAW_POINTS (NCALLER_SETS + 2)
#define SLICES 6                   /* pgs and raw alternate this often per phase */

static const int caller_sets[NCALLER_SETS] = {1, 8, 64, 256};

/* The adapter's table, UPDATE and SELECT (src/storage/sqlite.c), verbatim. */
static const char raw_schema[] =
    "CREATE TABLE pgs_records(behaviour TEXT NOT NULL, key BLOB NOT NULL,"
    " version INTEGER NOT NULL, schema_version INTEGER NOT NULL, args BLOB,"
    " options BLOB, state BLOB, checksum INTEGER NOT NULL,"
    " PRIMARY KEY(behaviour, key)) WITHOUT ROWID;";
static const char raw_insert[] =
    "INSERT INTO pgs_records(behaviour, key, version, schema_version, "
    "args, options, state, checksum) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)";
static const char raw_update[] =
    "UPDATE pgs_records SET version = ?3, schema_version = ?4, args = ?5, "
    "options = ?6, state = ?7, checksum = ?8 "
    "WHERE behaviour = ?1 AND key = ?2 AND version = ?9";
static const char raw_get[] =
    "SELECT version, schema_version, args, options, state, checksum "
    "FROM pgs_records WHERE behaviour = ?1 AND key = ?2";

typedef struct config {
    size_t servers;       /* servers of the durable phases */
    size_t stored;        /* extra stored servers of the reactivation phase */
    size_t reactivations; /* how many of them to wake */
    double seconds;       /* per concurrency, for pgs and for raw SQLite each */
    const char *dir;      /* parent of the temporary directory */
    int quick;
} config;

typedef struct paths {
    char dir[PATH_MAX];
    char pgs_db[PATH_MAX + 32];
    char raw_db[PATH_MAX + 32];
    char url[PATH_MAX + 48];
} paths;

/* What a stored record of the counter behaviour carries besides its state,
** learnt from one the runtime wrote itself. */
typedef struct tmpl {
    unsigned char options[64];
    size_t options_len;
    uint32_t schema;
} tmpl;

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

static int sql_fail(sqlite3 *db, const char *what, int rc)
{
    fprintf(stderr, "durable: %s: %s (%s)\n", what, sqlite3_errstr(rc),
            db ? sqlite3_errmsg(db) : "no connection");
    return -1;
}

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
** it and bumps turns (both stored bytes change every time); a call with no
** value is a read and returns PGS_UNCHANGED.  Either replies with n.
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
** The directory and the stored records.
*/
static int paths_make(paths *p, const char *parent)
{
    int n = snprintf(p->dir, sizeof p->dir, "%s/pgs-durable-XXXXXX", parent);
    if (n < 0 || (size_t)n >= sizeof p->dir || !mkdtemp(p->dir)) {
        fprintf(stderr, "durable: cannot make a directory under %s: %s\n", parent,
                strerror(errno));
        return -1;
    }
    snprintf(p->pgs_db, sizeof p->pgs_db, "%s/durable.db", p->dir);
    snprintf(p->raw_db, sizeof p->raw_db, "%s/raw.db", p->dir);
    snprintf(p->url, sizeof p->url, "sqlite:%s", p->pgs_db);
    return 0;
}

static void paths_remove(const paths *p)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal", "-pgs.lock"};
    const char *dbs[2] = {p->pgs_db, p->raw_db};
    char f[PATH_MAX + 64];
    for (int d = 0; d < 2; d++) {
        for (size_t s = 0; s < sizeof suffix / sizeof suffix[0]; s++) {
            snprintf(f, sizeof f, "%s%s", dbs[d], suffix[s]);
            unlink(f);
        }
    }
    if (rmdir(p->dir) != 0)
        fprintf(stderr, "durable: cannot remove %s: %s\n", p->dir, strerror(errno));
}

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
            fprintf(stderr, "durable: unexpected template record (options %zu, args %zu, "
                    "state %zu bytes)\n", rec->options_len, rec->args_len, rec->state_len);
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

/* The record of server i as first stored: version 1, start_value(i). */
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
** The raw SQLite reference (figures 2), run beside the durable phases.
*/
typedef struct raw {
    sqlite3 *db;
    sqlite3_stmt *upd;
    const tmpl *t;
    size_t rows, round; /* round: transactions so far */
    counter *state;     /* each row's current state */
    uint64_t *version;  /* each row's stored version */
} raw;

static int raw_bind(sqlite3_stmt *st, uint64_t i, const tmpl *t, const counter *c,
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
    /* pgs stores an XXH3 checksum; raw SQLite stores a cheap value that
    ** changes as often. */
    if (!rc) rc = sqlite3_bind_int64(st, 8, (sqlite3_int64)(version * 0x9E3779B97F4A7C15ULL ^ i));
    return rc;
}

/* Runs st to completion; SQLITE_OK if it did. */
static int step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The same rows as the pgs store, in one transaction. */
static int raw_fill(raw *r)
{
    sqlite3_stmt *ins;
    int rc = sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL);
    if (!rc)
        rc = sqlite3_prepare_v2(r->db, raw_insert, -1, &ins, NULL);
    if (rc)
        return sql_fail(r->db, "raw prepare insert", rc);
    for (size_t i = 0; !rc && i < r->rows; i++) {
        r->state[i] = (counter){.n = start_value(i)};
        r->version[i] = 1;
        rc = raw_bind(ins, i, r->t, &r->state[i], 1);
        if (!rc)
            rc = step(ins);
    }
    sqlite3_finalize(ins);
    if (!rc)
        rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    return rc ? sql_fail(r->db, "raw fill", rc) : 0;
}

static int raw_open(raw *r, const char *path, const tmpl *t, size_t rows)
{
    *r = (raw){.t = t, .rows = rows, .state = calloc(rows, sizeof(counter)),
               .version = calloc(rows, sizeof(uint64_t))};
    if (!r->state || !r->version)
        return fail("raw rows", PGS_ENOMEM);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &r->db, flags, NULL);
    if (!rc)
        rc = sqlite3_exec(r->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL,
                          NULL, NULL);
    if (!rc)
        rc = sqlite3_exec(r->db, raw_schema, NULL, NULL, NULL);
    if (rc)
        return sql_fail(r->db, "raw open", rc);
    if (raw_fill(r))
        return -1;
    rc = sqlite3_prepare_v3(r->db, raw_update, -1, SQLITE_PREPARE_PERSISTENT, &r->upd, NULL);
    return rc ? sql_fail(r->db, "raw prepare update", rc) : 0;
}

static void raw_close(raw *r)
{
    sqlite3_finalize(r->upd);
    sqlite3_close(r->db);
    free(r->state);
    free(r->version);
}

/* Row i gets a new state and version. */
static int raw_update_one(raw *r, size_t i)
{
    counter *c = &r->state[i];
    c->n++;
    c->turns++;
    int rc = raw_bind(r->upd, i, r->t, c, r->version[i] + 1);
    if (!rc)
        rc = sqlite3_bind_int64(r->upd, 9, (sqlite3_int64)r->version[i]);
    if (!rc)
        rc = step(r->upd);
    if (!rc && sqlite3_changes(r->db) != 1)
        rc = SQLITE_MISMATCH; /* the version check failed: a bug here */
    r->version[i]++;
    return rc;
}

/* Updates rows for `seconds` at b rows per transaction; *rows and *secs
** receive the rows written and the time taken. */
static int raw_run(raw *r, long b, double seconds, uint64_t *rows, double *secs)
{
    uint64_t n = 0;
    int rc = SQLITE_OK;
    double t0 = now_s(), t1 = t0;
    do {
        if (b > 1)
            rc = sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        /* The rows B callers write at once: each goes through the rows in
        ** turn from its own offset, as the pgs clients do, so a
        ** transaction touches B places in the table, not one run of rows
        ** that would share a page or two. */
        for (long j = 0; !rc && j < b; j++)
            rc = raw_update_one(r, ((size_t)j * r->rows / (size_t)b + r->round) % r->rows);
        r->round++;
        if (!rc && b > 1)
            rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
        n += (uint64_t)b;
    } while (!rc && (t1 = now_s()) < t0 + seconds);
    if (rc)
        return sql_fail(r->db, "raw update", rc);
    *rows = n;
    *secs = t1 - t0;
    return 0;
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
static int raw_measure(raw *r, long b, double seconds, results *res, durable_result *d)
{
    uint64_t rows = 0;
    double secs = 0;
    if (raw_run(r, b, seconds, &rows, &secs))
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

/* The scale points, unless the pairs already measured them. */
static int raw_scale(raw *r, double seconds, results *res)
{
    static const long scale[] = {1, SCALE_B};
    for (size_t i = 0; i < sizeof scale / sizeof scale[0]; i++) {
        int seen = 0;
        for (int j = 0; j < res->nraw; j++)
            seen |= res->raw[j].b == scale[i];
        if (!seen && raw_measure(r, scale[i], seconds, res, NULL))
            return -1;
    }
    qsort(res->raw, (size_t)res->nraw, sizeof res->raw[0], raw_point_cmp);
    return 0;
}

/* ------------------------------------------------------------------------
** 1. Durable calls.
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
            fprintf(stderr, "durable: server %zu holds %" PRIu64 ", stored %" PRIu64 "\n",
                    i, v, start_value(i));
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
        fprintf(stderr, "durable: ERROR: live counters grew by %" PRIu64 ", but %" PRIu64
                " increments were acknowledged\n", sum, sent);
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
        fprintf(stderr, "durable: ERROR: the store holds %" PRIu64 " of %zu servers, grown by %"
                PRIu64 " in %" PRIu64 " turns; %" PRIu64 " increments were acknowledged\n",
                t.seen, n, t.grown, t.turns, sent);
        return -1;
    }
    return 0;
}

/* pgs at d->callers and raw SQLite at the batch pgs achieved, in SLICES
** rounds that alternate which goes first (pgs in the first round: it sets
** B), so the pair sees the same disk weather.  A pgs slice ends when its
** callers' last calls return, which can be long after the deadline with
** slow fsyncs; each raw slice runs as long as the pgs slice before it. */
static int durable_phase(phase *p, raw *r, double seconds, results *res, durable_result *d)
{
    double slice = seconds / SLICES, last = slice;
    int rc = 0;
    for (int k = 0; !rc && k < SLICES; k++) {
        int raw_first = k % 2;
        if (raw_first)
            rc = raw_measure(r, d->raw_b, last, res, d);
        double before = d->secs;
        if (!rc)
            rc = run_callers(p, slice, d);
        last = d->secs - before;
        if (k == 0)
            d->raw_b = round_batch(per((double)d->writes, (double)d->commits));
        if (!rc && !raw_first)
            rc = raw_measure(r, d->raw_b, last, res, d);
    }
    d->rate = per((double)d->calls, d->secs);
    d->batch = per((double)d->writes, (double)d->commits);
    d->raw_rate = per((double)d->raw_rows, d->raw_secs);
    return rc;
}

static int durable_phases(pgs_runtime *rt, const pgs_ref *refs, raw *r, const config *cfg,
                          results *res)
{
    phase p = {.rt = rt, .refs = refs, .nrefs = cfg->servers};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cv, NULL);
    int rc = warm_up(rt, refs, cfg->servers);
    for (int i = 0; !rc && i < NCALLER_SETS; i++) {
        durable_result *d = &res->d[i];
        d->callers = caller_sets[i];
        rc = durable_phase(&p, r, cfg->seconds, res, d);
        res->sent += d->calls; /* acknowledged, even in a failed phase */
    }
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.lock);
    return rc ? rc : verify_live(rt, refs, cfg->servers, res->sent);
}

static int bench_durable(const config *cfg, const paths *pa, const tmpl *t, results *res)
{
    double fill_s;
    raw r;
    if (fill_store(pa->url, t, 0, cfg->servers, &fill_s))
        return -1;
    pgs_ref *refs = malloc(cfg->servers * sizeof *refs);
    if (!refs)
        return fail("refs", PGS_ENOMEM);
    for (size_t i = 0; i < cfg->servers; i++)
        ref_of(i, &refs[i]);
    pgs_runtime *rt = NULL;
    int rc = raw_open(&r, pa->raw_db, t, cfg->servers);
    if (!rc)
        rc = runtime_open(pa->url, &rt);
    if (!rc)
        rc = durable_phases(rt, refs, &r, cfg, res);
    pgs_close(rt);
    if (!rc)
        rc = raw_scale(&r, cfg->seconds, res);
    raw_close(&r);
    free(refs);
    return rc ? rc : verify_stored(pa->url, cfg->servers, res->sent);
}

/* ------------------------------------------------------------------------
** 3. Cold reactivation.
*/

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
            fprintf(stderr, "durable: stored server %" PRIu64 " replied %" PRIu64 "\n", idx, v);
            return -1;
        }
    }
    *secs += now_s() - t0;
    return 0;
}

/* A plain SQLite connection with the adapter's own point SELECT. */
typedef struct reader {
    sqlite3 *db;
    sqlite3_stmt *get;
} reader;

static int reader_open(reader *r, const char *path)
{
    *r = (reader){0};
    int rc = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (!rc)
        rc = sqlite3_prepare_v3(r->db, raw_get, -1, SQLITE_PREPARE_PERSISTENT, &r->get, NULL);
    return rc ? sql_fail(r->db, "raw reader open", rc) : 0;
}

static void reader_close(reader *r)
{
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
}

/* Reads server idx's row; SQLITE_OK if it holds start_value(idx). */
static int read_row(reader *r, uint64_t idx)
{
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
    return rc;
}

/* Reads the sample's rows [from, to); adds the time taken to *secs. */
static int raw_reads(reader *r, const sample *sm, size_t from, size_t to, double *secs)
{
    double t0 = now_s();
    for (size_t i = from; i < to; i++) {
        int rc = read_row(r, sample_at(sm, i));
        if (rc)
            return sql_fail(r->db, "raw point read", rc);
    }
    *secs += now_s() - t0;
    return 0;
}

/* M reactivations and M raw reads of a different sample, in SLICES
** alternating slices, like the durable phases. */
static int cold_loop(pgs_runtime *rt, reader *rd, const uint32_t *perm, uint64_t first,
                     cold_result *c)
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

static int bench_cold(const config *cfg, const paths *pa, const tmpl *t, cold_result *c)
{
    uint64_t first = cfg->servers; /* after the durable phases' servers */
    c->stored = cfg->stored;
    c->m = cfg->reactivations < cfg->stored ? cfg->reactivations : cfg->stored;
    if (fill_store(pa->url, t, first, c->stored, &c->fill_s))
        return -1;
    uint32_t *perm = shuffled(c->stored, 0x243F6A8885A308D3ULL);
    if (!perm)
        return fail("permutation", PGS_ENOMEM);
    pgs_runtime *rt;
    reader rd;
    double t0 = now_s();
    int rc = runtime_open(pa->url, &rt);
    c->open_s = now_s() - t0;
    if (!rc) {
        if (!(rc = reader_open(&rd, pa->pgs_db)))
            rc = cold_loop(rt, &rd, perm, first, c);
        reader_close(&rd);
        t0 = now_s();
        pgs_close(rt);
        c->close_s = now_s() - t0;
    }
    free(perm);
    return rc;
}

/* ------------------------------------------------------------------------
** Output.
*/
static void print_durable_table(const config *cfg, const paths *pa, const results *r)
{
    char real[PATH_MAX];
    printf("pgs bench/durable: %s (%s)\n", pa->url, realpath(pa->dir, real) ? real : pa->dir);
    printf("WAL, synchronous=FULL, write mode sync, %zu counter servers (16-byte state),\n"
           "default workers (%ld cores); per concurrency about %.2f s each of pgs and\n"
           "raw SQLite, in %d alternating slices\n\n", cfg->servers,
           sysconf(_SC_NPROCESSORS_ONLN), cfg->seconds, SLICES);
    printf("durable calls vs raw SQLite updates at the batch pgs achieved:\n");
    printf("  %7s %12s %10s %9s %9s %11s %6s %12s %7s\n", "callers", "calls/s", "us/call",
           "writes", "commits", "rows/commit", "raw B", "raw rows/s", "ratio");
    for (int i = 0; i < NCALLER_SETS; i++) {
        const durable_result *d = &r->d[i];
        printf("  %7d %12.0f %10.1f %9" PRIu64 " %9" PRIu64 " %11.2f %6ld %12.0f %7.3f\n",
               d->callers, d->rate, per(1e6, d->rate), d->writes, d->commits,
               d->batch, d->raw_b, d->raw_rate, per(d->rate, d->raw_rate));
    }
    printf("  raw SQLite, one thread, rows per transaction:");
    for (int i = 0; i < r->nraw; i++)
        printf("  B=%ld %.0f/s", r->raw[i].b, raw_point_rate(&r->raw[i]));
    printf("\n  (%" PRIu64 " increments acknowledged; the live counters and, after close,\n"
           "   the stored records summed to exactly that)\n", r->sent);
}

static void print_cold_table(const cold_result *c)
{
    printf("\ncold reactivation: %zu stored servers (filled in %.2f s, %.0f rows/s;\n"
           "runtime open + register %.2f s), %zu never-touched servers in random order,\n"
           "one thread, read-only message (PGS_UNCHANGED):\n", c->stored, c->fill_s,
           per((double)c->stored, c->fill_s), c->open_s, c->m);
    printf("  %-34s %12.0f /s %9.2f us\n", "pgs reactivation (load+turn+reply)", c->rate,
           per(1e6, c->rate));
    printf("  %-34s %12.0f /s %9.2f us\n", "raw SQLite point read", c->raw_rate,
           per(1e6, c->raw_rate));
    printf("  ratio %.3f; during the loop: %" PRIu64 " activations, %" PRIu64 " writes;\n"
           "  pgs_close with them all active: %.2f s\n",
           per(c->rate, c->raw_rate), c->activations, c->writes,
           c->close_s);
}

static void print_figures(const results *r)
{
    printf("\n");
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("durable%d_calls %.1f per_s\n", r->d[i].callers, r->d[i].rate);
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("durable%d_batch %.2f rows\n", r->d[i].callers, r->d[i].batch);
    for (int i = 0; i < r->nraw; i++)
        printf("raw_sqlite_batch%ld %.1f per_s\n", r->raw[i].b, raw_point_rate(&r->raw[i]));
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("durable%d_vs_raw_sqlite %.3f ratio\n", r->d[i].callers,
               per(r->d[i].rate, r->d[i].raw_rate));
    printf("reactivations %.1f per_s\n", r->cold.rate);
    printf("raw_sqlite_reads %.1f per_s\n", r->cold.raw_rate);
    printf("reactivations_vs_raw_reads %.3f ratio\n",
           per(r->cold.rate, r->cold.raw_rate));
}

/* ------------------------------------------------------------------------
** Options and main.
*/
static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--servers N] [--stored N] "
            "[--reactivations M] [--dir D] [--quick]\n", argv0);
    return 2;
}

/* Parses argv into cfg; --quick shrinks whatever was not given. */
static int parse_args(int argc, char **argv, config *cfg)
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
        else
            return -1;
    }
    if (cfg->quick) {
        cfg->servers = got_servers ? cfg->servers : 1000;
        cfg->stored = got_stored ? cfg->stored : 20000;
        cfg->reactivations = got_m ? cfg->reactivations : 5000;
        cfg->seconds = got_secs ? cfg->seconds : 0.5;
    }
    return cfg->servers && cfg->stored && cfg->stored <= UINT32_MAX && cfg->reactivations &&
           cfg->seconds > 0 ? 0 : -1;
}

static int run_all(const config *cfg, const paths *pa, results *res)
{
    tmpl t;
    if (learn_template(pa->url, &t) || bench_durable(cfg, pa, &t, res))
        return -1;
    print_durable_table(cfg, pa, res);
    if (bench_cold(cfg, pa, &t, &res->cold))
        return -1;
    print_cold_table(&res->cold);
    return 0;
}

int main(int argc, char **argv)
{
    config cfg = {.servers = 10000, .stored = 1000000, .reactivations = 100000,
                  .seconds = 3.0, .dir = "."};
    results res = {0};
    paths pa;
    if (parse_args(argc, argv, &cfg))
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (paths_make(&pa, cfg.dir))
        return 1;
    int rc = run_all(&cfg, &pa, &res);
    paths_remove(&pa);
    if (rc) { /* no figures: a dashboard must not record a failed run's zeros */
        fprintf(stderr, "durable: FAILED; no figures printed\n");
        return 1;
    }
    print_figures(&res);
    return 0;
}
