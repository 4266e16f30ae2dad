/*
** inspect.c — the read-only commands: list, show, history, poison, stats.
**
** Scans collect what they print and print after the scan (sorted, since
** engines scan in no set order); a scan's callback must not call into
** the store.
*/
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
** list
*/
typedef struct row {
    char ref[PGS_REF_TEXT_MAX];
    char name[PGS_NAME_MAX + 1];
    uint64_t version;
    uint32_t schema;
    size_t state_len;
    int parked; /* -1: options unreadable */
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
} rows;

static int is_own(const pgs_ref *ref)
{
    return strncmp(ref->name, "pgs.", 4) == 0;
}

static int collect_row(void *arg, const pgs_record *rec)
{
    rows *r = arg;
    if (is_own(&rec->ref))
        return 0;
    if (grow(&r->v, &r->cap, r->n, sizeof *r->v))
        return PGS_ENOMEM;
    row *w = &r->v[r->n++];
    pgs_server_opts o;
    pgs_ref_format(&rec->ref, w->ref, sizeof w->ref, NULL);
    memcpy(w->name, rec->ref.name, sizeof w->name);
    w->version = rec->version;
    w->schema = rec->schema_version;
    w->state_len = rec->state_len;
    if (pgs_record_options(rec, &o, &w->parked))
        w->parked = -1;
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const row *)a)->ref, ((const row *)b)->ref);
}

int cmd_list(tool *t, const args *a)
{
    rows r = {0};
    int rc = pgs_storage_scan(t->st, a->behaviour, collect_row, &r);
    if (rc) {
        free(r.v);
        return tool_fail(rc, a->behaviour ? a->behaviour : "list");
    }
    if (r.n) /* qsort wants an array, even of none */
        qsort(r.v, r.n, sizeof *r.v, row_cmp);
    int w = 3;
    for (size_t i = 0; i < r.n; i++)
        w = (int)strlen(r.v[i].ref) > w ? (int)strlen(r.v[i].ref) : w;
    printf("%-16s %-*s %8s %6s %8s %s\n", "BEHAVIOUR", w, "REF", "VERSION", "SCHEMA", "BYTES",
           "PARKED");
    for (size_t i = 0; i < r.n; i++) {
        const row *x = &r.v[i];
        printf("%-16s %-*s %8llu %6u %8zu %s\n", x->name, w, x->ref,
               (unsigned long long)x->version, (unsigned)x->schema, x->state_len,
               x->parked < 0 ? "unreadable" : x->parked ? "yes" : "no");
    }
    free(r.v);
    return X_OK;
}

/* ------------------------------------------------------------------------
** show
*/

/* Prints bytes as the plugin renders them, or as a hex dump. */
static int print_state(tool *t, const pgs_record *rec)
{
    pgs_bytes text = {0};
    lines l = {0};
    int rc;
    if (tool_format(t, rec, &text) == PGS_OK) {
        printf("state        %zu bytes, as %s formats it:\n", rec->state_len, rec->ref.name);
        rc = lines_text(&l, text.data, text.len);
    } else {
        printf("state        %zu bytes%s\n", rec->state_len, rec->state_len ? ":" : "");
        rc = lines_hex(&l, rec->state, rec->state_len);
    }
    lines_print(&l, "  ");
    lines_free(&l);
    pgs_bytes_free(&text);
    return rc;
}

static void print_crashes(const pgs_server_info *info)
{
    char when[48], hex[200];
    if (!info->last_error) {
        printf("crashes      0 (never crashed)\n");
        return;
    }
    text_time(info->last_crash_ms, when, sizeof when);
    printf("crashes      %u in the current window\n", (unsigned)info->crashes);
    printf("last crash   %s at %s, on version %llu\n", pgs_errname(info->last_error), when,
           (unsigned long long)info->crash_version);
    text_hex_short(info->last_message.data, info->last_message.len, 48, hex, sizeof hex);
    printf("last message %s, %zu bytes: %s\n", text_kind(info->last_kind),
           info->last_message.len, hex);
}

/* The server's own part: options, parked, crash record. */
static int print_server(tool *t, const pgs_record *rec)
{
    pgs_server_info info;
    int rc = pgs_storage_server_info(t->st, &rec->ref, &info);
    if (rc)
        return rc;
    char opts[400];
    text_opts(&info.opts, opts, sizeof opts);
    printf("parked       %s\n", info.parked ? "yes" : "no");
    printf("options      %s\n", rec->options_len ? opts : "none stored (all inherit)");
    print_crashes(&info);
    pgs_bytes_free(&info.last_message);
    return PGS_OK;
}

int cmd_show(tool *t, const args *a)
{
    pgs_ref ref;
    pgs_record *rec = NULL;
    int x = tool_get(t, a->pos[0], &ref, &rec);
    if (x)
        return x;
    lines start = {0};
    printf("ref          %s\n", a->pos[0]);
    printf("version      %llu\n", (unsigned long long)rec->version);
    printf("schema       %u\n", (unsigned)rec->schema_version);
    printf("args         %zu bytes%s\n", rec->args_len, rec->args_len ? ":" : "");
    int rc = lines_hex(&start, rec->args, rec->args_len);
    lines_print(&start, "  ");
    lines_free(&start);
    if (!rc && !is_own(&ref)) /* pgs's own records have no options nor crashes */
        rc = print_server(t, rec);
    if (!rc)
        rc = print_state(t, rec);
    free(rec);
    return rc ? tool_fail(rc, a->pos[0]) : X_OK;
}

/* ------------------------------------------------------------------------
** history
*/
/* The current record, then the kept ones newest first, into *vs. */
static int read_versions(tool *t, const char *text, records *vs)
{
    pgs_ref ref;
    pgs_record *cur;
    int x = tool_get(t, text, &ref, &cur);
    if (x)
        return x;
    if (grow(&vs->v, &vs->cap, 0, sizeof *vs->v)) {
        free(cur);
        return tool_fail(PGS_ENOMEM, text);
    }
    vs->v[vs->n++] = cur;
    int rc = pgs_storage_history(t->st, &ref, records_add, vs);
    if (rc == PGS_ENOTSUP)
        fprintf(stderr, "pgs: note: %s keeps no history\n", t->url);
    return rc && rc != PGS_ENOTSUP ? tool_fail(rc, text) : X_OK;
}

static const pgs_record *find_version(const records *vs, const char *text)
{
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    for (size_t i = 0; *text && !*end && i < vs->n; i++)
        if (vs->v[i]->version == v)
            return vs->v[i];
    return NULL;
}

/* A version's state as lines: formatted text if the plugin can, else hex. */
static int state_lines(tool *t, const pgs_record *rec, lines *l)
{
    pgs_bytes text = {0};
    int rc = tool_format(t, rec, &text) == PGS_OK ? lines_text(l, text.data, text.len)
                                                 : lines_hex(l, rec->state, rec->state_len);
    pgs_bytes_free(&text);
    return rc;
}

static int diff_versions(tool *t, const records *vs, const args *a)
{
    const pgs_record *r[2];
    for (int i = 0; i < 2; i++) {
        if (!(r[i] = find_version(vs, a->diff[i]))) {
            fprintf(stderr, "pgs: %s: version %s is not kept\n", a->pos[0], a->diff[i]);
            return X_NOTFOUND;
        }
    }
    lines l[2] = {{0}, {0}};
    int rc = state_lines(t, r[0], &l[0]);
    if (!rc)
        rc = state_lines(t, r[1], &l[1]);
    if (!rc) {
        printf("--- %s version %s\n+++ %s version %s\n", a->pos[0], a->diff[0], a->pos[0],
               a->diff[1]);
        if (lines_diff(&l[0], &l[1]) == 0)
            printf("(no difference)\n");
    }
    lines_free(&l[0]);
    lines_free(&l[1]);
    return rc ? tool_fail(rc, a->pos[0]) : X_OK;
}

/* One line of the history: the version, and the message whose turn made
** it when the server keeps history messages (pgs_server_opts). */
static void print_version(const pgs_record *rec, int current)
{
    static const char *const kinds[] = {"", "call", "cast", "info"};
    char cause[80] = "-";
    int kind;
    const void *msg;
    size_t len;
    if (pgs_record_cause(rec, &kind, &msg, &len) == PGS_OK) {
        char hex[64];
        text_hex_short(msg, len, 16, hex, sizeof hex);
        snprintf(cause, sizeof cause, "%s %s", kinds[kind], hex);
    }
    printf("%8llu %6u %8zu  %s%s\n", (unsigned long long)rec->version,
           (unsigned)rec->schema_version, rec->state_len, cause, current ? "  (current)" : "");
}

int cmd_history(tool *t, const args *a)
{
    records vs = {0};
    int x = read_versions(t, a->pos[0], &vs);
    if (!x && a->diff[0]) {
        x = diff_versions(t, &vs, a);
    } else if (!x) {
        printf("%8s %6s %8s  %s\n", "VERSION", "SCHEMA", "BYTES", "MADE BY");
        for (size_t i = 0; i < vs.n && (a->count < 0 || (long)i < a->count); i++)
            print_version(vs.v[i], i == 0);
    }
    records_free(&vs);
    return x;
}

/* ------------------------------------------------------------------------
** poison
*/
typedef struct poisoned {
    uint64_t id;
    char ref[PGS_REF_TEXT_MAX];
    int kind, error;
    uint32_t attempts;
    int64_t time_ms;
    uint64_t state_version;
    char hex[120];
    size_t msg_len;
} poisoned;

typedef struct poison_list {
    poisoned *v;
    size_t n, cap;
} poison_list;

static int collect_poison(void *arg, const pgs_poison *p)
{
    poison_list *l = arg;
    if (grow(&l->v, &l->cap, l->n, sizeof *l->v))
        return PGS_ENOMEM;
    poisoned *x = &l->v[l->n++];
    x->id = p->id;
    pgs_ref_format(&p->ref, x->ref, sizeof x->ref, NULL);
    x->kind = p->kind;
    x->error = p->error;
    x->attempts = p->attempts;
    x->time_ms = p->time_ms;
    x->state_version = p->state_version;
    x->msg_len = p->msg_len;
    text_hex_short(p->msg, p->msg_len, 16, x->hex, sizeof x->hex);
    return 0;
}

static int poison_cmp(const void *a, const void *b)
{
    const poisoned *x = a, *y = b;
    return x->time_ms != y->time_ms ? (x->time_ms < y->time_ms ? -1 : 1)
                                    : (x->id < y->id ? -1 : x->id > y->id);
}

int cmd_poison(tool *t, const args *a)
{
    pgs_ref ref;
    int x = a->npos ? tool_ref(a->pos[0], &ref) : X_OK;
    if (x)
        return x;
    poison_list l = {0};
    int rc = pgs_storage_poison_list(t->st, a->npos ? &ref : NULL, collect_poison, &l);
    if (rc) {
        free(l.v);
        return tool_fail(rc, "poison");
    }
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, poison_cmp);
    printf("%-16s %-24s %-4s %-13s %8s %-27s %8s %s\n", "ID", "REF", "KIND", "ERROR",
           "ATTEMPTS", "SET ASIDE", "MET", "MESSAGE");
    for (size_t i = 0; i < l.n; i++) {
        const poisoned *p = &l.v[i];
        char when[48];
        text_time(p->time_ms, when, sizeof when);
        printf("%016llx %-24s %-4s %-13s %8u %-27s %8llu %zu bytes: %s\n",
               (unsigned long long)p->id, p->ref, text_kind(p->kind), pgs_errname(p->error),
               (unsigned)p->attempts, when, (unsigned long long)p->state_version, p->msg_len,
               p->hex);
    }
    free(l.v);
    return X_OK;
}

/* ------------------------------------------------------------------------
** stats
*/
typedef struct tally {
    char name[PGS_NAME_MAX + 1];
    uint64_t servers, parked, bytes;
} tally;

typedef struct stats {
    tally *by; /* one per behaviour */
    size_t n, cap;
    uint64_t records, bytes, poison, faults;
} stats;

static tally *tally_of(stats *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->by[i].name, name) == 0)
            return &s->by[i];
    if (grow(&s->by, &s->cap, s->n, sizeof *s->by))
        return NULL;
    tally *t = memset(&s->by[s->n++], 0, sizeof *s->by);
    strcpy(t->name, name);
    return t;
}

static int count_record(void *arg, const pgs_record *rec)
{
    stats *s = arg;
    uint64_t bytes = rec->args_len + rec->options_len + rec->state_len;
    s->records++;
    s->bytes += bytes;
    s->poison += strcmp(rec->ref.name, "pgs.poison") == 0;
    s->faults += strcmp(rec->ref.name, "pgs.fault") == 0;
    if (is_own(&rec->ref))
        return 0;
    tally *t = tally_of(s, rec->ref.name);
    if (!t)
        return PGS_ENOMEM;
    pgs_server_opts o;
    int parked = 0;
    t->servers++;
    t->bytes += bytes;
    t->parked += pgs_record_options(rec, &o, &parked) == PGS_OK && parked;
    return 0;
}

static int tally_cmp(const void *a, const void *b)
{
    return strcmp(((const tally *)a)->name, ((const tally *)b)->name);
}

int cmd_stats(tool *t, const args *a)
{
    stats s = {0};
    int rc = pgs_storage_scan(t->st, NULL, count_record, &s);
    if (rc) {
        free(s.by);
        return tool_fail(rc, "stats");
    }
    if (s.n)
        qsort(s.by, s.n, sizeof *s.by, tally_cmp);
    uint64_t servers = 0, parked = 0;
    printf("%-24s %8s %8s %12s\n", "BEHAVIOUR", "SERVERS", "PARKED", "BYTES");
    for (size_t i = 0; i < s.n; i++) {
        const tally *x = &s.by[i];
        printf("%-24s %8llu %8llu %12llu\n", x->name, (unsigned long long)x->servers,
               (unsigned long long)x->parked, (unsigned long long)x->bytes);
        servers += x->servers;
        parked += x->parked;
    }
    printf("servers %llu, parked %llu, poison messages %llu, crash records %llu, "
           "records %llu, bytes %llu\n",
           (unsigned long long)servers, (unsigned long long)parked,
           (unsigned long long)s.poison, (unsigned long long)s.faults,
           (unsigned long long)s.records, (unsigned long long)s.bytes);
    free(s.by);
    return X_OK;
}
