/*
** test_record.c — the portable record encoding: what pgs_record_encode
** writes, pgs_record_decode gives back exactly; and any damage — every
** truncation, every single-bit flip of a small record, trailing bytes — is
** reported as PGS_ECORRUPT, never decoded into a different record.
*/
#include "check.h"
#include "pgs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static pgs_record sample(pgs_ref *ref, const char *args, const char *opts, const void *state,
                         size_t state_len)
{
    pgs_record rec = {.ref = *ref, .version = 7, .schema_version = 3,
                      .args = args, .args_len = args ? strlen(args) : 0,
                      .options = opts, .options_len = opts ? strlen(opts) : 0,
                      .state = state, .state_len = state_len};
    rec.checksum = pgs_record_checksum(&rec);
    return rec;
}

static int same(const pgs_record *a, const pgs_record *b)
{
    return pgs_ref_equal(&a->ref, &b->ref) && a->version == b->version &&
           a->schema_version == b->schema_version && a->checksum == b->checksum &&
           a->args_len == b->args_len && a->options_len == b->options_len &&
           a->state_len == b->state_len &&
           (!a->args_len || !memcmp(a->args, b->args, a->args_len)) &&
           (!a->options_len || !memcmp(a->options, b->options, a->options_len)) &&
           (!a->state_len || !memcmp(a->state, b->state, a->state_len));
}

static void roundtrip(const pgs_record *rec)
{
    pgs_bytes enc;
    REQUIRE_OK(pgs_record_encode(rec, &enc));
    pgs_record *back = NULL;
    CHECK_EQ(pgs_record_decode(enc.data, enc.len, &back), PGS_OK);
    CHECK(back && same(rec, back));
    free(back);
    pgs_bytes_free(&enc);
}

static void encodes_and_decodes_every_shape(void)
{
    pgs_ref ref;
    unsigned char key[PGS_KEY_MAX];
    for (int i = 0; i < PGS_KEY_MAX; i++)
        key[i] = (unsigned char)i; /* every byte value */
    REQUIRE_OK(pgs_ref_make(&ref, "cart", key, sizeof key));
    pgs_record rec = sample(&ref, "start", "12345678", "state", 5);
    roundtrip(&rec);
    REQUIRE_OK(pgs_ref_make(&ref, "x", NULL, 0)); /* empty key, empty fields */
    rec = sample(&ref, NULL, NULL, NULL, 0);
    roundtrip(&rec);
    size_t big = (size_t)16 << 20; /* a 16 MiB state */
    unsigned char *state = malloc(big);
    REQUIRE(state);
    for (size_t i = 0; i < big; i++)
        state[i] = (unsigned char)(i * 31 + (i >> 13));
    REQUIRE_OK(pgs_ref_make(&ref, "big", "k", 1));
    rec = sample(&ref, "a", NULL, state, big);
    roundtrip(&rec);
    free(state);
}

static void every_truncation_and_bit_flip_is_caught(void)
{
    pgs_ref ref;
    REQUIRE_OK(pgs_ref_make(&ref, "counter", "42", 2));
    pgs_record rec = sample(&ref, "args", "12345678", "\x01\x02\x03\x04", 4);
    pgs_bytes enc;
    REQUIRE_OK(pgs_record_encode(&rec, &enc));
    unsigned char *buf = malloc(enc.len + 1);
    REQUIRE(buf);
    int wrong = 0;
    for (size_t n = 0; n < enc.len; n++) {
        pgs_record *out = NULL;
        wrong += pgs_record_decode(enc.data, n, &out) != PGS_ECORRUPT || out != NULL;
    }
    for (size_t bit = 0; bit < enc.len * 8; bit++) {
        memcpy(buf, enc.data, enc.len);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        pgs_record *out = NULL;
        int rc = pgs_record_decode(buf, enc.len, &out);
        wrong += rc != PGS_ECORRUPT;
        free(out);
    }
    memcpy(buf, enc.data, enc.len);
    buf[enc.len] = 0; /* a trailing byte */
    pgs_record *out = NULL;
    wrong += pgs_record_decode(buf, enc.len + 1, &out) != PGS_ECORRUPT;
    CHECK_EQ(wrong, 0);
    free(buf);
    pgs_bytes_free(&enc);
}

static void bad_arguments(void)
{
    pgs_record *out = (pgs_record *)1;
    pgs_bytes b;
    CHECK_EQ(pgs_record_decode(NULL, 4, &out), PGS_EINVAL);
    CHECK(out == NULL);
    CHECK_EQ(pgs_record_decode("x", 1, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_record_encode(NULL, &b), PGS_EINVAL);
    pgs_record rec = {0};
    CHECK_EQ(pgs_record_encode(&rec, &b), PGS_EREF);
    CHECK_EQ(pgs_record_decode("garbage", 7, &out), PGS_ECORRUPT);
}

int main(void)
{
    RUN(encodes_and_decodes_every_shape);
    RUN(every_truncation_and_bit_flip_is_caught);
    RUN(bad_arguments);
    return CHECK_DONE();
}
