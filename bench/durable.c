/*
** bench/durable.c — durable throughput of pgs on the SQLite engine,
** measured against raw SQLite doing the same durable work in the same run.
**
** Everything lives in a fresh directory DIR = D/pgs-durable-XXXXXX (D: the
** current directory, or --dir), removed at the end, so pgs and the raw
** reference share one file system and one disk.  Both use WAL with
** synchronous=FULL (the sqlite: adapter's default), so every commit ends
** with an fsync of the WAL on both sides.
**
**   1. durable{1,8,64,256}_calls: --servers (10,000) counter servers (flat
**      16-byte state {n, turns}; handle_call adds the message's value to n,
**      bumps turns and replies with n, so every message changes the stored
**      bytes: SQLite skips writing a row whose bytes did not change, which
**      would measure nothing) on sqlite:DIR/durable.db, write mode sync
**      (the default: the reply is released only once the write is
**      durable).  The servers' records are written straight into the store
**      first (see 3), and one read-only call per server activates them all
**      before timing, so the phases measure steady-state durable writes,
**      not loads.  N = 1, 8, 64, 256 client threads each call the servers
**      in turn from their own offset (i * servers / N) with value 1 for
**      --seconds (3) in all, in SLICES slices (see 2); rate = calls
**      completed / wall time from each slice's start signal until its last
**      client returned, summed over the slices.  pgs_stats_get() before and
**      after each phase gives writes and commits (storage transactions):
**      durableN_batch = writes / commits, the mean group-commit batch the
**      runtime achieved at that concurrency.  At the end the counters are
**      read back twice, through the runtime and, after pgs_close, straight
**      from the store: the increments must sum to the calls acknowledged,
**      or the program says so and exits non-zero.
**
**   2. raw_sqlite_batchB: the reference.  DIR/raw.db, a second SQLite file
**      with the adapter's own table (pgs_records, same columns, PRIMARY
**      KEY(behaviour, key) WITHOUT ROWID), the same pragmas and the same
**      rows (behaviour "counter", the same 8-byte keys, options bytes and
**      16-byte states).  One thread runs the adapter's own prepared UPDATE
**      (every column bound, version checked), the state changing every
**      time, B rows per transaction, the B rows that B clients going
**      through the rows in turn from spread offsets would write at once
**      (as pgs's clients do: consecutive rows of one transaction would
**      share a page or two and flatter the reference) (B = 1: no
**      BEGIN/COMMIT, as the adapter does for a lone write; else BEGIN
**      IMMEDIATE ... COMMIT); rate = rows / s.  B is the batch pgs
**      achieved (rounded, >= 1).  Each concurrency's pgs phase and its raw
**      reference run as SLICES alternating slices (pgs, raw, raw, pgs, ...;
**      B is fixed after the first pgs slice; a raw slice lasts as long as
**      the pgs slice before it really took, its callers' last calls
**      included), so the pair sees the same disk: fsync latency on a
**      shared VM drifts several-fold within seconds.  Then B = 1 and
**      B = 100, for scale, for --seconds each unless already measured.
**      raw_sqlite_batchB pools every measurement at B (rows / seconds).
**      Why this is fair: it is exactly the SQL, the fsyncs and the bytes
**      pgs asks SQLite for at that batch size, minus everything pgs adds
**      (runtime, checksums, record copies, thread hand-offs), and one
**      thread is SQLite's best case, its writer being single anyway.
**      durableN_vs_raw_sqlite = durableN_calls / the raw rate measured
**      beside it at the batch pgs used with N callers: 1.0 means pgs adds
**      nothing to SQLite at the batch it managed; the B = 100 rate shows
**      what a larger group commit could buy.
**
**   3. reactivations: --stored (1,000,000) more counter records are written
**      into durable.db with pgs_storage_batch (FILL_BATCH puts per
**      transaction; the options bytes are copied from a record the runtime
**      itself wrote for a throwaway server, so the runtime loads these
**      exactly like its own), the storage is closed, and a runtime is
**      opened on the URL (idle timeout 1 h: nothing passivates).  One thread
**      then calls --reactivations (100,000) distinct never-touched servers
**      in random order with a read-only message (value 0: the handler
**      returns PGS_UNCHANGED, so nothing is written); each reply must be
**      the stored value.  Rate = reactivations / s: load + turn + reply.
**      raw_sqlite_reads: a plain sqlite3 connection to the same durable.db,
**      opened beside the runtime (WAL lets it read while pgs holds its
**      lock file), runs the adapter's own prepared point SELECT by
**      (behaviour, key) for a different random sample of the same size
**      (disjoint when stored >= 2 * reactivations), on the same thread.
**      The two alternate in SLICES slices, as in 2.  Cache state: both
**      sides start with a cold SQLite page cache (pgs's four reader
**      connections are new at runtime open, 2 MB of cache each by
**      default; the raw connection is new, 2 MB) and a warm OS page cache
**      (the file was just written, and pgs_register scans every record of
**      the behaviour at open), so both measure B-tree lookups through the
**      OS cache, not the disk.  The table also shows the fill rate, the
**      time of runtime open + register with N stored, and pgs_close's
**      time with the M woken servers active.
**
** The machinery (callers, slices, the raw SQLite reference, the reads)
** is shared with bench/engines.c, in bench.h.
**
** Output: a human-readable table, then one `NAME VALUE UNIT` line per
** figure.  Options: --seconds S (3), --servers N (10000), --stored N
** (1000000), --reactivations M (100000), --dir D (.), --quick (1000
** servers, 20000 stored, 5000 reactivations, 0.5 s: a smoke test).
*/
#define BENCH_NAME "durable"
#define BENCH_STORE
#include "bench.h"
#include "pgs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct paths {
    char dir[PATH_MAX];
    char pgs_db[PATH_MAX + 32];
    char raw_db[PATH_MAX + 32];
    char url[PATH_MAX + 48];
} paths;

static int paths_make(paths *p, const char *parent)
{
    if (run_dir_make(p->dir, parent))
        return -1;
    snprintf(p->pgs_db, sizeof p->pgs_db, "%s/durable.db", p->dir);
    snprintf(p->raw_db, sizeof p->raw_db, "%s/raw.db", p->dir);
    snprintf(p->url, sizeof p->url, "sqlite:%s", p->pgs_db);
    return 0;
}

static void print_durable_table(const store_config *cfg, const paths *pa, const results *r)
{
    char real[PATH_MAX];
    printf("pgs bench/durable: %s (%s)\n", pa->url, realpath(pa->dir, real) ? real : pa->dir);
    printf("WAL, synchronous=FULL, write mode sync, %zu counter servers (16-byte state),\n"
           "default workers (%ld cores); per concurrency about %.2f s each of pgs and\n"
           "raw SQLite, in %d alternating slices\n\n", cfg->servers,
           sysconf(_SC_NPROCESSORS_ONLN), cfg->seconds, SLICES);
    print_durable_rows(r, "SQLite");
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds S] [--servers N] [--stored N] "
            "[--reactivations M] [--dir D] [--quick]\n", argv0);
    return 2;
}

static int run_all(const store_config *cfg, const paths *pa, results *res)
{
    tmpl t;
    sqlite_raw raw;
    sqlite_reader sr;
    raw_reader rd = sqlite_reader_of(&sr, pa->pgs_db);
    if (learn_template(pa->url, &t))
        return -1;
    int rc = sqlite_raw_open(&raw, pa->raw_db, &t, cfg->servers);
    if (!rc)
        rc = bench_durable(cfg, pa->url, &t, &raw.w, res);
    sqlite_raw_close(&raw);
    if (rc)
        return -1;
    print_durable_table(cfg, pa, res);
    if (bench_cold(cfg, pa->url, &t, &rd, &res->cold))
        return -1;
    print_cold_rows(&res->cold, "SQLite");
    return 0;
}

int main(int argc, char **argv)
{
    store_config cfg = {.servers = 10000, .stored = 1000000, .reactivations = 100000,
                        .seconds = 3.0, .dir = "."};
    results res = {0};
    paths pa;
    if (store_args(argc, argv, &cfg, NULL, NULL))
        return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (paths_make(&pa, cfg.dir))
        return 1;
    int rc = run_all(&cfg, &pa, &res);
    run_dir_remove(pa.dir);
    if (rc) { /* no figures: a dashboard must not record a failed run's zeros */
        fprintf(stderr, "durable: FAILED; no figures printed\n");
        return 1;
    }
    printf("\n");
    print_figures(&res, "sqlite", "");
    return 0;
}
