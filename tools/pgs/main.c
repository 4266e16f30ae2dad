/*
** pgs — inspect and repair a pgs store from the command line.
**
**   pgs [--store URL] COMMAND [ARGS]      (URL also from $PGS_STORE)
**
** The tool opens the store with pgs_storage_open and works on its records
** directly: no runtime runs, no behaviour is registered.  SQLite and LMDB
** stores admit one process at a time, so it fails with exit status 5 while
** a program has the store open; on PostgreSQL a running server meets the
** tool's writes as version conflicts and reloads.
**
** This file: the command table and help, argument parsing, opening the
** store and the plugin, and the mapping of pgs errors to exit statuses.
*/
#include "tool.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { STORE_EXISTING = 1, STORE_CREATE = 2 };

typedef struct command {
    const char *name;
    int (*run)(tool *t, const args *a);
    int min_pos, max_pos;
    unsigned opts;  /* O_* it accepts */
    int store;      /* STORE_EXISTING or STORE_CREATE */
    const char *usage;
    const char *help;
} command;

static const command commands[] = {
    {"list", cmd_list, 0, 0, O_BEHAVIOUR, STORE_EXISTING, "list [--behaviour NAME]",
     "Lists the servers (pgs's own pgs.* records left out), sorted by ref:\n"
     "behaviour, ref, stored version, schema version, state bytes and whether\n"
     "it is parked.  Records carry no write time, so none is shown."},
    {"show", cmd_show, 1, 1, O_PLUGIN, STORE_EXISTING, "show REF [--plugin LIB]",
     "Shows one server: version, schema, start arguments, options (decoded),\n"
     "crash record (crashes in the current window, last error and time, the\n"
     "crashing message) and the state, as a hex dump or, with --plugin, as\n"
     "the behaviour's format callback renders it."},
    {"history", cmd_history, 1, 1, O_PLUGIN | O_COUNT | O_DIFF, STORE_EXISTING,
     "history REF [-n N] [--diff A B] [--plugin LIB]",
     "Lists the current and the kept older versions of REF, newest first\n"
     "(-n N: the newest N).  --diff A B prints the lines that differ between\n"
     "versions A and B (current or kept): hex dump lines, or with --plugin\n"
     "the formatted text; '-' marks A's lines, '+' B's."},
    {"rollback", cmd_rollback, 2, 2, 0, STORE_EXISTING, "rollback REF VERSION",
     "Makes kept version VERSION the state again, as a new version (the\n"
     "history is kept, the replaced version joins it), unparks the server\n"
     "and starts its crash count again."},
    {"replace", cmd_replace, 2, 2, 0, STORE_EXISTING, "replace REF FILE",
     "Replaces the state with the bytes of FILE ('-': standard input), as a\n"
     "new version at the same schema version (the replaced version is kept\n"
     "in the history), unparks the server and starts its crash count again.\n"
     "The bytes must be what the behaviour's decode reads."},
    {"delete", cmd_delete, 1, 1, 0, STORE_EXISTING, "delete REF",
     "Deletes the server's record, its history and its crash record."},
    {"unpark", cmd_unpark, 1, 1, 0, STORE_EXISTING, "unpark REF",
     "Clears the parked flag (a new version with the same state) and starts\n"
     "the crash count again.  A server that is not parked is left alone."},
    {"poison", cmd_poison, 0, 1, 0, STORE_EXISTING, "poison [REF]",
     "Lists the set-aside (poison) messages, of REF or of every server:\n"
     "id, server, kind, error, attempts, when, the state version it met and\n"
     "the message's first bytes."},
    {"poison-drop", cmd_poison_drop, 1, 1, 0, STORE_EXISTING, "poison-drop ID",
     "Removes set-aside message ID (hex, as `poison` prints it)."},
    {"export", cmd_export, 1, 1, 0, STORE_EXISTING, "export FILE",
     "Writes every record of the store (pgs's own records too) and its kept\n"
     "versions to FILE ('-': standard output) in a portable format that\n"
     "import reads into any engine.  Each record keeps its checksum."},
    {"import", cmd_import, 1, 1, O_REPLACE, STORE_CREATE, "import FILE [--replace]",
     "Reads a file written by export into the store (created if need be).\n"
     "Every record is verified first, and nothing is written if one fails or\n"
     "if a record exists in the store already, unless --replace (which\n"
     "deletes each such record and its history before writing the file's)."},
    {"stats", cmd_stats, 0, 0, 0, STORE_EXISTING, "stats",
     "Counts servers, parked servers and bytes (start arguments, options and\n"
     "state) per behaviour, set-aside messages, crash records, and the\n"
     "store's total."},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ------------------------------------------------------------------------
** Help.
*/
static void help_tool(FILE *f)
{
    fprintf(f, "usage: pgs [--store URL] COMMAND [ARGS]\n"
               "       pgs help COMMAND | pgs COMMAND --help\n\n"
               "Inspects and repairs a pgs store (URL, or $PGS_STORE): sqlite:PATH,\n"
               "lmdb:DIR, postgresql://..., memory:.  Refs are in text form, e.g.\n"
               "counter/42 (key bytes outside [A-Za-z0-9._~-] written %%XX).\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %s\n", commands[i].usage);
    fprintf(f, "\nA plugin (--plugin LIB) is a shared object exporting\n"
               "  const pgs_behaviour *const *pgs_plugin_behaviours(size_t *n);\n"
               "whose behaviours' format callbacks render states as text.\n\n"
               "exit status: 0 ok, 1 failure, 2 usage or malformed ref, 3 bad URL or\n"
               "no store there, 4 no such server, version or poison id, 5 store in use\n"
               "by another process, 6 corrupt record or file, 7 import would overwrite\n");
}

static int help_command(const command *c, FILE *f)
{
    fprintf(f, "usage: pgs [--store URL] %s\n\n%s\n", c->usage, c->help);
    return f == stdout ? X_OK : X_USAGE;
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int usage_error(const command *c, const char *what, const char *arg)
{
    fprintf(stderr, "pgs: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    if (c)
        fprintf(stderr, "usage: pgs [--store URL] %s\n", c->usage);
    else
        fprintf(stderr, "try: pgs --help\n");
    return X_USAGE;
}

/* ------------------------------------------------------------------------
** Errors.
*/
int tool_status(int rc)
{
    switch (rc) {
    case PGS_OK: return X_OK;
    case PGS_EREF: case PGS_EINVAL: return X_USAGE;
    case PGS_EURL: return X_URL;
    case PGS_ENOTFOUND: return X_NOTFOUND;
    case PGS_EBUSY: return X_BUSY;
    case PGS_ECORRUPT: return X_CORRUPT;
    case PGS_EEXIST: return X_EXISTS;
    default: return X_FAIL;
    }
}

int tool_fail(int rc, const char *what)
{
    fprintf(stderr, "pgs: %s: %s (%s)\n", what, pgs_strerror(rc), pgs_errname(rc));
    return tool_status(rc);
}

int tool_ref(const char *text, pgs_ref *ref)
{
    int rc = pgs_ref_parse(ref, text, (size_t)-1);
    return rc ? tool_fail(rc, text) : X_OK;
}

int tool_get(tool *t, const char *text, pgs_ref *ref, pgs_record **rec)
{
    int x = tool_ref(text, ref);
    if (x)
        return x;
    int rc = pgs_storage_get(t->st, ref, rec);
    return rc ? tool_fail(rc, text) : X_OK;
}

/* ------------------------------------------------------------------------
** Arguments: options anywhere after the command, the rest positional.
*/
static int parse_number(const command *c, const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0)
        return usage_error(c, "not a count", s);
    *out = v;
    return X_OK;
}

/* The value(s) of option argv[*i] (which takes `n` of them). */
static int option_values(const command *c, int argc, char **argv, int *i, int n)
{
    if (*i + n >= argc)
        return usage_error(c, "option needs a value", argv[*i]);
    *i += n;
    return X_OK;
}

static int parse_option(const command *c, int argc, char **argv, int *i, args *a)
{
    const char *o = argv[*i];
    int x;
    if ((c->opts & O_PLUGIN) && strcmp(o, "--plugin") == 0) {
        if (!(x = option_values(c, argc, argv, i, 1)))
            a->plugin = argv[*i];
    } else if ((c->opts & O_BEHAVIOUR) && strcmp(o, "--behaviour") == 0) {
        if (!(x = option_values(c, argc, argv, i, 1)))
            a->behaviour = argv[*i];
    } else if ((c->opts & O_COUNT) && strcmp(o, "-n") == 0) {
        if (!(x = option_values(c, argc, argv, i, 1)))
            x = parse_number(c, argv[*i], &a->count);
    } else if ((c->opts & O_DIFF) && strcmp(o, "--diff") == 0) {
        if (!(x = option_values(c, argc, argv, i, 2)))
            a->diff[0] = argv[*i - 1], a->diff[1] = argv[*i];
    } else if ((c->opts & O_REPLACE) && strcmp(o, "--replace") == 0) {
        a->replace = 1;
        x = X_OK;
    } else {
        x = usage_error(c, "unknown option", o);
    }
    return x;
}

/* Fills *a from argv (after the command's name).  "-" alone is an
** argument (standard input or output), "--" ends the options. */
static int parse_args(const command *c, int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->count = -1;
    int opts_done = 0;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        int x = X_OK;
        if (!opts_done && strcmp(s, "--") == 0)
            opts_done = 1;
        else if (!opts_done && s[0] == '-' && s[1])
            x = parse_option(c, argc, argv, &i, a);
        else if (a->npos == c->max_pos)
            x = usage_error(c, "too many arguments", s);
        else
            a->pos[a->npos++] = s;
        if (x)
            return x;
    }
    return a->npos < c->min_pos ? usage_error(c, "missing arguments", NULL) : X_OK;
}

/* ------------------------------------------------------------------------
** The store.
*/

/* The path of a sqlite: or lmdb: URL (default as the engine's), or NULL
** for other engines: the tool refuses to create a store by mistake. */
static char *local_path(const char *url)
{
    const char *p = strncmp(url, "sqlite:", 7) == 0 ? url + 7
                    : strncmp(url, "lmdb:", 5) == 0 ? url + 5
                                                     : NULL;
    if (!p)
        return NULL;
    size_t n = strcspn(p, "?");
    if (n == 0)
        return strdup(url[0] == 's' ? "pgs.db" : "pgs.lmdb");
    char *path = malloc(n + 1);
    if (path) {
        memcpy(path, p, n);
        path[n] = '\0';
    }
    return path;
}

static int open_store(tool *t, int mode)
{
    if (!t->url || !*t->url)
        return usage_error(NULL, "no store: give --store URL or set PGS_STORE", NULL);
    char *path = mode == STORE_EXISTING ? local_path(t->url) : NULL;
    struct stat sb;
    if (path && stat(path, &sb) != 0) {
        fprintf(stderr, "pgs: %s: no store at %s\n", t->url, path);
        free(path);
        return X_URL;
    }
    free(path);
    int rc = pgs_storage_open(&t->st, t->url, NULL);
    if (rc == PGS_EBUSY) {
        fprintf(stderr, "pgs: %s: the store is in use by another process (%s)\n", t->url,
                pgs_errname(rc));
        return X_BUSY;
    }
    return rc ? tool_fail(rc, t->url) : X_OK;
}

/* ------------------------------------------------------------------------
** Plugins.
*/
int tool_plugin(tool *t, const char *path)
{
    if (!path)
        return X_OK;
    /* dlopen searches the library path for a bare name: "./" makes a
    ** file in the working directory mean that file. */
    char *full = strchr(path, '/') ? strdup(path) : malloc(strlen(path) + 3);
    if (full && !strchr(path, '/'))
        sprintf(full, "./%s", path);
    t->dl = full ? dlopen(full, RTLD_NOW | RTLD_LOCAL) : NULL;
    free(full);
    if (!t->dl) {
        fprintf(stderr, "pgs: plugin %s: %s\n", path, dlerror());
        return X_FAIL;
    }
    pgs_plugin_fn fn;
    *(void **)&fn = dlsym(t->dl, PGS_PLUGIN_SYMBOL); /* POSIX's way to a function */
    t->behs = fn ? fn(&t->nbehs) : NULL;
    if (!t->behs) {
        fprintf(stderr, "pgs: plugin %s: no %s()\n", path, PGS_PLUGIN_SYMBOL);
        return X_FAIL;
    }
    return X_OK;
}

int tool_format(tool *t, const pgs_record *rec, pgs_bytes *text)
{
    const pgs_behaviour *b = NULL;
    for (size_t i = 0; i < t->nbehs && !b; i++)
        if (t->behs[i] && t->behs[i]->name && strcmp(t->behs[i]->name, rec->ref.name) == 0)
            b = t->behs[i];
    if (!b) {
        if (t->dl)
            fprintf(stderr, "pgs: note: the plugin has no behaviour %s: hex shown\n",
                    rec->ref.name);
        return PGS_ENOTSUP;
    }
    int rc = pgs_behaviour_format(b, rec->state, rec->state_len, rec->schema_version, text);
    if (rc)
        fprintf(stderr, "pgs: note: %s cannot format version %llu: %s: hex shown\n",
                rec->ref.name, (unsigned long long)rec->version, pgs_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------------------
** main.
*/
static int run(tool *t, const command *c, int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return help_command(c, stdout);
    args a;
    int x = parse_args(c, argc, argv, &a);
    if (!x)
        x = open_store(t, c->store);
    if (!x)
        x = tool_plugin(t, a.plugin);
    if (!x)
        x = c->run(t, &a);
    if (fflush(stdout) != 0 && !x) {
        perror("pgs: standard output");
        x = X_FAIL;
    }
    return x;
}

static int help(int argc, char **argv)
{
    if (argc == 0) {
        help_tool(stdout);
        return X_OK;
    }
    const command *c = find_command(argv[0]);
    return c ? help_command(c, stdout) : usage_error(NULL, "no such command", argv[0]);
}

int main(int argc, char **argv)
{
    tool t = {.url = getenv("PGS_STORE")};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--store") == 0 && i + 1 == argc)
            return usage_error(NULL, "option needs a value", argv[i]);
        else if (strcmp(argv[i], "--store") == 0)
            t.url = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return help(0, NULL);
        else if (strcmp(argv[i], "--version") == 0)
            return printf("pgs %s\n", PGS_VERSION_STRING) < 0;
        else
            return usage_error(NULL, "unknown option", argv[i]);
    }
    if (i == argc) {
        help_tool(stderr);
        return X_USAGE;
    }
    if (strcmp(argv[i], "help") == 0)
        return help(argc - i - 1, argv + i + 1);
    const command *c = find_command(argv[i]);
    if (!c)
        return usage_error(NULL, "no such command", argv[i]);
    int x = run(&t, c, argc - i - 1, argv + i + 1);
    pgs_storage_close(t.st);
    if (t.dl)
        dlclose(t.dl);
    return x;
}
