/*
** view.c — the live view: on a terminal, a screen redrawn about four times
** a second with plain ANSI escapes (home, clear to end of line and of
** screen); otherwise one line a second, for logs and CI.  Rates are taken
** over the last second of samples, so they do not jump with each one.
*/
#include "game.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define RING (int)(sizeof ((view *)0)->ring / sizeof ((view *)0)->ring[0])

/* 1234567 → "1,234,567" in buf. */
static const char *num(char buf[32], uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

static double per_s(uint64_t later, uint64_t earlier, double dt)
{
    return later >= earlier && dt > 0 ? (double)(later - earlier) / dt : 0;
}

void view_sample(view *v, int64_t now_ns)
{
    const pgs_metrics *m = &v->fig.m;
    if (v->ring_run != v->run) { /* a new worker counts from zero */
        v->nring = 0;
        v->ring_run = v->run;
    }
    if (v->nring == RING)
        memmove(&v->ring[0], &v->ring[1], (RING - 1) * sizeof v->ring[0]);
    else
        v->nring++;
    v->ring[v->nring - 1] = (sample){now_ns, m->messages, m->writes, m->commits,
                                     m->reactivations, m->passivations};
    const sample *a = &v->ring[0], *b = &v->ring[v->nring - 1];
    double dt = (double)(b->ns - a->ns) / 1e9;
    v->msg_s = per_s(b->messages, a->messages, dt);
    v->writes_s = per_s(b->writes, a->writes, dt);
    v->react_s = per_s(b->reactivations, a->reactivations, dt);
    v->pass_s = per_s(b->passivations, a->passivations, dt);
    v->batch = b->commits > a->commits
                   ? (double)(b->writes - a->writes) / (double)(b->commits - a->commits)
                   : 0;
}

/* The upper bound, in ms, of the bucket holding quantile q of h. */
static double quantile_ms(const pgs_histogram *h, double q)
{
    uint64_t want = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
    for (int i = 0; i < PGS_HIST_BUCKETS; i++)
        if ((seen += h->buckets[i]) >= want && seen)
            return (double)(1ull << i) / 1000;
    return 0;
}

static const char *phase_name(int phase)
{
    static const char *const names[] = {"starting", "creating players", "reading players back",
                                        "playing", "closing"};
    return phase >= 0 && phase <= PHASE_DONE ? names[phase] : "?";
}

static void draw_screen(view *v, int64_t now_ns)
{
    const pgs_metrics *m = &v->fig.m;
    char a[32], b[32], c[32], d[32];
    printf(v->drawn ? "\033[H" : "\033[H\033[2J");
    v->drawn = 1;
    printf("pgs game: %s players, each a persistent server, on %s\033[K\n",
           num(a, v->players), v->url);
    printf("elapsed   %5.1f s of %.0f s    worker %d", (double)(now_ns - v->start_ns) / 1e9,
           (double)(v->end_ns - v->start_ns) / 1e9, v->run);
    if (v->kill_ns)
        printf("    kill -9 at %.1f s", (double)(v->kill_ns - v->start_ns) / 1e9);
    printf("\033[K\n\033[K\n");
    printf("phase     %s: %s sessions in play, %s done\033[K\n", phase_name(v->fig.phase),
           num(a, v->fig.live), num(b, v->sessions + v->fig.sessions_done));
    printf("servers   active %s    passivated %s    stored %s\033[K\n", num(a, m->active),
           num(b, m->passivated), num(c, m->stored));
    printf("per sec   messages %s    writes %s    reactivations %s    passivations %s\033[K\n",
           num(a, (uint64_t)v->msg_s), num(b, (uint64_t)v->writes_s),
           num(c, (uint64_t)v->react_s), num(d, (uint64_t)v->pass_s));
    printf("commits   batch %.1f writes (largest %s)    write p50 <= %.3g ms, p99 <= %.3g ms"
           "\033[K\n", v->batch, num(a, m->batch.max), quantile_ms(&m->write_latency, 0.5),
           quantile_ms(&m->write_latency, 0.99));
    printf("mailboxes %s queued    deepest %s\033[K\n", num(a, m->queued), num(b, m->queued_max));
    printf("memory    worker RSS %.1f MiB\033[K\n", (double)v->fig.rss_kb / 1024);
    printf("acked     %s updates acknowledged to the supervisor\033[K\n", num(a, v->acks));
    if (v->http)
        printf("metrics   %s\033[K\n", v->http);
    printf("\033[K\n");
    for (int i = 0; i < 5; i++)
        if (v->log[i][0])
            printf("%s\033[K\n", v->log[i]);
    printf("\033[J");
    fflush(stdout);
}

static void print_line(view *v, int64_t now_ns)
{
    const pgs_metrics *m = &v->fig.m;
    if (v->last_line_ns && now_ns - v->last_line_ns < 990000000)
        return;
    v->last_line_ns = now_ns;
    printf("%6.1f s  %-20s active %-6" PRIu64 " passivated %-7" PRIu64 " msg/s %-7.0f "
           "writes/s %-7.0f batch %-5.1f react/s %-6.0f rss %.0f MiB\n",
           (double)(now_ns - v->start_ns) / 1e9, phase_name(v->fig.phase), m->active,
           m->passivated, v->msg_s, v->writes_s, v->batch, v->react_s,
           (double)v->fig.rss_kb / 1024);
    fflush(stdout);
}

void view_draw(view *v, int64_t now_ns)
{
    if (v->tty)
        draw_screen(v, now_ns);
    else
        print_line(v, now_ns);
}

void view_event(view *v, int64_t now_ns, const char *fmt, ...)
{
    char text[140];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    double t = (double)(now_ns - v->start_ns) / 1e9;
    if (!v->tty) {
        printf("%6.1f s  == %s\n", t, text);
        fflush(stdout);
        return;
    }
    memmove(v->log[0], v->log[1], sizeof v->log - sizeof v->log[0]);
    snprintf(v->log[4], sizeof v->log[4], "%6.1f s  %s", t, text);
}
