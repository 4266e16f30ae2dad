#!/usr/bin/env bash
# The README's first command: installs what pgs needs (Debian 12, as root or
# with sudo), builds it, and runs the demo on the embedded default store,
# SQLite, in build/demo/: the counter example run as separate processes,
# then the tour (passivation, reactivation, a crash, close and reopen).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
mkdir -p build/demo
cd build/demo
rm -f counter.db* tour.db*
bin=../release/examples

echo "== examples/counter: each line is a new process on sqlite:counter.db"
for cmd in "incr 42" "incr 42" "incr 7" "get 42"; do
  printf '$ counter %-8s -> ' "$cmd"
  $bin/counter $cmd
done

echo
echo "== examples/tour: 2000 bank accounts on sqlite:tour.db"
$bin/tour
