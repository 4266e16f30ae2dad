/*
** test_faults.c — the fault policy: poison messages set aside, crash loops
** counted in storage (across process restarts too), rollback, reset and
** park, operator repairs, the backoff, monitors, reconfiguration and state
** migration.
**
** The behaviour "fragile" has a flat state {n, bad}.  Messages (calls and
** casts alike):
**   inc     n += 1, persist, reply n       get   reply n
**   boom    crash                          spoil bad = 1, persist
**   flaky   crash on its first try only, then as inc
** A server whose state is bad crashes on every message but "get": a bad
** state, which the policies must deal with.
*/
#include "check.h"
#include "pgs.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct fstate {
    int64_t n;
    int64_t bad;
} fstate;

typedef struct probe {
    atomic_int booms;         /* boom handled (crashed) */
    atomic_int flaky_tries;
    atomic_int events[16];    /* monitor callback: by enum pgs_event */
    atomic_int event_log[64]; /* in order */
    atomic_int nlog;
} probe;

static int reply_n(pgs_ctx *ctx, int64_t n)
{
    char b[32];
    int len = snprintf(b, sizeof b, "%" PRId64, n);
    return pgs_reply(ctx, b, (size_t)len);
}

static int fr_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    (void)ctx;
    fstate *s = state;
    char b[32] = {0};
    if (len && len < sizeof b) {
        memcpy(b, args, len);
        s->n = atoll(b);
    }
    return PGS_PERSIST;
}

static int fr_handle(pgs_ctx *ctx, fstate *s, const char *m, size_t len, int call)
{
    probe *p = pgs_user(ctx);
    if (len == 3 && !memcmp(m, "get", 3)) {
        if (call)
            reply_n(ctx, s->n);
        return PGS_UNCHANGED;
    }
    if (s->bad)
        return PGS_CRASH;
    if (len == 4 && !memcmp(m, "boom", 4)) {
        atomic_fetch_add(&p->booms, 1);
        return PGS_CRASH;
    }
    if (len == 5 && !memcmp(m, "spoil", 5)) {
        s->bad = 1;
        return PGS_PERSIST;
    }
    if (len == 5 && !memcmp(m, "flaky", 5) && atomic_fetch_add(&p->flaky_tries, 1) == 0)
        return PGS_CRASH;
    s->n++;
    if (call)
        reply_n(ctx, s->n);
    return PGS_PERSIST;
}

static int fr_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    return fr_handle(ctx, state, msg, len, 1);
}

static int fr_cast(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    return fr_handle(ctx, state, msg, len, 0);
}

static const pgs_behaviour fragile = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "fragile", .state_size = sizeof(fstate),
    .init = fr_init, .handle_call = fr_call, .handle_cast = fr_cast,
};

/* ------------------------------------------------------------------------
** Helpers.
*/
static probe the_probe;

static pgs_runtime *open_rt(const char *url)
{
    pgs_options o;
    pgs_options_init(&o);
    o.user = &the_probe;
    o.workers = 2;
    o.backoff_max_ms = 40; /* keeps crash loops quick; the backoff case sets its own */
    pgs_runtime *rt;
    REQUIRE_OK(pgs_open(&rt, url, &o));
    REQUIRE_OK(pgs_register(rt, &fragile));
    return rt;
}

static pgs_ref start(pgs_runtime *rt, const char *key, const char *args,
                     const pgs_server_opts *o)
{
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "fragile", key, strlen(key), args, args ? strlen(args) : 0, o,
                         &ref));
    return ref;
}

/* Calls cmd; returns the status, and the reply's number in *n. */
static int call(pgs_runtime *rt, const pgs_ref *ref, const char *cmd, int64_t *n)
{
    pgs_bytes r;
    int rc = pgs_call(rt, ref, cmd, strlen(cmd), &r, 5000);
    if (n) {
        char b[32] = {0};
        memcpy(b, r.data, r.len < 31 ? r.len : 31);
        *n = rc ? -1 : atoll(b);
    }
    pgs_bytes_free(&r);
    return rc;
}

static int64_t value(pgs_runtime *rt, const pgs_ref *ref)
{
    int64_t n = -1;
    CHECK_EQ(call(rt, ref, "get", &n), PGS_OK);
    return n;
}

typedef struct {
    pgs_poison p[8];
    char msg[8][16];
    int n;
} poison_list;

static int collect_poison(void *arg, const pgs_poison *p)
{
    poison_list *l = arg;
    if (l->n < 8) {
        l->p[l->n] = *p;
        memcpy(l->msg[l->n], p->msg, p->msg_len < 15 ? p->msg_len : 15);
        l->msg[l->n][p->msg_len < 15 ? p->msg_len : 15] = 0;
        l->p[l->n].state = NULL; /* only valid in the callback */
    }
    l->n++;
    return 0;
}

static poison_list poisons(pgs_runtime *rt, const pgs_ref *ref)
{
    poison_list l;
    memset(&l, 0, sizeof l);
    CHECK_EQ(pgs_poison_list(rt, ref, collect_poison, &l), PGS_OK);
    return l;
}

static void on_event(void *arg, const pgs_ref *ref, int event)
{
    (void)ref;
    probe *p = arg;
    atomic_fetch_add(&p->events[event], 1);
    int i = atomic_fetch_add(&p->nlog, 1);
    if (i < 64)
        atomic_store(&p->event_log[i], event);
}

static void probe_reset(void)
{
    memset(&the_probe, 0, sizeof the_probe);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------------
** Poison messages.
*/
static void poison_message_is_set_aside(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "p", NULL, &(pgs_server_opts){.poison_after = 3});
    int64_t n;
    CHECK_EQ(call(rt, &ref, "inc", &n), PGS_OK);
    CHECK_EQ(call(rt, &ref, "boom", NULL), PGS_ECRASH);
    CHECK_EQ(atomic_load(&the_probe.booms), 3); /* three tries, each on the stored state */
    poison_list l = poisons(rt, &ref);
    REQUIRE(l.n == 1);
    CHECK(l.p[0].kind == 1 && !strcmp(l.msg[0], "boom") && l.p[0].attempts == 3 &&
          l.p[0].error == PGS_ECRASH && l.p[0].state_version == 2 &&
          pgs_ref_equal(&l.p[0].ref, &ref) && l.p[0].time_ms > 0);
    /* The server goes on with its next message. */
    CHECK_EQ(call(rt, &ref, "inc", &n), PGS_OK);
    CHECK(n == 2);
    /* Retried: it crashes again and is set aside again, under a new id. */
    uint64_t first = l.p[0].id;
    CHECK_EQ(pgs_poison_retry(rt, first, NULL, 5000), PGS_ECRASH);
    CHECK_EQ(atomic_load(&the_probe.booms), 6);
    l = poisons(rt, &ref);
    CHECK(l.n == 1 && l.p[0].id != first);
    CHECK_EQ(pgs_poison_retry(rt, first, NULL, 5000), PGS_ENOTFOUND);
    CHECK_EQ(pgs_poison_drop(rt, l.p[0].id), PGS_OK);
    CHECK_EQ(pgs_poison_drop(rt, l.p[0].id), PGS_ENOTFOUND);
    CHECK(poisons(rt, &ref).n == 0);
    /* A cast is set aside the same way (no one to tell otherwise). */
    CHECK_EQ(pgs_cast(rt, &ref, "boom", 4), PGS_OK);
    CHECK(value(rt, &ref) == 2);
    l = poisons(rt, NULL);
    CHECK(l.n == 1 && l.p[0].kind == 2 && !strcmp(l.msg[0], "boom"));
    pgs_close(rt);
}

static void default_sets_aside_at_once(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "d", NULL, NULL);
    CHECK_EQ(call(rt, &ref, "boom", NULL), PGS_ECRASH);
    CHECK_EQ(atomic_load(&the_probe.booms), 1);
    CHECK(poisons(rt, &ref).n == 1);
    pgs_close(rt);
}

/* A message that crashes once and then works is simply handled. */
static void transient_crash_is_retried(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "t", "10", &(pgs_server_opts){.poison_after = 3});
    int64_t n;
    CHECK_EQ(call(rt, &ref, "flaky", &n), PGS_OK);
    CHECK(n == 11 && atomic_load(&the_probe.flaky_tries) == 2);
    CHECK(poisons(rt, &ref).n == 0);
    pgs_server_info info;
    CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
    CHECK(info.crashes == 1 && info.last_error == PGS_ECRASH && info.last_kind == 1 &&
          info.last_message.len == 5 && !memcmp(info.last_message.data, "flaky", 5));
    pgs_bytes_free(&info.last_message);
    pgs_close(rt);
}

/* ------------------------------------------------------------------------
** Crash loops and the policies.
*/
static void spoil_and_crash(pgs_runtime *rt, const pgs_ref *ref, int crashes)
{
    CHECK_EQ(call(rt, ref, "spoil", NULL), PGS_OK);
    for (int i = 0; i < crashes; i++)
        CHECK_EQ(call(rt, ref, "inc", NULL), PGS_ECRASH);
}

static void park_then_repair(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref;
    REQUIRE_OK(pgs_ref_make(&ref, "fragile", "k", 1));
    REQUIRE_OK(pgs_monitor(rt, &ref, on_event, &the_probe, NULL, NULL));
    start(rt, "k", "5", &(pgs_server_opts){.max_restarts = 2, .fault_policy = PGS_POLICY_PARK});
    spoil_and_crash(rt, &ref, 3); /* the third is one too many */
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_CRASH]) == 3);
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_PARK]) == 1);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_EPARKED);
    CHECK_EQ(call(rt, &ref, "get", NULL), PGS_EPARKED);
    CHECK_EQ(pgs_cast(rt, &ref, "inc", 3), PGS_OK); /* dropped: parked */
    pgs_server_info info;
    CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
    CHECK(info.parked == 1 && info.crashes == 0 && info.last_error == PGS_ECRASH &&
          info.last_message.len == 3 && !memcmp(info.last_message.data, "inc", 3));
    pgs_bytes_free(&info.last_message);
    /* Unparked as it is, it crashes again (the count starts afresh). */
    CHECK_EQ(pgs_unpark(rt, &ref, 5000), PGS_OK);
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_UNPARK]) == 1);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_ECRASH);
    CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
    CHECK(info.parked == 0 && info.crashes == 1);
    pgs_bytes_free(&info.last_message);
    /* Repaired with a good state, it works. */
    fstate good = {.n = 40};
    CHECK_EQ(pgs_repair(rt, &ref, &good, 3, 5000), PGS_ECORRUPT); /* wrong size */
    CHECK_EQ(pgs_repair(rt, &ref, &good, sizeof good, 5000), PGS_OK);
    int64_t n;
    CHECK_EQ(call(rt, &ref, "inc", &n), PGS_OK);
    CHECK(n == 41);
    pgs_close(rt);
}

static void rollback_policy(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "r", NULL,
                        &(pgs_server_opts){.max_restarts = 2, .fault_policy = PGS_POLICY_ROLLBACK});
    REQUIRE_OK(pgs_monitor(rt, &ref, on_event, &the_probe, NULL, NULL));
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK); /* version 3: n = 2 */
    spoil_and_crash(rt, &ref, 3);                  /* version 4 is bad */
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_ROLLBACK]) == 1);
    CHECK(value(rt, &ref) == 2);
    int64_t n;
    CHECK_EQ(call(rt, &ref, "inc", &n), PGS_OK);
    CHECK(n == 3);
    pgs_server_info info;
    CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
    CHECK(info.parked == 0 && info.version == 6 && info.crashes == 0);
    pgs_bytes_free(&info.last_message);
    pgs_close(rt);
}

/* Rollback with no history to go back to parks instead. */
static void rollback_without_history_parks(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "rh", NULL,
                        &(pgs_server_opts){.max_restarts = 1, .history = PGS_HISTORY_NONE,
                                           .fault_policy = PGS_POLICY_ROLLBACK});
    spoil_and_crash(rt, &ref, 2);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_EPARKED);
    pgs_close(rt);
}

static void reset_policy(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "s", "7",
                        &(pgs_server_opts){.max_restarts = 2, .fault_policy = PGS_POLICY_RESET});
    REQUIRE_OK(pgs_monitor(rt, &ref, on_event, &the_probe, NULL, NULL));
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    spoil_and_crash(rt, &ref, 3);
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_RESET]) == 1);
    int64_t v7 = value(rt, &ref);
    if (v7 != 7) fprintf(stderr, "reset value %lld\n", (long long)v7);
    CHECK(v7 == 7);
    pgs_close(rt);
}

/* The operator rolls back to a chosen kept version. */
static void operator_rollback(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "o", NULL, &(pgs_server_opts){.history = 5});
    for (int i = 0; i < 4; i++)
        CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK); /* version 5: n = 4 */
    CHECK_EQ(pgs_rollback(rt, &ref, 2, 5000), PGS_OK); /* version 2: n = 1 */
    CHECK(value(rt, &ref) == 1);
    CHECK_EQ(pgs_rollback(rt, &ref, 99, 5000), PGS_ENOTFOUND);
    CHECK(value(rt, &ref) == 1);
    pgs_ref none;
    REQUIRE_OK(pgs_ref_make(&none, "fragile", "none", 4));
    CHECK_EQ(pgs_rollback(rt, &none, 1, 5000), PGS_ENOTFOUND);
    CHECK_EQ(pgs_unpark(rt, &none, 5000), PGS_ENOTFOUND);
    pgs_close(rt);
}

/* Runs fn in a child process (a process restart between steps: nothing
** but the store carries over); fails if the child does. */
static void in_child(void (*fn)(const char *url, int policy), const char *url, int policy)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        fn(url, policy);
        _exit(check_failures_ ? 1 : 0);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "policy %d: child status %#x\n", policy, st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Process 1: a good state (n = 8, version 2), then a spoiled one (version
** 3), then two crashes: one short of the loop. */
static void loop_first(const char *url, int policy)
{
    pgs_runtime *rt = open_rt(url);
    pgs_ref ref = start(rt, "loop", "7",
                        &(pgs_server_opts){.max_restarts = 2, .fault_policy = (uint8_t)policy});
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    spoil_and_crash(rt, &ref, 2);
    pgs_server_info info;
    CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
    CHECK(info.crashes == 2 && info.version == 3 && !info.parked);
    pgs_bytes_free(&info.last_message);
    pgs_close(rt);
}

/* Process 2: one more crash, counted on top of the stored two: the
** policy acts. */
static void loop_second(const char *url, int policy)
{
    (void)policy;
    pgs_runtime *rt = open_rt(url);
    pgs_ref ref;
    REQUIRE_OK(pgs_ref_make(&ref, "fragile", "loop", 4));
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_ECRASH);
    pgs_close(rt);
}

/* A crash loop spread over three processes, for each policy: the count
** lives in storage, so the third crash acts whichever process makes it.
** Only the public API is used: a black box. */
static void policies_across_restarts(void)
{
    static const int policies[] = {PGS_POLICY_ROLLBACK, PGS_POLICY_RESET, PGS_POLICY_PARK};
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++) {
        char dir[] = "/tmp/pgs-faults-XXXXXX", url[128], cmd[160];
        REQUIRE(mkdtemp(dir));
        snprintf(url, sizeof url, "sqlite:%s/f.db", dir);
        in_child(loop_first, url, policies[i]);
        in_child(loop_second, url, policies[i]);
        pgs_runtime *rt = open_rt(url);
        pgs_ref ref;
        REQUIRE_OK(pgs_ref_make(&ref, "fragile", "loop", 4));
        int64_t n = -1;
        if (policies[i] == PGS_POLICY_PARK) {
            CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_EPARKED);
            CHECK_EQ(pgs_rollback(rt, &ref, 2, 5000), PGS_ENOTFOUND); /* no history kept */
            fstate good = {.n = 8};
            CHECK_EQ(pgs_repair(rt, &ref, &good, sizeof good, 5000), PGS_OK);
        }
        CHECK_EQ(call(rt, &ref, "inc", &n), PGS_OK);
        /* rollback: back to version 2 (n = 8); reset: init again (n = 7);
        ** park: repaired to n = 8. */
        CHECK(n == (policies[i] == PGS_POLICY_RESET ? 8 : 9));
        pgs_server_info info;
        CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
        CHECK(info.crashes == 0 && !info.parked && info.last_error == PGS_ECRASH);
        pgs_bytes_free(&info.last_message);
        pgs_close(rt);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
    }
}

/* ------------------------------------------------------------------------
** Backoff.
*/
static void restarts_back_off(void)
{
    probe_reset();
    pgs_options o;
    pgs_options_init(&o);
    o.user = &the_probe;
    o.backoff_max_ms = 5000;
    pgs_runtime *rt;
    REQUIRE_OK(pgs_open(&rt, "memory:", &o));
    REQUIRE_OK(pgs_register(rt, &fragile));
    pgs_ref ref = start(rt, "b", NULL, &(pgs_server_opts){.max_restarts = 100});
    CHECK_EQ(call(rt, &ref, "spoil", NULL), PGS_OK);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_ECRASH); /* crash 1: 10 ms (+-25%) */
    double t0 = now_ms();
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_ECRASH); /* waited, then crash 2: 20 ms */
    double t1 = now_ms();
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_ECRASH);
    double t2 = now_ms();
    CHECK(t1 - t0 >= 7.0);
    CHECK(t2 - t1 >= 15.0);
    /* Casts: workers do not wait; the timer brings the server back.  Five
    ** more crashes wait 40 + 80 + 160 + 320 + 640 ms (-25%) at least. */
    double t3 = now_ms();
    for (int i = 0; i < 5; i++)
        CHECK_EQ(pgs_cast(rt, &ref, "inc", 3), PGS_OK);
    CHECK(value(rt, &ref) == 0); /* behind the five casts */
    CHECK(now_ms() - t3 >= 0.75 * (40 + 80 + 160 + 320 + 640));
    CHECK(poisons(rt, &ref).n == 8);
    pgs_close(rt);
}

/* ------------------------------------------------------------------------
** Monitors.
*/
static int log_has(int from, const int *want, int n)
{
    int have = atomic_load(&the_probe.nlog);
    if (have - from != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (atomic_load(&the_probe.event_log[from + i]) != want[i])
            return 0;
    return 1;
}

static void monitor_lifecycle(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref;
    REQUIRE_OK(pgs_ref_make(&ref, "fragile", "m", 1));
    uint64_t id;
    REQUIRE_OK(pgs_monitor(rt, &ref, on_event, &the_probe, NULL, &id)); /* not started yet */
    start(rt, "m", NULL, &(pgs_server_opts){.idle_timeout_ms = 20});
    CHECK(log_has(0, (int[]){PGS_EVENT_ACTIVATE}, 1));
    /* The event follows the unload: wait for it, not for pgs_is_active. */
    for (int i = 0; i < 400 && !atomic_load(&the_probe.events[PGS_EVENT_PASSIVATE]); i++)
        usleep(5000);
    CHECK(log_has(0, (int[]){PGS_EVENT_ACTIVATE, PGS_EVENT_PASSIVATE}, 2));
    CHECK_EQ(call(rt, &ref, "boom", NULL), PGS_ECRASH); /* activates, crashes */
    CHECK(log_has(2, (int[]){PGS_EVENT_ACTIVATE, PGS_EVENT_CRASH, PGS_EVENT_POISON}, 3));
    CHECK_EQ(pgs_stop(rt, &ref, 5000), PGS_OK);
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_STOP]) == 1);
    start(rt, "m", NULL, NULL);
    CHECK_EQ(pgs_delete(rt, &ref, 5000), PGS_OK);
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_DELETE]) == 1);
    int before = atomic_load(&the_probe.nlog);
    start(rt, "m", NULL, NULL); /* the monitor went with the delete */
    CHECK(atomic_load(&the_probe.nlog) == before);
    CHECK_EQ(pgs_demonitor(rt, id), PGS_ENOTFOUND);
    /* demonitor stops the events. */
    REQUIRE_OK(pgs_monitor(rt, &ref, on_event, &the_probe, NULL, &id));
    CHECK_EQ(pgs_demonitor(rt, id), PGS_OK);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    CHECK_EQ(pgs_stop(rt, &ref, 5000), PGS_OK);
    CHECK(atomic_load(&the_probe.nlog) == before);
    pgs_close(rt);
}

/* A temporary server that crashes is gone, and its monitors are told. */
static void temporary_crash_deletes(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "tmp", NULL, &(pgs_server_opts){.lifecycle = PGS_TEMPORARY});
    REQUIRE_OK(pgs_monitor(rt, &ref, on_event, &the_probe, NULL, NULL));
    CHECK_EQ(call(rt, &ref, "boom", NULL), PGS_ECRASH);
    CHECK(atomic_load(&the_probe.events[PGS_EVENT_DELETE]) == 1);
    CHECK_EQ(call(rt, &ref, "get", NULL), PGS_ENOTFOUND);
    pgs_close(rt);
}

/* Monitor events as info messages to a watching server. */
typedef struct wstate {
    int64_t events[16];
    uint64_t last_tag;
} wstate;

static int w_init(pgs_ctx *c, void *s, const void *a, size_t l)
{
    (void)c, (void)s, (void)a, (void)l;
    return PGS_PERSIST;
}

static int w_info(pgs_ctx *ctx, void *state, const pgs_info *info)
{
    (void)ctx;
    wstate *w = state;
    if (info->kind != PGS_INFO_MONITOR || info->status < 1 || info->status > 15 ||
        info->len != 9 || memcmp(info->data, "fragile/w", 9) != 0)
        return PGS_CRASH;
    w->events[info->status]++;
    w->last_tag = info->tag;
    return PGS_PERSIST;
}

static int w_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    (void)len;
    wstate *w = state;
    return reply_n(ctx, w->events[*(const unsigned char *)msg]), PGS_UNCHANGED;
}

static const pgs_behaviour watcher = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "watcher", .state_size = sizeof(wstate),
    .init = w_init, .handle_call = w_call, .handle_info = w_info,
};

static int64_t watched(pgs_runtime *rt, const pgs_ref *w, unsigned char event)
{
    pgs_bytes r;
    int64_t n = -1;
    if (pgs_call(rt, w, &event, 1, &r, 5000) == PGS_OK) {
        char b[32] = {0};
        memcpy(b, r.data, r.len < 31 ? r.len : 31);
        n = atoll(b);
    }
    pgs_bytes_free(&r);
    return n;
}

static void monitor_by_info(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    REQUIRE_OK(pgs_register(rt, &watcher));
    pgs_ref w, ref;
    REQUIRE_OK(pgs_start(rt, "watcher", "w1", 2, NULL, 0, NULL, &w));
    REQUIRE_OK(pgs_ref_make(&ref, "fragile", "w", 1));
    REQUIRE_OK(pgs_monitor(rt, &ref, NULL, NULL, &w, NULL));
    start(rt, "w", NULL, &(pgs_server_opts){.max_restarts = 1, .fault_policy = PGS_POLICY_PARK});
    spoil_and_crash(rt, &ref, 2);
    for (int i = 0; i < 200 && watched(rt, &w, PGS_EVENT_PARK) < 1; i++)
        usleep(5000);
    CHECK(watched(rt, &w, PGS_EVENT_ACTIVATE) >= 1);
    CHECK(watched(rt, &w, PGS_EVENT_CRASH) == 2);
    CHECK(watched(rt, &w, PGS_EVENT_PARK) == 1);
    pgs_close(rt);
}

/* ------------------------------------------------------------------------
** Reconfiguration and migration.
*/
/* A timeout shortened while the longer one is armed applies from the
** server's last message, even one after the reconfiguration. */
static void shorter_idle_timeout_applies_after_later_calls(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "s", "1", &(pgs_server_opts){.idle_timeout_ms = 60000});
    CHECK_EQ(pgs_reconfigure(rt, &ref, &(pgs_server_opts){.idle_timeout_ms = 25}, 5000),
             PGS_OK);
    usleep(10000);
    CHECK(value(rt, &ref) == 1); /* active again, 10 ms later */
    for (int i = 0; i < 200 && pgs_is_active(rt, &ref) == 1; i++)
        usleep(5000);
    CHECK(pgs_is_active(rt, &ref) == 0);
    pgs_close(rt);
}

static void reconfigure_lasts(void)
{
    probe_reset();
    char dir[] = "/tmp/pgs-faults-XXXXXX", url[128];
    REQUIRE(mkdtemp(dir));
    snprintf(url, sizeof url, "sqlite:%s/r.db", dir);
    pgs_runtime *rt = open_rt(url);
    pgs_ref ref = start(rt, "c", "3", &(pgs_server_opts){.idle_timeout_ms = 60000});
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    pgs_server_opts o = {.idle_timeout_ms = 25, .write_mode = PGS_WRITE_ASYNC,
                         .fault_policy = PGS_POLICY_RESET, .history = 4};
    CHECK_EQ(pgs_reconfigure(rt, &ref, &o, 5000), PGS_OK);
    CHECK(value(rt, &ref) == 4); /* the state stays */
    for (int i = 0; i < 200 && pgs_is_active(rt, &ref) == 1; i++)
        usleep(5000); /* the new idle timeout applies at once */
    CHECK(pgs_is_active(rt, &ref) == 0);
    pgs_server_opts bad = {.fault_policy = 99};
    CHECK_EQ(pgs_reconfigure(rt, &ref, &bad, 5000), PGS_EINVAL);
    pgs_ref none;
    REQUIRE_OK(pgs_ref_make(&none, "fragile", "none", 4));
    CHECK_EQ(pgs_reconfigure(rt, &none, &o, 5000), PGS_ENOTFOUND);
    pgs_close(rt);
    rt = open_rt(url);
    pgs_server_info info;
    CHECK_EQ(pgs_server_info_get(rt, &ref, &info), PGS_OK);
    CHECK(info.opts.idle_timeout_ms == 25 && info.opts.write_mode == PGS_WRITE_ASYNC &&
          info.opts.fault_policy == PGS_POLICY_RESET && info.opts.history == 4);
    pgs_bytes_free(&info.last_message);
    CHECK(value(rt, &ref) == 4);
    pgs_close(rt);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Schema 1 stored {int32 n}; schema 2 is {int64 n, int64 bad}: decode
** migrates what it is given, by the stored version. */
static int v1_encode(const void *state, pgs_buf *out)
{
    int32_t n = (int32_t)((const fstate *)state)->n;
    return pgs_buf_append(out, &n, sizeof n);
}

static int v1_decode(void *state, const void *data, size_t len, uint32_t schema)
{
    if (schema != 1 || len != 4)
        return 1;
    int32_t n;
    memcpy(&n, data, 4);
    ((fstate *)state)->n = n;
    return 0;
}

static int v2_decode(void *state, const void *data, size_t len, uint32_t schema)
{
    if (schema == 1)
        return v1_decode(state, data, len, schema);
    if (schema != 2 || len != sizeof(fstate))
        return 1;
    memcpy(state, data, len);
    return 0;
}

static int v2_encode(const void *state, pgs_buf *out)
{
    return pgs_buf_append(out, state, sizeof(fstate));
}

static void state_migrates(void)
{
    probe_reset();
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    pgs_options o;
    pgs_options_init(&o);
    o.storage = st;
    o.user = &the_probe;
    pgs_behaviour b = fragile;
    b.schema_version = 1;
    b.encode = v1_encode;
    b.decode = v1_decode;
    pgs_runtime *rt;
    REQUIRE_OK(pgs_open(&rt, NULL, &o));
    REQUIRE_OK(pgs_register(rt, &b));
    pgs_ref ref = start(rt, "mig", "41", NULL);
    pgs_close(rt);
    b.schema_version = 2; /* the next release */
    b.encode = v2_encode;
    b.decode = v2_decode;
    REQUIRE_OK(pgs_open(&rt, NULL, &o));
    REQUIRE_OK(pgs_register(rt, &b));
    int64_t n;
    CHECK_EQ(call(rt, &ref, "inc", &n), PGS_OK);
    CHECK(n == 42);
    pgs_close(rt);
    pgs_record *rec;
    REQUIRE_OK(pgs_storage_get(st, &ref, &rec));
    CHECK(rec->schema_version == 2 && rec->state_len == sizeof(fstate));
    free(rec);
    /* Back to the old code: the newer state is refused, not decoded. */
    b.schema_version = 1;
    b.decode = v1_decode;
    REQUIRE_OK(pgs_open(&rt, NULL, &o));
    REQUIRE_OK(pgs_register(rt, &b));
    CHECK_EQ(call(rt, &ref, "get", NULL), PGS_ESCHEMA);
    pgs_close(rt);
    pgs_storage_close(st);
}

/* With history_messages, each stored version carries the message whose
** turn made it: history reads message -> state. */
typedef struct {
    int n;
    char cause[8][16];
    int64_t value[8];
} cause_list;

static int collect_cause(void *arg, const pgs_record *rec)
{
    cause_list *l = arg;
    int kind;
    const void *msg;
    size_t len;
    if (l->n >= 8)
        return 0;
    l->cause[l->n][0] = 0;
    if (pgs_record_cause(rec, &kind, &msg, &len) == PGS_OK && len < 15) {
        memcpy(l->cause[l->n], msg, len);
        l->cause[l->n][len] = 0;
    }
    fstate st = {0};
    if (rec->state_len == sizeof st)
        memcpy(&st, rec->state, sizeof st);
    l->value[l->n++] = st.n;
    return 0;
}

static void history_keeps_messages(void)
{
    probe_reset();
    pgs_runtime *rt = open_rt("memory:");
    pgs_ref ref = start(rt, "h", "1", &(pgs_server_opts){.history = 4, .history_messages = 1,
                                                         .poison_after = 2});
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    CHECK_EQ(pgs_cast(rt, &ref, "flaky", 5), PGS_OK); /* crashes once, then counts */
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    pgs_record *cur;
    REQUIRE_OK(pgs_storage_get(pgs_runtime_storage(rt), &ref, &cur));
    int kind;
    const void *msg;
    size_t len;
    CHECK_EQ(pgs_record_cause(cur, &kind, &msg, &len), PGS_OK);
    CHECK(kind == 1 && len == 3 && !memcmp(msg, "inc", 3) && cur->version == 4);
    free(cur);
    cause_list l = {0};
    CHECK_EQ(pgs_storage_history(pgs_runtime_storage(rt), &ref, collect_cause, &l), PGS_OK);
    CHECK(l.n == 3 && !strcmp(l.cause[0], "flaky") && l.value[0] == 3 &&
          !strcmp(l.cause[1], "inc") && l.value[1] == 2 &&
          !strcmp(l.cause[2], "") && l.value[2] == 1); /* the start has no message */
    /* Turned off: versions carry none. */
    CHECK_EQ(pgs_reconfigure(rt, &ref, &(pgs_server_opts){.history_messages = 2}, 5000),
             PGS_OK);
    CHECK_EQ(call(rt, &ref, "inc", NULL), PGS_OK);
    REQUIRE_OK(pgs_storage_get(pgs_runtime_storage(rt), &ref, &cur));
    CHECK_EQ(pgs_record_cause(cur, &kind, &msg, &len), PGS_ENOTFOUND);
    free(cur);
    pgs_close(rt);
}

static void reserved_names(void)
{
    pgs_runtime *rt = open_rt("memory:");
    pgs_behaviour b = fragile;
    b.name = "pgs.mine";
    CHECK_EQ(pgs_register(rt, &b), PGS_EREF);
    b.name = "x";
    b.defaults.fault_policy = 9;
    CHECK_EQ(pgs_register(rt, &b), PGS_EINVAL);
    CHECK_EQ(pgs_start(rt, "fragile", "x", 1, NULL, 0,
                       &(pgs_server_opts){.poison_after = 200}, NULL), PGS_EINVAL);
    pgs_close(rt);
}

int main(void)
{
    RUN(poison_message_is_set_aside);
    RUN(default_sets_aside_at_once);
    RUN(transient_crash_is_retried);
    RUN(park_then_repair);
    RUN(rollback_policy);
    RUN(rollback_without_history_parks);
    RUN(reset_policy);
    RUN(operator_rollback);
    RUN(policies_across_restarts);
    RUN(restarts_back_off);
    RUN(monitor_lifecycle);
    RUN(temporary_crash_deletes);
    RUN(monitor_by_info);
    RUN(reconfigure_lasts);
    RUN(shorter_idle_timeout_applies_after_later_calls);
    RUN(state_migrates);
    RUN(history_keeps_messages);
    RUN(reserved_names);
    return CHECK_DONE();
}
