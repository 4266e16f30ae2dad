/*
** cli_helper — makes and drives stores for tests/cli.sh (the pgs command).
**
**   cli_helper make URL           servers with history, a parked one with
**                                 set-aside messages, another behaviour
**   cli_helper call URL REF MSG   calls REF (incr, get, crash); prints the
**                                 value, or the error's name
**   cli_helper hold URL           opens the store, prints "ready", sleeps
**                                 until killed (the store is then busy)
**
** Its "counter" is icounter.h's, whose state the counter plugin formats.
*/
#include "icounter.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const pgs_behaviour counter = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "counter", .state_size = sizeof(int64_t),
    .init = ic_init, .handle_call = ic_call,
};

/* A second behaviour: its state is the start arguments. */
static int cart_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    memcpy(state, args, len < 16 ? len : 16);
    return PGS_PERSIST;
}

static const pgs_behaviour cart = {
    .version = 1, .name = "cart", .state_size = 16, /* a version 1 struct */
    .init = cart_init, .handle_call = ic_call,
};

static int call(pgs_runtime *rt, const char *text, const char *msg, int64_t *value)
{
    pgs_ref ref;
    pgs_bytes reply = {0};
    int rc = pgs_ref_parse(&ref, text, (size_t)-1);
    if (!rc)
        rc = pgs_call(rt, &ref, msg, strlen(msg), &reply, 5000);
    if (!rc && value && reply.len == sizeof *value)
        memcpy(value, reply.data, sizeof *value);
    pgs_bytes_free(&reply);
    return rc;
}

static int start(pgs_runtime *rt, const pgs_behaviour *b, const char *key, const char *args,
                 const pgs_server_opts *o, int incrs)
{
    char text[PGS_REF_TEXT_MAX];
    pgs_ref ref;
    int rc = pgs_start(rt, b->name, key, strlen(key), args, args ? strlen(args) : 0, o, &ref);
    if (!rc)
        rc = pgs_ref_format(&ref, text, sizeof text, NULL);
    for (int i = 0; i < incrs && !rc; i++)
        rc = call(rt, text, "incr", NULL);
    return rc;
}

/* counter/a: versions 1..4 (values 0..3) all kept; counter/b: 1; counter/x y:
** 2; cart/1; counter/p: parked after two crashes, each message set aside. */
static int make(pgs_runtime *rt)
{
    pgs_server_opts keep = {.history = 5, .history_messages = 1}; /* message -> state */
    pgs_server_opts park = {.fault_policy = PGS_POLICY_PARK, .max_restarts = 1, .history = 3};
    int rc = start(rt, &counter, "a", NULL, &keep, 3);
    if (!rc)
        rc = start(rt, &counter, "b", NULL, NULL, 1);
    if (!rc)
        rc = start(rt, &counter, "x y", NULL, NULL, 2);
    if (!rc)
        rc = start(rt, &cart, "1", "hello", NULL, 0);
    if (!rc)
        rc = start(rt, &counter, "p", NULL, &park, 2);
    for (int i = 0; i < 2 && !rc; i++)
        rc = call(rt, "counter/p", "crash", NULL) == PGS_ECRASH ? PGS_OK : PGS_ECALLBACK;
    if (!rc && call(rt, "counter/p", "get", NULL) != PGS_EPARKED)
        rc = PGS_ECALLBACK;
    return rc;
}

static int hold(const char *url)
{
    pgs_storage *st;
    int rc = pgs_storage_open(&st, url, NULL);
    if (rc)
        return rc;
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "hold") == 0)
        return fprintf(stderr, "hold: %s\n", pgs_errname(hold(argv[2]))), 1;
    if (!(argc == 3 && strcmp(argv[1], "make") == 0) &&
        !(argc == 5 && strcmp(argv[1], "call") == 0)) {
        fprintf(stderr, "usage: cli_helper make URL | call URL REF MSG | hold URL\n");
        return 2;
    }
    pgs_runtime *rt;
    int64_t value = 0;
    int rc = pgs_open(&rt, argv[2], NULL);
    if (!rc)
        rc = pgs_register(rt, &counter);
    if (!rc)
        rc = pgs_register(rt, &cart);
    if (!rc)
        rc = argc == 3 ? make(rt) : call(rt, argv[3], argv[4], &value);
    pgs_close(rt);
    if (rc)
        printf("%s\n", pgs_errname(rc));
    else if (argc == 5)
        printf("%lld\n", (long long)value);
    return rc ? 1 : 0;
}
