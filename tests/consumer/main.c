/*
** A program outside the pgs tree, built against an installed pgs only: the
** install test (tests/install.sh) compiles it with pkg-config and with
** find_package(pgs), shared and static, and expects it to print OK.
*/
#include <pgs.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int counter_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    return PGS_PERSIST; /* the state starts zeroed */
}

/* Adds the message's value and replies with the new count. */
static int counter_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    int64_t *count = state, add = 0;
    if (len == sizeof add)
        memcpy(&add, msg, sizeof add);
    *count += add;
    return pgs_reply(ctx, count, sizeof *count) == PGS_OK ? PGS_PERSIST : PGS_CRASH;
}

static const pgs_behaviour counter = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "counter",
    .state_size = sizeof(int64_t),
    .init = counter_init, .handle_call = counter_call,
};

static int check(const char *what, int rc)
{
    if (rc != PGS_OK)
        fprintf(stderr, "consumer: %s: %s\n", what, pgs_strerror(rc));
    return rc == PGS_OK;
}

int main(void)
{
    pgs_runtime *rt;
    pgs_ref ref;
    pgs_bytes reply = {0};
    int64_t add = 42, got = 0;
    if (!check("pgs_open", pgs_open(&rt, "memory:", NULL)))
        return 1;
    int ok = check("pgs_register", pgs_register(rt, &counter)) &&
             check("pgs_start", pgs_start(rt, "counter", "c", 1, NULL, 0, NULL, &ref)) &&
             check("pgs_call", pgs_call(rt, &ref, &add, sizeof add, &reply, 5000));
    if (ok && reply.len == sizeof got)
        memcpy(&got, reply.data, sizeof got);
    pgs_bytes_free(&reply);
    pgs_close(rt);
    if (!ok || got != 42) {
        fprintf(stderr, "consumer: reply %lld, want 42\n", (long long)got);
        return 1;
    }
    printf("OK\n");
    return 0;
}
