#!/usr/bin/env bash
# The long randomized runs, outside the default suite: the passivation race
# test, seed after seed, for PGS_SOAK_SECONDS each (default 600), with 4 and
# then 8 client threads.  A failure prints the seed that replays it.
set -eu
race=$1
secs=${PGS_SOAK_SECONDS:-600}
"$race" --seconds "$secs" --threads 4 --ops 50000
"$race" --seconds "$secs" --threads 8 --ops 50000
