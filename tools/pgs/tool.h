/*
** tool.h — the pgs command's shared parts.
**
** main.c     arguments, help, opening the store and the plugin, errors
** inspect.c  list, show, history, poison, stats (read only)
** repair.c   rollback, replace, delete, unpark, poison-drop
** dump.c     export and import
** text.c     hex dumps, line diffs, option and time rendering
** util.c     growable arrays, collected records
**
** The tool uses pgs.h alone: it works on a pgs_storage, with no runtime
** and no behaviour registered.
*/
#ifndef PGS_TOOL_H
#define PGS_TOOL_H

#include <pgs.h>

#include <stddef.h>
#include <stdint.h>

/* Exit statuses (listed in `pgs --help`). */
enum {
    X_OK = 0,
    X_FAIL = 1,     /* anything not below: storage error, no history, ... */
    X_USAGE = 2,    /* bad arguments, malformed ref */
    X_URL = 3,      /* bad or unsupported storage URL, no store there */
    X_NOTFOUND = 4, /* no such server, kept version or poison id */
    X_BUSY = 5,     /* the store is in use by another process */
    X_CORRUPT = 6,  /* a record failed its checksum, or a damaged file */
    X_EXISTS = 7    /* import would overwrite records (see --replace) */
};

/* Options a subcommand may take (command.opts). */
enum { O_PLUGIN = 1, O_BEHAVIOUR = 2, O_COUNT = 4, O_DIFF = 8, O_REPLACE = 16 };

#define ARGS_MAX 3

/* One subcommand's parsed arguments. */
typedef struct args {
    const char *pos[ARGS_MAX]; /* positional arguments */
    int npos;
    const char *plugin;        /* --plugin LIB */
    const char *behaviour;     /* --behaviour NAME */
    long count;                /* -n N; -1: all */
    const char *diff[2];       /* --diff A B */
    int replace;               /* --replace */
} args;

typedef struct tool {
    const char *url;
    pgs_storage *st;
    void *dl;                         /* the plugin's dlopen handle */
    const pgs_behaviour *const *behs; /* its behaviours */
    size_t nbehs;
} tool;

/* ---- main.c */
/* Prints "pgs: WHAT: <pgs_strerror(rc)> (<name>)" and returns the exit
** status for rc. */
int tool_fail(int rc, const char *what);
/* The exit status for a pgs status. */
int tool_status(int rc);
/* Parses ref text; on failure says so and returns X_USAGE. */
int tool_ref(const char *text, pgs_ref *ref);
/* Parses ref text and reads its record (*rec: free()).  0 or an exit status. */
int tool_get(tool *t, const char *text, pgs_ref *ref, pgs_record **rec);
/* Loads a plugin (dlopen) into t.  0 or an exit status. */
int tool_plugin(tool *t, const char *path);
/* Renders rec's state with the plugin behaviour of its name (*text:
** pgs_bytes_free).  PGS_ENOTSUP if there is none; a note on stderr if
** its format fails. */
int tool_format(tool *t, const pgs_record *rec, pgs_bytes *text);

/* ---- inspect.c, repair.c, dump.c: the subcommands; each returns an
** exit status. */
int cmd_list(tool *t, const args *a);
int cmd_show(tool *t, const args *a);
int cmd_history(tool *t, const args *a);
int cmd_poison(tool *t, const args *a);
int cmd_stats(tool *t, const args *a);
int cmd_rollback(tool *t, const args *a);
int cmd_replace(tool *t, const args *a);
int cmd_delete(tool *t, const args *a);
int cmd_unpark(tool *t, const args *a);
int cmd_poison_drop(tool *t, const args *a);
int cmd_export(tool *t, const args *a);
int cmd_import(tool *t, const args *a);

/* ---- util.c */
/* Makes room for element n of the growable array *vp (a pointer to a T *
** whose array holds *cap elements of `size` bytes).  PGS_OK or
** PGS_ENOMEM. */
int grow(void *vp, size_t *cap, size_t n, size_t size);

/* Copies of records, in the order a scan or history gave them. */
typedef struct records {
    pgs_record **v; /* each from pgs_record_copy */
    size_t n, cap;
} records;

/* A scan or history callback (arg: a records): keeps a copy of rec. */
int records_add(void *arg, const pgs_record *rec);
void records_free(records *r);

/* ---- text.c */
/* A growable list of lines (each malloc'd, NUL-terminated, no newline). */
typedef struct lines {
    char **v;
    size_t n, cap;
} lines;

int lines_push(lines *l, const char *s, size_t len);
void lines_free(lines *l);
/* Appends the hex dump of data (16 bytes a line: offset, hex, ASCII). */
int lines_hex(lines *l, const void *data, size_t len);
/* Appends text split at newlines (a final newline adds no empty line). */
int lines_text(lines *l, const char *text, size_t len);
/* Prints each line with a prefix. */
void lines_print(const lines *l, const char *prefix);
/* Prints the lines of a and b that differ ("-" a's, "+" b's), from a
** longest common subsequence; returns how many lines differ. */
size_t lines_diff(const lines *a, const lines *b);

/* "2024-05-01 12:00:00.123 UTC" into buf (at least 32 bytes). */
void text_time(int64_t ms, char *buf, size_t size);
/* The options as "lifecycle=... write=..." into buf. */
void text_opts(const pgs_server_opts *o, char *buf, size_t size);
/* "call", "cast", "info" or "?". */
const char *text_kind(int kind);
/* At most `max` bytes of data as spaced hex into buf ("..." if cut). */
void text_hex_short(const void *data, size_t len, size_t max, char *buf, size_t size);

#endif /* PGS_TOOL_H */
