/*
** postgres.c — the "postgresql://" storage adapter: state in a PostgreSQL
** database, which several processes (and machines) may share.
**
** URL: any libpq connection URI, postgresql://[user[:pw]@]host[:port]/db
** [?param=value&...] with libpq's own parameters (sslmode, options, ...).
** Unless the URL says otherwise, connect_timeout is 10 s and TCP keepalives
** and tcp_user_timeout bound how long a dead peer can hold a call.
**
** Connections.  A PGconn is not thread-safe, so each one has its own
** mutex, as in sqlite.c: one writer applies batches (the runtime's group
** commit runs one at a time anyway) and a few readers serve get and scan
** concurrently, each connected on first use.  No process-exclusive lock is
** taken: sharing the database between processes is the point.
**
** Schema (pgs_meta.schema = 2), created if missing by the first process
** to open the database, in one transaction under an advisory lock so that
** processes opening at once do not race:
**   pgs_records(behaviour text COLLATE "C", key bytea, version, schema_version,
**               args, options, state, checksum; PRIMARY KEY(behaviour, key))
**   pgs_history(the same columns; PRIMARY KEY(behaviour, key, version),
**               FOREIGN KEY(behaviour, key) REFERENCES pgs_records
**               ON DELETE CASCADE)
**   pgs_expect_one(n): raises SQLSTATE PGS01 unless n = 1 (below).
** A schema 1 database (before history) gains pgs_history at open, under
** the same lock.  A database written by a newer pgs (schema > 2) is
** refused: PGS_EVERSION.  Every value travels in binary (bytea as raw
** bytes, int8 big-endian), and every statement is prepared once per
** connection.
**
** Writes.  A PUT expecting version 0 is INSERT ... ON CONFLICT DO NOTHING;
** expecting v, UPDATE ... WHERE behaviour, key AND version = v.  Each is
** wrapped as WITH w AS (...) SELECT pgs_expect_one(count(*)) FROM w, so the
** version check fails inside the server: a stale expected version aborts
** the transaction there, and nothing of the batch is written.  That keeps
** a batch to one round trip: BEGIN, the writes and COMMIT go out together
** in libpq's pipeline mode, and the results come back together.  A
** conflict then needs a ROLLBACK (a second trip, on that path only).  The
** writes of a batch are sent sorted by (behaviour, key), so two processes'
** batches lock rows in the same order and cannot deadlock.  A lone write
** is one autocommitted statement.  Under READ COMMITTED an UPDATE that
** waited for a concurrent writer re-checks its WHERE on the new row, and
** INSERT ... ON CONFLICT waits for a concurrent insert of the key: either
** way the loser sees 0 rows, a conflict.  However large the batch, the
** pipeline cannot deadlock on full socket buffers: when libpq cannot send,
** it reads (and buffers) what the server has answered so far.
**
** History.  The UPDATE carries two more data-modifying CTEs: one copies
** the replaced row (version = expected, read from the statement's
** snapshot, which is the row the UPDATE replaces when it succeeds) into
** pgs_history if keep > 0, one trims the ref's history below v - keep.
** All CTEs see one snapshot, so the trim never sees the row just kept;
** it cannot need to (the kept version is above v - 1 - keep).  A DELETE
** takes the history with it through the foreign key: the cascade runs
** after the record's row is locked, with a fresh snapshot, so it also
** removes history that a concurrent writer committed while we waited for
** the lock.  And no history can outlive its record, nor be added for a
** record that is gone.  An INSERT starts a life, which has no history.
**
** Reads.  get is one SELECT by primary key.  scan and history read pages
** of PAGE_ROWS rows in order (keyset paging: each page starts after the
** last key, or below the last version, seen), each page streamed row by
** row in libpq's single-row mode: a million rows (or a few 16 MiB states)
** are never buffered, and no transaction stays open while the caller's
** function runs.
**
** Failures.  Before each operation a connection is checked without
** blocking (a poll sees a socket the server closed while we sat idle, as
** when it restarted) and reconnected if needed; after a failed
** connect, the next attempt waits for a hold-off (as long as the failed
** attempt took, at least RETRY_MIN_NS), so calls fail fast while the
** server is away instead of each waiting for a timeout.  An operation
** whose connection breaks fails with PGS_ESTORAGE and the connection is
** dropped; a read is tried once more on a new connection (reads have no
** effect to double).  A batch is not: if its connection broke after COMMIT
** was sent and before the answer came, its outcome is unknown, and it is
** reported as PGS_ESTORAGE all the same.  The runtime then fails the
** calls behind it and reloads each server from storage: a commit that did
** land is found by that reload, and nothing acknowledged can be lost,
** because no acknowledgement was given.  SQLSTATEs: PGS01 (our version
** check), 23505, 40001 and 40P01 are PGS_ECONFLICT; 53100 (disk full) is
** PGS_ENOSPC; 54000 is PGS_ETOOBIG; the rest, connection loss included,
** PGS_ESTORAGE.  At open, a URL libpq cannot parse is PGS_EURL; a server
** that cannot be reached or refuses us, PGS_ESTORAGE.
**
** Not PGS_STORAGE_INLINE: every batch is a network round trip and an
** fsync on the server, which group commit amortises.
*/
#include "internal.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCHEMA 2
#define READERS 3
#define PAGE_ROWS 500
#define STR_(x) #x
#define STR(x) STR_(x)
#define RETRY_MIN_NS (100 * 1000000LL)
#define SCHEMA_LOCK "31638942611891048" /* advisory lock key: "pgs_sch" in ASCII */

/* ------------------------------------------------------------------------
** Statements.  Parameters are numbered alike in all of them, so one table
** of types serves every statement: $1 behaviour, $2 key, $3 version,
** $4 schema_version, $5 args, $6 options, $7 state, $8 checksum,
** $9 the expected version, $10 keep.
*/
enum { Q_GET, Q_INSERT, Q_UPDATE, Q_DELETE, Q_SCAN_ONE, Q_SCAN_ONE_AFTER, Q_SCAN_ALL,
       Q_SCAN_ALL_AFTER, Q_HISTORY, Q_HISTORY_BELOW, NQ };

#define NPARAMS 10
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
static const Oid param_types[NPARAMS] = {OID_TEXT,  OID_BYTEA, OID_INT8, OID_INT8, OID_BYTEA,
                                         OID_BYTEA, OID_BYTEA, OID_INT8, OID_INT8, OID_INT8};

#define COLS "version, schema_version, args, options, state, checksum"
#define SCAN "SELECT behaviour, key, " COLS " FROM pgs_records "
#define HISTORY \
    "SELECT behaviour, key, " COLS " FROM pgs_history WHERE behaviour = $1 AND key = $2 "
#define PAGE " LIMIT " STR(PAGE_ROWS)

static const struct {
    const char *name, *sql;
    int nparams;
} stmt[NQ] = {
    [Q_GET] = {"pgs_get", "SELECT " COLS " FROM pgs_records WHERE behaviour = $1 AND key = $2", 2},
    [Q_INSERT] = {"pgs_insert",
                  "WITH w AS (INSERT INTO pgs_records(behaviour, key, " COLS ") "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1) "
                  "SELECT pgs_expect_one(count(*)) FROM w", 8},
    /* k reads the row w replaces (one snapshot for all); $10 > 0 lets the
    ** plan skip it when nothing is kept. */
    [Q_UPDATE] = {"pgs_update",
                  "WITH w AS (UPDATE pgs_records SET version = $3, schema_version = $4, "
                  "args = $5, options = $6, state = $7, checksum = $8 "
                  "WHERE behaviour = $1 AND key = $2 AND version = $9 RETURNING 1), "
                  "k AS (INSERT INTO pgs_history SELECT behaviour, key, " COLS
                  " FROM pgs_records WHERE behaviour = $1 AND key = $2 AND version = $9"
                  " AND $10 > 0 AND version >= $3 - $10 ON CONFLICT (behaviour, key, version)"
                  " DO UPDATE SET (schema_version, args, options, state, checksum) ="
                  " (excluded.schema_version, excluded.args, excluded.options,"
                  " excluded.state, excluded.checksum)), "
                  "t AS (DELETE FROM pgs_history WHERE behaviour = $1 AND key = $2"
                  " AND version < $3 - $10) "
                  "SELECT pgs_expect_one(count(*)) FROM w", 10},
    [Q_DELETE] = {"pgs_delete", "DELETE FROM pgs_records WHERE behaviour = $1 AND key = $2", 2},
    [Q_SCAN_ONE] = {"pgs_scan_one", SCAN "WHERE behaviour = $1 ORDER BY key" PAGE, 1},
    [Q_SCAN_ONE_AFTER] = {"pgs_scan_one_after",
                          SCAN "WHERE behaviour = $1 AND key > $2 ORDER BY key" PAGE, 2},
    [Q_SCAN_ALL] = {"pgs_scan_all", SCAN "ORDER BY behaviour, key" PAGE, 0},
    [Q_SCAN_ALL_AFTER] = {"pgs_scan_all_after",
                          SCAN "WHERE (behaviour, key) > ($1, $2) ORDER BY behaviour, key" PAGE,
                          2},
    [Q_HISTORY] = {"pgs_history", HISTORY "ORDER BY version DESC" PAGE, 2},
    [Q_HISTORY_BELOW] = {"pgs_history_below",
                         HISTORY "AND version < $3 ORDER BY version DESC" PAGE, 3},
};

/* Everything IF NOT EXISTS: the same script makes a database or takes a
** schema 1 one up to 2. */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS pgs_meta(name text PRIMARY KEY, value bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS pgs_records(behaviour text COLLATE \"C\" NOT NULL,"
    " key bytea NOT NULL, version bigint NOT NULL, schema_version bigint NOT NULL,"
    " args bytea NOT NULL, options bytea NOT NULL, state bytea NOT NULL,"
    " checksum bigint NOT NULL, PRIMARY KEY(behaviour, key)) WITH (fillfactor = 90);"
    "CREATE TABLE IF NOT EXISTS pgs_history(LIKE pgs_records,"
    " PRIMARY KEY(behaviour, key, version),"
    " FOREIGN KEY(behaviour, key) REFERENCES pgs_records ON DELETE CASCADE);"
    /* The version check, failing the statement (and so the transaction). */
    "CREATE OR REPLACE FUNCTION pgs_expect_one(n bigint) RETURNS bigint LANGUAGE plpgsql AS $$"
    " BEGIN IF n <> 1 THEN RAISE EXCEPTION 'pgs: version conflict: the stored version is"
    " not the expected one' USING ERRCODE = 'PGS01'; END IF; RETURN n; END $$;"
    "INSERT INTO pgs_meta VALUES ('schema', " STR(SCHEMA) ") ON CONFLICT (name)"
    " DO UPDATE SET value = excluded.value WHERE pgs_meta.value < excluded.value;";

/* ------------------------------------------------------------------------
** The store.
*/
typedef struct conn {
    pthread_mutex_t lock; /* held for every use of pg */
    PGconn *pg;           /* NULL: not connected (yet, or dropped after a failure) */
    int64_t retry_at;     /* pgsi_now_ns() before which no connect is tried */
} conn;

typedef struct store {
    conn writer;
    conn readers[READERS];
    _Atomic unsigned next_reader;
    char *url; /* malloc'd */
} store;

/* ------------------------------------------------------------------------
** Errors.
*/
static int map_sqlstate(const char *st)
{
    if (!st)
        return PGS_ESTORAGE; /* libpq's own: the connection */
    if (!strcmp(st, "PGS01") || !strcmp(st, "23505") || !strcmp(st, "40001") ||
        !strcmp(st, "40P01"))
        return PGS_ECONFLICT;
    if (!strcmp(st, "53100"))
        return PGS_ENOSPC;
    if (!strcmp(st, "54000"))
        return PGS_ETOOBIG;
    return PGS_ESTORAGE;
}

static int result_rc(const PGresult *r)
{
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK: case PGRES_TUPLES_OK: case PGRES_SINGLE_TUPLE:
        return PGS_OK;
    case PGRES_FATAL_ERROR:
        return map_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE));
    default:
        return PGS_ESTORAGE;
    }
}

/* Runs one statement of the simple protocol; PGS_OK if it succeeded. */
static int exec_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    int rc = r ? result_rc(r) : PGS_ESTORAGE;
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------------
** Connections.
*/
static void quiet(void *arg, const char *message)
{
    (void)arg, (void)message; /* NOTICEs ("already exists, skipping") are not errors */
}

/* Defaults first: a URL's own values, expanded from "dbname", win. */
static PGconn *pg_connect(const char *url)
{
    static const char *const keys[] = {"connect_timeout", "application_name",
                                       "keepalives_idle", "keepalives_interval",
                                       "keepalives_count", "tcp_user_timeout", "dbname", NULL};
    const char *vals[] = {"10", "pgs", "30", "10", "3", "60000", url, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg && PQstatus(pg) == CONNECTION_OK) {
        PQsetNoticeProcessor(pg, quiet, NULL);
        return pg;
    }
    PQfinish(pg);
    return NULL;
}

/* Reads every result up to a pipeline's sync.  Returns the first failure;
** a broken connection is PGS_ESTORAGE (the caller sees it and drops it). */
static int pipeline_results(PGconn *pg, size_t queries)
{
    int rc = PGS_OK;
    for (size_t i = 0; i < queries; i++) {
        PGresult *r;
        int got = 0;
        while (PQstatus(pg) == CONNECTION_OK && (r = PQgetResult(pg))) {
            got = 1;
            if (!rc && PQresultStatus(r) != PGRES_PIPELINE_ABORTED)
                rc = result_rc(r);
            PQclear(r);
        }
        if (!got || PQstatus(pg) != CONNECTION_OK)
            return PGS_ESTORAGE;
    }
    PGresult *sync = PQgetResult(pg);
    int synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    return synced ? rc : PGS_ESTORAGE;
}

/* Prepares every statement on pg, in one round trip. */
static int prepare_all(PGconn *pg)
{
    if (!PQenterPipelineMode(pg))
        return PGS_ESTORAGE;
    int sent = 1;
    for (int q = 0; sent && q < NQ; q++)
        sent = PQsendPrepare(pg, stmt[q].name, stmt[q].sql, stmt[q].nparams, param_types);
    int rc = sent && PQpipelineSync(pg) ? pipeline_results(pg, NQ) : PGS_ESTORAGE;
    return PQexitPipelineMode(pg) ? rc : PGS_ESTORAGE;
}

static void conn_drop(conn *c)
{
    PQfinish(c->pg);
    c->pg = NULL;
}

/* 1 if an idle connection is gone.  Next to nothing comes unasked on our
** connections (no LISTEN), so a readable socket is the server closing it:
** a restart, or an administrator's pg_terminate_backend; a rare
** false alarm costs a reconnect.  (PQconsumeInput would read the FATAL
** message and still say all is well: the EOF behind it shows only on the
** next read, and the operation would fail on a dead connection.) */
static int conn_gone(PGconn *pg)
{
    struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
    return PQstatus(pg) != CONNECTION_OK || PQtransactionStatus(pg) != PQTRANS_IDLE ||
           poll(&pfd, 1, 0) != 0;
}

/* Makes c usable: drops a connection the server closed while it sat idle,
** then connects if needed.  A failed connect holds further attempts off,
** so calls fail fast while the server is away. */
static int conn_ready(const store *s, conn *c)
{
    if (c->pg && conn_gone(c->pg))
        conn_drop(c);
    if (c->pg)
        return PGS_OK;
    int64_t t0 = pgsi_now_ns();
    if (t0 < c->retry_at)
        return PGS_ESTORAGE;
    c->pg = pg_connect(s->url);
    if (c->pg && prepare_all(c->pg) != PGS_OK)
        conn_drop(c);
    if (c->pg)
        return PGS_OK;
    int64_t took = pgsi_now_ns() - t0;
    c->retry_at = pgsi_now_ns() + (took > RETRY_MIN_NS ? took : RETRY_MIN_NS);
    return PGS_ESTORAGE;
}

/* After an operation: keeps c only if it is idle and healthy (an error
** may leave it broken, or mid-transaction or mid-pipeline).  Returns 1 if
** it was dropped. */
static int conn_settle(conn *c)
{
    if (!c->pg)
        return 1;
    if (PQstatus(c->pg) == CONNECTION_OK && PQpipelineStatus(c->pg) == PQ_PIPELINE_OFF &&
        PQtransactionStatus(c->pg) == PQTRANS_IDLE)
        return 0;
    conn_drop(c);
    return 1;
}

static void conn_init(conn *c)
{
    pthread_mutex_init(&c->lock, NULL);
    c->pg = NULL;
    c->retry_at = 0;
}

static void conn_close(conn *c)
{
    PQfinish(c->pg);
    pthread_mutex_destroy(&c->lock);
}

/* ------------------------------------------------------------------------
** Schema.
*/

/* The stored schema version: 0 if there is none yet, -1 on error. */
static long long schema_version(PGconn *pg)
{
    PGresult *r = PQexec(pg, "SELECT to_regclass('pgs_meta') IS NOT NULL");
    int exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                 PQgetvalue(r, 0, 0)[0] == 't';
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
    PQclear(r);
    if (!exists)
        return v;
    r = PQexec(pg, "SELECT value FROM pgs_meta WHERE name = 'schema'");
    v = PQresultStatus(r) != PGRES_TUPLES_OK ? -1 : PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

/* Creates what is missing, under the lock, unless a newer pgs made it. */
static int create_schema(PGconn *pg)
{
    int rc = exec_ok(pg, "BEGIN");
    if (!rc)
        rc = exec_ok(pg, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")");
    long long v = rc ? -1 : schema_version(pg);
    if (!rc)
        rc = v < 0 ? PGS_ESTORAGE : v > SCHEMA ? PGS_EVERSION : PGS_OK;
    if (!rc && v < SCHEMA)
        rc = exec_ok(pg, schema_sql);
    if (!rc)
        rc = exec_ok(pg, "COMMIT");
    if (rc)
        exec_ok(pg, "ROLLBACK");
    return rc;
}

/* The usual case, a database already at our schema, takes no lock. */
static int ensure_schema(PGconn *pg)
{
    long long v = schema_version(pg);
    if (v < 0)
        return PGS_ESTORAGE;
    if (v > SCHEMA)
        return PGS_EVERSION;
    return v == SCHEMA ? PGS_OK : create_schema(pg);
}

/* ------------------------------------------------------------------------
** Open and close.
*/
static int url_ok(const char *url)
{
    if (strncasecmp(url, "postgresql://", 13) && strncasecmp(url, "postgres://", 11))
        return PGS_EURL;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    PQconninfoFree(opts);
    PQfreemem(err);
    return opts ? PGS_OK : PGS_EURL;
}

static void pq_close(void *state)
{
    store *s = state;
    if (!s)
        return;
    conn_close(&s->writer);
    for (int i = 0; i < READERS; i++)
        conn_close(&s->readers[i]);
    free(s->url);
    free(s);
}

static int pq_open(const char *url, void **state)
{
    int rc = url_ok(url);
    if (rc)
        return rc;
    store *s = calloc(1, sizeof *s);
    if (!s || !(s->url = strdup(url))) {
        free(s);
        return PGS_ENOMEM;
    }
    conn_init(&s->writer);
    for (int i = 0; i < READERS; i++)
        conn_init(&s->readers[i]);
    /* The writer connects now, so a bad server or database fails here. */
    s->writer.pg = pg_connect(url);
    rc = s->writer.pg ? ensure_schema(s->writer.pg) : PGS_ESTORAGE;
    if (!rc)
        rc = prepare_all(s->writer.pg);
    if (rc) {
        pq_close(s);
        return rc;
    }
    *state = s;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Parameters and rows, in binary.
*/
typedef struct params {
    const char *v[NPARAMS];
    int len[NPARAMS];
    int fmt[NPARAMS];
    unsigned char num[6][8]; /* room for the int8 values */
    int nnum;
} params;

/* A byte string; never NULL, which libpq would send as SQL NULL. */
static void param_bytes(params *p, int i, const void *data, size_t len)
{
    p->v[i] = len ? data : "";
    p->len[i] = (int)len;
    p->fmt[i] = 1;
}

static void param_int8(params *p, int i, uint64_t x)
{
    unsigned char *room = p->num[p->nnum++];
    pgsi_put_be64(room, x);
    param_bytes(p, i, room, 8);
}

static void params_ref(params *p, const pgs_ref *ref)
{
    p->nnum = 0;
    param_bytes(p, 0, ref->name, strlen(ref->name));
    param_bytes(p, 1, ref->key, ref->key_len);
}

/* The parameters of a PUT; *q receives the statement. */
static void params_put(params *p, const pgs_write *w, int *q)
{
    const pgs_record *r = w->record;
    params_ref(p, &r->ref);
    param_int8(p, 2, r->version);
    param_int8(p, 3, r->schema_version);
    param_bytes(p, 4, r->args, r->args_len);
    param_bytes(p, 5, r->options, r->options_len);
    param_bytes(p, 6, r->state, r->state_len);
    param_int8(p, 7, r->checksum);
    if (w->expected_version) {
        param_int8(p, 8, w->expected_version);
        param_int8(p, 9, w->keep);
    }
    *q = w->expected_version ? Q_UPDATE : Q_INSERT;
}

static const pgs_ref *write_ref(const pgs_write *w)
{
    return w->op == PGS_OP_PUT ? &w->record->ref : w->ref;
}

/* The record's fields from a row whose columns start at `col` (COLS). */
static int row_fields(const PGresult *r, int row, int col, pgs_record *rec)
{
    for (int i = 0; i < 6; i++)
        if (PQgetisnull(r, row, col + i) || ((i == 0 || i == 1 || i == 5) &&
                                             PQgetlength(r, row, col + i) != 8))
            return PGS_ECORRUPT;
    uint64_t schema = pgsi_get_be64((const unsigned char *)PQgetvalue(r, row, col + 1));
    if (schema > UINT32_MAX)
        return PGS_ECORRUPT;
    rec->version = pgsi_get_be64((const unsigned char *)PQgetvalue(r, row, col));
    rec->schema_version = (uint32_t)schema;
    rec->args = PQgetvalue(r, row, col + 2);
    rec->args_len = (size_t)PQgetlength(r, row, col + 2);
    rec->options = PQgetvalue(r, row, col + 3);
    rec->options_len = (size_t)PQgetlength(r, row, col + 3);
    rec->state = PQgetvalue(r, row, col + 4);
    rec->state_len = (size_t)PQgetlength(r, row, col + 4);
    rec->checksum = pgsi_get_be64((const unsigned char *)PQgetvalue(r, row, col + 5));
    return PGS_OK;
}

/* A row's ref (behaviour, key); PGS_ECORRUPT if it cannot be a ref. */
static int row_ref(const PGresult *r, int row, pgs_ref *ref)
{
    int nl = PQgetlength(r, row, 0), kl = PQgetlength(r, row, 1);
    if (nl < 1 || nl > PGS_NAME_MAX || kl > PGS_KEY_MAX)
        return PGS_ECORRUPT;
    const char *name = PQgetvalue(r, row, 0); /* libpq NUL-terminates every value */
    if (strlen(name) != (size_t)nl)
        return PGS_ECORRUPT;
    return pgs_ref_make(ref, name, PQgetvalue(r, row, 1), (size_t)kl) ? PGS_ECORRUPT : PGS_OK;
}

/* ------------------------------------------------------------------------
** Reads.
*/
static conn *reader(store *s)
{
    unsigned i = atomic_fetch_add_explicit(&s->next_reader, 1, memory_order_relaxed);
    conn *c = &s->readers[i % READERS];
    pthread_mutex_lock(&c->lock);
    return c;
}

static int get_once(PGconn *pg, const pgs_ref *ref, pgs_record **out)
{
    params p;
    params_ref(&p, ref);
    PGresult *r = PQexecPrepared(pg, stmt[Q_GET].name, 2, p.v, p.len, p.fmt, 1);
    int rc = r ? result_rc(r) : PGS_ESTORAGE; /* NULL: not even sent */
    if (!rc && PQntuples(r) == 0)
        rc = PGS_ENOTFOUND;
    if (!rc) {
        pgs_record rec = {.ref = *ref};
        rc = PQntuples(r) == 1 && PQnfields(r) == 6 ? row_fields(r, 0, 0, &rec) : PGS_ESTORAGE;
        if (!rc)
            rc = pgs_record_copy(&rec, out);
    }
    PQclear(r);
    return rc;
}

/* A read whose connection broke is tried once more, on a new one. */
static int pq_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    store *s = state;
    conn *c = reader(s);
    int rc = PGS_ESTORAGE;
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = conn_ready(s, c);
        if (!rc)
            rc = get_once(c->pg, ref, out);
        if (!conn_settle(c) || !rc)
            break;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* Where a scan or a history walk stands: the last row handed to fn, and
** fn's verdict. */
typedef struct cursor {
    const char *name;   /* scan: the behaviour, NULL: all */
    const pgs_ref *ref; /* history: the ref; NULL: a scan */
    int (*fn)(void *, const pgs_record *);
    void *arg;
    pgs_ref last;
    uint64_t last_version;
    int have_last;
    int stop;  /* fn's non-zero return: the walk is over */
    int rows;  /* rows of the current page */
} cursor;

/* The statement of the next page, and its parameters. */
static int page_query(const cursor *cur, params *p)
{
    if (cur->ref) {
        params_ref(p, cur->ref);
        if (!cur->have_last)
            return Q_HISTORY;
        param_int8(p, 2, cur->last_version);
        return Q_HISTORY_BELOW;
    }
    if (cur->have_last)
        params_ref(p, &cur->last);
    else if (cur->name)
        param_bytes(p, 0, cur->name, strlen(cur->name));
    return cur->name ? (cur->have_last ? Q_SCAN_ONE_AFTER : Q_SCAN_ONE)
                     : (cur->have_last ? Q_SCAN_ALL_AFTER : Q_SCAN_ALL);
}

static int send_page(PGconn *pg, const cursor *cur)
{
    params p = {0};
    int q = page_query(cur, &p);
    return PQsendQueryPrepared(pg, stmt[q].name, stmt[q].nparams, p.v, p.len, p.fmt, 1) &&
           PQsetSingleRowMode(pg);
}

static int page_row(cursor *cur, const PGresult *r)
{
    pgs_record rec;
    memset(&rec, 0, sizeof rec);
    int rc = PQnfields(r) == 8 ? row_ref(r, 0, &rec.ref) : PGS_ESTORAGE;
    if (!rc)
        rc = row_fields(r, 0, 2, &rec);
    if (rc)
        return rc;
    cur->last = rec.ref;
    cur->last_version = rec.version;
    cur->have_last = 1;
    cur->stop = cur->fn(cur->arg, &rec);
    return PGS_OK;
}

/* One page, row by row.  After fn stops the walk or a row is bad, the
** rest of the page is read and dropped: the connection must end idle. */
static int read_page(PGconn *pg, cursor *cur)
{
    cur->rows = 0;
    if (!send_page(pg, cur))
        return PGS_ESTORAGE;
    int rc = PGS_OK;
    PGresult *r;
    while ((r = PQgetResult(pg))) {
        if (!rc && !cur->stop) {
            rc = result_rc(r);
            if (!rc && PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
                cur->rows++;
                rc = page_row(cur, r);
            }
        }
        PQclear(r);
        if (PQstatus(pg) != CONNECTION_OK)
            return PGS_ESTORAGE;
    }
    return rc;
}

/* Pages until one comes back short.  Keyset paging lets a walk whose
** connection broke go on after the last row it delivered: once. */
static int walk(store *s, cursor *cur)
{
    conn *c = reader(s);
    int rc, retries = 1;
    for (;;) {
        rc = conn_ready(s, c);
        if (!rc)
            rc = read_page(c->pg, cur);
        int dropped = conn_settle(c);
        if (cur->stop || (!rc && cur->rows < PAGE_ROWS))
            break;
        if (rc && !(dropped && retries-- > 0))
            break;
    }
    pthread_mutex_unlock(&c->lock);
    return cur->stop ? cur->stop : rc;
}

static int pq_scan(void *state, const char *name, int (*fn)(void *, const pgs_record *),
                   void *arg)
{
    cursor cur = {.name = name, .fn = fn, .arg = arg};
    return walk(state, &cur);
}

/* Newest first: each page goes on below the last version seen. */
static int pq_history(void *state, const pgs_ref *ref, int (*fn)(void *, const pgs_record *),
                      void *arg)
{
    cursor cur = {.ref = ref, .fn = fn, .arg = arg};
    return walk(state, &cur);
}

/* ------------------------------------------------------------------------
** Writes.
*/

/* The statement of write w, and its parameters. */
static int write_query(const pgs_write *w, params *p)
{
    int q = Q_DELETE;
    if (w->op == PGS_OP_PUT)
        params_put(p, w, &q);
    else
        params_ref(p, w->ref);
    return q;
}

/* One write alone: one autocommitted statement.  A lone DELETE of an
** absent ref is PGS_ENOTFOUND (the batch rules). */
static int write_one(PGconn *pg, const pgs_write *w)
{
    params p;
    int q = write_query(w, &p);
    PGresult *r = PQexecPrepared(pg, stmt[q].name, stmt[q].nparams, p.v, p.len, p.fmt, 1);
    int rc = r ? result_rc(r) : PGS_ESTORAGE; /* NULL: not even sent */
    if (!rc && q == Q_DELETE && !strcmp(PQcmdTuples(r), "0"))
        rc = PGS_ENOTFOUND;
    PQclear(r);
    return rc;
}

static int send_write(PGconn *pg, const pgs_write *w)
{
    params p;
    int q = write_query(w, &p);
    return PQsendQueryPrepared(pg, stmt[q].name, stmt[q].nparams, p.v, p.len, p.fmt, 1);
}

static int send_sql(PGconn *pg, const char *sql)
{
    return PQsendQueryParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0);
}

/* Orders writes by ref, as PostgreSQL orders the primary key ("C"
** collation, then bytea): batches then lock rows in one global order. */
static int ref_cmp(const void *a, const void *b)
{
    const pgs_ref *x = write_ref(*(const pgs_write *const *)a);
    const pgs_ref *y = write_ref(*(const pgs_write *const *)b);
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    c = n ? memcmp(x->key, y->key, n) : 0;
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* BEGIN, the writes, COMMIT: sent at once, in pipeline mode, then every
** result read.  A failed write aborts the transaction in the server, and
** the rest of the pipeline with it; the ROLLBACK then ends the block. */
static int write_many(PGconn *pg, const pgs_write *const *order, size_t n)
{
    if (!PQenterPipelineMode(pg))
        return PGS_ESTORAGE;
    int sent = send_sql(pg, "BEGIN");
    for (size_t i = 0; sent && i < n; i++)
        sent = send_write(pg, order[i]);
    sent = sent && send_sql(pg, "COMMIT") && PQpipelineSync(pg);
    int rc = sent ? pipeline_results(pg, n + 2) : PGS_ESTORAGE;
    if (!PQexitPipelineMode(pg))
        return rc ? rc : PGS_ESTORAGE;
    if (rc && PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
        exec_ok(pg, "ROLLBACK");
    return rc;
}

static int write_sorted(PGconn *pg, const pgs_write *w, size_t n)
{
    const pgs_write **order = malloc(n * sizeof *order);
    if (!order)
        return PGS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        order[i] = &w[i];
    qsort(order, n, sizeof *order, ref_cmp);
    int rc = write_many(pg, order, n);
    free(order);
    return rc;
}

/* Not retried on a broken connection: the outcome may be unknown (see the
** top of the file). */
static int pq_batch(void *state, const pgs_write *writes, size_t n)
{
    store *s = state;
    conn *c = &s->writer;
    pthread_mutex_lock(&c->lock);
    int rc = conn_ready(s, c);
    if (!rc)
        rc = n == 1 ? write_one(c->pg, writes) : write_sorted(c->pg, writes, n);
    if (conn_settle(c) && !rc)
        rc = PGS_ESTORAGE;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

const pgs_storage_ops pgsi_postgres_ops = {
    .version = PGS_STORAGE_VERSION,
    .scheme = "postgresql",
    .open = pq_open,
    .close = pq_close,
    .get = pq_get,
    .batch = pq_batch,
    .scan = pq_scan,
    .history = pq_history,
};
