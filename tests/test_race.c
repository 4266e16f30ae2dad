/*
** test_race.c — the passivation race, tested against a model.
**
** Several client threads call, cast, send infos and async calls to many
** servers whose idle timeout is 1 ms, so passivation races with nearly
** every message; crashes, stops, deletes and restarts are mixed in.  Each
** thread keeps a model of what its own messages must have done, and the
** servers record what they saw, so the test checks that:
**   - every message is handled exactly once (per-sender counts and a
**     commutative digest of (sender, seq) over the applied messages);
**   - per-sender order holds (a server sees each sender's seqs rising);
**   - every reply is right (a call's reply is the sender's applied count);
**   - a crashed message never persists, and the state comes back;
**   - the final states equal the model's, in the live runtime and again
**     after closing it and reopening the store.
**
** Servers:
**   shared  "race/N"  — every thread sends to them (calls, casts, infos,
**                       async calls, crashing messages, relays); half
**                       transient, half permanent.  Never stopped, so each
**                       thread's model of its own traffic is exact.
**   virtual "vrace/N" — like shared, but never started: the first message
**                       from any thread runs init (threads race for it).
**   private "priv/T.N" — one thread's own; it also stops, deletes and
**                       restarts them, and checks ENOTFOUND in between.
**                       N = 0 takes crashing messages; odd N take
**                       messages whose handler says "don't persist", so
**                       only passivation or a later turn writes them.
**                       N = 2 and 4 have their state spoiled now and
**                       then: every message crashes on it until the
**                       third crash makes the fault policy act, rollback
**                       (N = 2: the state before the spoiling comes
**                       back) or park (N = 4: messages get PGS_EPARKED
**                       until the thread repairs the state it models).
**   inbox   "inbox/T" — receives thread T's async-call replies.
**
** The seed is printed; `test_race --seed S` replays the same operations
** (thread interleavings differ from run to run; the operations do not).
**   test_race [--seed S] [--ops N] [--threads T] [--seconds S] [--store KIND]
**             [--url URL]
** With --seconds, runs one seed after another until the time is up (soak).
** --store: memory (default: writes inline, in the turn), pipeline (the
** same engine behind group commit and the output gate: turns run ahead of
** their writes), sqlite (a fresh file per run, synchronous=off), lmdb (a
** fresh directory per run, sync=nosync) or postgres (the database of
** --url URL, its pgs records of these behaviours wiped before each run;
** synchronous_commit=off).
*/
#include "check.h"
#include "faulty.h"
#include "pgs.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 8
#define NSHARED 40    /* "race/i": started up front, half permanent */
#define NVIRTUAL 8    /* "vrace/i": never started */
#define NPRIV 6       /* "priv/t.i" per thread */
#define NTARGETS (NSHARED + NVIRTUAL)
#define NSENDERS (MAX_THREADS + NSHARED) /* client threads, then relaying servers */

enum op { OP_APPLY = 1, OP_CRASH, OP_GET, OP_RELAY, OP_STOPME, OP_LAZY, OP_RELAY_CRASH,
          OP_SPOIL };

#define ROLLBACK_PRIV 2 /* priv/T.2: fault policy rollback */
#define PARK_PRIV 4     /* priv/T.4: fault policy park */
#define MAX_RESTARTS 2  /* for both: the third crash in a row acts */

typedef struct wire {
    uint8_t op;
    uint8_t sender;
    uint16_t relay_to; /* OP_RELAY: the shared server to forward to */
    uint32_t seq;
} wire;

/* The refs a wipe found. */
typedef struct run_wipe {
    pgs_ref *refs;
    size_t n, cap;
} run_wipe;

/* Every server's state (flat: stored as is). */
typedef struct rstate {
    uint32_t applied[NSENDERS];
    uint32_t last_seq[NSENDERS];
    uint32_t violations;   /* a sender's seq that did not rise */
    uint32_t inits;
    uint32_t relay_out;    /* relays this server has sent */
    uint32_t replies;      /* inbox: async replies received */
    uint64_t digest;       /* sum of mix(sender, seq) over client messages */
    uint64_t reply_digest; /* inbox: sum of mix(tag, reply) */
    uint32_t spoiled;      /* every message but OP_GET crashes */
    uint32_t pad;
} rstate;

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t x = (a + 1) * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

/* ------------------------------------------------------------------------
** The behaviours.  "race", "vrace" and "priv" share one handler; "inbox"
** only takes async replies.  Keys are two bytes: the server's index (race,
** vrace), or (thread, index) for priv, or (thread, 0) for inbox.
*/
static void apply(rstate *s, const wire *w)
{
    if (w->seq <= s->last_seq[w->sender])
        s->violations++;
    s->last_seq[w->sender] = w->seq;
    s->applied[w->sender]++;
    if (w->sender < MAX_THREADS)
        s->digest += mix(w->sender, w->seq);
}

/* Forwards a message as this server's own (output-gated: it leaves only
** once this turn's state is written). */
static int relay(pgs_ctx *ctx, rstate *s, const wire *w)
{
    const pgs_ref *self = pgs_self(ctx);
    wire fw = {.op = OP_APPLY, .sender = (uint8_t)(MAX_THREADS + self->key[0]),
               .seq = ++s->relay_out};
    pgs_ref to;
    if (pgs_ref_make(&to, "race", (unsigned char[2]){(unsigned char)w->relay_to, 0}, 2))
        return PGS_CRASH;
    return pgs_cast(pgs_ctx_runtime(ctx), &to, &fw, sizeof fw) ? PGS_CRASH : PGS_PERSIST;
}

static int handle(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    rstate *s = state;
    wire w;
    if (len != sizeof w)
        return PGS_CRASH;
    memcpy(&w, msg, sizeof w);
    if (w.sender >= NSENDERS || w.relay_to >= NSHARED)
        return PGS_CRASH;
    int r = PGS_PERSIST;
    if (s->spoiled && w.op != OP_GET)
        return PGS_CRASH; /* a bad state: the fault policy's business */
    switch (w.op) {
    case OP_GET:
        pgs_reply(ctx, s, sizeof *s);
        return PGS_NOPERSIST;
    case OP_SPOIL:
        s->spoiled = 1;
        break;
    case OP_STOPME:
        return PGS_STOP;
    case OP_LAZY: /* kept in memory: written by a later turn or at passivation */
        apply(s, &w);
        r = PGS_NOPERSIST;
        break;
    case OP_CRASH:
        apply(s, &w); /* a half-done mutation that must never persist */
        return PGS_CRASH;
    case OP_RELAY:
        apply(s, &w);
        r = relay(ctx, s, &w);
        break;
    case OP_RELAY_CRASH: /* the output gate must drop the relay */
        apply(s, &w);
        relay(ctx, s, &w);
        return PGS_CRASH;
    default:
        apply(s, &w);
    }
    pgs_reply(ctx, &s->applied[w.sender], sizeof s->applied[w.sender]);
    return r;
}

static int handle_cast(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    return handle(ctx, state, msg, len);
}

static int handle_info(pgs_ctx *ctx, void *state, const pgs_info *info)
{
    return handle(ctx, state, info->data, info->len);
}

static int race_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    ((rstate *)state)->inits++;
    return PGS_PERSIST;
}

static int inbox_info(pgs_ctx *ctx, void *state, const pgs_info *info)
{
    rstate *s = state;
    uint32_t v = 0;
    if (info->kind != PGS_INFO_REPLY || info->status != PGS_OK || info->len != sizeof v)
        return PGS_CRASH;
    memcpy(&v, info->data, sizeof v);
    s->replies++;
    s->reply_digest += mix(info->tag, v);
    return PGS_PERSIST;
}

#define RACE_BEHAVIOUR(nm, fl)                                                    \
    {.version = PGS_BEHAVIOUR_VERSION, .name = nm, .state_size = sizeof(rstate), \
     .flags = fl, .init = race_init, .handle_call = handle,                      \
     .handle_cast = handle_cast, .handle_info = handle_info}

static const pgs_behaviour race_b = RACE_BEHAVIOUR("race", 0);
static const pgs_behaviour vrace_b = RACE_BEHAVIOUR("vrace", PGS_VIRTUAL);
static const pgs_behaviour priv_b = RACE_BEHAVIOUR("priv", 0);
static const pgs_behaviour inbox_b = {
    .version = PGS_BEHAVIOUR_VERSION, .name = "inbox", .state_size = sizeof(rstate),
    .init = race_init, .handle_call = handle, .handle_info = inbox_info};

/* ------------------------------------------------------------------------
** The model: what one thread's messages must have done.
*/
typedef struct pmodel {
    int exists;
    uint32_t applied;
    uint64_t digest;
    uint32_t last_seq;   /* of the thread's last applied message */
    int spoiled;         /* its stored state is spoiled */
    int crashes;         /* crashes since it was spoiled */
    uint32_t good_applied, good_last_seq; /* the state before the spoiling */
    uint64_t good_digest;
} pmodel;

typedef struct thread_model {
    uint32_t applied[NTARGETS];        /* per shared/virtual server */
    uint64_t digest[NTARGETS];
    uint32_t relays[NSHARED][NSHARED]; /* [via][to] */
    pmodel priv[NPRIV];
    uint32_t async_calls;
    uint64_t reply_digest;
} thread_model;

typedef struct run {
    pgs_runtime *rt;
    uint64_t seed;
    int threads;
    long ops;
    int failed;                         /* any thread saw a wrong result */
    thread_model model[MAX_THREADS];
} run;

typedef struct client {
    run *r;
    int t;
    uint64_t rng;
    uint32_t seq;
    long calls, casts, crashes, stops, policies; /* policies: rollbacks and parks */
} client;

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static pgs_ref target_ref(int i)
{
    pgs_ref r;
    unsigned char key[2] = {(unsigned char)(i < NSHARED ? i : i - NSHARED), 0};
    pgs_ref_make(&r, i < NSHARED ? "race" : "vrace", key, 2);
    return r;
}

static pgs_ref priv_ref(int t, int i)
{
    pgs_ref r;
    pgs_ref_make(&r, "priv", (unsigned char[2]){(unsigned char)t, (unsigned char)i}, 2);
    return r;
}

static pgs_ref inbox_ref(int t)
{
    pgs_ref r;
    pgs_ref_make(&r, "inbox", (unsigned char[2]){(unsigned char)t, 0}, 2);
    return r;
}

#define FAIL(c, ...)                                                             \
    do {                                                                         \
        fprintf(stderr, "seed %" PRIu64 " thread %d: ", (c)->r->seed, (c)->t); \
        fprintf(stderr, __VA_ARGS__);                                            \
        fputc('\n', stderr);                                                     \
        (c)->r->failed = 1;                                                      \
    } while (0)

static void expect(client *c, const char *what, int got, int want)
{
    if (got != want)
        FAIL(c, "%s: expected %s, got %s", what, pgs_errname(want), pgs_errname(got));
}

/* A call whose reply is the sender's applied count. */
static void call_counted(client *c, const pgs_ref *ref, const wire *w, int want_rc,
                         uint32_t want)
{
    pgs_bytes rep;
    int rc = pgs_call(c->r->rt, ref, w, sizeof *w, &rep, 30000);
    if (rc != want_rc)
        FAIL(c, "call %s/%d op %d seq %u", ref->name, ref->key[1], w->op, w->seq);
    expect(c, "call", rc, want_rc);
    if (rc == PGS_OK && want_rc == PGS_OK) {
        uint32_t v = 0;
        if (rep.len == sizeof v)
            memcpy(&v, rep.data, sizeof v);
        if (rep.len != sizeof v || v != want)
            FAIL(c, "call reply: expected %u, got %u (len %zu)", want, v, rep.len);
    }
    pgs_bytes_free(&rep);
    c->calls++;
}

/* One message to a shared or virtual server. */
static void shared_op(client *c, int x)
{
    thread_model *m = &c->r->model[c->t];
    pgs_ref ref = target_ref(x);
    wire w = {.op = OP_APPLY, .sender = (uint8_t)c->t, .seq = ++c->seq};
    unsigned p = (unsigned)(rnd(&c->rng) % 100);
    int crash = p < 8, relaying = x < NSHARED && p >= 8 && p < 18;
    if (crash)
        w.op = x < NSHARED && p % 2 ? OP_RELAY_CRASH : OP_CRASH;
    if (relaying || w.op == OP_RELAY_CRASH) {
        w.op = relaying ? OP_RELAY : w.op;
        w.relay_to = (uint16_t)(rnd(&c->rng) % NSHARED);
    }
    if (!crash) {
        m->applied[x]++;
        m->digest[x] += mix(w.sender, w.seq);
        if (relaying)
            m->relays[x][w.relay_to]++;
    }
    int rc = PGS_OK;
    if (p % 4 == 0 || crash) {
        call_counted(c, &ref, &w, crash ? PGS_ECRASH : PGS_OK, m->applied[x]);
        c->crashes += crash;
        return;
    }
    if (p % 4 == 1) {
        rc = pgs_send_info(c->r->rt, &ref, &w, sizeof w);
    } else if (p % 4 == 2 && !relaying) {
        pgs_ref inbox = inbox_ref(c->t);
        rc = pgs_call_async(c->r->rt, &ref, &w, sizeof w, &inbox, w.seq);
        m->async_calls++;
        m->reply_digest += mix(w.seq, m->applied[x]);
    } else {
        rc = pgs_cast(c->r->rt, &ref, &w, sizeof w);
    }
    expect(c, "send", rc, PGS_OK);
    c->casts++;
}

static int get_state(pgs_runtime *rt, const pgs_ref *ref, rstate *out);

/* Policies of the private servers (pgs_start's options). */
static const pgs_server_opts priv_opts[NPRIV] = {
    [ROLLBACK_PRIV] = {.fault_policy = PGS_POLICY_ROLLBACK, .max_restarts = MAX_RESTARTS,
                       .history = 3},
    [PARK_PRIV] = {.fault_policy = PGS_POLICY_PARK, .max_restarts = MAX_RESTARTS},
};

/* The state the thread models, for pgs_repair: private servers hear only
** from their thread. */
static void modelled_state(const client *c, const pmodel *pm, rstate *s)
{
    memset(s, 0, sizeof *s);
    s->applied[c->t] = pm->applied;
    s->last_seq[c->t] = pm->last_seq;
    s->digest = pm->digest;
    s->inits = 1;
}

/* A message to a spoiled server (as a call or a cast): it crashes, and the
** third crash makes the policy act.  Per-sender order makes the count
** exact even for casts: the thread's later messages queue behind them. */
static void spoiled_msg(client *c, pmodel *pm, const pgs_ref *ref, wire *w, int as_call)
{
    pgs_runtime *rt = c->r->rt;
    if (as_call) {
        call_counted(c, ref, w, PGS_ECRASH, 0);
    } else {
        expect(c, "cast", pgs_cast(rt, ref, w, sizeof *w), PGS_OK);
        c->casts++;
    }
    c->crashes++;
    if (++pm->crashes <= MAX_RESTARTS)
        return;
    /* Rolled back (or, parked, repaired below) to the state before. */
    pm->applied = pm->good_applied;
    pm->digest = pm->good_digest;
    pm->last_seq = pm->good_last_seq;
    pm->spoiled = pm->crashes = 0;
    c->policies++;
    if (ref->key[1] != PARK_PRIV)
        return;
    wire g = {.op = OP_APPLY, .sender = w->sender, .seq = w->seq};
    if (rnd(&c->rng) % 2) /* parked meanwhile: refused, not applied */
        call_counted(c, ref, &g, PGS_EPARKED, 0);
    rstate good;
    modelled_state(c, pm, &good);
    expect(c, "repair", pgs_repair(rt, ref, &good, sizeof good, 30000), PGS_OK);
}

/* One operation on one of the thread's private servers. */
static void priv_op(client *c, int i)
{
    pmodel *pm = &c->r->model[c->t].priv[i];
    pgs_runtime *rt = c->r->rt;
    pgs_ref ref = priv_ref(c->t, i);
    wire w = {.op = OP_APPLY, .sender = (uint8_t)c->t, .seq = ++c->seq};
    unsigned p = (unsigned)(rnd(&c->rng) % 100);
    int rc;
    if (p < 10) {
        rc = pgs_start(rt, "priv", ref.key, ref.key_len, "a", 1, &priv_opts[i], NULL);
        if (rc)
            FAIL(c, "start priv/%d: spoiled %d crashes %d", i, pm->spoiled, pm->crashes);
        expect(c, "start", rc, PGS_OK);
        if (!pm->exists)
            *pm = (pmodel){.exists = 1};
    } else if (pm->exists && pm->spoiled && p >= 14 && p < 18) {
        w.op = OP_STOPME; /* it crashes on the spoiled state instead */
        spoiled_msg(c, pm, &ref, &w, 1);
    } else if (p < 14 || (p < 18 && !pm->exists)) {
        expect(c, "stop", pgs_stop(rt, &ref, 30000), pm->exists ? PGS_OK : PGS_ENOTFOUND);
        *pm = (pmodel){0}; /* a stop wipes it, crash record and all */
        c->stops++;
    } else if (p < 18) {
        w.op = OP_STOPME; /* the handler stops itself: an empty reply */
        pgs_bytes rep;
        int want = pm->exists ? PGS_OK : PGS_ENOTFOUND;
        expect(c, "stop-me", pgs_call(rt, &ref, &w, sizeof w, &rep, 30000), want);
        if (rep.len)
            FAIL(c, "stop-me: reply of %zu bytes", rep.len);
        pgs_bytes_free(&rep);
        *pm = (pmodel){0};
        c->stops++;
    } else if (p < 21) {
        expect(c, "delete", pgs_delete(rt, &ref, 30000), pm->exists ? PGS_OK : PGS_ENOTFOUND);
        *pm = (pmodel){0};
    } else if (p < 27 && i == 0) {
        w.op = OP_CRASH;
        call_counted(c, &ref, &w, pm->exists ? PGS_ECRASH : PGS_ENOTFOUND, 0);
    } else if (p < 24 && (i == ROLLBACK_PRIV || i == PARK_PRIV) && !pm->spoiled) {
        /* First a read: its reply waits until the server's writes are
        ** durable, so the spoiling cannot coalesce with the last good
        ** turn into one stored version (rollback goes back a version). */
        rstate now;
        expect(c, "get", get_state(rt, &ref, &now), pm->exists ? PGS_OK : PGS_ENOTFOUND);
        w.op = OP_SPOIL; /* writes a new version: the bad one */
        call_counted(c, &ref, &w, pm->exists ? PGS_OK : PGS_ENOTFOUND, pm->applied);
        pm->spoiled = pm->exists;
        pm->good_applied = pm->applied;
        pm->good_digest = pm->digest;
        pm->good_last_seq = pm->last_seq;
    } else if (pm->exists && pm->spoiled) {
        spoiled_msg(c, pm, &ref, &w, p < 60);
    } else {
        if (pm->exists) {
            pm->applied++;
            pm->digest += mix(w.sender, w.seq);
            pm->last_seq = w.seq;
        }
        if (i % 2 && p % 2)
            w.op = OP_LAZY;
        if (p < 60) {
            call_counted(c, &ref, &w, pm->exists ? PGS_OK : PGS_ENOTFOUND, pm->applied);
        } else {
            expect(c, "cast", pgs_cast(rt, &ref, &w, sizeof w), PGS_OK);
            c->casts++;
        }
    }
}

static void *client_main(void *arg)
{
    client *c = arg;
    for (long n = 0; n < c->r->ops && !c->r->failed; n++) {
        unsigned p = (unsigned)(rnd(&c->rng) % 100);
        if (p < 3) {
            usleep((useconds_t)(rnd(&c->rng) % 3000)); /* let servers go idle */
        } else if (p < 75) {
            shared_op(c, (int)(rnd(&c->rng) % NTARGETS));
        } else {
            priv_op(c, (int)(rnd(&c->rng) % NPRIV));
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
** Checking the final states.
*/
static int get_state(pgs_runtime *rt, const pgs_ref *ref, rstate *out)
{
    wire w = {.op = OP_GET};
    pgs_bytes rep;
    int rc = pgs_call(rt, ref, &w, sizeof w, &rep, 30000);
    if (rc == PGS_OK && rep.len != sizeof *out)
        rc = PGS_ECALLBACK;
    if (rc == PGS_OK)
        memcpy(out, rep.data, sizeof *out);
    pgs_bytes_free(&rep);
    return rc;
}

/* Relayed messages each server should have received from server `via`. */
static uint32_t relays_expected(const run *r, int via, int to)
{
    uint32_t n = 0;
    for (int t = 0; t < r->threads; t++)
        n += r->model[t].relays[via][to];
    return n;
}

static int target_ok(const run *r, int x, const rstate *s, const char *when)
{
    uint64_t digest = 0;
    int bad = s->violations != 0 || s->inits != 1;
    for (int t = 0; t < r->threads; t++) {
        bad |= s->applied[t] != r->model[t].applied[x];
        digest += r->model[t].digest[x];
    }
    bad |= s->digest != digest;
    for (int via = 0; x < NSHARED && via < NSHARED; via++)
        bad |= s->applied[MAX_THREADS + via] != relays_expected(r, via, x);
    if (bad) {
        char name[PGS_REF_TEXT_MAX];
        pgs_ref ref = target_ref(x);
        pgs_ref_format(&ref, name, sizeof name, NULL);
        fprintf(stderr, "seed %" PRIu64 " %s: %s: violations %u inits %u digest %s\n", r->seed,
                when, name, s->violations, s->inits, s->digest == digest ? "ok" : "WRONG");
        for (int t = 0; t < r->threads; t++)
            if (s->applied[t] != r->model[t].applied[x])
                fprintf(stderr, "  from thread %d: applied %u, model %u\n", t, s->applied[t],
                        r->model[t].applied[x]);
    }
    return !bad;
}

static int priv_ok(const run *r, pgs_runtime *rt, int t, int i, const char *when)
{
    const pmodel *pm = &r->model[t].priv[i];
    pgs_ref ref = priv_ref(t, i);
    rstate s;
    int rc = get_state(rt, &ref, &s);
    if (!pm->exists) {
        if (rc != PGS_ENOTFOUND)
            fprintf(stderr, "seed %" PRIu64 " %s: priv %d.%d should be gone: %s\n", r->seed,
                    when, t, i, pgs_errname(rc));
        return rc == PGS_ENOTFOUND;
    }
    if (rc || s.applied[t] != pm->applied || s.digest != pm->digest || s.violations ||
        s.inits != 1) {
        fprintf(stderr, "seed %" PRIu64 " %s: priv %d.%d: %s applied %u model %u\n", r->seed,
                when, t, i, pgs_errname(rc), rc ? 0 : s.applied[t], pm->applied);
        return 0;
    }
    return 1;
}

static int inbox_ok(const run *r, pgs_runtime *rt, int t, int wait, const char *when)
{
    pgs_ref ref = inbox_ref(t);
    const thread_model *m = &r->model[t];
    rstate s = {0};
    int rc;
    for (int tries = 0;; tries++) { /* replies travel as messages: let them land */
        rc = get_state(rt, &ref, &s);
        if (rc || s.replies >= m->async_calls || !wait || tries > 3000)
            break;
        usleep(1000);
    }
    if (rc || s.replies != m->async_calls || s.reply_digest != m->reply_digest) {
        fprintf(stderr, "seed %" PRIu64 " %s: inbox %d: %s replies %u model %u digest %s\n",
                r->seed, when, t, pgs_errname(rc), s.replies, m->async_calls,
                s.reply_digest == m->reply_digest ? "ok" : "WRONG");
        return 0;
    }
    return 1;
}

/* Waits until every relay has landed (they are casts sent by servers). */
static void wait_relays(const run *r, pgs_runtime *rt)
{
    for (int x = 0; x < NSHARED; x++) {
        pgs_ref ref = target_ref(x);
        for (int tries = 0; tries < 3000; tries++) {
            rstate s;
            int done = get_state(rt, &ref, &s) != PGS_OK;
            for (int via = 0; !done && via < NSHARED; via++)
                if (s.applied[MAX_THREADS + via] < relays_expected(r, via, x))
                    break;
                else if (via == NSHARED - 1)
                    done = 1;
            if (done)
                break;
            usleep(1000);
        }
    }
}

static int verify(const run *r, pgs_runtime *rt, int wait, const char *when)
{
    int ok = 1;
    if (wait)
        wait_relays(r, rt);
    for (int t = 0; t < r->threads; t++)
        ok &= inbox_ok(r, rt, t, wait, when);
    for (int x = 0; x < NTARGETS; x++) {
        pgs_ref ref = target_ref(x);
        rstate s;
        int rc = get_state(rt, &ref, &s);
        if (rc) {
            fprintf(stderr, "seed %" PRIu64 " %s: target %d: %s\n", r->seed, when, x,
                    pgs_errname(rc));
            ok = 0;
        } else {
            ok &= target_ok(r, x, &s, when);
        }
    }
    for (int t = 0; t < r->threads; t++)
        for (int i = 0; i < NPRIV; i++)
            ok &= priv_ok(r, rt, t, i, when);
    return ok;
}

/* ------------------------------------------------------------------------
** One run.
*/
static int open_runtime(pgs_storage *st, pgs_runtime **rt)
{
    pgs_options o;
    pgs_options_init(&o);
    o.storage = st;
    o.workers = 2;
    o.idle_timeout_ms = 1;
    o.default_call_timeout_ms = 30000;
    o.backoff_max_ms = 1; /* crashes are many here: the backoff has tests of its own */
    int rc = pgs_open(rt, NULL, &o);
    const pgs_behaviour *all[] = {&race_b, &vrace_b, &priv_b, &inbox_b};
    for (size_t i = 0; !rc && i < sizeof all / sizeof *all; i++)
        rc = pgs_register(*rt, all[i]);
    return rc;
}

static int start_servers(run *r)
{
    for (int x = 0; x < NSHARED; x++) {
        pgs_ref ref = target_ref(x);
        pgs_server_opts o = {.lifecycle = x % 2 ? PGS_PERMANENT : PGS_TRANSIENT};
        int rc = pgs_start(r->rt, "race", ref.key, ref.key_len, NULL, 0, &o, NULL);
        if (rc)
            return rc;
    }
    for (int t = 0; t < r->threads; t++) {
        pgs_ref ref = inbox_ref(t);
        int rc = pgs_start(r->rt, "inbox", ref.key, ref.key_len, NULL, 0, NULL, NULL);
        if (rc)
            return rc;
    }
    return PGS_OK;
}

static const char *pg_url; /* --url: the database of --store postgres */

static int collect_delete(void *arg, const pgs_record *rec)
{
    run_wipe *w = arg;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        pgs_ref *refs = realloc(w->refs, cap * sizeof *refs);
        if (!refs)
            return PGS_ENOMEM;
        w->refs = refs, w->cap = cap;
    }
    w->refs[w->n++] = rec->ref;
    return 0;
}

/* Deletes every record of the behaviours a run uses, in one batch: a
** database outlives the run, and each run starts from nothing. */
static void wipe(pgs_storage *st)
{
    static const char *const names[] = {"race", "vrace", "priv", "inbox"};
    run_wipe w = {0};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        REQUIRE_OK(pgs_storage_scan(st, names[i], collect_delete, &w));
    pgs_write *del = calloc(w.n + 1, sizeof *del);
    REQUIRE(del);
    for (size_t i = 0; i < w.n; i++)
        del[i] = (pgs_write){.op = PGS_OP_DELETE, .ref = &w.refs[i]};
    int rc = pgs_storage_batch(st, del, w.n);
    REQUIRE(rc == PGS_OK || (rc == PGS_ENOTFOUND && w.n == 1));
    free(del);
    free(w.refs);
}

/* A fresh store of the kind asked for; *dir: a temp dir to remove, or "". */
static pgs_storage *open_store(const char *kind, char dir[64])
{
    pgs_storage *st = NULL;
    dir[0] = 0;
    if (!strcmp(kind, "pipeline")) {
        REQUIRE_OK(pgs_storage_open(&st, "faulty:", &faulty_ops)); /* no faults set */
    } else if (!strcmp(kind, "sqlite")) {
        char url[128];
        strcpy(dir, "/tmp/pgs-race-XXXXXX");
        REQUIRE(mkdtemp(dir));
        snprintf(url, sizeof url, "sqlite:%s/race.db?synchronous=off", dir);
        REQUIRE_OK(pgs_storage_open(&st, url, NULL));
    } else if (!strcmp(kind, "lmdb")) {
        char url[128];
        strcpy(dir, "/tmp/pgs-race-XXXXXX");
        REQUIRE(mkdtemp(dir));
        snprintf(url, sizeof url, "lmdb:%s?sync=nosync", dir);
        REQUIRE_OK(pgs_storage_open(&st, url, NULL));
    } else if (!strcmp(kind, "postgres")) {
        char url[1024]; /* commits not waiting for the disk, as the others */
        snprintf(url, sizeof url, "%s%coptions=-csynchronous_commit%%3Doff", pg_url,
                 strchr(pg_url, '?') ? '&' : '?');
        REQUIRE_OK(pgs_storage_open(&st, url, NULL));
        wipe(st);
    } else {
        REQUIRE_OK(pgs_storage_open(&st, "memory:", NULL));
    }
    return st;
}

static void close_store(pgs_storage *st, const char *dir)
{
    pgs_storage_close(st);
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "test_race: could not remove %s\n", dir);
    }
}

static int run_once(uint64_t seed, int threads, long ops, const char *kind)
{
    run *r = calloc(1, sizeof *r);
    REQUIRE(r);
    r->seed = seed;
    r->threads = threads;
    r->ops = ops;
    char dir[64];
    pgs_storage *st = open_store(kind, dir);
    REQUIRE_OK(open_runtime(st, &r->rt));
    REQUIRE_OK(start_servers(r));

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t th[MAX_THREADS];
    client cl[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        cl[t] = (client){.r = r, .t = t, .rng = seed * 1000003u + (uint64_t)t};
        REQUIRE(pthread_create(&th[t], NULL, client_main, &cl[t]) == 0);
    }
    long calls = 0, casts = 0, crashes = 0, stops = 0, policies = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        calls += cl[t].calls;
        casts += cl[t].casts;
        crashes += cl[t].crashes;
        stops += cl[t].stops;
        policies += cl[t].policies;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    int ok = !r->failed && verify(r, r->rt, 1, "live");
    pgs_stats stats;
    pgs_stats_get(r->rt, &stats);
    pgs_close(r->rt);
    /* Closing passivated everything; a new runtime resumes from storage. */
    REQUIRE_OK(open_runtime(st, &r->rt));
    ok = ok && verify(r, r->rt, 0, "reopened");
    pgs_close(r->rt);
    close_store(st, dir);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr,
            "seed %" PRIu64 ": %.2fs, %ld calls, %ld sends, %ld crashing, %ld stops, "
            "%ld rollbacks or parks; %" PRIu64 " activations, %" PRIu64 " passivations: %s\n",
            seed, secs, calls, casts, crashes, stops, policies, stats.activations,
            stats.passivations, ok ? "ok" : "FAILED");
    /* With a 1 ms idle timeout passivation must have raced with the load,
    ** or the run proved nothing. */
    if (stats.passivations < (uint64_t)(calls + casts) / 50) {
        fprintf(stderr, "seed %" PRIu64 ": too few passivations to prove anything\n", seed);
        ok = 0;
    }
    free(r);
    return ok;
}

int main(int argc, char **argv)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    int threads = 4;
    long ops = 20000;
    double seconds = 0;
    const char *kind = "memory";
    const char *env = getenv("PGS_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 0);
        else if (!strcmp(argv[i], "--ops"))
            ops = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--store"))
            kind = argv[i + 1];
        else if (!strcmp(argv[i], "--url"))
            pg_url = argv[i + 1];
    }
    if (threads < 1 || threads > MAX_THREADS || ops < 1 ||
        (strcmp(kind, "memory") && strcmp(kind, "pipeline") && strcmp(kind, "sqlite") &&
         strcmp(kind, "lmdb") && strcmp(kind, "postgres")) ||
        (!strcmp(kind, "postgres") != (pg_url != NULL))) {
        fprintf(stderr, "usage: test_race [--seed S] [--ops N] [--threads 1..8] [--seconds S]"
                        " [--store memory|pipeline|sqlite|lmdb|postgres --url URL]\n");
        return 2;
    }
    fprintf(stderr, "test_race: seed %" PRIu64 " (replay: test_race --seed %" PRIu64
                    " --ops %ld --threads %d --store %s%s%s)\n", seed, seed, ops, threads, kind,
            pg_url ? " --url " : "", pg_url ? pg_url : "");
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int failures = 0, runs = 0;
    do {
        failures += !run_once(seed++, threads, ops, kind);
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (!failures && (double)(now.tv_sec - start.tv_sec) < seconds);
    fprintf(stderr, "test_race: %d runs, %d failed\n", runs, failures);
    return failures ? 1 : 0;
}
