/*
** dump.c — export and import: a whole store as one portable file, read
** back into any engine.
**
** The file (integers little-endian):
**   header   "PGSDUMP" and a NUL (8 bytes), format (4) = 1, reserved (4) = 0
**   entries  tag (1), length (8), then pgs_record_encode() of a record:
**              'H' a kept older version, 'R' a current record
**            A ref's entries are together: its kept versions oldest
**            first, then its current record.
**   trailer  tag 'E', the number of entries before it (8)
** Each record carries its checksum, so a damaged entry is refused by
** pgs_record_decode; the trailer catches a truncated file.
**
** import reads the file twice: first to verify every entry and find the
** records that exist in the store already (refused unless --replace),
** then to write.  Nothing is written unless the whole file verified.  A
** ref's versions are written one by one, oldest first, each with a keep
** that spans them all, so the store ends with the same history; records
** without history go in batches.  It is not one transaction: a failure
** midway leaves the records written so far (run it again with --replace).
*/
#include "tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAGIC "PGSDUMP"
#define FORMAT 1
#define HEAD_LEN 16
#define BATCH 256 /* records without history written per batch */

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* ------------------------------------------------------------------------
** export
*/
typedef struct writer {
    FILE *f;
    uint64_t entries, kept;
} writer;

static int put_tagged(writer *w, int tag, const void *data, size_t len, uint64_t n)
{
    unsigned char h[9] = {(unsigned char)tag};
    put_le(h + 1, n, 8);
    return fwrite(h, 1, sizeof h, w->f) == sizeof h && (!len || fwrite(data, 1, len, w->f) == len)
               ? PGS_OK
               : PGS_ESTORAGE;
}

static int put_entry(writer *w, int tag, const pgs_record *rec)
{
    pgs_bytes b;
    int rc = pgs_record_encode(rec, &b);
    if (rc)
        return rc;
    rc = put_tagged(w, tag, b.data, b.len, b.len);
    pgs_bytes_free(&b);
    w->entries++;
    w->kept += tag == 'H';
    return rc;
}

/* Refs seen by the scan, packed: name length (1), name, key length (2),
** key.  Refs, not records: the history of each is read after the scan. */
typedef struct refs {
    unsigned char *v;
    size_t n, cap;
} refs;

static int collect_ref(void *arg, const pgs_record *rec)
{
    refs *r = arg;
    size_t nl = strlen(rec->ref.name), need = 3 + nl + rec->ref.key_len;
    if (grow(&r->v, &r->cap, r->n + need - 1, 1))
        return PGS_ENOMEM;
    unsigned char *p = r->v + r->n;
    p[0] = (unsigned char)nl;
    memcpy(p + 1, rec->ref.name, nl);
    put_le(p + 1 + nl, rec->ref.key_len, 2);
    memcpy(p + 3 + nl, rec->ref.key, rec->ref.key_len);
    r->n += need;
    return 0;
}

/* The packed ref at *pos; advances *pos. */
static void unpack_ref(const refs *r, size_t *pos, pgs_ref *ref)
{
    const unsigned char *p = r->v + *pos;
    char name[PGS_NAME_MAX + 1];
    memcpy(name, p + 1, p[0]);
    name[p[0]] = '\0';
    size_t kl = (size_t)get_le(p + 1 + p[0], 2);
    pgs_ref_make(ref, name, p + 3 + p[0], kl);
    *pos += 3 + p[0] + kl;
}

/* One ref: its kept versions oldest first, then its current record.  A
** record gone since the scan is skipped. */
static int export_ref(tool *t, writer *w, const pgs_ref *ref)
{
    pgs_record *cur;
    int rc = pgs_storage_get(t->st, ref, &cur);
    if (rc)
        return rc == PGS_ENOTFOUND ? PGS_OK : rc;
    records o = {0};
    rc = pgs_storage_history(t->st, ref, records_add, &o);
    if (rc == PGS_ENOTSUP)
        rc = PGS_OK;
    for (size_t i = o.n; i-- > 0 && !rc;)
        rc = put_entry(w, 'H', o.v[i]);
    if (!rc)
        rc = put_entry(w, 'R', cur);
    records_free(&o);
    free(cur);
    return rc;
}

static int export_all(tool *t, writer *w)
{
    unsigned char head[HEAD_LEN] = MAGIC;
    put_le(head + 8, FORMAT, 4);
    refs r = {0};
    int rc = pgs_storage_scan(t->st, NULL, collect_ref, &r);
    if (!rc && fwrite(head, 1, sizeof head, w->f) != sizeof head)
        rc = PGS_ESTORAGE;
    for (size_t pos = 0; pos < r.n && !rc;) {
        pgs_ref ref;
        unpack_ref(&r, &pos, &ref);
        rc = export_ref(t, w, &ref);
    }
    free(r.v);
    return rc ? rc : put_tagged(w, 'E', NULL, 0, w->entries);
}

/* Writes to PATH.tmp, renamed over PATH once complete and flushed. */
int cmd_export(tool *t, const args *a)
{
    const char *path = a->pos[0];
    int to_stdout = strcmp(path, "-") == 0;
    char *tmp = malloc(strlen(path) + 5);
    if (!tmp)
        return tool_fail(PGS_ENOMEM, path);
    sprintf(tmp, "%s.tmp", path);
    writer w = {to_stdout ? stdout : fopen(tmp, "wb"), 0, 0};
    int rc = w.f ? export_all(t, &w) : PGS_ESTORAGE, err = errno;
    if (!to_stdout && w.f && fclose(w.f) != 0 && !rc)
        rc = PGS_ESTORAGE, err = errno;
    if (!rc && !to_stdout && rename(tmp, path) != 0)
        rc = PGS_ESTORAGE, err = errno;
    if (rc && !to_stdout)
        remove(tmp);
    free(tmp);
    if (rc == PGS_ESTORAGE) {
        fprintf(stderr, "pgs: export %s: %s\n", path, strerror(err));
        return X_FAIL;
    }
    if (rc)
        return tool_fail(rc, "export");
    fprintf(to_stdout ? stderr : stdout, "exported %" PRIu64 " records (%" PRIu64
            " of them kept versions) to %s\n", w.entries, w.kept, path);
    return X_OK;
}

/* ------------------------------------------------------------------------
** import: reading entries.
*/
typedef struct reader {
    FILE *f;
    const char *path;
    uint64_t size;  /* the file's */
    uint64_t left;  /* bytes not yet read */
    uint64_t index; /* entries read */
} reader;

static int read_exact(reader *r, void *buf, size_t n)
{
    if (n > r->left || fread(buf, 1, n, r->f) != n)
        return PGS_ECORRUPT;
    r->left -= n;
    return PGS_OK;
}

/* The next entry: *tag, and *rec decoded (free()) for 'H' and 'R'.  A
** damaged or truncated entry, or a bad trailer, is PGS_ECORRUPT. */
static int next_entry(reader *r, int *tag, pgs_record **rec)
{
    unsigned char h[9];
    *rec = NULL;
    int rc = read_exact(r, h, sizeof h);
    if (rc)
        return rc;
    uint64_t n = get_le(h + 1, 8);
    *tag = h[0];
    if (*tag == 'E')
        return n == r->index && r->left == 0 ? PGS_OK : PGS_ECORRUPT;
    if ((*tag != 'H' && *tag != 'R') || n > r->left)
        return PGS_ECORRUPT;
    void *buf = malloc(n ? n : 1);
    if (!buf)
        return PGS_ENOMEM;
    rc = read_exact(r, buf, n);
    if (!rc)
        rc = pgs_record_decode(buf, n, rec);
    free(buf);
    r->index += rc == PGS_OK;
    return rc;
}

/* Opens the file (r->f: fclose). */
static int open_dump(reader *r, const char *path)
{
    struct stat sb;
    memset(r, 0, sizeof *r);
    r->path = path;
    if (!(r->f = fopen(path, "rb")) || fstat(fileno(r->f), &sb) != 0) {
        fprintf(stderr, "pgs: %s: %s\n", path, strerror(errno));
        return X_FAIL;
    }
    r->size = (uint64_t)sb.st_size;
    return X_OK;
}

/* Goes to the first entry, checking the header on the way. */
static int rewind_dump(reader *r)
{
    unsigned char head[HEAD_LEN];
    r->left = r->size;
    r->index = 0;
    if (fseek(r->f, 0, SEEK_SET) != 0 || read_exact(r, head, sizeof head) ||
        memcmp(head, MAGIC, 8) != 0) {
        fprintf(stderr, "pgs: %s: not a pgs export file\n", r->path);
        return X_CORRUPT;
    }
    if (get_le(head + 8, 4) != FORMAT) {
        fprintf(stderr, "pgs: %s: export format %u; this pgs reads %d\n", r->path,
                (unsigned)get_le(head + 8, 4), FORMAT);
        return X_CORRUPT;
    }
    return X_OK;
}

/* Where the entries run: a ref's kept versions, then its current one. */
typedef struct group {
    pgs_ref ref;
    int open;          /* kept versions read, current not yet */
    uint64_t first;    /* its first version in the file */
    uint64_t last;     /* the version read last */
} group;

/* Checks that rec (tagged `tag`) may follow what g has seen, and moves g
** on; returns 1 if rec starts a new ref. */
static int group_next(group *g, int tag, const pgs_record *rec, int *bad)
{
    int same = g->open && pgs_ref_equal(&g->ref, &rec->ref);
    *bad = g->open && (!same || rec->version <= g->last);
    if (!same) {
        g->ref = rec->ref;
        g->first = rec->version;
    }
    g->last = rec->version;
    g->open = tag == 'H';
    return !same;
}

/* ------------------------------------------------------------------------
** import: the verifying pass.
*/
typedef struct plan {
    int quiet;  /* --replace: existing records are no error */
    uint64_t records, kept, existing;
} plan;

static int verify_entry(tool *t, const pgs_record *rec, int starts, plan *p)
{
    pgs_record *there = NULL;
    if (!starts)
        return PGS_OK;
    int rc = pgs_storage_get(t->st, &rec->ref, &there);
    free(there);
    if (rc == PGS_ENOTFOUND)
        return PGS_OK;
    if (rc && rc != PGS_ECORRUPT) /* a damaged record there exists too */
        return rc;
    if (p->existing++ < 5 && !p->quiet) {
        char text[PGS_REF_TEXT_MAX];
        pgs_ref_format(&rec->ref, text, sizeof text, NULL);
        fprintf(stderr, "pgs: import: %s exists in the store\n", text);
    }
    return PGS_OK;
}

/* Reads the whole file, checking every entry.  0 or an exit status. */
static int verify(tool *t, reader *r, plan *p)
{
    group g = {0};
    for (;;) {
        int tag, bad, rc;
        pgs_record *rec;
        if ((rc = next_entry(r, &tag, &rec)) == PGS_OK && tag == 'E')
            return g.open ? tool_fail(PGS_ECORRUPT, r->path) : X_OK;
        if (!rc) {
            int starts = group_next(&g, tag, rec, &bad);
            rc = bad ? PGS_ECORRUPT : verify_entry(t, rec, starts, p);
            p->records += tag == 'R';
            p->kept += tag == 'H';
        }
        free(rec);
        if (rc) {
            char what[300];
            snprintf(what, sizeof what, "%.250s: entry %" PRIu64, r->path, r->index + 1);
            return tool_fail(rc, what);
        }
    }
}

/* ------------------------------------------------------------------------
** import: the writing pass.
*/
typedef struct loader {
    tool *t;
    int replace, history;
    pgs_write w[BATCH];  /* records without history, waiting */
    size_t n;
} loader;

static int flush(loader *l)
{
    int rc = l->n ? pgs_storage_batch(l->t->st, l->w, l->n) : PGS_OK;
    for (size_t i = 0; i < l->n; i++)
        free(l->w[i].record);
    l->n = 0;
    return rc;
}

/* Writes rec (owned: freed here): a ref's first entry (`expected` 0) or
** the next version of the ref being written. */
static int load_entry(loader *l, const group *g, int tag, uint64_t expected, pgs_record *rec)
{
    int rc = PGS_OK;
    if (!expected && l->replace && (rc = pgs_storage_del(l->t->st, &rec->ref)) == PGS_ENOTFOUND)
        rc = PGS_OK;
    if (!rc && !expected && tag == 'R') { /* a record alone: batched */
        l->w[l->n++] = (pgs_write){.op = PGS_OP_PUT, .record = rec};
        return l->n == BATCH ? flush(l) : PGS_OK;
    }
    if (!rc)
        rc = flush(l);
    if (!rc) { /* a version of a chain: keep all before it */
        pgs_write w = {.op = PGS_OP_PUT, .record = rec, .expected_version = expected,
                       .keep = (uint32_t)(rec->version - g->first)};
        rc = pgs_storage_batch(l->t->st, &w, 1);
    }
    free(rec);
    return rc;
}

static int ignore(void *arg, const pgs_record *rec)
{
    return 0;
}

/* 0 for a store without history: kept versions are then skipped. */
static int keeps_history(tool *t)
{
    pgs_ref probe;
    pgs_ref_make(&probe, "pgs.probe", NULL, 0);
    return pgs_storage_history(t->st, &probe, ignore, NULL) != PGS_ENOTSUP;
}

/* The writing pass, over a file verify() accepted. */
static int load(tool *t, reader *r, int replace, uint64_t *skipped)
{
    loader *l = calloc(1, sizeof *l);
    if (!l)
        return PGS_ENOMEM;
    l->t = t;
    l->replace = replace;
    l->history = keeps_history(t);
    group g = {0};
    int rc = PGS_OK, tag = 0;
    while (!rc && tag != 'E') {
        pgs_record *rec;
        int bad;
        if ((rc = next_entry(r, &tag, &rec)) || tag == 'E')
            continue;
        if (tag == 'H' && !l->history) {
            free(rec);
            ++*skipped;
            continue;
        }
        uint64_t before = g.last;
        int starts = group_next(&g, tag, rec, &bad);
        rc = load_entry(l, &g, tag, starts ? 0 : before, rec);
    }
    int frc = flush(l);
    free(l);
    return rc ? rc : frc;
}

int cmd_import(tool *t, const args *a)
{
    reader r;
    plan p = {.quiet = a->replace};
    uint64_t skipped = 0;
    int x = open_dump(&r, a->pos[0]);
    if (!x && !(x = rewind_dump(&r)))
        x = verify(t, &r, &p);
    if (!x && p.existing && !a->replace) {
        fprintf(stderr, "pgs: import: %" PRIu64 " records exist in %s; nothing written "
                "(--replace overwrites them)\n", p.existing, t->url);
        x = X_EXISTS;
    }
    if (!x && !(x = rewind_dump(&r))) {
        int rc = load(t, &r, a->replace, &skipped);
        x = rc ? tool_fail(rc, "import") : X_OK;
    }
    if (r.f)
        fclose(r.f);
    if (!x)
        printf("imported %" PRIu64 " records and %" PRIu64 " kept versions into %s%s\n",
               p.records, p.kept - skipped, t->url,
               skipped ? " (it keeps no history: kept versions skipped)" : "");
    return x;
}
