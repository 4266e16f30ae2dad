/*
** test_lifecycle.c — one case per lifecycle rule of DESIGN.md: start,
** persist after each message, idle passivation and reactivation, crash,
** the three lifecycles, per-server overrides, stop, delete, virtual
** behaviours, close and reopen.  Each case opens its own memory: store and
** reads the stored records directly, so "it was written" is checked in
** storage, not taken on trust.
*/
#include "tcounter.h"

static const pgs_behaviour counter_b = TC_BEHAVIOUR("counter");

typedef struct fixture {
    pgs_storage *st;
    pgs_runtime *rt;
    probe p;
} fixture;

static void setup(fixture *f, uint32_t idle_ms)
{
    memset(f, 0, sizeof *f);
    REQUIRE_OK(pgs_storage_open(&f->st, "memory:", NULL));
    f->rt = tc_open(f->st, &f->p, idle_ms, 2);
    REQUIRE_OK(pgs_register(f->rt, &counter_b));
}

static void teardown(fixture *f)
{
    pgs_close(f->rt);
    pgs_storage_close(f->st);
}

/* The i-th key of a series, e.g. "k17". */
static const char *nth(char buf[16], const char *prefix, int i)
{
    snprintf(buf, 16, "%s%d", prefix, i);
    return buf;
}

static pgs_ref start(fixture *f, const char *key, const char *args, uint8_t lifecycle,
                     uint32_t idle_ms)
{
    pgs_server_opts o = {.lifecycle = lifecycle, .idle_timeout_ms = idle_ms};
    pgs_ref ref;
    REQUIRE_OK(pgs_start(f->rt, "counter", key, strlen(key), args, args ? strlen(args) : 0,
                         &o, &ref));
    return ref;
}

static void start_runs_init_once_and_stores_args(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "a", "40", 0, 0);
    CHECK_EQ(atomic_load(&f.p.inits), 1);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 40);
    /* Starting again finds it: no second init, the state is untouched. */
    pgs_ref again;
    CHECK_EQ(pgs_start(f.rt, "counter", "a", 1, "99", 2, NULL, &again), PGS_OK);
    CHECK(pgs_ref_equal(&ref, &again));
    CHECK_EQ(atomic_load(&f.p.inits), 1);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 40);
    pgs_record *rec = NULL;
    REQUIRE_OK(pgs_storage_get(f.st, &ref, &rec));
    CHECK_EQ(rec->version, 1);
    CHECK(rec->args_len == 2 && memcmp(rec->args, "40", 2) == 0);
    free(rec);
    teardown(&f);
}

static void every_message_is_persisted(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "p", NULL, 0, 0);
    for (int i = 1; i <= 5; i++) {
        CHECK_EQ(tc_value(f.rt, &ref, "add 2"), 2 * i);
        CHECK_EQ(tc_version(f.st, &ref), 1 + i);
        CHECK_EQ(tc_stored(f.st, &ref), 2 * i);
    }
    REQUIRE_OK(pgs_cast(f.rt, &ref, "add 1", 5));
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 11); /* per-sender order: the cast ran first */
    CHECK_EQ(tc_stored(f.st, &ref), 11);
    /* Reads write nothing. */
    uint64_t v = tc_version(f.st, &ref);
    tc_value(f.rt, &ref, "get");
    CHECK_EQ(tc_version(f.st, &ref), v);
    teardown(&f);
}

static void nopersist_is_written_at_passivation(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "lazy", NULL, 0, 30);
    CHECK_EQ(tc_value(f.rt, &ref, "lazy 7"), 7);
    CHECK_EQ(tc_stored(f.st, &ref), 0); /* not written yet */
    CHECK_EQ(tc_wait_active(f.rt, &ref, 0), 0);
    CHECK_EQ(tc_stored(f.st, &ref), 7); /* passivation wrote it */
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 7);
    /* A later persisting turn writes the earlier lazy change with it. */
    CHECK_EQ(tc_value(f.rt, &ref, "lazy 1"), 8);
    CHECK_EQ(tc_value(f.rt, &ref, "add 1"), 9);
    CHECK_EQ(tc_stored(f.st, &ref), 9);
    teardown(&f);
}

static void on_passivate_mode_writes_only_when_idle(void)
{
    fixture f;
    setup(&f, 0);
    pgs_server_opts o = {.write_mode = PGS_WRITE_ON_PASSIVATE, .idle_timeout_ms = 30};
    pgs_ref ref;
    REQUIRE_OK(pgs_start(f.rt, "counter", "op", 2, NULL, 0, &o, &ref));
    CHECK_EQ(tc_version(f.st, &ref), 1); /* a new server is always written */
    for (int i = 1; i <= 10; i++)
        CHECK_EQ(tc_value(f.rt, &ref, "add 1"), i);
    CHECK_EQ(tc_version(f.st, &ref), 1);
    CHECK_EQ(tc_wait_active(f.rt, &ref, 0), 0);
    CHECK_EQ(tc_version(f.st, &ref), 2); /* ten turns, one write */
    CHECK_EQ(tc_stored(f.st, &ref), 10);
    /* Close writes it too; a crash loses what was not written. */
    CHECK_EQ(tc_value(f.rt, &ref, "add 5"), 15);
    CHECK_EQ(tc_callv(f.rt, &ref, "crash 0", NULL), PGS_ECRASH);
    CHECK_EQ(tc_value(f.rt, &ref, "add 1"), 11);
    pgs_close(f.rt);
    CHECK_EQ(tc_stored(f.st, &ref), 11);
    f.rt = tc_open(f.st, &f.p, 0, 2);
    teardown(&f);
}

static void idle_server_passivates_and_reactivates(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "idle", NULL, 0, 20);
    CHECK_EQ(tc_value(f.rt, &ref, "add 3"), 3);
    CHECK_EQ(pgs_is_active(f.rt, &ref), 1);
    CHECK_EQ(tc_wait_active(f.rt, &ref, 0), 0);
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_PASSIVATE]), 1);
    pgs_stats st;
    pgs_stats_get(f.rt, &st);
    CHECK_EQ(st.active, 0);
    CHECK_EQ(st.passivations, 1);
    /* Any message brings it back from storage, transparently. */
    CHECK_EQ(tc_value(f.rt, &ref, "add 1"), 4);
    CHECK_EQ(pgs_is_active(f.rt, &ref), 1);
    CHECK_EQ(atomic_load(&f.p.inits), 1);
    /* Casts and infos wake it too. */
    CHECK_EQ(tc_wait_active(f.rt, &ref, 0), 0);
    REQUIRE_OK(pgs_cast(f.rt, &ref, "add 1", 5));
    REQUIRE_OK(pgs_send_info(f.rt, &ref, "add 1", 5));
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 6);
    /* A busy server is not passivated under its callers. */
    for (int i = 0; i < 50; i++) {
        usleep(2000);
        CHECK_EQ(tc_value(f.rt, &ref, "add 0"), 6);
    }
    teardown(&f);
}

static void crash_drops_the_turn_and_revives(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "c", NULL, 0, 0);
    CHECK_EQ(tc_value(f.rt, &ref, "add 5"), 5);
    CHECK_EQ(tc_callv(f.rt, &ref, "crash 100", NULL), PGS_ECRASH);
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_CRASH]), 1);
    CHECK_EQ(pgs_is_active(f.rt, &ref), 0); /* transient: back on the next message */
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 5);
    /* An unknown result code is a crash too, reported as a misbehaving callback. */
    CHECK_EQ(tc_callv(f.rt, &ref, "bad", NULL), PGS_ECALLBACK);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 5);
    /* Unpersisted changes are part of what a crash drops. */
    CHECK_EQ(tc_value(f.rt, &ref, "lazy 1"), 6);
    CHECK_EQ(tc_callv(f.rt, &ref, "crash 0", NULL), PGS_ECRASH);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 5);
    pgs_stats st;
    pgs_stats_get(f.rt, &st);
    CHECK_EQ(st.crashes, 3);
    teardown(&f);
}

static void temporary_is_wiped_on_crash_and_stop(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "t", NULL, PGS_TEMPORARY, 0);
    CHECK_EQ(tc_value(f.rt, &ref, "add 1"), 1);
    CHECK_EQ(tc_callv(f.rt, &ref, "crash 1", NULL), PGS_ECRASH);
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ENOTFOUND);
    CHECK_EQ(tc_version(f.st, &ref), 0);
    ref = start(&f, "t2", NULL, PGS_TEMPORARY, 0);
    CHECK_EQ(pgs_stop(f.rt, &ref, 5000), PGS_OK);
    CHECK_EQ(tc_version(f.st, &ref), 0);
    teardown(&f);
}

static void transient_is_wiped_on_stop_and_stop_is_final(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "s", NULL, 0, 0);
    CHECK_EQ(tc_value(f.rt, &ref, "add 1"), 1);
    CHECK_EQ(pgs_stop(f.rt, &ref, 5000), PGS_OK);
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_STOP]), 1);
    CHECK_EQ(tc_version(f.st, &ref), 0);
    /* The next call does not recreate it. */
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ENOTFOUND);
    CHECK_EQ(pgs_cast(f.rt, &ref, "add 1", 5), PGS_OK); /* dropped */
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ENOTFOUND);
    CHECK_EQ(pgs_stop(f.rt, &ref, 5000), PGS_ENOTFOUND);
    CHECK_EQ(atomic_load(&f.p.inits), 1);
    /* A handler's own PGS_STOP is the same. */
    ref = start(&f, "s2", NULL, 0, 0);
    CHECK_EQ(tc_callv(f.rt, &ref, "stop", NULL), PGS_OK);
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ENOTFOUND);
    CHECK_EQ(tc_version(f.st, &ref), 0);
    /* Messages queued behind a stop meet a server that is gone. */
    ref = start(&f, "s3", NULL, 0, 0);
    REQUIRE_OK(pgs_cast(f.rt, &ref, "sleep 50", 8));
    REQUIRE_OK(pgs_cast(f.rt, &ref, "stop", 4));
    REQUIRE_OK(pgs_cast(f.rt, &ref, "add 1", 5));
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ENOTFOUND);
    /* And it can be started anew, from scratch. */
    ref = start(&f, "s3", "7", 0, 0);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 7);
    teardown(&f);
}

static void permanent_survives_crash_and_stop(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "perm", NULL, PGS_PERMANENT, 0);
    CHECK_EQ(tc_value(f.rt, &ref, "add 4"), 4);
    CHECK_EQ(tc_callv(f.rt, &ref, "crash 1", NULL), PGS_ECRASH);
    CHECK_EQ(pgs_is_active(f.rt, &ref), 1); /* revived eagerly */
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 4);
    CHECK_EQ(pgs_stop(f.rt, &ref, 5000), PGS_OK);
    CHECK_EQ(pgs_is_active(f.rt, &ref), 1);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 4);
    CHECK_EQ(tc_callv(f.rt, &ref, "stop", NULL), PGS_OK);
    CHECK_EQ(tc_value(f.rt, &ref, "get"), 4);
    /* Only an explicit delete wipes it. */
    CHECK_EQ(pgs_delete(f.rt, &ref, 5000), PGS_OK);
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_DELETE]), 1);
    CHECK_EQ(tc_version(f.st, &ref), 0);
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ENOTFOUND);
    CHECK_EQ(pgs_delete(f.rt, &ref, 5000), PGS_ENOTFOUND);
    teardown(&f);
}

static void delete_works_on_passivated_servers(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "d", NULL, 0, 10);
    CHECK_EQ(tc_wait_active(f.rt, &ref, 0), 0);
    CHECK_EQ(pgs_delete(f.rt, &ref, 5000), PGS_OK);
    CHECK_EQ(tc_version(f.st, &ref), 0);
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_DELETE]), 0); /* nothing was in memory */
    CHECK_EQ(pgs_is_active(f.rt, &ref), 0);
    teardown(&f);
}

static void per_server_options_override_the_behaviour(void)
{
    static const pgs_behaviour sticky_b = {
        .version = PGS_BEHAVIOUR_VERSION, .name = "sticky", .state_size = sizeof(cstate),
        .defaults = {.idle_timeout_ms = PGS_IDLE_NEVER, .lifecycle = PGS_PERMANENT},
        .init = tc_init, .handle_call = tc_call, .terminate = tc_terminate};
    fixture f;
    setup(&f, 0);
    REQUIRE_OK(pgs_register(f.rt, &sticky_b));
    pgs_ref keep, brief;
    REQUIRE_OK(pgs_start(f.rt, "sticky", "k", 1, NULL, 0, NULL, &keep));
    pgs_server_opts o = {.idle_timeout_ms = 10, .lifecycle = PGS_TEMPORARY};
    REQUIRE_OK(pgs_start(f.rt, "sticky", "b", 1, NULL, 0, &o, &brief));
    CHECK_EQ(tc_wait_active(f.rt, &brief, 0), 0); /* its own idle timeout */
    usleep(50000);
    CHECK_EQ(pgs_is_active(f.rt, &keep), 1);     /* the behaviour's: never */
    /* The overrides are stored: after reactivation the server is still
    ** temporary, so a crash wipes it. */
    CHECK_EQ(tc_value(f.rt, &brief, "add 1"), 1);
    CHECK_EQ(tc_callv(f.rt, &brief, "crash 1", NULL), PGS_ECRASH);
    CHECK_EQ(tc_callv(f.rt, &brief, "get", NULL), PGS_ENOTFOUND);
    CHECK_EQ(tc_callv(f.rt, &keep, "crash 1", NULL), PGS_ECRASH);
    CHECK_EQ(pgs_is_active(f.rt, &keep), 1); /* permanent by default */
    teardown(&f);
}

static void virtual_behaviour_inits_unknown_refs(void)
{
    static const pgs_behaviour virt_b = {
        .version = PGS_BEHAVIOUR_VERSION, .name = "virt", .state_size = sizeof(cstate),
        .flags = PGS_VIRTUAL, .init = tc_init, .handle_call = tc_call, .handle_cast = tc_call};
    fixture f;
    setup(&f, 0);
    REQUIRE_OK(pgs_register(f.rt, &virt_b));
    pgs_ref v = tc_ref("virt/anything"), c = tc_ref("counter/unknown");
    CHECK_EQ(tc_value(f.rt, &v, "add 2"), 2);
    CHECK_EQ(atomic_load(&f.p.inits), 1);
    CHECK_EQ(tc_stored(f.st, &v), 2); /* stored before the reply */
    CHECK_EQ(tc_value(f.rt, &v, "add 2"), 4);
    CHECK_EQ(atomic_load(&f.p.inits), 1);
    CHECK_EQ(tc_callv(f.rt, &c, "get", NULL), PGS_ENOTFOUND); /* not virtual */
    /* A cast to an unknown virtual ref creates it too. */
    pgs_ref v2 = tc_ref("virt/by-cast");
    REQUIRE_OK(pgs_cast(f.rt, &v2, "add 3", 5));
    CHECK_EQ(tc_value(f.rt, &v2, "get"), 3);
    teardown(&f);
}

static void close_passivates_and_reopen_resumes(void)
{
    fixture f;
    setup(&f, 0);
    enum { N = 200 };
    char key[16];
    for (int i = 0; i < N; i++) {
        pgs_ref ref = start(&f, nth(key, "k", i), NULL, i % 10 == 0 ? PGS_PERMANENT : 0, 0);
        CHECK_EQ(tc_value(f.rt, &ref, i % 2 ? "add 5" : "lazy 5"), 5);
    }
    pgs_close(f.rt); /* passivates all; lazy changes are written now */
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_SHUTDOWN]), N);
    CHECK_EQ(atomic_load(&f.p.terminates[PGS_REASON_STOP]), 0);

    probe p2 = {0};
    f.rt = tc_open(f.st, &p2, 0, 2);
    REQUIRE_OK(pgs_register(f.rt, &counter_b)); /* revives the permanent ones */
    pgs_stats st;
    pgs_stats_get(f.rt, &st);
    CHECK_EQ(st.active, N / 10);
    for (int i = 0; i < N; i++) {
        pgs_ref ref;
        nth(key, "k", i);
        pgs_ref_make(&ref, "counter", key, strlen(key));
        CHECK_EQ(pgs_is_active(f.rt, &ref), i % 10 == 0);
        CHECK_EQ(tc_value(f.rt, &ref, "add 1"), 6);
    }
    CHECK_EQ(atomic_load(&p2.inits), 0);
    teardown(&f);
}

static void shutdown_refuses_new_work(void)
{
    fixture f;
    setup(&f, 0);
    pgs_ref ref = start(&f, "x", NULL, 0, 0);
    REQUIRE_OK(pgs_shutdown(f.rt));
    CHECK_EQ(tc_callv(f.rt, &ref, "get", NULL), PGS_ECLOSED);
    CHECK_EQ(pgs_cast(f.rt, &ref, "add 1", 5), PGS_ECLOSED);
    CHECK_EQ(pgs_start(f.rt, "counter", "y", 1, NULL, 0, NULL, NULL), PGS_ECLOSED);
    CHECK_EQ(pgs_register(f.rt, &counter_b), PGS_ECLOSED);
    CHECK_EQ(pgs_shutdown(f.rt), PGS_OK); /* idempotent */
    teardown(&f);
}

/* A passivated server costs the registry nothing: the count of servers in
** memory returns to zero however many were active. */
static void passivated_servers_leave_memory(void)
{
    fixture f;
    setup(&f, 5);
    enum { N = 2000 };
    char key[16];
    for (int i = 0; i < N; i++)
        start(&f, nth(key, "m", i), NULL, 0, 0);
    pgs_stats st;
    for (int i = 0; i < 5000; i++) {
        pgs_stats_get(f.rt, &st);
        if (!st.active)
            break;
        usleep(1000);
    }
    CHECK_EQ(st.active, 0);
    CHECK_EQ(st.passivations, N);
    teardown(&f);
}

int main(void)
{
    RUN(start_runs_init_once_and_stores_args);
    RUN(every_message_is_persisted);
    RUN(nopersist_is_written_at_passivation);
    RUN(on_passivate_mode_writes_only_when_idle);
    RUN(idle_server_passivates_and_reactivates);
    RUN(crash_drops_the_turn_and_revives);
    RUN(temporary_is_wiped_on_crash_and_stop);
    RUN(transient_is_wiped_on_stop_and_stop_is_final);
    RUN(permanent_survives_crash_and_stop);
    RUN(delete_works_on_passivated_servers);
    RUN(per_server_options_override_the_behaviour);
    RUN(virtual_behaviour_inits_unknown_refs);
    RUN(close_passivates_and_reopen_resumes);
    RUN(shutdown_refuses_new_work);
    RUN(passivated_servers_leave_memory);
    return CHECK_DONE();
}
