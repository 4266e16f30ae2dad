/*
** storage.c — the storage layer between pgs and an adapter (pgs_storage).
**
** Everything common to all engines is done here, once: argument checks,
** the record checksum (computed on write, verified on every read, so a
** corrupt record is caught whatever the engine), and the batch rules
** below.  Adapters only store and return bytes.
**
** Batch rules, which every adapter may rely on and must implement:
**   - All writes or none.  A PUT whose expected_version differs from the
**     stored version (0: absent) fails the whole batch with PGS_ECONFLICT.
**   - No two writes of one batch name the same ref: pgs_storage_batch
**     rejects such a batch with PGS_EINVAL before the adapter sees it.
**   - A DELETE of an absent ref: when it is the batch's only write, the
**     adapter returns PGS_ENOTFOUND (this is how pgs_storage_del reports
**     "nothing to delete"); in a batch of two or more writes it is a no-op
**     and does not fail the batch.
**   - Every PUT record is well formed (valid ref, version >= 1, each byte
**     field non-NULL when its length is not 0) and carries its checksum.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
** Built-in adapters by URL scheme (case-insensitive, as in RFC 3986).
*/
static const pgs_storage_ops *const builtins[] = {&pgsi_memory_ops, &pgsi_sqlite_ops,
                                                 &pgsi_lmdb_ops, &pgsi_postgres_ops};

const pgs_storage_ops *pgsi_storage_builtin(const char *url)
{
    if (!url)
        return NULL;
    const char *colon = strchr(url, ':');
    if (!colon)
        return NULL;
    size_t n = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const char *s = builtins[i]->scheme;
        if (strlen(s) == n && strncasecmp(url, s, n) == 0)
            return builtins[i];
    }
    /* libpq takes both spellings of its scheme. */
    return n == 8 && strncasecmp(url, "postgres", 8) == 0 ? &pgsi_postgres_ops : NULL;
}

int pgsi_url_split(const char *url, const char *scheme, const char *dflt, char **path,
                   int (*param)(void *arg, const char *p, size_t n), void *arg)
{
    size_t sl = strlen(scheme);
    if (strncasecmp(url, scheme, sl) != 0 || url[sl] != ':')
        return PGS_EURL;
    const char *p = url + sl + 1, *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    while (q && *q) {
        const char *one = q + 1, *amp = strchr(one, '&');
        if (param(arg, one, amp ? (size_t)(amp - one) : strlen(one)))
            return PGS_EURL;
        q = amp;
    }
    *path = n ? strndup(p, n) : strdup(dflt);
    return *path ? PGS_OK : PGS_ENOMEM;
}

/* Adapters return PGS codes; anything else is reported as a storage error. */
static int adapter_rc(int rc)
{
    return rc > 0 ? PGS_ESTORAGE : rc;
}

/* A custom ops serves whatever URL it is given: the scheme is not checked. */
int pgs_storage_open(pgs_storage **out, const char *url, const pgs_storage_ops *ops)
{
    if (!out || !url)
        return PGS_EINVAL;
    *out = NULL;
    if (!ops && !(ops = pgsi_storage_builtin(url)))
        return PGS_EURL;
    if (ops->version < 1 || ops->version > PGS_STORAGE_VERSION)
        return PGS_EVERSION;
    if (!ops->open || !ops->close || !ops->get || !ops->batch || !ops->scan)
        return PGS_EINVAL;
    pgs_storage *st = malloc(sizeof *st);
    if (!st)
        return PGS_ENOMEM;
    st->ops = ops;
    st->state = NULL;
    int rc = adapter_rc(ops->open(url, &st->state));
    if (rc) {
        free(st);
        return rc;
    }
    *out = st;
    return PGS_OK;
}

void pgs_storage_close(pgs_storage *st)
{
    if (!st)
        return;
    st->ops->close(st->state);
    free(st);
}

/* PGS_OK if rec (from the adapter) is the intact record of `want`. */
static int record_verify(const pgs_record *rec, const pgs_ref *want)
{
    if (!pgsi_record_fields_present(rec) || pgsi_ref_check(&rec->ref, NULL))
        return PGS_ECORRUPT;
    if (want && !pgs_ref_equal(&rec->ref, want))
        return PGS_ECORRUPT;
    return rec->checksum == pgs_record_checksum(rec) ? PGS_OK : PGS_ECORRUPT;
}

/* ------------------------------------------------------------------------
** Access.
*/
int pgs_storage_get(pgs_storage *st, const pgs_ref *ref, pgs_record **out)
{
    if (!out)
        return PGS_EINVAL;
    *out = NULL;
    if (!st)
        return PGS_EINVAL;
    int rc = pgsi_ref_check(ref, NULL);
    if (rc)
        return rc;
    pgs_record *rec = NULL;
    rc = adapter_rc(st->ops->get(st->state, ref, &rec));
    if (rc == PGS_OK && !rec)
        rc = PGS_ESTORAGE;
    if (rc == PGS_OK)
        rc = record_verify(rec, ref);
    if (rc) {
        free(rec);
        return rc;
    }
    *out = rec;
    return PGS_OK;
}

/* Checks one write before the adapter sees it. */
static int write_check(const pgs_write *w)
{
    if (w->op == PGS_OP_PUT) {
        const pgs_record *rec = w->record;
        if (!rec)
            return PGS_EINVAL;
        int rc = pgsi_ref_check(&rec->ref, NULL);
        if (rc)
            return rc;
        return rec->version && pgsi_record_fields_present(rec) ? PGS_OK : PGS_EINVAL;
    }
    if (w->op == PGS_OP_DELETE)
        return pgsi_ref_check(w->ref, NULL);
    return PGS_EINVAL;
}

static const pgs_ref *write_ref(const pgs_write *w)
{
    return w->op == PGS_OP_PUT ? &w->record->ref : w->ref;
}

typedef struct {
    uint64_t hash;
    const pgs_ref *ref;
} href;

static int href_cmp(const void *a, const void *b)
{
    uint64_t x = ((const href *)a)->hash, y = ((const href *)b)->hash;
    return x < y ? -1 : x > y;
}

/* PGS_EINVAL if two writes name one ref.  Small batches compare every
** pair; large ones sort by hash and compare within equal-hash runs. */
static int no_duplicates(const pgs_write *w, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (pgs_ref_equal(write_ref(&w[i]), write_ref(&w[j])))
                    return PGS_EINVAL;
        return PGS_OK;
    }
    href *h = malloc(n * sizeof *h);
    if (!h)
        return PGS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        h[i] = (href){pgsi_ref_hash(write_ref(&w[i])), write_ref(&w[i])};
    qsort(h, n, sizeof *h, href_cmp);
    int rc = PGS_OK;
    for (size_t i = 1; i < n && !rc; i++)
        for (size_t j = i; j-- > 0 && h[j].hash == h[i].hash;)
            if (pgs_ref_equal(h[i].ref, h[j].ref))
                rc = PGS_EINVAL;
    free(h);
    return rc;
}

/* Fills the checksum of each PUT record.  pgs_write.record is const in
** pgs.h, but the caller of pgs_storage_batch hands over writable records
** (stated in the contract), so the const is cast away here. */
int pgs_storage_batch(pgs_storage *st, pgs_write *writes, size_t n)
{
    if (!st || (!writes && n))
        return PGS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int rc = write_check(&writes[i]);
        if (rc)
            return rc;
    }
    int rc = n > 1 ? no_duplicates(writes, n) : PGS_OK;
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (writes[i].op == PGS_OP_PUT) {
            pgs_record *rec = (pgs_record *)writes[i].record;
            rec->checksum = pgs_record_checksum(rec);
        }
    }
    return n ? adapter_rc(st->ops->batch(st->state, writes, n)) : PGS_OK;
}

int pgs_storage_put(pgs_storage *st, pgs_record *rec, uint64_t expected_version)
{
    if (!rec)
        return PGS_EINVAL;
    pgs_write w = {.op = PGS_OP_PUT, .record = rec, .expected_version = expected_version};
    return pgs_storage_batch(st, &w, 1);
}

/* PGS_ENOTFOUND if there was nothing to delete (see the batch rules). */
int pgs_storage_del(pgs_storage *st, const pgs_ref *ref)
{
    if (!ref)
        return PGS_EINVAL;
    pgs_write w = {.op = PGS_OP_DELETE, .ref = ref};
    return pgs_storage_batch(st, &w, 1);
}

/* Scan: each record is verified before the caller's fn sees it. */
typedef struct {
    int (*fn)(void *arg, const pgs_record *rec);
    void *arg;
    const char *name;
    int corrupt;
} scan_ctx;

static int scan_one(void *arg, const pgs_record *rec)
{
    scan_ctx *c = arg;
    if (!rec || record_verify(rec, NULL) ||
        (c->name && strcmp(rec->ref.name, c->name) != 0)) {
        c->corrupt = 1;
        return PGS_ECORRUPT;
    }
    return c->fn(c->arg, rec);
}

/* Returns PGS_OK, the first non-zero value fn returned, PGS_ECORRUPT if a
** record failed its checksum (the scan stops there), or the adapter's
** error. */
int pgs_storage_scan(pgs_storage *st, const char *name,
                     int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    if (!st || !fn)
        return PGS_EINVAL;
    if (name && !pgsi_name_valid(name, strnlen(name, PGS_NAME_MAX + 1)))
        return PGS_EREF;
    scan_ctx c = {fn, arg, name, 0};
    int rc = st->ops->scan(st->state, name, scan_one, &c);
    return c.corrupt ? PGS_ECORRUPT : rc;
}

/* History: like scan, each version is verified (and must be of ref, and
** older than the one before it) before the caller's fn sees it. */
typedef struct {
    int (*fn)(void *arg, const pgs_record *rec);
    void *arg;
    const pgs_ref *ref;
    uint64_t below; /* the version before this one (UINT64_MAX: none yet) */
    int corrupt;
    int stopped;    /* fn's non-zero value, returned as it is */
} history_ctx;

static int history_one(void *arg, const pgs_record *rec)
{
    history_ctx *c = arg;
    if (!rec || record_verify(rec, c->ref) || rec->version >= c->below) {
        c->corrupt = 1;
        return PGS_ECORRUPT;
    }
    c->below = rec->version;
    return c->stopped = c->fn(c->arg, rec);
}

int pgs_storage_history(pgs_storage *st, const pgs_ref *ref,
                        int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    if (!st || !fn)
        return PGS_EINVAL;
    int rc = pgsi_ref_check(ref, NULL);
    if (rc)
        return rc;
    if (!pgsi_storage_has_history(st))
        return PGS_ENOTSUP;
    history_ctx c = {fn, arg, ref, UINT64_MAX, 0, 0};
    rc = st->ops->history(st->state, ref, history_one, &c);
    return c.corrupt ? PGS_ECORRUPT : c.stopped ? c.stopped : adapter_rc(rc);
}

/* A version 1 ops struct ends before the history slot: not read there. */
int pgsi_storage_has_history(const pgs_storage *st)
{
    return st->ops->version >= 2 && st->ops->history != NULL;
}
