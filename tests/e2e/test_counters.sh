#!/usr/bin/env bash
# Counters merge by addition: R replicas each increment the same field k
# times offline; after two sync rounds every replica shows the exact sum.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

R=4
K=15
start_server S
for r in $(seq 1 $R); do new_replica "r$r" S; done

ok rep r1 put stats s1 '{"hits":0,"name":"shared"}'
for r in $(seq 1 $R); do ok rep "r$r" sync; done

sum=0
for r in $(seq 1 $R); do
  for i in $(seq 1 $K); do
    # Different deltas per replica (including negative ones) so a lost or
    # doubled increment cannot cancel out by accident.
    d=$((r * 10 + i % 3 - 1))
    ok rep "r$r" incr stats s1 hits "$d"
    sum=$((sum + d))
  done
  # Another counter that only this replica touches.
  ok rep "r$r" incr stats s1 "own$r" "$r"
done

for _ in 1 2; do
  for r in $(seq 1 $R); do ok rep "r$r" sync; done
done

want="{\"hits\":$sum,\"name\":\"shared\""
for r in $(seq 1 $R); do want="$want,\"own$r\":$r"; done
want="$want}"
for r in $(seq 1 $R); do
  assert_eq "$want" "$(ok rep "r$r" get stats s1)" "replica r$r sees the exact sum"
  assert_eq "" "$(ok rep "r$r" conflicts)" "counters never conflict (r$r)"
done

new_replica fresh S
ok rep fresh sync
assert_eq "$want" "$(ok rep fresh get stats s1)" "a fresh replica sees the exact sum"

stop_server S
pass
