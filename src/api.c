/*
** api.c — the public message calls: argument checks, then server.c.
**
** Every call counts itself in rt->inflight while it runs, so pgs_shutdown
** can wait for calls in progress before it stops the pool.  A send made
** inside a callback of the same runtime goes to the turn's outbox and
** leaves only after the turn's write (the output gate).
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

/* Counts the call in this thread's inflight slot, then checks `closing`.
** Both are sequentially consistent, against pgs_shutdown's store of
** `closing` and its sum of the slots: either the call sees `closing` and
** backs out, or shutdown sees the call and waits for it. */
static int enter(pgs_runtime *rt)
{
    if (!rt)
        return PGS_EINVAL;
    _Atomic long *n = &rt->inflight[pgsi_thread_slot()].n;
    atomic_fetch_add(n, 1);
    if (atomic_load(&rt->closing)) {
        atomic_fetch_sub(n, 1);
        return PGS_ECLOSED;
    }
    return PGS_OK;
}

static int leave(pgs_runtime *rt, int rc)
{
    atomic_fetch_sub(&rt->inflight[pgsi_thread_slot()].n, 1);
    return rc;
}

/* Checks a caller's ref and finds its behaviour.  The common case costs
** one short memcmp: a name equal to a registered one is valid. */
int pgsi_check_ref(pgs_runtime *rt, const pgs_ref *ref, const beh **out)
{
    if (!ref)
        return PGS_EINVAL;
    if (ref->key_len > PGS_KEY_MAX)
        return PGS_EREF;
    if ((*out = pgsi_beh_of_ref(rt, ref)))
        return PGS_OK;
    return pgsi_ref_check(ref, NULL) ? PGS_EREF : PGS_ENOBEHAVIOUR;
}

static int check_msg(pgs_runtime *rt, const void *data, size_t len)
{
    if (!data && len)
        return PGS_EINVAL;
    return len > rt->opts.max_message_size ? PGS_ETOOBIG : PGS_OK;
}

/* The turn of this runtime running on this thread, if any. */
static pgs_ctx *own_turn(pgs_runtime *rt)
{
    pgs_ctx *ctx = pgsi_current_ctx();
    return ctx && ctx->rt == rt ? ctx : NULL;
}

/* Sends m now, or holds it in the current turn's outbox. */
static int dispatch(pgs_runtime *rt, const beh *b, const pgs_ref *ref, msg *m)
{
    pgs_ctx *ctx = own_turn(rt);
    if (!ctx)
        return pgsi_send(rt, b, ref, m);
    if (!(m->target = malloc(sizeof *ref))) {
        pgsi_msg_free(m);
        return PGS_ENOMEM;
    }
    *m->target = *ref;
    m->next = NULL;
    if (ctx->out_tail)
        ctx->out_tail->next = m;
    else
        ctx->out_head = m;
    ctx->out_tail = m;
    return PGS_OK;
}

/* Common path of cast, send_info and call_async. */
static int send_kind(pgs_runtime *rt, const pgs_ref *ref, const void *data, size_t len,
                     int kind, const pgs_ref *reply_to, uint64_t tag)
{
    const beh *b, *rb;
    int rc = enter(rt);
    if (rc)
        return rc;
    if ((rc = pgsi_check_ref(rt, ref, &b)) || (rc = check_msg(rt, data, len)))
        return leave(rt, rc);
    if (kind == M_CALL && (rc = pgsi_check_ref(rt, reply_to, &rb)))
        return leave(rt, rc);
    msg *m = pgsi_msg_new(kind, data, len);
    if (!m)
        return leave(rt, PGS_ENOMEM);
    m->tag = tag;
    if (kind == M_INFO)
        m->info_kind = PGS_INFO_MESSAGE;
    if (kind == M_CALL) {
        if (!(m->reply_to = malloc(sizeof *reply_to))) {
            pgsi_msg_free(m);
            return leave(rt, PGS_ENOMEM);
        }
        *m->reply_to = *reply_to;
    }
    return leave(rt, dispatch(rt, b, ref, m));
}

int pgs_cast(pgs_runtime *rt, const pgs_ref *ref, const void *msg_, size_t len)
{
    return send_kind(rt, ref, msg_, len, M_CAST, NULL, 0);
}

int pgs_send_info(pgs_runtime *rt, const pgs_ref *ref, const void *msg_, size_t len)
{
    return send_kind(rt, ref, msg_, len, M_INFO, NULL, 0);
}

int pgs_call_async(pgs_runtime *rt, const pgs_ref *ref, const void *msg_, size_t len,
                   const pgs_ref *reply_to, uint64_t tag)
{
    pgs_ctx *ctx = rt ? own_turn(rt) : NULL;
    if (!reply_to && ctx)
        reply_to = &ctx->self;
    if (!reply_to)
        return PGS_EINVAL;
    return send_kind(rt, ref, msg_, len, M_CALL, reply_to, tag);
}

/* Common path of call, stop and delete. */
static int request(pgs_runtime *rt, const pgs_ref *ref, int kind, const void *data,
                   size_t len, pgs_bytes *reply, int timeout_ms)
{
    const beh *b;
    if (reply)
        *reply = (pgs_bytes){0};
    int rc = enter(rt);
    if (rc)
        return rc;
    if ((rc = pgsi_check_ref(rt, ref, &b)) || (rc = check_msg(rt, data, len)))
        return leave(rt, rc);
    return leave(rt, pgsi_request(rt, b, ref, kind, data, len, NULL, reply, timeout_ms));
}

int pgs_call(pgs_runtime *rt, const pgs_ref *ref, const void *msg_, size_t len,
             pgs_bytes *reply, int timeout_ms)
{
    return request(rt, ref, M_CALL, msg_, len, reply, timeout_ms);
}

int pgs_stop(pgs_runtime *rt, const pgs_ref *ref, int timeout_ms)
{
    return request(rt, ref, M_STOP, NULL, 0, NULL, timeout_ms);
}

int pgs_delete(pgs_runtime *rt, const pgs_ref *ref, int timeout_ms)
{
    return request(rt, ref, M_DELETE, NULL, 0, NULL, timeout_ms);
}

static int check_server_opts(const pgs_server_opts *o)
{
    return o && pgsi_opts_check(o) ? PGS_EINVAL : PGS_OK;
}

int pgs_start(pgs_runtime *rt, const char *name, const void *key, size_t key_len,
              const void *args, size_t args_len, const pgs_server_opts *opts,
              pgs_ref *ref_out)
{
    pgs_ref ref;
    const beh *b;
    int rc = enter(rt);
    if (rc)
        return rc;
    if ((rc = pgs_ref_make(&ref, name, key, key_len)) || (rc = pgsi_check_ref(rt, &ref, &b)) ||
        (rc = check_msg(rt, args, args_len)) || (rc = check_server_opts(opts)))
        return leave(rt, rc);
    rc = pgsi_request(rt, b, &ref, M_START, args, args_len, opts, NULL, -1);
    if (!rc && ref_out)
        *ref_out = ref;
    return leave(rt, rc);
}

int pgs_send_after(pgs_runtime *rt, const pgs_ref *ref, uint32_t delay_ms,
                   const void *msg_, size_t len, uint64_t *id)
{
    const beh *b;
    int rc = enter(rt);
    if (rc)
        return rc;
    if ((rc = pgsi_check_ref(rt, ref, &b)) || (rc = check_msg(rt, msg_, len)))
        return leave(rt, rc);
    return leave(rt, pgsi_timer_add(rt, b, ref, delay_ms, msg_, len, id));
}

/* ------------------------------------------------------------------------
** Inside callbacks.
*/
int pgs_reply(pgs_ctx *ctx, const void *data, size_t len)
{
    if (!ctx || ctx->kind != M_CALL || (!data && len))
        return PGS_EINVAL;
    ctx->reply.len = 0;
    int rc = pgs_buf_append(&ctx->reply, data, len);
    ctx->has_reply = rc == PGS_OK;
    ctx->reply_rc = rc;
    return rc;
}

const pgs_ref *pgs_self(const pgs_ctx *ctx)
{
    return ctx ? &ctx->self : NULL;
}

pgs_runtime *pgs_ctx_runtime(const pgs_ctx *ctx)
{
    return ctx ? ctx->rt : NULL;
}

void *pgs_user(const pgs_ctx *ctx)
{
    return ctx ? ctx->rt->opts.user : NULL;
}

/* ------------------------------------------------------------------------
** Introspection.
*/
int pgs_is_active(pgs_runtime *rt, const pgs_ref *ref)
{
    const beh *b;
    int rc = rt ? pgsi_check_ref(rt, ref, &b) : PGS_EINVAL;
    if (rc)
        return rc;
    uint64_t h = pgsi_ref_hash(ref);
    shard *sh = pgsi_shard_of(rt, h);
    pthread_mutex_lock(&sh->lock);
    server *s = pgsi_reg_find(sh, b, h, ref->key, ref->key_len);
    int active = s && atomic_load_explicit(&s->loaded, memory_order_relaxed);
    pthread_mutex_unlock(&sh->lock);
    return active;
}

pgs_storage *pgs_runtime_storage(pgs_runtime *rt)
{
    return rt ? rt->st : NULL;
}

/* ------------------------------------------------------------------------
** Operator actions: requests of the runtime's own kinds (fault.c runs them).
*/
int pgs_reconfigure(pgs_runtime *rt, const pgs_ref *ref, const pgs_server_opts *opts,
                    int timeout_ms)
{
    const beh *b;
    int rc = enter(rt);
    if (rc)
        return rc;
    if (!opts)
        return leave(rt, PGS_EINVAL);
    if ((rc = pgsi_check_ref(rt, ref, &b)) || (rc = check_server_opts(opts)))
        return leave(rt, rc);
    return leave(rt, pgsi_request(rt, b, ref, M_RECONF, NULL, 0, opts, NULL, timeout_ms));
}

int pgs_unpark(pgs_runtime *rt, const pgs_ref *ref, int timeout_ms)
{
    return request(rt, ref, M_UNPARK, NULL, 0, NULL, timeout_ms);
}

int pgs_repair(pgs_runtime *rt, const pgs_ref *ref, const void *state, size_t len,
               int timeout_ms)
{
    return request(rt, ref, M_REPAIR, state, len, NULL, timeout_ms);
}

int pgs_rollback(pgs_runtime *rt, const pgs_ref *ref, uint64_t version, int timeout_ms)
{
    unsigned char v[8];
    for (int i = 0; i < 8; i++)
        v[i] = (unsigned char)(version >> (8 * i));
    return request(rt, ref, M_ROLLBACK, v, sizeof v, NULL, timeout_ms);
}

/* ------------------------------------------------------------------------
** Faults: what storage says, and set-aside messages.
*/
int pgs_server_info_get(pgs_runtime *rt, const pgs_ref *ref, pgs_server_info *out)
{
    const beh *b;
    if (!out)
        return PGS_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = enter(rt);
    if (rc)
        return rc;
    if ((rc = pgsi_check_ref(rt, ref, &b)))
        return leave(rt, rc);
    return leave(rt, pgs_storage_server_info(rt->st, ref, out));
}

int pgs_poison_list(pgs_runtime *rt, const pgs_ref *ref,
                    int (*fn)(void *arg, const pgs_poison *p), void *arg)
{
    const beh *b;
    if (!fn)
        return PGS_EINVAL;
    int rc = enter(rt);
    if (rc)
        return rc;
    if (ref && (rc = pgsi_check_ref(rt, ref, &b)))
        return leave(rt, rc);
    return leave(rt, pgs_storage_poison_list(rt->st, ref, fn, arg));
}

int pgs_poison_drop(pgs_runtime *rt, uint64_t id)
{
    int rc = enter(rt);
    return rc ? rc : leave(rt, pgs_storage_poison_drop(rt->st, id));
}

/* The message goes again as what it was; an info keeps its kind and tag. */
static int resend(pgs_runtime *rt, const pgs_poison *p, pgs_bytes *reply, int timeout_ms)
{
    const beh *b;
    int rc = pgsi_check_ref(rt, &p->ref, &b);
    if (rc)
        return rc;
    if (p->kind == M_CALL)
        return pgsi_request(rt, b, &p->ref, M_CALL, p->msg, p->msg_len, NULL, reply, timeout_ms);
    msg *m = pgsi_msg_new(p->kind == M_CAST ? M_CAST : M_INFO, p->msg, p->msg_len);
    if (!m)
        return PGS_ENOMEM;
    m->info_kind = (uint8_t)p->info_kind;
    m->tag = p->tag;
    return pgsi_send(rt, b, &p->ref, m);
}

int pgs_poison_retry(pgs_runtime *rt, uint64_t id, pgs_bytes *reply, int timeout_ms)
{
    pgs_record *rec;
    pgs_poison p;
    if (reply)
        *reply = (pgs_bytes){0};
    int rc = enter(rt);
    if (rc)
        return rc;
    if ((rc = pgsi_poison_take(rt, id, &rec, &p)) == PGS_OK)
        rc = resend(rt, &p, reply, timeout_ms);
    free(rec);
    return leave(rt, rc);
}
