/*
** sqlite.c — the "sqlite:" storage adapter, the embedded default.
**
** URL: sqlite:PATH[?synchronous=full|normal|off][&max_size=BYTES]
** ("sqlite:" alone: pgs.db).  max_size bounds the database file (SQLite's
** max_page_count): a write that would pass it fails with PGS_ENOSPC, as on
** a full disk.
**
** One writer connection applies batches (one transaction per batch: the
** unit of group commit), and a few reader connections serve get and scan
** concurrently, which WAL mode allows.  Every connection is opened
** NOMUTEX and guarded by our own mutex, so SQLite takes no locks of its
** own on the hot path.  Statements are prepared once, at open.
**
** The store belongs to one process at a time: open takes an exclusive
** flock(2) on PATH-pgs.lock and fails with PGS_EBUSY if another process
** holds it (several processes share state through PostgreSQL instead).
**
** Schema (pgs_meta.schema = 2):
**   pgs_records(behaviour TEXT, key BLOB, version, schema_version, args,
**               options, state, checksum; PRIMARY KEY(behaviour, key))
**   pgs_history(the same columns; PRIMARY KEY(behaviour, key, version))
** A store written by a newer pgs (schema > 2) is refused with PGS_EVERSION;
** a schema 1 store gains pgs_history at open.
**
** History: a PUT that keeps it first copies the stored row into
** pgs_history (if its version is the expected one: otherwise the UPDATE
** finds no row and the batch fails anyway), then updates, then trims the
** ref's history to `keep`.  A lone write that touches history runs in a
** transaction of its own.  Until the first write with keep > 0, a store
** whose history is empty skips all of it (the store is this process's
** alone, so the flag cannot go stale).
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#define SCHEMA 2
#define READERS 4

enum { Q_GET, Q_INSERT, Q_UPDATE, Q_DELETE, Q_SCAN_ONE, Q_SCAN_ALL, Q_BEGIN,
       Q_COMMIT, Q_ROLLBACK, Q_KEEP, Q_TRIM, Q_FORGET, Q_HISTORY, NQ };

#define COLS "version, schema_version, args, options, state, checksum" 

static const char *const sql[NQ] = {
    [Q_GET] = "SELECT version, schema_version, args, options, state, checksum "
              "FROM pgs_records WHERE behaviour = ?1 AND key = ?2",
    [Q_INSERT] = "INSERT INTO pgs_records(behaviour, key, version, schema_version, "
                 "args, options, state, checksum) VALUES(?1,?2,?3,?4,?5,?6,?7,?8) "
                 "ON CONFLICT DO NOTHING",
    [Q_UPDATE] = "UPDATE pgs_records SET version = ?3, schema_version = ?4, args = ?5, "
                 "options = ?6, state = ?7, checksum = ?8 "
                 "WHERE behaviour = ?1 AND key = ?2 AND version = ?9",
    [Q_DELETE] = "DELETE FROM pgs_records WHERE behaviour = ?1 AND key = ?2",
    [Q_SCAN_ONE] = "SELECT behaviour, key, version, schema_version, args, options, state, "
                   "checksum FROM pgs_records WHERE behaviour = ?1",
    [Q_SCAN_ALL] = "SELECT behaviour, key, version, schema_version, args, options, state, "
                   "checksum FROM pgs_records",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_KEEP] = "INSERT OR REPLACE INTO pgs_history SELECT behaviour, key, " COLS
               " FROM pgs_records WHERE behaviour = ?1 AND key = ?2 AND version = ?3",
    [Q_TRIM] = "DELETE FROM pgs_history WHERE behaviour = ?1 AND key = ?2 AND version < ?3",
    [Q_FORGET] = "DELETE FROM pgs_history WHERE behaviour = ?1 AND key = ?2",
    [Q_HISTORY] = "SELECT " COLS " FROM pgs_history WHERE behaviour = ?1 AND key = ?2 "
                  "ORDER BY version DESC",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS pgs_meta(name TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS pgs_records(behaviour TEXT NOT NULL, key BLOB NOT NULL,"
    " version INTEGER NOT NULL, schema_version INTEGER NOT NULL, args BLOB,"
    " options BLOB, state BLOB, checksum INTEGER NOT NULL,"
    " PRIMARY KEY(behaviour, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS pgs_history(behaviour TEXT NOT NULL, key BLOB NOT NULL,"
    " version INTEGER NOT NULL, schema_version INTEGER NOT NULL, args BLOB,"
    " options BLOB, state BLOB, checksum INTEGER NOT NULL,"
    " PRIMARY KEY(behaviour, key, version)) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO pgs_meta VALUES('schema', 2);"
    "UPDATE pgs_meta SET value = 2 WHERE name = 'schema' AND value < 2;";

/* The store's settings, from its URL. */
typedef struct settings {
    char *path;           /* malloc'd */
    const char *sync;     /* PRAGMA synchronous value */
    long long max_pages;  /* PRAGMA max_page_count, 0: SQLite's default */
} settings;

typedef struct conn {
    pthread_mutex_t lock;
    sqlite3 *db;
    sqlite3_stmt *q[NQ];
} conn;

typedef struct store {
    conn writer;
    conn readers[READERS];
    _Atomic unsigned next_reader;
    int lock_fd;
    int has_history;    /* pgs_history may hold rows (under writer.lock) */
} store;

/* ------------------------------------------------------------------------
** Errors.
*/
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW:
        return PGS_OK;
    case SQLITE_NOMEM:
        return PGS_ENOMEM;
    case SQLITE_FULL:
        return PGS_ENOSPC;
    case SQLITE_BUSY: case SQLITE_LOCKED:
        return PGS_EBUSY;
    case SQLITE_CORRUPT: case SQLITE_NOTADB:
        return PGS_ECORRUPT;
    case SQLITE_TOOBIG:
        return PGS_ETOOBIG;
    default:
        return PGS_ESTORAGE;
    }
}

/* ------------------------------------------------------------------------
** Connections.
*/
static void conn_close(conn *c)
{
    for (int i = 0; i < NQ; i++)
        sqlite3_finalize(c->q[i]);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->lock);
}

static int exec_int(sqlite3 *db, const char *q, int *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Opens one connection with the store's settings; the writer also makes
** the schema. */
static int conn_open(conn *c, const settings *cfg, int writer)
{
    char pragmas[160];
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    pthread_mutex_init(&c->lock, NULL);
    int rc = sqlite3_open_v2(cfg->path, &c->db, flags, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->db, 5000);
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;", cfg->sync);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, pragmas, NULL, NULL, NULL);
    if (rc == SQLITE_OK && writer && cfg->max_pages) {
        snprintf(pragmas, sizeof pragmas, "PRAGMA max_page_count=%lld;", cfg->max_pages);
        rc = sqlite3_exec(c->db, pragmas, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && writer)
        rc = sqlite3_exec(c->db, schema_sql, NULL, NULL, NULL);
    for (int i = 0; rc == SQLITE_OK && i < NQ; i++)
        rc = sqlite3_prepare_v3(c->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->q[i], NULL);
    return rc;
}

static int check_schema(conn *c)
{
    int v = 0, mode_ok = 0;
    int rc = exec_int(c->db, "SELECT value FROM pgs_meta WHERE name = 'schema'", &v);
    if (rc == SQLITE_OK && v == 0)
        return PGS_ECORRUPT; /* the schema row is gone */
    if (rc != SQLITE_OK)
        return map_rc(rc);
    if (v > SCHEMA)
        return PGS_EVERSION;
    rc = exec_int(c->db, "SELECT journal_mode = 'wal' FROM pragma_journal_mode", &mode_ok);
    return rc != SQLITE_OK ? map_rc(rc) : mode_ok ? PGS_OK : PGS_ESTORAGE;
}

/* ------------------------------------------------------------------------
** Open and close.
*/

/* One "name=value" of the query string. */
static int parse_param(void *arg, const char *p, size_t n)
{
    settings *cfg = arg;
    static const char *const syncs[][2] = {{"full", "FULL"}, {"normal", "NORMAL"}, {"off", "OFF"}};
    if (n > 12 && !strncasecmp(p, "synchronous=", 12)) {
        for (size_t i = 0; i < sizeof syncs / sizeof syncs[0]; i++)
            if (n - 12 == strlen(syncs[i][0]) && !strncasecmp(p + 12, syncs[i][0], n - 12)) {
                cfg->sync = syncs[i][1];
                return PGS_OK;
            }
        return PGS_EURL;
    }
    if (n > 9 && !strncasecmp(p, "max_size=", 9)) { /* bytes: a bound on the file */
        char *end;
        long long bytes = strtoll(p + 9, &end, 10);
        if (end != p + n || bytes < 65536)
            return PGS_EURL;
        cfg->max_pages = bytes / 4096;
        return PGS_OK;
    }
    return PGS_EURL;
}

/* Splits "sqlite:PATH?synchronous=X&max_size=N" into its settings. */
static int parse_url(const char *url, settings *cfg)
{
    *cfg = (settings){.sync = "FULL"};
    return pgsi_url_split(url, "sqlite", "pgs.db", &cfg->path, parse_param, cfg);
}

/* One process per store: an exclusive lock on PATH-pgs.lock. */
static int lock_store(const char *path, int *fd)
{
    size_t n = strlen(path) + sizeof "-pgs.lock";
    char *lp = malloc(n);
    if (!lp)
        return PGS_ENOMEM;
    snprintf(lp, n, "%s-pgs.lock", path);
    *fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    free(lp);
    if (*fd < 0)
        return errno == ENOSPC ? PGS_ENOSPC : PGS_ESTORAGE;
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        close(*fd);
        *fd = -1;
        return errno == EWOULDBLOCK ? PGS_EBUSY : PGS_ESTORAGE;
    }
    return PGS_OK;
}

static void sq_close(void *state)
{
    store *s = state;
    if (!s)
        return;
    conn_close(&s->writer);
    for (int i = 0; i < READERS; i++)
        conn_close(&s->readers[i]);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

static int sq_open(const char *url, void **state)
{
    settings cfg;
    int rc = parse_url(url, &cfg);
    if (rc)
        return rc;
    store *s = calloc(1, sizeof *s);
    if (!s) {
        free(cfg.path);
        return PGS_ENOMEM;
    }
    s->lock_fd = -1;
    rc = lock_store(cfg.path, &s->lock_fd);
    if (!rc)
        rc = map_rc(conn_open(&s->writer, &cfg, 1));
    for (int i = 0; !rc && i < READERS; i++)
        rc = map_rc(conn_open(&s->readers[i], &cfg, 0));
    if (!rc)
        rc = check_schema(&s->writer);
    if (!rc)
        rc = map_rc(exec_int(s->writer.db, "SELECT EXISTS(SELECT 1 FROM pgs_history)",
                             &s->has_history));
    free(cfg.path);
    if (rc) {
        sq_close(s);
        return rc;
    }
    *state = s;
    return PGS_OK;
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

/* Binds a byte string; a zero-length one as an empty blob, never NULL,
** so that the empty key compares equal to itself. */
static int bind_bytes(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    return n ? sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC) : sqlite3_bind_zeroblob(st, i, 0);
}

static int bind_ref(sqlite3_stmt *st, const pgs_ref *ref)
{
    int rc = sqlite3_bind_text(st, 1, ref->name, -1, SQLITE_STATIC);
    return rc ? rc : bind_bytes(st, 2, ref->key, ref->key_len);
}

/* Fills rec's fields from a row whose columns start at `col` with version. */
static void row_fields(sqlite3_stmt *st, int col, pgs_record *rec)
{
    rec->version = (uint64_t)sqlite3_column_int64(st, col);
    rec->schema_version = (uint32_t)sqlite3_column_int64(st, col + 1);
    rec->args = sqlite3_column_blob(st, col + 2);
    rec->args_len = (size_t)sqlite3_column_bytes(st, col + 2);
    rec->options = sqlite3_column_blob(st, col + 3);
    rec->options_len = (size_t)sqlite3_column_bytes(st, col + 3);
    rec->state = sqlite3_column_blob(st, col + 4);
    rec->state_len = (size_t)sqlite3_column_bytes(st, col + 4);
    rec->checksum = (uint64_t)sqlite3_column_int64(st, col + 5);
}

static int sq_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    conn *c = reader(state);
    sqlite3_stmt *st = c->q[Q_GET];
    int rc = bind_ref(st, ref);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        pgs_record rec = {.ref = *ref};
        row_fields(st, 0, &rec);
        rc = pgs_record_copy(&rec, out);
    } else {
        rc = rc == SQLITE_DONE ? PGS_ENOTFOUND : map_rc(rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* A row's ref; PGS_ECORRUPT if the stored name or key cannot be a ref. */
static int row_ref(sqlite3_stmt *st, pgs_ref *ref)
{
    const char *name = (const char *)sqlite3_column_text(st, 0);
    int kl = sqlite3_column_bytes(st, 1);
    const void *key = sqlite3_column_blob(st, 1);
    if (!name || kl < 0 || kl > PGS_KEY_MAX)
        return PGS_ECORRUPT;
    return pgs_ref_make(ref, name, key, (size_t)kl) ? PGS_ECORRUPT : PGS_OK;
}

/* Steps the bound statement st of reader c, giving each row to fn, then
** releases c.  Rows are of ref, or (ref NULL) start with their own. */
static int each_row(conn *c, sqlite3_stmt *st, int rc, const pgs_ref *ref,
                    int (*fn)(void *, const pgs_record *), void *arg)
{
    int stop = 0;
    while (rc == SQLITE_OK && !stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        pgs_record rec;
        memset(&rec, 0, sizeof rec);
        if (ref)
            rec.ref = *ref;
        else if ((stop = row_ref(st, &rec.ref)))
            break;
        row_fields(st, ref ? 0 : 2, &rec);
        stop = fn(arg, &rec);
        rc = SQLITE_OK;
    }
    int result = stop ? stop : map_rc(rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&c->lock);
    return result;
}

static int sq_scan(void *state, const char *name, int (*fn)(void *, const pgs_record *),
                   void *arg)
{
    conn *c = reader(state);
    sqlite3_stmt *st = c->q[name ? Q_SCAN_ONE : Q_SCAN_ALL];
    int rc = name ? sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) : SQLITE_OK;
    return each_row(c, st, rc, NULL, fn, arg);
}

/* ------------------------------------------------------------------------
** Writes: one transaction per batch (a lone write commits by itself).
*/
static int step_done(sqlite3_stmt *st, sqlite3 *db, int *changes)
{
    int rc = sqlite3_step(st);
    *changes = sqlite3_changes(db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? PGS_OK : map_rc(rc);
}

/* Runs history statement q for ref with ?3 = v (if q takes it). */
static int history_step(conn *c, int q, const pgs_ref *ref, int64_t v)
{
    sqlite3_stmt *st = c->q[q];
    int changes, rc = bind_ref(st, ref);
    if (!rc && q != Q_FORGET)
        rc = sqlite3_bind_int64(st, 3, v);
    if (rc) {
        sqlite3_clear_bindings(st);
        return map_rc(rc);
    }
    return step_done(st, c->db, &changes);
}

static int put_row(conn *c, const pgs_write *w)
{
    const pgs_record *r = w->record;
    sqlite3_stmt *st = c->q[w->expected_version ? Q_UPDATE : Q_INSERT];
    int changes = 0, rc = bind_ref(st, &r->ref);
    if (!rc) rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)r->version);
    if (!rc) rc = sqlite3_bind_int64(st, 4, r->schema_version);
    if (!rc) rc = bind_bytes(st, 5, r->args, r->args_len);
    if (!rc) rc = bind_bytes(st, 6, r->options, r->options_len);
    if (!rc) rc = bind_bytes(st, 7, r->state, r->state_len);
    if (!rc) rc = sqlite3_bind_int64(st, 8, (sqlite3_int64)r->checksum);
    if (!rc && w->expected_version)
        rc = sqlite3_bind_int64(st, 9, (sqlite3_int64)w->expected_version);
    if (rc) {
        sqlite3_clear_bindings(st);
        return map_rc(rc);
    }
    rc = step_done(st, c->db, &changes);
    return rc ? rc : changes ? PGS_OK : PGS_ECONFLICT;
}

/* 1 if write w has history to keep or trim. */
static int touches_history(const store *s, const pgs_write *w)
{
    if (w->op == PGS_OP_DELETE)
        return s->has_history;
    return w->expected_version && (w->keep || s->has_history);
}

static int put_one(store *s, conn *c, const pgs_write *w)
{
    const pgs_record *r = w->record;
    if (!touches_history(s, w))
        return put_row(c, w);
    int rc = w->keep ? history_step(c, Q_KEEP, &r->ref, (int64_t)w->expected_version) : PGS_OK;
    if (!rc)
        rc = put_row(c, w);
    if (!rc)
        rc = history_step(c, Q_TRIM, &r->ref, (int64_t)r->version - (int64_t)w->keep);
    return rc;
}

static int del_one(store *s, conn *c, const pgs_write *w, int lone)
{
    sqlite3_stmt *st = c->q[Q_DELETE];
    int changes = 0, rc = bind_ref(st, w->ref);
    if (rc) {
        sqlite3_clear_bindings(st);
        return map_rc(rc);
    }
    rc = step_done(st, c->db, &changes);
    if (!rc && touches_history(s, w))
        rc = history_step(c, Q_FORGET, w->ref, 0);
    return rc ? rc : (!changes && lone) ? PGS_ENOTFOUND : PGS_OK;
}

static int run(conn *c, int q)
{
    int changes;
    return step_done(c->q[q], c->db, &changes);
}

static int sq_batch(void *state, const pgs_write *writes, size_t n)
{
    store *s = state;
    conn *c = &s->writer;
    int rc = PGS_OK;
    pthread_mutex_lock(&c->lock);
    /* A lone write of one statement commits by itself. */
    int txn = n > 1 || touches_history(s, &writes[0]);
    if (txn)
        rc = run(c, Q_BEGIN);
    for (size_t i = 0; !rc && i < n; i++)
        rc = writes[i].op == PGS_OP_PUT ? put_one(s, c, &writes[i])
                                        : del_one(s, c, &writes[i], n == 1);
    if (txn) {
        if (!rc)
            rc = run(c, Q_COMMIT);
        if (rc && !sqlite3_get_autocommit(c->db))
            run(c, Q_ROLLBACK);
    }
    for (size_t i = 0; !rc && i < n; i++)
        if (writes[i].op == PGS_OP_PUT && writes[i].keep)
            s->has_history = 1;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int sq_history(void *state, const pgs_ref *ref, int (*fn)(void *, const pgs_record *),
                      void *arg)
{
    conn *c = reader(state);
    sqlite3_stmt *st = c->q[Q_HISTORY];
    return each_row(c, st, bind_ref(st, ref), ref, fn, arg);
}

const pgs_storage_ops pgsi_sqlite_ops = {
    .version = PGS_STORAGE_VERSION,
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .get = sq_get,
    .batch = sq_batch,
    .scan = sq_scan,
    .history = sq_history,
};
