/*
** record.c — the stored record: its checksum, copies, and its portable
** encoding (one byte string per record, for engines that keep a value per
** key, and for export and import).
**
** The checksum is XXH3 over this byte sequence, fixed because persistent
** engines keep it across builds and hosts (integers little-endian):
**   header: name bytes and its NUL; key_len (2 bytes) and the key;
**   version (8); schema_version (4); args_len, options_len, state_len (8 each);
**   then args, options and state, each seeded with the hash so far.
** The lengths make field boundaries count: moving a byte from one field to
** the next changes the checksum.
**
** The encoding (pgs_record_encode), integers little-endian:
**   "PGSR", format (1 byte, = 1), name_len (1), key_len (2), version (8),
**   schema_version (4), args_len, options_len, state_len (8 each),
**   checksum (8); then the name (no NUL), key, args, options, state.
** Decoding checks every length against the bytes present and the checksum
** against the fields, so a damaged or truncated encoding is reported as
** PGS_ECORRUPT, never decoded into a wrong record.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* XXH3 (libxxhash): a short fixed header gathered in one buffer, then each
** byte field chained through the seed.  On the ~80-byte records of the
** hot path this costs a few ns where zlib's CRC-32 cost ~125 ns. */
static uint64_t hash_field(uint64_t h, const void *p, size_t n)
{
    return n && p ? XXH3_64bits_withSeed(p, n, h) : h;
}

uint64_t pgs_record_checksum(const pgs_record *rec)
{
    const pgs_ref *r = &rec->ref;
    size_t kl = r->key_len <= PGS_KEY_MAX ? r->key_len : PGS_KEY_MAX;
    size_t nl = strnlen(r->name, PGS_NAME_MAX) + 1;
    uint8_t hdr[PGS_NAME_MAX + 1 + 2 + PGS_KEY_MAX + 8 + 4 + 3 * 8], *p = hdr;
    memcpy(p, r->name, nl);
    p = pgsi_put_le(p + nl, r->key_len, 2);
    memcpy(p, r->key, kl);
    p = pgsi_put_le(p + kl, rec->version, 8);
    p = pgsi_put_le(p, rec->schema_version, 4);
    p = pgsi_put_le(p, rec->args_len, 8);
    p = pgsi_put_le(p, rec->options_len, 8);
    p = pgsi_put_le(p, rec->state_len, 8);
    uint64_t h = XXH3_64bits(hdr, (size_t)(p - hdr));
    h = hash_field(h, rec->args, rec->args_len);
    h = hash_field(h, rec->options, rec->options_len);
    return hash_field(h, rec->state, rec->state_len);
}

int pgsi_record_fields_present(const pgs_record *rec)
{
    return (rec->args || !rec->args_len) && (rec->options || !rec->options_len) &&
           (rec->state || !rec->state_len);
}

/* Copies n bytes to *p and advances it; returns where they went (NULL if
** n is 0, so empty fields read as NULL). */
static const void *place(unsigned char **p, const void *src, size_t n)
{
    if (!n)
        return NULL;
    void *at = *p;
    memcpy(at, src, n);
    *p += n;
    return at;
}

int pgs_record_copy(const pgs_record *src, pgs_record **out)
{
    if (!out)
        return PGS_EINVAL;
    *out = NULL;
    if (!src || !pgsi_record_fields_present(src))
        return PGS_EINVAL;
    size_t total = sizeof(pgs_record);
    if (src->args_len > SIZE_MAX - total ||
        src->options_len > SIZE_MAX - total - src->args_len ||
        src->state_len > SIZE_MAX - total - src->args_len - src->options_len)
        return PGS_ENOMEM;
    total += src->args_len + src->options_len + src->state_len;
    pgs_record *r = malloc(total);
    if (!r)
        return PGS_ENOMEM;
    *r = *src;
    unsigned char *p = (unsigned char *)(r + 1);
    r->args = place(&p, src->args, src->args_len);
    r->options = place(&p, src->options, src->options_len);
    r->state = place(&p, src->state, src->state_len);
    *out = r;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** The portable encoding.
*/
#define ENC_MAGIC "PGSR"
#define ENC_FORMAT 1
#define ENC_HEADER (4 + 1 + 1 + 2 + 8 + 4 + 3 * 8 + 8)

int pgs_record_encode(const pgs_record *rec, pgs_bytes *out)
{
    if (!out)
        return PGS_EINVAL;
    *out = (pgs_bytes){0};
    size_t nl;
    if (!rec || !pgsi_record_fields_present(rec))
        return PGS_EINVAL;
    int rc = pgsi_ref_check(&rec->ref, &nl);
    if (rc)
        return rc;
    size_t total = ENC_HEADER + nl + rec->ref.key_len;
    const size_t parts[3] = {rec->args_len, rec->options_len, rec->state_len};
    for (int i = 0; i < 3; i++) {
        if (parts[i] > SIZE_MAX - total)
            return PGS_ETOOBIG;
        total += parts[i];
    }
    unsigned char *buf = malloc(total), *p = buf;
    if (!buf)
        return PGS_ENOMEM;
    memcpy(p, ENC_MAGIC, 4);
    p[4] = ENC_FORMAT;
    p[5] = (unsigned char)nl;
    p = pgsi_put_le(p + 6, rec->ref.key_len, 2);
    p = pgsi_put_le(p, rec->version, 8);
    p = pgsi_put_le(p, rec->schema_version, 4);
    for (int i = 0; i < 3; i++)
        p = pgsi_put_le(p, parts[i], 8);
    p = pgsi_put_le(p, rec->checksum, 8);
    memcpy(p, rec->ref.name, nl);
    p += nl;
    memcpy(p, rec->ref.key, rec->ref.key_len);
    p += rec->ref.key_len;
    const void *fields[3] = {rec->args, rec->options, rec->state};
    for (int i = 0; i < 3; i++) {
        if (parts[i])
            memcpy(p, fields[i], parts[i]);
        p += parts[i];
    }
    out->data = buf;
    out->len = total;
    return PGS_OK;
}

/* Reads the header into rec (byte fields left NULL) and checks that the
** lengths it gives add up to exactly len bytes. */
static int decode_header(const unsigned char *p, size_t len, pgs_record *rec, size_t *nl)
{
    if (len < ENC_HEADER || memcmp(p, ENC_MAGIC, 4) != 0 || p[4] != ENC_FORMAT)
        return PGS_ECORRUPT;
    memset(rec, 0, sizeof *rec);
    *nl = p[5];
    uint64_t kl = pgsi_get_le(p + 6, 2);
    rec->version = pgsi_get_le(p + 8, 8);
    rec->schema_version = (uint32_t)pgsi_get_le(p + 16, 4);
    uint64_t lens[3], rest = len - ENC_HEADER;
    for (int i = 0; i < 3; i++)
        lens[i] = pgsi_get_le(p + 20 + 8 * i, 8);
    rec->checksum = pgsi_get_le(p + 44, 8);
    if (*nl == 0 || *nl > PGS_NAME_MAX || kl > PGS_KEY_MAX || *nl + kl > rest)
        return PGS_ECORRUPT;
    rest -= *nl + kl;
    for (int i = 0; i < 3; i++) {
        if (lens[i] > rest)
            return PGS_ECORRUPT;
        rest -= lens[i];
    }
    if (rest != 0)
        return PGS_ECORRUPT;
    rec->ref.key_len = (uint16_t)kl;
    rec->args_len = (size_t)lens[0];
    rec->options_len = (size_t)lens[1];
    rec->state_len = (size_t)lens[2];
    return PGS_OK;
}

/* The version of an encoded record from its header alone: checking the
** stored version before a write needs no checksum over a large state. */
int pgsi_record_encoded_version(const void *data, size_t len, uint64_t *version)
{
    pgs_record rec;
    size_t nl;
    int rc = data ? decode_header(data, len, &rec, &nl) : PGS_ECORRUPT;
    *version = rc ? 0 : rec.version;
    return rc ? rc : rec.version ? PGS_OK : PGS_ECORRUPT;
}

int pgs_record_decode(const void *data, size_t len, pgs_record **out)
{
    if (!out)
        return PGS_EINVAL;
    *out = NULL;
    if (!data && len)
        return PGS_EINVAL;
    const unsigned char *p = data;
    pgs_record rec;
    size_t nl;
    int rc = decode_header(p, len, &rec, &nl);
    if (rc)
        return rc;
    p += ENC_HEADER;
    memcpy(rec.ref.name, p, nl); /* rec was zeroed: the name ends in NUL */
    p += nl;
    memcpy(rec.ref.key, p, rec.ref.key_len);
    p += rec.ref.key_len;
    if (pgsi_ref_check(&rec.ref, NULL) || strlen(rec.ref.name) != nl)
        return PGS_ECORRUPT;
    rec.args = rec.args_len ? p : NULL;
    p += rec.args_len;
    rec.options = rec.options_len ? p : NULL;
    p += rec.options_len;
    rec.state = rec.state_len ? p : NULL;
    if (rec.version == 0 || pgs_record_checksum(&rec) != rec.checksum)
        return PGS_ECORRUPT;
    return pgs_record_copy(&rec, out);
}
