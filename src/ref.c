/*
** ref.c — refs: building, parsing and formatting "behaviour/key".
**
** The text form is canonical: a key byte is written as itself if it is in
** [A-Za-z0-9._~-], else as %XX with upper-case hex.  The parser accepts
** only that form (no lower-case hex, no escaped unreserved byte, no raw
** reserved byte), so a key byte string and its text map one to one, and
** texts can be compared as strings.
*/
#include "internal.h"

#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

/* 1 if key byte c is written as itself. */
static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
           c == '-';
}

/* Value of an upper-case hex digit, or -1. */
static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pgs_ref_make(pgs_ref *ref, const char *name, const void *key, size_t key_len)
{
    if (!ref || !name || (!key && key_len))
        return PGS_EINVAL;
    size_t n = strnlen(name, PGS_NAME_MAX + 1);
    if (!pgsi_name_valid(name, n) || key_len > PGS_KEY_MAX)
        return PGS_EREF;
    /* Built aside, so name or key may point into *ref itself. */
    pgs_ref r;
    memset(&r, 0, sizeof r);
    memcpy(r.name, name, n);
    if (key_len)
        memcpy(r.key, key, key_len);
    r.key_len = (uint16_t)key_len;
    *ref = r;
    return PGS_OK;
}

/* Decodes the key part text[0..len) into r.  PGS_OK or PGS_EREF. */
static int parse_key(pgs_ref *r, const unsigned char *t, size_t len)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = t[i];
        if (k == PGS_KEY_MAX)
            return PGS_EREF;
        if (unreserved(c)) {
            r->key[k++] = c;
            continue;
        }
        if (c != '%' || len - i < 3)
            return PGS_EREF;
        int hi = hexval(t[i + 1]), lo = hexval(t[i + 2]);
        if (hi < 0 || lo < 0)
            return PGS_EREF;
        c = (unsigned char)(hi << 4 | lo);
        if (unreserved(c)) /* "%41" for "A": a second spelling */
            return PGS_EREF;
        r->key[k++] = c;
        i += 2;
    }
    r->key_len = (uint16_t)k;
    return PGS_OK;
}

int pgs_ref_parse(pgs_ref *ref, const char *text, size_t len)
{
    if (!ref || !text)
        return PGS_EINVAL;
    if (len == (size_t)-1)
        len = strlen(text);
    const char *slash = memchr(text, '/', len);
    if (!slash)
        return PGS_EREF;
    size_t n = (size_t)(slash - text);
    if (!pgsi_name_valid(text, n))
        return PGS_EREF;
    pgs_ref r;
    memset(&r, 0, sizeof r);
    memcpy(r.name, text, n);
    int rc = parse_key(&r, (const unsigned char *)slash + 1, len - n - 1);
    if (rc)
        return rc;
    *ref = r;
    return PGS_OK;
}

/* On PGS_ETOOBIG, *out_len still receives the length needed (without the
** NUL), like snprintf, and buf holds an empty string if size > 0. */
int pgs_ref_format(const pgs_ref *ref, char *buf, size_t size, size_t *out_len)
{
    size_t n;
    if (!buf)
        return PGS_EINVAL;
    int rc = pgsi_ref_check(ref, &n);
    if (rc)
        return rc;
    size_t need = n + 1;
    for (size_t i = 0; i < ref->key_len; i++)
        need += unreserved(ref->key[i]) ? 1 : 3;
    if (out_len)
        *out_len = need;
    if (need + 1 > size) {
        if (size)
            buf[0] = '\0';
        return PGS_ETOOBIG;
    }
    char *p = buf;
    memcpy(p, ref->name, n);
    p += n;
    *p++ = '/';
    for (size_t i = 0; i < ref->key_len; i++) {
        unsigned char c = ref->key[i];
        if (unreserved(c)) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hexdig[c >> 4];
            *p++ = hexdig[c & 15];
        }
    }
    *p = '\0';
    return PGS_OK;
}

/* Compares only the meaningful bytes, so hand-built refs with garbage past
** the name's NUL or past key_len still compare right. */
int pgs_ref_equal(const pgs_ref *a, const pgs_ref *b)
{
    if (!a || !b)
        return 0;
    if (a == b)
        return 1;
    if (a->key_len != b->key_len || a->key_len > PGS_KEY_MAX)
        return 0;
    if (strncmp(a->name, b->name, sizeof a->name) != 0)
        return 0;
    return memcmp(a->key, b->key, a->key_len) == 0;
}
