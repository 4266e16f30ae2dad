#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then builds
# and runs every test in three builds — plain -O2, ThreadSanitizer, and
# AddressSanitizer+UBSan — and ends with one line "N passed, N failed".
#
#   scripts/test.sh              all three builds
#   scripts/test.sh release      one of: release tsan asan
#   scripts/test.sh soak         the long runs: race and kill soaks, then fuzzing
#                                (PGS_SOAK_SECONDS, PGS_FUZZ_SECONDS: default 600)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test || { echo "deps: install failed"; echo "0 passed, 1 failed"; exit 1; }

JOBS=2
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"

configure() { # name, extra cmake args...
  local name=$1; shift
  cmake -S . -B "build/$name" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
}

passed=0 failed=0
run_build() { # name, extra cmake args...
  local name=$1; shift
  echo "=== build $name"
  if ! configure "$name" "$@" || ! cmake --build "build/$name" -j"$JOBS" >"build/$name.log" 2>&1; then
    tail -40 "build/$name.log" 2>/dev/null
    echo "=== build $name FAILED"
    failed=$((failed + 1))
    return
  fi
  local out
  out=$(cd "build/$name" && ctest --output-on-failure -j"$JOBS" 2>&1)
  echo "$out" | tail -n 60
  local summary
  summary=$(echo "$out" | grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" | tail -1)
  if [ -z "$summary" ]; then
    echo "=== $name: no ctest summary"
    failed=$((failed + 1))
    return
  fi
  local nfail total
  nfail=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  total=$(echo "$summary" | sed -E 's/.* tests failed out of ([0-9]+).*/\1/')
  passed=$((passed + total - nfail))
  failed=$((failed + nfail))
}

mode=${1:-all}
case "$mode" in
  soak) # long race and kill runs (release), then the fuzzers (clang ASan+UBSan)
    configure release && cmake --build build/release -j"$JOBS" --target soak &&
      configure asan -DPGS_SANITIZE=address -DCMAKE_C_COMPILER=clang &&
      cmake --build build/asan -j"$JOBS" --target fuzz-soak
    exit $? ;;
  release) run_build release ;;
  tsan) run_build tsan -DPGS_SANITIZE=thread -DCMAKE_C_COMPILER=clang ;;
  asan) run_build asan -DPGS_SANITIZE=address -DCMAKE_C_COMPILER=clang ;;
  all)
    run_build release
    run_build tsan -DPGS_SANITIZE=thread -DCMAKE_C_COMPILER=clang
    run_build asan -DPGS_SANITIZE=address -DCMAKE_C_COMPILER=clang ;;
  *) echo "usage: $0 [all|release|tsan|asan|soak]"; exit 2 ;;
esac

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
