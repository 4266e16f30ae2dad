/*
** test_ref.c — refs (make, parse, format, equal), error strings, and the
** small helpers of util.c that refs and storage build on (ref hash, name
** check, stored options, pgs_buf, runtime option defaults).
**
** The random round-trips print their seed; pass it as argv[1] to replay.
*/
#include "check.h"
#include "internal.h"

#include <limits.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: plenty for test data, and replayable from the seed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
           c == '-';
}

/* Formats r (must succeed) into a static buffer. */
static const char *fmt(const pgs_ref *r)
{
    static char buf[PGS_REF_TEXT_MAX];
    size_t n = 0;
    int rc = pgs_ref_format(r, buf, sizeof buf, &n);
    CHECK_EQ(rc, PGS_OK);
    CHECK(rc || n == strlen(buf));
    return rc ? "" : buf;
}

static int parse_rc(const char *text)
{
    pgs_ref r;
    return pgs_ref_parse(&r, text, (size_t)-1);
}

/* ------------------------------------------------------------------------
** pgs_ref_make.
*/
static void make_basic(void)
{
    pgs_ref r;
    memset(&r, 0xaa, sizeof r);
    REQUIRE_OK(pgs_ref_make(&r, "counter", "42", 2));
    CHECK(strcmp(r.name, "counter") == 0);
    CHECK(r.key_len == 2 && memcmp(r.key, "42", 2) == 0);
    /* Everything past the name's NUL and past key_len is zero. */
    for (size_t i = strlen("counter"); i < sizeof r.name; i++)
        CHECK(r.name[i] == 0);
    for (size_t i = 2; i < sizeof r.key; i++)
        CHECK(r.key[i] == 0);
    pgs_ref s;
    memset(&s, 0x55, sizeof s);
    REQUIRE_OK(pgs_ref_make(&s, "counter", "42", 2));
    CHECK(memcmp(&r, &s, sizeof r) == 0);

    REQUIRE_OK(pgs_ref_make(&r, "x", NULL, 0));
    CHECK(r.key_len == 0 && strcmp(r.name, "x") == 0);
    REQUIRE_OK(pgs_ref_make(&r, "A-Za_z.09", "", 0));
}

static void make_limits(void)
{
    char name[PGS_NAME_MAX + 2];
    unsigned char key[PGS_KEY_MAX + 1] = {0};
    pgs_ref r;
    memset(name, 'n', sizeof name);
    name[PGS_NAME_MAX] = '\0';
    REQUIRE_OK(pgs_ref_make(&r, name, key, PGS_KEY_MAX));
    CHECK(strlen(r.name) == PGS_NAME_MAX && r.key_len == PGS_KEY_MAX);
    name[PGS_NAME_MAX] = 'n';
    name[PGS_NAME_MAX + 1] = '\0';
    CHECK_EQ(pgs_ref_make(&r, name, key, 1), PGS_EREF);
    CHECK_EQ(pgs_ref_make(&r, "k", key, PGS_KEY_MAX + 1), PGS_EREF);
    CHECK_EQ(pgs_ref_make(&r, "k", key, SIZE_MAX), PGS_EREF);
}

static void make_errors(void)
{
    pgs_ref r;
    CHECK_EQ(pgs_ref_make(NULL, "a", "k", 1), PGS_EINVAL);
    CHECK_EQ(pgs_ref_make(&r, NULL, "k", 1), PGS_EINVAL);
    CHECK_EQ(pgs_ref_make(&r, "a", NULL, 1), PGS_EINVAL);
    CHECK_EQ(pgs_ref_make(&r, "", "k", 1), PGS_EREF);
    const char *bad[] = {"a/b", "a b", "a%", "a~", "a:b", "ä", "a\tb", "a+b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(pgs_ref_make(&r, bad[i], "k", 1), PGS_EREF);
    /* A failed make leaves *ref alone. */
    REQUIRE_OK(pgs_ref_make(&r, "keep", "me", 2));
    CHECK_EQ(pgs_ref_make(&r, "bad name", "x", 1), PGS_EREF);
    CHECK(strcmp(r.name, "keep") == 0 && r.key_len == 2);
}

/* Name and key may come from the ref being written. */
static void make_aliasing(void)
{
    pgs_ref r;
    REQUIRE_OK(pgs_ref_make(&r, "self", "key", 3));
    REQUIRE_OK(pgs_ref_make(&r, r.name, r.key, r.key_len));
    CHECK(strcmp(r.name, "self") == 0 && r.key_len == 3 && memcmp(r.key, "key", 3) == 0);
    REQUIRE_OK(pgs_ref_make(&r, r.name, r.key + 1, 2));
    CHECK(r.key_len == 2 && memcmp(r.key, "ey", 2) == 0);
}

/* ------------------------------------------------------------------------
** pgs_ref_parse.
*/
static void parse_basic(void)
{
    pgs_ref r, want;
    REQUIRE_OK(pgs_ref_parse(&r, "counter/42", (size_t)-1));
    REQUIRE_OK(pgs_ref_make(&want, "counter", "42", 2));
    CHECK(memcmp(&r, &want, sizeof r) == 0);

    REQUIRE_OK(pgs_ref_parse(&r, "cart/user%2F7", (size_t)-1));
    REQUIRE_OK(pgs_ref_make(&want, "cart", "user/7", 6));
    CHECK(memcmp(&r, &want, sizeof r) == 0);

    REQUIRE_OK(pgs_ref_parse(&r, "a/", (size_t)-1));
    CHECK(r.key_len == 0 && strcmp(r.name, "a") == 0);
    REQUIRE_OK(pgs_ref_parse(&r, "a/%2F", (size_t)-1));
    CHECK(r.key_len == 1 && r.key[0] == '/');
    REQUIRE_OK(pgs_ref_parse(&r, "a/%00%FF~._-", (size_t)-1));
    CHECK(r.key_len == 6 && r.key[0] == 0 && r.key[1] == 0xff &&
          memcmp(r.key + 2, "~._-", 4) == 0);
    /* Only the first '/' separates; later ones must be escaped. */
    CHECK_EQ(parse_rc("a//"), PGS_EREF);
    CHECK_EQ(parse_rc("a/b/c"), PGS_EREF);
    REQUIRE_OK(pgs_ref_parse(&r, "a/b%2Fc", (size_t)-1));
    CHECK(r.key_len == 3 && memcmp(r.key, "b/c", 3) == 0);
}

/* An explicit length: the text need not be NUL-terminated. */
static void parse_with_length(void)
{
    pgs_ref r;
    REQUIRE_OK(pgs_ref_parse(&r, "counter/42garbage", 10));
    CHECK(r.key_len == 2 && memcmp(r.key, "42", 2) == 0);
    REQUIRE_OK(pgs_ref_parse(&r, "counter/42%2", 10));
    CHECK(r.key_len == 2);
    CHECK_EQ(pgs_ref_parse(&r, "counter/4", 7), PGS_EREF); /* no slash in 7 */
    CHECK_EQ(pgs_ref_parse(&r, "a/%41", 4), PGS_EREF);     /* "a/%4" */
    const char nul[] = {'a', '/', 'b', '\0', 'c'};
    CHECK_EQ(pgs_ref_parse(&r, nul, sizeof nul), PGS_EREF); /* raw NUL in key */
    const char nul2[] = {'a', '\0', '/', 'c'};
    CHECK_EQ(pgs_ref_parse(&r, nul2, sizeof nul2), PGS_EREF); /* NUL in name */
    CHECK_EQ(pgs_ref_parse(&r, "", 0), PGS_EREF);
}

static void parse_errors(void)
{
    pgs_ref r;
    CHECK_EQ(pgs_ref_parse(NULL, "a/b", (size_t)-1), PGS_EINVAL);
    CHECK_EQ(pgs_ref_parse(&r, NULL, (size_t)-1), PGS_EINVAL);
    CHECK_EQ(pgs_ref_parse(&r, NULL, 0), PGS_EINVAL);
    CHECK_EQ(parse_rc("counter"), PGS_EREF);      /* no slash */
    CHECK_EQ(parse_rc(""), PGS_EREF);
    CHECK_EQ(parse_rc("/k"), PGS_EREF);           /* empty name */
    CHECK_EQ(parse_rc("co unter/k"), PGS_EREF);   /* bad name char */
    CHECK_EQ(parse_rc("c%41/k"), PGS_EREF);       /* names are never escaped */
    CHECK_EQ(parse_rc("c~/k"), PGS_EREF);
    CHECK_EQ(parse_rc("a/%G1"), PGS_EREF);        /* bad escape */
    CHECK_EQ(parse_rc("a/%1G"), PGS_EREF);
    CHECK_EQ(parse_rc("a/%4"), PGS_EREF);         /* truncated */
    CHECK_EQ(parse_rc("a/%"), PGS_EREF);
    CHECK_EQ(parse_rc("a/x%"), PGS_EREF);
    CHECK_EQ(parse_rc("a/%2f"), PGS_EREF);        /* lower-case hex */
    CHECK_EQ(parse_rc("a/%fF"), PGS_EREF);
    CHECK_EQ(parse_rc("a/%41"), PGS_EREF);        /* escaped unreserved 'A' */
    CHECK_EQ(parse_rc("a/%7E"), PGS_EREF);        /* escaped '~' */
    CHECK_EQ(parse_rc("a/b c"), PGS_EREF);        /* unescaped space */
    CHECK_EQ(parse_rc("a/b+c"), PGS_EREF);
    CHECK_EQ(parse_rc("a/b%c"), PGS_EREF);
    CHECK_EQ(parse_rc("a/\xff"), PGS_EREF);       /* raw high byte */
    CHECK_EQ(parse_rc("a/%%41"), PGS_EREF);
    CHECK_EQ(parse_rc("a/%+1"), PGS_EREF);
    CHECK_EQ(parse_rc("a/% 1"), PGS_EREF);

    char text[PGS_NAME_MAX + 1 + 3 * (PGS_KEY_MAX + 1) + 8];
    memset(text, 'n', PGS_NAME_MAX + 1); /* name too long */
    strcpy(text + PGS_NAME_MAX + 1, "/k");
    CHECK_EQ(parse_rc(text), PGS_EREF);
    strcpy(text + PGS_NAME_MAX, "/k"); /* 63: fine */
    CHECK_EQ(parse_rc(text), PGS_OK);

    strcpy(text, "k/");
    memset(text + 2, 'x', PGS_KEY_MAX);
    text[2 + PGS_KEY_MAX] = '\0';
    CHECK_EQ(parse_rc(text), PGS_OK);
    strcat(text, "x"); /* key too long */
    CHECK_EQ(parse_rc(text), PGS_EREF);
    strcpy(text, "k/");
    for (int i = 0; i < PGS_KEY_MAX; i++)
        strcat(text, "%2F");
    CHECK_EQ(parse_rc(text), PGS_OK);
    strcat(text, "%2F");
    CHECK_EQ(parse_rc(text), PGS_EREF);

    /* A failed parse leaves *ref alone. */
    REQUIRE_OK(pgs_ref_make(&r, "keep", "me", 2));
    CHECK_EQ(pgs_ref_parse(&r, "a/%zz", (size_t)-1), PGS_EREF);
    CHECK(strcmp(r.name, "keep") == 0 && r.key_len == 2);
}

/* ------------------------------------------------------------------------
** pgs_ref_format.
*/
static void format_basic(void)
{
    pgs_ref r;
    REQUIRE_OK(pgs_ref_make(&r, "cart", "user/7", 6));
    CHECK(strcmp(fmt(&r), "cart/user%2F7") == 0);
    REQUIRE_OK(pgs_ref_make(&r, "counter", "42", 2));
    CHECK(strcmp(fmt(&r), "counter/42") == 0);
    REQUIRE_OK(pgs_ref_make(&r, "e", NULL, 0));
    CHECK(strcmp(fmt(&r), "e/") == 0);
    REQUIRE_OK(pgs_ref_make(&r, "b", "\x00\xff ~%", 5));
    CHECK(strcmp(fmt(&r), "b/%00%FF%20~%25") == 0);
    char buf[64];
    REQUIRE_OK(pgs_ref_format(&r, buf, sizeof buf, NULL)); /* out_len optional */
    CHECK(strcmp(buf, "b/%00%FF%20~%25") == 0);
}

static void format_sizes(void)
{
    pgs_ref r;
    char buf[32];
    size_t n = 0;
    REQUIRE_OK(pgs_ref_make(&r, "counter", "42", 2)); /* "counter/42": 10 */
    CHECK_EQ(pgs_ref_format(&r, buf, 11, &n), PGS_OK);
    CHECK(n == 10 && strcmp(buf, "counter/42") == 0);
    memset(buf, 'z', sizeof buf);
    n = 0;
    CHECK_EQ(pgs_ref_format(&r, buf, 10, &n), PGS_ETOOBIG);
    CHECK(buf[0] == '\0');
    CHECK(n == 10); /* the length it needs, like snprintf */
    CHECK_EQ(pgs_ref_format(&r, buf, 1, NULL), PGS_ETOOBIG);
    CHECK_EQ(pgs_ref_format(&r, buf, 0, NULL), PGS_ETOOBIG);
    CHECK(buf[0] == '\0');

    /* The longest possible text fits PGS_REF_TEXT_MAX exactly. */
    char name[PGS_NAME_MAX + 1];
    unsigned char key[PGS_KEY_MAX];
    memset(name, 'N', PGS_NAME_MAX);
    name[PGS_NAME_MAX] = '\0';
    memset(key, 0xff, sizeof key);
    REQUIRE_OK(pgs_ref_make(&r, name, key, sizeof key));
    char big[PGS_REF_TEXT_MAX];
    CHECK_EQ(pgs_ref_format(&r, big, sizeof big, &n), PGS_OK);
    CHECK(n == PGS_REF_TEXT_MAX - 1 && strlen(big) == n);
    CHECK_EQ(pgs_ref_format(&r, big, sizeof big - 1, &n), PGS_ETOOBIG);
}

static void format_errors(void)
{
    pgs_ref r;
    char buf[PGS_REF_TEXT_MAX];
    REQUIRE_OK(pgs_ref_make(&r, "ok", "k", 1));
    CHECK_EQ(pgs_ref_format(NULL, buf, sizeof buf, NULL), PGS_EINVAL);
    CHECK_EQ(pgs_ref_format(&r, NULL, sizeof buf, NULL), PGS_EINVAL);
    pgs_ref bad = r;
    memset(bad.name, 'a', sizeof bad.name); /* no NUL */
    CHECK_EQ(pgs_ref_format(&bad, buf, sizeof buf, NULL), PGS_EREF);
    bad = r;
    bad.name[0] = '\0'; /* empty */
    CHECK_EQ(pgs_ref_format(&bad, buf, sizeof buf, NULL), PGS_EREF);
    bad = r;
    bad.name[1] = '/';
    CHECK_EQ(pgs_ref_format(&bad, buf, sizeof buf, NULL), PGS_EREF);
    bad = r;
    bad.key_len = PGS_KEY_MAX + 1;
    CHECK_EQ(pgs_ref_format(&bad, buf, sizeof buf, NULL), PGS_EREF);
}

/* ------------------------------------------------------------------------
** pgs_ref_equal.
*/
static void equal_cases(void)
{
    pgs_ref a, b;
    REQUIRE_OK(pgs_ref_make(&a, "n", "key", 3));
    REQUIRE_OK(pgs_ref_make(&b, "n", "key", 3));
    CHECK(pgs_ref_equal(&a, &b) == 1);
    CHECK(pgs_ref_equal(&a, &a) == 1);
    REQUIRE_OK(pgs_ref_make(&b, "m", "key", 3));
    CHECK(pgs_ref_equal(&a, &b) == 0);
    REQUIRE_OK(pgs_ref_make(&b, "n", "kez", 3));
    CHECK(pgs_ref_equal(&a, &b) == 0);
    REQUIRE_OK(pgs_ref_make(&b, "n", "ke", 2));
    CHECK(pgs_ref_equal(&a, &b) == 0);
    REQUIRE_OK(pgs_ref_make(&b, "nn", "key", 3));
    CHECK(pgs_ref_equal(&a, &b) == 0);
    /* Bytes past the name's NUL and past key_len do not count. */
    REQUIRE_OK(pgs_ref_make(&b, "n", "key", 3));
    b.name[5] = 'x';
    b.key[10] = 9;
    CHECK(pgs_ref_equal(&a, &b) == 1);
    CHECK(pgs_ref_equal(NULL, &b) == 0);
    CHECK(pgs_ref_equal(&a, NULL) == 0);
    CHECK(pgs_ref_equal(NULL, NULL) == 0);
}

/* ------------------------------------------------------------------------
** Round trips.
*/

/* Checks key under name survives make -> format -> parse, and that the
** text is canonical (upper-case escapes exactly where needed). */
static void roundtrip(const char *name, const unsigned char *key, size_t len)
{
    pgs_ref r, back;
    REQUIRE_OK(pgs_ref_make(&r, name, key, len));
    char text[PGS_REF_TEXT_MAX];
    size_t n = 0;
    CHECK_EQ(pgs_ref_format(&r, text, sizeof text, &n), PGS_OK);
    size_t want = strlen(name) + 1;
    for (size_t i = 0; i < len; i++)
        want += unreserved(key[i]) ? 1 : 3;
    CHECK(n == want && strlen(text) == n);
    for (size_t i = 0; i < n; i++)
        CHECK(text[i] > ' ' && text[i] < 0x7f && !(text[i] >= 'a' && text[i] <= 'f' &&
                                                   i >= 2 && text[i - 1] == '%'));
    memset(&back, 0x77, sizeof back);
    CHECK_EQ(pgs_ref_parse(&back, text, (size_t)-1), PGS_OK);
    CHECK(memcmp(&back, &r, sizeof r) == 0);
    CHECK(pgs_ref_equal(&back, &r));
    CHECK(pgsi_ref_hash(&back) == pgsi_ref_hash(&r));
    CHECK_EQ(pgs_ref_parse(&back, text, n), PGS_OK);
    CHECK(memcmp(&back, &r, sizeof r) == 0);
}

static void every_byte_value(void)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (unsigned char)i;
        roundtrip("b", &all[i], 1);
    }
    roundtrip("all", all, sizeof all);
    pgs_ref r;
    REQUIRE_OK(pgs_ref_make(&r, "b", all, 256));
    const char *t = fmt(&r);
    CHECK(strncmp(t, "b/%00%01%02", 11) == 0);
    CHECK(strstr(t, "%2C-.%2F0123456789%3A") != NULL);
    CHECK(strstr(t, "%40ABC") != NULL && strstr(t, "Z%5B%5C%5D%5E_%60abc") != NULL);
    CHECK(strstr(t, "xyz%7B%7C%7D~%7F%80") != NULL);
    CHECK(strcmp(t + strlen(t) - 6, "%FE%FF") == 0);
}

static void max_lengths(void)
{
    char name[PGS_NAME_MAX + 1];
    unsigned char key[PGS_KEY_MAX];
    memset(name, 'z', PGS_NAME_MAX);
    name[PGS_NAME_MAX] = '\0';
    memset(key, '/', sizeof key);
    roundtrip(name, key, sizeof key);
    memset(key, 'k', sizeof key);
    roundtrip(name, key, sizeof key);
    roundtrip(name, key, 0);
}

static const char name_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

static void random_roundtrips(void)
{
    for (int it = 0; it < 20000; it++) {
        char name[PGS_NAME_MAX + 1];
        size_t nl = 1 + rng() % PGS_NAME_MAX;
        for (size_t i = 0; i < nl; i++)
            name[i] = name_chars[rng() % (sizeof name_chars - 1)];
        name[nl] = '\0';
        unsigned char key[PGS_KEY_MAX];
        size_t kl = it % 4 == 0 ? rng() % 8 : rng() % (PGS_KEY_MAX + 1);
        int mode = (int)(rng() % 3); /* binary, text-like, escapes only */
        for (size_t i = 0; i < kl; i++) {
            uint64_t x = rng();
            key[i] = mode == 0   ? (unsigned char)x
                     : mode == 1 ? (x % 4 ? (unsigned char)name_chars[x % 64] : (unsigned char)(x >> 8))
                                 : (unsigned char)"/% \0\xff"[x % 5];
        }
        roundtrip(name, key, kl);
        if (check_failures_) {
            fprintf(stderr, "random_roundtrips: failed at iteration %d\n", it);
            return;
        }
    }
}

/* Random texts: whatever parses must format back to the same text. */
static void random_texts_canonical(void)
{
    static const char alphabet[] = "ab/%0123456789ABCDEFaf~ .";
    int parsed = 0;
    for (int it = 0; it < 50000; it++) {
        char text[24];
        size_t n = 1 + rng() % (sizeof text - 1);
        for (size_t i = 0; i < n; i++)
            text[i] = alphabet[rng() % (sizeof alphabet - 1)];
        pgs_ref r;
        if (pgs_ref_parse(&r, text, n) != PGS_OK)
            continue;
        parsed++;
        char back[PGS_REF_TEXT_MAX];
        size_t bn = 0;
        CHECK_EQ(pgs_ref_format(&r, back, sizeof back, &bn), PGS_OK);
        CHECK(bn == n && memcmp(back, text, n) == 0);
        if (check_failures_) {
            fprintf(stderr, "random_texts_canonical: '%.*s'\n", (int)n, text);
            return;
        }
    }
    CHECK(parsed > 500); /* the alphabet makes valid texts common enough */
}

/* ------------------------------------------------------------------------
** Error strings.
*/
static void error_strings(void)
{
    static const int codes[] = {
#define CODE_(name, val, msg) PGS_##name,
        PGS_ERRNO_MAP(CODE_)
#undef CODE_
    };
    static const char *const names[] = {
#define NAME_(name, val, msg) "PGS_" #name,
        PGS_ERRNO_MAP(NAME_)
#undef NAME_
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = pgs_strerror(codes[i]), *e = pgs_errname(codes[i]);
        CHECK(codes[i] < 0);
        CHECK(s != NULL && strcmp(s, "unknown error") != 0 && *s);
        CHECK(e != NULL && strcmp(e, names[i]) == 0);
        for (size_t j = 0; j < i; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(s, pgs_strerror(codes[j])) != 0);
            CHECK(strcmp(e, pgs_errname(codes[j])) != 0);
        }
    }
    CHECK(strcmp(pgs_strerror(PGS_OK), "success") == 0);
    CHECK(strcmp(pgs_errname(PGS_OK), "PGS_OK") == 0);
    CHECK(strcmp(pgs_errname(PGS_ENOTFOUND), "PGS_ENOTFOUND") == 0);
    CHECK(strcmp(pgs_strerror(PGS_ENOTFOUND), "no such server") == 0);
    const int unknown[] = {1, 42, -999, INT_MIN, INT_MAX, -(int)n - 1};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK(strcmp(pgs_strerror(unknown[i]), "unknown error") == 0);
        CHECK(strcmp(pgs_errname(unknown[i]), "PGS_E?") == 0);
    }
}

/* ------------------------------------------------------------------------
** util.c helpers.
*/
static void ref_hash(void)
{
    pgs_ref a, b;
    REQUIRE_OK(pgs_ref_make(&a, "a", "bc", 2));
    REQUIRE_OK(pgs_ref_make(&b, "ab", "c", 1));
    CHECK(pgsi_ref_hash(&a) != pgsi_ref_hash(&b));
    REQUIRE_OK(pgs_ref_make(&a, "n", "", 0));
    REQUIRE_OK(pgs_ref_make(&b, "n", "", 1));
    CHECK(pgsi_ref_hash(&a) != pgsi_ref_hash(&b));
    /* Garbage past the meaningful bytes does not change it. */
    REQUIRE_OK(pgs_ref_make(&a, "name", "key", 3));
    b = a;
    b.name[20] = 'q';
    b.key[3] = 1;
    CHECK(pgsi_ref_hash(&a) == pgsi_ref_hash(&b));
    /* Sequential keys spread over the low bits (buckets) and the top bits
    ** (memory: shards): 4096 keys into 64 slots, each gets some. */
    unsigned low[64] = {0}, top[64] = {0};
    for (uint32_t i = 0; i < 4096; i++) {
        REQUIRE_OK(pgs_ref_make(&a, "seq", &i, sizeof i));
        uint64_t h = pgsi_ref_hash(&a);
        low[h & 63]++;
        top[h >> 58]++;
    }
    for (int i = 0; i < 64; i++)
        CHECK(low[i] > 20 && low[i] < 120 && top[i] > 20 && top[i] < 120);
}

static void name_valid(void)
{
    CHECK(pgsi_name_valid("a", 1));
    CHECK(pgsi_name_valid("A.b_c-9", 7));
    CHECK(!pgsi_name_valid("", 0));
    CHECK(!pgsi_name_valid(NULL, 1));
    CHECK(!pgsi_name_valid("a/b", 3));
    CHECK(!pgsi_name_valid("a~", 2));
    CHECK(pgsi_name_valid("ab/", 2)); /* only len bytes count */
    char name[PGS_NAME_MAX + 1];
    memset(name, 'x', sizeof name);
    CHECK(pgsi_name_valid(name, PGS_NAME_MAX));
    CHECK(!pgsi_name_valid(name, PGS_NAME_MAX + 1));
}

static void opts_layout(void)
{
    pgs_server_opts o = {.idle_timeout_ms = 0x01020304, .lifecycle = PGS_PERMANENT,
                         .write_mode = PGS_WRITE_ASYNC, .fault_policy = PGS_POLICY_PARK,
                         .poison_after = 3, .max_restarts = 0x0506, .history = 0x0708,
                         .restart_window_ms = 0x090a0b0c};
    unsigned char b[PGSI_OPTS_LEN];
    pgsi_opts_encode(&o, 1, b);
    const unsigned char want[PGSI_OPTS_LEN] = {2, 3, 2, 1, 4, 3, 2, 1, 4, 3,
                                               6, 5, 8, 7, 0, 0, 0xc, 0xb, 0xa, 9};
    CHECK(memcmp(b, want, sizeof b) == 0);
    pgs_server_opts d;
    int parked = 0;
    memset(&d, 0xee, sizeof d);
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_OK);
    CHECK(memcmp(&d, &o, sizeof d) == 0 && parked == 1);

    o = (pgs_server_opts){.idle_timeout_ms = PGS_IDLE_NEVER};
    pgsi_opts_encode(&o, 0, b);
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_OK);
    CHECK(d.idle_timeout_ms == PGS_IDLE_NEVER && d.lifecycle == 0 && d.write_mode == 0 &&
          parked == 0);

    CHECK_EQ(pgsi_opts_decode(b, sizeof b - 1, &d, &parked), PGS_ECORRUPT);
    d.lifecycle = 9; /* no options stored (a record written by a tool): all inherit */
    CHECK_EQ(pgsi_opts_decode(NULL, 0, &d, &parked), PGS_OK);
    CHECK(d.idle_timeout_ms == 0 && d.lifecycle == 0 && d.write_mode == 0 && !parked);
    /* Format 1, before faults: 8 bytes, byte 3 reserved. */
    unsigned char x[9] = {1, 1, 1, 0, 0x10, 0, 0, 0, 0};
    CHECK_EQ(pgsi_opts_decode(x, 9, &d, &parked), PGS_ECORRUPT);
    CHECK_EQ(pgsi_opts_decode(x, 8, &d, &parked), PGS_OK);
    CHECK(d.idle_timeout_ms == 16 && d.lifecycle == 1 && d.fault_policy == 0 && !parked);
    x[0] = 3; /* unknown format */
    CHECK_EQ(pgsi_opts_decode(x, 8, &d, &parked), PGS_ECORRUPT);
    x[0] = 1, x[1] = PGS_PERMANENT + 1;
    CHECK_EQ(pgsi_opts_decode(x, 8, &d, &parked), PGS_ECORRUPT);
    x[1] = 1, x[2] = PGS_WRITE_ON_PASSIVATE + 1;
    CHECK_EQ(pgsi_opts_decode(x, 8, &d, &parked), PGS_ECORRUPT);
    x[2] = 1, x[3] = 1; /* reserved byte set */
    CHECK_EQ(pgsi_opts_decode(x, 8, &d, &parked), PGS_ECORRUPT);
    /* Format 2: unknown values and reserved bytes are refused. */
    pgsi_opts_encode(&o, 0, b);
    b[8] = PGS_POLICY_PARK + 1;
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_ECORRUPT);
    b[8] = 0, b[9] = PGSI_POISON_MAX + 1;
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_ECORRUPT);
    b[9] = 0, b[14] = 3; /* history_messages is 0, 1 or 2 */
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_ECORRUPT);
    b[14] = 0, b[15] = 1; /* reserved */
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_ECORRUPT);
    b[15] = 0, b[3] = 2;
    CHECK_EQ(pgsi_opts_decode(b, sizeof b, &d, &parked), PGS_ECORRUPT);
    /* A cause may follow; pgs_record_cause checks it. */
    unsigned char c[PGSI_OPTS_LEN + 11];
    pgsi_opts_encode(&o, 0, c);
    CHECK_EQ(pgsi_cause_encode(2, "abc", 3, c + PGSI_OPTS_LEN), 11);
    CHECK_EQ(pgsi_opts_decode(c, sizeof c, &d, &parked), PGS_OK);
    pgs_record rec = {.options = c, .options_len = sizeof c};
    int kind;
    const void *msg;
    size_t len;
    CHECK_EQ(pgs_record_cause(&rec, &kind, &msg, &len), PGS_OK);
    CHECK(kind == 2 && len == 3 && !memcmp(msg, "abc", 3));
    rec.options_len--; /* its length no longer matches */
    CHECK_EQ(pgs_record_cause(&rec, &kind, &msg, &len), PGS_ECORRUPT);
    rec.options_len = PGSI_OPTS_LEN;
    CHECK_EQ(pgs_record_cause(&rec, &kind, &msg, &len), PGS_ENOTFOUND);
}

static void buf_growth(void)
{
    pgs_buf b;
    pgsi_buf_init(&b, 100);
    CHECK_EQ(pgs_buf_append(&b, NULL, 0), PGS_OK);
    CHECK(b.len == 0);
    CHECK_EQ(pgs_buf_append(&b, NULL, 1), PGS_EINVAL);
    CHECK_EQ(pgs_buf_append(NULL, "x", 1), PGS_EINVAL);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(pgs_buf_append(&b, "0123456789", 10), PGS_OK);
    CHECK(b.len == 100 && b.cap <= 100);
    CHECK_EQ(pgs_buf_append(&b, "x", 1), PGS_ETOOBIG);
    CHECK(b.len == 100 && memcmp(b.data + 90, "0123456789", 10) == 0);
    CHECK_EQ(pgs_buf_append(&b, "", 0), PGS_OK);
    pgsi_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0);
    pgsi_buf_free(&b); /* twice is fine */

    pgsi_buf_init(&b, 10);
    CHECK_EQ(pgs_buf_append(&b, "0123456789a", 11), PGS_ETOOBIG);
    CHECK(b.len == 0);
    CHECK_EQ(pgs_buf_append(&b, "0123456789", 10), PGS_OK);
    pgsi_buf_free(&b);

    /* Geometric growth: a million one-byte appends, few reallocations. */
    pgs_buf z = {0}; /* max 0: no bound */
    size_t grows = 0, cap = 0;
    for (int i = 0; i < 1000000; i++) {
        unsigned char c = (unsigned char)i;
        if (pgs_buf_append(&z, &c, 1) != PGS_OK) {
            CHECK(!"append failed");
            break;
        }
        if (z.cap != cap)
            grows++, cap = z.cap;
    }
    CHECK(z.len == 1000000 && grows < 30);
    CHECK(z.data[999999] == (unsigned char)999999);
    pgsi_buf_free(&z);
}

static void bytes_free(void)
{
    pgs_bytes b = {malloc(10), 10};
    pgs_bytes_free(&b);
    CHECK(b.data == NULL && b.len == 0);
    pgs_bytes_free(&b);
    pgs_bytes_free(NULL);
}

static void options_defaults(void)
{
    pgs_options o;
    memset(&o, 0xff, sizeof o);
    pgs_options_init(&o);
    CHECK(o.version == PGS_OPTIONS_VERSION && o.workers == 0 &&
          o.idle_timeout_ms == 30000 && o.max_message_size == (size_t)16 << 20 &&
          o.storage == NULL && o.default_call_timeout_ms == 5000);
    pgs_options_init(NULL);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0)
                             : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    if (!seed)
        seed = 1;
    rng_state = seed;
    fprintf(stderr, "test_ref: seed %llu (replay: test_ref %llu)\n",
            (unsigned long long)seed, (unsigned long long)seed);
    RUN(make_basic);
    RUN(make_limits);
    RUN(make_errors);
    RUN(make_aliasing);
    RUN(parse_basic);
    RUN(parse_with_length);
    RUN(parse_errors);
    RUN(format_basic);
    RUN(format_sizes);
    RUN(format_errors);
    RUN(equal_cases);
    RUN(every_byte_value);
    RUN(max_lengths);
    RUN(random_roundtrips);
    RUN(random_texts_canonical);
    RUN(error_strings);
    RUN(ref_hash);
    RUN(name_valid);
    RUN(opts_layout);
    RUN(buf_growth);
    RUN(bytes_free);
    RUN(options_defaults);
    return CHECK_DONE();
}
