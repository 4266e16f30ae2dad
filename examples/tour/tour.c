/*
** tour — a guided run through what pgs does, on the embedded SQLite store.
**
**   tour [--store URL] [--accounts N]      (default: sqlite:tour.db, 2000)
**
** Each bank account is a persistent server.  The tour starts the accounts,
** moves money between them, lets them go idle until every one has been
** passivated (its state only on disk), wakes them with ordinary calls,
** makes one crash on a bad request, closes the runtime and opens it again,
** and checks at every step that no money appeared or vanished.
*/
#include <pgs.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct account {
    int64_t balance;
};

/* Requests: 'd' deposit, 'w' withdraw, 'b' balance.  A withdrawal that
** would overdraw crashes the turn on purpose: the half-done change must
** not survive, and the account comes back from its last stored state. */
struct request {
    char op;
    int64_t amount;
};

static int account_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    struct account *a = state;
    if (len == sizeof a->balance)
        memcpy(&a->balance, args, len); /* the opening balance */
    return PGS_PERSIST;
}

static int account_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    struct account *a = state;
    struct request r;
    if (len != sizeof r)
        return PGS_CRASH;
    memcpy(&r, msg, sizeof r);
    int result = PGS_PERSIST;
    if (r.op == 'd') {
        a->balance += r.amount;
    } else if (r.op == 'w') {
        a->balance -= r.amount;
        if (a->balance < 0)
            return PGS_CRASH; /* the state in memory is dropped, not written */
    } else {
        result = PGS_UNCHANGED; /* a read: nothing to write */
    }
    pgs_reply(ctx, &a->balance, sizeof a->balance);
    return result;
}

static const pgs_behaviour account = {
    .version = PGS_BEHAVIOUR_VERSION,
    .name = "account",
    .state_size = sizeof(struct account),
    .defaults = {.idle_timeout_ms = 200}, /* passivate after 0.2 s idle */
    .init = account_init,
    .handle_call = account_call,
};

static int64_t request(pgs_runtime *rt, long i, char op, int64_t amount, int *rc)
{
    pgs_ref ref;
    pgs_ref_make(&ref, "account", &i, sizeof i);
    struct request r = {op, amount};
    pgs_bytes reply = {0};
    int64_t balance = -1;
    *rc = pgs_call(rt, &ref, &r, sizeof r, &reply, 5000);
    if (*rc == PGS_OK && reply.len == sizeof balance)
        memcpy(&balance, reply.data, sizeof balance);
    pgs_bytes_free(&reply);
    return balance;
}

static int64_t total(pgs_runtime *rt, long n)
{
    int64_t sum = 0;
    int rc;
    for (long i = 0; i < n; i++) {
        int64_t b = request(rt, i, 'b', 0, &rc);
        if (rc != PGS_OK) {
            fprintf(stderr, "tour: balance of account %ld: %s\n", i, pgs_strerror(rc));
            exit(1);
        }
        sum += b;
    }
    return sum;
}

static uint64_t active(pgs_runtime *rt)
{
    pgs_stats s;
    pgs_stats_get(rt, &s);
    return s.active;
}

static pgs_runtime *open_runtime(const char *url)
{
    pgs_runtime *rt;
    int rc = pgs_open(&rt, url, NULL);
    if (rc == PGS_OK)
        rc = pgs_register(rt, &account);
    if (rc != PGS_OK) {
        fprintf(stderr, "tour: %s: %s\n", url, pgs_strerror(rc));
        exit(1);
    }
    return rt;
}

static void check(int ok, const char *what)
{
    printf("   %s %s\n", ok ? "ok:" : "FAILED:", what);
    if (!ok)
        exit(1);
}

int main(int argc, char **argv)
{
    const char *url = "sqlite:tour.db";
    long n = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--store"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--accounts"))
            n = atol(argv[i + 1]);
    }
    if (n < 2) {
        fprintf(stderr, "usage: tour [--store URL] [--accounts N>=2]\n");
        return 2;
    }
    pgs_runtime *rt = open_runtime(url);
    int rc;

    printf("1. Start %ld accounts with 100 each (a no-op for those that exist).\n", n);
    int64_t opening = 100;
    for (long i = 0; i < n; i++) {
        rc = pgs_start(rt, "account", &i, sizeof i, &opening, sizeof opening, NULL, NULL);
        if (rc != PGS_OK) {
            fprintf(stderr, "tour: start: %s\n", pgs_strerror(rc));
            return 1;
        }
    }
    int64_t before = total(rt, n);
    printf("   %llu accounts in memory, %lld in all\n", (unsigned long long)active(rt),
           (long long)before);

    printf("2. Move 1 from each account to the next, %ld transfers.\n", n);
    for (long i = 0; i < n; i++) {
        request(rt, i, 'w', 1, &rc);
        if (rc == PGS_OK)
            request(rt, (i + 1) % n, 'd', 1, &rc);
    }
    check(total(rt, n) == before, "no money appeared or vanished");

    printf("3. Wait while the accounts sit idle (idle timeout 0.2 s)...\n");
    for (int t = 0; t < 100 && active(rt) > 0; t++)
        usleep(50000);
    printf("   %llu accounts in memory: the rest live only in storage\n",
           (unsigned long long)active(rt));
    check(active(rt) == 0, "every account was passivated");

    printf("4. Call them again: each wakes from its stored state.\n");
    check(total(rt, n) == before, "balances intact after reactivation");

    printf("5. Overdraw account 0: its handler crashes.\n");
    int64_t b0 = request(rt, 0, 'b', 0, &rc);
    request(rt, 0, 'w', b0 + 1000, &rc);
    printf("   the call returned: %s\n", pgs_strerror(rc));
    check(rc == PGS_ECRASH, "the caller is told");
    check(request(rt, 0, 'b', 0, &rc) == b0, "the half-done withdrawal was dropped");

    printf("6. Close the runtime (every account passivates) and open it again.\n");
    pgs_close(rt);
    rt = open_runtime(url);
    check(total(rt, n) == before, "every balance came back from storage");
    pgs_close(rt);
    printf("Run the tour again: step 1 finds the accounts and starts nothing new.\n");
    return 0;
}
