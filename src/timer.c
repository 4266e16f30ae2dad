/*
** timer.c — one timer thread and one min-heap for idle timeouts and
** volatile timers (pgs_send_after).
**
** An active server has one idle node in the heap at most (in_timer), armed
** when it is released idle.  Activity does not touch the heap: when the node
** comes due, pgsi_idle_due() compares last_active with the timeout and
** re-arms if the server was used since.  So a busy server costs no heap
** work per message, and a passivated one costs none at all.
**
** A wake (TN_WAKE) asks for a second look at a server at a given time:
** the end of a crash backoff, or an idle timeout made shorter.  It names
** the ref, not the struct, so it never keeps a struct alive.
**
** The timer thread never holds the timer lock while it takes a shard lock
** (it pops, unlocks, then handles), so the order shard → timer holds.
*/
#include "runtime.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A pgs_send_after timer, or a wake (no id, no data). */
typedef struct tentry {
    tnode node;              /* first: a tnode* of kind TN_SEND or TN_WAKE is a tentry* */
    uint64_t id;
    struct tentry *mnext;    /* id map chain */
    const beh *b;
    pgs_ref ref;
    size_t len;
    unsigned char data[];
} tentry;

/* ------------------------------------------------------------------------
** The heap (timer lock held).
*/
static void heap_set(pgs_runtime *rt, size_t i, tnode *n)
{
    rt->heap[i] = n;
    n->idx = (uint32_t)i;
}

static void sift_up(pgs_runtime *rt, size_t i)
{
    tnode *n = rt->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (rt->heap[p]->deadline <= n->deadline)
            break;
        heap_set(rt, i, rt->heap[p]);
        i = p;
    }
    heap_set(rt, i, n);
}

static void sift_down(pgs_runtime *rt, size_t i)
{
    tnode *n = rt->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= rt->heap_len)
            break;
        if (c + 1 < rt->heap_len && rt->heap[c + 1]->deadline < rt->heap[c]->deadline)
            c++;
        if (n->deadline <= rt->heap[c]->deadline)
            break;
        heap_set(rt, i, rt->heap[c]);
        i = c;
    }
    heap_set(rt, i, n);
}

static int heap_push(pgs_runtime *rt, tnode *n)
{
    if (rt->heap_len == rt->heap_cap) {
        size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 256;
        tnode **h = realloc(rt->heap, cap * sizeof *h);
        if (!h)
            return PGS_ENOMEM;
        rt->heap = h;
        rt->heap_cap = cap;
    }
    heap_set(rt, rt->heap_len++, n);
    sift_up(rt, rt->heap_len - 1);
    if (n->idx == 0)
        pthread_cond_signal(&rt->t_cv); /* new earliest deadline */
    return PGS_OK;
}

static void heap_remove_at(pgs_runtime *rt, size_t i)
{
    tnode *last = rt->heap[--rt->heap_len];
    if (i == rt->heap_len)
        return;
    heap_set(rt, i, last);
    sift_up(rt, i);
    sift_down(rt, last->idx);
}

/* Halves the array when it is three quarters empty, so the memory of a
** burst of active servers goes back once they passivate. */
static void heap_shrink(pgs_runtime *rt)
{
    if (rt->heap_cap <= 256 || rt->heap_len >= rt->heap_cap / 4)
        return;
    tnode **h = realloc(rt->heap, rt->heap_cap / 2 * sizeof *h);
    if (h) {
        rt->heap = h;
        rt->heap_cap /= 2;
    }
}

static void heap_remove(pgs_runtime *rt, size_t i)
{
    heap_remove_at(rt, i);
    heap_shrink(rt);
}

/* ------------------------------------------------------------------------
** The id map of send_after timers (timer lock held).
*/
static tentry **map_slot(pgs_runtime *rt, uint64_t id)
{
    tentry **p = &rt->tmap[(id * 0x9E3779B97F4A7C15ull) >> 40 & (rt->tmap_cap - 1)];
    while (*p && (*p)->id != id)
        p = &(*p)->mnext;
    return p;
}

static int map_insert(pgs_runtime *rt, tentry *e)
{
    if (rt->tmap_count >= rt->tmap_cap) {
        size_t cap = rt->tmap_cap ? rt->tmap_cap * 2 : 64;
        tentry **old = rt->tmap, **nm = calloc(cap, sizeof *nm);
        size_t old_cap = rt->tmap_cap;
        if (!nm)
            return PGS_ENOMEM;
        rt->tmap = nm;
        rt->tmap_cap = cap;
        for (size_t i = 0; i < old_cap; i++)
            for (tentry *x = old[i], *next; x; x = next) {
                next = x->mnext;
                tentry **slot = map_slot(rt, x->id);
                x->mnext = NULL;
                *slot = x;
            }
        free(old);
    }
    *map_slot(rt, e->id) = e;
    e->mnext = NULL;
    rt->tmap_count++;
    return PGS_OK;
}

static tentry *map_take(pgs_runtime *rt, uint64_t id)
{
    if (!rt->tmap_cap)
        return NULL;
    tentry **p = map_slot(rt, id), *e = *p;
    if (e) {
        *p = e->mnext;
        rt->tmap_count--;
    }
    return e;
}

/* ------------------------------------------------------------------------
** The timer thread.
*/
static void fire_send(pgs_runtime *rt, tentry *e)
{
    if (!atomic_load(&rt->closing)) {
        msg *m = pgsi_msg_new(M_INFO, e->data, e->len);
        if (m) {
            m->info_kind = PGS_INFO_TIMER;
            m->tag = e->id;
            pgsi_send(rt, e->b, &e->ref, m);
        }
    }
    free(e);
}

static void wait_until(pgs_runtime *rt, int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000};
    pthread_cond_timedwait(&rt->t_cv, &rt->t_lock, &ts);
}

static void *timer_main(void *arg)
{
    pgs_runtime *rt = arg;
    pthread_mutex_lock(&rt->t_lock);
    while (!rt->t_stop) {
        if (!rt->heap_len) {
            pthread_cond_wait(&rt->t_cv, &rt->t_lock);
            continue;
        }
        tnode *n = rt->heap[0];
        if (n->deadline > pgsi_now_ns()) {
            wait_until(rt, n->deadline);
            continue;
        }
        heap_remove(rt, 0);
        tentry *e = n->kind == TN_SEND ? map_take(rt, ((tentry *)n)->id) : NULL;
        pthread_mutex_unlock(&rt->t_lock);
        if (e) {
            fire_send(rt, e);
        } else if (n->kind == TN_WAKE) {
            e = (tentry *)n;
            pgsi_wake_due(rt, e->b, &e->ref);
            free(e);
        } else {
            pgsi_idle_due(rt, (server *)((char *)n - offsetof(server, idle)));
        }
        pthread_mutex_lock(&rt->t_lock);
    }
    pthread_mutex_unlock(&rt->t_lock);
    return NULL;
}

int pgsi_timer_start(pgs_runtime *rt)
{
    rt->next_timer_id = 1;
    if (pthread_create(&rt->timer_thread, NULL, timer_main, rt) != 0)
        return PGS_ENOMEM;
    rt->t_running = 1;
    return PGS_OK;
}

void pgsi_timer_stop(pgs_runtime *rt)
{
    pthread_mutex_lock(&rt->t_lock);
    rt->t_stop = 1;
    pthread_cond_signal(&rt->t_cv);
    pthread_mutex_unlock(&rt->t_lock);
    if (rt->t_running)
        pthread_join(rt->timer_thread, NULL);
    rt->t_running = 0;
}

/* After the thread stopped: drop volatile timers, unlink idle nodes. */
void pgsi_timer_free(pgs_runtime *rt)
{
    for (size_t i = 0; i < rt->heap_len; i++) {
        tnode *n = rt->heap[i];
        if (n->kind != TN_IDLE) {
            free(n);
            continue;
        }
        server *s = (server *)((char *)n - offsetof(server, idle));
        s->in_timer = 0;
        if (s->dead && !s->in_runq)
            pgsi_server_free(s);
    }
    free(rt->heap);
    free(rt->tmap);
    rt->heap = NULL;
    rt->tmap = NULL;
    rt->heap_len = rt->heap_cap = rt->tmap_cap = rt->tmap_count = 0;
}

/* ------------------------------------------------------------------------
** Arming (shard lock held) and the public timer calls.
*/
void pgsi_idle_arm(pgs_runtime *rt, server *s, int64_t deadline)
{
    pthread_mutex_lock(&rt->t_lock);
    s->idle.deadline = deadline;
    if (heap_push(rt, &s->idle) == PGS_OK)
        s->in_timer = 1; /* else: never passivated by time; close still does */
    pthread_mutex_unlock(&rt->t_lock);
}

void pgsi_idle_sooner(pgs_runtime *rt, server *s, int64_t deadline)
{
    pthread_mutex_lock(&rt->t_lock);
    if (s->idle.deadline > deadline) {
        s->idle.deadline = deadline;
        sift_up(rt, s->idle.idx);
        if (s->idle.idx == 0)
            pthread_cond_signal(&rt->t_cv); /* new earliest deadline */
    }
    pthread_mutex_unlock(&rt->t_lock);
}

int pgsi_timer_add(pgs_runtime *rt, const beh *b, const pgs_ref *ref, uint32_t delay_ms,
                   const void *data, size_t len, uint64_t *id)
{
    tentry *e = malloc(sizeof *e + len);
    if (!e)
        return PGS_ENOMEM;
    memset(e, 0, sizeof *e);
    e->node.kind = TN_SEND;
    e->node.deadline = pgsi_now_ns() + (int64_t)delay_ms * 1000000;
    e->b = b;
    e->ref = *ref;
    e->len = len;
    if (len)
        memcpy(e->data, data, len);
    pthread_mutex_lock(&rt->t_lock);
    uint64_t tid = e->id = rt->next_timer_id++;
    int rc = map_insert(rt, e);
    if (!rc && (rc = heap_push(rt, &e->node)))
        map_take(rt, e->id);
    pthread_mutex_unlock(&rt->t_lock);
    if (rc) {
        free(e);
        return rc;
    }
    if (id)
        *id = tid; /* e itself may have fired and been freed already */
    return PGS_OK;
}

int pgsi_timer_wake(pgs_runtime *rt, const beh *b, const pgs_ref *ref, int64_t deadline)
{
    tentry *e = malloc(sizeof *e);
    if (!e)
        return PGS_ENOMEM;
    memset(e, 0, sizeof *e);
    e->node.kind = TN_WAKE;
    e->node.deadline = deadline;
    e->b = b;
    e->ref = *ref;
    pthread_mutex_lock(&rt->t_lock);
    int rc = rt->t_stop ? PGS_ECLOSED : heap_push(rt, &e->node);
    pthread_mutex_unlock(&rt->t_lock);
    if (rc)
        free(e);
    return rc;
}

int pgs_cancel_timer(pgs_runtime *rt, uint64_t id)
{
    if (!rt)
        return PGS_EINVAL;
    pthread_mutex_lock(&rt->t_lock);
    tentry *e = map_take(rt, id);
    if (e)
        heap_remove(rt, e->node.idx);
    pthread_mutex_unlock(&rt->t_lock);
    int rc = e ? PGS_OK : PGS_ENOTFOUND;
    free(e);
    return rc;
}
