/*
** repair.c — the commands that write: rollback, replace, unpark, delete,
** poison-drop.
**
** rollback, replace and unpark write the server's record as the runtime's
** own repairs do (pgs_rollback, pgs_repair, pgs_unpark): a new version
** (current + 1, expected = current, so a concurrent writer is detected),
** the parked flag cleared, then the crash count started again.  Unlike
** the runtime they keep the replaced version and every kept one (keep
** spans them all): an operator's edit can itself be rolled back, and the
** server's next write trims the history to its own setting.
*/
#include "tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
** Writing a new version.
*/
typedef struct kept {
    uint64_t oldest; /* 0: none kept */
    uint64_t want;   /* the version looked for (0: none) */
    pgs_record *found;
} kept;

static int visit_kept(void *arg, const pgs_record *rec)
{
    kept *k = arg;
    k->oldest = rec->version; /* newest first: the last one seen is the oldest */
    if (rec->version == k->want && !k->found)
        return pgs_record_copy(rec, &k->found) ? PGS_ENOMEM : 0;
    return 0;
}

/* Reads ref's history: the oldest kept version, and a copy of version
** k->want if it is kept.  A store without history has none. */
static int read_kept(tool *t, const pgs_ref *ref, kept *k)
{
    int rc = pgs_storage_history(t->st, ref, visit_kept, k);
    return rc == PGS_ENOTSUP ? PGS_OK : rc;
}

/* Writes cur's next version with `state` at `schema`, unparked, keeping
** the replaced version and the whole history. */
static int rewrite(tool *t, const pgs_record *cur, const void *state, size_t len, uint32_t schema)
{
    pgs_server_opts o;
    int parked;
    unsigned char opts[PGS_RECORD_OPTIONS_LEN];
    kept k = {0};
    int rc = pgs_record_options(cur, &o, &parked);
    if (!rc)
        rc = read_kept(t, &cur->ref, &k);
    if (rc)
        return rc;
    pgs_record rec = *cur;
    if (cur->options_len) { /* none stored: nothing to clear */
        if ((rc = pgs_record_options_encode(&o, 0, opts)))
            return rc;
        rec.options = opts;
        rec.options_len = sizeof opts;
    }
    rec.version = cur->version + 1;
    rec.schema_version = schema;
    rec.state = state;
    rec.state_len = len;
    uint64_t keep = k.oldest ? cur->version - k.oldest + 1 : 1;
    pgs_write w = {.op = PGS_OP_PUT, .record = &rec, .expected_version = cur->version,
                   .keep = keep > UINT32_MAX ? UINT32_MAX : (uint32_t)keep};
    rc = pgs_storage_batch(t->st, &w, 1);
    return rc ? rc : pgs_storage_fault_clear(t->st, &cur->ref, 0);
}

/* Reports the outcome of a rewrite of ref text `what`. */
static int done(int rc, const char *what, const pgs_record *cur, const char *how)
{
    if (rc)
        return tool_fail(rc, what);
    printf("%s: %s, now version %" PRIu64 "\n", what, how, cur->version + 1);
    return X_OK;
}

/* ------------------------------------------------------------------------
** The commands.
*/
int cmd_rollback(tool *t, const args *a)
{
    pgs_ref ref;
    pgs_record *cur;
    char *end;
    errno = 0;
    uint64_t v = strtoull(a->pos[1], &end, 10);
    if (!*a->pos[1] || *end || errno || v == 0) {
        fprintf(stderr, "pgs: not a version: %s\n", a->pos[1]);
        return X_USAGE;
    }
    int x = tool_get(t, a->pos[0], &ref, &cur);
    if (x)
        return x;
    kept k = {.want = v};
    int rc = v == cur->version ? PGS_OK : read_kept(t, &ref, &k);
    const pgs_record *from = v == cur->version ? cur : k.found;
    char how[64];
    snprintf(how, sizeof how, "rolled back to version %" PRIu64, v);
    if (!rc && !from) {
        fprintf(stderr, "pgs: %s: version %" PRIu64 " is not kept\n", a->pos[0], v);
        x = X_NOTFOUND;
    } else {
        x = done(rc ? rc : rewrite(t, cur, from->state, from->state_len, from->schema_version),
                 a->pos[0], cur, how);
    }
    free(k.found);
    free(cur);
    return x;
}

/* Reads a whole file ("-": standard input) into *out. */
static int read_file(const char *path, pgs_bytes *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "pgs: %s: %s\n", path, strerror(errno));
        return X_FAIL;
    }
    size_t cap = 0;
    char buf[65536];
    int x = X_OK;
    for (size_t n; !x && (n = fread(buf, 1, sizeof buf, f)) > 0;) {
        if (grow(&out->data, &cap, out->len + n - 1, 1))
            x = tool_fail(PGS_ENOMEM, path);
        else
            memcpy((char *)out->data + out->len, buf, n), out->len += n;
    }
    if (!x && ferror(f))
        fprintf(stderr, "pgs: %s: %s\n", path, strerror(errno)), x = X_FAIL;
    if (f != stdin)
        fclose(f);
    return x;
}

int cmd_replace(tool *t, const args *a)
{
    pgs_ref ref;
    pgs_record *cur;
    pgs_bytes state = {0};
    int x = read_file(a->pos[1], &state);
    if (!x)
        x = tool_get(t, a->pos[0], &ref, &cur);
    if (x) {
        pgs_bytes_free(&state);
        return x;
    }
    char how[64];
    snprintf(how, sizeof how, "state replaced (%zu bytes)", state.len);
    x = done(rewrite(t, cur, state.data, state.len, cur->schema_version), a->pos[0], cur, how);
    pgs_bytes_free(&state);
    free(cur);
    return x;
}

int cmd_unpark(tool *t, const args *a)
{
    pgs_ref ref;
    pgs_record *cur;
    pgs_server_opts o;
    int parked = 0;
    int x = tool_get(t, a->pos[0], &ref, &cur);
    if (x)
        return x;
    int rc = pgs_record_options(cur, &o, &parked);
    if (!rc && !parked)
        printf("%s: not parked\n", a->pos[0]);
    else
        x = done(rc ? rc : rewrite(t, cur, cur->state, cur->state_len, cur->schema_version),
                 a->pos[0], cur, "unparked");
    free(cur);
    return x;
}

int cmd_delete(tool *t, const args *a)
{
    pgs_ref ref;
    int x = tool_ref(a->pos[0], &ref);
    if (x)
        return x;
    int rc = pgs_storage_del(t->st, &ref);
    if (!rc)
        rc = pgs_storage_fault_clear(t->st, &ref, 1);
    if (rc)
        return tool_fail(rc, a->pos[0]);
    printf("%s: deleted\n", a->pos[0]);
    return X_OK;
}

int cmd_poison_drop(tool *t, const args *a)
{
    const char *s = a->pos[0];
    char *end;
    errno = 0;
    uint64_t id = strtoull(s, &end, 16);
    if (!*s || *end || errno || *s == '-' || *s == '+') {
        fprintf(stderr, "pgs: not a poison id (hex): %s\n", s);
        return X_USAGE;
    }
    int rc = pgs_storage_poison_drop(t->st, id);
    if (rc)
        return tool_fail(rc, s);
    printf("%016" PRIx64 ": dropped\n", id);
    return X_OK;
}
