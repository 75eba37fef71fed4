#!/usr/bin/env bash
# The simulation in CI: a range of seeds must hold every invariant, and each
# planted bug must be caught within the same range — a checker that never
# fails is not a checker. Prints the first seed that caught each plant.
set -u
sim=${1:?usage: test_sim.sh PATH/TO/tether-sim [SEEDS]}
seeds=${2:-${SIM_SEEDS:-1-200}}
fail=0

start=$(date +%s.%N)
out=$("$sim" --seeds "$seeds" 2>&1)
rc=$?
end=$(date +%s.%N)
echo "$out" | tail -n 1
printf 'clean run: seeds %s in %.1f s\n' "$seeds" "$(echo "$end - $start" | bc)"
if [ $rc -ne 0 ]; then
  echo "FAIL: invariants broke without any planted bug:"
  echo "$out" | grep -E '^(violation|replay):' | head -n 20
  fail=1
fi

# The same with 4 partitions: per-partition commits, dedupe and home
# records (a crash may fall between two partition commits).
out=$("$sim" --seeds "$seeds" --partitions 4 2>&1)
rc=$?
echo "$out" | tail -n 1 | sed 's/^/partitions 4: /'
if [ $rc -ne 0 ]; then
  echo "FAIL: invariants broke with 4 partitions:"
  echo "$out" | grep -E '^(violation|replay):' | head -n 20
  fail=1
fi

# Spread over 64 documents most writes apply cleanly, so replicas confirm
# their own writes locally and pulls skip them ("own", PROTOCOL.md).
out=$("$sim" --seeds "$seeds" --docs 64 2>&1)
rc=$?
echo "$out" | tail -n 1 | sed 's/^/docs 64: /'
if [ $rc -ne 0 ]; then
  echo "FAIL: invariants broke with 64 documents:"
  echo "$out" | grep -E '^(violation|replay):' | head -n 20
  fail=1
fi

for plant in skip-dedupe ack-before-commit ignore-base skip-pull-page lww-ignores-clamp skip-others-writes; do
  extra=()
  # Caught only where writes apply cleanly, i.e. with many documents.
  [ "$plant" = skip-others-writes ] && extra=(--docs 64)
  out=$("$sim" --seeds "$seeds" --plant "$plant" "${extra[@]}" 2>&1)
  rc=$?
  first=$(echo "$out" | grep -m1 -oE '^violation: seed [0-9]+' | grep -oE '[0-9]+$')
  if [ $rc -eq 0 ] || [ -z "$first" ]; then
    echo "FAIL: planted bug '$plant' was not caught in seeds $seeds"
    fail=1
  else
    echo "plant $plant: caught, first at seed $first ($(echo "$out" | tail -n 1))"
  fi
done
exit $fail
