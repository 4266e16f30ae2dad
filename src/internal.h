/*
** internal.h — declarations shared by pgs's own source files (pgsi_ names).
** Nothing here is public API.
*/
#ifndef PGS_INTERNAL_H
#define PGS_INTERNAL_H

#include "pgs.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

/* An open store: the adapter's ops and its private state. */
struct pgs_storage {
    const pgs_storage_ops *ops; /* static table, never freed */
    void *state;                /* adapter's handle from ops->open */
};

/* Growable byte buffer (encode output, reply copies).  `max` bounds it. */
struct pgs_buf {
    unsigned char *data; /* malloc'd, owned by whoever owns the pgs_buf */
    size_t len, cap, max;
};

void pgsi_buf_init(pgs_buf *b, size_t max);
void pgsi_buf_free(pgs_buf *b);

/* Built-in adapters, found by URL scheme. */
extern const pgs_storage_ops pgsi_memory_ops;
extern const pgs_storage_ops pgsi_sqlite_ops;
extern const pgs_storage_ops pgsi_lmdb_ops;
extern const pgs_storage_ops pgsi_postgres_ops;
const pgs_storage_ops *pgsi_storage_builtin(const char *url);
/* Splits a file engine's URL "scheme:PATH?name=value&...": param(arg, p,
** n) gets each "name=value" (non-zero: refused); *path receives a malloc'd
** copy of PATH, or of dflt when it is empty.  PGS_OK, PGS_EURL or
** PGS_ENOMEM. */
int pgsi_url_split(const char *url, const char *scheme, const char *dflt, char **path,
                   int (*param)(void *arg, const char *p, size_t n), void *arg);
/* 1 if st's adapter keeps history (pgs_write.keep is honoured). */
int pgsi_storage_has_history(const pgs_storage *st);

/* Options as stored in a record, with the parked flag: a fixed
** little-endian layout, so a record written by one build reads back in
** another.  PGSI_OPTS_LEN bytes (public: pgs_record_options). */
#define PGSI_OPTS_LEN PGS_RECORD_OPTIONS_LEN
#define PGSI_POISON_MAX 16 /* the most poison_after may be */
void pgsi_opts_encode(const pgs_server_opts *o, int parked, unsigned char out[PGSI_OPTS_LEN]);
/* PGS_OK or PGS_ECORRUPT (wrong length, unknown version or value).  No
** bytes at all (a record written by a tool) means every option inherits
** and the server is not parked. */
int pgsi_opts_decode(const void *data, size_t len, pgs_server_opts *o, int *parked);
/* Writes a record's cause (kind, message) to out (if not NULL), to follow
** the options; returns its size. */
size_t pgsi_cause_encode(int kind, const void *msg, size_t len, unsigned char *out);
/* Non-zero if o holds a value pgs does not know. */
int pgsi_opts_check(const pgs_server_opts *o);

/* 1 if every byte field of rec has bytes where its length says so. */
int pgsi_record_fields_present(const pgs_record *rec);
/* The version in an encoding from pgs_record_encode, read from the header
** (lengths checked, checksum not).  PGS_OK or PGS_ECORRUPT. */
int pgsi_record_encoded_version(const void *data, size_t len, uint64_t *version);

/* Fixed-width integers in stored bytes: n bytes, little- or big-endian
** (big-endian keys sort by number).  put returns the byte after. */
static inline unsigned char *pgsi_put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        *p++ = (unsigned char)v;
    return p;
}

static inline uint64_t pgsi_get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static inline void pgsi_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static inline uint64_t pgsi_get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Hash of a ref's name and key (used by the registry and the memory store). */
uint64_t pgsi_ref_hash(const pgs_ref *ref);
/* 1 if the name is a valid behaviour name. */
int pgsi_name_valid(const char *name, size_t len);

/* Monotonic clock in nanoseconds. */
static inline int64_t pgsi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------------
** Added by util.c / ref.c / storage.c (storage layer).
*/

/* PGS_OK if ref is well formed: name NUL-terminated inside ref->name and
** valid, key_len <= PGS_KEY_MAX.  *name_len (may be NULL) receives the
** name's length.  Errors: PGS_EINVAL (NULL ref), PGS_EREF. */
int pgsi_ref_check(const pgs_ref *ref, size_t *name_len);

#endif
