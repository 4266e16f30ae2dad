#!/usr/bin/env bash
# fuzz/run.sh SECONDS FUZZER CORPUS [--merge] — runs one libFuzzer harness
# for SECONDS over the kept corpus (fuzz/corpus/NAME) plus a scratch corpus
# for what it finds.  With --merge (the soak target), inputs that add
# coverage are merged into the kept corpus afterwards.  A crash leaves its
# reproducer in the scratch directory (kept, printed) and fails; otherwise
# the scratch directory is removed.
set -u
secs=$1 fuzzer=$2 corpus=$3 merge=${4:-}
scratch=$(mktemp -d)
echo "fuzz: $(basename "$fuzzer") for ${secs}s over $corpus"
"$fuzzer" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$scratch/" \
  "$scratch" "$corpus" >"$scratch/log" 2>&1
status=$?
grep -E "^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==ERROR|SUMMARY)" "$scratch/log"
if [ "$status" -ne 0 ]; then
  tail -40 "$scratch/log"
  echo "fuzz: FAILED (exit $status); reproducer and log in $scratch"
  exit 1
fi
if [ "$merge" = --merge ]; then
  "$fuzzer" -merge=1 "$corpus" "$scratch" >/dev/null 2>&1 && echo "fuzz: merged into $corpus"
fi
rm -rf "$scratch"
