/*
** test_storage_memory.c — the memory: adapter against the conformance
** suite, the storage layer's corruption checks (through a wrapper adapter
** that damages what it returns), and memory-specific behaviour.
*/
#include "conformance.c"

#include "internal.h"

/* ------------------------------------------------------------------------
** A wrapper adapter over memory: that damages records on the way out.
** URL "damage:<what>", what = state | ref | version | none.
*/
typedef struct {
    void *inner;
    char what[16];
} damage;

static int dmg_open(const char *url, void **state)
{
    if (strncmp(url, "damage:", 7) != 0)
        return PGS_EURL;
    damage *d = calloc(1, sizeof *d);
    if (!d)
        return PGS_ENOMEM;
    snprintf(d->what, sizeof d->what, "%s", url + 7);
    int rc = pgsi_memory_ops.open("memory:", &d->inner);
    if (rc) {
        free(d);
        return rc;
    }
    *state = d;
    return PGS_OK;
}

static void dmg_close(void *state)
{
    damage *d = state;
    pgsi_memory_ops.close(d->inner);
    free(d);
}

/* Damages rec (a private copy) as the URL asked. */
static void dmg_apply(const damage *d, pgs_record *rec)
{
    if (strcmp(d->what, "state") == 0 && rec->state_len) {
        ((unsigned char *)rec->state)[rec->state_len / 2] ^= 0x01;
    } else if (strcmp(d->what, "ref") == 0) {
        rec->ref.key[0] ^= 0x01; /* another server's record, intact */
        rec->checksum = pgs_record_checksum(rec);
    } else if (strcmp(d->what, "version") == 0) {
        rec->version++;
    } else if (strcmp(d->what, "hole") == 0) {
        rec->state = NULL; /* length stays */
    }
}

static int dmg_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    damage *d = state;
    int rc = pgsi_memory_ops.get(d->inner, ref, out);
    if (rc == PGS_OK)
        dmg_apply(d, *out);
    return rc;
}

static int dmg_batch(void *state, const pgs_write *w, size_t n)
{
    damage *d = state;
    return pgsi_memory_ops.batch(d->inner, w, n);
}

typedef struct {
    const damage *d;
    int (*fn)(void *arg, const pgs_record *rec);
    void *arg;
} dmg_scan_ctx;

static int dmg_scan_one(void *arg, const pgs_record *rec)
{
    dmg_scan_ctx *c = arg;
    pgs_record *copy = NULL;
    if (pgs_record_copy(rec, &copy))
        return PGS_ENOMEM;
    dmg_apply(c->d, copy);
    int rc = c->fn(c->arg, copy);
    free(copy);
    return rc;
}

static int dmg_scan(void *state, const char *name,
                    int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    damage *d = state;
    dmg_scan_ctx c = {d, fn, arg};
    return pgsi_memory_ops.scan(d->inner, name, dmg_scan_one, &c);
}

static const pgs_storage_ops damage_ops = {
    .version = PGS_STORAGE_VERSION,
    .scheme = "damage",
    .open = dmg_open,
    .close = dmg_close,
    .get = dmg_get,
    .batch = dmg_batch,
    .scan = dmg_scan,
};

static int count_calls(void *arg, const pgs_record *rec)
{
    (void)rec;
    ++*(int *)arg;
    return 0;
}

/* Opens damage:<what>, stores three records, and checks get and scan. */
static void damaged(const char *what, int want)
{
    char url[32];
    snprintf(url, sizeof url, "damage:%s", what);
    pgs_storage *st = NULL;
    REQUIRE_OK(pgs_storage_open(&st, url, &damage_ops));
    pgs_ref r = conf_refs("dmg", "key");
    pgs_record rec = conf_rec(&r, 1, "0123456789abcdef", 16);
    CHECK_EQ(pgs_storage_put(st, &rec, 0), PGS_OK);
    pgs_record *out = (pgs_record *)1;
    CHECK_EQ(pgs_storage_get(st, &r, &out), want);
    CHECK(want ? out == NULL : out != NULL);
    free(want ? NULL : out);

    put_keys(st, "dmg", 2);
    int calls = 0;
    /* A scan has no ref to compare with, so "ref" damage passes there. */
    int scan_want = strcmp(what, "ref") == 0 ? PGS_OK : want;
    CHECK_EQ(pgs_storage_scan(st, "dmg", count_calls, &calls), scan_want);
    CHECK(calls == (scan_want ? 0 : 3)); /* stopped at the first record */
    pgs_storage_close(st);
}

static void corrupt_state_detected(void) { damaged("state", PGS_ECORRUPT); }
static void wrong_ref_detected(void) { damaged("ref", PGS_ECORRUPT); }
static void changed_version_detected(void) { damaged("version", PGS_ECORRUPT); }
static void missing_bytes_detected(void) { damaged("hole", PGS_ECORRUPT); }
static void undamaged_passes(void) { damaged("none", PGS_OK); }

/* The checksum covers field boundaries and every field. */
static void checksum_covers_fields(void)
{
    pgs_ref r = conf_refs("ck", "k");
    pgs_record a = conf_rec(&r, 1, "abc", 3);
    uint64_t base = pgs_record_checksum(&a);
    CHECK(base == pgs_record_checksum(&a));
    pgs_record b = a;
    b.args = "start-argsa"; /* one byte moved from state to args */
    b.args_len = 11;
    b.state = "bc";
    b.state_len = 2;
    CHECK(pgs_record_checksum(&b) != base);
    b = a;
    b.schema_version++;
    CHECK(pgs_record_checksum(&b) != base);
    b = a;
    b.version++;
    CHECK(pgs_record_checksum(&b) != base);
    b = a;
    b.checksum = 12345; /* not covered */
    CHECK(pgs_record_checksum(&b) == base);
    pgs_ref r2 = conf_refs("ckk", "");
    pgs_ref r3 = conf_refs("ck", "k");
    r3.key_len = 0;
    b = a;
    b.ref = r2;
    pgs_record c = a;
    c.ref = r3;
    CHECK(pgs_record_checksum(&b) != pgs_record_checksum(&c));
    /* Garbage past the name's NUL or key_len does not count. */
    c = a;
    c.ref.name[10] = 'x';
    c.ref.key[100] = 7;
    CHECK(pgs_record_checksum(&c) == base);
}

static void record_copy_is_one_block(void)
{
    pgs_ref r = conf_refs("cp", "k");
    pgs_record a = conf_rec(&r, 5, "state", 5);
    a.checksum = 77;
    pgs_record *c = NULL;
    REQUIRE_OK(pgs_record_copy(&a, &c));
    CHECK(pgs_ref_equal(&c->ref, &a.ref) && c->version == 5 && c->checksum == 77 &&
          c->schema_version == a.schema_version);
    CHECK(bytes_eq(c->options, c->options_len, a.options, a.options_len));
    CHECK((const char *)c->state > (const char *)c &&
          (const char *)c->state + c->state_len <=
              (const char *)(c + 1) + a.args_len + a.options_len + a.state_len);
    CHECK(bytes_eq(c->state, c->state_len, "state", 5));
    CHECK(bytes_eq(c->args, c->args_len, a.args, a.args_len));
    free(c);
    pgs_record e = conf_rec(&r, 1, NULL, 0);
    e.args = NULL;
    e.args_len = 0;
    REQUIRE_OK(pgs_record_copy(&e, &c));
    CHECK(c->state_len == 0 && c->args_len == 0 && c->options_len == 8);
    free(c);
    CHECK_EQ(pgs_record_copy(NULL, &c), PGS_EINVAL);
    CHECK_EQ(pgs_record_copy(&a, NULL), PGS_EINVAL);
}

/* ------------------------------------------------------------------------
** Opening.
*/
static void open_errors(void)
{
    pgs_storage *st = (pgs_storage *)1;
    CHECK_EQ(pgs_storage_open(&st, "nosuch:x", NULL), PGS_EURL);
    CHECK(st == NULL);
    CHECK_EQ(pgs_storage_open(&st, "memory", NULL), PGS_EURL);
    CHECK_EQ(pgs_storage_open(&st, "", NULL), PGS_EURL);
    CHECK_EQ(pgs_storage_open(NULL, "memory:", NULL), PGS_EINVAL);
    CHECK_EQ(pgs_storage_open(&st, NULL, NULL), PGS_EINVAL);
    pgs_storage_ops v0 = damage_ops, v2 = damage_ops, hole = damage_ops;
    v0.version = 0;
    v2.version = PGS_STORAGE_VERSION + 1;
    hole.scan = NULL;
    CHECK_EQ(pgs_storage_open(&st, "damage:none", &v0), PGS_EVERSION);
    CHECK_EQ(pgs_storage_open(&st, "damage:none", &v2), PGS_EVERSION);
    CHECK_EQ(pgs_storage_open(&st, "damage:none", &hole), PGS_EINVAL);
    /* The adapter's own refusal comes through. */
    CHECK_EQ(pgs_storage_open(&st, "other:x", &damage_ops), PGS_EURL);
    /* memory: with anything after the colon, any case of the scheme. */
    CHECK(pgsi_storage_builtin("memory:") == &pgsi_memory_ops);
    CHECK(pgsi_storage_builtin("memory:anything") == &pgsi_memory_ops);
    CHECK(pgsi_storage_builtin("MEMORY:") == &pgsi_memory_ops);
    CHECK(pgsi_storage_builtin("memoryx:") == NULL);
    CHECK(pgsi_storage_builtin("memor:") == NULL);
    REQUIRE_OK(pgs_storage_open(&st, "memory:anything", NULL));
    pgs_storage_close(st);
    REQUIRE_OK(pgs_storage_open(&st, "Memory:", NULL));
    pgs_storage_close(st);
    pgs_storage_close(NULL);
}

static void opens_are_independent(void)
{
    pgs_storage *a = NULL, *b = NULL;
    REQUIRE_OK(pgs_storage_open(&a, "memory:", NULL));
    REQUIRE_OK(pgs_storage_open(&b, "memory:", NULL));
    pgs_ref r = conf_refs("indep", "k");
    pgs_record rec = conf_rec(&r, 1, "a", 1);
    CHECK_EQ(pgs_storage_put(a, &rec, 0), PGS_OK);
    expect_rec(a, &rec);
    expect_absent(b, &r);
    pgs_storage_close(a);
    expect_absent(b, &r);
    pgs_storage_close(b);
}

/* ------------------------------------------------------------------------
** Memory specifics.
*/

/* Enough records to make every shard's table grow many times. */
static void many_records(void)
{
    enum { N = 200000 };
    pgs_storage *st = NULL;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    for (uint32_t i = 0; i < N; i++) {
        pgs_ref r = conf_ref(i & 1 ? "many-a" : "many-b", &i, sizeof i);
        pgs_record rec = conf_rec(&r, 1, &i, sizeof i);
        if (pgs_storage_put(st, &rec, 0) != PGS_OK) {
            CHECK(!"put failed");
            break;
        }
    }
    CHECK(count_all(st) == N);
    for (uint32_t i = 0; i < N; i += 997) {
        pgs_ref r = conf_ref(i & 1 ? "many-a" : "many-b", &i, sizeof i);
        pgs_record rec = conf_rec(&r, 1, &i, sizeof i);
        rec.checksum = pgs_record_checksum(&rec);
        expect_rec(st, &rec);
    }
    int calls = 0;
    CHECK_EQ(pgs_storage_scan(st, "many-a", count_calls, &calls), PGS_OK);
    CHECK(calls == N / 2);
    wipe(st, "many-a");
    wipe(st, "many-b");
    CHECK(count_all(st) == 0);
    pgs_storage_close(st);
}

/* A batch larger than the adapter's stack plan array, and the storage
** layer's sorted duplicate check. */
static void large_batch(void)
{
    enum { N = 100 };
    pgs_storage *st = NULL;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    static pgs_record recs[N];
    static pgs_ref refs[N];
    pgs_write w[N];
    for (uint32_t i = 0; i < N; i++) {
        refs[i] = conf_ref("lb", &i, sizeof i);
        recs[i] = conf_rec(&refs[i], 1, &refs[i].key, 4);
        w[i] = (pgs_write){.op = PGS_OP_PUT, .record = &recs[i]};
    }
    w[N - 1].record = &recs[3]; /* duplicate */
    CHECK_EQ(pgs_storage_batch(st, w, N), PGS_EINVAL);
    CHECK(count_all(st) == 0);
    w[N - 1].record = &recs[N - 1];
    w[N - 1].expected_version = 9; /* conflict, last */
    CHECK_EQ(pgs_storage_batch(st, w, N), PGS_ECONFLICT);
    CHECK(count_all(st) == 0);
    w[N - 1].expected_version = 0;
    CHECK_EQ(pgs_storage_batch(st, w, N), PGS_OK);
    CHECK(count_all(st) == N);
    for (uint32_t i = 0; i < N; i++)
        w[i] = (pgs_write){.op = PGS_OP_DELETE, .ref = &refs[i]};
    CHECK_EQ(pgs_storage_batch(st, w, N), PGS_OK);
    CHECK(count_all(st) == 0);
    pgs_storage_close(st);
}

/* Called directly, the adapter refuses two writes of one ref itself (the
** storage layer normally stops them first) and changes nothing. */
static void adapter_refuses_duplicates(void)
{
    void *m = NULL;
    REQUIRE_OK(pgsi_memory_ops.open("memory:", &m));
    pgs_ref x = conf_refs("dup", "x"), y = conf_refs("dup", "y");
    pgs_record x1 = conf_rec(&x, 1, "x1", 2), x2 = conf_rec(&x, 2, "x2", 2),
               y1 = conf_rec(&y, 1, "y1", 2);
    pgs_write w[] = {
        {.op = PGS_OP_PUT, .record = &y1, .expected_version = 0},
        {.op = PGS_OP_PUT, .record = &x1, .expected_version = 0},
        {.op = PGS_OP_PUT, .record = &x2, .expected_version = 1},
    };
    CHECK_EQ(pgsi_memory_ops.batch(m, w, 3), PGS_EINVAL);
    pgs_record *out = NULL;
    CHECK_EQ(pgsi_memory_ops.get(m, &x, &out), PGS_ENOTFOUND);
    CHECK_EQ(pgsi_memory_ops.get(m, &y, &out), PGS_ENOTFOUND);
    CHECK_EQ(pgsi_memory_ops.batch(m, w, 2), PGS_OK);
    pgs_write wd[] = {
        {.op = PGS_OP_DELETE, .ref = &x},
        {.op = PGS_OP_DELETE, .ref = &x},
    };
    CHECK_EQ(pgsi_memory_ops.batch(m, wd, 2), PGS_EINVAL);
    CHECK_EQ(pgsi_memory_ops.get(m, &x, &out), PGS_OK);
    free(out);
    pgsi_memory_ops.close(m);
}

/* An update that fits reuses the record; one that does not, or that would
** leave a big allocation mostly empty, gets a new one.  Either way the
** bytes read back right. */
static void update_in_place_and_shrink(void)
{
    pgs_storage *st = NULL;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    pgs_ref r = conf_refs("shrink", "k");
    static unsigned char big[100000];
    memset(big, 0xab, sizeof big);
    size_t sizes[] = {16, 16, 8, 100000, 99000, 1000, 16, 0, 40000, 40001};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        pgs_record rec = conf_rec(&r, i + 1, big, sizes[i]);
        if (!sizes[i])
            rec.state = NULL;
        CHECK_EQ(pgs_storage_put(st, &rec, i), PGS_OK);
        expect_rec(st, &rec);
    }
    pgs_storage_close(st);
}

int main(void)
{
    int failures = pgs_conformance_run("memory:", NULL);
    fprintf(stderr, "conformance: %d failed checks\n", failures);
    RUN(corrupt_state_detected);
    RUN(wrong_ref_detected);
    RUN(changed_version_detected);
    RUN(missing_bytes_detected);
    RUN(undamaged_passes);
    RUN(checksum_covers_fields);
    RUN(record_copy_is_one_block);
    RUN(open_errors);
    RUN(opens_are_independent);
    RUN(many_records);
    RUN(large_batch);
    RUN(adapter_refuses_duplicates);
    RUN(update_in_place_and_shrink);
    return CHECK_DONE();
}
