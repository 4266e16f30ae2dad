/*
** test_inspect.c — the public pieces the pgs command stands on: format
** (behaviour version 2) and pgs_behaviour_format, which never reads a
** version 1 struct past its end; stored options decoded and encoded; and
** crash records and set-aside messages read, dropped and cleared on a
** store with no runtime.
*/
#include "check.h"
#include "icounter.h"
#include "pgs.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int c_format(const void *data, size_t len, uint32_t schema, pgs_buf *out)
{
    int64_t v;
    char text[64];
    if (len != sizeof v)
        return 1;
    memcpy(&v, data, sizeof v);
    int n = snprintf(text, sizeof text, "v=%lld schema=%u\n", (long long)v, (unsigned)schema);
    return pgs_buf_append(out, text, (size_t)n);
}

static const pgs_behaviour counter = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "c", .state_size = sizeof(int64_t),
    .init = ic_init, .handle_call = ic_call, .format = c_format,
};

/* A version 1 behaviour in a block that ends where version 1 ended, so
** ASan reports any read of format. */
static pgs_behaviour *version1(void)
{
    size_t size = offsetof(pgs_behaviour, format);
    pgs_behaviour v1 = counter;
    v1.version = 1;
    void *b = malloc(size);
    REQUIRE(b);
    memcpy(b, &v1, size);
    return b;
}

static void format_renders_and_reports(void)
{
    int64_t v = 7;
    pgs_bytes out;
    REQUIRE_OK(pgs_behaviour_format(&counter, &v, sizeof v, 3, &out));
    CHECK(out.len == strlen("v=7 schema=3\n") && strcmp(out.data, "v=7 schema=3\n") == 0);
    pgs_bytes_free(&out);
    CHECK_EQ(pgs_behaviour_format(&counter, &v, 3, 0, &out), PGS_ECALLBACK);
    CHECK(out.data == NULL && out.len == 0);
    pgs_behaviour b = counter;
    b.format = NULL;
    CHECK_EQ(pgs_behaviour_format(&b, &v, sizeof v, 0, &out), PGS_ENOTSUP);
    b.version = 3;
    CHECK_EQ(pgs_behaviour_format(&b, &v, sizeof v, 0, &out), PGS_EVERSION);
    CHECK_EQ(pgs_behaviour_format(NULL, &v, sizeof v, 0, &out), PGS_EINVAL);
    CHECK_EQ(pgs_behaviour_format(&counter, NULL, 8, 0, &out), PGS_EINVAL);
    CHECK_EQ(pgs_behaviour_format(&counter, &v, sizeof v, 0, NULL), PGS_EINVAL);
}

static void version1_behaviour_is_never_read_past_its_end(void)
{
    pgs_behaviour *b = version1();
    int64_t v = 1;
    pgs_bytes out;
    CHECK_EQ(pgs_behaviour_format(b, &v, sizeof v, 0, &out), PGS_ENOTSUP);
    pgs_runtime *rt;
    pgs_ref ref;
    pgs_bytes reply = {0};
    REQUIRE_OK(pgs_open(&rt, "memory:", NULL));
    REQUIRE_OK(pgs_register(rt, b)); /* the runtime takes version 1 */
    REQUIRE_OK(pgs_start(rt, "c", "k", 1, NULL, 0, NULL, &ref));
    CHECK_EQ(pgs_call(rt, &ref, "incr", 4, &reply, 5000), PGS_OK);
    CHECK(reply.len == 8 && *(int64_t *)reply.data == 1);
    pgs_bytes_free(&reply);
    pgs_close(rt);
    free(b);
}

static void options_decode_and_encode(void)
{
    pgs_server_opts o = {.idle_timeout_ms = 1234, .lifecycle = PGS_PERMANENT,
                         .write_mode = PGS_WRITE_ASYNC, .fault_policy = PGS_POLICY_PARK,
                         .poison_after = 3, .max_restarts = 9, .history = 4,
                         .restart_window_ms = 777}, back;
    unsigned char buf[PGS_RECORD_OPTIONS_LEN];
    pgs_record rec = {.options = buf, .options_len = sizeof buf};
    int parked = -1;
    REQUIRE_OK(pgs_record_options_encode(&o, 1, buf));
    REQUIRE_OK(pgs_record_options(&rec, &back, &parked));
    CHECK(memcmp(&o, &back, sizeof o) == 0);
    CHECK_EQ(parked, 1);
    REQUIRE_OK(pgs_record_options_encode(&o, 0, buf));
    REQUIRE_OK(pgs_record_options(&rec, &back, &parked));
    CHECK_EQ(parked, 0);
    rec.options_len = 0; /* none stored: all inherit */
    REQUIRE_OK(pgs_record_options(&rec, &back, &parked));
    CHECK(back.lifecycle == 0 && back.history == 0 && parked == 0);
    buf[0] = 9; /* an unknown layout */
    rec.options_len = sizeof buf;
    CHECK_EQ(pgs_record_options(&rec, &back, &parked), PGS_ECORRUPT);
    o.lifecycle = 17;
    CHECK_EQ(pgs_record_options_encode(&o, 0, buf), PGS_EINVAL);
    CHECK_EQ(pgs_record_options(NULL, &back, &parked), PGS_EINVAL);
}

static int count_poison(void *arg, const pgs_poison *p)
{
    uint64_t *ids = arg;
    ids[ids[0] < 7 ? ++ids[0] : 0] = p->id;
    return 0;
}

/* A server parked by a runtime, then read and repaired on its store alone. */
static void faults_read_and_cleared_without_a_runtime(void)
{
    pgs_storage *st;
    pgs_runtime *rt;
    pgs_options opts;
    pgs_ref ref;
    pgs_server_opts park = {.fault_policy = PGS_POLICY_PARK, .max_restarts = 1};
    REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    pgs_options_init(&opts);
    opts.storage = st;
    REQUIRE_OK(pgs_open(&rt, NULL, &opts));
    REQUIRE_OK(pgs_register(rt, &counter));
    REQUIRE_OK(pgs_start(rt, "c", "p", 1, NULL, 0, &park, &ref));
    CHECK_EQ(pgs_call(rt, &ref, "crash", 5, NULL, 5000), PGS_ECRASH);
    CHECK_EQ(pgs_call(rt, &ref, "crash", 5, NULL, 5000), PGS_ECRASH);
    CHECK_EQ(pgs_call(rt, &ref, "get", 3, NULL, 5000), PGS_EPARKED);
    pgs_close(rt);

    pgs_server_info info;
    REQUIRE_OK(pgs_storage_server_info(st, &ref, &info));
    CHECK_EQ(info.parked, 1);
    CHECK_EQ(info.last_error, PGS_ECRASH);
    CHECK(info.last_message.len == 5 && memcmp(info.last_message.data, "crash", 5) == 0);
    CHECK_EQ(info.opts.fault_policy, PGS_POLICY_PARK);
    pgs_bytes_free(&info.last_message);

    uint64_t ids[8] = {0};
    REQUIRE_OK(pgs_storage_poison_list(st, &ref, count_poison, ids));
    CHECK_EQ(ids[0], 2);
    REQUIRE_OK(pgs_storage_poison_drop(st, ids[1]));
    CHECK_EQ(pgs_storage_poison_drop(st, ids[1]), PGS_ENOTFOUND);
    memset(ids, 0, sizeof ids);
    REQUIRE_OK(pgs_storage_poison_list(st, NULL, count_poison, ids));
    CHECK_EQ(ids[0], 1);

    REQUIRE_OK(pgs_storage_fault_clear(st, &ref, 0)); /* the count goes, the record stays */
    REQUIRE_OK(pgs_storage_server_info(st, &ref, &info));
    CHECK_EQ(info.crashes, 0);
    CHECK_EQ(info.last_error, PGS_ECRASH);
    pgs_bytes_free(&info.last_message);
    REQUIRE_OK(pgs_storage_fault_clear(st, &ref, 1));
    REQUIRE_OK(pgs_storage_server_info(st, &ref, &info));
    CHECK_EQ(info.last_error, 0);
    REQUIRE_OK(pgs_storage_fault_clear(st, &ref, 1)); /* none: fine */

    pgs_ref absent;
    pgs_ref_make(&absent, "c", "zz", 2);
    CHECK_EQ(pgs_storage_server_info(st, &absent, &info), PGS_ENOTFOUND);
    CHECK_EQ(pgs_storage_server_info(NULL, &ref, &info), PGS_EINVAL);
    CHECK_EQ(pgs_storage_poison_list(st, NULL, NULL, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_storage_fault_clear(NULL, &ref, 0), PGS_EINVAL);
    pgs_storage_close(st);
}

int main(void)
{
    RUN(format_renders_and_reports);
    RUN(version1_behaviour_is_never_read_past_its_end);
    RUN(options_decode_and_encode);
    RUN(faults_read_and_cleared_without_a_runtime);
    return CHECK_DONE();
}
