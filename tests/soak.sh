#!/usr/bin/env bash
# The long randomized runs, outside the default suite: the passivation race
# test, seed after seed, for PGS_SOAK_SECONDS each (default 600), with 4 and
# then 8 client threads, on the inline memory engine, behind group commit,
# on SQLite and on LMDB; then long kill -9 runs of test_kill (found next to
# test_race), in write mode sync and async, and on LMDB.  (PostgreSQL's
# runs need a cluster: `scripts/pgtest.sh run DIR DB test_race --store
# postgres --url {url} --seconds S`.)  A failure prints the seed that
# replays it.
set -eu
race=$1
kill_test=$(dirname "$race")/test_kill
secs=${PGS_SOAK_SECONDS:-600}
if [ ! -x "$kill_test" ]; then
    echo "soak.sh: $kill_test not built (build the test_kill target)" >&2
    exit 1
fi
"$race" --seconds "$secs" --threads 4 --ops 50000
"$race" --seconds "$secs" --threads 8 --ops 50000
"$race" --seconds "$secs" --threads 8 --ops 50000 --store pipeline
"$race" --seconds "$secs" --threads 4 --ops 20000 --store sqlite
"$race" --seconds "$secs" --threads 4 --ops 20000 --store lmdb
"$kill_test" --kills 500
"$kill_test" --mode async --kills 300
"$kill_test" --engine lmdb --kills 300
