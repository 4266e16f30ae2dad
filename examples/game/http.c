/*
** http.c — GET /metrics on 127.0.0.1, served by libmicrohttpd's own
** thread: the worker's last figures through pgs_metrics_prometheus, then
** the game's.  The supervisor publishes under a lock; the handler renders
** a copy, so a scrape never waits on the game.  It lives in the
** supervisor, so the endpoint stays up while the worker is killed and
** restarted (the pgs_ counters then start again from zero, which
** Prometheus reads as a counter reset).
*/
#include "game.h"

#include <stdlib.h>

#ifdef GAME_HTTP
#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct http {
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;
    figures fig;
    uint64_t sessions, acks;
    int restarts;
};

/* The game's own lines, after pgs's. */
static size_t game_lines(const struct http *h, char *buf, size_t size)
{
    int n = snprintf(buf, size,
                     "# HELP game_sessions_total Game sessions played to the end.\n"
                     "# TYPE game_sessions_total counter\ngame_sessions_total %" PRIu64 "\n"
                     "# HELP game_acknowledged_total Player updates acknowledged.\n"
                     "# TYPE game_acknowledged_total counter\ngame_acknowledged_total %" PRIu64 "\n"
                     "# HELP game_worker_restarts_total Workers killed and restarted.\n"
                     "# TYPE game_worker_restarts_total counter\ngame_worker_restarts_total %d\n"
                     "# HELP game_worker_resident_bytes The worker's RSS.\n"
                     "# TYPE game_worker_resident_bytes gauge\ngame_worker_resident_bytes %" PRIu64 "\n",
                     h->sessions, h->acks, h->restarts, h->fig.rss_kb * 1024);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **state)
{
    struct http *h = cls;
    if (strcmp(method, "GET") != 0)
        return MHD_NO;
    char body[PGS_METRICS_TEXT_MAX + 1024];
    size_t len = 0;
    unsigned status = MHD_HTTP_NOT_FOUND;
    if (!strcmp(url, "/metrics")) {
        pthread_mutex_lock(&h->lock);
        struct http copy = *h;
        pthread_mutex_unlock(&h->lock);
        pgs_metrics_prometheus(&copy.fig.m, body, sizeof body, &len);
        len += game_lines(&copy, body + len, sizeof body - len);
        status = MHD_HTTP_OK;
    } else {
        len = (size_t)snprintf(body, sizeof body, "try /metrics\n");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

http *http_start(uint16_t port, uint16_t *bound)
{
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    pthread_mutex_init(&h->lock, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, port, NULL, NULL, serve, h,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_END);
    const union MHD_DaemonInfo *info =
        h->daemon ? MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    *bound = info ? info->port : 1; /* non-zero: the library is there */
    if (!info) {
        http_stop(h);
        return NULL;
    }
    return h;
}

void http_publish(http *h, const figures *f, uint64_t sessions, uint64_t acks, int restarts)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->fig = *f;
    h->sessions = sessions;
    h->acks = acks;
    h->restarts = restarts;
    pthread_mutex_unlock(&h->lock);
}

void http_stop(http *h)
{
    if (!h)
        return;
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

#else /* built without libmicrohttpd */

http *http_start(uint16_t port, uint16_t *bound)
{
    *bound = 0;
    return NULL;
}

void http_publish(http *h, const figures *f, uint64_t sessions, uint64_t acks, int restarts)
{
}

void http_stop(http *h)
{
}

#endif
