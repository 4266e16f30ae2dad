/*
** test_messaging.c — how messages travel: per-sender order, casts and
** infos, volatile timers, async calls whose reply comes back as a message,
** server-to-server calls (and the self-call that would deadlock), the
** output gate on sends made by a turn, call timeouts, and thousands of
** servers sharing a small worker pool without starving it.
*/
#include "tcounter.h"

#include <pthread.h>

static const pgs_behaviour counter_b = TC_BEHAVIOUR("counter");

static pgs_runtime *open_rt(probe *p, int workers)
{
    pgs_runtime *rt = tc_open(NULL, p, 0, workers);
    REQUIRE_OK(pgs_register(rt, &counter_b));
    return rt;
}

static pgs_ref start(pgs_runtime *rt, const char *key)
{
    pgs_ref ref;
    REQUIRE_OK(pgs_start(rt, "counter", key, strlen(key), NULL, 0, NULL, &ref));
    return ref;
}

/* Order: a sequence checker.  Each message carries (sender, seq); the state
** remembers each sender's last seq and counts any that did not rise. */
typedef struct ostate {
    uint32_t last[8];
    uint32_t count[8];
    uint32_t disorder;
} ostate;

static int order_handle(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    ostate *s = state;
    uint32_t w[2];
    if (len == 1) { /* a read */
        pgs_reply(ctx, s, sizeof *s);
        return PGS_UNCHANGED;
    }
    if (len != sizeof w)
        return PGS_CRASH;
    memcpy(w, msg, sizeof w);
    if (w[0] >= 8)
        return PGS_CRASH;
    s->disorder += w[1] != s->last[w[0]] + 1;
    s->last[w[0]] = w[1];
    s->count[w[0]]++;
    return PGS_PERSIST;
}

static int order_init(pgs_ctx *ctx, void *state, const void *a, size_t n) { return PGS_PERSIST; }

static int order_info(pgs_ctx *ctx, void *state, const pgs_info *info)
{
    return order_handle(ctx, state, info->data, info->len);
}

static const pgs_behaviour order_b = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "order", .state_size = sizeof(ostate),
    .flags = PGS_VIRTUAL, .defaults = {.idle_timeout_ms = 1}, .init = order_init,
    .handle_call = order_handle, .handle_cast = order_handle, .handle_info = order_info};

typedef struct sender_arg {
    pgs_runtime *rt;
    pthread_barrier_t *burst;
    uint32_t id;
    int n;
} sender_arg;

static void *order_sender(void *arg)
{
    sender_arg *a = arg;
    pgs_ref ref = tc_ref("order/o");
    for (int i = 1; i <= a->n; i++) {
        uint32_t w[2] = {a->id, (uint32_t)i};
        int rc = i % 3 == 0 ? pgs_call(a->rt, &ref, w, sizeof w, NULL, 5000)
                 : i % 3 == 1 ? pgs_cast(a->rt, &ref, w, sizeof w)
                              : pgs_send_info(a->rt, &ref, w, sizeof w);
        CHECK_EQ(rc, PGS_OK);
        if (i % 100 == 0) { /* all pause: it passivates (1 ms idle) as they return */
            pthread_barrier_wait(a->burst);
            usleep(1000 + (useconds_t)(a->id * 700 + (uint32_t)i) % 2000);
        }
    }
    return NULL;
}

static void per_sender_order_holds_across_passivation(void)
{
    pgs_runtime *rt = tc_open(NULL, NULL, 0, 2);
    REQUIRE_OK(pgs_register(rt, &order_b));
    enum { SENDERS = 4, N = 3000 };
    pthread_t th[SENDERS];
    sender_arg args[SENDERS];
    pthread_barrier_t burst;
    pthread_barrier_init(&burst, NULL, SENDERS);
    for (int i = 0; i < SENDERS; i++) {
        args[i] = (sender_arg){rt, &burst, (uint32_t)i, N};
        pthread_create(&th[i], NULL, order_sender, &args[i]);
    }
    for (int i = 0; i < SENDERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&burst);
    /* Each sender's last message was a call or came before one... except
    ** the tail: wait for the casts to drain, then read. */
    pgs_ref ref = tc_ref("order/o");
    ostate s = {0};
    for (int tries = 0; tries < 5000; tries++) {
        pgs_bytes rep;
        REQUIRE_OK(pgs_call(rt, &ref, "r", 1, &rep, 5000));
        memcpy(&s, rep.data, sizeof s);
        pgs_bytes_free(&rep);
        int done = 1;
        for (int i = 0; i < SENDERS; i++)
            done &= s.count[i] == N;
        if (done)
            break;
        usleep(1000);
    }
    CHECK_EQ(s.disorder, 0);
    for (int i = 0; i < SENDERS; i++)
        CHECK_EQ(s.count[i], N);
    pgs_stats st;
    pgs_stats_get(rt, &st);
    CHECK(st.passivations > 10);
    pgs_close(rt);
}

static void timers_fire_and_cancel(void)
{
    probe p = {0};
    pgs_runtime *rt = open_rt(&p, 2);
    pgs_ref ref = start(rt, "t");
    uint64_t id = 0;
    REQUIRE_OK(pgs_send_after(rt, &ref, 20, "add 5", 5, &id));
    CHECK(id != 0);
    uint64_t id2 = 0;
    REQUIRE_OK(pgs_send_after(rt, &ref, 30, "add 100", 7, &id2));
    CHECK_EQ(pgs_cancel_timer(rt, id2), PGS_OK);
    CHECK_EQ(pgs_cancel_timer(rt, id2), PGS_ENOTFOUND);
    long long v = 0;
    for (int i = 0; i < 2000 && (v = tc_value(rt, &ref, "get")) != 5; i++)
        usleep(1000);
    CHECK_EQ(v, 5);
    usleep(50000);
    CHECK_EQ(tc_value(rt, &ref, "get"), 5); /* the cancelled one never came */
    CHECK_EQ(pgs_cancel_timer(rt, id), PGS_ENOTFOUND); /* already fired */
    /* A handler can arm a timer on itself. */
    CHECK(tc_value(rt, &ref, "timer 10") > 0);
    for (int i = 0; i < 2000 && (v = tc_value(rt, &ref, "get")) != 6; i++)
        usleep(1000);
    CHECK_EQ(v, 6);
    pgs_close(rt);
}

static void timer_wakes_a_passivated_server(void)
{
    probe p = {0};
    pgs_runtime *rt = tc_open(NULL, &p, 10, 2);
    REQUIRE_OK(pgs_register(rt, &counter_b));
    pgs_ref ref = start(rt, "w");
    REQUIRE_OK(pgs_send_after(rt, &ref, 100, "add 1", 5, NULL));
    CHECK_EQ(tc_wait_active(rt, &ref, 0), 0);
    CHECK_EQ(tc_wait_count(&p.handled, 1), 1);
    CHECK_EQ(tc_value(rt, &ref, "get"), 1);
    CHECK_EQ(atomic_load(&p.terminates[PGS_REASON_PASSIVATE]) >= 1, 1);
    pgs_close(rt);
}

static void async_call_replies_as_a_message(void)
{
    probe p = {0};
    pgs_runtime *rt = open_rt(&p, 2);
    pgs_ref a = start(rt, "a"), b = start(rt, "b");
    (void)b;
    CHECK_EQ(tc_value(rt, &a, "async counter/b add 7"), 0);
    CHECK_EQ(tc_wait_count(&p.replies, 1), 1);
    CHECK_EQ(atomic_load(&p.last_status), PGS_OK);
    CHECK_EQ(tc_value(rt, &a, "get"), 1007); /* b replied 7 */
    /* A failing async call brings its status back. */
    CHECK_EQ(tc_callv(rt, &a, "async counter/nobody get", NULL), PGS_OK);
    CHECK_EQ(tc_wait_count(&p.replies, 2), 2);
    CHECK_EQ(atomic_load(&p.last_status), PGS_ENOTFOUND);
    /* From outside a callback, the reply goes to the server named. */
    REQUIRE_OK(pgs_call_async(rt, &b, "add 1", 5, &a, 1));
    CHECK_EQ(tc_wait_count(&p.replies, 3), 3);
    CHECK_EQ(tc_value(rt, &a, "get"), 1008);
    CHECK_EQ(pgs_call_async(rt, &b, "add 1", 5, NULL, 1), PGS_EINVAL);
    pgs_close(rt);
}

static void servers_call_servers(void)
{
    probe p = {0};
    pgs_runtime *rt = open_rt(&p, 2);
    pgs_ref a = start(rt, "a");
    start(rt, "b");
    CHECK_EQ(tc_value(rt, &a, "call counter/b add 3"), 3);
    char want[16];
    snprintf(want, sizeof want, "E%d", PGS_ENOTFOUND);
    CHECK(tc_reply_is(rt, &a, "call counter/b call counter/c get", want));
    snprintf(want, sizeof want, "E%d", PGS_EDEADLK);
    CHECK(tc_reply_is(rt, &a, "call counter/a get", want));
    /* a → b → a is a cycle on one thread: refused, not hung. */
    CHECK(tc_reply_is(rt, &a, "call counter/b call counter/a get", want));
    pgs_close(rt);
}

static void output_gate_holds_sends_of_failed_turns(void)
{
    probe p = {0};
    pgs_runtime *rt = open_rt(&p, 2);
    pgs_ref a = start(rt, "a"), b = start(rt, "b");
    CHECK_EQ(tc_callv(rt, &a, "castcrash counter/b add 100", NULL), PGS_ECRASH);
    CHECK_EQ(tc_value(rt, &a, "cast counter/b add 1"), 0);
    long long v = 0;
    for (int i = 0; i < 2000 && (v = tc_value(rt, &b, "get")) == 0; i++)
        usleep(1000);
    usleep(20000);
    CHECK_EQ(tc_value(rt, &b, "get"), 1); /* only the persisted turn's cast */
    pgs_close(rt);
}

static void call_timeout_leaves_the_message_queued(void)
{
    probe p = {0};
    pgs_runtime *rt = open_rt(&p, 2);
    pgs_ref ref = start(rt, "slow");
    REQUIRE_OK(pgs_cast(rt, &ref, "sleep 200", 9));
    usleep(20000); /* the worker is inside the sleep */
    pgs_bytes rep;
    CHECK_EQ(pgs_call(rt, &ref, "add 1", 5, &rep, 30), PGS_ETIMEDOUT);
    CHECK(rep.data == NULL);
    /* The timed-out call is still handled, after the sleep. */
    CHECK_EQ(tc_value(rt, &ref, "get"), 1);
    pgs_close(rt);
}

/* A handler that blocks in a call must not starve the pool: with one worker,
** casts to many servers whose handlers call a busy server still finish. */
static void blocked_callers_do_not_starve_the_pool(void)
{
    probe p = {0};
    pgs_runtime *rt = open_rt(&p, 1);
    pgs_ref hub = start(rt, "hub");
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "s%d", i);
        pgs_ref ref = start(rt, key);
        REQUIRE_OK(pgs_cast(rt, &hub, "sleep 1", 7)); /* keep the hub busy */
        REQUIRE_OK(pgs_cast(rt, &ref, "call counter/hub add 1", 22));
    }
    long long v = 0;
    for (int i = 0; i < 10000 && (v = tc_value(rt, &hub, "get")) < N; i++)
        usleep(1000);
    CHECK_EQ(v, N);
    pgs_close(rt);
}

typedef struct many_arg {
    pgs_runtime *rt;
    int servers, rounds;
} many_arg;

static void *many_sender(void *arg)
{
    many_arg *a = arg;
    for (int r = 0; r < a->rounds; r++)
        for (int i = 0; i < a->servers; i++) {
            char key[16];
            snprintf(key, sizeof key, "m%d", i);
            pgs_ref ref;
            pgs_ref_make(&ref, "counter", key, strlen(key));
            CHECK_EQ(pgs_cast(a->rt, &ref, "add 1", 5), PGS_OK);
        }
    return NULL;
}

static void thousands_of_servers_share_the_pool(void)
{
    probe p = {0};
    pgs_runtime *rt = tc_open(NULL, &p, 50, 2);
    REQUIRE_OK(pgs_register(rt, &counter_b));
    enum { SERVERS = 5000, ROUNDS = 4, THREADS = 3 };
    for (int i = 0; i < SERVERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "m%d", i);
        start(rt, key);
    }
    pthread_t th[THREADS];
    many_arg a = {rt, SERVERS, ROUNDS};
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, many_sender, &a);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    int wrong = 0;
    for (int i = 0; i < SERVERS; i++) {
        char key[16];
        snprintf(key, sizeof key, "m%d", i);
        pgs_ref ref;
        pgs_ref_make(&ref, "counter", key, strlen(key));
        long long v = 0;
        for (int tries = 0; tries < 5000 && (v = tc_value(rt, &ref, "get")) < ROUNDS * THREADS;
             tries++)
            usleep(1000);
        wrong += v != ROUNDS * THREADS;
    }
    CHECK_EQ(wrong, 0);
    pgs_close(rt);
}

int main(void)
{
    RUN(per_sender_order_holds_across_passivation);
    RUN(timers_fire_and_cancel);
    RUN(timer_wakes_a_passivated_server);
    RUN(async_call_replies_as_a_message);
    RUN(servers_call_servers);
    RUN(output_gate_holds_sends_of_failed_turns);
    RUN(call_timeout_leaves_the_message_queued);
    RUN(blocked_callers_do_not_starve_the_pool);
    RUN(thousands_of_servers_share_the_pool);
    return CHECK_DONE();
}
