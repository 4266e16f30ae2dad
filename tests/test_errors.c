/*
** test_errors.c — bad input and failing parts get a clear error code,
** never a crash and never lost or corrupted state: malformed refs, an
** unregistered behaviour, oversized messages, replies and states,
** misbehaving callbacks, corrupt stored bytes, a storage engine that fails
** reads or writes or is full, bad options and registrations, calls after
** shutdown, and call chains that nest too deeply.
*/
#include "faulty.h"
#include "tcounter.h"

static const pgs_behaviour counter_b = TC_BEHAVIOUR("counter");

static pgs_runtime *open_on(pgs_storage *st, probe *p, size_t max_msg)
{
    pgs_options o;
    pgs_options_init(&o);
    o.storage = st;
    o.user = p;
    o.workers = 2;
    if (max_msg)
        o.max_message_size = max_msg;
    pgs_runtime *rt;
    REQUIRE_OK(pgs_open(&rt, st ? NULL : "memory:", &o));
    REQUIRE_OK(pgs_register(rt, &counter_b));
    return rt;
}

static void malformed_refs_are_refused(void)
{
    pgs_runtime *rt = open_on(NULL, NULL, 0);
    CHECK_EQ(pgs_call(rt, NULL, "get", 3, NULL, 100), PGS_EINVAL);
    CHECK_EQ(pgs_cast(rt, NULL, "get", 3), PGS_EINVAL);
    CHECK_EQ(pgs_stop(rt, NULL, 100), PGS_EINVAL);
    CHECK_EQ(pgs_delete(rt, NULL, 100), PGS_EINVAL);
    CHECK_EQ(pgs_send_info(rt, NULL, "x", 1), PGS_EINVAL);
    CHECK_EQ(pgs_send_after(rt, NULL, 1, "x", 1, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_is_active(rt, NULL), PGS_EINVAL);

    pgs_ref bad;
    memset(&bad, 'a', sizeof bad); /* name not terminated, key_len huge */
    CHECK_EQ(pgs_call(rt, &bad, "get", 3, NULL, 100), PGS_EREF);
    CHECK_EQ(pgs_cast(rt, &bad, "get", 3), PGS_EREF);
    memset(&bad, 0, sizeof bad);
    strcpy(bad.name, "coun/ter");
    CHECK_EQ(pgs_call(rt, &bad, "get", 3, NULL, 100), PGS_EREF);
    strcpy(bad.name, "counter");
    bad.key_len = PGS_KEY_MAX + 1;
    CHECK_EQ(pgs_call(rt, &bad, "get", 3, NULL, 100), PGS_EREF);
    CHECK_EQ(pgs_ref_parse(&bad, "counter", (size_t)-1), PGS_EREF);
    CHECK_EQ(pgs_ref_parse(&bad, "/key", (size_t)-1), PGS_EREF);
    CHECK_EQ(pgs_ref_parse(&bad, "counter/%zz", (size_t)-1), PGS_EREF);
    CHECK_EQ(pgs_start(rt, "bad name", "k", 1, NULL, 0, NULL, NULL), PGS_EREF);
    CHECK_EQ(pgs_start(rt, NULL, "k", 1, NULL, 0, NULL, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_start(rt, "counter", NULL, 3, NULL, 0, NULL, NULL), PGS_EINVAL);
    /* NULL bytes with a length. */
    pgs_ref ok = tc_ref("counter/k");
    CHECK_EQ(pgs_call(rt, &ok, NULL, 3, NULL, 100), PGS_EINVAL);
    CHECK_EQ(pgs_cast(rt, &ok, NULL, 3), PGS_EINVAL);
    CHECK_EQ(pgs_start(rt, "counter", "k", 1, NULL, 5, NULL, NULL), PGS_EINVAL);
    pgs_server_opts o = {.lifecycle = 9};
    CHECK_EQ(pgs_start(rt, "counter", "k", 1, NULL, 0, &o, NULL), PGS_EINVAL);
    pgs_close(rt);
}

static void unregistered_behaviour_is_refused(void)
{
    pgs_runtime *rt = open_on(NULL, NULL, 0);
    pgs_ref ref = tc_ref("nobody/1");
    CHECK_EQ(pgs_call(rt, &ref, "get", 3, NULL, 100), PGS_ENOBEHAVIOUR);
    CHECK_EQ(pgs_cast(rt, &ref, "get", 3), PGS_ENOBEHAVIOUR);
    CHECK_EQ(pgs_start(rt, "nobody", "1", 1, NULL, 0, NULL, NULL), PGS_ENOBEHAVIOUR);
    CHECK_EQ(pgs_stop(rt, &ref, 100), PGS_ENOBEHAVIOUR);
    CHECK_EQ(pgs_is_active(rt, &ref), PGS_ENOBEHAVIOUR);
    pgs_close(rt);
}

static void oversized_messages_replies_and_states(void)
{
    static const pgs_behaviour fat_b = {
        .version = PGS_BEHAVIOUR_VERSION, .name = "fat", .state_size = 4096,
        .init = tc_init, .handle_call = tc_call};
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    pgs_runtime *rt = open_on(st, NULL, 1024);
    REQUIRE_OK(pgs_register(rt, &fat_b));
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "counter", "k", 1, NULL, 0, NULL, &ref));
    char big[2048] = "add 1";
    CHECK_EQ(pgs_call(rt, &ref, big, sizeof big, NULL, 1000), PGS_ETOOBIG);
    CHECK_EQ(pgs_cast(rt, &ref, big, sizeof big), PGS_ETOOBIG);
    CHECK_EQ(pgs_send_info(rt, &ref, big, sizeof big), PGS_ETOOBIG);
    CHECK_EQ(pgs_send_after(rt, &ref, 1, big, sizeof big, NULL), PGS_ETOOBIG);
    CHECK_EQ(pgs_start(rt, "counter", "k2", 2, big, sizeof big, NULL, NULL), PGS_ETOOBIG);
    CHECK_EQ(pgs_call(rt, &ref, big, 1024, NULL, 1000), PGS_ECRASH); /* at the limit: accepted */
    /* A reply over the limit fails the call; the turn itself stands. */
    CHECK_EQ(tc_callv(rt, &ref, "big 5000", NULL), PGS_ETOOBIG);
    CHECK_EQ(tc_value(rt, &ref, "add 1"), 1);
    /* A state that cannot be stored is refused at start, and nothing stays. */
    pgs_ref fat;
    pgs_ref_make(&fat, "fat", "f", 1);
    CHECK_EQ(pgs_start(rt, "fat", "f", 1, NULL, 0, NULL, NULL), PGS_ETOOBIG);
    CHECK_EQ(tc_version(st, &fat), 0);
    CHECK_EQ(pgs_is_active(rt, &fat), 0);
    pgs_close(rt);
    pgs_storage_close(st);
}

/* encode fails on demand; decode refuses states whose first byte is 0xFF. */
typedef struct enc_state {
    int64_t value;
    int fail_encode;
} enc_state;

static int enc_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    enc_state *s = state;
    if (len == 4 && !memcmp(msg, "fail", 4)) {
        s->fail_encode = 1;
        s->value = 99;
        return PGS_PERSIST;
    }
    if (len == 6 && !memcmp(msg, "poison", 6)) {
        s->value = -1; /* encodes as a byte decode will refuse */
        return PGS_PERSIST;
    }
    s->value++;
    tc_reply_num(ctx, s->value);
    return PGS_PERSIST;
}

static int enc_encode(const void *state, pgs_buf *out)
{
    const enc_state *s = state;
    if (s->fail_encode)
        return -1;
    unsigned char b = s->value < 0 ? 0xFF : (unsigned char)s->value;
    return pgs_buf_append(out, &b, 1);
}

static int enc_decode(void *state, const void *data, size_t len, uint32_t schema)
{
    const unsigned char *p = data;
    if (len != 1 || p[0] == 0xFF)
        return -1;
    ((enc_state *)state)->value = p[0];
    return 0;
}

static int enc_init(pgs_ctx *ctx, void *state, const void *a, size_t n) { return PGS_PERSIST; }

static const pgs_behaviour enc_b = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "enc", .state_size = sizeof(enc_state),
    .schema_version = 2, .init = enc_init, .handle_call = enc_call, .encode = enc_encode,
    .decode = enc_decode};

static void misbehaving_callbacks(void)
{
    static const pgs_behaviour refuse_b = {
        .version = PGS_BEHAVIOUR_VERSION, .name = "refuse", .state_size = 8,
        .init = tc_init_refuse};
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    probe p = {0};
    pgs_runtime *rt = open_on(st, &p, 0);
    REQUIRE_OK(pgs_register(rt, &enc_b));
    REQUIRE_OK(pgs_register(rt, &refuse_b));
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "enc", "e", 1, NULL, 0, NULL, &ref));
    CHECK_EQ(tc_value(rt, &ref, "inc"), 1);
    /* encode failing: the turn fails, nothing is written, the state comes
    ** back from storage. */
    CHECK_EQ(tc_callv(rt, &ref, "fail", NULL), PGS_ECALLBACK);
    CHECK_EQ(tc_value(rt, &ref, "inc"), 2);
    /* decode refusing stored bytes: the server does not activate. */
    CHECK_EQ(tc_callv(rt, &ref, "poison", NULL), PGS_OK); /* stored as 0xFF */
    pgs_close(rt);
    rt = open_on(st, &p, 0);
    REQUIRE_OK(pgs_register(rt, &enc_b));
    CHECK_EQ(tc_callv(rt, &ref, "inc", NULL), PGS_ECORRUPT);
    CHECK_EQ(pgs_is_active(rt, &ref), 0);
    /* init refusing, or returning nonsense: nothing stored. */
    REQUIRE_OK(pgs_register(rt, &refuse_b));
    pgs_ref r2;
    pgs_ref_make(&r2, "refuse", "crash", 5);
    CHECK_EQ(pgs_start(rt, "refuse", "crash", 5, NULL, 0, NULL, NULL), PGS_ECRASH);
    CHECK_EQ(tc_version(st, &r2), 0);
    pgs_ref_make(&r2, "refuse", "bad", 3);
    CHECK_EQ(pgs_start(rt, "refuse", "bad", 3, NULL, 0, NULL, NULL), PGS_ECALLBACK);
    CHECK_EQ(tc_version(st, &r2), 0);
    /* A behaviour without handle_call. */
    pgs_ref_make(&r2, "refuse", "ok", 2);
    REQUIRE_OK(pgs_start(rt, "refuse", "ok", 2, NULL, 0, NULL, NULL));
    CHECK_EQ(pgs_call(rt, &r2, "x", 1, NULL, 1000), PGS_ENOTSUP);
    pgs_close(rt);
    pgs_storage_close(st);
}

static void stored_schema_newer_than_code_is_refused(void)
{
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    pgs_runtime *rt = open_on(st, NULL, 0);
    REQUIRE_OK(pgs_register(rt, &enc_b));
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "enc", "s", 1, NULL, 0, NULL, &ref));
    pgs_close(rt);
    pgs_record *rec;
    REQUIRE_OK(pgs_storage_get(st, &ref, &rec));
    CHECK_EQ(rec->schema_version, 2);
    rec->schema_version = 3; /* written by a newer build */
    REQUIRE_OK(pgs_storage_put(st, rec, rec->version));
    free(rec);
    rt = open_on(st, NULL, 0);
    REQUIRE_OK(pgs_register(rt, &enc_b));
    CHECK_EQ(tc_callv(rt, &ref, "inc", NULL), PGS_ESCHEMA);
    pgs_close(rt);
    pgs_storage_close(st);
}

static void corrupt_stored_bytes_are_reported(void)
{
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, "faulty:", &faulty_ops));
    probe p = {0};
    pgs_runtime *rt = open_on(st, &p, 0);
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "counter", "c", 1, "5", 1, NULL, &ref));
    pgs_close(rt); /* passivated: the next call reads storage */
    rt = open_on(st, &p, 0);
    atomic_store(&faulty_of(st)->corrupt_gets, 1);
    CHECK_EQ(tc_callv(rt, &ref, "add 1", NULL), PGS_ECORRUPT);
    CHECK_EQ(pgs_is_active(rt, &ref), 0);
    CHECK_EQ(atomic_load(&p.handled), 0); /* never decoded blindly */
    atomic_store(&faulty_of(st)->corrupt_gets, 0);
    CHECK_EQ(tc_value(rt, &ref, "add 1"), 6); /* nothing was lost */
    pgs_close(rt);
    pgs_storage_close(st);
}

static void failing_storage_loses_nothing_acknowledged(void)
{
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, "faulty:", &faulty_ops));
    faulty *f = faulty_of(st);
    pgs_runtime *rt = open_on(st, NULL, 0);
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "counter", "w", 1, NULL, 0, NULL, &ref));
    CHECK_EQ(tc_value(rt, &ref, "add 10"), 10);
    /* Writes fail: the call says so and its change does not stick. */
    atomic_store(&f->fail_writes, PGS_ESTORAGE);
    CHECK_EQ(tc_callv(rt, &ref, "add 1", NULL), PGS_ESTORAGE);
    atomic_store(&f->fail_writes, PGS_ENOSPC);
    CHECK_EQ(tc_callv(rt, &ref, "add 1", NULL), PGS_ENOSPC);
    /* An adapter returning a code outside pgs's is a storage error. */
    atomic_store(&f->fail_writes, 12345);
    CHECK_EQ(tc_callv(rt, &ref, "add 1", NULL), PGS_ESTORAGE);
    CHECK_EQ(pgs_start(rt, "counter", "new", 3, NULL, 0, NULL, NULL), PGS_ESTORAGE);
    atomic_store(&f->fail_writes, 0);
    CHECK_EQ(tc_value(rt, &ref, "get"), 10);
    /* Reads fail: a passivated server cannot come back, and says why. */
    pgs_close(rt);
    rt = open_on(st, NULL, 0);
    atomic_store(&f->fail_reads, PGS_ESTORAGE);
    CHECK_EQ(tc_callv(rt, &ref, "get", NULL), PGS_ESTORAGE);
    atomic_store(&f->fail_reads, 0);
    CHECK_EQ(tc_value(rt, &ref, "add 1"), 11);
    pgs_close(rt);
    pgs_storage_close(st);
}

static void bad_options_and_registrations(void)
{
    pgs_runtime *rt = NULL;
    pgs_options o;
    CHECK_EQ(pgs_open(NULL, "memory:", NULL), PGS_EINVAL);
    CHECK_EQ(pgs_open(&rt, "nope:x", NULL), PGS_EURL);
    CHECK(rt == NULL);
    CHECK_EQ(pgs_open(&rt, "no-scheme", NULL), PGS_EURL);
    pgs_options_init(&o);
    o.version = 99;
    CHECK_EQ(pgs_open(&rt, "memory:", &o), PGS_EVERSION);
    pgs_options_init(&o);
    o.workers = -1;
    CHECK_EQ(pgs_open(&rt, "memory:", &o), PGS_EINVAL);

    REQUIRE_OK(pgs_open(&rt, "memory:", NULL));
    pgs_behaviour b = counter_b;
    CHECK_EQ(pgs_register(rt, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_register(NULL, &b), PGS_EINVAL);
    b.version = 99;
    CHECK_EQ(pgs_register(rt, &b), PGS_EVERSION);
    b = counter_b;
    b.name = "a/b";
    CHECK_EQ(pgs_register(rt, &b), PGS_EREF);
    b = counter_b;
    b.init = NULL;
    CHECK_EQ(pgs_register(rt, &b), PGS_EINVAL);
    b = counter_b;
    b.defaults.write_mode = 17;
    CHECK_EQ(pgs_register(rt, &b), PGS_EINVAL);
    CHECK_EQ(pgs_register(rt, &counter_b), PGS_OK);
    CHECK_EQ(pgs_register(rt, &counter_b), PGS_EEXIST);
    pgs_close(rt);
    pgs_close(NULL);
    CHECK_EQ(pgs_shutdown(NULL), PGS_EINVAL);
    CHECK_EQ(pgs_stats_get(NULL, NULL), PGS_EINVAL);
}

static void calls_after_shutdown_are_refused(void)
{
    pgs_runtime *rt = open_on(NULL, NULL, 0);
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "counter", "k", 1, NULL, 0, NULL, &ref));
    REQUIRE_OK(pgs_shutdown(rt));
    CHECK_EQ(pgs_call(rt, &ref, "get", 3, NULL, 100), PGS_ECLOSED);
    CHECK_EQ(pgs_cast(rt, &ref, "get", 3), PGS_ECLOSED);
    CHECK_EQ(pgs_send_info(rt, &ref, "get", 3), PGS_ECLOSED);
    CHECK_EQ(pgs_send_after(rt, &ref, 1, "get", 3, NULL), PGS_ECLOSED);
    CHECK_EQ(pgs_stop(rt, &ref, 100), PGS_ECLOSED);
    CHECK_EQ(pgs_delete(rt, &ref, 100), PGS_ECLOSED);
    pgs_close(rt);
}

/* A chain of servers each calling the next: depth is bounded. */
static int chain_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    const pgs_ref *self = pgs_self(ctx);
    unsigned n = self->key[0] | (unsigned)self->key[1] << 8;
    int rc = PGS_OK;
    if (n < 400) {
        pgs_ref next;
        unsigned char key[2] = {(unsigned char)(n + 1), (unsigned char)((n + 1) >> 8)};
        pgs_ref_make(&next, "chain", key, 2);
        pgs_bytes rep;
        rc = pgs_call(pgs_ctx_runtime(ctx), &next, msg, len, &rep, 5000);
        if (rc == PGS_OK && rep.len == sizeof rc)
            memcpy(&rc, rep.data, sizeof rc); /* the deepest failure, passed up */
        pgs_bytes_free(&rep);
    }
    pgs_reply(ctx, &rc, sizeof rc);
    return PGS_UNCHANGED;
}

static void deep_call_chains_are_bounded(void)
{
    static const pgs_behaviour chain_b = {
        .version = PGS_BEHAVIOUR_VERSION, .name = "chain", .flags = PGS_VIRTUAL,
        .init = tc_init_plain, .handle_call = chain_call};
    pgs_runtime *rt = open_on(NULL, NULL, 0);
    REQUIRE_OK(pgs_register(rt, &chain_b));
    pgs_ref ref;
    pgs_ref_make(&ref, "chain", (unsigned char[2]){0, 0}, 2);
    pgs_bytes rep;
    REQUIRE_OK(pgs_call(rt, &ref, "go", 2, &rep, 10000));
    int rc = 0;
    if (rep.len == sizeof rc)
        memcpy(&rc, rep.data, sizeof rc);
    CHECK_EQ(rc, PGS_ELOOP);
    pgs_bytes_free(&rep);
    pgs_close(rt);
}

static void reply_outside_a_call_is_refused(void)
{
    CHECK_EQ(pgs_reply(NULL, "x", 1), PGS_EINVAL);
    CHECK(pgs_self(NULL) == NULL);
    CHECK(pgs_user(NULL) == NULL);
    CHECK_EQ(pgs_buf_append(NULL, "x", 1), PGS_EINVAL);
}

static void error_strings_cover_every_code(void)
{
    for (int c = 0; c >= -40; c--) {
        const char *s = pgs_strerror(c), *n = pgs_errname(c);
        CHECK(s && *s && n && *n);
    }
    CHECK(strcmp(pgs_strerror(PGS_ECORRUPT), "unknown error") != 0);
    CHECK(strcmp(pgs_errname(PGS_ENOTFOUND), "PGS_ENOTFOUND") == 0);
    CHECK(strcmp(pgs_strerror(12345), "unknown error") == 0);
}

int main(void)
{
    RUN(malformed_refs_are_refused);
    RUN(unregistered_behaviour_is_refused);
    RUN(oversized_messages_replies_and_states);
    RUN(misbehaving_callbacks);
    RUN(stored_schema_newer_than_code_is_refused);
    RUN(corrupt_stored_bytes_are_reported);
    RUN(failing_storage_loses_nothing_acknowledged);
    RUN(bad_options_and_registrations);
    RUN(calls_after_shutdown_are_refused);
    RUN(deep_call_chains_are_bounded);
    RUN(reply_outside_a_call_is_refused);
    RUN(error_strings_cover_every_code);
    return CHECK_DONE();
}
