/*
** test_storage_postgres.c — the postgresql:// adapter against the
** conformance suite on a real server, plus what only this engine has:
** schema versions (a schema 1 database upgraded, a newer one refused,
** first opens racing), bad URLs and unreachable servers refused fast, two
** handles (as two processes) writing one ref, batches too large for the
** socket buffers, connections killed under the adapter, and a runtime
** whose server restarts (an immediate stop, like a crash) in the middle of
** a run: calls fail cleanly while it is away, succeed again after, and no
** acknowledged increment is lost.
**
** Usage: test_storage_postgres URL PGTEST RESTART_DIR
**   URL          a database of this test's own (CTest: pgtest.sh run)
**   PGTEST       scripts/pgtest.sh; the restart case starts a cluster of
**                its own in RESTART_DIR with it (a restart of the shared one
**                would break the tests running beside this one)
** Without them the test fails: it never skips.
*/
#include "conformance.c"
#include "tcounter.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <time.h>

static const char *url, *pgtest, *restart_dir;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* base with one more query parameter. */
static void url_with(char *out, size_t n, const char *base, const char *param)
{
    snprintf(out, n, "%s%c%s", base, strchr(base, '?') ? '&' : '?', param);
}

static void quiet(void *arg, const char *message)
{
    (void)arg, (void)message; /* "does not exist, skipping" and the like */
}

static PGconn *raw_connect(void)
{
    PGconn *pg = PQconnectdb(url);
    PQsetNoticeProcessor(pg, quiet, NULL);
    return pg;
}

/* Runs SQL on the test's database with plain libpq; 1 if it succeeded. */
static int sql(const char *text)
{
    PGconn *pg = raw_connect();
    PGresult *r = PQstatus(pg) == CONNECTION_OK ? PQexec(pg, text) : NULL;
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok)
        fprintf(stderr, "  %s: %s", text, PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
    return ok;
}

/* The first column of the first row of a query, as a number (-1: none). */
static long long sql_value(const char *text)
{
    PGconn *pg = raw_connect();
    PGresult *r = PQstatus(pg) == CONNECTION_OK ? PQexec(pg, text) : NULL;
    long long v = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                      ? atoll(PQgetvalue(r, 0, 0))
                      : -1;
    PQclear(r);
    PQfinish(pg);
    return v;
}

/* ------------------------------------------------------------------------
** Schema.  Each case here works in a PostgreSQL schema of its own (the
** URL's search_path), so it can drop and doctor pgs's tables freely.
*/
#define TEST_SCHEMA "pgs_schema_test"

static void schema_url(char *out, size_t n)
{
    url_with(out, n, url, "options=-csearch_path%3D" TEST_SCHEMA);
}

static void fresh_schema(void)
{
    REQUIRE(sql("DROP SCHEMA IF EXISTS " TEST_SCHEMA " CASCADE"));
    REQUIRE(sql("CREATE SCHEMA " TEST_SCHEMA));
}

static long long stored_schema(void)
{
    return sql_value("SELECT value FROM " TEST_SCHEMA ".pgs_meta WHERE name = 'schema'");
}

/* Schema 1 (before history) is taken up to 2 at open, keeping its
** records; schema 3 is a newer pgs's: refused. */
static void schema_versions(void)
{
    char u[512];
    schema_url(u, sizeof u);
    fresh_schema();
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    pgs_ref r = conf_refs("conf-schema", "h");
    pgs_record v1 = conf_rec(&r, 1, "one", 3);
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    pgs_storage_close(st);
    CHECK_EQ(stored_schema(), 2);
    REQUIRE(sql("DROP TABLE " TEST_SCHEMA ".pgs_history"));
    REQUIRE(sql("UPDATE " TEST_SCHEMA ".pgs_meta SET value = 1"));
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    CHECK_EQ(stored_schema(), 2);
    pgs_record v2 = conf_rec(&r, 2, "two", 3);
    pgs_write w = {.op = PGS_OP_PUT, .record = &v2, .expected_version = 1, .keep = 1};
    CHECK_EQ(pgs_storage_batch(st, &w, 1), PGS_OK);
    hist_list h;
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 1 && h.version[0] == 1 && strcmp(h.state[0], "one") == 0);
    pgs_storage_close(st);
    REQUIRE(sql("UPDATE " TEST_SCHEMA ".pgs_meta SET value = 3"));
    st = NULL;
    CHECK_EQ(pgs_storage_open(&st, u, NULL), PGS_EVERSION);
    CHECK(st == NULL);
    REQUIRE(sql("DROP SCHEMA " TEST_SCHEMA " CASCADE"));
}

/* Processes opening an empty database at once: the advisory lock lets one
** make the schema, and every open succeeds. */
#define OPENERS 6

static void *opener(void *arg)
{
    char u[512];
    schema_url(u, sizeof u);
    pgs_storage *st = NULL;
    *(int *)arg = pgs_storage_open(&st, u, NULL);
    pgs_storage_close(st);
    return NULL;
}

static void first_opens_race(void)
{
    fresh_schema();
    pthread_t th[OPENERS];
    int rc[OPENERS];
    for (int i = 0; i < OPENERS; i++)
        REQUIRE(pthread_create(&th[i], NULL, opener, &rc[i]) == 0);
    for (int i = 0; i < OPENERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(rc[i], PGS_OK);
    }
    CHECK_EQ(stored_schema(), 2);
    REQUIRE(sql("DROP SCHEMA " TEST_SCHEMA " CASCADE"));
}

/* ------------------------------------------------------------------------
** URLs and servers that cannot be used.
*/
static void bad_urls_are_refused(void)
{
    static const char *const bad[] = {
        "postgresql://127.0.0.1/x?colour=blue", /* not a libpq parameter */
        "postgresql://[::1",                    /* unterminated IPv6 host */
        "postgresql://127.0.0.1/x?sslmode",     /* no value */
        "postgresql://%zz/x",                   /* bad escape */
        "postgresql:x",                         /* not a URI */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_open_fails(bad[i], PGS_EURL);
}

/* Fails with PGS_ESTORAGE within `limit_ms`. */
static void expect_unusable(const char *u, long long limit_ms)
{
    long long t0 = now_ms();
    expect_open_fails(u, PGS_ESTORAGE);
    long long took = now_ms() - t0;
    if (took > limit_ms)
        fprintf(stderr, "  %s: refused after %lld ms, more than %lld\n", u, took, limit_ms);
    CHECK(took <= limit_ms);
}

static void unreachable_fails_fast(void)
{
    /* Nobody listens there: refused at once. */
    expect_unusable("postgresql://postgres@127.0.0.1:1/x?sslmode=disable", 2000);
    /* An address that never answers (TEST-NET-1): bounded by connect_timeout. */
    expect_unusable("postgresql://postgres@192.0.2.1:5432/x?connect_timeout=2", 6000);
    /* The server is there; the database is not. */
    char u[512];
    snprintf(u, sizeof u, "%s", url);
    char *slash = strrchr(u, '/'), *q = strchr(u, '?');
    REQUIRE(slash);
    char rest[256];
    snprintf(rest, sizeof rest, "%s", q ? q : "");
    snprintf(slash, sizeof u - (size_t)(slash - u), "/pgs_no_such_db%s", rest);
    expect_unusable(u, 2000);
}

/* ------------------------------------------------------------------------
** Two handles on one database, as two processes would have.
*/

/* Both handles write version 2 over 1; the second is stale. */
static void stale_handle_conflicts(void)
{
    pgs_storage *a, *b;
    REQUIRE_OK(pgs_storage_open(&a, url, NULL));
    REQUIRE_OK(pgs_storage_open(&b, url, NULL));
    wipe(a, "conf-two");
    pgs_ref r = conf_refs("conf-two", "r"), x = conf_refs("conf-two", "x");
    pgs_record v1 = conf_rec(&r, 1, "v1", 2);
    REQUIRE_OK(pgs_storage_put(a, &v1, 0));
    pgs_record va = conf_rec(&r, 2, "from a", 6);
    CHECK_EQ(pgs_storage_put(a, &va, 1), PGS_OK);
    pgs_record vb = conf_rec(&r, 2, "from b", 6);
    pgs_record xb = conf_rec(&x, 1, "b's own", 7);
    pgs_write w[2] = {{.op = PGS_OP_PUT, .record = &xb},
                      {.op = PGS_OP_PUT, .record = &vb, .expected_version = 1, .keep = 1}};
    CHECK_EQ(pgs_storage_batch(b, w, 2), PGS_ECONFLICT);
    expect_rec(b, &va);
    expect_absent(b, &x);
    hist_list h;
    CHECK_EQ(history_of(b, &r, &h), PGS_OK);
    CHECK(h.n == 0);
    pgs_storage_close(a);
    pgs_storage_close(b);
}

/* Rounds in which two handles write the same ref at once, each in a
** batch with a ref of its own: one batch wins whole, the other fails with
** PGS_ECONFLICT and leaves nothing. */
#define DUEL_ROUNDS 30

typedef struct duel {
    pgs_storage *st;
    pthread_barrier_t *go;
    int side;
    int rc[DUEL_ROUNDS];
} duel;

static void *duellist(void *p)
{
    duel *d = p;
    for (int i = 0; i < DUEL_ROUNDS; i++) {
        char key[16], state[16];
        snprintf(key, sizeof key, "own%d.%d", d->side, i);
        snprintf(state, sizeof state, "side %d", d->side);
        pgs_ref r = conf_refs("conf-duel", "r"), own = conf_refs("conf-duel", key);
        pgs_record shared = conf_rec(&r, (uint64_t)i + 2, state, 6);
        pgs_record mine = conf_rec(&own, 1, state, 6);
        pgs_write w[2] = {{.op = PGS_OP_PUT, .record = &shared,
                           .expected_version = (uint64_t)i + 1, .keep = 2},
                          {.op = PGS_OP_PUT, .record = &mine}};
        pthread_barrier_wait(d->go);
        d->rc[i] = pgs_storage_batch(d->st, w, 2);
        pthread_barrier_wait(d->go); /* both done before the check */
        pthread_barrier_wait(d->go); /* and checked before the next round */
    }
    return NULL;
}

static int own_exists(pgs_storage *st, int side, int round)
{
    char key[16];
    snprintf(key, sizeof key, "own%d.%d", side, round);
    pgs_ref own = conf_refs("conf-duel", key);
    pgs_record *got = NULL;
    int rc = pgs_storage_get(st, &own, &got);
    free(got);
    return rc == PGS_OK;
}

static void two_handles_race(void)
{
    pgs_storage *st[2];
    for (int i = 0; i < 2; i++)
        REQUIRE_OK(pgs_storage_open(&st[i], url, NULL));
    wipe(st[0], "conf-duel");
    pgs_ref r = conf_refs("conf-duel", "r");
    pgs_record v1 = conf_rec(&r, 1, "start!", 6);
    REQUIRE_OK(pgs_storage_put(st[0], &v1, 0));
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 3);
    duel d[2] = {{.st = st[0], .go = &go, .side = 0}, {.st = st[1], .go = &go, .side = 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&th[i], NULL, duellist, &d[i]) == 0);
    int wins[2] = {0, 0};
    for (int i = 0; i < DUEL_ROUNDS; i++) {
        pthread_barrier_wait(&go);
        pthread_barrier_wait(&go);
        int a = d[0].rc[i], b = d[1].rc[i];
        CHECK((a == PGS_OK && b == PGS_ECONFLICT) || (a == PGS_ECONFLICT && b == PGS_OK));
        int winner = a == PGS_OK ? 0 : 1;
        wins[winner]++;
        CHECK(own_exists(st[0], winner, i));
        CHECK(!own_exists(st[0], 1 - winner, i));
        pgs_record *got = NULL;
        CHECK_EQ(pgs_storage_get(st[1], &r, &got), PGS_OK);
        CHECK(got && got->version == (uint64_t)i + 2 && got->state_len == 6 &&
              ((const char *)got->state)[5] == '0' + winner);
        free(got);
        pthread_barrier_wait(&go);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    hist_list h;
    CHECK_EQ(history_of(st[0], &r, &h), PGS_OK);
    CHECK(h.n == 2 && h.version[0] == DUEL_ROUNDS && h.version[1] == DUEL_ROUNDS - 1);
    fprintf(stderr, "    (%d rounds: handle 0 won %d, handle 1 won %d)\n", DUEL_ROUNDS, wins[0],
            wins[1]);
    for (int i = 0; i < 2; i++)
        pgs_storage_close(st[i]);
}

/* ------------------------------------------------------------------------
** Large batches: far more results than the socket buffers hold (the
** pipeline must read while it sends, or both sides would wait for ever),
** and several large states in one transaction.
*/
#define MANY 10000

static void big_batches(void)
{
    REQUIRE(sql("DELETE FROM pgs_records WHERE behaviour = 'conf-many'"));
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, url, NULL));
    pgs_write *w = calloc(MANY, sizeof *w);
    pgs_record *recs = calloc(MANY, sizeof *recs);
    REQUIRE(w && recs);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MANY; i++) {
            char key[16];
            snprintf(key, sizeof key, "m%05d", i);
            pgs_ref r = conf_refs("conf-many", key);
            recs[i] = conf_rec(&r, (uint64_t)round + 1, NULL, 0);
            recs[i].state = recs[i].ref.key; /* lives as long as the record */
            recs[i].state_len = recs[i].ref.key_len;
            w[i] = (pgs_write){.op = PGS_OP_PUT, .record = &recs[i],
                               .expected_version = (uint64_t)round, .keep = 1};
        }
        long long t0 = now_ms();
        CHECK_EQ(pgs_storage_batch(st, w, MANY), PGS_OK);
        fprintf(stderr, "    (%d writes in one batch: %lld ms)\n", MANY, now_ms() - t0);
    }
    CHECK(count_all(st) >= MANY);
    hist_list h;
    CHECK_EQ(history_of(st, &recs[MANY - 1].ref, &h), PGS_OK);
    CHECK(h.n == 1 && h.version[0] == 1);
    REQUIRE(sql("DELETE FROM pgs_records WHERE behaviour = 'conf-many'")); /* at once */
    /* Four 8 MiB states in one batch, and back. */
    size_t big = (size_t)8 << 20;
    unsigned char *state = malloc(big);
    REQUIRE(state);
    for (size_t i = 0; i < big; i++)
        state[i] = (unsigned char)(i * 7 + 3);
    for (int i = 0; i < 4; i++) {
        char key[16];
        snprintf(key, sizeof key, "big%d", i);
        pgs_ref r = conf_refs("conf-many", key);
        recs[i] = conf_rec(&r, 1, state, big);
        w[i] = (pgs_write){.op = PGS_OP_PUT, .record = &recs[i]};
    }
    CHECK_EQ(pgs_storage_batch(st, w, 4), PGS_OK);
    for (int i = 0; i < 4; i++)
        expect_rec(st, &recs[i]);
    wipe(st, "conf-many");
    free(state);
    free(w);
    free(recs);
    pgs_storage_close(st);
}

/* ------------------------------------------------------------------------
** Connections killed by the server (pg_terminate_backend, as an admin or
** a failover would): the next operations reconnect and succeed.
*/
static void killed_connections_reconnect(void)
{
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, url, NULL));
    wipe(st, "conf-kill");
    pgs_ref r = conf_refs("conf-kill", "k");
    pgs_record v1 = conf_rec(&r, 1, "v1", 2);
    REQUIRE_OK(pgs_storage_put(st, &v1, 0));
    expect_rec(st, &v1); /* a reader connects too */
#define OURS "FROM pg_stat_activity WHERE application_name = 'pgs' AND datname = current_database()"
    REQUIRE(sql("SELECT pg_terminate_backend(pid) " OURS));
    long long left = -1;
    for (int i = 0; i < 500 && (left = sql_value("SELECT count(*) " OURS)) != 0; i++)
        usleep(10000);
    CHECK_EQ(left, 0);
    pgs_record v2 = conf_rec(&r, 2, "v2", 2);
    pgs_write w = {.op = PGS_OP_PUT, .record = &v2, .expected_version = 1, .keep = 1};
    CHECK_EQ(pgs_storage_batch(st, &w, 1), PGS_OK);
    for (int i = 0; i < 4; i++) /* each reader connection in turn (the adapter has 3) */
        expect_rec(st, &v2);
    hist_list h;
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 1 && h.version[0] == 1);
    pgs_storage_close(st);
}

/* ------------------------------------------------------------------------
** A restart of the server in the middle of a run.  Client threads call
** "add 1" on counters as fast as they can while the server is stopped
** abruptly and started again.  Every call must return within its timeout,
** PGS_OK or a clear error; calls must succeed again after the restart;
** and per counter, the stored value must be at least what was
** acknowledged (no acknowledged write lost) and at most what was tried.
*/
#define RS_KEYS 24
#define RS_THREADS 4
#define RS_TIMEOUT_MS 5000

enum { RS_BEFORE, RS_DURING, RS_AFTER, RS_STOP };
static _Atomic int rs_phase;

typedef struct rs_client {
    pgs_runtime *rt;
    int t;
    long acked[RS_KEYS], tried[RS_KEYS];
    long long top[RS_KEYS]; /* the highest value a reply showed */
    long failed, acked_after, bad;
    long by_code[32];       /* failures by -code */
    long long worst_ms;
} rs_client;

static pgs_ref rs_ref(int k)
{
    char key[16];
    snprintf(key, sizeof key, "k%02d", k);
    pgs_ref r;
    pgs_ref_make(&r, "rcount", key, strlen(key));
    return r;
}

static void rs_one(rs_client *c, int k)
{
    pgs_ref ref = rs_ref(k);
    int phase = atomic_load(&rs_phase);
    long long t0 = now_ms(), v = 0;
    pgs_bytes rep;
    int rc = pgs_call(c->rt, &ref, "add 1", 5, &rep, RS_TIMEOUT_MS);
    if (rc == PGS_OK) {
        char buf[32] = "";
        memcpy(buf, rep.data, rep.len < 31 ? rep.len : 31);
        v = atoll(buf);
    }
    pgs_bytes_free(&rep);
    long long took = now_ms() - t0;
    c->worst_ms = took > c->worst_ms ? took : c->worst_ms;
    c->tried[k]++;
    if (rc == PGS_OK) {
        c->acked[k]++;
        c->top[k] = v > c->top[k] ? v : c->top[k];
        c->acked_after += phase == RS_AFTER;
        return;
    }
    c->failed++;
    c->by_code[-rc < 32 ? -rc : 0]++;
    if (rc != PGS_ESTORAGE && rc != PGS_ETIMEDOUT) {
        if (c->bad++ < 5)
            fprintf(stderr, "  rcount/k%02d: %s\n", k, pgs_errname(rc));
    }
    usleep(5000); /* the server is away: no need to spin */
}

static void *rs_main(void *p)
{
    rs_client *c = p;
    for (unsigned i = (unsigned)c->t * 7; atomic_load(&rs_phase) != RS_STOP; i++)
        rs_one(c, (int)((i * 5 + (unsigned)c->t) % RS_KEYS));
    return NULL;
}

/* Runs pgtest.sh with a command on the restart cluster; its status. */
static int pgtest_run(const char *cmd)
{
    char line[1024];
    snprintf(line, sizeof line, "bash '%s' %s '%s'", pgtest, cmd, restart_dir);
    return system(line);
}

static void stop_restart_cluster(void)
{
    if (pgtest_run("stop") != 0)
        fprintf(stderr, "could not stop the cluster in %s\n", restart_dir);
}

/* The URL pgtest.sh wrote for the restart cluster. */
static void restart_url(char *out, size_t n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/url", restart_dir);
    FILE *f = fopen(path, "r");
    REQUIRE(f && fgets(out, (int)n, f));
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

static const pgs_behaviour rcount_b = TC_BEHAVIOUR("rcount");

/* Every counter's stored value against what the clients saw. */
static void rs_verify(const char *u, const rs_client *cl, const long long *live)
{
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    int lost = 0, invented = 0;
    for (int k = 0; k < RS_KEYS; k++) {
        long acked = 0, tried = 0;
        long long top = 0;
        for (int t = 0; t < RS_THREADS; t++) {
            acked += cl[t].acked[k], tried += cl[t].tried[k];
            top = cl[t].top[k] > top ? cl[t].top[k] : top;
        }
        pgs_ref ref = rs_ref(k);
        long long stored = tc_stored(st, &ref);
        if (stored < acked || stored < top || stored > tried || stored != live[k])
            fprintf(stderr, "  rcount/k%02d: stored %lld, live %lld, acked %ld (highest reply "
                    "%lld), tried %ld\n", k, stored, live[k], acked, top, tried);
        lost += stored < acked || stored < top;
        invented += stored > tried;
        CHECK_EQ(stored, live[k]);
    }
    CHECK_EQ(lost, 0);
    CHECK_EQ(invented, 0);
    pgs_storage_close(st);
}

static void restart_mid_run(void)
{
    REQUIRE(pgtest_run("start") == 0);
    atexit(stop_restart_cluster); /* even if a REQUIRE ends the test */
    char u[512];
    restart_url(u, sizeof u);
    pgs_options o;
    pgs_options_init(&o);
    o.idle_timeout_ms = 20; /* servers passivate and reload around the restart */
    o.workers = 2;
    pgs_runtime *rt;
    REQUIRE_OK(pgs_open(&rt, u, &o));
    REQUIRE_OK(pgs_register(rt, &rcount_b));
    for (int k = 0; k < RS_KEYS; k++) {
        pgs_ref ref = rs_ref(k);
        REQUIRE_OK(pgs_start(rt, "rcount", ref.key, ref.key_len, NULL, 0, NULL, NULL));
    }
    static rs_client cl[RS_THREADS];
    pthread_t th[RS_THREADS];
    atomic_store(&rs_phase, RS_BEFORE);
    for (int t = 0; t < RS_THREADS; t++) {
        cl[t] = (rs_client){.rt = rt, .t = t};
        REQUIRE(pthread_create(&th[t], NULL, rs_main, &cl[t]) == 0);
    }
    usleep(1000 * 1000);
    atomic_store(&rs_phase, RS_DURING);
    long long t0 = now_ms();
    int restarted = pgtest_run("restart") == 0;
    long long restart_ms = now_ms() - t0;
    CHECK(restarted);
    atomic_store(&rs_phase, RS_AFTER);
    usleep(2000 * 1000);
    atomic_store(&rs_phase, RS_STOP);
    long acked = 0, failed = 0, after = 0, bad = 0, by_code[32] = {0};
    long long worst = 0;
    for (int t = 0; t < RS_THREADS; t++) {
        pthread_join(th[t], NULL);
        for (int k = 0; k < RS_KEYS; k++)
            acked += cl[t].acked[k];
        failed += cl[t].failed, after += cl[t].acked_after, bad += cl[t].bad;
        worst = cl[t].worst_ms > worst ? cl[t].worst_ms : worst;
        for (int i = 0; i < 32; i++)
            by_code[i] += cl[t].by_code[i];
    }
    fprintf(stderr, "    (restart took %lld ms; %ld calls acked, %ld after the restart; "
                    "%ld failed: %ld PGS_ESTORAGE, %ld PGS_ETIMEDOUT; slowest call %lld ms)\n",
            restart_ms, acked, after, failed, by_code[-PGS_ESTORAGE], by_code[-PGS_ETIMEDOUT],
            worst);
    CHECK_EQ(bad, 0);
    CHECK(after > 0);                         /* the runtime came back */
    CHECK(worst <= RS_TIMEOUT_MS + 3000);     /* nobody hung past the timeout */
    long long live[RS_KEYS];
    for (int k = 0; k < RS_KEYS; k++) {
        pgs_ref ref = rs_ref(k);
        CHECK_EQ(tc_callv(rt, &ref, "get", &live[k]), PGS_OK);
    }
    pgs_close(rt);
    rs_verify(u, cl, live);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_storage_postgres URL PGTEST RESTART_DIR\n");
        return 1;
    }
    url = argv[1], pgtest = argv[2], restart_dir = argv[3];
    int failures = pgs_conformance_run(url, NULL);
    RUN(schema_versions);
    RUN(first_opens_race);
    RUN(bad_urls_are_refused);
    RUN(unreachable_fails_fast);
    RUN(stale_handle_conflicts);
    RUN(two_handles_race);
    RUN(big_batches);
    RUN(killed_connections_reconnect);
    RUN(restart_mid_run);
    return failures || CHECK_DONE();
}
