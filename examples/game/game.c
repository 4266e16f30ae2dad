/*
** game — PersistentGenServer's motivating example, on pgs: a long-running
** game whose every player is a persistent server.
**
**   game [--players N] [--seconds S] [--dir D] [--no-kill] [--metrics-port P]
**        [--sessions N]
**
** This process is the supervisor.  It starts a worker (this program again,
** with --worker) that runs the pgs runtime on sqlite:D/game.db (D: a fresh
** temporary directory unless given), makes the players and plays game
** sessions on them (worker.c).
** The worker reports every acknowledged state change; the supervisor keeps
** the last one of each player: the acknowledged model.  Halfway through it
** SIGKILLs the worker, starts a fresh one on the same store, which reads
** every player back through the reopened runtime, and checks each against
** the model: a state older than the one acknowledged is a loss.  The game
** then goes on to the end; the worker closes the runtime, and the
** supervisor reads the store itself for a last check.  It shows a live
** view meanwhile, prints a summary, and exits non-zero on any loss.
*/
#include "game.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct options {
    uint32_t players, sessions;
    double seconds;
    const char *dir;
    int kill;
    int metrics_port; /* -1: off */
} options;

/* How stored states compare with the acknowledged ones. */
typedef struct tally {
    uint64_t checked; /* players compared */
    uint64_t acked;  /* players with an acknowledged state */
    uint64_t ok;     /* came back as acknowledged */
    uint64_t later;  /* came back with a later, unacknowledged update */
    uint64_t lost;   /* older than acknowledged, or missing */
    uint64_t wrong;  /* the acknowledged version with another score */
    char first[3][120]; /* the first mismatches, told */
} tally;

typedef struct game {
    options opt;
    char dir[256];
    int own_dir;
    char url[512];
    uint64_t *stamp;  /* the model: version + 1 acknowledged, 0: none */
    int64_t *score;
    uint8_t *seen;    /* final check: a record was found */
    tally after_kill, at_end;
    view v;
    http *http;
    pid_t pid;
    int fd, run, failed;
    unsigned char buf[1 << 16];
    size_t have;
    figures before;   /* the killed worker's last figures */
    int64_t killed_ns, back_ns;
    uint64_t live_at_kill;
} game;

/* ------------------------------------------------------------------------
** The model and the comparisons.
*/
static void on_ack(game *g, const ack *a)
{
    if (a->id < g->opt.players && a->stamp > g->stamp[a->id]) {
        g->stamp[a->id] = a->stamp;
        g->score[a->id] = a->score;
    }
    g->v.acks++;
}

/* Compares what came back for player id with what was acknowledged. */
static void compare(tally *t, game *g, uint32_t id, uint64_t stamp, int64_t score)
{
    uint64_t want = g->stamp[id];
    t->checked++;
    t->acked += want > 0;
    const char *what = NULL;
    if (stamp < want)
        what = stamp ? "an older state" : "nothing";
    else if (stamp == want && want && score != g->score[id])
        what = "another score";
    if (!what) {
        t->ok += want && stamp == want;
        t->later += want && stamp > want;
        return;
    }
    uint64_t n = t->lost + t->wrong;
    *(stamp < want ? &t->lost : &t->wrong) += 1;
    if (n < 3)
        snprintf(t->first[n], sizeof t->first[n],
                 "player %u: acknowledged version %" PRIu64 " score %" PRId64
                 ", got %s (version %" PRId64 " score %" PRId64 ")",
                 id, want - 1, g->score[id], what, (int64_t)stamp - 1, score);
}

/* ------------------------------------------------------------------------
** Reports from the worker.
*/
static void on_figures(game *g, const figures *f)
{
    int64_t now = game_now_ns();
    if (g->run == 2 && f->phase == PHASE_PLAY && !g->back_ns) {
        g->back_ns = now;
        view_event(&g->v, now, "worker 2 read %" PRIu64 " players back in %.2f s: %s",
                   g->after_kill.checked, f->check_s,
                   g->after_kill.lost + g->after_kill.wrong ? "STATES LOST"
                                                            : "every acknowledged state came back");
        view_event(&g->v, now, "the game goes on (%.2f s after the kill)",
                   (double)(now - g->killed_ns) / 1e9);
    }
    g->v.fig = *f;
}

/* Handles the complete records in g->buf; keeps a partial one. */
static void parse(game *g)
{
    size_t at = 0;
    while (g->have - at >= sizeof(report)) {
        report r;
        memcpy(&r, g->buf + at, sizeof r);
        size_t len = sizeof r + (r.kind == R_FIGURES ? sizeof(figures) : r.n * sizeof(ack));
        if (g->have - at < len)
            break;
        const unsigned char *p = g->buf + at + sizeof r;
        if (r.kind == R_FIGURES) {
            figures f;
            memcpy(&f, p, sizeof f);
            on_figures(g, &f);
        }
        for (uint32_t i = 0; r.kind != R_FIGURES && i < r.n; i++) {
            ack a;
            memcpy(&a, p + i * sizeof a, sizeof a);
            if (r.kind == R_ACK)
                on_ack(g, &a);
            else if (a.id < g->opt.players)
                compare(&g->after_kill, g, a.id, a.stamp, a.score);
        }
        at += len;
    }
    memmove(g->buf, g->buf + at, g->have - at);
    g->have -= at;
}

/* Reads what the worker sent, waiting up to timeout_ms.  0 at end of file. */
static int pump(game *g, int timeout_ms)
{
    struct pollfd p = {.fd = g->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms < 0 ? 0 : timeout_ms) <= 0)
        return 1;
    ssize_t n = read(g->fd, g->buf + g->have, sizeof g->buf - g->have);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN;
    g->have += (size_t)n;
    parse(g);
    return n > 0;
}

/* ------------------------------------------------------------------------
** The worker's life.
*/
/* The worker is this program again, exec'd with --worker: a fresh process
** that inherits nothing from the supervisor but the pipe (not even the
** HTTP thread: forking a threaded process and going on is fragile). */
static void spawn(game *g, int check)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) { /* no other worker may hold the write end */
        perror("game: pipe");
        exit(1);
    }
    int wfd = dup(fds[1]); /* without O_CLOEXEC: the worker keeps it */
    char fd[16], chk[4], end[24], players[16], sessions[16];
    snprintf(fd, sizeof fd, "%d", wfd);
    snprintf(chk, sizeof chk, "%d", check);
    snprintf(end, sizeof end, "%" PRId64, g->v.end_ns);
    snprintf(players, sizeof players, "%" PRIu32, g->opt.players);
    snprintf(sessions, sizeof sessions, "%" PRIu32, g->opt.sessions);
    fflush(NULL); /* the child must not print the parent's buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        perror("game: fork");
        exit(1);
    }
    if (pid == 0) {
        execl("/proc/self/exe", "game", "--worker", fd, chk, end, players, sessions, g->url,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    close(wfd);
    g->pid = pid;
    g->fd = fds[0];
    g->have = 0;
    g->run++;
    g->v.run = g->run;
    memset(&g->v.fig, 0, sizeof g->v.fig);
}

/* Closes the pipe and waits for the worker; its wait status. */
static int reap(game *g)
{
    int status = 0;
    close(g->fd);
    while (waitpid(g->pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* SIGKILL, no warning.  What it wrote before dying is still read: those
** states were acknowledged. */
static void kill_worker(game *g)
{
    g->killed_ns = game_now_ns();
    g->live_at_kill = g->v.fig.live;
    kill(g->pid, SIGKILL);
    while (pump(g, 1000))
        ;
    reap(g);
    g->before = g->v.fig;
    g->v.sessions += g->v.fig.sessions_done;
    view_event(&g->v, g->killed_ns,
               "SIGKILL worker 1 (pid %d) with %" PRIu64 " sessions in play, %" PRIu64
               " acknowledged updates so far",
               (int)g->pid, g->live_at_kill, g->v.acks);
}

/* Runs the game: the workers, the view, the kill.  0 if every worker did
** its part. */
static int play(game *g)
{
    int64_t next_draw = g->v.start_ns;
    spawn(g, 0);
    for (;;) {
        int64_t now = game_now_ns();
        if (g->run == 1 && g->v.kill_ns && now >= g->v.kill_ns) {
            kill_worker(g);
            spawn(g, 1);
            view_event(&g->v, game_now_ns(), "worker 2 (pid %d) reopens the store", (int)g->pid);
        }
        if (now >= next_draw) {
            view_sample(&g->v, now);
            view_draw(&g->v, now);
            http_publish(g->http, &g->v.fig, g->v.sessions + g->v.fig.sessions_done, g->v.acks,
                         g->run - 1);
            next_draw += 250000000;
        }
        int64_t wake = next_draw;
        if (g->run == 1 && g->v.kill_ns && g->v.kill_ns < wake)
            wake = g->v.kill_ns;
        if (!pump(g, (int)((wake - game_now_ns()) / 1000000)))
            break;
    }
    int status = reap(g);
    g->v.sessions += g->v.fig.sessions_done;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || g->v.fig.phase != PHASE_DONE) {
        view_event(&g->v, game_now_ns(), "worker %d ended badly (status %#x)", g->run, status);
        return 1;
    }
    return g->v.kill_ns && !g->back_ns;
}

/* ------------------------------------------------------------------------
** The last check: the store itself, read once the worker has closed it.
*/
static int check_record(void *arg, const pgs_record *rec)
{
    game *g = arg;
    char key[16] = "";
    player p;
    if (rec->ref.key_len >= sizeof key || rec->state_len != sizeof p)
        return 0;
    memcpy(key, rec->ref.key, rec->ref.key_len);
    uint32_t id = (uint32_t)strtoul(key, NULL, 10);
    if (id >= g->opt.players)
        return 0;
    memcpy(&p, rec->state, sizeof p);
    g->seen[id] = 1;
    compare(&g->at_end, g, id, p.version + 1, p.score);
    return 0;
}

static int final_check(game *g)
{
    pgs_storage *st;
    int rc = pgs_storage_open(&st, g->url, NULL);
    if (!rc) {
        rc = pgs_storage_scan(st, "player", check_record, g);
        pgs_storage_close(st);
    }
    for (uint32_t id = 0; !rc && id < g->opt.players; id++)
        if (!g->seen[id])
            compare(&g->at_end, g, id, 0, 0);
    if (rc)
        fprintf(stderr, "game: reading %s: %s\n", g->url, pgs_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------------------
** Summary.
*/
static void print_tally(const char *when, const tally *t)
{
    if (!t->lost && !t->wrong) {
        printf("%-18s all %" PRIu64 " acknowledged player states came back (%" PRIu64
               " with a later update never acknowledged: a cast, or a call in flight)\n",
               when, t->acked, t->later);
        return;
    }
    printf("%-18s %" PRIu64 " of %" PRIu64 " acknowledged player states LOST, %" PRIu64
           " WRONG\n", when, t->lost, t->acked, t->wrong);
    for (int i = 0; i < 3 && t->first[i][0]; i++)
        printf("%-18s   %s\n", "", t->first[i]);
}

static void summary(game *g, double elapsed)
{
    const pgs_metrics *a = &g->before.m, *b = &g->v.fig.m;
    uint64_t writes = a->writes + b->writes, commits = a->commits + b->commits;
    uint64_t max = a->batch.max > b->batch.max ? a->batch.max : b->batch.max;
    printf("\n== game over after %.1f s on %s\n", elapsed, g->url);
    printf("%-18s %" PRIu32 "\n", "players", g->opt.players);
    printf("%-18s %" PRIu64 " (%" PRIu32 " at a time)\n", "sessions", g->v.sessions,
           g->opt.sessions);
    printf("%-18s %" PRIu64 " (%" PRIu64 " acknowledged updates)\n", "messages",
           a->messages + b->messages, g->v.acks);
    printf("%-18s %" PRIu64 " in %" PRIu64 " commits: mean batch %.1f, max %" PRIu64 "\n",
           "writes", writes, commits, commits ? (double)writes / (double)commits : 0.0, max);
    printf("%-18s %" PRIu64 "\n", "reactivations", a->reactivations + b->reactivations);
    printf("%-18s %" PRIu64 "\n", "passivations", a->passivations + b->passivations);
    if (g->killed_ns) {
        printf("%-18s at %.1f s, %" PRIu64 " sessions in play; the new worker opened the "
               "store in %.2f s, read every player back in %.2f s, played again %.2f s "
               "after the kill\n", "kill -9",
               (double)(g->killed_ns - g->v.start_ns) / 1e9, g->live_at_kill,
               g->v.fig.open_s, g->v.fig.check_s,
               g->back_ns ? (double)(g->back_ns - g->killed_ns) / 1e9 : -1.0);
        print_tally("after the kill", &g->after_kill);
    }
    print_tally("at the end", &g->at_end);
}

/* ------------------------------------------------------------------------
** Options and main.
*/
static void usage(void)
{
    fprintf(stderr, "usage: game [--players N] [--seconds S] [--dir D] [--no-kill]\n"
                    "            [--metrics-port P] [--sessions N]\n");
    exit(2);
}

static options parse_args(int argc, char **argv)
{
    options o = {.players = 100000, .sessions = 2000, .seconds = 40, .kill = 1,
                 .metrics_port = -1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--no-kill")) {
            o.kill = 0;
            continue;
        }
        if (!val)
            usage();
        if (!strcmp(arg, "--players"))
            o.players = (uint32_t)strtoul(val, NULL, 10);
        else if (!strcmp(arg, "--sessions"))
            o.sessions = (uint32_t)strtoul(val, NULL, 10);
        else if (!strcmp(arg, "--seconds"))
            o.seconds = strtod(val, NULL);
        else if (!strcmp(arg, "--dir"))
            o.dir = val;
        else if (!strcmp(arg, "--metrics-port"))
            o.metrics_port = atoi(val);
        else
            usage();
        i++;
    }
    if (!o.players || !o.sessions || o.seconds <= 0 || o.metrics_port > 65535)
        usage();
    return o;
}

static void setup(game *g)
{
    if (g->opt.dir) {
        snprintf(g->dir, sizeof g->dir, "%s", g->opt.dir);
    } else {
        snprintf(g->dir, sizeof g->dir, "/tmp/pgs-game-XXXXXX");
        g->own_dir = mkdtemp(g->dir) != NULL;
        if (!g->own_dir) {
            perror("game: mkdtemp");
            exit(1);
        }
    }
    snprintf(g->url, sizeof g->url, "sqlite:%s/game.db", g->dir);
    g->stamp = calloc(g->opt.players, sizeof *g->stamp);
    g->score = calloc(g->opt.players, sizeof *g->score);
    g->seen = calloc(g->opt.players, 1);
    if (!g->stamp || !g->score || !g->seen) {
        fprintf(stderr, "game: out of memory\n");
        exit(1);
    }
    g->v.url = g->url;
    g->v.players = g->opt.players;
    g->v.tty = isatty(STDOUT_FILENO);
    g->v.start_ns = game_now_ns();
    g->v.end_ns = g->v.start_ns + (int64_t)(g->opt.seconds * 1e9);
    if (g->opt.kill)
        g->v.kill_ns = g->v.start_ns + (int64_t)(g->opt.seconds * 1e9 / 2);
}

static void start_http(game *g)
{
    static char url[64];
    uint16_t port = 0;
    if (g->opt.metrics_port < 0)
        return;
    if (!(g->http = http_start((uint16_t)g->opt.metrics_port, &port))) {
        fprintf(stderr, "game: cannot serve metrics on port %d%s\n", g->opt.metrics_port,
                port ? "" : " (built without libmicrohttpd?)");
        exit(1);
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", port);
    g->v.http = url;
    printf("metrics: %s\n", url);
}

/* Removes the temporary directory the game made, and its files. */
static void cleanup(game *g)
{
    static const char *const files[] = {"game.db", "game.db-wal", "game.db-shm"};
    char path[300];
    for (size_t i = 0; g->own_dir && i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g->dir, files[i]);
        unlink(path);
    }
    if (g->own_dir)
        rmdir(g->dir);
}

/* game --worker FD CHECK END_NS PLAYERS SESSIONS URL (from spawn). */
static int worker_main(int argc, char **argv)
{
    if (argc != 8)
        return 2;
    worker_cfg cfg = {.fd = atoi(argv[2]), .check = atoi(argv[3]),
                      .end_ns = strtoll(argv[4], NULL, 10),
                      .players = (uint32_t)strtoul(argv[5], NULL, 10),
                      .sessions = (uint32_t)strtoul(argv[6], NULL, 10)};
    snprintf(cfg.url, sizeof cfg.url, "%s", argv[7]);
    return worker_run(&cfg);
}

int main(int argc, char **argv)
{
    static game g; /* large: the read buffer */
    if (argc > 1 && !strcmp(argv[1], "--worker"))
        return worker_main(argc, argv);
    g.opt = parse_args(argc, argv);
    setup(&g);
    start_http(&g);
    int bad = play(&g);
    double elapsed = (double)(game_now_ns() - g.v.start_ns) / 1e9;
    bad |= final_check(&g) != PGS_OK;
    summary(&g, elapsed);
    http_stop(g.http);
    cleanup(&g);
    bad |= g.after_kill.lost + g.after_kill.wrong + g.at_end.lost + g.at_end.wrong > 0;
    printf("%s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
