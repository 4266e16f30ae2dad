/*
** bench/calls.c — what a pgs call and a pgs cast cost, and what a server
** costs in RAM, measured against a plain mutex/condvar round trip.
**
** What is measured, in one run:
**
**   1. condvar_roundtrips: two threads, one mutex, two condvars.  Thread A
**      bumps a request counter and signals B; B copies it into the answer
**      and signals A; A waits for the answer.  One request/response is one
**      round trip: the cheapest honest "ask another thread and wait".  The
**      two threads are pinned to two different cores, because that is the
**      hop a design that hands each call to a worker pays; left to the
**      scheduler, the rate swings about 5x from run to run on this VM
**      depending on whether both land on one core.  The table also prints
**      the unpinned and the one-core rates, for information.
**
**   2. calls_{1client,4clients,64clients}: --servers counter servers (flat
**      8-byte state; handle_call adds the message's value and replies with
**      the new total) on "memory:" storage, in the default write mode
**      (sync: the state is stored before the reply is released).  Each
**      client thread calls every server in turn (starting at its own
**      offset; --random: uniformly random servers) with value 1 for
**      --seconds; rate = calls completed / wall time from the start barrier
**      until the last client returned.  calls_1client_vs_condvar is
**      calls_1client / condvar_roundtrips.
**
**   3. casts_{1client,4clients,64clients}: the same servers, handle_cast
**      adds 1.  Rate = casts sent / wall time from the first cast until
**      pgs_stats_get().messages says every one was handled.  The timing
**      thread watches the backlog (sent - handled): above MAX_BACKLOG it
**      closes a gate the clients block on, and opens it again at half that,
**      so the figure is the handling rate, not the rate of filling mailboxes
**      until RAM runs out.  (Clients polling the backlog with short sleeps
**      instead spent the two cores on context switches: 64 clients fell to
**      a third of the 4-client rate.)
**
**      After every call and cast phase the counters are read back with a
**      zero-value call (a read: nothing changes) and their sum must equal
**      every message sent so far; otherwise the program says so and exits
**      non-zero.  Every counted message changes a state and is stored.
**
**   4. bytes_per_active_server, bytes_per_passivated_server at --mem-servers
**      servers (8-byte state, 8-byte integer keys), from glibc mallinfo2()
**      (heap in use = uordblks + hblkhd, summed over all arenas; malloc's
**      own chunk headers count, free memory does not).  One memory: store
**      is opened with pgs_storage_open and lent to the runtime
**      (opts.storage), so it outlives the runtime and its records stay:
**        H1  all N started, all still active (checked with pgs_stats_get;
**            the idle timeout is raised and the run redone if not);
**        H2  the idle timeout passed and every server passivated (active 0);
**        H3  after pgs_close: the store still holds the N records, the
**            runtime is gone.
**      bytes_per_active_server     = (H1 - H3) / N - state_size
**      bytes_per_passivated_server = (H2 - H3) / N
**      So the store's records (the same N records at all three points) and
**      the state block itself are excluded; what remains is what the
**      runtime keeps per server.  RSS from /proc/self/statm is printed too,
**      for information only (it also counts freed pages glibc kept).
**
** Output: a human-readable table, then one `NAME VALUE UNIT` line per
** figure.  Options: --servers N (10000), --mem-servers N (1000000),
** --seconds S per measurement (1.0), --quick (small sizes: a smoke test).
*/
#define BENCH_NAME "calls"
#define BENCH_COUNTER
#include "bench.h"
#include "pgs.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 16              /* messages between clock reads / counter updates */
#define MAX_BACKLOG 65536     /* casts queued but not yet handled, all clients */
#define PACE_US 250           /* how often the timing thread checks the backlog */
#define DRAIN_TIMEOUT_S 60.0  /* how long queued casts may take to drain */
#define NCLIENT_SETS 3

static const int client_sets[NCLIENT_SETS] = {1, 4, 64};

typedef struct config {
    size_t servers;     /* servers for the call and cast phases */
    size_t mem_servers; /* servers for the RAM phase */
    double seconds;     /* per time-bounded measurement */
    int quick;
    int random;         /* clients pick servers at random, not in turn */
} config;

/* One heap/RSS observation of the RAM phase. */
typedef struct mem_point {
    size_t heap; /* mallinfo2: uordblks + hblkhd */
    size_t rss;  /* resident bytes */
} mem_point;

typedef struct mem_result {
    int ok;
    size_t n;
    uint32_t idle_ms;     /* idle timeout that kept all N active until H1 */
    double start_s;       /* time to start N servers */
    double passivate_s;   /* from H1 until active == 0 */
    mem_point h0, h1, h2, h3;
    double per_active, per_passivated;
} mem_result;

typedef struct results {
    double condvar;                  /* pinned to two cores: the figure */
    double condvar_unpinned, condvar_one_core; /* for information */
    double calls[NCLIENT_SETS];
    double casts[NCLIENT_SETS];
    mem_result mem;
} results;

/* ------------------------------------------------------------------------
** 1. The reference: a mutex/condvar round trip between two threads.
**
** The figure pins the two threads to two cores: the cross-core wake-up a
** thread hop costs.  Unpinned, the rate depends on whether the scheduler
** puts both on one core (no cross-CPU wake-up) or two, and swings about 5x
** between runs here, so the unpinned and one-core rates are printed for
** information only.  With one CPU online, the figure is the unpinned rate.
*/
typedef struct pingpong {
    pthread_mutex_t lock;
    pthread_cond_t to_b, to_a;
    uint64_t req, resp; /* B answers request number req by setting resp = req */
    int stop;
    double seconds, elapsed;
} pingpong;

static void *pong_main(void *arg)
{
    pingpong *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->req == p->resp && !p->stop)
            pthread_cond_wait(&p->to_b, &p->lock);
        if (p->stop)
            break;
        p->resp = p->req;
        pthread_cond_signal(&p->to_a);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void *ping_main(void *arg)
{
    pingpong *p = arg;
    double t0 = now_s(), end = t0 + p->seconds, t1;
    pthread_mutex_lock(&p->lock);
    do {
        for (int i = 0; i < CHUNK; i++) {
            p->req++;
            pthread_cond_signal(&p->to_b);
            while (p->resp != p->req)
                pthread_cond_wait(&p->to_a, &p->lock);
        }
    } while ((t1 = now_s()) < end);
    p->elapsed = t1 - t0;
    p->stop = 1;
    pthread_cond_signal(&p->to_b);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Starts fn on a thread pinned to `cpu` (-1: anywhere). */
static int spawn(pthread_t *th, void *(*fn)(void *), void *arg, int cpu)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_attr_setaffinity_np(&a, sizeof set, &set);
    }
    int rc = pthread_create(th, &a, fn, arg);
    pthread_attr_destroy(&a);
    return rc;
}

/* Round trips per second; A on cpu_a, B on cpu_b (-1: unpinned). */
static double bench_condvar(double seconds, int cpu_a, int cpu_b)
{
    pingpong p = {.seconds = seconds};
    pthread_t a, b;
    double rate = 0;
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.to_b, NULL);
    pthread_cond_init(&p.to_a, NULL);
    if (spawn(&b, pong_main, &p, cpu_b) == 0) {
        if (spawn(&a, ping_main, &p, cpu_a) == 0) {
            pthread_join(a, NULL);
            rate = (double)p.req / p.elapsed;
        } else {
            pthread_mutex_lock(&p.lock);
            p.stop = 1;
            pthread_cond_signal(&p.to_b);
            pthread_mutex_unlock(&p.lock);
        }
        pthread_join(b, NULL);
    }
    pthread_cond_destroy(&p.to_a);
    pthread_cond_destroy(&p.to_b);
    pthread_mutex_destroy(&p.lock);
    return rate;
}

static void bench_condvars(double seconds, results *res)
{
    res->condvar_unpinned = bench_condvar(seconds, -1, -1);
    res->condvar_one_core = bench_condvar(seconds, 0, 0);
    res->condvar = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? bench_condvar(seconds, 0, 1)
                                                     : res->condvar_unpinned;
}

/* ------------------------------------------------------------------------
** The servers of phases 2 and 3, and the check that nothing was lost.
*/
typedef struct bench {
    pgs_runtime *rt;
    pgs_ref *refs;     /* the servers, by index */
    size_t nrefs;
    uint64_t expected; /* what the counters must sum to: messages sent so far */
    int random;        /* clients pick servers at random (--random) */
} bench;

/* Starts `n` counters keyed by their 8-byte index. */
static int bench_open(bench *b, size_t n)
{
    pgs_options o;
    pgs_options_init(&o);
    int rc = pgs_open(&b->rt, "memory:", &o);
    if (rc)
        return fail("pgs_open(memory:)", rc);
    if ((rc = pgs_register(b->rt, &counter_behaviour)))
        return fail("pgs_register", rc);
    if (!(b->refs = calloc(n, sizeof *b->refs)))
        return fail("refs", PGS_ENOMEM);
    for (uint64_t i = 0; i < n; i++) {
        rc = pgs_start(b->rt, "counter", &i, sizeof i, NULL, 0, NULL, &b->refs[i]);
        if (rc)
            return fail("pgs_start", rc);
    }
    b->nrefs = n;
    return 0;
}

static void bench_close(bench *b)
{
    pgs_close(b->rt);
    free(b->refs);
}

/* Reads every counter back; their sum must be every message sent. */
static int verify(bench *b, const char *phase)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < b->nrefs; i++) {
        pgs_bytes r;
        int rc = pgs_call(b->rt, &b->refs[i], NULL, 0, &r, -1);
        if (rc)
            return fail("verify: pgs_call", rc);
        sum += read_u64(r.data, r.len);
        pgs_bytes_free(&r);
    }
    if (sum != b->expected) {
        fprintf(stderr, "calls: ERROR after %s: counters sum to %" PRIu64
                ", but %" PRIu64 " increments were sent\n", phase, sum, b->expected);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
** 2 and 3. Client threads calling or casting random servers.
*/
typedef struct phase {
    bench *b;
    int casts;              /* 0: pgs_call, 1: pgs_cast */
    int random;             /* servers picked at random, else in turn */
    double seconds;
    pthread_barrier_t go;   /* the clients and the timing thread start together */
    uint64_t base;          /* pgs_stats.messages when the phase began */
    _Atomic uint64_t sent;  /* messages accepted, all clients */
    _Atomic int rc;         /* first failure, or 0 */
    _Atomic int running;    /* clients still sending */
    _Atomic int paused;     /* casts: the gate is closed (set without the lock,
                               cleared under it, so no client misses the wake-up) */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cv;
} phase;

typedef struct client {
    phase *p;
    uint64_t rng;
    size_t next;            /* in-turn order: the next server's index */
    pthread_t th;
} client;

static uint64_t handled(phase *p)
{
    pgs_stats s;
    pgs_stats_get(p->b->rt, &s);
    return s.messages - p->base;
}

static uint64_t backlog(phase *p)
{
    uint64_t done = handled(p), sent = atomic_load(&p->sent);
    return sent > done ? sent - done : 0;
}

/* A client blocks here while the pacer holds the gate closed. */
static void gate_wait(phase *p)
{
    pthread_mutex_lock(&p->gate_lock);
    while (atomic_load(&p->paused))
        pthread_cond_wait(&p->gate_cv, &p->gate_lock);
    pthread_mutex_unlock(&p->gate_lock);
}

static void gate_open(phase *p)
{
    pthread_mutex_lock(&p->gate_lock);
    atomic_store(&p->paused, 0);
    pthread_cond_broadcast(&p->gate_cv);
    pthread_mutex_unlock(&p->gate_lock);
}

/* The timing thread, while cast clients run: closes the gate above
** MAX_BACKLOG queued casts, opens it at half.  A runtime that stops
** handling casts altogether fails the phase instead of hanging it. */
static void pace(phase *p)
{
    double closed_at = 0;
    while (atomic_load(&p->running) > 0) {
        sleep_us(PACE_US);
        uint64_t queued = backlog(p);
        if (!atomic_load(&p->paused) && queued >= MAX_BACKLOG) {
            atomic_store(&p->paused, 1);
            closed_at = now_s();
        } else if (atomic_load(&p->paused) &&
                   (queued <= MAX_BACKLOG / 2 || now_s() - closed_at > DRAIN_TIMEOUT_S)) {
            if (queued > MAX_BACKLOG / 2) {
                int none = 0;
                atomic_compare_exchange_strong(&p->rc, &none, PGS_ETIMEDOUT);
            }
            gate_open(p);
        }
    }
}

/* One message to the next server.  A call's reply must be a new total. */
static int send_one(client *c)
{
    phase *p = c->p;
    size_t i = p->random ? rand_next(&c->rng) % p->b->nrefs : c->next++ % p->b->nrefs;
    const pgs_ref *ref = &p->b->refs[i];
    const uint64_t one = 1;
    if (p->casts)
        return pgs_cast(p->b->rt, ref, &one, sizeof one);
    pgs_bytes r;
    int rc = pgs_call(p->b->rt, ref, &one, sizeof one, &r, -1);
    if (rc == PGS_OK && (r.len != sizeof one || read_u64(r.data, r.len) == 0))
        rc = PGS_ECALLBACK; /* not a counter's reply */
    pgs_bytes_free(&r);
    return rc;
}

static void *client_main(void *arg)
{
    client *c = arg;
    phase *p = c->p;
    pthread_barrier_wait(&p->go);
    double end = now_s() + p->seconds;
    do {
        int n = 0, rc = 0;
        while (n < CHUNK && !(rc = send_one(c)))
            n++;
        atomic_fetch_add_explicit(&p->sent, (uint64_t)n, memory_order_relaxed);
        if (rc) {
            int none = 0;
            atomic_compare_exchange_strong(&p->rc, &none, rc);
            break;
        }
        if (atomic_load_explicit(&p->paused, memory_order_relaxed))
            gate_wait(p);
    } while (now_s() < end && !atomic_load_explicit(&p->rc, memory_order_relaxed));
    atomic_fetch_sub(&p->running, 1);
    return NULL;
}

/* Casts: waits until the runtime has handled every one. */
static int drain(phase *p)
{
    double give_up = now_s() + DRAIN_TIMEOUT_S;
    uint64_t sent = atomic_load(&p->sent);
    while (handled(p) < sent) {
        if (now_s() > give_up) {
            fprintf(stderr, "calls: ERROR: only %" PRIu64 " of %" PRIu64
                    " casts handled after %.0f s\n", handled(p), sent, DRAIN_TIMEOUT_S);
            return -1;
        }
        sleep_us(20);
    }
    return 0;
}

/* Starts nclients, times them, and returns 0 with *rate, or -1. */
static int run_clients(phase *p, client *cl, int nclients, double *rate)
{
    pgs_stats s;
    pgs_stats_get(p->b->rt, &s);
    p->base = s.messages;
    atomic_store(&p->running, nclients);
    int started = 0;
    for (; started < nclients; started++) {
        cl[started] = (client){.p = p, .rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(started + 1),
                               .next = p->b->nrefs * (size_t)started / (size_t)nclients};
        if (pthread_create(&cl[started].th, NULL, client_main, &cl[started]) != 0)
            break;
    }
    if (started < nclients) { /* the barrier would never open: give up loudly */
        fprintf(stderr, "calls: cannot create client thread %d\n", started);
        exit(1);
    }
    pthread_barrier_wait(&p->go);
    double t0 = now_s();
    if (p->casts)
        pace(p);
    for (int i = 0; i < nclients; i++)
        pthread_join(cl[i].th, NULL);
    int rc = p->casts ? drain(p) : 0;
    double t1 = now_s();
    p->b->expected += atomic_load(&p->sent);
    if (atomic_load(&p->rc))
        return fail(p->casts ? "pgs_cast" : "pgs_call", atomic_load(&p->rc));
    *rate = (double)atomic_load(&p->sent) / (t1 - t0);
    return rc;
}

static int run_phase(bench *b, int casts, int nclients, double seconds, double *rate)
{
    phase p = {.b = b, .casts = casts, .random = b->random, .seconds = seconds};
    client *cl = calloc((size_t)nclients, sizeof *cl);
    if (!cl)
        return fail("clients", PGS_ENOMEM);
    pthread_barrier_init(&p.go, NULL, (unsigned)nclients + 1);
    pthread_mutex_init(&p.gate_lock, NULL);
    pthread_cond_init(&p.gate_cv, NULL);
    int rc = run_clients(&p, cl, nclients, rate);
    pthread_cond_destroy(&p.gate_cv);
    pthread_mutex_destroy(&p.gate_lock);
    pthread_barrier_destroy(&p.go);
    free(cl);
    if (rc)
        return rc;
    char what[64];
    snprintf(what, sizeof what, "%d-client %s", nclients, casts ? "casts" : "calls");
    return verify(b, what);
}

static int bench_messages(const config *cfg, results *res)
{
    bench b = {.random = cfg->random};
    int rc = bench_open(&b, cfg->servers);
    for (int i = 0; !rc && i < NCLIENT_SETS; i++)
        rc = run_phase(&b, 0, client_sets[i], cfg->seconds, &res->calls[i]);
    for (int i = 0; !rc && i < NCLIENT_SETS; i++)
        rc = run_phase(&b, 1, client_sets[i], cfg->seconds, &res->casts[i]);
    bench_close(&b);
    return rc;
}

/* ------------------------------------------------------------------------
** 4. RAM per server.
*/
static mem_point mem_now(void)
{
    struct mallinfo2 mi = mallinfo2(); /* glibc sums every arena */
    mem_point p = {.heap = mi.uordblks + mi.hblkhd};
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    p.rss = (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

static uint64_t active_now(pgs_runtime *rt)
{
    pgs_stats s;
    pgs_stats_get(rt, &s);
    return s.active;
}

/* Opens a runtime (*rt, closed by the caller even on failure) on the
** borrowed store and starts n servers; *active receives how many are still
** active at the end (n unless the idle timeout struck first). */
static int start_all(pgs_storage *st, uint32_t idle_ms, size_t n, pgs_runtime **rt,
                     uint64_t *active)
{
    pgs_options o;
    pgs_options_init(&o);
    o.storage = st;
    o.idle_timeout_ms = idle_ms;
    int rc = pgs_open(rt, NULL, &o);
    if (rc)
        return fail("pgs_open(storage)", rc);
    if ((rc = pgs_register(*rt, &counter_behaviour)))
        return fail("pgs_register", rc);
    for (uint64_t i = 0; i < n; i++)
        if ((rc = pgs_start(*rt, "counter", &i, sizeof i, NULL, 0, NULL, NULL)))
            return fail("pgs_start", rc);
    *active = active_now(*rt);
    return 0;
}

/* Polls until every server has passivated; -1 if that takes too long. */
static int wait_passivated(pgs_runtime *rt, uint32_t idle_ms)
{
    double give_up = now_s() + idle_ms / 1000.0 + 120.0;
    uint64_t a;
    while ((a = active_now(rt)) > 0) {
        if (now_s() > give_up) {
            fprintf(stderr, "calls: ERROR: %" PRIu64 " servers still active "
                    "long after the idle timeout\n", a);
            return -1;
        }
        sleep_us(10000);
    }
    return 0;
}

/* H1: start with an idle timeout long enough that all N are still active
** when the last one has started; if the start was slower than that, close,
** raise the timeout and start again (the servers then load from the store,
** which ends in the same in-memory shape). */
static int mem_h1(pgs_storage *st, mem_result *m, pgs_runtime **rt)
{
    for (int attempt = 0; attempt < 4; attempt++, m->idle_ms *= 4) {
        uint64_t active = 0;
        double t0 = now_s();
        int rc = start_all(st, m->idle_ms, m->n, rt, &active);
        m->start_s = now_s() - t0;
        m->h1 = mem_now();
        if (rc)
            return rc;
        if (active == m->n)
            return 0;
        fprintf(stderr, "calls: only %" PRIu64 " of %zu servers active after a %.1f s "
                "start with a %" PRIu32 " ms idle timeout; raising it\n",
                active, m->n, m->start_s, m->idle_ms);
        pgs_close(*rt);
        *rt = NULL;
    }
    fprintf(stderr, "calls: ERROR: could not keep all servers active until H1\n");
    return -1;
}

static int mem_measure(pgs_storage *st, mem_result *m)
{
    pgs_runtime *rt = NULL;
    int rc = mem_h1(st, m, &rt);
    if (!rc) {
        double t0 = now_s();
        rc = wait_passivated(rt, m->idle_ms);
        m->passivate_s = now_s() - t0;
        m->h2 = mem_now();
    }
    pgs_close(rt);
    m->h3 = mem_now();
    return rc;
}

static int bench_memory(const config *cfg, mem_result *m)
{
    pgs_storage *st;
    m->n = cfg->mem_servers;
    m->idle_ms = cfg->quick ? 1000 : 5000;
    int rc = pgs_storage_open(&st, "memory:", NULL);
    if (rc)
        return fail("pgs_storage_open(memory:)", rc);
    m->h0 = mem_now();
    rc = mem_measure(st, m);
    pgs_storage_close(st);
    if (rc)
        return rc;
    if (m->h1.heap <= m->h3.heap) { /* e.g. ASan's allocator: mallinfo2 sees nothing */
        fprintf(stderr, "calls: ERROR: mallinfo2 saw no heap for %zu active servers; "
                "malloc is not glibc's here, so no RAM figures\n", m->n);
        return -1;
    }
    double n = (double)m->n;
    m->per_active = ((double)m->h1.heap - (double)m->h3.heap) / n - (double)sizeof(counter);
    m->per_passivated = ((double)m->h2.heap - (double)m->h3.heap) / n;
    m->ok = 1;
    return 0;
}

/* ------------------------------------------------------------------------
** Output.
*/
static const char *plural(int n)
{
    return n == 1 ? "client " : "clients";
}

static void print_ref(const char *what, double rate, double ref)
{
    if (rate > 0)
        printf("  %-17s  %12.0f /s  %9.2f us  %8.2fx\n", what, rate, 1e6 / rate, rate / ref);
}

static void print_rate(const char *what, int nclients, double rate, double ref)
{
    printf("  %-6s %2d %s  %12.0f /s  %9.2f us  %8.2fx\n", what, nclients,
           plural(nclients), rate, rate > 0 ? 1e6 / rate : 0.0, ref > 0 ? rate / ref : 0.0);
}

static void print_mem_point(const char *label, mem_point p)
{
    printf("  %-44s %10.1f MiB %10.1f MiB\n", label, (double)p.heap / 1048576.0,
           (double)p.rss / 1048576.0);
}

static void print_mem_table(const mem_result *m)
{
    printf("\nRAM at %zu servers (8-byte state, 8-byte keys), one memory: store lent\n"
           "to the runtime; heap = glibc mallinfo2 uordblks + hblkhd, all arenas:\n", m->n);
    printf("  %-44s %14s %14s\n", "point", "heap in use", "RSS");
    print_mem_point("H0 store open, empty", m->h0);
    print_mem_point("H1 all servers started and active", m->h1);
    print_mem_point("H2 all passivated", m->h2);
    print_mem_point("H3 runtime closed, store holds all records", m->h3);
    printf("  start: %.2f s (idle timeout %" PRIu32 " ms); H1 until active == 0: %.2f s\n",
           m->start_s, m->idle_ms, m->passivate_s);
    printf("  per active server:     (H1-H3)/N - %zu (state) = %8.1f bytes\n",
           sizeof(counter), m->per_active);
    printf("  per passivated server: (H2-H3)/N             = %8.1f bytes\n",
           m->per_passivated);
    printf("  (store's own records: (H3-H0)/N = %.1f bytes each, not counted above)\n",
           ((double)m->h3.heap - (double)m->h0.heap) / (double)m->n);
}

static void print_table(const config *cfg, const results *r)
{
    static const char *names[2] = {"call", "cast"};
    printf("pgs bench/calls: %zu counter servers on memory:, write mode sync,\n"
           "default workers (%ld cores), %.2f s per measurement\n\n",
           cfg->servers, sysconf(_SC_NPROCESSORS_ONLN), cfg->seconds);
    printf("  %-17s  %15s  %12s  %9s\n", "measurement", "rate", "per op", "vs condvar");
    print_ref("condvar, 2 cores", r->condvar, r->condvar);
    print_ref(" unpinned (info)", r->condvar_unpinned, r->condvar);
    print_ref(" one core (info)", r->condvar_one_core, r->condvar);
    for (int i = 0; i < NCLIENT_SETS; i++)
        print_rate(names[0], client_sets[i], r->calls[i], r->condvar);
    for (int i = 0; i < NCLIENT_SETS; i++)
        print_rate(names[1], client_sets[i], r->casts[i], r->condvar);
    printf("  (calls: %s, reply checked; casts: first cast until all\n"
           "   handled; after each phase the counters summed to the messages sent)\n",
           cfg->random ? "random servers" : "every server in turn");
    if (r->mem.ok)
        print_mem_table(&r->mem);
}

static void print_figures(const results *r)
{
    static const char *suffix[NCLIENT_SETS] = {"1client", "4clients", "64clients"};
    printf("\ncondvar_roundtrips %.1f per_s\n", r->condvar);
    for (int i = 0; i < NCLIENT_SETS; i++)
        printf("calls_%s %.1f per_s\n", suffix[i], r->calls[i]);
    printf("calls_1client_vs_condvar %.3f ratio\n", r->calls[0] / r->condvar);
    for (int i = 0; i < NCLIENT_SETS; i++)
        printf("casts_%s %.1f per_s\n", suffix[i], r->casts[i]);
    if (r->mem.ok) {
        printf("bytes_per_active_server %.1f bytes\n", r->mem.per_active);
        printf("bytes_per_passivated_server %.1f bytes\n", r->mem.per_passivated);
    }
}

/* ------------------------------------------------------------------------
** Options and main.
*/
static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--servers N] [--mem-servers N] [--seconds S] [--random] [--quick]\n",
            argv0);
    return 2;
}

/* Parses argv into cfg; --quick shrinks whatever was not given. */
static int parse_args(int argc, char **argv, config *cfg)
{
    int got_servers = 0, got_mem = 0, got_secs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0 || strcmp(a, "--random") == 0) {
            *(a[2] == 'q' ? &cfg->quick : &cfg->random) = 1;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--servers") == 0)
            got_servers = 1, cfg->servers = strtoull(v, NULL, 10);
        else if (strcmp(a, "--mem-servers") == 0)
            got_mem = 1, cfg->mem_servers = strtoull(v, NULL, 10);
        else if (strcmp(a, "--seconds") == 0)
            got_secs = 1, cfg->seconds = strtod(v, NULL);
        else
            return -1;
    }
    if (cfg->quick) {
        cfg->servers = got_servers ? cfg->servers : 1000;
        cfg->mem_servers = got_mem ? cfg->mem_servers : 20000;
        cfg->seconds = got_secs ? cfg->seconds : 0.2;
    }
    return cfg->servers && cfg->mem_servers && cfg->seconds > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    config cfg = {.servers = 10000, .mem_servers = 1000000, .seconds = 1.0};
    results res = {0};
    if (parse_args(argc, argv, &cfg))
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    bench_condvars(cfg.seconds, &res);
    int rc = bench_messages(&cfg, &res);
    /* RAM last, and in a runtime of its own, so the message phases' heap
    ** (refs, freed mailboxes) is settled before H1 and after H3 alike. */
    if (!rc)
        rc = bench_memory(&cfg, &res.mem);
    print_table(&cfg, &res);
    if (rc) { /* no figures: a dashboard must not record a failed run's zeros */
        fprintf(stderr, "calls: FAILED; no figures printed\n");
        return 1;
    }
    print_figures(&res);
    return 0;
}
