/*
** conformance.h — the storage adapter conformance suite.
**
** Every adapter must pass it.  A test program for an adapter includes
** conformance.c (it is not a test_*.c, so CMake does not build it alone)
** and calls pgs_conformance_run with the adapter's URL and ops.
*/
#ifndef PGS_CONFORMANCE_H
#define PGS_CONFORMANCE_H

#include "pgs.h"

/* Runs every case against the store opened by pgs_storage_open(url, ops)
** (ops NULL: a built-in adapter).  Each case opens its own handle and
** first wipes the behaviour names it uses (conf-*), so a persistent store
** may hold other data.  Prints each case and its result on stderr; returns
** the number of failed checks (0: conformant). */
int pgs_conformance_run(const char *url, const pgs_storage_ops *ops);

#endif
