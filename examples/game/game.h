/*
** game.h — the game demo's parts and what they say to one another.
**
**   game.c     the supervisor: options, the worker's life (fork and exec,
**              SIGKILL, restart), the acknowledged model, the checks, the
**              summary
**   worker.c   the worker process: the pgs runtime, the players, the load
**   player.c   the player behaviour
**   view.c     the live terminal view, and the one-line-a-second log
**   http.c     /metrics over HTTP on loopback (libmicrohttpd)
**
** The worker reports to the supervisor over a pipe, in records of at most
** PIPE_BUF bytes written whole by one write(2), so the reports of several
** threads never interleave.  An ack is sent only after pgs_call returned
** PGS_OK: the state it names is durable.  Acks still buffered in a worker
** when it is killed are simply never heard of: the model may lag behind
** storage, never run ahead of it.
*/
#ifndef GAME_H
#define GAME_H

#include <pgs.h>

#include <stdint.h>
#include <time.h>

#define GAME_ITEMS 8

/* A player's state: flat, stored as is. */
typedef struct player {
    uint64_t version;   /* changes made to it: +1 per update */
    int64_t score;
    uint32_t level, xp, sessions, pad;
    uint32_t inventory[GAME_ITEMS];
    int64_t last_session_ms; /* wall clock, when its last session began */
    int64_t playtime_ms;
} player;

/* Messages: calls but OP_LOOT, a cast. */
enum { OP_JOIN = 1, OP_SCORE, OP_LOOT, OP_LEAVE, OP_GET };
typedef struct command {
    uint8_t op;
    uint8_t item;
    uint16_t pad;
    int32_t amount;
} command;

/* A call's reply: where the player stands now. */
typedef struct standing {
    uint64_t version;
    int64_t score;
} standing;

extern const pgs_behaviour game_player;

/* ------------------------------------------------------------------------
** Reports, worker to supervisor.
*/
enum { R_ACK = 1, R_CHECK, R_FIGURES };
enum { PHASE_CREATE = 1, PHASE_CHECK, PHASE_PLAY, PHASE_DONE };

/* R_ACK: a durable state of player `id`.  R_CHECK: what the reopened
** runtime gave back for it.  `stamp` is version + 1, or 0: no player. */
typedef struct ack {
    uint32_t id, pad;
    uint64_t stamp;
    int64_t score;
} ack;

/* R_FIGURES: the worker's figures, every 250 ms and once at the end. */
typedef struct figures {
    pgs_metrics m;
    uint64_t rss_kb;         /* VmRSS of the worker */
    uint64_t sessions_done;  /* in this worker */
    uint64_t live;           /* sessions in play now */
    uint64_t progress;       /* players created or checked so far */
    uint64_t errors;         /* calls and casts that failed */
    int phase;
    double open_s;           /* pgs_open + pgs_register */
    double check_s;          /* reading every player back */
} figures;

typedef struct report {
    uint32_t kind, n; /* n acks follow, or one figures */
} report;

#define ACKS_PER_REPORT 160 /* 8 + 160 * 24 bytes: within PIPE_BUF */

/* ------------------------------------------------------------------------
** The worker.
*/
typedef struct worker_cfg {
    char url[512];
    uint32_t players;
    uint32_t sessions;   /* concurrent sessions */
    int check;           /* read every player back before playing */
    int64_t end_ns;      /* CLOCK_MONOTONIC: stop playing then */
    int fd;              /* the report pipe's write end */
} worker_cfg;

/* Runs the worker; returns its exit status. */
int worker_run(const worker_cfg *cfg);

/* ------------------------------------------------------------------------
** The view.
*/
/* The counters rates are taken from, at one moment. */
typedef struct sample {
    int64_t ns;
    uint64_t messages, writes, commits, reactivations, passivations;
} sample;

typedef struct view {
    const char *url;
    uint32_t players;
    int tty;
    int run;              /* 1, then 2 after the restart */
    int64_t start_ns, end_ns, kill_ns; /* kill_ns 0: --no-kill */
    figures fig;          /* the latest of the current worker */
    uint64_t sessions;    /* done, both workers */
    uint64_t acks;        /* acknowledged updates heard of */
    const char *http;     /* the metrics URL, or NULL */
    /* Rates over the last second, from a ring of samples of this run. */
    double msg_s, writes_s, react_s, pass_s, batch;
    sample ring[5];
    int nring, ring_run;
    int64_t last_line_ns; /* not a tty: when the last line was printed */
    int drawn;            /* tty: the screen was cleared once */
    char log[5][160];     /* the latest events, newest last */
} view;

/* Adds a sample of v->fig taken at now_ns; run changes reset the rates. */
void view_sample(view *v, int64_t now_ns);
/* Redraws (tty) or prints a line (once a second otherwise). */
void view_draw(view *v, int64_t now_ns);
/* Notes an event: in the view's log (tty) or printed at once. */
void view_event(view *v, int64_t now_ns, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int64_t game_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------------
** Metrics over HTTP.
*/
typedef struct http http;
/* Serves GET /metrics on 127.0.0.1:port (0: any free port); *bound gets
** the port.  NULL if it cannot (or the demo was built without
** libmicrohttpd: then *bound is 0). */
http *http_start(uint16_t port, uint16_t *bound);
/* Publishes what /metrics serves next: the worker's figures and the game's. */
void http_publish(http *h, const figures *f, uint64_t sessions, uint64_t acks, int restarts);
void http_stop(http *h);

#endif
