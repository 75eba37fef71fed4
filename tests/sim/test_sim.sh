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

# clean_variant LABEL ARGS...: the clean seeds again with ARGS, which must
# hold every invariant too.
clean_variant() {
  local label="$1" out rc
  shift
  out=$("$sim" --seeds "$seeds" "$@" 2>&1)
  rc=$?
  echo "$out" | tail -n 1 | sed "s/^/$label: /"
  if [ $rc -ne 0 ]; then
    echo "FAIL: invariants broke with $label:"
    echo "$out" | grep -E '^(violation|replay):' | head -n 20
    fail=1
  fi
}

# 4 partitions: per-partition commits, dedupe and home records (a crash
# may fall between two partition commits).
clean_variant "partitions 4" --partitions 4
# Spread over 64 documents most writes apply cleanly, so replicas confirm
# their own writes locally and pulls skip them ("own", PROTOCOL.md).
clean_variant "docs 64" --docs 64

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
