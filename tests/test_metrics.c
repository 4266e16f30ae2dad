/*
** test_metrics.c — the runtime's figures (pgs_metrics_get) against
** workloads whose every count is known; the Prometheus text, parsed back;
** and the on_event hook, which must see every lifecycle event.
**
** Group-commit figures need an engine behind the pipeline: these cases
** run on SQLite files in a fresh temporary directory (synchronous=off:
** durability is not what is measured here).
*/
#include "tcounter.h"

#include <pthread.h>

static const pgs_behaviour counter_b = TC_BEHAVIOUR("counter");
static char dir[64];

/* The event log the hook fills.  It is also the runtime's user pointer,
** which tcounter's callbacks take for a probe: one comes first. */
typedef struct events {
    probe p;
    pthread_mutex_t lock;
    int n;
    int kinds[256];
    char keys[256][8];
} events;

static void record_event(void *user, const pgs_ref *ref, int event)
{
    events *e = user;
    pthread_mutex_lock(&e->lock);
    if (e->n < 256) {
        e->kinds[e->n] = event;
        snprintf(e->keys[e->n], sizeof e->keys[0], "%.*s", (int)ref->key_len,
                 (const char *)ref->key);
        e->n++;
    }
    pthread_mutex_unlock(&e->lock);
}

/* How many events of `kind` the log holds for `key` (NULL: any). */
static int count_events(events *e, int kind, const char *key)
{
    int n = 0;
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->n; i++)
        n += e->kinds[i] == kind && (!key || !strcmp(e->keys[i], key));
    pthread_mutex_unlock(&e->lock);
    return n;
}

/* A runtime on sqlite:DIR/NAME.db with the hook writing to `e` (may be NULL). */
static pgs_runtime *open_db(const char *name, events *e)
{
    char url[160];
    snprintf(url, sizeof url, "sqlite:%s/%s.db?synchronous=off", dir, name);
    pgs_options o;
    pgs_options_init(&o);
    o.workers = 2;
    if (e) {
        o.user = e;
        o.on_event = record_event;
    }
    pgs_runtime *rt = NULL;
    REQUIRE_OK(pgs_open(&rt, url, &o));
    REQUIRE_OK(pgs_register(rt, &counter_b));
    return rt;
}

static pgs_ref start(pgs_runtime *rt, const char *key, const pgs_server_opts *o)
{
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "counter", key, strlen(key), NULL, 0, o, &ref));
    return ref;
}

static pgs_metrics metrics(pgs_runtime *rt)
{
    pgs_metrics m;
    REQUIRE_OK(pgs_metrics_get(rt, &m));
    return m;
}

/* Every write of the pipeline is in both histograms, every commit in one. */
static void check_histograms(const pgs_metrics *m)
{
    CHECK_EQ(m->batch.count, m->commits);
    CHECK_EQ(m->batch.sum, m->writes);
    CHECK_EQ(m->write_latency.count, m->writes);
    CHECK(m->batch.max >= 1 && m->batch.max <= m->writes);
    CHECK(m->write_latency.max * m->write_latency.count >= m->write_latency.sum);
    uint64_t n = 0;
    for (int i = 0; i < PGS_HIST_BUCKETS; i++)
        n += m->write_latency.buckets[i];
    CHECK_EQ(n, m->writes);
}

/* ------------------------------------------------------------------------
** Figures.
*/
static void figures_follow_a_known_workload(void)
{
    pgs_runtime *rt = open_db("known", NULL);
    pgs_server_opts never = {.idle_timeout_ms = PGS_IDLE_NEVER};
    pgs_ref refs[10];
    char key[8];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        refs[i] = start(rt, key, &never);
    }
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 10; i++)
            CHECK_EQ(tc_value(rt, &refs[i], "add 1"), round + 1);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(tc_value(rt, &refs[i], "get"), 5);
    pgs_metrics m = metrics(rt);
    CHECK_EQ(m.active, 10);
    CHECK_EQ(m.stored, 10);
    CHECK_EQ(m.passivated, 0);
    CHECK_EQ(m.activations, 10); /* ten inits */
    CHECK_EQ(m.reactivations, 0);
    CHECK_EQ(m.messages, 10 + 50 + 10); /* starts, adds, gets */
    CHECK_EQ(m.writes, 10 + 50);        /* a get writes nothing */
    CHECK(m.commits >= 1 && m.commits <= m.writes);
    CHECK_EQ(m.crashes + m.parked + m.poison + m.passivations, 0);
    CHECK_EQ(m.queued, 0);
    check_histograms(&m);

    /* A crash: the state is dropped, then loaded again by the next call. */
    CHECK_EQ(tc_value(rt, &refs[0], "crash 7"), -1000000 + PGS_ECRASH);
    CHECK_EQ(tc_value(rt, &refs[0], "get"), 5);
    m = metrics(rt);
    CHECK_EQ(m.crashes, 1);
    CHECK_EQ(m.reactivations, 1);
    CHECK_EQ(m.poison, 1); /* poison_after inherits 1: set aside at once */
    CHECK_EQ(m.active, 10);

    /* A stop deletes the record. */
    CHECK_EQ(pgs_stop(rt, &refs[9], 5000), PGS_OK);
    m = metrics(rt);
    CHECK_EQ(m.stored, 9);
    CHECK_EQ(m.active, 9);
    pgs_close(rt);

    /* A new runtime counts the records it finds, and each one it wakes. */
    rt = open_db("known", NULL);
    m = metrics(rt);
    CHECK_EQ(m.stored, 9);
    CHECK_EQ(m.active, 0);
    CHECK_EQ(m.passivated, 9);
    CHECK_EQ(m.messages + m.writes + m.activations, 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(tc_value(rt, &refs[i], "get"), 5);
    m = metrics(rt);
    CHECK_EQ(m.reactivations, 3);
    CHECK_EQ(m.activations, 3);
    CHECK_EQ(m.active, 3);
    CHECK_EQ(m.passivated, 6);
    CHECK_EQ(m.messages, 3);
    CHECK_EQ(m.writes, 0);
    pgs_stats s;
    REQUIRE_OK(pgs_stats_get(rt, &s));
    CHECK(s.active == m.active && s.activations == m.activations && s.messages == m.messages);
    pgs_close(rt);
}

static void idle_servers_count_as_passivated(void)
{
    pgs_runtime *rt = open_db("idle", NULL);
    pgs_server_opts quick = {.idle_timeout_ms = 20};
    for (int i = 0; i < 20; i++) {
        char key[8];
        snprintf(key, sizeof key, "i%d", i);
        start(rt, key, &quick);
    }
    pgs_metrics m = metrics(rt);
    for (int i = 0; i < 5000 && m.passivations < 20; i++) {
        usleep(1000);
        m = metrics(rt);
    }
    CHECK_EQ(m.passivations, 20);
    CHECK_EQ(m.active, 0);
    CHECK_EQ(m.passivated, 20);
    CHECK_EQ(m.stored, 20);
    pgs_ref ref = tc_ref("counter/i3");
    CHECK_EQ(tc_value(rt, &ref, "add 2"), 2);
    m = metrics(rt);
    CHECK_EQ(m.reactivations, 1);
    CHECK(m.active <= 1 && m.passivated >= 19);
    pgs_close(rt);
}

/* Casts queue behind a server busy sleeping: the depth is seen, then drains. */
static void mailbox_depth_is_seen(void)
{
    pgs_runtime *rt = open_db("mailbox", NULL);
    pgs_ref ref = start(rt, "m", NULL);
    REQUIRE_OK(pgs_cast(rt, &ref, "sleep 300", 9));
    for (int i = 0; i < 5000 && metrics(rt).queued; i++) /* a worker took it */
        usleep(1000);
    for (int i = 0; i < 50; i++)
        REQUIRE_OK(pgs_cast(rt, &ref, "add 1", 5));
    pgs_metrics m = metrics(rt);
    CHECK(m.queued >= 45 && m.queued <= 50);
    CHECK(m.queued_max >= m.queued);
    CHECK_EQ(tc_value(rt, &ref, "get"), 50); /* queued behind the casts */
    m = metrics(rt);
    CHECK_EQ(m.queued, 0);
    CHECK(m.queued_max >= 50 && m.queued_max <= 51);
    pgs_close(rt);
}

static void parkings_and_poison_are_counted(void)
{
    events e = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pgs_runtime *rt = open_db("park", &e);
    pgs_ref ref = start(rt, "p", &(pgs_server_opts){.max_restarts = 1,
                                                     .fault_policy = PGS_POLICY_PARK});
    CHECK_EQ(tc_value(rt, &ref, "crash 1"), -1000000 + PGS_ECRASH);
    CHECK_EQ(tc_value(rt, &ref, "crash 1"), -1000000 + PGS_ECRASH); /* one too many */
    CHECK_EQ(tc_value(rt, &ref, "get"), -1000000 + PGS_EPARKED);
    pgs_metrics m = metrics(rt);
    CHECK_EQ(m.crashes, 2);
    CHECK_EQ(m.poison, 2);
    CHECK_EQ(m.parked, 1);
    CHECK_EQ(count_events(&e, PGS_EVENT_CRASH, "p"), 2);
    CHECK_EQ(count_events(&e, PGS_EVENT_POISON, "p"), 2);
    CHECK_EQ(count_events(&e, PGS_EVENT_PARK, "p"), 1);
    CHECK_EQ(pgs_unpark(rt, &ref, 5000), PGS_OK);
    CHECK_EQ(count_events(&e, PGS_EVENT_UNPARK, "p"), 1);
    pgs_close(rt);
}

/* ------------------------------------------------------------------------
** The hook.
*/
static void the_hook_sees_every_event(void)
{
    events e = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pgs_runtime *rt = open_db("hook", &e);
    pgs_ref a = start(rt, "a", &(pgs_server_opts){.idle_timeout_ms = 20});
    pgs_ref b = start(rt, "b", NULL);
    start(rt, "c", NULL);
    CHECK_EQ(count_events(&e, PGS_EVENT_ACTIVATE, NULL), 3);
    for (int i = 0; i < 5000 && !count_events(&e, PGS_EVENT_PASSIVATE, "a"); i++)
        usleep(1000);
    CHECK_EQ(count_events(&e, PGS_EVENT_PASSIVATE, "a"), 1);
    CHECK_EQ(tc_value(rt, &a, "add 1"), 1); /* wakes it */
    CHECK_EQ(count_events(&e, PGS_EVENT_ACTIVATE, "a"), 2);
    CHECK_EQ(pgs_stop(rt, &b, 5000), PGS_OK);
    CHECK_EQ(count_events(&e, PGS_EVENT_STOP, "b"), 1);
    pgs_ref c = tc_ref("counter/c");
    CHECK_EQ(pgs_delete(rt, &c, 5000), PGS_OK);
    CHECK_EQ(count_events(&e, PGS_EVENT_DELETE, "c"), 1);
    int before = count_events(&e, PGS_EVENT_PASSIVATE, "a");
    pgs_close(rt); /* a passivates at close if it has not already */
    CHECK(count_events(&e, PGS_EVENT_PASSIVATE, "a") >= before);
    CHECK_EQ(count_events(&e, PGS_EVENT_PASSIVATE, "a"),
             count_events(&e, PGS_EVENT_ACTIVATE, "a"));
    CHECK_EQ(count_events(&e, PGS_EVENT_PASSIVATE, "b"), 0);
}

/* A version 1 pgs_options, which ends before on_event, is still taken. */
static void version_1_options_are_accepted(void)
{
    pgs_options o;
    pgs_options_init(&o);
    CHECK_EQ(o.version, 2);
    o.version = 1;
    o.on_event = (void (*)(void *, const pgs_ref *, int))1; /* must not be read */
    pgs_runtime *rt = NULL;
    REQUIRE_OK(pgs_open(&rt, "memory:", &o));
    REQUIRE_OK(pgs_register(rt, &counter_b));
    start(rt, "v1", NULL);
    pgs_close(rt);
}

/* ------------------------------------------------------------------------
** Prometheus text.
*/

/* The value of the line starting with `series ` in text, or -1. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void prometheus_text_parses_back(void)
{
    pgs_metrics m = {.active = 3, .passivated = 97, .stored = 100, .messages = 12345,
                     .writes = 600, .commits = 40, .queued_max = 7};
    m.batch = (pgs_histogram){.count = 40, .sum = 600, .max = 30};
    m.batch.buckets[0] = 10;  /* 1 write */
    m.batch.buckets[5] = 30;  /* 17..32 writes */
    m.write_latency = (pgs_histogram){.count = 3, .sum = 1500, .max = 1000};
    m.write_latency.buckets[0] = 1;  /* <= 1 µs */
    m.write_latency.buckets[10] = 2; /* (512, 1024] µs */
    char buf[PGS_METRICS_TEXT_MAX];
    size_t len = 0;
    REQUIRE_OK(pgs_metrics_prometheus(&m, buf, sizeof buf, &len));
    CHECK_EQ(len, strlen(buf));
    CHECK(strstr(buf, "# TYPE pgs_messages_total counter\n") != NULL);
    CHECK(strstr(buf, "# HELP pgs_servers_active ") != NULL);
    CHECK(strstr(buf, "# TYPE pgs_servers_passivated gauge\n") != NULL);
    CHECK(strstr(buf, "# TYPE pgs_write_latency_seconds histogram\n") != NULL);
    CHECK(value_of(buf, "pgs_messages_total") == 12345);
    CHECK(value_of(buf, "pgs_servers_passivated") == 97);
    CHECK(value_of(buf, "pgs_mailbox_max_messages") == 7);
    CHECK(value_of(buf, "pgs_commit_batch_writes_bucket{le=\"1\"}") == 10);
    CHECK(value_of(buf, "pgs_commit_batch_writes_bucket{le=\"16\"}") == 10);
    CHECK(value_of(buf, "pgs_commit_batch_writes_bucket{le=\"32\"}") == 40);
    CHECK(value_of(buf, "pgs_commit_batch_writes_bucket{le=\"1024\"}") == 40);
    CHECK(value_of(buf, "pgs_commit_batch_writes_bucket{le=\"+Inf\"}") == 40);
    CHECK(value_of(buf, "pgs_commit_batch_writes_sum") == 600);
    CHECK(value_of(buf, "pgs_write_latency_seconds_bucket{le=\"1e-06\"}") == 1);
    CHECK(value_of(buf, "pgs_write_latency_seconds_bucket{le=\"0.000512\"}") == 1);
    CHECK(value_of(buf, "pgs_write_latency_seconds_bucket{le=\"0.001024\"}") == 3);
    CHECK(value_of(buf, "pgs_write_latency_seconds_count") == 3);
    CHECK(value_of(buf, "pgs_write_latency_seconds_sum") == 0.0015);
    CHECK(value_of(buf, "pgs_write_latency_max_seconds") == 0.001);
    /* Every line is a comment or "name[{labels}] value". */
    int samples = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        CHECK(sp && !strncmp(line, "pgs_", 4) && sp[1]);
        samples++;
    }
    CHECK(samples > 40);
}

static void prometheus_text_is_bounded(void)
{
    pgs_metrics m;
    memset(&m, 0xff, sizeof m); /* the longest numbers there are */
    size_t len = 0;
    CHECK_EQ(pgs_metrics_prometheus(&m, NULL, 0, &len), PGS_ETOOBIG); /* measures */
    CHECK(len > 0 && len < PGS_METRICS_TEXT_MAX);
    char small[64];
    size_t got = 0;
    CHECK_EQ(pgs_metrics_prometheus(&m, small, sizeof small, &got), PGS_ETOOBIG);
    CHECK_EQ(got, len);
    CHECK_EQ(strlen(small), sizeof small - 1); /* a NUL-terminated prefix */
    CHECK_EQ(pgs_metrics_prometheus(NULL, small, sizeof small, &got), PGS_EINVAL);
    CHECK_EQ(pgs_metrics_prometheus(&m, NULL, 10, &got), PGS_EINVAL);
    CHECK_EQ(pgs_metrics_get(NULL, &m), PGS_EINVAL);
}

/* An engine written inside the turn: one write per commit, no histograms. */
static void inline_engine_counts_writes_without_histograms(void)
{
    pgs_runtime *rt = tc_open(NULL, NULL, 0, 2);
    REQUIRE_OK(pgs_register(rt, &counter_b));
    pgs_ref ref = start(rt, "x", NULL);
    CHECK_EQ(tc_value(rt, &ref, "add 1"), 1);
    CHECK_EQ(pgs_delete(rt, &ref, 5000), PGS_OK);
    pgs_metrics m = metrics(rt);
    CHECK_EQ(m.writes, 3);
    CHECK_EQ(m.commits, 3);
    CHECK_EQ(m.stored, 0);
    CHECK_EQ(m.batch.count + m.write_latency.count, 0);
    pgs_close(rt);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pgs-metrics-XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
    RUN(figures_follow_a_known_workload);
    RUN(idle_servers_count_as_passivated);
    RUN(mailbox_depth_is_seen);
    RUN(parkings_and_poison_are_counted);
    RUN(the_hook_sees_every_event);
    RUN(version_1_options_are_accepted);
    RUN(prometheus_text_parses_back);
    RUN(prometheus_text_is_bounded);
    RUN(inline_engine_counts_writes_without_histograms);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_DONE();
}
