#!/usr/bin/env bash
# model/check.sh WORKDIR — checks model/activation.pml with spin.
#
# Builds each verifier in its own directory under WORKDIR (spin -a, then
# gcc pan.c) and runs it.  Exits non-zero if anything goes wrong:
#
#   1. The model, exhaustively (exact state storage: -DCOLLAPSE, no
#      bitstate hashing), must show no error, and the search must be
#      complete (no depth-limit truncation, no memory bound reached):
#        base      the defaults: 2 callers x 1 call, 1 cast, the worker
#                  (batch 1: it releases after each message), the timer,
#                  the committer; one timeout per caller, the cast may
#                  skip its write (NOPERSIST), one handler crash; the
#                  write pipeline (group commit and output gate)
#        serial    1 caller x 2 calls and 2 casts, worker batch 64 (it
#                  runs the whole mailbox): a caller's next call and the
#                  worker's casts while earlier writes are in flight,
#                  turns of one owner coalescing into one pending write,
#                  a dirty state written by the passivation behind
#                  earlier writes; crash and timeout as in base
#        calls     2 callers x 2 calls, no cast, no crash, no timeout:
#                  callers racing over several calls each (hand-offs and
#                  take-overs of later calls, callers committing each
#                  other's writes)
#        progress  base without the crash, -DNP, pan -l: no cycle at all,
#                  i.e. every execution terminates, so every message is
#                  eventually handled and every output released (and no
#                  committer wake-up is lost)
#        inline    a PGS_STORAGE_INLINE engine (memory:), 2 callers x 2
#                  calls and 2 casts: writes inside the turn, the path the
#                  model checked before the pipeline
#   2. Each mutant (a plausible bug, #ifdef MUT_x in the model) must make
#      spin report an error; a mutant that passes fails this script.
#   3. Every scenario probe (reached(n) in the model) must be reached in
#      at least one of the runs of 1, so the scenarios the properties rely
#      on (hand-off, a message racing a passivation, a reload waiting for
#      a write in flight, batches overlapping, ...) are really exercised.
#      pan prints the probes it reached (c_code, outside the state
#      vector); SPIN_REACH=1 also runs each probe alone with -DREACH=n
#      (which turns it into a failing assertion), as a trail to read.
#
# Prints one line per run (states stored, errors, memory, time) and a
# final count.  A failing run leaves its trail in WORKDIR/NAME; the line
# says how to replay it (the model printf's one line per step).  To see
# how a mutant is caught: cd WORKDIR/mut-X && spin -DMUT_X -t -k
# activation.pml.trail model/activation.pml
# Budget: about 3 minutes on 2 cores, under 2 GB in all (MEMLIM per run
# times SPIN_JOBS).  SPIN_DEEP=1 adds three bigger configurations (2 x 2
# calls with timeouts; 2 casts; two committer threads as in the code:
# about 2 minutes and 1.2-2 GB each, not for CI); SPIN_JOBS=n runs n
# verifiers at once (default: the number of cores, at most 4).
set -u

usage() { echo "usage: bash model/check.sh WORKDIR" >&2; exit 2; }
[ $# -eq 1 ] && [ -n "$1" ] || usage

here=$(cd "$(dirname "$0")" && pwd)
model=$here/activation.pml
work=$1
CC=${CC:-gcc}
DEPTH=100000          # pan -m: max search depth (the model needs < 2000)
MEMLIM=${SPIN_MEMLIM:-1000}   # MB per run; reaching it stops the search, which then fails
NPROBES=30            # reached(1) .. reached(NPROBES) must all be reached
# -ftree-pre and -fgcse take most of gcc's time on pan.c and buy little.
OPT_BIG="-O2 -fno-tree-pre -fno-gcse"
OPT_SMALL="-O0"       # mutants stop early: compile fast

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

# run NAME EXPECT OPT HASHBITS MEMLIM SPIN-FLAGS...
#   EXPECT: clean | np-clean (must pass exhaustively), error | np-error
#   (must fail), reach:N (must reach probe N).  OPT: the C optimisation.
# Writes WORKDIR/NAME/result ("ok" or "FAIL") and prints one line.
run() (
  name=$1 expect=$2 opt=$3 wbits=$4 memlim=$5
  shift 5
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
  if ! $CC $opt $cflags -DCOLLAPSE -DMEMLIM=$memlim -w -o pan pan.c >cc.log 2>&1; then
    report FAIL "$CC pan.c: $(head -3 cc.log | tr '\n' ' ')"
    exit 0
  fi
  t1=$(date +%s)
  $TIMEOUT ./pan -m$DEPTH -w"$wbits" $panflags >pan.log 2>&1
  rc=$?
  t2=$(date +%s)

  errors=$(sed -nE 's/.*errors: ([0-9]+).*/\1/p' pan.log | tail -1)
  stored=$(sed -nE 's/^ *([0-9.e+]+) states, stored.*/\1/p' pan.log | tail -1)
  trans=$(sed -nE 's/^ *([0-9.e+]+) transitions.*/\1/p' pan.log | tail -1)
  depth=$(sed -nE 's/.*depth reached ([0-9]+).*/\1/p' pan.log | tail -1)
  secs=$(sed -nE 's/^pan: elapsed time ([0-9.e+]+) seconds.*/\1/p' pan.log | tail -1)
  mem=$(sed -nE 's/^ *([0-9.]+)\s+total actual memory usage.*/\1/p' pan.log | tail -1)
  what=$(grep -m1 -E '^pan:1: ' pan.log | sed -E 's/^pan:1: //; s/ \(at depth [0-9]+\)//')
  sed -nE 's/^probes reached://p' pan.log | tail -1 >probes
  incomplete=""
  grep -qiE 'max search depth too small|out of memory|MEMLIM|Search not completed' pan.log &&
    incomplete=yes
  stats="${stored:-?} states, ${trans:-?} transitions, depth ${depth:-?}, ${mem:-?} MB, search ${secs:-?} s (build $((t1 - t0)) s)"

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
clean=()
add() { names+=("$1"); launch "$@"; }

# The model itself (exhaustive; the longest first).
add progress      np-clean "$OPT_BIG" 24 "$MEMLIM" -DCRASHES=0
add inline        clean    "$OPT_BIG" 24 "$MEMLIM" -DINLINE -DNCALL=2 -DNCAST=2
add base          clean    "$OPT_BIG" 24 "$MEMLIM"
add serial        clean    "$OPT_BIG" 24 "$MEMLIM" -DNCALLER=1 -DNCALL=2 -DNCAST=2 -DBATCH=64
add calls         clean    "$OPT_BIG" 24 "$MEMLIM" -DNCALL=2 -DNCAST=0 -DCRASHES=0 -DMAXTMO=0
clean+=(progress inline base serial calls)
if [ "${SPIN_DEEP:-0}" = 1 ]; then
  # 2 callers x 2 calls with timeouts: ~20M states, ~2 GB
  add deep-calls   clean   "$OPT_BIG" 26 4000 -DNCALL=2 -DNCAST=0 -DCRASHES=0
  # 2 callers x 1 call and 2 casts (no crash, no timeout): ~16M states
  add deep-casts   clean   "$OPT_BIG" 26 4000 -DNCAST=2 -DCRASHES=0 -DMAXTMO=0
  # two committer threads, as the code runs (no crash, no timeout): ~15M
  add deep-2commit clean   "$OPT_BIG" 26 4000 -DNCOMMIT=2 -DCRASHES=0 -DMAXTMO=0
  clean+=(deep-calls deep-casts deep-2commit)
fi

# Mutants: each must be caught (in the base configuration).
for m in REMOVE_NONEMPTY DIRECT_SCHEDULED NO_WAKE NO_SCHEDULE FREE_LINKED \
         NO_DETACH NO_DIRTY_WRITE NO_GATE REMOVE_WRITING LOAD_NO_WAIT \
         OUT_OF_ORDER ONE_ROUND GATE_OLDEST NO_SIGNAL; do
  add "mut-$m" error "$OPT_SMALL" 22 "$MEMLIM" "-DMUT_$m"
done
add mut-REQUEUE_TAKEN np-error "$OPT_SMALL" 22 "$MEMLIM" -DMUT_REQUEUE_TAKEN -DCRASHES=0

# Write failures (-DFAIL=1: a commit may fail), and the stale-waiter bug
# this run once found in gate()'s GATE_FAILED path, which must be caught.
add fail                  clean "$OPT_BIG" 26 4000 -DFAIL=1
add mut-STALE_WAITER      error "$OPT_SMALL" 22 "$MEMLIM" -DFAIL=1 -DMUT_STALE_WAITER

# Optionally, each scenario probe on its own (a trail per probe).
if [ "${SPIN_REACH:-0}" = 1 ]; then
  for n in $(seq 1 $NPROBES); do
    add "reach-$n" "reach:$n" "$OPT_SMALL" 22 "$MEMLIM" "-DREACH=$n"
  done
fi

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

# Scenario probes: the union over the exhaustive runs must cover them all.
seen=" $(cat $(printf "$work/%s/probes " "${clean[@]}") 2>/dev/null | tr -s ' \n' '  ') "
missing=""
for n in $(seq 1 $NPROBES); do
  case $seen in *" $n "*) ;; *) missing="$missing $n" ;; esac
done
for n in "${clean[@]}"; do
  printf '%-22s %s\n' "probes $n" "$(cat "$work/$n/probes" 2>/dev/null)"
done
if [ -n "$missing" ]; then
  printf '%-22s %-4s %s\n' "probes" FAIL "NOT reached by any run:$missing"
  bad=$((bad + 1))
else
  printf '%-22s %-4s %s\n' "probes" ok "all $NPROBES reached"
  ok=$((ok + 1))
fi

echo "spin model: $ok checks ok, $bad failed"
[ "$bad" -eq 0 ]
