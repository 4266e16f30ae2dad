#!/usr/bin/env bash
# The examples work as the README says: counter keeps its count across
# processes, on the default SQLite store and on an explicit URL, and bad
# input gets an error, not a crash; the tour passes its own checks, twice
# on one store (the second run finds the accounts it left).
set -u
counter=$1/counter
tour=$1/tour
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
fail=0
expect() { # want, command...
  local want=$1; shift
  local got
  got=$("$@" 2>&1)
  if [ "$got" != "$want" ]; then echo "FAIL: $*: got '$got', want '$want'"; fail=1; fi
}
expect 1 "$counter" incr 42
expect 2 "$counter" incr 42
expect 2 "$counter" get 42
expect 0 "$counter" get 43
expect 1 "$counter" --store "sqlite:$dir/other.db" incr 42
expect 3 "$counter" incr 42
[ -f counter.db ] || { echo "FAIL: no counter.db in the working directory"; fail=1; }
"$counter" --store nope: incr 1 >/dev/null 2>&1 && { echo "FAIL: bad URL accepted"; fail=1; }
"$counter" frobnicate 1 >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: bad command not refused with usage"; fail=1; }
for run in 1 2; do
  "$tour" --store "sqlite:$dir/tour.db" --accounts 300 >tour.out 2>&1 ||
    { echo "FAIL: tour run $run:"; cat tour.out; fail=1; }
done
[ $fail -eq 0 ] && echo "examples: ok"
exit $fail
