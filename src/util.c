/*
** util.c — small helpers shared by the whole library: error strings, the
** growable pgs_buf, the stored options layout, ref hashing and name checks,
** and the runtime options' defaults.
*/
#include "internal.h"

#include <xxhash.h>

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
** Error codes.  Both tables come from PGS_ERRNO_MAP so they cannot drift.
*/
const char *pgs_strerror(int code)
{
    switch (code) {
    case PGS_OK:
        return "success";
#define PGS_STRERR_(name, val, msg) \
    case PGS_##name:                \
        return msg;
        PGS_ERRNO_MAP(PGS_STRERR_)
#undef PGS_STRERR_
    }
    return "unknown error";
}

const char *pgs_errname(int code)
{
    switch (code) {
    case PGS_OK:
        return "PGS_OK";
#define PGS_ERRNAME_(name, val, msg) \
    case PGS_##name:                 \
        return "PGS_" #name;
        PGS_ERRNO_MAP(PGS_ERRNAME_)
#undef PGS_ERRNAME_
    }
    return "PGS_E?";
}

void pgs_bytes_free(pgs_bytes *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* ------------------------------------------------------------------------
** pgs_buf.  max == 0 means "no bound but memory": a zero-initialised buffer
** is usable as is.
*/
void pgsi_buf_init(pgs_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

/* Frees the bytes; the buffer is empty and reusable afterwards (max kept). */
void pgsi_buf_free(pgs_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Grows b->cap to at least `need`, doubling so n appends cost O(n). */
static int buf_reserve(pgs_buf *b, size_t need, size_t limit)
{
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > limit)
        cap = limit; /* never hold more than max allows */
    unsigned char *p = realloc(b->data, cap);
    if (!p)
        return PGS_ENOMEM;
    b->data = p;
    b->cap = cap;
    return PGS_OK;
}

int pgs_buf_append(pgs_buf *b, const void *data, size_t len)
{
    if (!b || (!data && len))
        return PGS_EINVAL;
    size_t limit = b->max ? b->max : SIZE_MAX;
    if (b->len > limit || len > limit - b->len)
        return PGS_ETOOBIG;
    if (len == 0)
        return PGS_OK;
    if (b->len + len > b->cap) {
        int rc = buf_reserve(b, b->len + len, limit);
        if (rc)
            return rc;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return PGS_OK;
}

/* format is a version 2 slot: b->version is checked before it is read. */
int pgs_behaviour_format(const pgs_behaviour *b, const void *data, size_t len,
                         uint32_t schema, pgs_bytes *out)
{
    if (!out)
        return PGS_EINVAL;
    out->data = NULL;
    out->len = 0;
    if (!b || (!data && len))
        return PGS_EINVAL;
    if (b->version < 1 || b->version > PGS_BEHAVIOUR_VERSION)
        return PGS_EVERSION;
    if (b->version < 2 || !b->format)
        return PGS_ENOTSUP;
    pgs_buf buf;
    pgsi_buf_init(&buf, 0);
    int rc = b->format(data, len, schema, &buf) ? PGS_ECALLBACK : PGS_OK;
    if (!rc)
        rc = pgs_buf_append(&buf, "", 1); /* the NUL */
    if (rc) {
        pgsi_buf_free(&buf);
        return rc;
    }
    out->data = buf.data;
    out->len = buf.len - 1;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Stored options, a fixed little-endian layout so that a record written
** by one build or host reads back in any other.  Format 2 (20 bytes):
**   0 format (2)   1 lifecycle   2 write mode   3 flags (bit 0: parked)
**   4..7 idle_timeout_ms   8 fault_policy   9 poison_after
**   10..11 max_restarts   12..13 history   14 history_messages
**   15 reserved (0)   16..19 restart_window_ms
** then, if the record keeps the message that made it (its cause): kind,
** info kind, two reserved bytes (0), its length (4), its bytes.
** Format 1 (8 bytes, before faults) is bytes 0..7 with byte 3 zero.
*/
#define CAUSE_HEAD 8
#define OPTS_FORMAT 2
#define OPTS_V1_LEN 8

void pgsi_opts_encode(const pgs_server_opts *o, int parked, unsigned char out[PGSI_OPTS_LEN])
{
    memset(out, 0, PGSI_OPTS_LEN);
    out[0] = OPTS_FORMAT;
    out[1] = o->lifecycle;
    out[2] = o->write_mode;
    out[3] = parked ? 1 : 0;
    pgsi_put_le(out + 4, o->idle_timeout_ms, 4);
    out[8] = o->fault_policy;
    out[9] = o->poison_after;
    pgsi_put_le(out + 10, o->max_restarts, 2);
    pgsi_put_le(out + 12, o->history, 2);
    out[14] = o->history_messages;
    pgsi_put_le(out + 16, o->restart_window_ms, 4);
}

size_t pgsi_cause_encode(int kind, const void *msg, size_t len, unsigned char *out)
{
    if (out) {
        out[0] = (unsigned char)kind;
        out[1] = out[2] = out[3] = 0;
        pgsi_put_le(out + 4, (uint32_t)len, 4);
        if (len)
            memcpy(out + CAUSE_HEAD, msg, len);
    }
    return CAUSE_HEAD + len;
}

int pgs_record_cause(const pgs_record *rec, int *kind, const void **msg, size_t *len)
{
    if (!rec || !kind || !msg || !len)
        return PGS_EINVAL;
    const unsigned char *p = rec->options;
    if (rec->options_len <= PGSI_OPTS_LEN || !p || p[0] != OPTS_FORMAT)
        return rec->options_len > PGSI_OPTS_LEN ? PGS_ECORRUPT : PGS_ENOTFOUND;
    p += PGSI_OPTS_LEN;
    size_t n = rec->options_len - PGSI_OPTS_LEN;
    if (n < CAUSE_HEAD || (uint32_t)pgsi_get_le(p + 4, 4) != n - CAUSE_HEAD || p[0] < 1 || p[0] > 3 ||
        p[1] || p[2] || p[3])
        return PGS_ECORRUPT;
    *kind = p[0];
    *msg = p + CAUSE_HEAD;
    *len = n - CAUSE_HEAD;
    return PGS_OK;
}

/* 0 if every value of o is one pgs knows. */
int pgsi_opts_check(const pgs_server_opts *o)
{
    return o->lifecycle > PGS_PERMANENT || o->write_mode > PGS_WRITE_ON_PASSIVATE ||
           o->fault_policy > PGS_POLICY_PARK || o->poison_after > PGSI_POISON_MAX ||
           o->history_messages > 2;
}

int pgsi_opts_decode(const void *data, size_t len, pgs_server_opts *o, int *parked)
{
    const unsigned char *p = data;
    if (!o || !parked)
        return PGS_ECORRUPT;
    memset(o, 0, sizeof *o);
    *parked = 0;
    if (len == 0) /* none stored: every option inherits */
        return PGS_OK;
    if (!p || !((p[0] == 1 && len == OPTS_V1_LEN) || (p[0] == OPTS_FORMAT && len >= PGSI_OPTS_LEN)))
        return PGS_ECORRUPT; /* (a cause after format 2 is checked by pgs_record_cause) */
    if (p[3] > (p[0] == 1 ? 0 : 1))
        return PGS_ECORRUPT;
    o->lifecycle = p[1];
    o->write_mode = p[2];
    o->idle_timeout_ms = (uint32_t)pgsi_get_le(p + 4, 4);
    *parked = p[3];
    if (p[0] == OPTS_FORMAT) {
        if (p[15])
            return PGS_ECORRUPT;
        o->history_messages = p[14];
        o->fault_policy = p[8];
        o->poison_after = p[9];
        o->max_restarts = (uint16_t)(uint32_t)pgsi_get_le(p + 10, 2);
        o->history = (uint16_t)(uint32_t)pgsi_get_le(p + 12, 2);
        o->restart_window_ms = (uint32_t)pgsi_get_le(p + 16, 4);
    }
    return pgsi_opts_check(o) ? PGS_ECORRUPT : PGS_OK;
}

int pgs_record_options(const pgs_record *rec, pgs_server_opts *opts, int *parked)
{
    if (!rec || !opts || !parked || (!rec->options && rec->options_len))
        return PGS_EINVAL;
    return pgsi_opts_decode(rec->options, rec->options_len, opts, parked);
}

int pgs_record_options_encode(const pgs_server_opts *opts, int parked,
                              unsigned char out[PGS_RECORD_OPTIONS_LEN])
{
    if (!opts || !out || pgsi_opts_check(opts))
        return PGS_EINVAL;
    pgsi_opts_encode(opts, parked, out);
    return PGS_OK;
}

/* XXH3 (libxxhash) of the name with its NUL, then of the key seeded with
** that: ("a","bc") and ("ab","c") hash apart. */
uint64_t pgsi_ref_hash(const pgs_ref *ref)
{
    size_t nl = strnlen(ref->name, sizeof ref->name);
    size_t kl = ref->key_len <= PGS_KEY_MAX ? ref->key_len : PGS_KEY_MAX;
    uint64_t h = XXH3_64bits(ref->name, nl < sizeof ref->name ? nl + 1 : nl);
    return XXH3_64bits_withSeed(ref->key, kl, h);
}

/* ------------------------------------------------------------------------
** Names and refs.
*/
int pgsi_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > PGS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int pgsi_ref_check(const pgs_ref *ref, size_t *name_len)
{
    if (!ref)
        return PGS_EINVAL;
    size_t n = strnlen(ref->name, sizeof ref->name);
    if (n == sizeof ref->name || !pgsi_name_valid(ref->name, n) ||
        ref->key_len > PGS_KEY_MAX)
        return PGS_EREF;
    if (name_len)
        *name_len = n;
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Runtime options.
*/
void pgs_options_init(pgs_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->version = PGS_OPTIONS_VERSION;
    opts->workers = 0;
    opts->idle_timeout_ms = 30000;
    opts->max_message_size = (size_t)16 << 20;
    opts->storage = NULL;
    opts->default_call_timeout_ms = 5000;
    opts->flush_interval_ms = 50;
    opts->backoff_max_ms = 5000;
}
