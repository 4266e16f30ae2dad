/*
** memory.c — the "memory:" storage adapter: records in a hash table, gone
** when the store closes.  Each open is a fresh, independent store.
**
** It sits on the hot path (every handled message writes its state through
** a one-write batch), so:
**   - the table is split in SHARDS shards, each with its own mutex and its
**     own chained hash table; a ref's shard comes from the top bits of its
**     hash, its bucket from the low bits;
**   - a record is one allocation (header, name, key, args, options, state),
**     and a PUT over an existing record whose new bytes fit reuses it:
**     no malloc, one memcpy per field;
**   - a shard's table doubles when it holds more records than buckets.
**
** History: a record's replaced versions hang off it, newest first, on its
** `older` list.  A PUT that keeps history takes a fresh allocation, so the
** replaced one can move to that list whole.
**
** Batches of two or more writes lock every shard they touch in ascending
** order (so two batches cannot deadlock), check all expected versions and
** allocate everything first, and only then change the table: a conflict or
** ENOMEM leaves the store as it was.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SHARD_BITS 6
#define SHARDS (1u << SHARD_BITS) /* a uint64_t bitmask holds a shard set */
#define MIN_BUCKETS 8u

/* A stored record.  The ref is kept compactly (name and key bytes only). */
typedef struct mrec mrec;
struct mrec {
    mrec *next;          /* hash chain */
    mrec *older;         /* history: the version this one replaced, if kept */
    uint64_t version;
    uint32_t hash;       /* low 32 bits of pgsi_ref_hash: bucket and quick compare */
    uint32_t schema_version;
    uint64_t checksum;   /* stored as given; verified by storage.c */
    uint16_t key_len;
    uint8_t name_len;
    uint8_t claimed;     /* touched by the batch being applied */
    size_t args_len, options_len, state_len;
    size_t cap;          /* bytes available in data[] */
    unsigned char data[]; /* name, key, args, options, state */
};

typedef struct {
    pthread_mutex_t lock;
    mrec **buckets;      /* nbuckets chains; NULL until the first insert */
    size_t nbuckets;     /* a power of two */
    size_t count;
} shard;

/* One cache line per shard, so threads on different shards do not share. */
typedef union {
    shard s;
    unsigned char pad[(sizeof(shard) + 63) / 64 * 64];
} shard_slot;

typedef struct {
    shard_slot shards[SHARDS];
} store;

/* ------------------------------------------------------------------------
** Records.
*/
static size_t ref_name_len(const pgs_ref *ref)
{
    return strnlen(ref->name, sizeof ref->name); /* storage.c checked it */
}

static unsigned shard_of(uint64_t h)
{
    return (unsigned)(h >> (64 - SHARD_BITS));
}

/* Bytes of data[] rec needs, or SIZE_MAX if the lengths overflow. */
static size_t rec_need(const pgs_record *rec, size_t name_len)
{
    size_t n = name_len + rec->ref.key_len, parts[3];
    parts[0] = rec->args_len;
    parts[1] = rec->options_len;
    parts[2] = rec->state_len;
    for (int i = 0; i < 3; i++) {
        if (parts[i] > SIZE_MAX - n)
            return SIZE_MAX;
        n += parts[i];
    }
    return n;
}

/* Copies rec's changing fields (everything but the ref) into e. */
static void mrec_set(mrec *e, const pgs_record *rec)
{
    unsigned char *p = e->data + e->name_len + e->key_len;
    e->version = rec->version;
    e->schema_version = rec->schema_version;
    e->checksum = rec->checksum;
    e->args_len = rec->args_len;
    e->options_len = rec->options_len;
    e->state_len = rec->state_len;
    if (rec->args_len)
        memcpy(p, rec->args, rec->args_len);
    p += rec->args_len;
    if (rec->options_len)
        memcpy(p, rec->options, rec->options_len);
    p += rec->options_len;
    if (rec->state_len)
        memcpy(p, rec->state, rec->state_len);
}

/* A new record holding rec, or NULL (out of memory). */
static mrec *mrec_new(const pgs_record *rec, uint64_t hash, size_t name_len)
{
    size_t need = rec_need(rec, name_len);
    if (need > SIZE_MAX - sizeof(mrec))
        return NULL; /* lengths overflowed */
    mrec *e = malloc(sizeof(mrec) + need);
    if (!e)
        return NULL;
    e->next = NULL;
    e->older = NULL;
    e->hash = (uint32_t)hash;
    e->key_len = rec->ref.key_len;
    e->name_len = (uint8_t)name_len;
    e->claimed = 0;
    e->cap = need;
    memcpy(e->data, rec->ref.name, name_len);
    memcpy(e->data + name_len, rec->ref.key, rec->ref.key_len);
    mrec_set(e, rec);
    return e;
}

/* 1 if an update to rec can be written over e in place.  A much smaller
** record gets a fresh allocation, so one huge state does not pin its
** memory for ever. */
static int mrec_fits(const mrec *e, const pgs_record *rec)
{
    size_t need = rec_need(rec, e->name_len);
    return need <= e->cap && (e->cap <= 4096 || need >= e->cap / 4);
}

/* Frees e and the history behind it. */
static void free_chain(mrec *e)
{
    for (mrec *older; e; e = older) {
        older = e->older;
        free(e);
    }
}

/* Detaches the history of e that a PUT with `keep` drops (versions not
** above e->version - 1 - keep) and returns it, for free_chain() outside
** the lock. */
static mrec *cut_history(mrec *e, uint32_t keep)
{
    mrec **link = &e->older;
    while (*link && e->version - (*link)->version <= keep)
        link = &(*link)->older;
    mrec *dropped = *link;
    *link = NULL;
    return dropped;
}

/* The record's fields as a pgs_record (pointers into e). */
static void mrec_view(const mrec *e, pgs_record *out)
{
    const unsigned char *p = e->data;
    memset(&out->ref, 0, sizeof out->ref);
    memcpy(out->ref.name, p, e->name_len);
    p += e->name_len;
    out->ref.key_len = e->key_len;
    memcpy(out->ref.key, p, e->key_len);
    p += e->key_len;
    out->version = e->version;
    out->schema_version = e->schema_version;
    out->checksum = e->checksum;
    out->args = e->args_len ? p : NULL;
    out->args_len = e->args_len;
    p += e->args_len;
    out->options = e->options_len ? p : NULL;
    out->options_len = e->options_len;
    p += e->options_len;
    out->state = e->state_len ? p : NULL;
    out->state_len = e->state_len;
}

/* ------------------------------------------------------------------------
** Shard tables (caller holds the shard lock).
*/

/* The link pointing at ref's record (*link is NULL if absent). */
static mrec **find_link(shard *s, const pgs_ref *ref, uint64_t hash, size_t name_len)
{
    if (!s->buckets)
        return NULL;
    mrec **link = &s->buckets[(uint32_t)hash & (s->nbuckets - 1)];
    for (mrec *e; (e = *link) != NULL; link = &e->next) {
        if (e->hash == (uint32_t)hash && e->name_len == name_len &&
            e->key_len == ref->key_len &&
            memcmp(e->data, ref->name, name_len) == 0 &&
            memcmp(e->data + name_len, ref->key, ref->key_len) == 0)
            return link;
    }
    return link;
}

static mrec *find(shard *s, const pgs_ref *ref, uint64_t hash, size_t name_len)
{
    mrec **link = find_link(s, ref, hash, name_len);
    return link ? *link : NULL;
}

/* Rehashes into n buckets.  On ENOMEM the old table stays: chains get
** longer but everything still works, so growth never fails a write. */
static void resize(shard *s, size_t n)
{
    mrec **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (mrec *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            mrec **head = &b[e->hash & (n - 1)];
            e->next = *head;
            *head = e;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

/* Makes sure there is a bucket array to insert into.  PGS_ENOMEM if not. */
static int ensure_table(shard *s)
{
    if (!s->buckets)
        resize(s, MIN_BUCKETS);
    return s->buckets ? PGS_OK : PGS_ENOMEM;
}

static void insert(shard *s, mrec *e)
{
    mrec **head = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->next = *head;
    *head = e;
    s->count++;
}

/* Unlinks e (which is in s) and returns it. */
static mrec *unlink_rec(shard *s, mrec *e)
{
    mrec **link = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*link != e)
        link = &(*link)->next;
    *link = e->next;
    s->count--;
    return e;
}

static void maybe_grow(shard *s)
{
    if (s->count > s->nbuckets && s->nbuckets <= SIZE_MAX / 2 / sizeof(mrec *))
        resize(s, s->nbuckets * 2);
}

/* ------------------------------------------------------------------------
** Open and close.
*/
static int mem_open(const char *url, void **state)
{
    if (!url || strncasecmp(url, "memory:", 7) != 0)
        return PGS_EURL;
    store *m = aligned_alloc(64, sizeof(store));
    if (!m)
        return PGS_ENOMEM;
    memset(m, 0, sizeof *m);
    for (unsigned i = 0; i < SHARDS; i++) {
        if (pthread_mutex_init(&m->shards[i].s.lock, NULL) != 0) {
            while (i-- > 0)
                pthread_mutex_destroy(&m->shards[i].s.lock);
            free(m);
            return PGS_ESTORAGE;
        }
    }
    *state = m;
    return PGS_OK;
}

static void mem_close(void *state)
{
    store *m = state;
    if (!m)
        return;
    for (unsigned i = 0; i < SHARDS; i++) {
        shard *s = &m->shards[i].s;
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (mrec *e = s->buckets[b], *next; e; e = next) {
                next = e->next;
                free_chain(e);
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(m);
}

/* ------------------------------------------------------------------------
** Get and scan.
*/
static int mem_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    store *m = state;
    uint64_t h = pgsi_ref_hash(ref);
    size_t nl = ref_name_len(ref);
    shard *s = &m->shards[shard_of(h)].s;
    pgs_record view;
    int rc = PGS_ENOTFOUND;
    *out = NULL;
    pthread_mutex_lock(&s->lock);
    mrec *e = find(s, ref, h, nl);
    if (e) {
        mrec_view(e, &view);
        rc = pgs_record_copy(&view, out); /* under the lock: a consistent copy */
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* fn runs under the shard lock; it must not call into the store (the
** adapter contract says so). */
static int mem_scan(void *state, const char *name,
                    int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    store *m = state;
    size_t nl = name ? strlen(name) : 0;
    pgs_record view;
    for (unsigned i = 0; i < SHARDS; i++) {
        shard *s = &m->shards[i].s;
        int rc = 0;
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets && !rc; b++) {
            for (mrec *e = s->buckets[b]; e && !rc; e = e->next) {
                if (name && (e->name_len != nl || memcmp(e->data, name, nl) != 0))
                    continue;
                mrec_view(e, &view);
                rc = fn(arg, &view);
            }
        }
        pthread_mutex_unlock(&s->lock);
        if (rc)
            return rc;
    }
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** One-write batches: the hot path.  One lock, one lookup, and for an
** update that fits, no allocation.
*/
static int put_one(store *m, const pgs_write *w)
{
    const pgs_record *rec = w->record;
    uint64_t h = pgsi_ref_hash(&rec->ref);
    size_t nl = ref_name_len(&rec->ref);
    shard *s = &m->shards[shard_of(h)].s;
    mrec *dead = NULL;
    int rc = PGS_OK;
    pthread_mutex_lock(&s->lock);
    mrec **link = find_link(s, &rec->ref, h, nl);
    mrec *e = link ? *link : NULL;
    if ((e ? e->version : 0) != w->expected_version) {
        rc = PGS_ECONFLICT;
    } else if (e && !w->keep && mrec_fits(e, rec)) {
        mrec_set(e, rec);
        dead = cut_history(e, 0);
    } else if ((rc = ensure_table(s)) == PGS_OK) {
        mrec *n = mrec_new(rec, h, nl);
        if (!n) {
            rc = PGS_ENOMEM;
        } else if (e) { /* replace e where it stands in its chain */
            n->next = e->next;
            *link = n;
            n->older = e;
            dead = cut_history(n, w->keep);
        } else {
            insert(s, n);
            maybe_grow(s);
        }
    }
    pthread_mutex_unlock(&s->lock);
    free_chain(dead);
    return rc;
}

static int del_one(store *m, const pgs_ref *ref)
{
    uint64_t h = pgsi_ref_hash(ref);
    size_t nl = ref_name_len(ref);
    shard *s = &m->shards[shard_of(h)].s;
    mrec *e = NULL;
    pthread_mutex_lock(&s->lock);
    mrec **link = find_link(s, ref, h, nl);
    if (link && (e = *link) != NULL) {
        *link = e->next;
        s->count--;
    }
    pthread_mutex_unlock(&s->lock);
    int rc = e ? PGS_OK : PGS_ENOTFOUND;
    free_chain(e);
    return rc;
}

/* ------------------------------------------------------------------------
** Batches of several writes: prepare everything under the locks, then
** apply (or roll back) in one go.
*/
typedef struct {
    shard *s;
    uint64_t hash;
    mrec *old;      /* the record now stored, if any */
    mrec *fresh;    /* allocation replacing old or inserted (PUT) */
} plan;

static const pgs_ref *wref(const pgs_write *w)
{
    return w->op == PGS_OP_PUT ? &w->record->ref : w->ref;
}

static void lock_set(store *m, uint64_t set)
{
    for (unsigned i = 0; i < SHARDS; i++)
        if (set >> i & 1)
            pthread_mutex_lock(&m->shards[i].s.lock);
}

static void unlock_set(store *m, uint64_t set)
{
    for (unsigned i = SHARDS; i-- > 0;)
        if (set >> i & 1)
            pthread_mutex_unlock(&m->shards[i].s.lock);
}

/* Prepares write w into p: checks the version and allocates what the PUT
** needs.  A new record is inserted at once, marked claimed, so a second
** write of the same ref in the batch sees it (and is refused). */
static int prepare(const pgs_write *w, plan *p)
{
    const pgs_ref *ref = wref(w);
    size_t nl = ref_name_len(ref);
    mrec *e = find(p->s, ref, p->hash, nl);
    if (e && e->claimed)
        return PGS_EINVAL; /* two writes of one ref: storage.c forbids it */
    p->old = e;
    if (e)
        e->claimed = 1;
    if (w->op == PGS_OP_DELETE)
        return PGS_OK; /* absent: a no-op in a multi-write batch */
    if ((e ? e->version : 0) != w->expected_version)
        return PGS_ECONFLICT;
    if (e && !w->keep && mrec_fits(e, w->record))
        return PGS_OK;
    if (ensure_table(p->s))
        return PGS_ENOMEM;
    if (!(p->fresh = mrec_new(w->record, p->hash, nl)))
        return PGS_ENOMEM;
    if (!e) {
        p->fresh->claimed = 1;
        insert(p->s, p->fresh);
    }
    return PGS_OK;
}

/* Undoes prepare() for the first n plans. */
static void rollback(plan *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].old)
            p[i].old->claimed = 0;
        if (p[i].fresh && !p[i].old)
            unlink_rec(p[i].s, p[i].fresh);
        free(p[i].fresh);
    }
}

/* Applies a prepared write; returns the records it drops, for
** free_chain() (under the shard locks, but batches are not the hot path). */
static mrec *apply(const pgs_write *w, plan *p)
{
    if (w->op == PGS_OP_DELETE)
        return p->old ? unlink_rec(p->s, p->old) : NULL;
    if (!p->fresh) {
        mrec_set(p->old, w->record);
        p->old->claimed = 0;
        return cut_history(p->old, 0);
    }
    p->fresh->claimed = 0;
    if (!p->old)
        return NULL;
    insert(p->s, p->fresh);
    unlink_rec(p->s, p->old);
    p->old->claimed = 0;
    p->fresh->older = p->old;
    return cut_history(p->fresh, w->keep);
}

static int batch_many(store *m, const pgs_write *w, size_t n)
{
    plan small[16], *p = small;
    if (n > sizeof small / sizeof small[0] && !(p = calloc(n, sizeof *p)))
        return PGS_ENOMEM;
    if (p == small)
        memset(small, 0, sizeof small);
    uint64_t set = 0;
    for (size_t i = 0; i < n; i++) {
        p[i].hash = pgsi_ref_hash(wref(&w[i]));
        unsigned k = shard_of(p[i].hash);
        p[i].s = &m->shards[k].s;
        set |= (uint64_t)1 << k;
    }
    lock_set(m, set);
    int rc = PGS_OK;
    size_t done = 0;
    while (done < n && (rc = prepare(&w[done], &p[done])) == PGS_OK)
        done++;
    if (rc) {
        rollback(p, done + 1);
    } else {
        for (size_t i = 0; i < n; i++)
            free_chain(apply(&w[i], &p[i]));
        for (unsigned k = 0; k < SHARDS; k++)
            if (set >> k & 1)
                maybe_grow(&m->shards[k].s);
    }
    unlock_set(m, set);
    if (p != small)
        free(p);
    return rc;
}

static int mem_batch(void *state, const pgs_write *writes, size_t n)
{
    store *m = state;
    if (n == 1)
        return writes[0].op == PGS_OP_PUT ? put_one(m, &writes[0])
                                          : del_one(m, writes[0].ref);
    return n ? batch_many(m, writes, n) : PGS_OK;
}

/* fn runs under the shard lock, as in scan. */
static int mem_history(void *state, const pgs_ref *ref,
                       int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    store *m = state;
    uint64_t h = pgsi_ref_hash(ref);
    shard *s = &m->shards[shard_of(h)].s;
    pgs_record view;
    int rc = PGS_OK;
    pthread_mutex_lock(&s->lock);
    mrec *e = find(s, ref, h, ref_name_len(ref));
    for (mrec *o = e ? e->older : NULL; o && !rc; o = o->older) {
        mrec_view(o, &view);
        rc = fn(arg, &view);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

const pgs_storage_ops pgsi_memory_ops = {
    .version = PGS_STORAGE_VERSION,
    .scheme = "memory",
    .open = mem_open,
    .close = mem_close,
    .get = mem_get,
    .batch = mem_batch,
    .scan = mem_scan,
    .flags = PGS_STORAGE_INLINE, /* a batch is a few memcpys: no group commit */
    .history = mem_history,
};
