/*
** counter — the smallest useful pgs program: a persistent counter per key.
**
**   counter [--store URL] incr KEY    adds one; prints the new value
**   counter [--store URL] get KEY     prints the value (0 if never counted)
**
** The default store is the SQLite file counter.db in the working directory,
** so `counter incr 42` run twice prints 1, then 2: the state outlives the
** process.  The whole behaviour is the two callbacks below, plus format,
** which renders a stored state for people (`pgs show`).
**
** Built with -DCOUNTER_PLUGIN (the counter_plugin module) it is a plugin
** instead of a program: `pgs --store sqlite:counter.db show --plugin
** ./libcounter_plugin.so counter/42` prints "value = 2".
*/
#include <pgs.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct counter {
    int64_t value; /* a flat state: stored as is, no encode/decode needed */
};

static int counter_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    return PGS_PERSIST; /* the state starts zeroed */
}

static int counter_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    struct counter *c = state;
    int result = PGS_UNCHANGED; /* "get": nothing to write */
    if (len == 4 && memcmp(msg, "incr", 4) == 0) {
        c->value++;
        result = PGS_PERSIST; /* written before the caller sees the reply */
    }
    pgs_reply(ctx, &c->value, sizeof c->value);
    return result;
}

/* The stored state is the struct's bytes (flat); any other length is not
** a counter's. */
static int counter_format(const void *data, size_t len, uint32_t schema, pgs_buf *out)
{
    struct counter c;
    if (len != sizeof c)
        return 1;
    memcpy(&c, data, sizeof c);
    char text[48];
    int n = snprintf(text, sizeof text, "value = %lld\n", (long long)c.value);
    return pgs_buf_append(out, text, (size_t)n) != PGS_OK;
}

static const pgs_behaviour counter = {
    .version = PGS_BEHAVIOUR_VERSION,
    .name = "counter",
    .state_size = sizeof(struct counter),
    .init = counter_init,
    .handle_call = counter_call,
    .format = counter_format,
};

#ifdef COUNTER_PLUGIN
/* What the pgs tool looks up in a plugin (see PGS_PLUGIN_SYMBOL). */
const pgs_behaviour *const *pgs_plugin_behaviours(size_t *n);

const pgs_behaviour *const *pgs_plugin_behaviours(size_t *n)
{
    static const pgs_behaviour *const list[] = {&counter};
    *n = 1;
    return list;
}
#else

static int usage(void)
{
    fprintf(stderr, "usage: counter [--store URL] incr|get KEY\n");
    return 2;
}

/* Runs one command on an open runtime; prints the value. */
static int run(pgs_runtime *rt, const char *cmd, const char *key)
{
    pgs_ref ref;
    int rc = pgs_ref_make(&ref, "counter", key, strlen(key));
    if (rc == PGS_OK && strcmp(cmd, "incr") == 0) /* starts it unless it exists */
        rc = pgs_start(rt, "counter", key, strlen(key), NULL, 0, NULL, NULL);
    pgs_bytes reply = {0};
    if (rc == PGS_OK)
        rc = pgs_call(rt, &ref, cmd, strlen(cmd), &reply, 5000);
    if (rc == PGS_ENOTFOUND && strcmp(cmd, "get") == 0) {
        printf("0\n"); /* never counted */
        return 0;
    }
    if (rc != PGS_OK) {
        fprintf(stderr, "counter: %s %s: %s\n", cmd, key, pgs_strerror(rc));
        return 1;
    }
    int64_t value;
    memcpy(&value, reply.data, sizeof value);
    pgs_bytes_free(&reply); /* replies belong to the caller */
    printf("%lld\n", (long long)value);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = "sqlite:counter.db";
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--store") == 0) {
        url = argv[2];
        i = 3;
    }
    if (argc - i != 2 || (strcmp(argv[i], "incr") != 0 && strcmp(argv[i], "get") != 0))
        return usage();

    pgs_runtime *rt;
    int rc = pgs_open(&rt, url, NULL);
    if (rc == PGS_OK)
        rc = pgs_register(rt, &counter);
    if (rc != PGS_OK) {
        fprintf(stderr, "counter: %s: %s\n", url, pgs_strerror(rc));
        pgs_close(rt);
        return 1;
    }
    int status = run(rt, argv[i], argv[i + 1]);
    pgs_close(rt); /* passivates every server; their state stays stored */
    return status;
}
#endif /* COUNTER_PLUGIN */
