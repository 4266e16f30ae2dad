/*
** text.c — how the tool renders bytes and values: hex dumps, line diffs,
** options, times.  Output only; no store access.
*/
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
** Lines.
*/
int lines_push(lines *l, const char *s, size_t len)
{
    if (grow(&l->v, &l->cap, l->n, sizeof *l->v))
        return PGS_ENOMEM;
    char *copy = malloc(len + 1);
    if (!copy)
        return PGS_ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->v[l->n++] = copy;
    return PGS_OK;
}

void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* One hex dump line: "00000010  41 42 ...  |AB..|". */
static int hex_line(lines *l, const unsigned char *p, size_t n, size_t offset)
{
    char buf[96];
    int k = snprintf(buf, sizeof buf, "%08zx ", offset);
    for (size_t i = 0; i < 16; i++)
        k += i < n ? snprintf(buf + k, sizeof buf - (size_t)k, "%s%02x", i == 8 ? "  " : " ", p[i])
                   : snprintf(buf + k, sizeof buf - (size_t)k, "%s", i == 8 ? "    " : "   ");
    k += snprintf(buf + k, sizeof buf - (size_t)k, "  |");
    for (size_t i = 0; i < n; i++)
        buf[k++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    buf[k++] = '|';
    return lines_push(l, buf, (size_t)k);
}

int lines_hex(lines *l, const void *data, size_t len)
{
    const unsigned char *p = data;
    int rc = PGS_OK;
    for (size_t off = 0; off < len && !rc; off += 16)
        rc = hex_line(l, p + off, len - off < 16 ? len - off : 16, off);
    return rc;
}

int lines_text(lines *l, const char *text, size_t len)
{
    int rc = PGS_OK;
    while (len && !rc) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        rc = lines_push(l, text, n);
        n += nl != NULL;
        text += n;
        len -= n;
    }
    return rc;
}

void lines_print(const lines *l, const char *prefix)
{
    for (size_t i = 0; i < l->n; i++)
        printf("%s%s\n", prefix, l->v[i]);
}

/* Beyond this many cells the LCS table is not built: lines are compared
** position by position instead (hex dumps are, anyway). */
#define DIFF_MAX_CELLS ((size_t)1 << 22)

static size_t diff_positional(const lines *a, const lines *b)
{
    size_t n = a->n > b->n ? a->n : b->n, changed = 0;
    for (size_t i = 0; i < n; i++) {
        const char *x = i < a->n ? a->v[i] : NULL, *y = i < b->n ? b->v[i] : NULL;
        if (x && y && strcmp(x, y) == 0)
            continue;
        if (x)
            printf("-%s\n", x), changed++;
        if (y)
            printf("+%s\n", y), changed++;
    }
    return changed;
}

/* Classic LCS: t[i][j] is the LCS length of a[i..] and b[j..]; walking it
** from the start prints removals before additions at each change. */
size_t lines_diff(const lines *a, const lines *b)
{
    size_t w = b->n + 1, cells = (a->n + 1) * w;
    if (a->n && cells / a->n < w) /* overflow */
        return diff_positional(a, b);
    uint32_t *t = cells <= DIFF_MAX_CELLS ? calloc(cells, sizeof *t) : NULL;
    if (!t)
        return diff_positional(a, b);
    for (size_t i = a->n; i-- > 0;)
        for (size_t j = b->n; j-- > 0;)
            t[i * w + j] = strcmp(a->v[i], b->v[j]) == 0
                               ? t[(i + 1) * w + j + 1] + 1
                               : (t[(i + 1) * w + j] > t[i * w + j + 1] ? t[(i + 1) * w + j]
                                                                        : t[i * w + j + 1]);
    size_t i = 0, j = 0, changed = 0;
    while (i < a->n || j < b->n) {
        if (i < a->n && j < b->n && strcmp(a->v[i], b->v[j]) == 0)
            i++, j++;
        else if (j == b->n || (i < a->n && t[(i + 1) * w + j] >= t[i * w + j + 1]))
            printf("-%s\n", a->v[i++]), changed++;
        else
            printf("+%s\n", b->v[j++]), changed++;
    }
    free(t);
    return changed;
}

/* ------------------------------------------------------------------------
** Values.
*/
void text_time(int64_t ms, char *buf, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&s, &tm)) {
        snprintf(buf, size, "never");
        return;
    }
    size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03d UTC", (int)(ms % 1000));
}

/* names[v] for a small enum value, "inherit" for 0, else the number. */
static const char *enum_name(unsigned v, const char *const *names, size_t n, char *num)
{
    if (v < n)
        return names[v];
    sprintf(num, "%u", v);
    return num;
}

/* A count where 0 inherits and `none` (if not 0) means none or never. */
static const char *count_name(uint32_t v, uint32_t none, const char *none_word, char *num)
{
    if (v == 0)
        return "inherit";
    if (none && v == none)
        return none_word;
    sprintf(num, "%u", (unsigned)v);
    return num;
}

void text_opts(const pgs_server_opts *o, char *buf, size_t size)
{
    static const char *const lifecycles[] = {"inherit", "transient", "temporary", "permanent"};
    static const char *const modes[] = {"inherit", "sync", "async", "on_passivate"};
    static const char *const policies[] = {"inherit", "backoff", "rollback", "reset", "park"};
    char n[8][16];
    snprintf(buf, size,
             "lifecycle=%s write=%s idle_timeout_ms=%s fault_policy=%s poison_after=%s "
             "max_restarts=%s history=%s restart_window_ms=%s",
             enum_name(o->lifecycle, lifecycles, 4, n[0]), enum_name(o->write_mode, modes, 4, n[1]),
             count_name(o->idle_timeout_ms, PGS_IDLE_NEVER, "never", n[2]),
             enum_name(o->fault_policy, policies, 5, n[3]),
             count_name(o->poison_after, 0, NULL, n[4]), count_name(o->max_restarts, 0, NULL, n[5]),
             count_name(o->history, PGS_HISTORY_NONE, "none", n[6]),
             count_name(o->restart_window_ms, 0, NULL, n[7]));
}

const char *text_kind(int kind)
{
    static const char *const kinds[] = {"?", "call", "cast", "info"};
    return kind >= 1 && kind <= 3 ? kinds[kind] : kinds[0];
}

void text_hex_short(const void *data, size_t len, size_t max, char *buf, size_t size)
{
    const unsigned char *p = data;
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < len && i < max && k + 4 < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%02x", i ? " " : "", p[i]);
    if (len > max && k + 5 < size)
        snprintf(buf + k, size - k, " ...");
}
