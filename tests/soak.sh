#!/usr/bin/env bash
# The long randomized runs, outside the default suite: the passivation race
# test, seed after seed, for PGS_SOAK_SECONDS each (default 600), with 4 and
# then 8 client threads, on the inline memory engine, behind group commit,
# and on SQLite.  A failure prints the seed that replays it.
set -eu
race=$1
secs=${PGS_SOAK_SECONDS:-600}
"$race" --seconds "$secs" --threads 4 --ops 50000
"$race" --seconds "$secs" --threads 8 --ops 50000
"$race" --seconds "$secs" --threads 8 --ops 50000 --store pipeline
"$race" --seconds "$secs" --threads 4 --ops 20000 --store sqlite
