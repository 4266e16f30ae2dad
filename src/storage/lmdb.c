/*
** lmdb.c — the "lmdb:" storage adapter: records in an LMDB environment.
**
** URL: lmdb:DIR[?map_size=BYTES][&max_size=BYTES][&sync=full|nosync]
** ("lmdb:" alone: pgs.lmdb).  DIR is created if missing (its parent must
** exist); LMDB keeps data.mdb and lock.mdb in it, pgs its pgs.lock.
** map_size is the initial size of LMDB's memory map (default 256 MiB,
** at least 64 KiB), max_size the most it may grow to (default 1 TiB on
** 64-bit hosts, and never below map_size).
**
** Layout: two named databases in the environment.
**   records  key: the behaviour name, a 0 byte, the key bytes.  Names
**            cannot contain NUL, so one behaviour's records are exactly
**            the keys that start with "name\0": a scan by behaviour is one
**            cursor range.  value: pgs_record_encode() of the record (the
**            checksummed portable encoding), checked on every read.
**   history  key: the behaviour name, a 0 byte, the key's length (2 bytes
**            big-endian), the key bytes, the version (8 bytes big-endian):
**            a ref's versions are one range, oldest first, and no other
**            ref's range starts with its prefix.  value: as in records.
**   meta     "schema" = 2 (4 bytes, little-endian).  A store written by a
**            newer pgs is refused with PGS_EVERSION; a schema 1 store
**            gains the history database at open.
**
** Reads: each get and scan runs in a read-only transaction.  The
** environment is opened MDB_NOTLS, so a read txn belongs to no thread: a
** finished one is reset (its snapshot released) and kept in a small pool,
** and the next get renews it instead of claiming a new reader slot.
**
** Writes: one write transaction per batch, the unit of group commit (LMDB
** serialises writers itself).  Records are encoded before the txn begins,
** to hold LMDB's writer lock no longer than needed.  Inside the txn every
** PUT's expected version is checked against the stored one (read from the
** stored encoding's header), and a mismatch aborts the txn: nothing is
** written.  A stored record whose header is unreadable makes a PUT over it
** fail with PGS_ECORRUPT (a DELETE still removes it).  A PUT that keeps
** history copies the stored value into history first; every PUT over a
** record then trims the ref's history range, and a DELETE drops it.
**
** Map growth: LMDB's map has a fixed size, and a write that does not fit
** fails with MDB_MAP_FULL (at a put or at commit).  The batch is then
** aborted, the map doubled (up to max_size) and the batch run again; once
** the map is at max_size the batch fails with PGS_ENOSPC, as on a full
** disk.  mdb_env_set_mapsize() remaps the file, so it is only safe while
** no transaction of this process is live: every txn runs with map_lock
** held shared, and the resize takes it exclusive.  The lock prefers
** writers, so a stream of reads cannot starve a resize.
**
** Durability: by default a commit returns once LMDB has synced the data
** pages and then the meta page (group commit amortises the two syncs over
** a batch).  sync=nosync sets MDB_NOSYNC: a crash of the machine (not of
** the process) may lose the last commits, never corrupt the store; the
** environment is synced at close.
**
** The store belongs to one process at a time: open takes an exclusive
** flock(2) on DIR/pgs.lock and fails with PGS_EBUSY if another process
** holds it.  LMDB itself lets processes share an environment, but pgs
** assumes one writer process per store (several processes share state
** through PostgreSQL instead).  Reader slots left by a killed process are
** cleared at open (mdb_reader_check).
*/
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA 2
#define POOL 16            /* reset read txns kept for reuse */
#define MAX_READERS 512    /* reader slots: live read txns plus the pool */
#define MIN_MAP ((size_t)64 << 10)
#define DEFAULT_MAP ((size_t)256 << 20)
#define DEFAULT_MAX (sizeof(size_t) >= 8 ? (size_t)1 << 40 : (size_t)1 << 30)
#define DBKEY_MAX (PGS_NAME_MAX + 1 + PGS_KEY_MAX) /* well under LMDB's 511 */
#define HPREFIX_MAX (DBKEY_MAX + 2)
#define HKEY_MAX (HPREFIX_MAX + 8)

/* write_once's "MDB_MAP_FULL: grow and retry" (PGS codes are <= 0). */
#define NEED_GROW 1

/* The store's settings, from its URL. */
typedef struct settings {
    char *dir;           /* malloc'd */
    size_t map_size;     /* 0 until given */
    size_t max_size;     /* 0 until given */
    unsigned env_flags;  /* MDB_NOSYNC or 0 */
} settings;

typedef struct store {
    MDB_env *env;
    MDB_dbi records, history, meta;
    int ready;                  /* env open and databases made */
    int nosync;
    int lock_fd;                /* DIR/pgs.lock, flock'd */
    pthread_rwlock_t map_lock;  /* shared: a txn is live; exclusive: resize */
    size_t map_size;            /* written only with map_lock exclusive */
    size_t max_size;            /* fixed at open */
    int broken;                 /* a remap failed: the env has no map
                                   (written with map_lock exclusive) */
    pthread_mutex_t pool_lock;  /* guards pool and npool */
    MDB_txn *pool[POOL];        /* reset read txns */
    int npool;
} store;

/* ------------------------------------------------------------------------
** Errors.  LMDB returns its own codes (MDB_*) or errno values.
*/
static int map_rc(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return PGS_OK;
    case MDB_NOTFOUND:
        return PGS_ENOTFOUND;
    case ENOMEM:
        return PGS_ENOMEM;
    case ENOSPC: case EDQUOT: case EFBIG: case MDB_MAP_FULL:
        return PGS_ENOSPC;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
        return PGS_ECORRUPT;
    case MDB_VERSION_MISMATCH:
        return PGS_EVERSION;
    case MDB_TXN_FULL: case MDB_BAD_VALSIZE:
        return PGS_ETOOBIG;
    case MDB_READERS_FULL:
        return PGS_EBUSY;
    default:
        return PGS_ESTORAGE;
    }
}

/* In a write txn: MDB_MAP_FULL asks for a bigger map, the rest map. */
static int write_rc(int rc)
{
    return rc == MDB_MAP_FULL ? NEED_GROW : map_rc(rc);
}

static int errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? PGS_ENOSPC : e == ENOMEM ? PGS_ENOMEM : PGS_ESTORAGE;
}

/* ------------------------------------------------------------------------
** URL.
*/

/* A size in bytes: decimal digits only, at least MIN_MAP, rounded up to
** the OS page (LMDB wants whole pages). */
static int parse_size(const char *v, size_t n, size_t *out)
{
    unsigned long long b = 0;
    if (n == 0 || n > 19)
        return PGS_EURL;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return PGS_EURL;
        b = b * 10 + (unsigned)(v[i] - '0');
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (b < MIN_MAP || b > SIZE_MAX / 2)
        return PGS_EURL;
    *out = ((size_t)b + page - 1) / page * page;
    return PGS_OK;
}

/* One "name=value" of the query string. */
static int parse_param(void *arg, const char *p, size_t n)
{
    settings *cfg = arg;
    if (n > 9 && !strncasecmp(p, "map_size=", 9))
        return parse_size(p + 9, n - 9, &cfg->map_size);
    if (n > 9 && !strncasecmp(p, "max_size=", 9))
        return parse_size(p + 9, n - 9, &cfg->max_size);
    if (n == 9 && !strncasecmp(p, "sync=full", 9)) {
        cfg->env_flags = 0;
        return PGS_OK;
    }
    if (n == 11 && !strncasecmp(p, "sync=nosync", 11)) {
        cfg->env_flags = MDB_NOSYNC;
        return PGS_OK;
    }
    return PGS_EURL;
}

/* Fills in the sizes not given; a max_size below map_size is an error. */
static int resolve_sizes(settings *cfg)
{
    if (cfg->map_size && cfg->max_size && cfg->max_size < cfg->map_size)
        return PGS_EURL;
    if (!cfg->map_size)
        cfg->map_size = cfg->max_size && cfg->max_size < DEFAULT_MAP ? cfg->max_size : DEFAULT_MAP;
    if (!cfg->max_size)
        cfg->max_size = cfg->map_size > DEFAULT_MAX ? cfg->map_size : DEFAULT_MAX;
    return PGS_OK;
}

/* Splits "lmdb:DIR?map_size=N&max_size=N&sync=X" into its settings. */
static int parse_url(const char *url, settings *cfg)
{
    *cfg = (settings){0};
    int rc = pgsi_url_split(url, "lmdb", "pgs.lmdb", &cfg->dir, parse_param, cfg);
    if (!rc && resolve_sizes(cfg)) {
        free(cfg->dir);
        rc = PGS_EURL;
    }
    return rc;
}

/* ------------------------------------------------------------------------
** Open and close.
*/

/* DIR itself is made if missing; an existing one must be a directory. */
static int make_dir(const char *dir)
{
    struct stat sb;
    if (mkdir(dir, 0755) == 0)
        return PGS_OK;
    if (errno != EEXIST)
        return errno_rc(errno);
    return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) ? PGS_OK : PGS_ESTORAGE;
}

/* One process per store: an exclusive lock on DIR/pgs.lock. */
static int lock_store(const char *dir, int *fd)
{
    size_t n = strlen(dir) + sizeof "/pgs.lock";
    char *lp = malloc(n);
    if (!lp)
        return PGS_ENOMEM;
    snprintf(lp, n, "%s/pgs.lock", dir);
    *fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    free(lp);
    if (*fd < 0)
        return errno_rc(errno);
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return e == EWOULDBLOCK ? PGS_EBUSY : PGS_ESTORAGE;
    }
    return PGS_OK;
}

static int env_open(store *s, const settings *cfg)
{
    int dead, rc = mdb_env_create(&s->env);
    if (rc) {
        s->env = NULL;
        return map_rc(rc);
    }
    rc = mdb_env_set_maxdbs(s->env, 3);
    if (!rc) rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
    if (!rc) rc = mdb_env_set_mapsize(s->env, cfg->map_size);
    if (!rc) rc = mdb_env_open(s->env, cfg->dir, MDB_NOTLS | cfg->env_flags, 0644);
    if (!rc) rc = mdb_reader_check(s->env, &dead); /* slots of a killed process */
    if (rc)
        return map_rc(rc);
    /* The file may hold more than map_size: LMDB then maps all of it. */
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    s->max_size = cfg->max_size > s->map_size ? cfg->max_size : s->map_size;
    s->nosync = (cfg->env_flags & MDB_NOSYNC) != 0;
    return PGS_OK;
}

/* Creates the schema row in a new store; refuses a newer one. */
static int check_schema(MDB_txn *txn, MDB_dbi meta)
{
    static const unsigned char mine[4] = {SCHEMA, 0, 0, 0};
    MDB_val k = {6, "schema"}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc && rc != MDB_NOTFOUND)
        return map_rc(rc);
    if (rc == MDB_SUCCESS) {
        if (v.mv_size != 4)
            return PGS_ECORRUPT;
        const unsigned char *b = v.mv_data;
        uint32_t schema = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if (schema > SCHEMA || schema < 1)
            return schema > SCHEMA ? PGS_EVERSION : PGS_ECORRUPT;
        if (schema == SCHEMA)
            return PGS_OK;
    }
    v = (MDB_val){sizeof mine, (void *)mine}; /* new, or schema 1: now has history */
    return map_rc(mdb_put(txn, meta, &k, &v, 0));
}

/* Opens (making them if new) the two databases, in one write txn: DBI
** handles opened by a committed txn serve every later txn. */
static int open_dbs(store *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return map_rc(rc);
    rc = mdb_dbi_open(txn, "records", MDB_CREATE, &s->records);
    if (!rc)
        rc = mdb_dbi_open(txn, "history", MDB_CREATE, &s->history);
    if (!rc)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    rc = rc ? map_rc(rc) : check_schema(txn, s->meta);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return map_rc(mdb_txn_commit(txn));
}

static void lm_close(void *state)
{
    store *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->npool; i++)
        mdb_txn_abort(s->pool[i]);
    if (s->env) {
        if (s->ready && s->nosync && !s->broken)
            mdb_env_sync(s->env, 1);
        mdb_env_close(s->env);
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_rwlock_destroy(&s->map_lock);
    pthread_mutex_destroy(&s->pool_lock);
    free(s);
}

/* A store with its locks made, nothing opened yet. */
static store *store_new(void)
{
    store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->lock_fd = -1;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Writer preference: a resize waiting for its exclusive hold blocks new
    ** readers.  Safe because no path takes map_lock twice in one thread. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&s->map_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->pool_lock, NULL);
    return s;
}

static int lm_open(const char *url, void **state)
{
    settings cfg;
    int rc = parse_url(url, &cfg);
    if (rc)
        return rc;
    store *s = store_new();
    if (!s) {
        free(cfg.dir);
        return PGS_ENOMEM;
    }
    rc = make_dir(cfg.dir);
    if (!rc)
        rc = lock_store(cfg.dir, &s->lock_fd); /* before LMDB touches a file */
    if (!rc)
        rc = env_open(s, &cfg);
    if (!rc)
        rc = open_dbs(s);
    free(cfg.dir);
    if (rc) {
        lm_close(s);
        return rc;
    }
    s->ready = 1;
    *state = s;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Keys.
*/

/* The database key of ref: name, NUL, key bytes (storage.c checked ref,
** so its name ends inside ref->name).  Returns its length. */
static size_t make_key(const pgs_ref *ref, unsigned char buf[DBKEY_MAX])
{
    size_t nl = strlen(ref->name) + 1;
    memcpy(buf, ref->name, nl);
    memcpy(buf + nl, ref->key, ref->key_len);
    return nl + ref->key_len;
}

/* The history range of ref: name, NUL, key length (2 bytes big-endian),
** key bytes.  Returns its length; a version's key appends 8 bytes. */
static size_t make_hprefix(const pgs_ref *ref, unsigned char buf[HKEY_MAX])
{
    size_t nl = strlen(ref->name) + 1;
    memcpy(buf, ref->name, nl);
    buf[nl] = (unsigned char)(ref->key_len >> 8);
    buf[nl + 1] = (unsigned char)ref->key_len;
    memcpy(buf + nl + 2, ref->key, ref->key_len);
    return nl + 2 + ref->key_len;
}

/* 1 if k is a version key of the range prefix[0..plen). */
static int in_range(const MDB_val *k, const unsigned char *prefix, size_t plen)
{
    return k->mv_size == plen + 8 && memcmp(k->mv_data, prefix, plen) == 0;
}

/* ------------------------------------------------------------------------
** Reads.
*/

/* Starts a read txn with map_lock held shared, renewing a pooled one if
** there is one.  On PGS_OK the caller ends it with read_end. */
static int read_begin(store *s, MDB_txn **out)
{
    pthread_rwlock_rdlock(&s->map_lock);
    if (s->broken) {
        pthread_rwlock_unlock(&s->map_lock);
        return PGS_ESTORAGE;
    }
    pthread_mutex_lock(&s->pool_lock);
    MDB_txn *txn = s->npool ? s->pool[--s->npool] : NULL;
    pthread_mutex_unlock(&s->pool_lock);
    int rc = MDB_SUCCESS;
    if (txn && mdb_txn_renew(txn) != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        txn = NULL;
    }
    if (!txn && (rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != MDB_SUCCESS) {
        pthread_rwlock_unlock(&s->map_lock);
        return map_rc(rc);
    }
    *out = txn;
    return PGS_OK;
}

/* Ends a read txn: reset (its snapshot released) and pooled, or freed
** when the pool is full; then map_lock is released. */
static void read_end(store *s, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&s->pool_lock);
    int keep = s->npool < POOL;
    if (keep)
        s->pool[s->npool++] = txn;
    pthread_mutex_unlock(&s->pool_lock);
    if (!keep)
        mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

/* A stored value as a record (malloc'd, the caller's); PGS_ECORRUPT if
** it does not decode or fails its checksum. */
static int decode(const MDB_val *v, pgs_record **out)
{
    int rc = pgs_record_decode(v->mv_data, v->mv_size, out);
    return rc == PGS_ENOMEM ? rc : rc ? PGS_ECORRUPT : PGS_OK;
}

static int lm_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    store *s = state;
    unsigned char kb[DBKEY_MAX];
    MDB_val k = {make_key(ref, kb), kb}, v;
    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    rc = mdb_get(txn, s->records, &k, &v);
    rc = rc ? map_rc(rc) : decode(&v, out); /* the copy outlives the txn */
    read_end(s, txn);
    return rc;
}

/* One scanned entry: decoded, checked to be stored under its own key,
** then given to fn. */
static int scan_one(const MDB_val *k, const MDB_val *v,
                    int (*fn)(void *, const pgs_record *), void *arg)
{
    pgs_record *rec;
    int rc = decode(v, &rec);
    if (rc)
        return rc;
    unsigned char kb[DBKEY_MAX];
    size_t kl = make_key(&rec->ref, kb);
    rc = kl == k->mv_size && !memcmp(kb, k->mv_data, kl) ? fn(arg, rec) : PGS_ECORRUPT;
    free(rec);
    return rc;
}

/* Walks the keys that start with prefix (every key if plen is 0). */
static int scan_range(MDB_cursor *cur, const unsigned char *prefix, size_t plen,
                      int (*fn)(void *, const pgs_record *), void *arg)
{
    MDB_val k = {plen, (void *)prefix}, v;
    int rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == MDB_SUCCESS) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            return PGS_OK; /* past the behaviour's range */
        int stop = scan_one(&k, &v, fn, arg);
        if (stop)
            return stop;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    return rc == MDB_NOTFOUND ? PGS_OK : map_rc(rc);
}

static int lm_scan(void *state, const char *name, int (*fn)(void *, const pgs_record *),
                   void *arg)
{
    store *s = state;
    unsigned char prefix[PGS_NAME_MAX + 1];
    size_t plen = 0;
    if (name) { /* storage.c checked it: at most PGS_NAME_MAX bytes */
        plen = strlen(name) + 1;
        memcpy(prefix, name, plen);
    }
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    rc = map_rc(mdb_cursor_open(txn, s->records, &cur));
    if (!rc) {
        rc = scan_range(cur, prefix, plen, fn, arg);
        mdb_cursor_close(cur);
    }
    read_end(s, txn);
    return rc;
}

/* ------------------------------------------------------------------------
** Writes: one write txn per batch, retried on a bigger map when full.
*/
/* Deletes the history of the range prefix whose versions are below
** `below` (every one: UINT64_MAX). */
static int trim_history(store *s, MDB_txn *txn, const unsigned char *prefix, size_t plen,
                        uint64_t below)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->history, &cur);
    if (rc)
        return write_rc(rc);
    /* The oldest first; positioned afresh after each delete, as what a
    ** cursor points at after mdb_cursor_del is subtle at the end. */
    for (;;) {
        MDB_val k = {plen, (void *)prefix}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != MDB_SUCCESS || !in_range(&k, prefix, plen) ||
            pgsi_get_be64((const unsigned char *)k.mv_data + plen) >= below)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != MDB_SUCCESS)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? PGS_OK : write_rc(rc);
}

/* Copies the stored value `old` (version `version`) into ref's history.
** The copy is taken first: a put may move the page old points into. */
static int keep_old(store *s, MDB_txn *txn, const pgs_ref *ref, uint64_t version,
                    const MDB_val *old)
{
    unsigned char hb[HKEY_MAX];
    size_t plen = make_hprefix(ref, hb);
    pgsi_put_be64(hb + plen, version);
    void *copy = malloc(old->mv_size ? old->mv_size : 1);
    if (!copy)
        return PGS_ENOMEM;
    memcpy(copy, old->mv_data, old->mv_size);
    MDB_val k = {plen + 8, hb}, v = {old->mv_size, copy};
    int rc = write_rc(mdb_put(txn, s->history, &k, &v, 0));
    free(copy);
    return rc;
}

static int put_one(store *s, MDB_txn *txn, const pgs_write *w, const pgs_bytes *enc)
{
    const pgs_ref *ref = &w->record->ref;
    unsigned char kb[DBKEY_MAX];
    MDB_val k = {make_key(ref, kb), kb}, v;
    uint64_t stored = 0;
    int rc = mdb_get(txn, s->records, &k, &v);
    if (rc == MDB_SUCCESS)
        rc = pgsi_record_encoded_version(v.mv_data, v.mv_size, &stored);
    else if (rc == MDB_NOTFOUND)
        rc = PGS_OK;
    else
        return write_rc(rc);
    if (rc)
        return rc;
    if (stored != w->expected_version)
        return PGS_ECONFLICT;
    if (stored && w->keep && (rc = keep_old(s, txn, ref, stored, &v)) != PGS_OK)
        return rc;
    v = (MDB_val){enc->len, enc->data};
    if ((rc = mdb_put(txn, s->records, &k, &v, 0)) != MDB_SUCCESS)
        return write_rc(rc);
    if (!stored) /* a new record: a DELETE took any history it had */
        return PGS_OK;
    unsigned char hb[HKEY_MAX];
    uint64_t v_new = w->record->version;
    return trim_history(s, txn, hb, make_hprefix(ref, hb),
                        v_new > w->keep ? v_new - w->keep : 0);
}

/* A DELETE of an absent ref is a no-op, but PGS_ENOTFOUND when it is the
** batch's only write (the batch rules in storage.c). */
static int del_one(store *s, MDB_txn *txn, const pgs_write *w, int lone)
{
    unsigned char kb[DBKEY_MAX];
    MDB_val k = {make_key(w->ref, kb), kb};
    int rc = mdb_del(txn, s->records, &k, NULL);
    if (rc == MDB_NOTFOUND) /* does not fail the txn */
        return lone ? PGS_ENOTFOUND : PGS_OK;
    if (rc)
        return write_rc(rc);
    unsigned char hb[HKEY_MAX];
    return trim_history(s, txn, hb, make_hprefix(w->ref, hb), UINT64_MAX);
}

/* One attempt: a write txn, every write, commit.  Any failure aborts, so
** nothing is written; NEED_GROW if the map was too small. */
static int write_once(store *s, const pgs_write *w, const pgs_bytes *enc, size_t n)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return write_rc(rc);
    rc = PGS_OK;
    for (size_t i = 0; rc == PGS_OK && i < n; i++)
        rc = w[i].op == PGS_OP_PUT ? put_one(s, txn, &w[i], &enc[i])
                                   : del_one(s, txn, &w[i], n == 1);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return write_rc(mdb_txn_commit(txn)); /* frees txn even when it fails */
}

/* Doubles the map, up to max_size, unless another batch already grew it
** past `seen`.  PGS_ENOSPC once it is at max_size. */
static int grow(store *s, size_t seen)
{
    int rc = PGS_OK;
    pthread_rwlock_wrlock(&s->map_lock); /* no txn of ours is live now */
    if (s->broken) {
        rc = PGS_ESTORAGE;
    } else if (s->map_size == seen) {
        size_t want = seen > s->max_size / 2 ? s->max_size : seen * 2;
        if (seen >= s->max_size) {
            rc = PGS_ENOSPC;
        } else if ((rc = mdb_env_set_mapsize(s->env, want)) != MDB_SUCCESS) {
            /* LMDB unmapped the old map before failing to map the new one:
            ** the environment cannot be used any more. */
            s->broken = 1;
            rc = map_rc(rc);
        } else {
            s->map_size = want;
        }
    }
    pthread_rwlock_unlock(&s->map_lock);
    return rc;
}

/* Runs the batch, growing the map and running it again while it does not
** fit. */
static int write_growing(store *s, const pgs_write *w, const pgs_bytes *enc, size_t n)
{
    for (;;) {
        pthread_rwlock_rdlock(&s->map_lock);
        size_t seen = s->map_size;
        int rc = s->broken ? PGS_ESTORAGE : write_once(s, w, enc, n);
        pthread_rwlock_unlock(&s->map_lock);
        if (rc != NEED_GROW)
            return rc;
        if ((rc = grow(s, seen)) != PGS_OK)
            return rc;
    }
}

/* The encodings of the PUTs (DELETEs get an empty one).  enc[] starts
** zeroed; the caller frees every entry whatever this returns. */
static int encode_puts(const pgs_write *w, size_t n, pgs_bytes *enc)
{
    for (size_t i = 0; i < n; i++) {
        if (w[i].op == PGS_OP_PUT) {
            int rc = pgs_record_encode(w[i].record, &enc[i]);
            if (rc)
                return rc == PGS_EREF ? PGS_EINVAL : rc;
        }
    }
    return PGS_OK;
}

static int lm_batch(void *state, const pgs_write *w, size_t n)
{
    pgs_bytes one = {0}, *enc = n == 1 ? &one : calloc(n, sizeof *enc);
    if (!enc)
        return PGS_ENOMEM;
    int rc = encode_puts(w, n, enc);
    if (!rc)
        rc = write_growing(state, w, enc, n);
    for (size_t i = 0; i < n; i++)
        pgs_bytes_free(&enc[i]);
    if (enc != &one)
        free(enc);
    return rc;
}

/* Walks ref's history range backwards, newest first. */
static int history_walk(MDB_cursor *cur, const pgs_ref *ref,
                        int (*fn)(void *, const pgs_record *), void *arg)
{
    unsigned char hb[HKEY_MAX];
    size_t plen = make_hprefix(ref, hb);
    memset(hb + plen, 0xff, 8);
    MDB_val k = {plen + 8, hb}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    /* The first key past the range (no version is UINT64_MAX), then back. */
    rc = mdb_cursor_get(cur, &k, &v, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    while (rc == MDB_SUCCESS && in_range(&k, hb, plen)) {
        pgs_record *rec;
        int stop = decode(&v, &rec);
        if (!stop) {
            stop = fn(arg, rec);
            free(rec);
        }
        if (stop)
            return stop;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    return rc == MDB_SUCCESS || rc == MDB_NOTFOUND ? PGS_OK : map_rc(rc);
}

static int lm_history(void *state, const pgs_ref *ref, int (*fn)(void *, const pgs_record *),
                      void *arg)
{
    store *s = state;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    rc = map_rc(mdb_cursor_open(txn, s->history, &cur));
    if (!rc) {
        rc = history_walk(cur, ref, fn, arg);
        mdb_cursor_close(cur);
    }
    read_end(s, txn);
    return rc;
}

const pgs_storage_ops pgsi_lmdb_ops = {
    .version = PGS_STORAGE_VERSION,
    .scheme = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .get = lm_get,
    .batch = lm_batch,
    .scan = lm_scan,
    .history = lm_history,
    .flags = 0, /* not PGS_STORAGE_INLINE: a commit syncs, so group commit pays */
};
