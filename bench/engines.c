/*
** bench/engines.c — durable calls and cold reactivation on each storage
** engine (SQLite, LMDB, PostgreSQL), each beside the same engine doing the
** same durable work raw, at the same batch size, in the same run.
**
** Everything on local disk lives in a fresh directory DIR =
** D/pgs-engines-XXXXXX (D: the current directory, or --dir), removed at
** the end.  The engines run one after the other (--engines, default all
** three); for each engine E, with the machinery of bench/durable.c (shared
** in bench.h; its header comment has the details):
**
**   1. durable{1,8,64,256}_calls_E: --servers (10,000) counter servers
**      (flat 16-byte state {n, turns}; every call adds 1 to n and bumps
**      turns, so every stored state changes) are written straight into the
**      store and loaded by one read each; then N = 1, 8, 64, 256 caller
**      threads call them in turn from spread offsets, write mode sync (the
**      reply waits until the write is durable), for --seconds (2) per N in
**      SLICES slices.  durableN_batch_E = writes / commits (pgs_stats_get):
**      the group-commit batch pgs achieved with N callers.
**
**   2. raw_E_batchB, durableN_vs_raw_E: the raw reference.  One thread
**      writes the same rows (the same keys, the same record bytes but the
**      checksum, which is a cheap value instead of XXH3) with the engine's
**      own API, B rows per transaction, each row's version checked as the
**      adapter checks it, the rows B callers going through the table from
**      spread offsets would write at once.  B is the batch pgs achieved at
**      N (rounded), and pgs and raw alternate in SLICES slices so both see
**      the same fsync latency, which drifts several-fold on a shared VM.
**      Then B = 1 and B = 100, for scale, unless already measured.
**        sqlite: as bench/durable.c: a second file DIR/raw.db with the
**          adapter's table, pragmas (WAL, synchronous=FULL) and prepared
**          UPDATE ... WHERE version = ?; B = 1 autocommitted, else BEGIN
**          IMMEDIATE ... COMMIT.
**        lmdb: a second environment DIR/raw-lmdb opened as the adapter
**          opens its own (MDB_NOTLS, synced commits), one named database
**          "records" in the adapter's layout (key: "counter", NUL, the key
**          bytes; value: pgs_record_encode() of the record, which
**          carries the checksum it is given: no hashing).  One write
**          txn per B rows (B = 1 too, as the adapter); each put first reads
**          the stored value and checks its version with the adapter's own
**          header read (pgsi_record_encoded_version).  Its map is sized once
**          for every row (the pgs store's never grows in these phases).
**        postgresql: a table raw_records beside the adapter's pgs_records
**          in the same database, with its columns, collation, primary key
**          and fillfactor, and the adapter's own prepared, binary,
**          version-checked UPDATE (WITH w AS (UPDATE ... WHERE version = $9
**          RETURNING 1) SELECT pgs_expect_one(count(*)) FROM w).  B > 1:
**          BEGIN, the B updates and COMMIT sent in libpq's pipeline mode
**          behind one PQpipelineSync, one round trip, as the adapter's
**          batch; B = 1: one autocommitted statement, as its lone write.
**      Why this is fair: it is the engine work, the bytes and the syncs the
**      adapter asks for at that batch size, minus everything pgs adds (the
**      runtime, checksums, record copies, thread hand-offs).  One thread is
**      each engine's best case: all three serialise writers anyway.
**      durableN_vs_raw_E = durableN_calls_E / the raw rate measured beside
**      it: 1.0 means pgs adds nothing to the engine at the batch it got.
**      raw_E_at_durableN is that raw rate (raw_E_batchB pools every
**      measurement at B, from any N).
**
**   3. reactivations_E, raw_E_reads, reactivations_vs_raw_reads_E:
**      --stored (1,000,000) more servers are written into the store
**      (pgs_storage_batch, 4096 per transaction), a runtime is opened on it
**      (pgs_register scans them all), and one thread calls --reactivations
**      (100,000) distinct never-touched ones in random order with a read
**      (nothing is written); each reply must be the stored value.  Beside
**      it, in alternating slices on the same thread, raw point reads of as
**      many records of a different random sample:
**        sqlite: a new plain connection to the pgs store's own file (WAL
**          lets it read beside pgs), the adapter's prepared SELECT.
**        lmdb: LMDB forbids opening one environment twice in a process, so
**          the stored records (same keys, same values) are also written
**          into the raw environment, and a cursor walks it all as
**          pgs_register's scan walks the pgs store, so both maps start
**          warm.  A read renews a reset read-only txn, mdb_get, checks the
**          state (the encoding's last bytes) and resets the txn: the
**          adapter's get without its locks, txn pool and decode.
**        postgresql: a new connection to the same database, the adapter's
**          prepared, binary SELECT by primary key on pgs_records (the same
**          server's shared buffers serve both sides).
**
** After the durable phases the live counters and, after pgs_close, the
** stored records must sum to the increments acknowledged; if not (or on
** any error) the program says so, prints no figures and exits non-zero.
**
** PostgreSQL: --pg URL benchmarks that database (its table raw_records and
** the "counter" records of pgs_records are replaced, and removed at the
** end).  Without --pg a private cluster is started with scripts/pgtest.sh
** (loopback only, fsync and synchronous_commit on, data under /tmp; the
** script is found in the source tree, or --pgtest PATH) in DIR/pg, and
** stopped at the end: after a failure too, and on SIGINT, SIGTERM or
** SIGHUP (which also remove DIR).  If it cannot be started, the program
** says so and exits non-zero: PostgreSQL is never skipped silently.
**
** Output: a table per engine and a summary, then one `NAME VALUE UNIT`
** line per figure.  Options: --seconds S (2), --servers N (10000),
** --stored N (1000000), --reactivations M (100000), --engines LIST
** (sqlite,lmdb,postgresql), --pg URL, --pgtest PATH, --dir D (.), --quick
** (1000 servers, 20000 stored, 5000 reactivations, 0.5 s: a smoke test).
*/
#define BENCH_NAME "engines"
#define BENCH_STORE
#include "bench.h"
#include "internal.h" /* pgsi_record_encoded_version: the LMDB adapter's version read */
#include "pgs.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PGS_SOURCE_DIR
#define PGS_SOURCE_DIR "."
#endif

typedef struct options {
    store_config cfg;
    unsigned engines;   /* bit e: engines[e] runs */
    const char *pg;     /* --pg: a database to use; NULL: start a cluster */
    const char *pgtest; /* the script that starts one */
} options;

/* One engine's run: what its functions need and set. */
typedef struct run {
    const options *o;
    const char *dir;          /* the run's directory */
    const char *pg_url;       /* the PostgreSQL database */
    char url[PATH_MAX + 64];  /* the pgs store */
    tmpl t;
    raw_writer *w;            /* the raw reference (set by open) */
    raw_reader rd;
    void *raw;                /* the engine's own (malloc'd by open) */
} run;

typedef struct engine {
    const char *name, *label; /* in figure names; in tables */
    const char *sync;         /* how a commit is made durable */
    const char *url;          /* the pgs store's URL, a format of the run's
                                 directory; NULL: the PostgreSQL database */
    int (*open)(run *r);      /* the raw reference over the servers' rows */
    void (*close)(run *r);    /* after open, even a failed one */
} engine;

/* ------------------------------------------------------------------------
** SQLite: the raw reference of bench/durable.c.
*/
typedef struct sqlite_ref {
    sqlite_raw raw;
    sqlite_reader reader;
} sqlite_ref;

static int sq_open(run *r)
{
    sqlite_ref *s = calloc(1, sizeof *s);
    if (!(r->raw = s))
        return fail("raw SQLite", PGS_ENOMEM);
    char raw_db[PATH_MAX + 16];
    snprintf(raw_db, sizeof raw_db, "%s/raw.db", r->dir);
    r->rd = sqlite_reader_of(&s->reader, r->url + strlen("sqlite:")); /* the store's file */
    r->w = &s->raw.w;
    return sqlite_raw_open(&s->raw, raw_db, &r->t, r->o->cfg.servers);
}

static void sq_close(run *r)
{
    sqlite_ref *s = r->raw;
    if (s)
        sqlite_raw_close(&s->raw);
    free(s);
}

/* ------------------------------------------------------------------------
** LMDB: a second environment in the adapter's layout (src/storage/lmdb.c).
*/
#define LMDB_KEY 16 /* "counter", its NUL, 8 key bytes */

typedef struct lmdb_ref {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *rtxn;          /* the reader's: reset between reads */
    const tmpl *t;
    uint64_t first, stored; /* the stored servers, written in at reader open */
    raw_writer w;
} lmdb_ref;

static int mdb_fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, what, mdb_strerror(rc));
    return -1;
}

static MDB_val lmdb_key(uint64_t i, unsigned char kb[LMDB_KEY])
{
    memcpy(kb, "counter", 8);
    key_of(i, kb + 8);
    return (MDB_val){LMDB_KEY, kb};
}

/* Row i's record at `version`, holding *c, with the raw checksum. */
static void lmdb_record(const lmdb_ref *l, uint64_t i, const counter *c, uint64_t version,
                        pgs_record *rec)
{
    counter first;
    record_of(i, l->t, &first, rec);
    rec->version = version;
    rec->state = c;
    rec->checksum = raw_checksum(i, version);
}

/* The adapter's put: the stored version must be `expected` (0: none),
** then the record's encoding replaces the stored one. */
static int lmdb_put(lmdb_ref *l, MDB_txn *txn, uint64_t i, const pgs_record *rec,
                    uint64_t expected)
{
    unsigned char kb[LMDB_KEY];
    MDB_val k = lmdb_key(i, kb), v;
    uint64_t stored = 0;
    int rc = mdb_get(txn, l->dbi, &k, &v);
    if (rc && rc != MDB_NOTFOUND)
        return mdb_fail("raw mdb_get", rc);
    if (!rc && pgsi_record_encoded_version(v.mv_data, v.mv_size, &stored))
        return fail("raw LMDB stored record", PGS_ECORRUPT);
    if (stored != expected) {
        fprintf(stderr, "%s: raw LMDB row %" PRIu64 " holds version %" PRIu64 ", not %" PRIu64
                "\n", BENCH_NAME, i, stored, expected);
        return -1;
    }
    pgs_bytes enc = {0};
    if ((rc = pgs_record_encode(rec, &enc)))
        return fail("pgs_record_encode", rc);
    v = (MDB_val){enc.len, enc.data};
    rc = mdb_put(txn, l->dbi, &k, &v, 0);
    pgs_bytes_free(&enc);
    return rc ? mdb_fail("raw mdb_put", rc) : 0;
}

/* Commits txn if ok, else aborts it. */
static int lmdb_end(MDB_txn *txn, int ok)
{
    if (!ok) {
        mdb_txn_abort(txn);
        return -1;
    }
    int rc = mdb_txn_commit(txn);
    return rc ? mdb_fail("raw mdb_txn_commit", rc) : 0;
}

static int lmdb_txn(raw_writer *w, const size_t *idx, size_t b)
{
    lmdb_ref *l = w->self;
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc)
        return mdb_fail("raw mdb_txn_begin", rc);
    for (size_t j = 0; !rc && j < b; j++) {
        uint64_t v;
        pgs_record rec;
        const counter *c = raw_turn(w, idx[j], &v);
        lmdb_record(l, idx[j], c, v + 1, &rec);
        rc = lmdb_put(l, txn, idx[j], &rec, v);
    }
    return lmdb_end(txn, !rc);
}

/* Stores rows [first, first + n) as first written, FILL_BATCH per txn. */
static int lmdb_fill(lmdb_ref *l, uint64_t first, uint64_t n)
{
    int rc = 0;
    for (uint64_t done = 0; !rc && done < n;) {
        MDB_txn *txn;
        if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)))
            return mdb_fail("raw mdb_txn_begin (fill)", rc);
        for (uint64_t end = done + FILL_BATCH < n ? done + FILL_BATCH : n; !rc && done < end;
             done++) {
            pgs_record rec;
            counter c = {.n = start_value(first + done)};
            lmdb_record(l, first + done, &c, 1, &rec);
            rc = lmdb_put(l, txn, first + done, &rec, 0);
        }
        rc = lmdb_end(txn, !rc);
    }
    return rc;
}

/* An environment like the adapter's, its map big enough for `rows`. */
static int lmdb_env_open(lmdb_ref *l, const char *dir, size_t rows)
{
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "%s: cannot make %s: %s\n", BENCH_NAME, dir, strerror(errno));
        return -1;
    }
    int rc = mdb_env_create(&l->env);
    if (rc) {
        l->env = NULL;
        return mdb_fail("raw mdb_env_create", rc);
    }
    MDB_txn *txn;
    rc = mdb_env_set_maxdbs(l->env, 2);
    if (!rc) /* 1 KiB per record, in whole MiB: far more than it takes */
        rc = mdb_env_set_mapsize(l->env, ((size_t)256 + rows / 1024 + 1) << 20);
    if (!rc)
        rc = mdb_env_open(l->env, dir, MDB_NOTLS, 0644);
    if (!rc)
        rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc)
        return mdb_fail("raw LMDB open", rc);
    rc = mdb_dbi_open(txn, "records", MDB_CREATE, &l->dbi);
    if (rc)
        mdb_fail("raw mdb_dbi_open", rc);
    return lmdb_end(txn, !rc);
}

/* Walks every record once, as pgs_register's scan walks the pgs store. */
static int lmdb_walk(lmdb_ref *l)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return mdb_fail("raw LMDB walk", rc);
    if (!(rc = mdb_cursor_open(txn, l->dbi, &cur))) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return rc == MDB_NOTFOUND ? 0 : mdb_fail("raw LMDB walk", rc);
}

static int lmdb_reader_open(void *self)
{
    lmdb_ref *l = self;
    if (lmdb_fill(l, l->first, l->stored) || lmdb_walk(l))
        return -1;
    int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->rtxn);
    if (rc) {
        l->rtxn = NULL;
        return mdb_fail("raw LMDB reader", rc);
    }
    mdb_txn_reset(l->rtxn);
    return 0;
}

static int lmdb_reader_read(void *self, uint64_t idx)
{
    lmdb_ref *l = self;
    unsigned char kb[LMDB_KEY];
    MDB_val k = lmdb_key(idx, kb), v;
    counter c = {0};
    int rc = mdb_txn_renew(l->rtxn);
    if (rc)
        return mdb_fail("raw mdb_txn_renew", rc);
    rc = mdb_get(l->rtxn, l->dbi, &k, &v);
    if (!rc && v.mv_size >= sizeof c) /* the state ends the encoding (record.c) */
        memcpy(&c, (const char *)v.mv_data + v.mv_size - sizeof c, sizeof c);
    mdb_txn_reset(l->rtxn);
    if (rc)
        return mdb_fail("raw LMDB point read", rc);
    if (c.n != start_value(idx)) {
        fprintf(stderr, "%s: raw LMDB record %" PRIu64 " holds %" PRIu64 "\n", BENCH_NAME, idx,
                c.n);
        return -1;
    }
    return 0;
}

static void lmdb_reader_close(void *self)
{
    lmdb_ref *l = self;
    if (l->rtxn)
        mdb_txn_abort(l->rtxn);
    l->rtxn = NULL;
}

static int lm_open(run *r)
{
    lmdb_ref *l = calloc(1, sizeof *l);
    if (!(r->raw = l))
        return fail("raw LMDB", PGS_ENOMEM);
    const store_config *cfg = &r->o->cfg;
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/raw-lmdb", r->dir);
    l->t = &r->t;
    l->first = cfg->servers;
    l->stored = cfg->stored;
    r->w = &l->w;
    r->rd = (raw_reader){l, lmdb_reader_open, lmdb_reader_read, lmdb_reader_close};
    if (raw_writer_init(&l->w, cfg->servers, l, lmdb_txn) ||
        lmdb_env_open(l, dir, cfg->servers + cfg->stored))
        return -1;
    return lmdb_fill(l, 0, cfg->servers);
}

static void lm_close(run *r)
{
    lmdb_ref *l = r->raw;
    if (!l)
        return;
    if (l->env)
        mdb_env_close(l->env);
    raw_writer_free(&l->w);
    free(l);
}

/* ------------------------------------------------------------------------
** PostgreSQL: a table beside the adapter's (src/storage/postgres.c), and
** its statements on it.
*/
#define PG_COLS "version, schema_version, args, options, state, checksum"

static const char pg_schema[] =
    "DROP TABLE IF EXISTS raw_records;"
    "CREATE TABLE raw_records(behaviour text COLLATE \"C\" NOT NULL,"
    " key bytea NOT NULL, version bigint NOT NULL, schema_version bigint NOT NULL,"
    " args bytea NOT NULL, options bytea NOT NULL, state bytea NOT NULL,"
    " checksum bigint NOT NULL, PRIMARY KEY(behaviour, key)) WITH (fillfactor = 90);";
/* Left by an interrupted run, they would make the fill conflict. */
#define PG_FORGET "DELETE FROM pgs_records WHERE behaviour = 'counter';"
static const char pg_insert[] =
    "INSERT INTO raw_records(behaviour, key, " PG_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
static const char pg_update[] =
    "WITH w AS (UPDATE raw_records SET version = $3, schema_version = $4, "
    "args = $5, options = $6, state = $7, checksum = $8 "
    "WHERE behaviour = $1 AND key = $2 AND version = $9 RETURNING 1) "
    "SELECT pgs_expect_one(count(*)) FROM w";
static const char pg_get[] =
    "SELECT " PG_COLS " FROM pgs_records WHERE behaviour = $1 AND key = $2";
/* text, bytea, int8: as the adapter binds them. */
static const Oid pg_types[9] = {25, 17, 20, 20, 17, 17, 17, 20, 20};

typedef struct pg_ref {
    PGconn *w;       /* writes raw_records */
    PGconn *r;       /* reads pgs_records, beside the runtime */
    const char *url;
    const tmpl *t;
    int tidy;        /* the user's database: leave it as found */
    raw_writer rw;
} pg_ref;

/* A statement's parameters, in binary; points into itself. */
typedef struct pg_params {
    const char *v[9];
    int len[9], fmt[9];
    unsigned char key[8], num[4][8];
} pg_params;

static void pg_bytes(pg_params *p, int i, const void *data, size_t len)
{
    p->v[i] = len ? data : ""; /* never NULL, which would be SQL NULL */
    p->len[i] = (int)len;
    p->fmt[i] = 1;
}

static void pg_int8(pg_params *p, int i, unsigned char room[8], uint64_t x)
{
    for (int b = 7; b >= 0; b--, x >>= 8)
        room[b] = (unsigned char)x;
    pg_bytes(p, i, room, 8);
}

static void pg_ref_params(pg_params *p, uint64_t i)
{
    key_of(i, p->key);
    pg_bytes(p, 0, "counter", 7);
    pg_bytes(p, 1, p->key, sizeof p->key);
}

/* Row i's record at `version` holding *c; an UPDATE also gets the
** version it expects.  Returns the number of parameters. */
static int pg_row(pg_params *p, const tmpl *t, uint64_t i, const counter *c, uint64_t version,
                  uint64_t expected)
{
    pg_ref_params(p, i);
    pg_int8(p, 2, p->num[0], version);
    pg_int8(p, 3, p->num[1], t->schema);
    pg_bytes(p, 4, NULL, 0); /* no start arguments */
    pg_bytes(p, 5, t->options, t->options_len);
    pg_bytes(p, 6, c, sizeof *c);
    pg_int8(p, 7, p->num[2], raw_checksum(i, version));
    pg_int8(p, 8, p->num[3], expected);
    return expected ? 9 : 8;
}

static int pg_fail(PGconn *pg, const char *what)
{
    fprintf(stderr, "%s: %s: %s", BENCH_NAME, what,
            pg ? PQerrorMessage(pg) : "out of memory\n");
    return -1;
}

static void pg_quiet(void *arg, const char *message)
{
    (void)arg, (void)message; /* NOTICEs ("does not exist, skipping") are not errors */
}

static int pg_connect(const char *url, PGconn **out)
{
    *out = PQconnectdb(url);
    if (!*out || PQstatus(*out) != CONNECTION_OK)
        return pg_fail(*out, "cannot connect");
    PQsetNoticeProcessor(*out, pg_quiet, NULL);
    return 0;
}

/* Runs sql (the simple protocol: several statements may follow). */
static int pg_exec(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    PQclear(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : pg_fail(pg, sql);
}

static int pg_prepare(PGconn *pg, const char *name, const char *sql, int nparams)
{
    PGresult *res = PQprepare(pg, name, sql, nparams, pg_types);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? 0 : pg_fail(pg, sql);
}

/* Row i's next turn (update) or its first version (insert), sent. */
static int pg_send(pg_ref *g, int update, size_t i)
{
    pg_params p;
    uint64_t v = 0;
    const counter *c = update ? raw_turn(&g->rw, i, &v) : &g->rw.state[i];
    int n = pg_row(&p, g->t, i, c, v + 1, v);
    return PQsendQueryPrepared(g->w, update ? "raw_update" : "raw_insert", n, p.v, p.len,
                               p.fmt, 1);
}

/* Reads the results of `queries` pipelined queries and their sync; 1 if
** every one succeeded. */
static int pg_results(PGconn *pg, size_t queries)
{
    int ok = 1;
    for (size_t i = 0; i < queries; i++) {
        PGresult *res;
        int got = 0;
        while ((res = PQgetResult(pg))) {
            ExecStatusType st = PQresultStatus(res);
            got = 1;
            if (ok && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                fprintf(stderr, "%s: %s", BENCH_NAME, PQresultErrorMessage(res));
                ok = 0;
            }
            PQclear(res);
        }
        if (!got)
            return 0; /* the connection broke */
    }
    PGresult *sync = PQgetResult(pg);
    ok &= sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    return ok;
}

/* BEGIN, the rows' statements and COMMIT, sent at once in pipeline mode
** behind one sync, then every result read: one round trip. */
static int pg_pipeline(pg_ref *g, int update, const size_t *idx, size_t b)
{
    PGconn *pg = g->w;
    if (!PQenterPipelineMode(pg))
        return pg_fail(pg, "PQenterPipelineMode");
    int ok = PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    for (size_t j = 0; ok && j < b; j++)
        ok = pg_send(g, update, idx[j]);
    ok = ok && PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
         PQpipelineSync(pg) && pg_results(pg, b + 2);
    ok = PQexitPipelineMode(pg) && ok;
    return ok ? 0 : pg_fail(pg, update ? "raw update" : "raw fill");
}

/* One autocommitted statement, as the adapter writes a lone record. */
static int pg_update_lone(pg_ref *g, size_t i)
{
    pg_params p;
    uint64_t v;
    const counter *c = raw_turn(&g->rw, i, &v);
    int n = pg_row(&p, g->t, i, c, v + 1, v);
    PGresult *res = PQexecPrepared(g->w, "raw_update", n, p.v, p.len, p.fmt, 1);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok ? 0 : pg_fail(g->w, "raw update");
}

static int pg_txn(raw_writer *w, const size_t *idx, size_t b)
{
    pg_ref *g = w->self;
    return b == 1 ? pg_update_lone(g, idx[0]) : pg_pipeline(g, 1, idx, b);
}

/* The servers' rows, FILL_BATCH per transaction. */
static int pg_fill(pg_ref *g)
{
    size_t *idx = malloc(FILL_BATCH * sizeof *idx);
    if (!idx)
        return fail("raw fill", PGS_ENOMEM);
    int rc = 0;
    for (size_t done = 0, k; !rc && done < g->rw.rows; done += k) {
        k = g->rw.rows - done < FILL_BATCH ? g->rw.rows - done : FILL_BATCH;
        for (size_t j = 0; j < k; j++)
            idx[j] = done + j;
        rc = pg_pipeline(g, 0, idx, k);
    }
    free(idx);
    return rc;
}

static int pg_reader_open(void *self)
{
    pg_ref *g = self;
    return pg_connect(g->url, &g->r) || pg_prepare(g->r, "raw_get", pg_get, 2) ? -1 : 0;
}

static int pg_reader_read(void *self, uint64_t idx)
{
    pg_ref *g = self;
    pg_params p;
    counter c = {0};
    pg_ref_params(&p, idx);
    PGresult *res = PQexecPrepared(g->r, "raw_get", 2, p.v, p.len, p.fmt, 1);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             PQgetlength(res, 0, 4) == sizeof c;
    if (ok)
        memcpy(&c, PQgetvalue(res, 0, 4), sizeof c);
    PQclear(res);
    if (!ok)
        return pg_fail(g->r, "raw point read");
    if (c.n != start_value(idx)) {
        fprintf(stderr, "%s: raw PostgreSQL record %" PRIu64 " holds %" PRIu64 "\n",
                BENCH_NAME, idx, c.n);
        return -1;
    }
    return 0;
}

static void pg_reader_close(void *self)
{
    pg_ref *g = self;
    PQfinish(g->r);
    g->r = NULL;
}

/* The adapter made its schema (pgs_expect_one included) when the
** template was learnt. */
static int pq_open(run *r)
{
    pg_ref *g = calloc(1, sizeof *g);
    if (!(r->raw = g))
        return fail("raw PostgreSQL", PGS_ENOMEM);
    g->url = r->pg_url;
    g->t = &r->t;
    g->tidy = r->o->pg != NULL;
    r->w = &g->rw;
    r->rd = (raw_reader){g, pg_reader_open, pg_reader_read, pg_reader_close};
    if (raw_writer_init(&g->rw, r->o->cfg.servers, g, pg_txn) || pg_connect(g->url, &g->w) ||
        pg_exec(g->w, PG_FORGET) || pg_exec(g->w, pg_schema) ||
        pg_prepare(g->w, "raw_insert", pg_insert, 8) ||
        pg_prepare(g->w, "raw_update", pg_update, 9))
        return -1;
    return pg_fill(g);
}

static void pq_close(run *r)
{
    pg_ref *g = r->raw;
    if (!g)
        return;
    if (g->tidy && g->w && PQstatus(g->w) == CONNECTION_OK)
        pg_exec(g->w, "DROP TABLE IF EXISTS raw_records;" PG_FORGET);
    PQfinish(g->w);
    raw_writer_free(&g->rw);
    free(g);
}

enum { E_SQLITE, E_LMDB, E_PG, NENGINES };

static const engine engines[NENGINES] = {
    [E_SQLITE] = {"sqlite", "SQLite", "WAL, synchronous=FULL: the WAL fsync'd per commit",
                  "sqlite:%s/engines.db", sq_open, sq_close},
    [E_LMDB] = {"lmdb", "LMDB", "default sync: data pages, then the meta page, synced per commit",
                "lmdb:%s/lmdb", lm_open, lm_close},
    [E_PG] = {"postgresql", "PostgreSQL", "synchronous_commit=on: the WAL flushed per commit",
              NULL, pq_open, pq_close},
};

/* ------------------------------------------------------------------------
** A private PostgreSQL cluster, through scripts/pgtest.sh, and what a
** signal must clean up.
*/
typedef struct cluster {
    char dir[PATH_MAX + 8]; /* the script's state directory: DIR/pg */
    const char *script;
    char url[1024];
} cluster;

/* For the signal handler, which can reach nothing else: our cluster while
** it may be running, and the run's directory while it exists. */
static const cluster *volatile live_cluster;
static const char *volatile live_dir;

/* Runs argv[0] (a full path) to its end, its stdout sent to stderr (ours
** holds tables and figures only); 0 if it exited with 0.  Async-signal-
** safe: the signal handler runs it too. */
static int run_child(char *const argv[])
{
    int st = 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int pgtest(const cluster *c, const char *cmd)
{
    char *const argv[] = {"/usr/bin/env", "bash", (char *)c->script, (char *)cmd,
                          (char *)c->dir, NULL};
    return run_child(argv);
}

/* Stops our cluster, removes the run's directory, then dies of the signal
** as if it were not handled. */
static void on_signal(int sig)
{
    const cluster *c = live_cluster;
    const char *dir = live_dir;
    if (c)
        pgtest(c, "stop");
    if (dir) {
        char *const rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
        run_child(rm);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void cluster_stop(cluster *c)
{
    if (live_cluster != c)
        return;
    if (pgtest(c, "stop"))
        fprintf(stderr, "%s: %s stop %s failed\n", BENCH_NAME, c->script, c->dir);
    live_cluster = NULL;
}

static int read_url(const cluster *c, char *url, size_t size)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/url", c->dir);
    FILE *f = fopen(path, "r");
    int ok = f && fgets(url, (int)size, f);
    if (f)
        fclose(f);
    url[ok ? strcspn(url, "\n") : 0] = '\0';
    return ok && url[0] ? 0 : -1;
}

static int cluster_start(cluster *c, const char *run_dir, const char *script)
{
    snprintf(c->dir, sizeof c->dir, "%s/pg", run_dir);
    c->script = script;
    live_cluster = c; /* from here a signal stops whatever started */
    if (pgtest(c, "start") || read_url(c, c->url, sizeof c->url)) {
        fprintf(stderr, "%s: ERROR: could not start PostgreSQL with %s start %s (see above);\n"
                "  it needs a PostgreSQL server (scripts/deps.sh test installs it), or give\n"
                "  --pg URL, or leave it out with --engines sqlite,lmdb\n", BENCH_NAME, script,
                c->dir);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
** Runs and output.
*/
static void print_engine_head(const engine *e, const run *r)
{
    const store_config *cfg = &r->o->cfg;
    printf("== %s: %s\n", e->label, r->url);
    printf("%s;\nwrite mode sync, %zu counter servers (16-byte state), default workers\n"
           "(%ld cores); per concurrency about %.2f s each of pgs and raw %s,\n"
           "in %d alternating slices\n\n", e->sync, cfg->servers,
           sysconf(_SC_NPROCESSORS_ONLN), cfg->seconds, e->label, SLICES);
}

static int run_engine(const engine *e, run *r, results *res)
{
    snprintf(r->url, sizeof r->url, e->url ? e->url : "%s", e->url ? r->dir : r->pg_url);
    int rc = learn_template(r->url, &r->t);
    if (!rc)
        rc = e->open(r);
    if (!rc)
        rc = bench_durable(&r->o->cfg, r->url, &r->t, r->w, res);
    if (!rc) {
        print_engine_head(e, r);
        print_durable_rows(res, e->label);
        rc = bench_cold(&r->o->cfg, r->url, &r->t, &r->rd, &res->cold);
    }
    if (!rc) {
        print_cold_rows(&res->cold, e->label);
        printf("\n");
    }
    e->close(r);
    if (rc)
        fprintf(stderr, "%s: %s failed\n", BENCH_NAME, e->label);
    return rc;
}

/* The row of the 64-caller phase. */
static const durable_result *at64(const results *r)
{
    for (int i = 0; i < NCALLER_SETS; i++)
        if (r->d[i].callers == 64)
            return &r->d[i];
    return &r->d[0];
}

static void print_summary(const options *o, const results *res)
{
    printf("summary (raw: the same engine, same work, at the batch pgs achieved):\n");
    printf("  %-10s %10s %10s %7s %10s %10s %7s %10s %10s %7s\n", "engine", "1 caller/s",
           "raw B=1", "ratio", "64 calls/s", "raw same B", "ratio", "reactiv/s",
           "raw reads", "ratio");
    for (int e = 0; e < NENGINES; e++) {
        if (!(o->engines & 1u << e))
            continue;
        const results *r = &res[e];
        const durable_result *one = &r->d[0], *d = at64(r);
        printf("  %-10s %10.0f %10.0f %7.3f %10.0f %10.0f %7.3f %10.0f %10.0f %7.3f\n",
               engines[e].name, one->rate, one->raw_rate, per(one->rate, one->raw_rate),
               d->rate, d->raw_rate, per(d->rate, d->raw_rate), r->cold.rate, r->cold.raw_rate,
               per(r->cold.rate, r->cold.raw_rate));
    }
}

/* bench/durable's figures, suffixed _<engine>, and the raw rate beside
** each concurrency under a stable name (raw_E_batchB's B varies). */
static void print_engine_figures(const engine *e, const results *r)
{
    char suffix[32];
    snprintf(suffix, sizeof suffix, "_%s", e->name);
    print_figures(r, e->name, suffix);
    for (int i = 0; i < NCALLER_SETS; i++)
        printf("raw_%s_at_durable%d %.1f per_s\n", e->name, r->d[i].callers, r->d[i].raw_rate);
}

static int run_engines(const options *o, const char *dir, const char *pg_url, results *res)
{
    for (int e = 0; e < NENGINES; e++) {
        run r = {.o = o, .dir = dir, .pg_url = pg_url};
        if ((o->engines & 1u << e) && run_engine(&engines[e], &r, &res[e]))
            return -1;
    }
    return 0;
}

/* Starts a cluster unless --pg named a database or PostgreSQL is not
** wanted; *url receives the database's URL. */
static int pg_setup(const options *o, const char *dir, cluster *c, const char **url)
{
    *url = o->pg;
    if (!(o->engines & 1u << E_PG) || o->pg)
        return 0;
    if (cluster_start(c, dir, o->pgtest))
        return -1;
    *url = c->url;
    return 0;
}

/* ------------------------------------------------------------------------
** Options and main.
*/
static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--servers N] [--stored N] [--reactivations M]\n"
            "       [--engines sqlite,lmdb,postgresql] [--pg URL] [--pgtest PATH]\n"
            "       [--dir D] [--quick]\n", argv0);
    return 2;
}

static int parse_engines(const char *list, unsigned *set)
{
    *set = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int e = 0; e < NENGINES; e++)
            if (strlen(engines[e].name) == n && !strncmp(p, engines[e].name, n))
                found = e;
        if (found < 0) {
            fprintf(stderr, "%s: unknown engine '%.*s' (sqlite, lmdb, postgresql)\n",
                    BENCH_NAME, (int)n, p);
            return -1;
        }
        *set |= 1u << found;
        p += n + (p[n] == ',');
    }
    return *set ? 0 : -1;
}

static int more_args(void *arg, const char *opt, const char *val)
{
    options *o = arg;
    if (strcmp(opt, "--engines") == 0)
        return parse_engines(val, &o->engines);
    if (strcmp(opt, "--pg") == 0)
        o->pg = val;
    else if (strcmp(opt, "--pgtest") == 0)
        o->pgtest = val;
    else
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.cfg = {.servers = 10000, .stored = 1000000, .reactivations = 100000,
                         .seconds = 2.0, .dir = "."},
                 .engines = (1u << NENGINES) - 1,
                 .pgtest = PGS_SOURCE_DIR "/scripts/pgtest.sh"};
    static results res[NENGINES];
    char dir[PATH_MAX];
    cluster c = {0};
    const char *pg_url;
    if (store_args(argc, argv, &o.cfg, more_args, &o))
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (run_dir_make(dir, o.cfg.dir))
        return 1;
    live_dir = dir;
    catch_signals();
    int rc = pg_setup(&o, dir, &c, &pg_url);
    if (!rc)
        rc = run_engines(&o, dir, pg_url, res);
    cluster_stop(&c);
    live_dir = NULL;
    run_dir_remove(dir);
    if (rc) { /* no figures: a dashboard must not record a failed run's zeros */
        fprintf(stderr, "%s: FAILED; no figures printed\n", BENCH_NAME);
        return 1;
    }
    print_summary(&o, res);
    printf("\n");
    for (int e = 0; e < NENGINES; e++)
        if (o.engines & 1u << e)
            print_engine_figures(&engines[e], &res[e]);
    return 0;
}
