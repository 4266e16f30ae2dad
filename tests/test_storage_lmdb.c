/*
** test_storage_lmdb.c — the lmdb: adapter against the conformance suite,
** plus what only this engine has: data surviving a reopen, a store in use
** by another process refused with PGS_EBUSY, a tiny map grown as records
** arrive (while readers run), a map at its max_size failing writes with
** PGS_ENOSPC and nothing else, damaged values (written with the raw LMDB
** API) reported as PGS_ECORRUPT, a store from a newer pgs refused, and
** bad URLs and unwritable places refused.
*/
#include "conformance.c"
#include "filestore.h"
#include "tcounter.h"

#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/pgs-lmdb-XXXXXX";
static char url[256];

/* A subdirectory of the test's temp dir (made by the adapter), and its
** URL with `query` appended. */
static void sub_url(char *out, size_t n, const char *sub, const char *query)
{
    snprintf(out, n, "lmdb:%s/%s%s", dir, sub, query);
}

static pgs_record plain_rec(pgs_ref *ref, const char *name, const char *key, uint64_t version,
                            const void *state, size_t state_len)
{
    pgs_record rec = {0};
    REQUIRE_OK(pgs_ref_make(ref, name, key, strlen(key)));
    rec.ref = *ref;
    rec.version = version;
    rec.state = state;
    rec.state_len = state_len;
    return rec;
}

static void bad_urls_and_places_are_refused(void)
{
    static const char *const bad[] = {
        "lmdb:x?map_size=12",             /* below 64 KiB */
        "lmdb:x?map_size=",               /* no value */
        "lmdb:x?map_size=1e9",            /* digits only */
        "lmdb:x?map_size=-65536",
        "lmdb:x?max_size=99999999999999999999999", /* overflows */
        "lmdb:x?map_size=2097152&max_size=1048576", /* max below the start */
        "lmdb:x?sync=sometimes",
        "lmdb:x?sync=",
        "lmdb:x?colour=blue",
        "lmdb:x?&",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_open_fails(bad[i], PGS_EURL);
    pgs_storage *st = NULL;
    CHECK_EQ(pgs_storage_open(&st, "lmdb:/proc/pgs-cannot-be-here/x", NULL), PGS_ESTORAGE);
    CHECK(st == NULL);
    char p[300];
    snprintf(p, sizeof p, "%s/afile", dir); /* DIR names a file, not a directory */
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fclose(f);
    snprintf(p, sizeof p, "lmdb:%s/afile", dir);
    CHECK_EQ(pgs_storage_open(&st, p, NULL), PGS_ESTORAGE);
    if (geteuid() != 0) { /* root ignores directory permissions */
        snprintf(p, sizeof p, "%s/ro", dir);
        mkdir(p, 0555);
        snprintf(p, sizeof p, "lmdb:%s/ro/x", dir);
        CHECK_EQ(pgs_storage_open(&st, p, NULL), PGS_ESTORAGE);
    }
    /* Good ones, case-insensitive like the scheme. */
    sub_url(p, sizeof p, "good", "?MAP_SIZE=65536&max_size=131072&sync=NOSYNC");
    CHECK_EQ(pgs_storage_open(&st, p, NULL), PGS_OK);
    pgs_storage_close(st);
}

/* ------------------------------------------------------------------------
** Map growth.
*/
#define GROW_RECORDS 3000
#define GROW_STATE 1000

static void grow_state(unsigned i, unsigned char *buf)
{
    for (unsigned j = 0; j < GROW_STATE; j++)
        buf[j] = (unsigned char)(i * 31 + j);
}

static void grow_key(unsigned i, char key[16])
{
    snprintf(key, 16, "g%05u", i);
}

/* Readers run gets and scans of a record written first, all through the
** growth: every one must see it whole (a remap under a live txn would
** show as garbage, a crash, or a sanitizer report). */
typedef struct {
    pgs_storage *st;
    _Atomic int *stop;
    int bad;     /* this reader's own counts */
    long reads;
} reader_arg;

static int count_scan(void *arg, const pgs_record *rec)
{
    (*(long *)arg)++;
    return rec->state_len == GROW_STATE ? 0 : 1;
}

static void *grow_reader(void *p)
{
    reader_arg *a = p;
    unsigned char want[GROW_STATE];
    grow_state(0, want);
    pgs_ref ref;
    pgs_ref_make(&ref, "lm-grow", "g00000", 6);
    while (!*a->stop) {
        pgs_record *got = NULL;
        if (pgs_storage_get(a->st, &ref, &got) != PGS_OK || got->state_len != GROW_STATE ||
            memcmp(got->state, want, GROW_STATE) != 0)
            a->bad++;
        free(got);
        long n = 0;
        if ((a->reads & 63) == 0 && pgs_storage_scan(a->st, "lm-grow", count_scan, &n) != 0)
            a->bad++;
        a->reads++;
    }
    return NULL;
}

static void put_grow(pgs_storage *st, unsigned from, unsigned count)
{
    pgs_write w[100];
    pgs_record recs[100];
    pgs_ref refs[100];
    unsigned char states[100][GROW_STATE];
    for (unsigned i = 0; i < count; i++) {
        char key[16];
        grow_key(from + i, key);
        grow_state(from + i, states[i]);
        recs[i] = plain_rec(&refs[i], "lm-grow", key, 1, states[i], GROW_STATE);
        w[i] = (pgs_write){.op = PGS_OP_PUT, .record = &recs[i], .expected_version = 0};
    }
    CHECK_EQ(pgs_storage_batch(st, w, count), PGS_OK);
}

static int all_grow_records_there(pgs_storage *st)
{
    int missing = 0;
    unsigned char want[GROW_STATE];
    for (unsigned i = 0; i < GROW_RECORDS; i++) {
        char key[16];
        pgs_ref ref;
        grow_key(i, key);
        grow_state(i, want);
        pgs_ref_make(&ref, "lm-grow", key, strlen(key));
        pgs_record *got = NULL;
        missing += pgs_storage_get(st, &ref, &got) != PGS_OK || got->state_len != GROW_STATE ||
                   memcmp(got->state, want, GROW_STATE) != 0;
        free(got);
    }
    return missing;
}

static void tiny_map_grows(void)
{
    char u[300], data[300];
    sub_url(u, sizeof u, "tiny", "?map_size=65536");
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    put_grow(st, 0, 1); /* the readers' record */
    _Atomic int stop = 0;
    reader_arg a[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (reader_arg){.st = st, .stop = &stop};
        REQUIRE(pthread_create(&th[i], NULL, grow_reader, &a[i]) == 0);
    }
    /* Single puts and batches of 100: ~3 MB into a 64 KiB map. */
    for (unsigned i = 1; i < 500; i++)
        put_grow(st, i, 1);
    for (unsigned i = 500; i < GROW_RECORDS; i += 100)
        put_grow(st, i, 100);
    stop = 1;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(a[i].bad, 0);
        CHECK(a[i].reads > 0);
    }
    CHECK_EQ(all_grow_records_there(st), 0);
    pgs_storage_close(st);
    struct stat sb;
    snprintf(data, sizeof data, "%s/tiny/data.mdb", dir);
    CHECK(stat(data, &sb) == 0 && sb.st_size > 3 * GROW_RECORDS * 1000 / 4);
    /* Reopened with the same tiny map_size: LMDB maps what the file holds. */
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    CHECK_EQ(all_grow_records_there(st), 0);
    put_grow(st, GROW_RECORDS, 1); /* and still grows */
    pgs_storage_close(st);
}

/* ------------------------------------------------------------------------
** Damage done behind the adapter's back, with the raw LMDB API.
*/
typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw;

static void raw_open(raw *r, const char *path, const char *db)
{
    REQUIRE(mdb_env_create(&r->env) == 0);
    REQUIRE(mdb_env_set_maxdbs(r->env, 2) == 0);
    REQUIRE(mdb_env_open(r->env, path, 0, 0644) == 0);
    REQUIRE(mdb_txn_begin(r->env, NULL, 0, &r->txn) == 0);
    REQUIRE(mdb_dbi_open(r->txn, db, 0, &r->dbi) == 0);
}

static void raw_close(raw *r)
{
    REQUIRE(mdb_txn_commit(r->txn) == 0);
    mdb_env_close(r->env);
}

/* The adapter's key for name/key: name, NUL, key. */
static MDB_val raw_key(unsigned char *buf, const char *name, const char *key)
{
    size_t nl = strlen(name) + 1, kl = strlen(key);
    memcpy(buf, name, nl);
    memcpy(buf + nl, key, kl);
    return (MDB_val){nl + kl, buf};
}

static void raw_put(raw *r, const char *name, const char *key, const void *v, size_t n)
{
    unsigned char kb[400];
    MDB_val k = raw_key(kb, name, key), val = {n, (void *)v};
    REQUIRE(mdb_put(r->txn, r->dbi, &k, &val, 0) == 0);
}

/* The stored value of name/key, malloc'd. */
static unsigned char *raw_get(raw *r, const char *name, const char *key, size_t *n)
{
    unsigned char kb[400];
    MDB_val k = raw_key(kb, name, key), val;
    REQUIRE(mdb_get(r->txn, r->dbi, &k, &val) == 0);
    unsigned char *copy = malloc(val.mv_size);
    REQUIRE(copy);
    memcpy(copy, val.mv_data, val.mv_size);
    *n = val.mv_size;
    return copy;
}

static int scan_nothing(void *arg, const pgs_record *rec)
{
    return 0;
}

static void expect_get(pgs_storage *st, const char *key, int want)
{
    pgs_ref ref;
    pgs_ref_make(&ref, "lm-bad", key, strlen(key));
    pgs_record *got = NULL;
    int rc = pgs_storage_get(st, &ref, &got);
    if (rc != want)
        fprintf(stderr, "  get lm-bad/%s: %s, expected %s\n", key, pgs_errname(rc),
                pgs_errname(want));
    CHECK_EQ(rc, want);
    free(got);
}

static void corrupt_values_are_reported(void)
{
    char u[300], path[300];
    sub_url(u, sizeof u, "bad", "");
    snprintf(path, sizeof path, "%s/bad", dir);
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    const char *keys[] = {"flip", "garbage", "moved", "header", "fine"};
    for (int i = 0; i < 5; i++) {
        pgs_ref ref;
        pgs_record rec = plain_rec(&ref, "lm-bad", keys[i], 1, "some state bytes", 16);
        REQUIRE_OK(pgs_storage_put(st, &rec, 0));
    }
    pgs_storage_close(st);

    raw r;
    raw_open(&r, path, "records");
    size_t n;
    unsigned char *v = raw_get(&r, "lm-bad", "flip", &n);
    v[n - 3] ^= 0x20; /* a bit of the state */
    raw_put(&r, "lm-bad", "flip", v, n);
    free(v);
    v = raw_get(&r, "lm-bad", "fine", &n);
    raw_put(&r, "lm-bad", "moved", v, n); /* fine's intact record, wrong key */
    free(v);
    raw_put(&r, "lm-bad", "garbage", "not a record", 12);
    raw_put(&r, "lm-bad", "header", "PGSR\x01", 5); /* a header cut short */
    raw_close(&r);

    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    expect_get(st, "flip", PGS_ECORRUPT);
    expect_get(st, "garbage", PGS_ECORRUPT);
    expect_get(st, "moved", PGS_ECORRUPT);
    expect_get(st, "header", PGS_ECORRUPT);
    expect_get(st, "fine", PGS_OK);
    CHECK_EQ(pgs_storage_scan(st, "lm-bad", scan_nothing, NULL), PGS_ECORRUPT);
    CHECK_EQ(pgs_storage_scan(st, NULL, scan_nothing, NULL), PGS_ECORRUPT);
    /* A readable header still gives the version to write over; an
    ** unreadable one does not, but a delete clears it. */
    pgs_ref ref;
    pgs_record v2 = plain_rec(&ref, "lm-bad", "flip", 2, "repaired", 8);
    CHECK_EQ(pgs_storage_put(st, &v2, 1), PGS_OK);
    expect_get(st, "flip", PGS_OK);
    pgs_record h2 = plain_rec(&ref, "lm-bad", "header", 2, "repaired", 8);
    CHECK_EQ(pgs_storage_put(st, &h2, 1), PGS_ECORRUPT);
    CHECK_EQ(pgs_storage_del(st, &ref), PGS_OK);
    expect_get(st, "header", PGS_ENOTFOUND);
    pgs_storage_close(st);
}

static void set_schema(const char *path, const char *le4)
{
    raw r;
    raw_open(&r, path, "meta");
    MDB_val k = {6, "schema"}, v = {4, (void *)le4};
    REQUIRE(mdb_put(r.txn, r.dbi, &k, &v, 0) == 0);
    raw_close(&r);
}

/* A store whose meta says schema 3 was written by a newer pgs; one of
** schema 1 (before history) is taken up to 2. */
static void schema_versions(void)
{
    char u[300], path[300];
    sub_url(u, sizeof u, "newer", "");
    snprintf(path, sizeof path, "%s/newer", dir);
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    pgs_storage_close(st);
    set_schema(path, "\x01\0\0");
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    pgs_storage_close(st);
    raw r;
    raw_open(&r, path, "meta");
    MDB_val k = {6, "schema"}, v;
    CHECK(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size == 4 &&
          memcmp(v.mv_data, "\x02\0\0", 4) == 0);
    raw_close(&r);
    set_schema(path, "\x03\0\0");
    st = NULL;
    CHECK_EQ(pgs_storage_open(&st, u, NULL), PGS_EVERSION);
    CHECK(st == NULL);
}

int main(void)
{
    REQUIRE(mkdtemp(dir));
    snprintf(url, sizeof url, "lmdb:%s/store", dir);
    int failures = pgs_conformance_run(url, NULL);
    store_in_use_is_busy_at(url); /* one process at a time */
    RUN(bad_urls_and_places_are_refused);
    RUN(tiny_map_grows);
    /* A map that may grow only to 1 MiB: a real MDB_MAP_FULL at the limit. */
    char full[300];
    sub_url(full, sizeof full, "full", "?map_size=65536&max_size=1048576");
    store_fills_up_cleanly(full, 2000, 50);
    RUN(corrupt_values_are_reported);
    RUN(schema_versions);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return failures || CHECK_DONE();
}
