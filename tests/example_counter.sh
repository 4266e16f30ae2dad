#!/usr/bin/env bash
# examples/counter keeps its count across processes, on the default
# SQLite store and on an explicit URL; bad input gets an error, not a crash.
set -u
counter=$1
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
[ $fail -eq 0 ] && echo "example_counter: ok"
exit $fail
