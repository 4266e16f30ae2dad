#!/usr/bin/env bash
# The pgs command does what `pgs --help` says, on a store cli_helper makes
# (counter servers with history, a parked one with set-aside messages, a
# second behaviour): each subcommand's output and exit status, the state
# a runtime sees after each repair, the error cases (bad URL, no store,
# malformed and missing refs, a store in use, a corrupt record, a damaged
# export), and an SQLite store exported, imported into LMDB and listed
# the same.
#
#   cli.sh PGS CLI_HELPER COUNTER_PLUGIN
set -u
pgs=$1 helper=$2 plugin=$3
dir=$(mktemp -d)
holder=
trap '[ -n "$holder" ] && kill "$holder" 2>/dev/null; rm -rf "$dir"' EXIT
fail=0
say_fail() { echo "FAIL: $*"; fail=1; }

# run STATUS CMD...: runs CMD; $out and $err get its output; the exit
# status must be STATUS.
run() {
  local want=$1; shift
  "$@" >"$dir/out" 2>"$dir/err"
  local got=$?
  out=$(cat "$dir/out") err=$(cat "$dir/err")
  [ "$got" -eq "$want" ] || say_fail "$*: exit $got, want $want; stdout: $out; stderr: $err"
}
# has REGEX [WHAT]: $out (or $WHAT's value) has a line matching REGEX.
has() { grep -Eq -- "$1" <<<"${2:-$out}" || say_fail "no /$1/ in: ${2:-$out}"; }
hasnt() { grep -Eq -- "$1" <<<"${2:-$out}" && say_fail "unexpected /$1/ in: ${2:-$out}"; }
# value REF: what a runtime reads now (a call of "get").
value() { "$helper" call "$store" "$1" get; }

store=sqlite:$dir/s.db
export PGS_STORE=$store
"$helper" make "$store" || { echo "FAIL: cli_helper make"; exit 1; }

# ---- help and usage
run 0 "$pgs" --help
has '^  history REF \[-n N\] \[--diff A B\]'
has 'pgs_plugin_behaviours'
for sub in list show history rollback replace delete unpark poison poison-drop export import stats; do
  run 0 "$pgs" "$sub" --help
  has "^usage: pgs \[--store URL\] $sub"
  run 0 "$pgs" help "$sub"
  has "^usage: pgs \[--store URL\] $sub"
done
run 2 "$pgs"
run 2 "$pgs" frobnicate
has 'no such command' "$err"
run 2 "$pgs" help frobnicate
run 2 "$pgs" show
has 'missing arguments' "$err"
run 2 "$pgs" show counter/a counter/b
run 2 "$pgs" list --frob
has 'unknown option' "$err"
run 2 "$pgs" history counter/a -n x
run 2 env -u PGS_STORE "$pgs" list
has 'no store' "$err"

# ---- list: servers only, sorted, parked marked; PGS_STORE or --store
run 0 "$pgs" list
[ "$(wc -l <<<"$out")" -eq 6 ] || say_fail "list: want a header and 5 servers: $out"
has '^cart +cart/1 +1 +0 +16 +no$'
has '^counter +counter/a +4 +0 +8 +no$'
has '^counter +counter/p +4 +0 +8 +yes$'
has '^counter +counter/x%20y +3 '
hasnt 'pgs\.'
list_sqlite_env=$out
run 0 env -u PGS_STORE "$pgs" --store "$store" list
[ "$out" = "$list_sqlite_env" ] || say_fail "list with --store differs from PGS_STORE"
run 0 "$pgs" list --behaviour cart
[ "$(wc -l <<<"$out")" -eq 2 ] && has '^cart +cart/1 ' || say_fail "list --behaviour cart: $out"

# ---- show: metadata, options, crash record, state (hex or formatted)
run 0 "$pgs" show counter/p
has '^version +4$'
has '^parked +yes$'
has 'fault_policy=park .*max_restarts=1 history=3'
has '^last crash +PGS_ECRASH at [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ UTC, on version 3$'
has '^last message call, 5 bytes: 63 72 61 73 68$'
has '^  00000000  02 00 00 00 00 00 00 00 '
run 0 "$pgs" show cart/1
has '^args +5 bytes:$'
has '^  00000000  68 65 6c 6c 6f .*\|hello\|$'
has '^crashes +0 \(never crashed\)$'
run 0 "$pgs" show counter/a --plugin "$plugin"
has '^state +8 bytes, as counter formats it:$'
has '^  value = 3$'
run 0 "$pgs" show cart/1 --plugin "$plugin" # no cart in the plugin: hex
has '^  00000000  68 65 6c 6c 6f'
has 'no behaviour cart' "$err"
run 1 "$pgs" show counter/a --plugin "$dir/nope.so"
run 4 "$pgs" show counter/zz
has 'counter/zz: no such server \(PGS_ENOTFOUND\)' "$err"
run 2 "$pgs" show noslash
has 'PGS_EREF' "$err"

# ---- history: versions newest first, -n, diffs
run 0 "$pgs" history counter/a
[ "$(sed 1d <<<"$out" | awk '{print $1}' | tr '\n' ' ')" = "4 3 2 1 " ] ||
  say_fail "history counter/a: want versions 4 3 2 1: $out"
has '^ +4 +0 +8  call 69 6e 63 72  \(current\)$'   # made by the message "incr"
has '^ +1 +0 +8  -$'                                # the start: no message
run 0 "$pgs" history counter/a -n 2
[ "$(wc -l <<<"$out")" -eq 3 ] || say_fail "history -n 2: $out"
run 0 "$pgs" history counter/a --diff 2 4
has '^-00000000  01 00 00 00'
has '^\+00000000  03 00 00 00'
run 0 "$pgs" history counter/a --diff 2 4 --plugin "$plugin"
[ "$(sed 1,2d <<<"$out")" = "$(printf -- '-value = 1\n+value = 3')" ] ||
  say_fail "formatted diff: $out"
run 0 "$pgs" history counter/a --diff 3 3
has '^\(no difference\)$'
run 4 "$pgs" history counter/a --diff 2 9
run 0 "$pgs" history counter/b
[ "$(wc -l <<<"$out")" -eq 2 ] || say_fail "history counter/b: want only the current: $out"

# ---- poison, stats
run 0 "$pgs" poison
[ "$(grep -c ' counter/p .*call PGS_ECRASH .* 5 bytes: 63 72 61 73 68$' <<<"$out")" -eq 2 ] ||
  say_fail "poison: want two set-aside calls of counter/p: $out"
id=$(sed -n 2p <<<"$out" | awk '{print $1}')
run 0 "$pgs" poison counter/a
[ "$(wc -l <<<"$out")" -eq 1 ] || say_fail "poison counter/a: want none: $out"
run 0 "$pgs" stats
has '^cart +1 +0 +'
has '^counter +4 +1 +'
has '^servers 5, parked 1, poison messages 2, crash records 1, records 8, '
run 0 "$pgs" poison-drop "$id"
has "^$id: dropped$"
run 4 "$pgs" poison-drop "$id"
run 2 "$pgs" poison-drop nothex
run 0 "$pgs" poison
[ "$(wc -l <<<"$out")" -eq 2 ] || say_fail "poison after a drop: want one left: $out"

# ---- unpark, rollback, replace, delete: what a runtime sees after each
[ "$(value counter/p)" = PGS_EPARKED ] || say_fail "counter/p not parked before unpark"
run 0 "$pgs" unpark counter/p
has '^counter/p: unparked, now version 5$'
run 0 "$pgs" unpark counter/p
has '^counter/p: not parked$'
[ "$(value counter/p)" = 2 ] || say_fail "counter/p after unpark: $(value counter/p), want 2"
run 0 "$pgs" show counter/p
has '^parked +no$'
has '^crashes +0 in the current window$'
run 0 "$pgs" rollback counter/a 2
has '^counter/a: rolled back to version 2, now version 5$'
[ "$(value counter/a)" = 1 ] || say_fail "counter/a after rollback to 2: $(value counter/a), want 1"
run 0 "$pgs" history counter/a
[ "$(sed 1d <<<"$out" | awk '{print $1}' | tr '\n' ' ')" = "5 4 3 2 1 " ] ||
  say_fail "history after rollback: want 5 4 3 2 1 kept: $out"
run 4 "$pgs" rollback counter/a 99
has 'version 99 is not kept' "$err"
run 2 "$pgs" rollback counter/a x
printf '\x2a\0\0\0\0\0\0\0' >"$dir/state"
run 0 "$pgs" replace counter/b "$dir/state"
has '^counter/b: state replaced \(8 bytes\), now version 3$'
[ "$(value counter/b)" = 42 ] || say_fail "counter/b after replace: $(value counter/b), want 42"
run 0 "$pgs" history counter/b # the replaced version is kept
[ "$(sed 1d <<<"$out" | awk '{print $1}' | tr '\n' ' ')" = "3 2 " ] || say_fail "history after replace: $out"
run 1 "$pgs" replace counter/b "$dir/missing"
run 4 "$pgs" replace counter/zz "$dir/state"
run 0 "$pgs" delete 'counter/x%20y'
has '^counter/x%20y: deleted$'
run 4 "$pgs" show 'counter/x%20y'
run 4 "$pgs" delete 'counter/x%20y'
[ "$(value 'counter/x%20y')" = PGS_ENOTFOUND ] || say_fail "a runtime still finds counter/x y"

# ---- export from SQLite, import into LMDB: the same list and history
run 0 "$pgs" list
list_sqlite=$out
run 0 "$pgs" history counter/a
hist_sqlite=$out
run 0 "$pgs" export "$dir/store.pgs"
has '^exported 15 records \(9 of them kept versions\) to '
lmdb=lmdb:$dir/l
run 0 "$pgs" --store "$lmdb" import "$dir/store.pgs"
has '^imported 6 records and 9 kept versions into '
run 0 "$pgs" --store "$lmdb" list
[ "$out" = "$list_sqlite" ] || say_fail "list after import differs: $out; want: $list_sqlite"
run 0 "$pgs" --store "$lmdb" history counter/a
[ "$out" = "$hist_sqlite" ] || say_fail "history after import differs: $out"
run 0 "$pgs" --store "$lmdb" poison
[ "$(wc -l <<<"$out")" -eq 2 ] || say_fail "poison after import: $out"
[ "$("$helper" call "$lmdb" counter/b get)" = 42 ] || say_fail "counter/b on LMDB: want 42"
run 7 "$pgs" --store "$lmdb" import "$dir/store.pgs"
has 'exist.*nothing written' "$err"
run 0 "$pgs" --store "$lmdb" import "$dir/store.pgs" --replace
run 0 "$pgs" --store "$lmdb" list
[ "$out" = "$list_sqlite" ] || say_fail "list after import --replace differs"
# A damaged or truncated file is refused whole.
cp "$dir/store.pgs" "$dir/bad.pgs"
size=$(stat -c %s "$dir/bad.pgs")
printf 'X' | dd of="$dir/bad.pgs" bs=1 seek=$((size - 30)) conv=notrunc 2>/dev/null
run 6 "$pgs" --store "memory:" import "$dir/bad.pgs"
has 'PGS_ECORRUPT' "$err"
head -c $((size - 9)) "$dir/store.pgs" >"$dir/short.pgs"
run 6 "$pgs" --store "lmdb:$dir/l2" import "$dir/short.pgs"
run 0 "$pgs" --store "lmdb:$dir/l2" list
[ "$(wc -l <<<"$out")" -eq 1 ] || say_fail "a refused import wrote records: $out"
echo nonsense >"$dir/junk.pgs"
run 6 "$pgs" --store "memory:" import "$dir/junk.pgs"
has 'not a pgs export file' "$err"

# ---- errors: bad URL, no store, store in use, corrupt record
run 3 "$pgs" --store nope:x list
has 'PGS_EURL' "$err"
run 3 "$pgs" --store "sqlite:$dir/absent.db" list
has 'no store at' "$err"
[ -e "$dir/absent.db" ] && say_fail "list created a store"
"$helper" hold "$store" >"$dir/hold" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q ready "$dir/hold" && break; sleep 0.1; done
run 5 "$pgs" list
has 'in use by another process' "$err"
kill "$holder"; wait "$holder" 2>/dev/null; holder=
run 0 "$pgs" list
if command -v sqlite3 >/dev/null; then
  sqlite3 "$dir/s.db" "UPDATE pgs_records SET state = X'0900000000000000'
                       WHERE behaviour = 'counter' AND key = X'62'" ||
    say_fail "sqlite3 could not damage the record"
  run 6 "$pgs" show counter/b
  has 'counter/b: corrupt stored record .*PGS_ECORRUPT' "$err"
  run 6 "$pgs" list
  run 6 "$pgs" export "$dir/after.pgs"
  [ -e "$dir/after.pgs" ] && say_fail "a failed export left its file"
  run 0 "$pgs" show counter/a # the others still read
else
  echo "cli: no sqlite3 CLI: the corrupt record case is skipped"
fi

[ $fail -eq 0 ] && echo "cli: ok"
exit $fail
