/*
** conformance.c — the storage adapter conformance suite (see conformance.h).
**
** Checks the adapter contract of pgs.h and the batch rules of
** src/storage/storage.c through the public pgs_storage_* calls, so the
** checksum layer is exercised too.  Every case uses its own behaviour
** names and wipes them first.
*/
#include "conformance.h"

#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
** Helpers.
*/
typedef struct {
    const char *url;
    const pgs_storage_ops *ops;
} conf_target;

static pgs_storage *conf_open(const conf_target *t)
{
    pgs_storage *st = NULL;
    int rc = pgs_storage_open(&st, t->url, t->ops);
    CHECK_EQ(rc, PGS_OK);
    return rc ? NULL : st;
}

static pgs_ref conf_ref(const char *name, const void *key, size_t key_len)
{
    pgs_ref r;
    int rc = pgs_ref_make(&r, name, key, key_len);
    REQUIRE(rc == PGS_OK);
    return r;
}

static pgs_ref conf_refs(const char *name, const char *key)
{
    return conf_ref(name, key, strlen(key));
}

/* A record whose bytes point at the caller's buffers. */
static pgs_record conf_rec(const pgs_ref *ref, uint64_t version, const void *state,
                           size_t state_len)
{
    static const unsigned char opts[8] = {1, 1, 1, 0, 0x30, 0x75, 0, 0};
    pgs_record r;
    memset(&r, 0, sizeof r);
    r.ref = *ref;
    r.version = version;
    r.schema_version = 3;
    r.args = "start-args";
    r.args_len = 10;
    r.options = opts;
    r.options_len = sizeof opts;
    r.state = state;
    r.state_len = state_len;
    return r;
}

static int bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* 1 if got holds every field of want (whose checksum put filled in). */
static int rec_same(const pgs_record *got, const pgs_record *want)
{
    return got && pgs_ref_equal(&got->ref, &want->ref) &&
           got->version == want->version &&
           got->schema_version == want->schema_version &&
           got->checksum == want->checksum &&
           got->checksum == pgs_record_checksum(got) &&
           bytes_eq(got->args, got->args_len, want->args, want->args_len) &&
           bytes_eq(got->options, got->options_len, want->options, want->options_len) &&
           bytes_eq(got->state, got->state_len, want->state, want->state_len);
}

/* Gets ref and checks it equals want. */
static void expect_rec(pgs_storage *st, const pgs_record *want)
{
    pgs_record *got = NULL;
    CHECK_EQ(pgs_storage_get(st, &want->ref, &got), PGS_OK);
    CHECK(rec_same(got, want));
    free(got);
}

/* The stored version of ref, 0 if absent, UINT64_MAX on error. */
static uint64_t stored_version(pgs_storage *st, const pgs_ref *ref)
{
    pgs_record *got = NULL;
    int rc = pgs_storage_get(st, ref, &got);
    uint64_t v = rc == PGS_OK ? got->version : rc == PGS_ENOTFOUND ? 0 : UINT64_MAX;
    free(got);
    return v;
}

static void expect_absent(pgs_storage *st, const pgs_ref *ref)
{
    pgs_record *got = (pgs_record *)1;
    CHECK_EQ(pgs_storage_get(st, ref, &got), PGS_ENOTFOUND);
    CHECK(got == NULL);
}

/* Collects the refs a scan sees. */
typedef struct {
    pgs_ref *refs;
    size_t n, cap;
    int bad;
} ref_list;

static int collect(void *arg, const pgs_record *rec)
{
    ref_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        pgs_ref *p = realloc(l->refs, cap * sizeof *p);
        if (!p) {
            l->bad = 1;
            return 1;
        }
        l->refs = p;
        l->cap = cap;
    }
    l->refs[l->n++] = rec->ref;
    return 0;
}

/* Deletes every record of behaviour `name`. */
static void wipe(pgs_storage *st, const char *name)
{
    ref_list l = {0};
    CHECK_EQ(pgs_storage_scan(st, name, collect, &l), PGS_OK);
    for (size_t i = 0; i < l.n; i++)
        CHECK_EQ(pgs_storage_del(st, &l.refs[i]), PGS_OK);
    free(l.refs);
}

static size_t count_all(pgs_storage *st)
{
    ref_list l = {0};
    CHECK_EQ(pgs_storage_scan(st, NULL, collect, &l), PGS_OK);
    free(l.refs);
    return l.n;
}

/* ------------------------------------------------------------------------
** Cases.  Each gets a freshly opened handle.
*/
static void get_absent(pgs_storage *st)
{
    wipe(st, "conf-absent");
    pgs_ref r = conf_refs("conf-absent", "nobody");
    expect_absent(st, &r);
}

static void put_new_then_get(pgs_storage *st)
{
    wipe(st, "conf-put");
    pgs_ref r = conf_refs("conf-put", "k1");
    unsigned char state[16];
    for (int i = 0; i < 16; i++)
        state[i] = (unsigned char)(i * 17 + 1);
    pgs_record rec = conf_rec(&r, 1, state, sizeof state);
    CHECK_EQ(pgs_storage_put(st, &rec, 0), PGS_OK);
    CHECK(rec.checksum == pgs_record_checksum(&rec));
    expect_rec(st, &rec);

    /* Empty byte fields, given as NULL. */
    pgs_ref r2 = conf_refs("conf-put", "k2");
    pgs_record bare = conf_rec(&r2, 1, NULL, 0);
    bare.args = NULL;
    bare.args_len = 0;
    bare.options = NULL;
    bare.options_len = 0;
    CHECK_EQ(pgs_storage_put(st, &bare, 0), PGS_OK);
    expect_rec(st, &bare);
}

static void put_wrong_version_conflicts(pgs_storage *st)
{
    wipe(st, "conf-conflict");
    pgs_ref r = conf_refs("conf-conflict", "k");
    pgs_record v1 = conf_rec(&r, 1, "one", 3);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    pgs_record v2 = conf_rec(&r, 2, "two!", 4);
    CHECK_EQ(pgs_storage_put(st, &v2, 0), PGS_ECONFLICT);
    CHECK_EQ(pgs_storage_put(st, &v2, 2), PGS_ECONFLICT);
    CHECK_EQ(pgs_storage_put(st, &v2, 7), PGS_ECONFLICT);
    expect_rec(st, &v1);

    /* Expecting a version of an absent record conflicts too. */
    pgs_ref a = conf_refs("conf-conflict", "absent");
    pgs_record x = conf_rec(&a, 4, "x", 1);
    CHECK_EQ(pgs_storage_put(st, &x, 3), PGS_ECONFLICT);
    expect_absent(st, &a);
}

static void put_update(pgs_storage *st)
{
    wipe(st, "conf-update");
    pgs_ref r = conf_refs("conf-update", "k");
    static unsigned char big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 7);
    pgs_record v1 = conf_rec(&r, 1, "aaaaaaaaaaaaaaaa", 16);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    pgs_record v2 = conf_rec(&r, 2, "bbbbbbbbbbbbbbbb", 16); /* same size */
    CHECK_EQ(pgs_storage_put(st, &v2, 1), PGS_OK);
    expect_rec(st, &v2);
    pgs_record v3 = conf_rec(&r, 3, big, sizeof big); /* grows */
    CHECK_EQ(pgs_storage_put(st, &v3, 2), PGS_OK);
    expect_rec(st, &v3);
    pgs_record v4 = conf_rec(&r, 4, "c", 1); /* shrinks */
    v4.args = NULL;
    v4.args_len = 0;
    CHECK_EQ(pgs_storage_put(st, &v4, 3), PGS_OK);
    expect_rec(st, &v4);
    pgs_record v5 = conf_rec(&r, 5, big, 100);
    v5.schema_version = 9;
    CHECK_EQ(pgs_storage_put(st, &v5, 4), PGS_OK);
    expect_rec(st, &v5);
}

static void delete_then_get(pgs_storage *st)
{
    wipe(st, "conf-del");
    pgs_ref r = conf_refs("conf-del", "k");
    pgs_record v1 = conf_rec(&r, 1, "state", 5);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    CHECK_EQ(pgs_storage_del(st, &r), PGS_OK);
    expect_absent(st, &r);
    CHECK_EQ(pgs_storage_del(st, &r), PGS_ENOTFOUND);
    /* Recreated from scratch: the stored version is 0 again. */
    CHECK_EQ(pgs_storage_put(st, &v1, 1), PGS_ECONFLICT);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    expect_rec(st, &v1);
}

static void delete_absent(pgs_storage *st)
{
    wipe(st, "conf-delabsent");
    pgs_ref r = conf_refs("conf-delabsent", "never");
    CHECK_EQ(pgs_storage_del(st, &r), PGS_ENOTFOUND);
    pgs_ref e = conf_ref("conf-delabsent", NULL, 0);
    CHECK_EQ(pgs_storage_del(st, &e), PGS_ENOTFOUND);
}

static void batch_applies_all(pgs_storage *st)
{
    wipe(st, "conf-batch");
    pgs_ref a = conf_refs("conf-batch", "a"), b = conf_refs("conf-batch", "b"),
            c = conf_refs("conf-batch", "c"), d = conf_refs("conf-batch", "d");
    pgs_record a1 = conf_rec(&a, 1, "a1", 2), b1 = conf_rec(&b, 1, "b1", 2);
    CHECK_EQ(pgs_storage_put(st, &a1, 0), PGS_OK);
    CHECK_EQ(pgs_storage_put(st, &b1, 0), PGS_OK);

    pgs_record a2 = conf_rec(&a, 2, "a2-longer-than-before", 21);
    pgs_record c1 = conf_rec(&c, 1, "c1", 2), d1 = conf_rec(&d, 1, "d1", 2);
    pgs_write w[] = {
        {.op = PGS_OP_PUT, .record = &a2, .expected_version = 1},
        {.op = PGS_OP_PUT, .record = &c1, .expected_version = 0},
        {.op = PGS_OP_DELETE, .ref = &b},
        {.op = PGS_OP_PUT, .record = &d1, .expected_version = 0},
    };
    CHECK_EQ(pgs_storage_batch(st, w, 4), PGS_OK);
    expect_rec(st, &a2);
    expect_rec(st, &c1);
    expect_rec(st, &d1);
    expect_absent(st, &b);
    CHECK(a2.checksum == pgs_record_checksum(&a2));

    /* An empty batch is fine and changes nothing. */
    CHECK_EQ(pgs_storage_batch(st, NULL, 0), PGS_OK);
    expect_rec(st, &a2);
}

/* A batch with one bad write, at position `bad`: nothing may change. */
static void conflict_at(pgs_storage *st, size_t bad)
{
    wipe(st, "conf-batchx");
    pgs_ref a = conf_refs("conf-batchx", "a"), b = conf_refs("conf-batchx", "b"),
            c = conf_refs("conf-batchx", "c"), d = conf_refs("conf-batchx", "d");
    pgs_record a1 = conf_rec(&a, 1, "a1", 2), c1 = conf_rec(&c, 1, "c1", 2);
    CHECK_EQ(pgs_storage_put(st, &a1, 0), PGS_OK);
    CHECK_EQ(pgs_storage_put(st, &c1, 0), PGS_OK);

    pgs_record a2 = conf_rec(&a, 2, "a2-a-much-longer-state", 22);
    pgs_record d1 = conf_rec(&d, 1, "d1", 2);
    pgs_record bx = conf_rec(&b, 6, "bx", 2); /* b is absent: 5 is wrong */
    pgs_write good[3] = {
        {.op = PGS_OP_PUT, .record = &a2, .expected_version = 1},
        {.op = PGS_OP_PUT, .record = &d1, .expected_version = 0},
        {.op = PGS_OP_DELETE, .ref = &c},
    };
    pgs_write w[4];
    for (size_t i = 0, j = 0; i < 4; i++)
        w[i] = i == bad ? (pgs_write){.op = PGS_OP_PUT, .record = &bx, .expected_version = 5}
                        : good[j++];
    CHECK_EQ(pgs_storage_batch(st, w, 4), PGS_ECONFLICT);
    expect_rec(st, &a1);
    expect_rec(st, &c1);
    expect_absent(st, &b);
    expect_absent(st, &d);
}

static void batch_conflict_applies_none(pgs_storage *st)
{
    for (size_t bad = 0; bad < 4; bad++)
        conflict_at(st, bad);
}

static void batch_delete_absent_is_noop(pgs_storage *st)
{
    wipe(st, "conf-batchdel");
    pgs_ref x = conf_refs("conf-batchdel", "x"), y = conf_refs("conf-batchdel", "y");
    pgs_record x1 = conf_rec(&x, 1, "x1", 2);
    pgs_write w[] = {
        {.op = PGS_OP_PUT, .record = &x1, .expected_version = 0},
        {.op = PGS_OP_DELETE, .ref = &y},
    };
    CHECK_EQ(pgs_storage_batch(st, w, 2), PGS_OK);
    expect_rec(st, &x1);
    expect_absent(st, &y);
}

static void batch_duplicate_ref_rejected(pgs_storage *st)
{
    wipe(st, "conf-batchdup");
    pgs_ref x = conf_refs("conf-batchdup", "x");
    pgs_record x1 = conf_rec(&x, 1, "x1", 2), x2 = conf_rec(&x, 2, "x2", 2);
    pgs_write w[] = {
        {.op = PGS_OP_PUT, .record = &x1, .expected_version = 0},
        {.op = PGS_OP_PUT, .record = &x2, .expected_version = 1},
    };
    CHECK_EQ(pgs_storage_batch(st, w, 2), PGS_EINVAL);
    expect_absent(st, &x);
    CHECK_EQ(pgs_storage_put(st, &x1, 0), PGS_OK);
    pgs_write wd[] = {
        {.op = PGS_OP_DELETE, .ref = &x},
        {.op = PGS_OP_PUT, .record = &x2, .expected_version = 1},
    };
    CHECK_EQ(pgs_storage_batch(st, wd, 2), PGS_EINVAL);
    expect_rec(st, &x1);
}

/* Checks a scan of `name` saw exactly keys "0".."n-1", each once. */
typedef struct {
    const char *name;
    unsigned char seen[64];
    size_t n;
    int bad;
} scan_seen;

static int see(void *arg, const pgs_record *rec)
{
    scan_seen *s = arg;
    unsigned k = 0;
    if (strcmp(rec->ref.name, s->name) != 0 || rec->ref.key_len != 1 ||
        (k = rec->ref.key[0]) >= 64 || s->seen[k]++ ||
        !bytes_eq(rec->state, rec->state_len, &rec->ref.key[0], 1) ||
        rec->checksum != pgs_record_checksum(rec))
        s->bad = 1;
    s->n++;
    return 0;
}

static void put_keys(pgs_storage *st, const char *name, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned char k = (unsigned char)i;
        pgs_ref r = conf_ref(name, &k, 1);
        pgs_record rec = conf_rec(&r, 1, &k, 1);
        CHECK_EQ(pgs_storage_put(st, &rec, 0), PGS_OK);
    }
}

static void scan_by_name(pgs_storage *st)
{
    wipe(st, "conf-scan-a");
    wipe(st, "conf-scan-b");
    wipe(st, "conf-scan");
    put_keys(st, "conf-scan-a", 40);
    put_keys(st, "conf-scan-b", 7);
    put_keys(st, "conf-scan", 3); /* a prefix of the others' names */
    scan_seen a = {.name = "conf-scan-a"}, b = {.name = "conf-scan-b"},
              c = {.name = "conf-scan"};
    CHECK_EQ(pgs_storage_scan(st, "conf-scan-a", see, &a), PGS_OK);
    CHECK_EQ(pgs_storage_scan(st, "conf-scan-b", see, &b), PGS_OK);
    CHECK_EQ(pgs_storage_scan(st, "conf-scan", see, &c), PGS_OK);
    CHECK(!a.bad && a.n == 40);
    CHECK(!b.bad && b.n == 7);
    CHECK(!c.bad && c.n == 3);
    scan_seen none = {.name = "conf-scan-none"};
    CHECK_EQ(pgs_storage_scan(st, "conf-scan-none", see, &none), PGS_OK);
    CHECK(none.n == 0);
}

/* Counts the records of our names in a full scan. */
typedef struct {
    size_t all, a, b;
} scan_counts;

static int count_ours(void *arg, const pgs_record *rec)
{
    scan_counts *c = arg;
    c->all++;
    c->a += strcmp(rec->ref.name, "conf-all-a") == 0;
    c->b += strcmp(rec->ref.name, "conf-all-b") == 0;
    return 0;
}

static void scan_null_returns_all(pgs_storage *st)
{
    wipe(st, "conf-all-a");
    wipe(st, "conf-all-b");
    size_t before = count_all(st);
    put_keys(st, "conf-all-a", 20);
    put_keys(st, "conf-all-b", 5);
    scan_counts c = {0};
    CHECK_EQ(pgs_storage_scan(st, NULL, count_ours, &c), PGS_OK);
    CHECK(c.all == before + 25);
    CHECK(c.a == 20 && c.b == 5);
}

static int stop_after_3(void *arg, const pgs_record *rec)
{
    (void)rec;
    return ++*(int *)arg == 3 ? 42 : 0;
}

static void scan_early_stop(pgs_storage *st)
{
    wipe(st, "conf-stop");
    put_keys(st, "conf-stop", 10);
    int calls = 0;
    CHECK_EQ(pgs_storage_scan(st, "conf-stop", stop_after_3, &calls), 42);
    CHECK(calls == 3);
    calls = 0;
    CHECK_EQ(pgs_storage_scan(st, NULL, stop_after_3, &calls), 42);
    CHECK(calls == 3);
}

static void large_state_16mib(pgs_storage *st)
{
    wipe(st, "conf-large");
    size_t n = (size_t)16 << 20;
    unsigned char *big = malloc(n);
    REQUIRE(big);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        big[i] = (unsigned char)x;
    }
    pgs_ref r = conf_refs("conf-large", "big");
    pgs_record v1 = conf_rec(&r, 1, big, n);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    expect_rec(st, &v1);
    big[n / 2] ^= 0xff;
    pgs_record v2 = conf_rec(&r, 2, big, n);
    CHECK_EQ(pgs_storage_put(st, &v2, 1), PGS_OK);
    expect_rec(st, &v2);
    pgs_record v3 = conf_rec(&r, 3, "small again", 11);
    CHECK_EQ(pgs_storage_put(st, &v3, 2), PGS_OK);
    expect_rec(st, &v3);
    free(big);
    wipe(st, "conf-large");
}

static void binary_keys(pgs_storage *st)
{
    wipe(st, "conf-bin");
    wipe(st, "conf-bin1");
    unsigned char key[PGS_KEY_MAX];
    for (int i = 0; i < PGS_KEY_MAX; i++)
        key[i] = (unsigned char)i;
    pgs_ref r = conf_ref("conf-bin", key, sizeof key);
    pgs_record rec = conf_rec(&r, 1, key, sizeof key);
    CHECK_EQ(pgs_storage_put(st, &rec, 0), PGS_OK);
    expect_rec(st, &rec);
    /* The same bytes reversed are a different server. */
    unsigned char rev[PGS_KEY_MAX];
    for (int i = 0; i < PGS_KEY_MAX; i++)
        rev[i] = (unsigned char)(255 - i);
    pgs_ref rr = conf_ref("conf-bin", rev, sizeof rev);
    expect_absent(st, &rr);

    for (int i = 0; i < 256; i++) {
        unsigned char k = (unsigned char)i, s[2] = {k, (unsigned char)~k};
        pgs_ref r1 = conf_ref("conf-bin1", &k, 1);
        pgs_record one = conf_rec(&r1, 1, s, 2);
        CHECK_EQ(pgs_storage_put(st, &one, 0), PGS_OK);
    }
    for (int i = 0; i < 256; i++) {
        unsigned char k = (unsigned char)i, s[2] = {k, (unsigned char)~k};
        pgs_ref r1 = conf_ref("conf-bin1", &k, 1);
        pgs_record one = conf_rec(&r1, 1, s, 2);
        one.checksum = pgs_record_checksum(&one);
        expect_rec(st, &one);
    }
    ref_list l = {0};
    CHECK_EQ(pgs_storage_scan(st, "conf-bin1", collect, &l), PGS_OK);
    CHECK(l.n == 256);
    unsigned char seen[256] = {0};
    for (size_t i = 0; i < l.n; i++)
        if (l.refs[i].key_len == 1)
            seen[l.refs[i].key[0]]++;
    for (int i = 0; i < 256; i++)
        CHECK(seen[i] == 1);
    free(l.refs);
}

static void empty_key(pgs_storage *st)
{
    wipe(st, "conf-empty");
    pgs_ref r = conf_ref("conf-empty", NULL, 0);
    pgs_ref z = conf_ref("conf-empty", "", 1); /* one NUL byte: another key */
    pgs_record rec = conf_rec(&r, 1, "e", 1);
    CHECK_EQ(pgs_storage_put(st, &rec, 0), PGS_OK);
    expect_rec(st, &rec);
    expect_absent(st, &z);
    pgs_record rec2 = conf_rec(&r, 2, "ee", 2);
    CHECK_EQ(pgs_storage_put(st, &rec2, 1), PGS_OK);
    expect_rec(st, &rec2);
}

static void bad_arguments(pgs_storage *st)
{
    pgs_ref r = conf_refs("conf-bad", "k");
    pgs_record *out = NULL;
    pgs_record rec = conf_rec(&r, 1, "s", 1);
    CHECK_EQ(pgs_storage_get(NULL, &r, &out), PGS_EINVAL);
    CHECK_EQ(pgs_storage_get(st, NULL, &out), PGS_EINVAL);
    CHECK_EQ(pgs_storage_get(st, &r, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_storage_put(NULL, &rec, 0), PGS_EINVAL);
    CHECK_EQ(pgs_storage_put(st, NULL, 0), PGS_EINVAL);
    CHECK_EQ(pgs_storage_del(st, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_storage_scan(st, NULL, NULL, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_storage_scan(st, "bad name", collect, NULL), PGS_EREF);

    pgs_record v0 = conf_rec(&r, 0, "s", 1); /* versions start at 1 */
    CHECK_EQ(pgs_storage_put(st, &v0, 0), PGS_EINVAL);
    pgs_record hole = conf_rec(&r, 1, NULL, 5); /* NULL bytes, length 5 */
    CHECK_EQ(pgs_storage_put(st, &hole, 0), PGS_EINVAL);
    pgs_record badref = rec;
    badref.ref.name[0] = '/';
    CHECK_EQ(pgs_storage_put(st, &badref, 0), PGS_EREF);
    CHECK_EQ(pgs_storage_get(st, &badref.ref, &out), PGS_EREF);
    pgs_record longkey = rec;
    longkey.ref.key_len = PGS_KEY_MAX + 1;
    CHECK_EQ(pgs_storage_put(st, &longkey, 0), PGS_EREF);
    pgs_write odd = {.op = 99, .ref = &r};
    CHECK_EQ(pgs_storage_batch(st, &odd, 1), PGS_EINVAL);
    CHECK_EQ(pgs_storage_batch(st, NULL, 1), PGS_EINVAL);
    expect_absent(st, &r);
}

/* ------------------------------------------------------------------------
** Concurrency: 4 threads, each with its own ref and all on a shared one.
*/
#define CONC_THREADS 4
#define CONC_OWN 1000
#define CONC_SHARED 250

typedef struct {
    pgs_storage *st;
    int id;
    long successes, conflicts, errors;
} conc_arg;

/* One version-checked increment of ref; rc of the put. */
static int bump(pgs_storage *st, const pgs_ref *ref, uint64_t *seen)
{
    pgs_record *cur = NULL;
    int rc = pgs_storage_get(st, ref, &cur);
    if (rc && rc != PGS_ENOTFOUND)
        return rc;
    uint64_t v = cur ? cur->version : 0, next = v + 1;
    free(cur);
    pgs_record rec = conf_rec(ref, next, &next, sizeof next);
    *seen = v;
    return pgs_storage_put(st, &rec, v);
}

static void *conc_thread(void *p)
{
    conc_arg *a = p;
    unsigned char key[2] = {'t', (unsigned char)a->id};
    pgs_ref own = conf_ref("conf-conc", key, 2);
    pgs_ref shared = conf_refs("conf-conc", "shared");
    uint64_t mine = 0, seen;
    long done_own = 0;
    while (done_own < CONC_OWN || a->successes < CONC_SHARED) {
        if (done_own < CONC_OWN) {
            pgs_record rec = conf_rec(&own, mine + 1, &mine, sizeof mine);
            if (pgs_storage_put(a->st, &rec, mine) == PGS_OK)
                mine++;
            else
                a->errors++; /* nobody else writes this ref */
            done_own++;
        }
        if (a->successes < CONC_SHARED) {
            int rc = bump(a->st, &shared, &seen);
            if (rc == PGS_OK)
                a->successes++;
            else if (rc == PGS_ECONFLICT)
                a->conflicts++;
            else
                a->errors++;
        }
    }
    return NULL;
}

static void concurrent_writers(pgs_storage *st)
{
    wipe(st, "conf-conc");
    pthread_t t[CONC_THREADS];
    conc_arg a[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        a[i] = (conc_arg){.st = st, .id = i};
        REQUIRE(pthread_create(&t[i], NULL, conc_thread, &a[i]) == 0);
    }
    long total = 0, errors = 0, conflicts = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(t[i], NULL);
        total += a[i].successes;
        errors += a[i].errors;
        conflicts += a[i].conflicts;
    }
    CHECK(errors == 0);
    CHECK(total == (long)CONC_THREADS * CONC_SHARED);
    pgs_ref shared = conf_refs("conf-conc", "shared");
    pgs_record *rec = NULL;
    CHECK_EQ(pgs_storage_get(st, &shared, &rec), PGS_OK);
    if (rec) {
        uint64_t v;
        CHECK(rec->version == (uint64_t)total);
        CHECK(rec->state_len == sizeof v);
        if (rec->state_len == sizeof v) {
            memcpy(&v, rec->state, sizeof v);
            CHECK(v == rec->version);
        }
    }
    free(rec);
    for (int i = 0; i < CONC_THREADS; i++) {
        unsigned char key[2] = {'t', (unsigned char)i};
        pgs_ref own = conf_ref("conf-conc", key, 2);
        CHECK(stored_version(st, &own) == CONC_OWN);
    }
    fprintf(stderr, "    (%ld shared increments, %ld conflicts retried)\n", total,
            conflicts);
}

/* Batches moving two refs in step, from 4 threads: at the end both have
** the same version, the number of batches that succeeded. */
#define CONC_BATCHES 250

static int bump_pair(pgs_storage *st, const pgs_ref *x, const pgs_ref *y)
{
    uint64_t vx = stored_version(st, x), vy = stored_version(st, y);
    if (vx == UINT64_MAX || vy == UINT64_MAX)
        return PGS_ESTORAGE;
    uint64_t nx = vx + 1, ny = vy + 1;
    pgs_record rx = conf_rec(x, nx, &nx, sizeof nx), ry = conf_rec(y, ny, &ny, sizeof ny);
    pgs_write w[2] = {
        {.op = PGS_OP_PUT, .record = &rx, .expected_version = vx},
        {.op = PGS_OP_PUT, .record = &ry, .expected_version = vy},
    };
    return pgs_storage_batch(st, w, 2);
}

static void *pair_thread(void *p)
{
    conc_arg *a = p;
    /* Even threads write (x, y), odd ones (y, x): lock order must not matter. */
    pgs_ref x = conf_refs("conf-pair", "x"), y = conf_refs("conf-pair", "y");
    while (a->successes < CONC_BATCHES) {
        int rc = a->id & 1 ? bump_pair(a->st, &y, &x) : bump_pair(a->st, &x, &y);
        if (rc == PGS_OK)
            a->successes++;
        else if (rc == PGS_ECONFLICT)
            a->conflicts++;
        else if (++a->errors > 100)
            break;
    }
    return NULL;
}

static void concurrent_batches(pgs_storage *st)
{
    wipe(st, "conf-pair");
    pthread_t t[CONC_THREADS];
    conc_arg a[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        a[i] = (conc_arg){.st = st, .id = i};
        REQUIRE(pthread_create(&t[i], NULL, pair_thread, &a[i]) == 0);
    }
    long total = 0, errors = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(t[i], NULL);
        total += a[i].successes;
        errors += a[i].errors;
    }
    CHECK(errors == 0);
    pgs_ref x = conf_refs("conf-pair", "x"), y = conf_refs("conf-pair", "y");
    CHECK(stored_version(st, &x) == (uint64_t)total);
    CHECK(stored_version(st, &y) == (uint64_t)total);
}

/* ------------------------------------------------------------------------
** History (pgs_write.keep).  An adapter without it (history slot NULL)
** gets PGS_ENOTSUP from pgs_storage_history; the built-ins all keep it.
*/

/* The versions and states history returns, newest first. */
typedef struct {
    uint64_t version[16];
    char state[16][32];
    size_t n;
    int stop_at; /* return 7 after this many (0: never) */
} hist_list;

static int hist_collect(void *arg, const pgs_record *rec)
{
    hist_list *h = arg;
    if (h->n < 16) {
        h->version[h->n] = rec->version;
        size_t n = rec->state_len < 31 ? rec->state_len : 31;
        if (n) /* an empty state may be NULL */
            memcpy(h->state[h->n], rec->state, n);
        h->state[h->n][n] = 0;
    }
    h->n++;
    return h->stop_at && (int)h->n == h->stop_at ? 7 : 0;
}

static int history_of(pgs_storage *st, const pgs_ref *ref, hist_list *h)
{
    memset(h, 0, sizeof *h);
    return pgs_storage_history(st, ref, hist_collect, h);
}

/* Writes versions from..to of ref, state "sN", each with `keep`. */
static void put_versions(pgs_storage *st, const pgs_ref *ref, uint64_t from, uint64_t to,
                         uint32_t keep)
{
    for (uint64_t v = from; v <= to; v++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "s%llu", (unsigned long long)v);
        pgs_record r = conf_rec(ref, v, buf, (size_t)n);
        pgs_write w = {.op = PGS_OP_PUT, .record = &r, .expected_version = v - 1, .keep = keep};
        CHECK_EQ(pgs_storage_batch(st, &w, 1), PGS_OK);
    }
}

/* 1 if history is exactly versions hi, hi-1, ..., lo with their states. */
static int history_is(const hist_list *h, uint64_t hi, uint64_t lo)
{
    if (h->n != (hi >= lo ? hi - lo + 1 : 0))
        return 0;
    for (size_t i = 0; i < h->n; i++) {
        char want[32];
        snprintf(want, sizeof want, "s%llu", (unsigned long long)(hi - i));
        if (h->version[i] != hi - i || strcmp(h->state[i], want) != 0)
            return 0;
    }
    return 1;
}

static void history_keeps_last_n(pgs_storage *st)
{
    wipe(st, "conf-hist");
    pgs_ref r = conf_refs("conf-hist", "a"), other = conf_refs("conf-hist", "b");
    hist_list h;
    CHECK_EQ(history_of(st, &r, &h), PGS_OK); /* absent: no history */
    CHECK(h.n == 0);
    put_versions(st, &r, 1, 1, 3);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 0);
    put_versions(st, &r, 2, 3, 3);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 2, 1));
    put_versions(st, &r, 4, 9, 3);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 8, 6));
    CHECK(stored_version(st, &r) == 9);
    put_versions(st, &other, 1, 2, 3); /* another ref's history is its own */
    CHECK_EQ(history_of(st, &other, &h), PGS_OK);
    CHECK(history_is(&h, 1, 1));
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 8, 6));
    /* A smaller keep trims at once; a larger one grows from there. */
    put_versions(st, &r, 10, 10, 1);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 9, 9));
    put_versions(st, &r, 11, 12, 5);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 11, 9));
    hist_list stop = {.stop_at = 2}; /* fn's non-zero value stops the walk */
    CHECK_EQ(pgs_storage_history(st, &r, hist_collect, &stop), 7);
    CHECK(stop.n == 2);
    /* Scans see only current records, never history. */
    CHECK(count_all(st) >= 2);
    ref_list l = {0};
    CHECK_EQ(pgs_storage_scan(st, "conf-hist", collect, &l), PGS_OK);
    CHECK(l.n == 2);
    free(l.refs);
}

static void history_keep_zero_drops_it(pgs_storage *st)
{
    wipe(st, "conf-hist0");
    pgs_ref r = conf_refs("conf-hist0", "a");
    hist_list h;
    put_versions(st, &r, 1, 4, 2);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 3, 2));
    put_versions(st, &r, 5, 6, 0);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 0);
    /* pgs_storage_put keeps none. */
    put_versions(st, &r, 7, 8, 4);
    pgs_record r9 = conf_rec(&r, 9, "s9", 2);
    CHECK_EQ(pgs_storage_put(st, &r9, 8), PGS_OK);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 0);
}

static void history_goes_with_delete(pgs_storage *st)
{
    wipe(st, "conf-histd");
    pgs_ref r = conf_refs("conf-histd", "a"), s2 = conf_refs("conf-histd", "b");
    hist_list h;
    put_versions(st, &r, 1, 5, 10);
    put_versions(st, &s2, 1, 3, 10);
    CHECK_EQ(pgs_storage_del(st, &r), PGS_OK);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 0);
    put_versions(st, &r, 1, 2, 10); /* a new life starts with no history */
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 1, 1));
    /* A DELETE in a batch takes its history too. */
    pgs_write w = {.op = PGS_OP_DELETE, .ref = &s2};
    pgs_record r3 = conf_rec(&r, 3, "s3", 2);
    pgs_write ws[2] = {w, {.op = PGS_OP_PUT, .record = &r3, .expected_version = 2, .keep = 10}};
    CHECK_EQ(pgs_storage_batch(st, ws, 2), PGS_OK);
    CHECK_EQ(history_of(st, &s2, &h), PGS_OK);
    CHECK(h.n == 0);
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(history_is(&h, 2, 1));
}

/* A batch that fails keeps no history of its writes, and the stored
** history is what it was. */
static void history_failed_batch_keeps_none(pgs_storage *st)
{
    wipe(st, "conf-histx");
    pgs_ref a = conf_refs("conf-histx", "a"), b = conf_refs("conf-histx", "b");
    hist_list h;
    put_versions(st, &a, 1, 3, 2);
    put_versions(st, &b, 1, 1, 2);
    pgs_record a4 = conf_rec(&a, 4, "s4", 2), b2 = conf_rec(&b, 2, "s2", 2);
    pgs_write w[2] = {
        {.op = PGS_OP_PUT, .record = &a4, .expected_version = 3, .keep = 2},
        {.op = PGS_OP_PUT, .record = &b2, .expected_version = 7, .keep = 2}, /* stale */
    };
    CHECK_EQ(pgs_storage_batch(st, w, 2), PGS_ECONFLICT);
    CHECK_EQ(history_of(st, &a, &h), PGS_OK);
    CHECK(history_is(&h, 2, 1));
    CHECK(stored_version(st, &a) == 3);
    CHECK_EQ(history_of(st, &b, &h), PGS_OK);
    CHECK(h.n == 0);
    w[1].expected_version = 1; /* the same batch, right: both keep */
    CHECK_EQ(pgs_storage_batch(st, w, 2), PGS_OK);
    CHECK_EQ(history_of(st, &a, &h), PGS_OK);
    CHECK(history_is(&h, 3, 2));
    CHECK_EQ(history_of(st, &b, &h), PGS_OK);
    CHECK(history_is(&h, 1, 1));
}

/* Large states and binary keys come back from history intact. */
static void history_large_and_binary(pgs_storage *st)
{
    wipe(st, "conf-histb");
    unsigned char key[256];
    for (int i = 0; i < 256; i++)
        key[i] = (unsigned char)(255 - i);
    pgs_ref r = conf_ref("conf-histb", key, sizeof key);
    size_t big = (size_t)4 << 20;
    unsigned char *state = malloc(big);
    REQUIRE(state);
    for (size_t i = 0; i < big; i++)
        state[i] = (unsigned char)(i * 31 + 7);
    pgs_record r1 = conf_rec(&r, 1, state, big), r2 = conf_rec(&r, 2, "small", 5);
    CHECK_EQ(pgs_storage_put(st, &r1, 0), PGS_OK);
    pgs_write w = {.op = PGS_OP_PUT, .record = &r2, .expected_version = 1, .keep = 1};
    CHECK_EQ(pgs_storage_batch(st, &w, 1), PGS_OK);
    hist_list h;
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 1 && h.version[0] == 1 && memcmp(h.state[0], state, 31) == 0);
    free(state);
}

/* For the adapters' own tests: opening url fails with `want`, and leaves
** no handle. */
static __attribute__((unused)) void expect_open_fails(const char *url, int want)
{
    pgs_storage *st = NULL;
    int rc = pgs_storage_open(&st, url, NULL);
    if (rc != want)
        fprintf(stderr, "  %s: %s, expected %s\n", url, pgs_errname(rc), pgs_errname(want));
    CHECK_EQ(rc, want);
    CHECK(st == NULL);
    pgs_storage_close(st);
}

static int has_history(pgs_storage *st)
{
    pgs_ref r = conf_refs("conf-histq", "q");
    hist_list h;
    return history_of(st, &r, &h) != PGS_ENOTSUP;
}

/* ------------------------------------------------------------------------
** Runner.
*/
static int is_memory_url(const char *url)
{
    return strncasecmp(url, "memory:", 7) == 0;
}

/* Data written before a close is there after a reopen. */
static void reopen_after_close(const conf_target *t)
{
    pgs_storage *st = conf_open(t);
    if (!st)
        return;
    wipe(st, "conf-reopen");
    pgs_ref r = conf_refs("conf-reopen", "k");
    pgs_record v1 = conf_rec(&r, 1, "kept", 4), v2 = conf_rec(&r, 2, "kept2", 5);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    pgs_write w = {.op = PGS_OP_PUT, .record = &v2, .expected_version = 1, .keep = 1};
    CHECK_EQ(pgs_storage_batch(st, &w, 1), PGS_OK);
    pgs_storage_close(st);
    if (!(st = conf_open(t)))
        return;
    expect_rec(st, &v2);
    hist_list h;
    int rc = history_of(st, &r, &h);
    CHECK(rc == PGS_ENOTSUP || (rc == PGS_OK && h.n == 1 && h.version[0] == 1 &&
                                strcmp(h.state[0], "kept") == 0));
    wipe(st, "conf-reopen");
    pgs_storage_close(st);
}

typedef struct {
    const char *name;
    void (*fn)(pgs_storage *st);
} conf_case;

static const conf_case conf_cases[] = {
    {"get_absent", get_absent},
    {"put_new_then_get", put_new_then_get},
    {"put_wrong_version_conflicts", put_wrong_version_conflicts},
    {"put_update", put_update},
    {"delete_then_get", delete_then_get},
    {"delete_absent", delete_absent},
    {"batch_applies_all", batch_applies_all},
    {"batch_conflict_applies_none", batch_conflict_applies_none},
    {"batch_delete_absent_is_noop", batch_delete_absent_is_noop},
    {"batch_duplicate_ref_rejected", batch_duplicate_ref_rejected},
    {"scan_by_name", scan_by_name},
    {"scan_null_returns_all", scan_null_returns_all},
    {"scan_early_stop", scan_early_stop},
    {"large_state_16mib", large_state_16mib},
    {"binary_keys", binary_keys},
    {"empty_key", empty_key},
    {"bad_arguments", bad_arguments},
    {"concurrent_writers", concurrent_writers},
    {"concurrent_batches", concurrent_batches},
};

/* Run when the adapter keeps history. */
static const conf_case history_cases[] = {
    {"history_keeps_last_n", history_keeps_last_n},
    {"history_keep_zero_drops_it", history_keep_zero_drops_it},
    {"history_goes_with_delete", history_goes_with_delete},
    {"history_failed_batch_keeps_none", history_failed_batch_keeps_none},
    {"history_large_and_binary", history_large_and_binary},
};

static void run_cases(const conf_target *t, const conf_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int before = check_failures_;
        pgs_storage *st = conf_open(t);
        if (st) {
            cases[i].fn(st);
            pgs_storage_close(st);
        }
        fprintf(stderr, "conformance %-36s %s\n", cases[i].name,
                check_failures_ == before ? "ok" : "FAILED");
    }
}

int pgs_conformance_run(const char *url, const pgs_storage_ops *ops)
{
    conf_target t = {url, ops};
    int start = check_failures_;
    run_cases(&t, conf_cases, sizeof conf_cases / sizeof conf_cases[0]);
    pgs_storage *st = conf_open(&t);
    int history = st && has_history(st);
    pgs_storage_close(st);
    /* The built-in adapters must keep history; another may leave it out. */
    CHECK(history || ops != NULL);
    if (history)
        run_cases(&t, history_cases, sizeof history_cases / sizeof history_cases[0]);
    else
        fprintf(stderr, "conformance %-36s %s\n", "history_*",
                "skipped (the adapter keeps no history)");
    if (is_memory_url(url)) {
        fprintf(stderr, "conformance %-36s %s\n", "reopen_after_close",
                "skipped (memory: is not persistent)");
    } else {
        int before = check_failures_;
        reopen_after_close(&t);
        fprintf(stderr, "conformance %-36s %s\n", "reopen_after_close",
                check_failures_ == before ? "ok" : "FAILED");
    }
    return check_failures_ - start;
}
