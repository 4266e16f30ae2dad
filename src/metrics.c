/*
** metrics.c — the runtime's figures: snapshots and their Prometheus text.
**
** Where the figures come from, cheapest first:
**   - per-shard counters (runtime.h, PGSI_STAT): bumped with relaxed
**     atomics by whichever thread saw the event, on the shard of the
**     server's hash, whose line it is about to touch anyway; mailbox
**     figures under the shard lock with a plain load and store;
**   - the group commit's histograms (runtime.h, hist): kept by the one
**     thread running a batch (commit.c), one clock read per batch;
**   - lifecycle events (monitor.c): parkings and set-aside messages are
**     counted where every event passes.
** A snapshot sums the shards with relaxed loads: no lock, no pause, and
** figures read a few events apart from one another.
**
** Sections: histograms, snapshots, Prometheus text.
*/
#include "runtime.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------
** Histograms.
*/

/* The bucket of v: 0 for v <= 1, else ceil(log2(v)), capped. */
static unsigned bucket_of(uint64_t v)
{
    if (v <= 1)
        return 0;
    unsigned i = 64 - (unsigned)__builtin_clzll(v - 1);
    return i < PGS_HIST_BUCKETS - 1 ? i : PGS_HIST_BUCKETS - 1;
}

/* a += n by the only writer: a load and a store, no locked instruction. */
static void bump(_Atomic uint64_t *a, uint64_t n)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void pgsi_hist_add(hist *h, uint64_t v)
{
    bump(&h->buckets[bucket_of(v)], 1);
    bump(&h->sum, v);
    if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
        atomic_store_explicit(&h->max, v, memory_order_relaxed);
}

/* The count is the buckets' sum, so a snapshot's +Inf bucket always
** equals its count, even while a batch adds to it. */
static void hist_read(const hist *h, pgs_histogram *out)
{
    out->count = 0;
    for (int i = 0; i < PGS_HIST_BUCKETS; i++) {
        out->buckets[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        out->count += out->buckets[i];
    }
    out->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    out->max = atomic_load_explicit(&h->max, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
** Snapshots.
*/

/* The per-shard counters summed into pgs_metrics, by offset. */
#define SUMMED(f) {offsetof(stats, f), offsetof(pgs_metrics, f)}
static const struct {
    size_t from, to;
} summed[] = {
    SUMMED(active), SUMMED(stored), SUMMED(queued), SUMMED(activations),
    SUMMED(reactivations), SUMMED(passivations), SUMMED(crashes), SUMMED(parked),
    SUMMED(poison), SUMMED(messages), SUMMED(writes), SUMMED(commits),
};

/* Sums the shards.  Gauges kept as +1/-1 counts (active, stored, queued)
** may be negative in one shard; their sum is not, save for a moment
** between two shards' updates, which reads as 0. */
static void sum_shards(pgs_runtime *rt, pgs_metrics *out)
{
    for (size_t i = 0; i < PGSI_SHARDS; i++) {
        const stats *st = &rt->shards[i].st;
        for (size_t f = 0; f < sizeof summed / sizeof summed[0]; f++) {
            const _Atomic uint64_t *from = (const void *)((const char *)st + summed[f].from);
            *(uint64_t *)((char *)out + summed[f].to) +=
                atomic_load_explicit(from, memory_order_relaxed);
        }
        uint64_t max = atomic_load_explicit(&st->queued_max, memory_order_relaxed);
        out->queued_max = max > out->queued_max ? max : out->queued_max;
    }
    uint64_t *gauges[] = {&out->active, &out->stored, &out->queued};
    for (size_t g = 0; g < 3; g++)
        if ((int64_t)*gauges[g] < 0)
            *gauges[g] = 0;
}

int pgs_metrics_get(pgs_runtime *rt, pgs_metrics *out)
{
    if (!rt || !out)
        return PGS_EINVAL;
    memset(out, 0, sizeof *out);
    sum_shards(rt, out);
    out->passivated = out->stored > out->active ? out->stored - out->active : 0;
    hist_read(&rt->c_batch, &out->batch);
    hist_read(&rt->c_latency, &out->write_latency);
    return PGS_OK;
}

int pgs_stats_get(pgs_runtime *rt, pgs_stats *out)
{
    pgs_metrics m;
    int rc = out ? pgs_metrics_get(rt, &m) : PGS_EINVAL;
    if (rc)
        return rc;
    *out = (pgs_stats){.active = m.active, .activations = m.activations,
                       .passivations = m.passivations, .crashes = m.crashes,
                       .messages = m.messages, .writes = m.writes, .commits = m.commits};
    return PGS_OK;
}

/* ------------------------------------------------------------------------
** Prometheus text exposition format, version 0.0.4.
*/
typedef struct text {
    char *buf;
    size_t size, len; /* len counts what would be written, fitting or not */
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    size_t room = t->len < t->size ? t->size - t->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

static void header(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The plain figures: name, type, help, where in pgs_metrics. */
#define FIG(name, type, field, help) {name, type, help, offsetof(pgs_metrics, field)}
static const struct {
    const char *name, *type, *help;
    size_t off;
} figures[] = {
    FIG("pgs_servers_active", "gauge", active, "Servers whose state is in memory."),
    FIG("pgs_servers_passivated", "gauge", passivated,
        "Servers whose state is only in storage."),
    FIG("pgs_servers_stored", "gauge", stored, "Servers with a stored record."),
    FIG("pgs_mailbox_messages", "gauge", queued, "Messages waiting in mailboxes."),
    FIG("pgs_mailbox_max_messages", "gauge", queued_max,
        "The deepest one server's mailbox has been."),
    FIG("pgs_activations_total", "counter", activations,
        "States brought into memory, by init or from storage."),
    FIG("pgs_reactivations_total", "counter", reactivations,
        "States loaded from storage."),
    FIG("pgs_passivations_total", "counter", passivations,
        "Servers passivated, idle or at close."),
    FIG("pgs_crashes_total", "counter", crashes, "Turns that crashed."),
    FIG("pgs_parked_total", "counter", parked, "Times a server was parked."),
    FIG("pgs_poison_total", "counter", poison, "Messages set aside after crashes."),
    FIG("pgs_messages_total", "counter", messages, "Messages handled."),
    FIG("pgs_writes_total", "counter", writes, "Records written or deleted."),
    FIG("pgs_commits_total", "counter", commits, "Storage transactions."),
    FIG("pgs_commit_batch_max_writes", "gauge", batch.max,
        "The largest group commit, in writes."),
    FIG("pgs_write_latency_max_seconds", "gauge", write_latency.max,
        "The longest wait of a write, queued to durable."),
};

/* One histogram: `finite` buckets with an upper bound (the rest fall in
** +Inf), values divided by `scale` (1e6: microseconds to seconds). */
static void histogram(text *t, const char *name, const char *help, const pgs_histogram *h,
                      int finite, double scale)
{
    header(t, name, "histogram", help);
    uint64_t cumulative = 0;
    for (int i = 0; i < finite; i++) {
        cumulative += h->buckets[i];
        put(t, "%s_bucket{le=\"%.7g\"} %llu\n", name, (double)(1ull << i) / scale,
            (unsigned long long)cumulative);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(t, "%s_sum %.7g\n%s_count %llu\n", name, (double)h->sum / scale, name,
        (unsigned long long)h->count);
}

int pgs_metrics_prometheus(const pgs_metrics *m, char *buf, size_t size, size_t *len)
{
    if (!m || (!buf && size))
        return PGS_EINVAL;
    text t = {buf, size, 0};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        uint64_t v = *(const uint64_t *)((const char *)m + figures[i].off);
        header(&t, figures[i].name, figures[i].type, figures[i].help);
        if (strstr(figures[i].name, "_seconds"))
            put(&t, "%s %.7g\n", figures[i].name, (double)v / 1e6);
        else
            put(&t, "%s %llu\n", figures[i].name, (unsigned long long)v);
    }
    /* Batches never exceed 1024 writes (commit.c): no finite bound above. */
    histogram(&t, "pgs_commit_batch_writes", "Writes per group commit.", &m->batch, 11, 1);
    histogram(&t, "pgs_write_latency_seconds",
              "Time from a write being queued to its commit being durable.",
              &m->write_latency, PGS_HIST_BUCKETS - 1, 1e6);
    if (len)
        *len = t.len;
    return t.len < size ? PGS_OK : PGS_ETOOBIG;
}
