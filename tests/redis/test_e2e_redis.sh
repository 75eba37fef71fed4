#!/usr/bin/env bash
# test_e2e_redis.sh PATH/TO/tether — the real binaries on Redis:
#  - two `tether serve` on one 3-master Redis Cluster (16 partitions), a
#    replica on each: documents and concurrent counter increments from both
#    converge, nothing lost, nothing applied twice;
#  - a server killed (kill -9) in the middle of pushes and restarted: the
#    replica's resends are deduplicated, the counter is exact;
#  - one redis-server stopped under a server: sync fails (503, the outbox is
#    kept), and after Redis restarts on its AOF everything arrives without
#    restarting tether.
# Redis servers come from tests/redis/redis-harness.sh and are stopped by
# PID. Exit 77 (skipped) without redis-server.
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "SKIP: redis-server/redis-cli not installed (scripts/deps test)"
  exit 77
fi
# shellcheck source=../e2e/lib.sh
. "$here/../e2e/lib.sh"
# shellcheck source=redis-harness.sh
. "$here/redis-harness.sh"
trap 'rc=$?; rh_stop_all; (exit $rc); e2e_cleanup' EXIT

start_cluster "$E2E_TMP/cluster" || fail "cluster did not start"
for p in $CLUSTER_PIDS; do e2e_watch "$p"; done
be=(--backend "$CLUSTER_URL" --partitions 16)
start_server S1 -- "${be[@]}"
start_server S2 -- "${be[@]}"
new_replica A S1
new_replica B S2

# Documents written through one server are read through the other.
for i in $(seq 1 30); do ok rep A put notes "n$i" "{\"i\":$i}"; done
ok rep A sync
ok rep B sync
assert_eq 30 "$(ok rep B ls notes | wc -l)" "B sees A's 30 documents through S2"
# The data is spread over the masters (16 partitions, 3 masters).
nodes_with_data=0
for port in $(tr ',' '\n' <<<"${CLUSTER_URL#redis-cluster://}" | sed 's/.*://'); do
  n="$(redis-cli -p "$port" dbsize)"
  [ "$n" -gt 0 ] && nodes_with_data=$((nodes_with_data + 1))
done
assert_eq 3 "$nodes_with_data" "every master holds part of the data"

# Concurrent pushes of the same counter and of different fields of one
# document through the two servers: merged as on one server.
ok rep A put cnt c '{"n":0}'
ok rep A sync
ok rep B sync
rounds=15
for i in $(seq 1 $rounds); do
  ok rep A incr cnt c n 1
  ok rep B incr cnt c n 2
  ok rep A set cnt c a "$i"
  ok rep B set cnt c b "$i"
  rep A sync >/dev/null 2>&1 &
  pa=$!
  rep B sync >/dev/null 2>&1 &
  pb=$!
  wait "$pa" || true # a 503 leaves the outbox for the next round
  wait "$pb" || true
done
for i in 1 2 3; do
  ok rep A sync
  ok rep B sync
done
want="{\"a\":$rounds,\"b\":$rounds,\"n\":$((rounds * 3))}"
assert_eq "$want" "$(ok rep A get cnt c)" "A: every increment once, both fields"
assert_eq "$want" "$(ok rep B get cnt c)" "B converged to the same document"

# A server killed in the middle of pushes; its replica resends after the
# restart and the server's dedupe (in Redis) makes that exact.
for i in $(seq 1 40); do ok rep A incr cnt c n 1; done
rep A sync >/dev/null 2>&1 &
pa=$!
sleep 0.05
kill9_server S1
wait "$pa" || true
start_server S1 --port "${SRV_PORT[S1]}" -- "${be[@]}"
ok rep A sync
ok rep B sync
assert_eq "$((rounds * 3 + 40))" "$(ok rep B get cnt c | sed 's/.*"n":\([0-9]*\).*/\1/')" \
  "40 increments through a killed server: each applied exactly once"
assert_eq 0 "$(ok rep A status | sed -n 's/^pending: //p')" "A's outbox is empty"

# One redis-server under a third server: an outage and its end.
start_redis "$E2E_TMP/single" || fail "redis-server did not start"
e2e_watch "$REDIS_PID"
start_server S3 -- --backend "$REDIS_URL"
new_replica C S3
ok rep C put notes kept '{"v":1}'
ok rep C sync
stop_pid "$REDIS_PID"
ok rep C set notes kept v 2
rc=0
rep C sync >"$E2E_TMP/c.out" 2>"$E2E_TMP/c.err" || rc=$?
[ "$rc" -ne 0 ] || fail "sync succeeded with Redis down"
assert_contains "$(cat "$E2E_TMP/c.out" "$E2E_TMP/c.err")" "503" "the server answers 503"
assert_eq 1 "$(ok rep C status | sed -n 's/^pending: //p')" "the intent stays in the outbox"
restart_redis "$E2E_TMP/single" "$REDIS_PORT" || fail "redis-server did not restart"
e2e_watch "$REDIS_PID"
ok rep C sync
new_replica D S3
ok rep D sync
assert_eq '{"v":2}' "$(ok rep D get notes kept)" "after the restart: the AOF kept v:1, the retry brought v:2"

stop_server S1
stop_server S2
stop_server S3
pass
