#!/usr/bin/env bash
# fuzz/soak.sh FUZZER... — runs each harness for PGS_FUZZ_SECONDS (default
# 600) over its kept corpus (fuzz/corpus/NAME for fuzz_NAME) and merges
# what adds coverage into that corpus.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for f in "$@"; do
  name=$(basename "$f")
  bash "$here/run.sh" "${PGS_FUZZ_SECONDS:-600}" "$f" "$here/corpus/${name#fuzz_}" --merge
done
