/*
** registry.c — refs to live servers.
**
** The registry is PGSI_SHARDS hash tables, each guarded by its shard lock.
** A ref maps to at most one server struct (docs/protocol.md, invariant 4):
** lookup-or-create and removal both happen under the shard lock, so two
** callers reviving the same ref always meet at the same struct.
**
** A server struct carries its key inline and its state block after it, so
** an active server costs one allocation.  A passivated server costs
** nothing here: it is removed, and lives only in storage; the bucket
** arrays grow and shrink with the number of servers in memory.
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 64 /* per shard; a power of two */

shard *pgsi_shard_of(pgs_runtime *rt, uint64_t hash)
{
    return &rt->shards[(hash >> 58) & (PGSI_SHARDS - 1)];
}

static size_t state_offset(size_t key_len)
{
    size_t off = sizeof(server) + key_len;
    return (off + 15) & ~(size_t)15;
}

void *pgsi_server_state(server *s)
{
    return (unsigned char *)s + state_offset(s->key_len);
}

server *pgsi_server_new(const beh *b, uint64_t hash, const void *key, size_t key_len)
{
    size_t size = state_offset(key_len) + b->b->state_size;
    server *s = calloc(1, size);
    if (!s)
        return NULL;
    s->beh = b;
    s->hash = hash;
    s->key_len = (uint16_t)key_len;
    if (key_len)
        memcpy(s->key, key, key_len);
    s->idle.kind = TN_IDLE;
    pgsi_apply_opts(s, &(pgs_server_opts){0});
    return s;
}

void pgsi_server_free(server *s)
{
    if (!s)
        return;
    free(s->args);
    free(s);
}

server *pgsi_reg_find(shard *sh, const beh *b, uint64_t hash, const void *key, size_t key_len)
{
    if (!sh->nbuckets)
        return NULL;
    for (server *s = sh->buckets[hash & (sh->nbuckets - 1)]; s; s = s->hnext)
        if (s->hash == hash && s->beh == b && s->key_len == key_len &&
            memcmp(s->key, key, key_len) == 0)
            return s;
    return NULL;
}

/* Rehashes the shard into n buckets (a power of two).  PGS_ENOMEM leaves
** the old table in place. */
static int rehash(shard *sh, size_t n)
{
    server **nb = calloc(n, sizeof *nb);
    if (!nb)
        return PGS_ENOMEM;
    for (size_t i = 0; i < sh->nbuckets; i++) {
        server *s = sh->buckets[i], *next;
        for (; s; s = next) {
            next = s->hnext;
            s->hnext = nb[s->hash & (n - 1)];
            nb[s->hash & (n - 1)] = s;
        }
    }
    free(sh->buckets);
    sh->buckets = nb;
    sh->nbuckets = n;
    return PGS_OK;
}

int pgsi_reg_insert(shard *sh, server *s)
{
    if (sh->count >= sh->nbuckets) {
        int rc = rehash(sh, sh->nbuckets ? sh->nbuckets * 2 : MIN_BUCKETS);
        if (rc && !sh->nbuckets)
            return rc; /* else: longer chains, still correct */
    }
    server **head = &sh->buckets[s->hash & (sh->nbuckets - 1)];
    s->hnext = *head;
    *head = s;
    sh->count++;
    return PGS_OK;
}

void pgsi_reg_remove(shard *sh, server *s)
{
    server **p = &sh->buckets[s->hash & (sh->nbuckets - 1)];
    while (*p != s)
        p = &(*p)->hnext;
    *p = s->hnext;
    s->hnext = NULL;
    sh->count--;
    /* Shrink when mostly empty, so passivated servers do not keep the
    ** buckets of their busiest hour (a quarter, not a half: no flapping). */
    if (sh->nbuckets > MIN_BUCKETS && sh->count < sh->nbuckets / 4)
        rehash(sh, sh->nbuckets / 2);
}

server *pgsi_reg_take_all(shard *sh)
{
    server *all = NULL;
    for (size_t i = 0; i < sh->nbuckets; i++) {
        for (server *s = sh->buckets[i], *next; s; s = next) {
            next = s->hnext;
            s->hnext = all;
            all = s;
        }
    }
    free(sh->buckets);
    sh->buckets = NULL;
    sh->nbuckets = sh->count = 0;
    return all;
}
