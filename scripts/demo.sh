#!/usr/bin/env bash
# The README's first command: installs what pgs needs (Debian 12, as root or
# with sudo), builds it, and runs the game demo on the embedded default
# store, SQLite: 100,000 players, each a persistent server, played for 40
# seconds, with the worker process killed (SIGKILL) halfway and every
# acknowledged player state checked after the restart.  Arguments go to
# the game (e.g. --players 200000 --seconds 30 --metrics-port 9464).
#
#   scripts/demo.sh --counter    the older demo instead: examples/counter as
#                                separate processes, then examples/tour
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
bin=$PWD/build/release/examples
mkdir -p build/demo
cd build/demo

if [ "${1:-}" != --counter ]; then
  rm -rf game && mkdir game
  "$bin/game" --dir "$PWD/game" "$@"
  echo
  echo "The store stays in build/demo/game/game.db; look inside with the pgs tool:"
  echo "  build/release/tools/pgs --store sqlite:build/demo/game/game.db stats"
  echo "  build/release/tools/pgs --store sqlite:build/demo/game/game.db list | head"
  exit 0
fi

rm -f counter.db* tour.db*
echo "== examples/counter: each line is a new process on sqlite:counter.db"
for cmd in "incr 42" "incr 42" "incr 7" "get 42"; do
  printf '$ counter %-8s -> ' "$cmd"
  "$bin/counter" $cmd
done

echo
echo "== examples/tour: 2000 bank accounts on sqlite:tour.db"
"$bin/tour"
