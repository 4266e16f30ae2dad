#!/usr/bin/env bash
# model/check.sh WORKDIR — checks model/activation.pml with spin.
#
# Builds each verifier in its own directory under WORKDIR (spin -a, then
# gcc pan.c) and runs it.  Exits non-zero if anything goes wrong:
#
#   1. The model, exhaustively (exact state storage: -DCOLLAPSE, no
#      bitstate hashing), must show no error, and the search must be
#      complete (no depth-limit truncation, no memory bound reached):
#        base      the defaults: 2 callers x 2 calls, 2 casts, one timeout
#                  per caller, casts may skip their write (NOPERSIST), one
#                  handler crash, worker batch 1 (releases after each
#                  message)
#        batch     worker batch 64 (PGSI_BATCH: runs the whole mailbox), two
#                  timeouts per caller
#        progress  -DNP, pan -l: no cycle at all, i.e. every execution
#                  terminates and so every message is eventually handled
#                  (without crashes, to keep the nested search short)
#   2. Each mutant (a plausible bug, #ifdef MUT_x in the model) must make
#      spin report an error; a mutant that passes fails this script.
#   3. Each scenario probe (-DREACH=n) must be reached, so the scenarios
#      the properties rely on (hand-off, take-over, passivation racing a
#      message, re-creation, ...) are really exercised.
#
# Prints one line per run (states stored, errors, time) and a final count.
# A failing run leaves its trail in WORKDIR/NAME; the line says how to
# replay it (the model printf's one line per step).  To see how a mutant
# is caught: cd WORKDIR/mut-X && spin -DMUT_X -t -k activation.pml.trail \
# model/activation.pml
# SPIN_DEEP=1 adds two bigger configurations (a few minutes, not for CI);
# SPIN_JOBS=n runs n verifiers at once (default: the number of cores, at
# most 4).
set -u

usage() { echo "usage: bash model/check.sh WORKDIR" >&2; exit 2; }
[ $# -eq 1 ] && [ -n "$1" ] || usage

here=$(cd "$(dirname "$0")" && pwd)
model=$here/activation.pml
work=$1
CC=${CC:-gcc}
DEPTH=100000          # pan -m: max search depth (the model needs < 1000)
MEMLIM=6144           # MB; reaching it stops the search, which then fails

if ! command -v spin >/dev/null 2>&1; then
  echo "check.sh: spin not found (Debian/Ubuntu: apt-get install spin)" >&2
  exit 2
fi
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "check.sh: C compiler '$CC' not found" >&2
  exit 2
fi
[ -f "$model" ] || { echo "check.sh: $model not found" >&2; exit 2; }
mkdir -p "$work" || exit 2
work=$(cd "$work" && pwd)

JOBS=${SPIN_JOBS:-$(nproc 2>/dev/null || echo 2)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=2
[ "$JOBS" -le 4 ] || JOBS=4
TIMEOUT=""
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout 540"

echo "spin model: $(spin -V 2>&1 | head -1); $model; $JOBS at once"

# run NAME EXPECT OPT HASHBITS SPIN-FLAGS...
#   EXPECT: clean | np-clean (must pass exhaustively), error | np-error
#   (must fail), reach:N (must reach probe N).  OPT: the C optimisation.
# Writes WORKDIR/NAME/result ("ok" or "FAIL") and prints one line.
run() (
  name=$1 expect=$2 opt=$3 wbits=$4
  shift 4
  d=$work/$name
  rm -rf "$d" && mkdir -p "$d" && cd "$d" || exit 1
  t0=$(date +%s)
  report() { # status, text
    echo "$1" >result
    printf '%-22s %-4s %s\n' "$name" "$1" "$2"
  }
  if ! spin "$@" -a "$model" >spin.log 2>&1 || [ ! -f pan.c ]; then
    report FAIL "spin -a $*: $(head -3 spin.log | tr '\n' ' ')"
    exit 0
  fi
  cflags="-DSAFETY" panflags=""
  case $expect in np-*) cflags="-DNP" panflags="-l" ;; esac
  if ! $CC $opt $cflags -DCOLLAPSE -DMEMLIM=$MEMLIM -w -o pan pan.c >cc.log 2>&1; then
    report FAIL "$CC pan.c: $(head -3 cc.log | tr '\n' ' ')"
    exit 0
  fi
  $TIMEOUT ./pan -m$DEPTH -w"$wbits" $panflags >pan.log 2>&1
  rc=$?
  t1=$(date +%s)

  errors=$(sed -nE 's/.*errors: ([0-9]+).*/\1/p' pan.log | tail -1)
  stored=$(sed -nE 's/^ *([0-9.e+]+) states, stored.*/\1/p' pan.log | tail -1)
  trans=$(sed -nE 's/^ *([0-9.e+]+) transitions.*/\1/p' pan.log | tail -1)
  depth=$(sed -nE 's/.*depth reached ([0-9]+).*/\1/p' pan.log | tail -1)
  secs=$(sed -nE 's/^pan: elapsed time ([0-9.e+]+) seconds.*/\1/p' pan.log | tail -1)
  mem=$(sed -nE 's/^ *([0-9.]+)\s+total actual memory usage.*/\1/p' pan.log | tail -1)
  what=$(grep -m1 -E '^pan:1: ' pan.log | sed -E 's/^pan:1: //; s/ \(at depth [0-9]+\)//')
  incomplete=""
  grep -qiE 'max search depth too small|out of memory|MEMLIM|Search not completed' pan.log &&
    incomplete=yes
  stats="${stored:-?} states, ${trans:-?} transitions, depth ${depth:-?}, ${mem:-?} MB, search ${secs:-?} s (with build $((t1 - t0)) s)"

  if [ -z "$errors" ]; then
    report FAIL "pan did not finish (exit $rc): $(tail -3 pan.log | tr '\n' ' ')"
    exit 0
  fi
  case $expect in
    clean | np-clean)
      if [ "$errors" != 0 ]; then
        report FAIL "$errors error(s): $what — see $d/pan.log; replay: (cd $d && spin $* -t -k activation.pml.trail $model)"
      elif [ -n "$incomplete" ] || [ "$rc" != 0 ]; then
        report FAIL "search incomplete (exit $rc): $(grep -iE 'depth too small|memory|MEMLIM|not completed' pan.log | head -2 | tr '\n' ' ')"
      else
        report ok "errors 0, exhaustive: $stats"
      fi ;;
    error | np-error)
      if [ "$errors" != 0 ]; then
        report ok "caught: $what (after ${stored:-?} states, ${secs:-?} s)"
      else
        report FAIL "mutant NOT caught: no error in $stats"
      fi ;;
    reach:*)
      n=${expect#reach:}
      if [ "$errors" != 0 ] && echo "$what" | grep -qF "($n!=$n)"; then
        report ok "reached (after ${stored:-?} states, depth ${depth:-?})"
      elif [ "$errors" != 0 ]; then
        report FAIL "another error came first: $what — see $d/pan.log"
      else
        report FAIL "probe $n NOT reached: $stats"
      fi ;;
  esac
)

pids=()
launch() {
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n 2>/dev/null || sleep 0.2; done
  run "$@" &
  pids+=($!)
}

names=()
add() { names+=("$1"); launch "$@"; }

# The model itself (exhaustive; the big ones first).
add batch         clean    -O2 25  -DBATCH=64 -DMAXTMO=2
add base          clean    -O2 25
add progress      np-clean -O2 24  -DCRASHES=0
if [ "${SPIN_DEEP:-0}" = 1 ]; then
  add deep-n3      clean   -O2 26  -DN=3 -DCRASHES=0
  add deep-crash2  clean   -O2 26  -DCRASHES=2 -DNS=4 -DBATCH=2
fi

# Mutants: each must be caught.
for m in REMOVE_NONEMPTY DIRECT_SCHEDULED NO_WAKE NO_SCHEDULE FREE_LINKED \
         NO_DETACH NO_DIRTY_WRITE; do
  add "mut-$m" error -O0 22 "-DMUT_$m"
done
add mut-REQUEUE_TAKEN np-error -O0 22 -DMUT_REQUEUE_TAKEN -DCRASHES=0

# Scenario probes: each must be reached.
for n in $(seq 1 14); do
  add "reach-$n" "reach:$n" -O0 22 "-DREACH=$n"
done

wait

ok=0 bad=0
for n in "${names[@]}"; do
  if [ "$(cat "$work/$n/result" 2>/dev/null)" = ok ]; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    [ -f "$work/$n/result" ] || printf '%-22s %-4s %s\n' "$n" FAIL "no result"
  fi
done
echo "spin model: $ok runs ok, $bad failed"
[ "$bad" -eq 0 ]
