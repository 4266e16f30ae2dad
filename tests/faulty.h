/*
** faulty.h — a fault-injecting storage adapter for tests, in the spirit of
** SQLite's test6.c: it wraps the built-in memory: engine and, on demand,
** fails reads or writes (as an unreachable engine would), reports a full
** store, hands back records with a flipped state byte (corrupt media), or
** makes each batch take a while (a disk's fsync).  Unlike memory: it is
** not PGS_STORAGE_INLINE, so the runtime writes through group commit.
**
** Open it with pgs_storage_open(&st, "faulty:", &faulty_ops); the knobs are
** reached with faulty_of(st).  Tests only: it reads the storage handle's
** internals (src/internal.h).
*/
#ifndef PGS_FAULTY_H
#define PGS_FAULTY_H

#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct faulty {
    void *inner;            /* the memory: store's own handle */
    atomic_int fail_reads;  /* get returns this code when not 0 */
    atomic_int fail_writes; /* batch returns this code when not 0 */
    atomic_int corrupt_gets; /* records returned by get have a flipped state byte */
    atomic_int writes;      /* batches that reached the engine */
    atomic_int records;     /* records those batches carried */
    atomic_int delay_us;    /* each batch takes this long, like an fsync */
} faulty;

static int faulty_open(const char *url, void **state)
{
    faulty *f = calloc(1, sizeof *f);
    if (!f)
        return PGS_ENOMEM;
    int rc = pgsi_memory_ops.open("memory:", &f->inner);
    if (rc) {
        free(f);
        return rc;
    }
    *state = f;
    return PGS_OK;
}

static void faulty_close(void *state)
{
    faulty *f = state;
    pgsi_memory_ops.close(f->inner);
    free(f);
}

static int faulty_get(void *state, const pgs_ref *ref, pgs_record **out)
{
    faulty *f = state;
    int rc = atomic_load(&f->fail_reads);
    if (rc)
        return rc;
    rc = pgsi_memory_ops.get(f->inner, ref, out);
    if (rc == PGS_OK && atomic_load(&f->corrupt_gets) && (*out)->state_len)
        ((unsigned char *)(*out)->state)[0] ^= 0x40;
    return rc;
}

static int faulty_batch(void *state, const pgs_write *writes, size_t n)
{
    faulty *f = state;
    int rc = atomic_load(&f->fail_writes);
    if (rc)
        return rc;
    atomic_fetch_add(&f->writes, 1);
    atomic_fetch_add(&f->records, (int)n);
    int delay = atomic_load(&f->delay_us);
    if (delay)
        usleep((useconds_t)delay);
    return pgsi_memory_ops.batch(f->inner, writes, n);
}

static int faulty_scan(void *state, const char *name,
                       int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    faulty *f = state;
    int rc = atomic_load(&f->fail_reads);
    return rc ? rc : pgsi_memory_ops.scan(f->inner, name, fn, arg);
}

static int faulty_history(void *state, const pgs_ref *ref,
                          int (*fn)(void *arg, const pgs_record *rec), void *arg)
{
    faulty *f = state;
    int rc = atomic_load(&f->fail_reads);
    return rc ? rc : pgsi_memory_ops.history(f->inner, ref, fn, arg);
}

static const pgs_storage_ops faulty_ops __attribute__((unused)) = {
    .version = PGS_STORAGE_VERSION, .scheme = "faulty", .open = faulty_open,
    .close = faulty_close, .get = faulty_get, .batch = faulty_batch, .scan = faulty_scan,
    .history = faulty_history};

static inline faulty *faulty_of(pgs_storage *st)
{
    return st->state;
}

#endif
