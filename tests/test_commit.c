/*
** test_commit.c — group commit, the output gate and the write modes, on a
** store whose every batch takes a few milliseconds, like a disk's fsync
** (tests/faulty.h), so what waits for what can be seen:
**   - sync: a reply comes only once its state is stored; many callers'
**     writes share transactions; a turn's casts leave only after its write;
**   - async: replies come at once, writes of one server coalesce, and
**     reach storage within the flush interval; close flushes them;
**   - a server keeps handling messages while its previous write is in
**     flight, and ten updates pending at once are one write.
*/
#include "faulty.h"
#include "tcounter.h"

#include <pthread.h>

static const pgs_behaviour counter_b = TC_BEHAVIOUR("counter");

typedef struct fixture {
    pgs_storage *st;
    faulty *f;
    pgs_runtime *rt;
    probe p;
} fixture;

static void setup(fixture *x, int delay_us, uint32_t flush_ms)
{
    memset(x, 0, sizeof *x);
    REQUIRE_OK(pgs_storage_open(&x->st, "faulty:", &faulty_ops));
    x->f = faulty_of(x->st);
    pgs_options o;
    pgs_options_init(&o);
    o.storage = x->st;
    o.user = &x->p;
    o.workers = 2;
    o.flush_interval_ms = flush_ms;
    REQUIRE_OK(pgs_open(&x->rt, NULL, &o));
    REQUIRE_OK(pgs_register(x->rt, &counter_b));
    atomic_store(&x->f->delay_us, delay_us);
}

static void teardown(fixture *x)
{
    pgs_close(x->rt);
    pgs_storage_close(x->st);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static pgs_ref start(fixture *x, const char *key, uint8_t mode)
{
    pgs_server_opts o = {.write_mode = mode};
    pgs_ref ref;
    REQUIRE_OK(pgs_start(x->rt, "counter", key, strlen(key), NULL, 0, &o, &ref));
    return ref;
}

static void sync_reply_waits_for_the_write(void)
{
    fixture x;
    setup(&x, 20000, 0);
    pgs_ref ref = start(&x, "s", PGS_WRITE_SYNC);
    double t0 = now_ms();
    CHECK_EQ(tc_value(x.rt, &ref, "add 3"), 3);
    CHECK(now_ms() - t0 >= 19.0);         /* it waited for the 20 ms "fsync" */
    CHECK_EQ(tc_stored(x.st, &ref), 3);  /* and the state was there by then */
    /* A read of a server with nothing in flight does not wait. */
    t0 = now_ms();
    CHECK_EQ(tc_value(x.rt, &ref, "get"), 3);
    CHECK(now_ms() - t0 < 15.0);
    teardown(&x);
}

typedef struct caller_arg {
    fixture *x;
    int id, calls, bad;
} caller_arg;

static void *caller(void *arg)
{
    caller_arg *a = arg;
    char key[16];
    snprintf(key, sizeof key, "c%d", a->id);
    pgs_ref ref;
    pgs_ref_make(&ref, "counter", key, strlen(key));
    for (int i = 1; i <= a->calls; i++)
        a->bad += tc_value(a->x->rt, &ref, "add 1") != i;
    return NULL;
}

static void many_callers_share_transactions(void)
{
    fixture x;
    setup(&x, 3000, 0);
    enum { CALLERS = 32, CALLS = 20 };
    for (int i = 0; i < CALLERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "c%d", i);
        start(&x, key, PGS_WRITE_SYNC);
    }
    pgs_stats before;
    pgs_stats_get(x.rt, &before);
    pthread_t th[CALLERS];
    caller_arg a[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        a[i] = (caller_arg){&x, i, CALLS, 0};
        pthread_create(&th[i], NULL, caller, &a[i]);
    }
    int bad = 0;
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(th[i], NULL);
        bad += a[i].bad;
    }
    CHECK_EQ(bad, 0);
    pgs_stats after;
    pgs_stats_get(x.rt, &after);
    uint64_t writes = after.writes - before.writes, commits = after.commits - before.commits;
    CHECK_EQ(writes, CALLERS * CALLS);
    /* One caller alone would need a transaction per call. */
    CHECK(commits * 4 < writes);
    fprintf(stderr, "  %llu writes in %llu commits\n", (unsigned long long)writes,
            (unsigned long long)commits);
    teardown(&x);
}

/* The receiver checks, as it handles the n-th cast from server a, that the
** turn of a that sent it is already stored: a started at version 1 and each
** sending turn wrote one more, so a's record must be at version 1 + n. */
static pgs_storage *gate_store;

static int gate_cast(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    cstate *s = state;
    pgs_ref sender;
    if (pgs_ref_parse(&sender, msg, len))
        return PGS_CRASH;
    s->value++;
    if (tc_version(gate_store, &sender) < 1 + (uint64_t)s->value)
        s->infos++; /* it arrived before the write of the turn that sent it */
    return PGS_PERSIST;
}

static int gate_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    const cstate *s = state;
    int64_t r[2] = {s->value, s->infos};
    pgs_reply(ctx, r, sizeof r);
    return PGS_UNCHANGED;
}

static void casts_wait_for_the_senders_write(void)
{
    static const pgs_behaviour rx_b = {
        .version = PGS_BEHAVIOUR_VERSION, .name = "rx", .state_size = sizeof(cstate),
        .init = tc_init_plain, .handle_call = gate_call, .handle_cast = gate_cast};
    fixture x;
    setup(&x, 5000, 0);
    gate_store = x.st;
    REQUIRE_OK(pgs_register(x.rt, &rx_b));
    pgs_ref a = start(&x, "a", PGS_WRITE_SYNC), rx;
    REQUIRE_OK(pgs_start(x.rt, "rx", "r", 1, NULL, 0, NULL, &rx));
    for (int i = 0; i < 5; i++) /* a persists, and casts its own name to rx */
        CHECK_EQ(tc_callv(x.rt, &a, "cast rx/r counter/a", NULL), PGS_OK);
    int64_t r[2] = {0, 0};
    for (int i = 0; i < 3000 && r[0] < 5; i++) {
        pgs_bytes rep;
        REQUIRE_OK(pgs_call(x.rt, &rx, "?", 1, &rep, 5000));
        memcpy(r, rep.data, sizeof r);
        pgs_bytes_free(&rep);
        usleep(1000);
    }
    CHECK_EQ(r[0], 5);
    CHECK_EQ(r[1], 0); /* none arrived early */
    teardown(&x);
}

static void async_replies_at_once_and_coalesces(void)
{
    fixture x;
    setup(&x, 20000, 30);
    pgs_ref ref = start(&x, "a", PGS_WRITE_ASYNC);
    int writes0 = atomic_load(&x.f->records);
    double t0 = now_ms();
    for (int i = 1; i <= 10; i++)
        CHECK_EQ(tc_value(x.rt, &ref, "add 1"), i);
    CHECK(now_ms() - t0 < 20.0); /* ten replies faster than one "fsync" */
    /* Within the flush interval plus a commit, the state is stored... */
    long long v = 0;
    for (int i = 0; i < 500 && (v = tc_stored(x.st, &ref)) != 10; i++)
        usleep(1000);
    CHECK_EQ(v, 10);
    CHECK(now_ms() - t0 < 30 + 20 + 100);
    /* ...in far fewer writes than updates. */
    int writes = atomic_load(&x.f->records) - writes0;
    CHECK(writes >= 1 && writes <= 3);
    fprintf(stderr, "  10 async updates, %d writes\n", writes);
    /* Close flushes what is still pending. */
    CHECK_EQ(tc_value(x.rt, &ref, "add 5"), 15);
    pgs_close(x.rt);
    CHECK_EQ(tc_stored(x.st, &ref), 15);
    pgs_storage_close(x.st);
}

static void server_runs_ahead_of_its_writes(void)
{
    fixture x;
    setup(&x, 20000, 0);
    pgs_ref ref = start(&x, "q", PGS_WRITE_SYNC);
    int writes0 = atomic_load(&x.f->records);
    /* 100 casts queue behind one another; the worker runs them while the
    ** first write is in flight, and the later ones coalesce. */
    for (int i = 0; i < 100; i++)
        REQUIRE_OK(pgs_cast(x.rt, &ref, "add 1", 5));
    CHECK_EQ(tc_value(x.rt, &ref, "get"), 100);
    CHECK_EQ(tc_stored(x.st, &ref), 100);
    int writes = atomic_load(&x.f->records) - writes0;
    CHECK(writes < 20);
    fprintf(stderr, "  100 casts, %d writes\n", writes);
    teardown(&x);
}

static void failed_write_fails_what_waits_on_it(void)
{
    fixture x;
    setup(&x, 2000, 0);
    pgs_ref ref = start(&x, "f", PGS_WRITE_SYNC);
    CHECK_EQ(tc_value(x.rt, &ref, "add 10"), 10);
    atomic_store(&x.f->fail_writes, PGS_ESTORAGE);
    for (int i = 0; i < 5; i++)
        REQUIRE_OK(pgs_cast(x.rt, &ref, "add 1", 5));
    CHECK_EQ(tc_callv(x.rt, &ref, "add 1", NULL), PGS_ESTORAGE);
    atomic_store(&x.f->fail_writes, 0);
    /* The state came back from storage: none of the failed turns stuck. */
    CHECK_EQ(tc_value(x.rt, &ref, "get"), 10);
    CHECK_EQ(tc_value(x.rt, &ref, "add 1"), 11);
    CHECK_EQ(tc_stored(x.st, &ref), 11);
    teardown(&x);
}

int main(void)
{
    RUN(sync_reply_waits_for_the_write);
    RUN(many_callers_share_transactions);
    RUN(casts_wait_for_the_senders_write);
    RUN(async_replies_at_once_and_coalesces);
    RUN(server_runs_ahead_of_its_writes);
    RUN(failed_write_fails_what_waits_on_it);
    return CHECK_DONE();
}
