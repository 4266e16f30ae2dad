/*
** worker.c — the worker process: it opens the runtime on the store, makes
** the players (first worker) or reads every one back (the worker after a
** kill), then plays game sessions until the deadline, reporting every
** acknowledged state and its figures to the supervisor.
**
** The load: LOAD_THREADS threads, each running its share of the
** concurrent sessions.  A session picks a player from a skewed
** distribution (a few players play a lot, most rarely), joins (a call),
** plays 5 to 20 steps — a score (a call) or a loot (a cast) — with a
** think time between them, and leaves (a call).  Between sessions players
** sit idle, passivate after IDLE_MS, and reactivate when their next
** session begins.  Calls block their thread until the state is durable,
** so many threads give group commit many writes to share a transaction.
*/
#include "game.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define LOAD_THREADS 64
#define IDLE_MS 1000          /* players passivate after a second idle */
#define FIGURES_EVERY_NS 250000000

typedef struct worker {
    const worker_cfg *cfg;
    pgs_runtime *rt;
    _Atomic uint32_t next_id;  /* create and check: the next player to do */
    _Atomic uint64_t progress, sessions_done, live, errors;
    _Atomic int running;       /* load threads not finished */
    int phase;
    double open_s, check_s;
} worker;

/* A thread's reports not yet sent. */
typedef struct outbox {
    report hdr;
    ack acks[ACKS_PER_REPORT];
} outbox;

/* Writes one record whole: pipe writes of at most PIPE_BUF bytes are
** atomic.  A supervisor gone is the end of the worker. */
static void send_record(int fd, const void *data, size_t len)
{
    while (write(fd, data, len) < 0)
        if (errno != EINTR)
            _exit(3);
}

static void flush(worker *w, outbox *o)
{
    if (o->hdr.n)
        send_record(w->cfg->fd, o, sizeof o->hdr + o->hdr.n * sizeof o->acks[0]);
    o->hdr.n = 0;
}

static void push(worker *w, outbox *o, uint32_t id, uint64_t stamp, int64_t score)
{
    o->acks[o->hdr.n++] = (ack){.id = id, .stamp = stamp, .score = score};
    if (o->hdr.n == ACKS_PER_REPORT)
        flush(w, o);
}

static uint64_t rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    uint64_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static void send_figures(worker *w)
{
    struct {
        report hdr;
        figures f;
    } r = {.hdr = {R_FIGURES, 1}};
    pgs_metrics_get(w->rt, &r.f.m);
    r.f.rss_kb = rss_kb();
    r.f.sessions_done = atomic_load(&w->sessions_done);
    r.f.live = atomic_load(&w->live);
    r.f.progress = atomic_load(&w->progress);
    r.f.errors = atomic_load(&w->errors);
    r.f.phase = w->phase;
    r.f.open_s = w->open_s;
    r.f.check_s = w->check_s;
    send_record(w->cfg->fd, &r, sizeof r);
}

static pgs_ref player_ref(uint32_t id)
{
    char key[16];
    int n = snprintf(key, sizeof key, "%u", id);
    pgs_ref ref;
    pgs_ref_make(&ref, "player", key, (size_t)n);
    return ref;
}

/* Calls player id with c; on success acks what it now stands at. */
static int play_call(worker *w, outbox *o, uint32_t id, command c)
{
    pgs_ref ref = player_ref(id);
    pgs_bytes reply;
    int rc = pgs_call(w->rt, &ref, &c, sizeof c, &reply, 10000);
    if (rc == PGS_OK && reply.len == sizeof(standing)) {
        standing s;
        memcpy(&s, reply.data, sizeof s);
        push(w, o, id, s.version + 1, s.score);
    } else {
        atomic_fetch_add(&w->errors, 1);
    }
    pgs_bytes_free(&reply);
    return rc;
}

/* ------------------------------------------------------------------------
** Phases run by every load thread.
*/

/* Starts every player (a no-op for one that exists): a new one is acked
** at version 0. */
static void create_players(worker *w, outbox *o)
{
    for (uint32_t id; (id = atomic_fetch_add(&w->next_id, 1)) < w->cfg->players;) {
        pgs_ref ref = player_ref(id);
        if (pgs_start(w->rt, "player", ref.key, ref.key_len, NULL, 0, NULL, NULL) == PGS_OK)
            push(w, o, id, 1, 0);
        else
            atomic_fetch_add(&w->errors, 1);
        atomic_fetch_add(&w->progress, 1);
    }
}

/* Reads every player back through the reopened runtime (each one a
** reactivation) and reports what came; a player the kill caught before
** it was ever made is made now. */
static void check_players(worker *w, outbox *o, outbox *acks)
{
    command get = {.op = OP_GET};
    for (uint32_t id; (id = atomic_fetch_add(&w->next_id, 1)) < w->cfg->players;) {
        pgs_ref ref = player_ref(id);
        pgs_bytes reply;
        standing s = {0, 0};
        int rc = pgs_call(w->rt, &ref, &get, sizeof get, &reply, 10000);
        if (rc == PGS_OK && reply.len == sizeof s)
            memcpy(&s, reply.data, sizeof s);
        else if (rc != PGS_ENOTFOUND)
            fprintf(stderr, "game: reading player %u: %s\n", id, pgs_strerror(rc));
        pgs_bytes_free(&reply);
        push(w, o, id, rc == PGS_OK ? s.version + 1 : 0, s.score);
        if (rc == PGS_ENOTFOUND) { /* its check must reach the supervisor first */
            flush(w, o);
            if (pgs_start(w->rt, "player", ref.key, ref.key_len, NULL, 0, NULL, NULL) == PGS_OK)
                push(w, acks, id, 1, 0);
        }
        atomic_fetch_add(&w->progress, 1);
    }
}

typedef struct session {
    uint32_t player;
    int steps;       /* left before leaving; -1: not joined yet */
    int64_t due;     /* ns: its next step */
} session;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Skewed: player ids near 0 are drawn far more often (density ~ u^3). */
static uint32_t pick_player(uint64_t *rng, uint32_t players)
{
    double u = (double)(next_rand(rng) >> 11) / 9007199254740992.0;
    return (uint32_t)(u * u * u * players);
}

static void new_session(worker *w, session *s, uint64_t *rng, int64_t now)
{
    s->player = pick_player(rng, w->cfg->players);
    s->steps = -1;
    s->due = now + (int64_t)(next_rand(rng) % 50) * 1000000;
}

/* One step of session s: join, score or loot, or leave. */
static void step(worker *w, outbox *o, session *s, uint64_t *rng, int64_t now)
{
    uint64_t r = next_rand(rng);
    if (s->steps < 0) {
        play_call(w, o, s->player, (command){.op = OP_JOIN});
        s->steps = 5 + (int)(r % 16);
    } else if (s->steps == 0) {
        play_call(w, o, s->player, (command){.op = OP_LEAVE});
        atomic_fetch_add(&w->sessions_done, 1);
        new_session(w, s, rng, now);
        return;
    } else if (r % 5 < 3) {
        play_call(w, o, s->player, (command){.op = OP_SCORE, .amount = (int32_t)(r >> 8) % 50 + 1});
        s->steps--;
    } else {
        command c = {.op = OP_LOOT, .item = (uint8_t)(r >> 16)};
        pgs_ref ref = player_ref(s->player);
        if (pgs_cast(w->rt, &ref, &c, sizeof c))
            atomic_fetch_add(&w->errors, 1);
        s->steps--;
    }
    s->due = now + (20 + (int64_t)(r >> 32) % 80) * 1000000; /* think time */
}

/* Runs this thread's sessions until the deadline, each step when due. */
static void play(worker *w, outbox *o, uint32_t nsessions, uint64_t seed)
{
    session *ss = calloc(nsessions, sizeof *ss);
    uint64_t rng = seed | 1;
    int64_t now = game_now_ns(), flushed = now;
    for (uint32_t i = 0; ss && i < nsessions; i++)
        new_session(w, &ss[i], &rng, now);
    atomic_fetch_add(&w->live, nsessions);
    while (ss && (now = game_now_ns()) < w->cfg->end_ns) {
        int64_t next = now + 20000000;
        for (uint32_t i = 0; i < nsessions; i++) {
            if (ss[i].due <= now)
                step(w, o, &ss[i], &rng, now = game_now_ns());
            next = ss[i].due < next ? ss[i].due : next;
        }
        if (now - flushed > 20000000) { /* the supervisor hears within ~20 ms */
            flush(w, o);
            flushed = now;
        }
        if (next > (now = game_now_ns()))
            usleep((useconds_t)((next - now) / 1000));
    }
    atomic_fetch_sub(&w->live, nsessions);
    free(ss);
}

typedef struct load {
    worker *w;
    int index;
    pthread_t thread;
} load;

/* Thread i's share of n sessions. */
static uint32_t share(uint32_t n, int i)
{
    return n / LOAD_THREADS + ((uint32_t)i < n % LOAD_THREADS);
}

static void *load_main(void *arg)
{
    load *l = arg;
    worker *w = l->w;
    outbox *o = calloc(2, sizeof *o);
    if (o) {
        o[0].hdr.kind = w->phase == PHASE_CHECK ? R_CHECK : R_ACK;
        o[1].hdr.kind = R_ACK;
        if (w->phase == PHASE_CREATE)
            create_players(w, o);
        else if (w->phase == PHASE_CHECK)
            check_players(w, &o[0], &o[1]);
        else
            play(w, o, share(w->cfg->sessions, l->index),
                 0x9E3779B97F4A7C15ull * (uint64_t)(l->index + 1) ^ (uint64_t)game_now_ns());
        flush(w, &o[0]);
        flush(w, &o[1]);
        free(o);
    }
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

/* Runs `phase` on the load threads, sending figures while they work. */
static void run_phase(worker *w, int phase)
{
    load loads[LOAD_THREADS];
    w->phase = phase;
    atomic_store(&w->next_id, 0);
    atomic_store(&w->progress, 0);
    atomic_store(&w->running, LOAD_THREADS);
    for (int i = 0; i < LOAD_THREADS; i++) {
        loads[i] = (load){.w = w, .index = i};
        if (pthread_create(&loads[i].thread, NULL, load_main, &loads[i]) != 0) {
            fprintf(stderr, "game: cannot start a load thread\n");
            _exit(3);
        }
    }
    while (atomic_load(&w->running) > 0) {
        send_figures(w);
        usleep(FIGURES_EVERY_NS / 1000);
    }
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_join(loads[i].thread, NULL);
}

int worker_run(const worker_cfg *cfg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the supervisor */
    signal(SIGPIPE, SIG_IGN);
    worker w = {.cfg = cfg};
    pgs_options o;
    pgs_options_init(&o);
    o.idle_timeout_ms = IDLE_MS;
    int64_t t0 = game_now_ns();
    int rc = pgs_open(&w.rt, cfg->url, &o);
    if (!rc && (rc = pgs_register(w.rt, &game_player)))
        pgs_close(w.rt);
    if (rc) {
        fprintf(stderr, "game: opening %s: %s\n", cfg->url, pgs_strerror(rc));
        return 3;
    }
    w.open_s = (double)(game_now_ns() - t0) / 1e9;
    if (cfg->check) {
        run_phase(&w, PHASE_CHECK);
        w.check_s = (double)(game_now_ns() - t0) / 1e9 - w.open_s;
    } else {
        run_phase(&w, PHASE_CREATE);
    }
    run_phase(&w, PHASE_PLAY);
    rc = pgs_shutdown(w.rt); /* passivates every player; the figures stay readable */
    w.phase = PHASE_DONE;
    send_figures(&w);
    pgs_close(w.rt);
    return rc ? 3 : 0;
}
