/*
** persist.c — a server's state to and from its stored record.
**
** Only the server's owner calls these, with no lock held (docs/protocol.md,
** invariant 5), so the version read at load and the expected version of
** each write cannot race with another writer in this process.  Writes do
** not wait: they join the commit pipeline (commit.c), and a load first
** waits for the server's writes still in flight.
**
** The record carries the start arguments and the option overrides with
** every write, so any one record is enough to revive the server.  Writes
** use the stored version as the expected version: a record changed
** behind the runtime's back fails with PGS_ECONFLICT instead of being
** overwritten.
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

void pgsi_ref_of(const server *s, pgs_ref *ref)
{
    const beh *b = s->beh;
    memset(ref, 0, sizeof *ref);
    memcpy(ref->name, b->b->name, b->name_len);
    ref->key_len = s->key_len;
    memcpy(ref->key, s->key, s->key_len);
}

/* Effective options: the server's overrides, else the behaviour's. */
void pgsi_apply_opts(server *s, const pgs_server_opts *o)
{
    const beh *b = s->beh;
    s->opts = *o;
    s->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : b->idle_ms;
    s->lifecycle = o->lifecycle ? o->lifecycle : b->lifecycle;
    s->write_mode = o->write_mode ? o->write_mode : b->write_mode;
}

static int set_args(server *s, const void *args, size_t len)
{
    void *copy = NULL;
    if (len) {
        if (!(copy = malloc(len)))
            return PGS_ENOMEM;
        memcpy(copy, args, len);
    }
    free(s->args);
    s->args = copy;
    s->args_len = (uint32_t)len;
    return PGS_OK;
}

int pgsi_decode_state(server *s, const void *data, size_t len, uint32_t schema)
{
    const pgs_behaviour *b = s->beh->b;
    void *state = pgsi_server_state(s);
    memset(state, 0, b->state_size);
    if (schema > b->schema_version)
        return PGS_ESCHEMA; /* written by newer code: never guess at it */
    if (b->decode)
        return b->decode(state, data, len, schema) ? PGS_ECORRUPT : PGS_OK;
    if (len != b->state_size)
        return PGS_ECORRUPT;
    if (len)
        memcpy(state, data, len);
    return PGS_OK;
}

/* Loads s from storage, once its writes in flight have landed.
** PGS_ENOTFOUND if there is no record. */
int pgsi_load(pgs_runtime *rt, server *s, const pgs_ref *ref, int allow_parked)
{
    pgs_record *rec = NULL;
    /* Once its writes have landed, storage is the truth: a write that
    ** failed meanwhile has already failed what waited on it, and must not
    ** fail the turns that run on what is loaded now. */
    pgsi_recover(rt, s);
    int rc = pgs_storage_get(rt->st, ref, &rec);
    if (rc)
        return rc;
    pgs_server_opts o;
    int parked = 0;
    rc = pgsi_opts_decode(rec->options, rec->options_len, &o, &parked);
    if (!rc && parked && !allow_parked)
        rc = PGS_EPARKED;
    if (!rc)
        rc = pgsi_decode_state(s, rec->state, rec->state_len, rec->schema_version);
    if (!rc)
        rc = set_args(s, rec->args, rec->args_len);
    if (!rc) {
        pgsi_apply_opts(s, &o);
        s->version = rec->version;
        s->dirty = 0;
        s->parked = (uint8_t)parked;
        atomic_store_explicit(&s->loaded, 1, memory_order_relaxed);
        PGSI_STAT(rt, s, active, 1);
        PGSI_STAT(rt, s, activations, 1);
        PGSI_STAT(rt, s, reactivations, 1);
    }
    free(rec);
    return rc;
}

/* Runs init for a new server and writes its first record. */
int pgsi_init_state(pgs_runtime *rt, pgs_ctx *ctx, server *s, const void *args,
                    size_t args_len, const pgs_server_opts *opts)
{
    const pgs_behaviour *b = s->beh->b;
    void *state = pgsi_server_state(s);
    int rc = set_args(s, args, args_len);
    if (rc)
        return rc;
    pgsi_apply_opts(s, opts);
    memset(state, 0, b->state_size);
    s->version = 0;
    s->parked = 0;
    int r = b->init(ctx, state, s->args, s->args_len); /* args may be the old copy */
    if (r != PGS_PERSIST && r != PGS_NOPERSIST && r != PGS_UNCHANGED) {
        if (b->terminate)
            b->terminate(ctx, state, PGS_REASON_CRASH);
        return r == PGS_CRASH || r == PGS_STOP ? PGS_ECRASH : PGS_ECALLBACK;
    }
    atomic_store_explicit(&s->loaded, 1, memory_order_relaxed);
    PGSI_STAT(rt, s, active, 1);
    PGSI_STAT(rt, s, activations, 1);
    return PGS_OK;
}

/* Encodes the state: a flat block as is, else through encode. */
static int encode_state(server *s, pgs_buf *buf, size_t max, const void **data,
                        size_t *len)
{
    const pgs_behaviour *b = s->beh->b;
    if (!b->encode) {
        *data = pgsi_server_state(s);
        *len = b->state_size;
        return *len > max ? PGS_ETOOBIG : PGS_OK;
    }
    pgsi_buf_init(buf, max);
    if (b->encode(pgsi_server_state(s), buf) != 0)
        return buf->len >= max && max ? PGS_ETOOBIG : PGS_ECALLBACK;
    *data = buf->data;
    *len = buf->len;
    return PGS_OK;
}

/* Queues s's state as its next version (commit.c), or writes it now on an
** inline engine. */
/* The options as stored, with the cause when s keeps history messages:
** in `small`, or malloc'd into *big. */
static int encode_meta(server *s, const msg *cause, unsigned char small[PGSI_OPTS_LEN],
                       unsigned char **big, pgs_record *rec)
{
    unsigned char *out = small;
    size_t n = PGSI_OPTS_LEN;
    if (cause && pgsi_keeps_messages(s)) {
        n += pgsi_cause_encode(cause->kind, NULL, cause->len, NULL);
        if (!(out = *big = malloc(n)))
            return PGS_ENOMEM;
        pgsi_cause_encode(cause->kind, cause->data, cause->len, out + PGSI_OPTS_LEN);
    }
    pgsi_opts_encode(&s->opts, s->parked, out);
    rec->options = out;
    rec->options_len = n;
    return PGS_OK;
}

int pgsi_write(pgs_runtime *rt, server *s, const pgs_ref *ref, int async, const msg *cause)
{
    unsigned char opts[PGSI_OPTS_LEN], *big = NULL;
    pgs_buf buf = {0};
    pgs_record rec = {.ref = *ref};
    int rc = encode_state(s, &buf, rt->opts.max_message_size, &rec.state, &rec.state_len);
    if (!rc)
        rc = encode_meta(s, cause, opts, &big, &rec);
    if (!rc) {
        rec.version = s->version + 1;
        rec.schema_version = s->beh->b->schema_version;
        rec.args = s->args;
        rec.args_len = s->args_len;
        pgs_write w = {.op = PGS_OP_PUT, .record = &rec, .expected_version = s->version,
                       .keep = pgsi_keep(s)};
        if (!rt->inline_writes) {
            rc = pgsi_submit_put(rt, s, &rec, async);
        } else if (!(rc = pgs_storage_batch(rt->st, &w, 1))) {
            if (!s->version) /* a new record */
                PGSI_STAT(rt, s, stored, 1);
            s->version++;
            PGSI_STAT(rt, s, writes, 1);
            PGSI_STAT(rt, s, commits, 1);
        }
    }
    pgsi_buf_free(&buf);
    free(big);
    if (!rc)
        s->dirty = 0;
    return rc;
}

int pgsi_erase(pgs_runtime *rt, server *s, const pgs_ref *ref)
{
    if (!rt->inline_writes)
        return pgsi_submit_delete(rt, s, ref);
    int rc = pgs_storage_del(rt->st, ref);
    if (rc == PGS_OK) {
        PGSI_STAT(rt, s, stored, -1);
        PGSI_STAT(rt, s, writes, 1);
        PGSI_STAT(rt, s, commits, 1);
    }
    if (rc == PGS_OK || rc == PGS_ENOTFOUND)
        s->version = 0;
    return rc == PGS_ENOTFOUND ? PGS_OK : rc;
}

/* The version now stored for ref (0: none), for s->version.  A corrupt
** record counts as present (version unknown: a DELETE needs none), so it
** can be deleted. */
static int stored_version(pgs_runtime *rt, const pgs_ref *ref, uint64_t *version)
{
    pgs_record *rec = NULL;
    int rc = pgs_storage_get(rt->st, ref, &rec);
    *version = rc == PGS_OK ? rec->version : 0;
    free(rec);
    if (rc == PGS_ECORRUPT) { /* deletable all the same */
        *version = 0;
        return PGS_OK;
    }
    return rc;
}

int pgsi_erase_stored(pgs_runtime *rt, server *s, const pgs_ref *ref)
{
    pgsi_wait_writes(rt, s);
    uint64_t v;
    int rc = stored_version(rt, ref, &v);
    if (rc)
        return rc;
    s->version = v;
    return pgsi_erase(rt, s, ref);
}

int pgsi_wait_durable(pgs_runtime *rt, server *s, const pgs_ref *ref)
{
    pgsi_wait_writes(rt, s);
    int err = atomic_load_explicit(&s->write_error, memory_order_relaxed);
    if (!err)
        return PGS_OK;
    uint64_t v;
    if (stored_version(rt, ref, &v) == PGS_OK)
        s->version = v;
    s->dirty = 1;
    pgsi_recover(rt, s);
    return err;
}
