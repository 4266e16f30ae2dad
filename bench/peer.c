/*
** bench/peer.c — pgs against its peer, Erlang/OTP's gen_server: the same
** counter server and the same workload on both, in one run, as ratios.
** The Erlang side is bench/peer_counter.erl, compiled with erlc into a
** temporary directory and run in its own `erl` process before the pgs side,
** so the two never share the cores.
**
** The server, on both sides: the state is a count (a flat 8-byte state in
** pgs, an integer in the gen_server).  A call adds its value and replies
** with the new count, which the caller checks; a cast adds its value.  Every
** timed message carries 1, so every one changes the state.
**
** The phases, the same on both sides.  Clients are threads in pgs and
** processes in Erlang; client i of N calls its own share of the phase's S
** servers (i*S/N up to (i+1)*S/N) in turn, all from one start signal, for
** --seconds; rate = messages / time from the signal until the last client
** finished:
**   calls_1client         1 client, 1 server.
**   calls_8clients        8 clients, each its own server.
**   calls_1client_spread  1 client, --servers (10,000) servers in turn, as
**                         bench/calls does: for information.
**   casts                 1 client casts to 1 server for --seconds, calling
**                         it after every WINDOW casts (flow control: the
**                         mailbox stays bounded on both sides), then once
**                         more: that reply comes after every cast was
**                         handled.  Rate = casts / the whole time.
**   casts_spread          the same over --servers servers in turn, calling
**                         the one just cast to after every WINDOW casts and
**                         each of them at the end: for information.
**   start100k             one client starts --starts (100,000) servers, one
**                         after another; each start returns once init ran
**                         (and, in pgs, the first state was stored).
**   RAM per idle server   Erlang: erlang:memory(total) before and after those
**                         starts (garbage collected), / N: an idle gen_server
**                         lives in RAM (the list of pids the starter keeps,
**                         16 bytes a server, counts in).  pgs, as bench/calls
**                         measures it: the starts run on a memory: store lent
**                         to the runtime (idle timeout --idle-ms); glibc heap
**                         in use (mallinfo2) at H1 all active, H2 all
**                         passivated, H3 runtime closed (the store and its
**                         records still there).  pgs_passivated_bytes =
**                         (H2-H3)/N: what an idle pgs server costs in RAM, its
**                         state being in storage (on disk with a real engine;
**                         the memory: store's records are left out).
**                         pgs_active_bytes = (H1-H3)/N, state included: an
**                         active one, beside the gen_server, always active.
** After the message phases each side reads every count back (a call with
** value 0, which changes nothing) and they must sum to every increment
** sent, or the program fails.
**
** Why it is fair: both run with their defaults on the same cores: erl with
** one scheduler per core (its default; the count is printed), pgs with its
** default pool of one worker per core.  Both use the documented calls
** (gen_server:call/2 with its default timeout, gen_server:cast/2; pgs_call,
** pgs_cast).  The gen_server keeps its state in its heap and stores
** nothing; pgs runs on "memory:" (an engine written inline, in the turn, as
** in bench/calls) in write mode sync, so every call's new state is
** checksummed and stored before the reply is released: pgs does more per
** message.  pgs gains on calls by design: a call to an idle server runs its
** handler on the calling thread, where a gen_server:call always wakes the
** server's process, often on the other scheduler.
**
** Output: a table, then NAME VALUE UNIT lines: every raw figure of both
** sides (erlang_*, pgs_*), the ratios *_vs_erlang (pgs ÷ Erlang: above 1,
** pgs is faster) and idle_bytes_erlang_vs_pgs (Erlang bytes per idle
** gen_server ÷ pgs bytes per passivated server, the latter counted as at
** least 1 byte so the ratio stays finite: a lower bound; _active: the same
** against pgs_active_bytes).  Needs erl and erlc (`scripts/deps.sh
** bench`).  Options: --seconds S (2), --servers N (10000), --starts N
** (100000), --idle-ms MS (3000), --erl-source PATH, --quick (small sizes:
** a smoke test).
*/
#define BENCH_NAME "peer"
#define BENCH_COUNTER
#include "bench.h"
#include "pgs.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PEER_ERL_SOURCE /* set by bench/CMakeLists.txt */
#define PEER_ERL_SOURCE "bench/peer_counter.erl"
#endif

#define CHUNK 16       /* messages between clock reads, as in the .erl */
#define WINDOW 10000   /* casts between flow-control calls, as in the .erl */
#define MANY_CLIENTS 8

extern char **environ;

typedef struct config {
    double seconds;     /* per timed phase */
    size_t servers;     /* for calls_1client_spread */
    size_t starts;      /* for start100k and the RAM figures */
    uint32_t idle_ms;   /* pgs: idle timeout while measuring RAM */
    const char *erl_source;
    int quick;
} config;

/* One side's figures; -1: not measured. */
typedef struct figures {
    double calls1, calls8, spread, casts, casts_spread; /* per second */
    double start_rate;                     /* starts per second */
    double idle_bytes;   /* Erlang: per idle gen_server; pgs: per passivated server */
    double active_bytes; /* pgs only: per active server, state included */
    double schedulers;   /* Erlang only */
} figures;

/* ------------------------------------------------------------------------
** The Erlang side: erlc, then erl, whose output lines give the figures.
*/

/* 1 if `prog` is an executable file in a directory of $PATH. */
static int in_path(const char *prog)
{
    char buf[4096];
    for (const char *dir = getenv("PATH"); dir && *dir;) {
        size_t n = strcspn(dir, ":");
        int len = snprintf(buf, sizeof buf, "%.*s/%s", (int)n, dir, prog);
        if (n && len > 0 && (size_t)len < sizeof buf && access(buf, X_OK) == 0)
            return 1;
        dir += n + (dir[n] == ':');
    }
    return 0;
}

/* Reads fd to its end into a malloc'd, NUL-terminated string (or NULL). */
static char *read_all(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - len - 1)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
        if (cap - len < 1024) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Runs argv[0] (found in $PATH) with its stdout and stderr into *out
** (malloc'd, the caller frees; NULL if it could not be read).  Returns the
** exit status, or -1 if it could not run or was killed. */
static int run_capture(char *const argv[], char **out)
{
    int fds[2], status = -1;
    pid_t pid;
    *out = NULL;
    if (pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    *out = read_all(fds[0]);
    close(fds[0]);
    if (rc != 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Takes the erlang_* lines of erl's output; -1 unless every figure came. */
static int parse_erlang(const char *out, figures *f)
{
    struct { const char *name; double *value; } want[] = {
        {"erlang_calls_1client", &f->calls1}, {"erlang_calls_8clients", &f->calls8},
        {"erlang_calls_1client_spread", &f->spread}, {"erlang_casts", &f->casts},
        {"erlang_casts_spread", &f->casts_spread},
        {"erlang_start100k", &f->start_rate}, {"erlang_idle_bytes", &f->idle_bytes},
        {"erlang_schedulers", &f->schedulers},
    };
    size_t nwant = sizeof want / sizeof want[0];
    for (const char *line = out; line; line = strchr(line, '\n')) {
        char name[64];
        double v;
        line += *line == '\n';
        if (sscanf(line, "%63s %lf", name, &v) != 2)
            continue;
        for (size_t i = 0; i < nwant; i++)
            if (strcmp(name, want[i].name) == 0)
                *want[i].value = v;
    }
    for (size_t i = 0; i < nwant; i++)
        if (*want[i].value < 0)
            return -1;
    return 0;
}

/* Compiles the module into dir, runs it, and parses its figures. */
static int erlang_run(const config *cfg, const char *dir, figures *f)
{
    char servers[32], ms[32], starts[32];
    snprintf(servers, sizeof servers, "%zu", cfg->servers);
    snprintf(ms, sizeof ms, "%.0f", cfg->seconds * 1000.0);
    snprintf(starts, sizeof starts, "%zu", cfg->starts);
    char *erlc[] = {"erlc", "-o", (char *)dir, (char *)cfg->erl_source, NULL};
    char *erl[] = {"erl", "-noshell", "-pa", (char *)dir, "-run", "peer_counter", "main",
                   servers, ms, starts, NULL};
    char *out;
    const char *what = "erlc";
    int rc = run_capture(erlc, &out);
    if (rc == 0) {
        free(out);
        what = "erl";
        rc = run_capture(erl, &out);
    }
    if (rc == 0 && parse_erlang(out, f) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "peer: the Erlang side failed (%s, status %d):\n%s\n", what, rc,
                out ? out : "(no output)");
    free(out);
    return rc ? -1 : 0;
}

static int erlang_side(const config *cfg, figures *f)
{
    if (!in_path("erl") || !in_path("erlc")) {
        fprintf(stderr, "peer: erl and erlc (Erlang/OTP) are not installed: "
                "run scripts/deps.sh bench\n");
        return -1;
    }
    char dir[] = "/tmp/pgs-peer-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "peer: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    int rc = erlang_run(cfg, dir, f);
    char beam[sizeof dir + 32];
    snprintf(beam, sizeof beam, "%s/peer_counter.beam", dir);
    unlink(beam);
    rmdir(dir);
    return rc;
}

/* ------------------------------------------------------------------------
** The pgs side.  The counter: a call or cast adds the message's value; a
** call replies with the new count.  Value 0 is a read: nothing to store.
*/
/* The servers of the message phases. */
typedef struct side {
    pgs_runtime *rt;
    pgs_ref *refs;
    size_t nrefs;
    uint64_t expected; /* increments sent so far */
} side;

/* Calls ref with value 1; the reply must be a new count. */
static int call_one(side *s, const pgs_ref *ref)
{
    const uint64_t one = 1;
    pgs_bytes r = {0};
    int rc = pgs_call(s->rt, ref, &one, sizeof one, &r, -1);
    if (rc == PGS_OK && read_u64(r.data, r.len) == 0)
        rc = PGS_ECALLBACK; /* not a counter's reply */
    pgs_bytes_free(&r);
    return rc;
}

/* Opens memory: with the default options and starts n counters. */
static int side_open(side *s, size_t n)
{
    int rc = pgs_open(&s->rt, "memory:", NULL);
    if (rc)
        return fail("pgs_open(memory:)", rc);
    if ((rc = pgs_register(s->rt, &counter_behaviour)))
        return fail("pgs_register", rc);
    if (!(s->refs = calloc(n, sizeof *s->refs)))
        return fail("refs", PGS_ENOMEM);
    for (uint64_t i = 0; i < n; i++)
        if ((rc = pgs_start(s->rt, "counter", &i, sizeof i, NULL, 0, NULL, &s->refs[i])))
            return fail("pgs_start", rc);
    s->nrefs = n;
    return 0;
}

/* The counts must sum to every increment sent. */
static int verify(side *s)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->nrefs; i++) {
        pgs_bytes r = {0};
        int rc = pgs_call(s->rt, &s->refs[i], NULL, 0, &r, -1);
        if (rc)
            return fail("verify: pgs_call", rc);
        sum += read_u64(r.data, r.len);
        pgs_bytes_free(&r);
    }
    if (sum != s->expected) {
        fprintf(stderr, "peer: ERROR: the counts sum to %" PRIu64 ", but %" PRIu64
                " increments were sent\n", sum, s->expected);
        return -1;
    }
    return 0;
}

/* A calls phase: clients, each calling its share of the servers in turn. */
typedef struct phase {
    side *s;
    double seconds;
    pthread_barrier_t go;
    _Atomic uint64_t calls;
    _Atomic int rc;
} phase;

typedef struct client {
    phase *p;
    size_t first, count; /* its share: refs[first .. first + count) */
    pthread_t th;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    phase *p = c->p;
    uint64_t i = 0;
    int rc = 0;
    pthread_barrier_wait(&p->go);
    double end = now_s() + p->seconds;
    do {
        for (int k = 0; k < CHUNK && !rc; k++, i++)
            rc = call_one(p->s, &p->s->refs[c->first + i % c->count]);
    } while (!rc && now_s() < end);
    atomic_fetch_add(&p->calls, i);
    if (rc)
        atomic_store(&p->rc, rc);
    return NULL;
}

/* nclients threads over the first nservers servers; *rate: calls / s. */
static int run_calls(side *s, int nclients, size_t nservers, double seconds, double *rate)
{
    phase p = {.s = s, .seconds = seconds};
    client cl[MANY_CLIENTS];
    pthread_barrier_init(&p.go, NULL, (unsigned)nclients + 1);
    for (int i = 0; i < nclients; i++) {
        size_t first = nservers * (size_t)i / (size_t)nclients;
        cl[i] = (client){.p = &p, .first = first,
                         .count = nservers * (size_t)(i + 1) / (size_t)nclients - first};
        if (pthread_create(&cl[i].th, NULL, client_main, &cl[i]) != 0) {
            fprintf(stderr, "peer: cannot create client thread %d\n", i);
            exit(1); /* the barrier would never open */
        }
    }
    pthread_barrier_wait(&p.go);
    double t0 = now_s();
    for (int i = 0; i < nclients; i++)
        pthread_join(cl[i].th, NULL);
    double t1 = now_s();
    pthread_barrier_destroy(&p.go);
    s->expected += atomic_load(&p.calls);
    if (atomic_load(&p.rc))
        return fail("pgs_call", atomic_load(&p.rc));
    *rate = (double)atomic_load(&p.calls) / (t1 - t0);
    return 0;
}

/* Casts to the first nservers servers in turn, calling the one just cast
** to after every WINDOW casts, then each of them once; *rate: casts / the
** whole time. */
static int run_casts(side *s, size_t nservers, double seconds, double *rate)
{
    const uint64_t one = 1;
    uint64_t i = 0;
    int rc = 0;
    double t0 = now_s(), end = t0 + seconds;
    do {
        for (int k = 0; k < CHUNK && !rc; k++, i++) {
            const pgs_ref *ref = &s->refs[i % nservers];
            rc = pgs_cast(s->rt, ref, &one, sizeof one);
            if (!rc && (i + 1) % WINDOW == 0)
                rc = call_one(s, ref);
        }
    } while (!rc && now_s() < end);
    for (size_t j = 0; !rc && j < nservers; j++)
        rc = call_one(s, &s->refs[j]); /* handled after every cast to it */
    if (rc)
        return fail("casts", rc);
    *rate = (double)i / (now_s() - t0);
    s->expected += i + i / WINDOW + nservers;
    return 0;
}

static int pgs_messages(const config *cfg, figures *f)
{
    side s = {0};
    size_t n = cfg->servers > MANY_CLIENTS ? cfg->servers : MANY_CLIENTS;
    int rc = side_open(&s, n);
    if (!rc)
        rc = run_calls(&s, 1, 1, cfg->seconds, &f->calls1);
    if (!rc)
        rc = run_calls(&s, MANY_CLIENTS, MANY_CLIENTS, cfg->seconds, &f->calls8);
    if (!rc)
        rc = run_calls(&s, 1, cfg->servers, cfg->seconds, &f->spread);
    if (!rc)
        rc = run_casts(&s, 1, cfg->seconds, &f->casts);
    if (!rc)
        rc = run_casts(&s, cfg->servers, cfg->seconds, &f->casts_spread);
    if (!rc)
        rc = verify(&s);
    pgs_close(s.rt);
    free(s.refs);
    return rc;
}

/* ------------------------------------------------------------------------
** pgs: start rate and RAM per server, as bench/calls measures RAM.
*/
static double heap_now(void)
{
    struct mallinfo2 mi = mallinfo2(); /* glibc sums every arena */
    return (double)(mi.uordblks + mi.hblkhd);
}

static uint64_t active_now(pgs_runtime *rt)
{
    pgs_stats st;
    pgs_stats_get(rt, &st);
    return st.active;
}

/* Starts n servers on rt; *rate: starts / s. */
static int start_servers(pgs_runtime *rt, size_t n, double *rate)
{
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        int rc = pgs_start(rt, "counter", &i, sizeof i, NULL, 0, NULL, NULL);
        if (rc)
            return fail("pgs_start", rc);
    }
    *rate = (double)n / (now_s() - t0);
    if (active_now(rt) != n) {
        fprintf(stderr, "peer: ERROR: servers passivated before the last one started; "
                "raise --idle-ms\n");
        return -1;
    }
    return 0;
}

static int wait_passivated(pgs_runtime *rt, uint32_t idle_ms)
{
    double give_up = now_s() + idle_ms / 1000.0 + 60.0;
    while (active_now(rt) > 0) {
        if (now_s() > give_up) {
            fprintf(stderr, "peer: ERROR: servers still active long after the idle timeout\n");
            return -1;
        }
        sleep_us(10000);
    }
    return 0;
}

/* H1 all started and active, H2 all passivated, H3 the runtime closed. */
static int measure_servers(const config *cfg, pgs_storage *st, figures *f)
{
    pgs_runtime *rt;
    pgs_options o;
    pgs_options_init(&o);
    o.storage = st;
    o.idle_timeout_ms = cfg->idle_ms;
    int rc = pgs_open(&rt, NULL, &o);
    if (rc)
        return fail("pgs_open(storage)", rc);
    if ((rc = pgs_register(rt, &counter_behaviour)))
        rc = fail("pgs_register", rc);
    if (!rc)
        rc = start_servers(rt, cfg->starts, &f->start_rate);
    double h1 = heap_now();
    if (!rc)
        rc = wait_passivated(rt, cfg->idle_ms);
    double h2 = heap_now();
    pgs_close(rt);
    double h3 = heap_now();
    double n = (double)cfg->starts;
    f->active_bytes = (h1 - h3) / n;
    f->idle_bytes = (h2 - h3) / n;
    return rc;
}

static int pgs_servers(const config *cfg, figures *f)
{
    pgs_storage *st;
    int rc = pgs_storage_open(&st, "memory:", NULL);
    if (rc)
        return fail("pgs_storage_open(memory:)", rc);
    rc = measure_servers(cfg, st, f);
    pgs_storage_close(st);
    if (!rc && f->active_bytes <= 0) { /* e.g. ASan's allocator: mallinfo2 sees nothing */
        fprintf(stderr, "peer: ERROR: mallinfo2 saw no heap; malloc is not glibc's here\n");
        return -1;
    }
    return rc;
}

/* ------------------------------------------------------------------------
** Output.
*/
static void print_rate(const char *what, double pgs, double erl)
{
    printf("  %-34s %12.0f /s %12.0f /s %9.2fx\n", what, pgs, erl, pgs / erl);
}

/* Erlang ÷ pgs bytes, pgs counted as at least 1 byte. */
static double bytes_ratio(double erl, double pgs)
{
    return erl / (pgs < 1.0 ? 1.0 : pgs);
}

static void print_table(const config *cfg, const figures *p, const figures *e)
{
    char what[64];
    printf("pgs bench/peer: pgs against an Erlang/OTP gen_server, the same counter\n"
           "server and workload.  pgs: memory:, write mode sync, default workers\n"
           "(%ld cores); Erlang: %.0f schedulers; %.2f s per timed phase\n\n",
           sysconf(_SC_NPROCESSORS_ONLN), e->schedulers, cfg->seconds);
    printf("  %-34s %12s    %12s    %10s\n", "measurement", "pgs", "Erlang", "pgs/Erlang");
    print_rate("calls, 1 client, 1 server", p->calls1, e->calls1);
    print_rate("calls, 8 clients, one server each", p->calls8, e->calls8);
    snprintf(what, sizeof what, "calls, 1 client, %zu servers", cfg->servers);
    print_rate(what, p->spread, e->spread);
    print_rate("casts, 1 client, 1 server", p->casts, e->casts);
    snprintf(what, sizeof what, "casts, 1 client, %zu servers", cfg->servers);
    print_rate(what, p->casts_spread, e->casts_spread);
    snprintf(what, sizeof what, "starts of %zu servers", cfg->starts);
    print_rate(what, p->start_rate, e->start_rate);
    printf("\n  %-34s %12s    %12s    %10s\n", "RAM per server", "pgs", "Erlang", "Erlang/pgs");
    printf("  %-34s %12.1f B  %12.1f B  %9.0fx\n", "idle (pgs: passivated)", p->idle_bytes,
           e->idle_bytes, bytes_ratio(e->idle_bytes, p->idle_bytes));
    printf("  %-34s %12.1f B  %12.1f B  %9.1fx\n", "active (gen_server: idle)", p->active_bytes,
           e->idle_bytes, bytes_ratio(e->idle_bytes, p->active_bytes));
    printf("  (a passivated pgs server's state is in storage; an idle gen_server is\n"
           "   an active server; pgs counted as at least 1 byte in the ratios)\n");
}

static void print_pair(const char *name, double pgs, double erl)
{
    printf("erlang_%s %.1f per_s\npgs_%s %.1f per_s\n%s_vs_erlang %.3f ratio\n", name, erl,
           name, pgs, name, pgs / erl);
}

static void print_figures(const figures *p, const figures *e)
{
    printf("\n");
    print_pair("calls_1client", p->calls1, e->calls1);
    print_pair("calls_8clients", p->calls8, e->calls8);
    print_pair("calls_1client_spread", p->spread, e->spread);
    print_pair("casts", p->casts, e->casts);
    print_pair("casts_spread", p->casts_spread, e->casts_spread);
    print_pair("start100k", p->start_rate, e->start_rate);
    printf("erlang_idle_bytes %.1f bytes\n", e->idle_bytes);
    printf("pgs_passivated_bytes %.1f bytes\n", p->idle_bytes);
    printf("pgs_active_bytes %.1f bytes\n", p->active_bytes);
    printf("idle_bytes_erlang_vs_pgs %.1f ratio\n", bytes_ratio(e->idle_bytes, p->idle_bytes));
    printf("idle_bytes_erlang_vs_pgs_active %.2f ratio\n",
           bytes_ratio(e->idle_bytes, p->active_bytes));
    printf("erlang_schedulers %.0f count\n", e->schedulers);
}

/* ------------------------------------------------------------------------
** Options and main.
*/
static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--servers N] [--starts N] [--idle-ms MS]\n"
            "          [--erl-source PATH] [--quick]\n", argv0);
    return 2;
}

/* Parses argv into cfg; --quick shrinks whatever was not given. */
static int parse_args(int argc, char **argv, config *cfg)
{
    int got_secs = 0, got_servers = 0, got_starts = 0, got_idle = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            cfg->quick = 1;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--seconds") == 0)
            got_secs = 1, cfg->seconds = strtod(v, NULL);
        else if (strcmp(a, "--servers") == 0)
            got_servers = 1, cfg->servers = strtoull(v, NULL, 10);
        else if (strcmp(a, "--starts") == 0)
            got_starts = 1, cfg->starts = strtoull(v, NULL, 10);
        else if (strcmp(a, "--idle-ms") == 0)
            got_idle = 1, cfg->idle_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--erl-source") == 0)
            cfg->erl_source = v;
        else
            return -1;
    }
    if (cfg->quick) {
        cfg->seconds = got_secs ? cfg->seconds : 0.2;
        cfg->servers = got_servers ? cfg->servers : 1000;
        cfg->starts = got_starts ? cfg->starts : 10000;
        cfg->idle_ms = got_idle ? cfg->idle_ms : 1000;
    }
    return cfg->seconds > 0 && cfg->servers && cfg->starts && cfg->idle_ms ? 0 : -1;
}

int main(int argc, char **argv)
{
    config cfg = {.seconds = 2.0, .servers = 10000, .starts = 100000, .idle_ms = 3000,
                  .erl_source = PEER_ERL_SOURCE};
    figures erl = {-1, -1, -1, -1, -1, -1, -1, -1, -1}, pgs = erl;
    if (parse_args(argc, argv, &cfg))
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Erlang first: a missing erl fails the run before pgs spends its time.
    ** RAM last, in a runtime of its own, as in bench/calls. */
    int rc = erlang_side(&cfg, &erl);
    if (!rc)
        rc = pgs_messages(&cfg, &pgs);
    if (!rc)
        rc = pgs_servers(&cfg, &pgs);
    if (rc) { /* no figures: a dashboard must not record a failed run's zeros */
        fprintf(stderr, "peer: FAILED; no figures printed\n");
        return 1;
    }
    print_table(&cfg, &pgs, &erl);
    print_figures(&pgs, &erl);
    return 0;
}
