/*
** monitor.c — monitors: code told of a server's lifecycle events.
**
** A monitor names a ref, not a server struct: the ref may be passivated,
** not started yet, or come and go many times.  Monitors are kept in one
** chained hash table by ref hash, under the monitor lock.  An event looks
** its ref up only when some monitor exists (m_count, read without the
** lock), so a runtime without monitors pays one relaxed load per event.
** Matching monitors are copied out under the lock and told after it is
** released: a callback may then call back into the runtime, even
** pgs_monitor itself.
**
** Every event of every server passes through pgsi_monitor_event, so it is
** also where the runtime-wide hook (pgs_options.on_event) is told and the
** events that are figures of their own (parkings, set-aside messages) are
** counted (metrics.c).
*/
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

typedef struct monitor {
    struct monitor *next; /* hash chain; monitor lock */
    uint64_t id;
    uint64_t hash;        /* pgsi_ref_hash(&ref) */
    pgs_ref ref;
    pgs_monitor_fn fn;    /* or, NULL: an info to notify */
    void *arg;
    pgs_ref notify;
} monitor;

#define MIN_BUCKETS 16u

void pgsi_monitor_init(pgs_runtime *rt)
{
    pthread_mutex_init(&rt->m_lock, NULL);
    rt->m_next_id = 1;
}

void pgsi_monitor_free(pgs_runtime *rt)
{
    for (size_t i = 0; i < rt->m_nbuckets; i++)
        for (monitor *m = rt->m_buckets[i], *next; m; m = next) {
            next = m->next;
            free(m);
        }
    free(rt->m_buckets);
    rt->m_buckets = NULL;
    pthread_mutex_destroy(&rt->m_lock);
}

/* Doubles the table (monitor lock held).  On ENOMEM the chains just grow. */
static void grow(pgs_runtime *rt)
{
    size_t n = rt->m_nbuckets ? rt->m_nbuckets * 2 : MIN_BUCKETS;
    monitor **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < rt->m_nbuckets; i++)
        for (monitor *m = rt->m_buckets[i], *next; m; m = next) {
            next = m->next;
            m->next = b[m->hash & (n - 1)];
            b[m->hash & (n - 1)] = m;
        }
    free(rt->m_buckets);
    rt->m_buckets = b;
    rt->m_nbuckets = n;
}

int pgs_monitor(pgs_runtime *rt, const pgs_ref *ref, pgs_monitor_fn fn, void *arg,
                const pgs_ref *notify, uint64_t *id)
{
    if (!rt || (!fn && !notify))
        return PGS_EINVAL;
    const beh *b;
    int rc = pgsi_check_ref(rt, ref, &b);
    if (!rc && !fn)
        rc = pgsi_check_ref(rt, notify, &b);
    if (rc)
        return rc;
    if (atomic_load(&rt->closing))
        return PGS_ECLOSED;
    monitor *m = calloc(1, sizeof *m);
    if (!m)
        return PGS_ENOMEM;
    m->hash = pgsi_ref_hash(ref);
    m->ref = *ref;
    m->fn = fn;
    m->arg = arg;
    if (!fn)
        m->notify = *notify;
    pthread_mutex_lock(&rt->m_lock);
    if (atomic_load_explicit(&rt->m_count, memory_order_relaxed) >= rt->m_nbuckets)
        grow(rt);
    if (!rt->m_nbuckets) {
        pthread_mutex_unlock(&rt->m_lock);
        free(m);
        return PGS_ENOMEM;
    }
    m->id = rt->m_next_id++;
    monitor **head = &rt->m_buckets[m->hash & (rt->m_nbuckets - 1)];
    m->next = *head;
    *head = m;
    atomic_fetch_add_explicit(&rt->m_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&rt->m_lock);
    if (id)
        *id = m->id;
    return PGS_OK;
}

int pgs_demonitor(pgs_runtime *rt, uint64_t id)
{
    if (!rt)
        return PGS_EINVAL;
    monitor *found = NULL;
    pthread_mutex_lock(&rt->m_lock);
    for (size_t i = 0; i < rt->m_nbuckets && !found; i++)
        for (monitor **link = &rt->m_buckets[i]; *link; link = &(*link)->next)
            if ((*link)->id == id) {
                found = *link;
                *link = found->next;
                atomic_fetch_sub_explicit(&rt->m_count, 1, memory_order_relaxed);
                break;
            }
    pthread_mutex_unlock(&rt->m_lock);
    free(found);
    return found ? PGS_OK : PGS_ENOTFOUND;
}

/* Tells one monitor (a copy, no lock held). */
static void tell(pgs_runtime *rt, const monitor *m, int event)
{
    if (m->fn) {
        m->fn(m->arg, &m->ref, event);
        return;
    }
    /* During close the registry is being emptied: infos would land in
    ** servers that are gone.  Callbacks are still told. */
    const beh *b = pgsi_beh_find(rt, m->notify.name);
    if (!b || atomic_load_explicit(&rt->closing, memory_order_relaxed))
        return;
    char text[PGS_REF_TEXT_MAX];
    size_t len = 0;
    pgs_ref_format(&m->ref, text, sizeof text, &len);
    msg *im = pgsi_msg_new(M_INFO, text, len);
    if (!im)
        return;
    im->info_kind = PGS_INFO_MONITOR;
    im->tag = m->id;
    im->status = event;
    pgsi_send(rt, b, &m->notify, im);
}

/* Copies ref's monitors into a malloc'd array (monitor lock held); a
** DELETE unlinks them, so each is told once and then freed. */
static monitor *collect(pgs_runtime *rt, const pgs_ref *ref, uint64_t hash, int event,
                        size_t *n)
{
    monitor *out = NULL, **link;
    size_t cap = 0;
    *n = 0;
    if (!rt->m_nbuckets)
        return NULL;
    for (link = &rt->m_buckets[hash & (rt->m_nbuckets - 1)]; *link;) {
        monitor *m = *link;
        if (m->hash != hash || !pgs_ref_equal(&m->ref, ref)) {
            link = &m->next;
            continue;
        }
        if (*n == cap) {
            monitor *bigger = realloc(out, (cap = cap ? cap * 2 : 4) * sizeof *out);
            if (!bigger)
                break; /* the rest are not told this time */
            out = bigger;
        }
        out[(*n)++] = *m;
        if (event == PGS_EVENT_DELETE) {
            *link = m->next;
            atomic_fetch_sub_explicit(&rt->m_count, 1, memory_order_relaxed);
            free(m);
        } else {
            link = &m->next;
        }
    }
    return out;
}

/* Counts the events that are figures of their own, and tells the hook. */
static void observe(pgs_runtime *rt, const pgs_ref *ref, uint64_t hash, int event)
{
    shard *sh = pgsi_shard_of(rt, hash);
    if (event == PGS_EVENT_PARK)
        atomic_fetch_add_explicit(&sh->st.parked, 1, memory_order_relaxed);
    else if (event == PGS_EVENT_POISON)
        atomic_fetch_add_explicit(&sh->st.poison, 1, memory_order_relaxed);
    if (rt->opts.on_event)
        rt->opts.on_event(rt->opts.user, ref, event);
}

void pgsi_monitor_event(pgs_runtime *rt, const pgs_ref *ref, uint64_t hash, int event)
{
    observe(rt, ref, hash, event);
    if (!atomic_load_explicit(&rt->m_count, memory_order_relaxed))
        return;
    size_t n;
    pthread_mutex_lock(&rt->m_lock);
    monitor *found = collect(rt, ref, hash, event, &n);
    pthread_mutex_unlock(&rt->m_lock);
    for (size_t i = 0; i < n; i++)
        tell(rt, &found[i], event);
    free(found);
}
