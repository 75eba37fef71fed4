#!/usr/bin/env bash
# test_e2e_redis.sh PATH/TO/tether — the real binaries on Redis, the
# scenarios that need more than one server or a Redis failure (every other
# e2e test also runs on Redis: ctest e2e_redis_* and e2e_cluster_*):
#  1. two `tether serve` on one 3-master Redis Cluster (16 partitions), two
#     replicas on each: documents written through one server are read
#     through the other, the data is spread over every master, and
#     concurrent rounds of counter increments, edits of different fields
#     and edits of one same field from all four converge on every replica
#     and on fresh ones: nothing lost, nothing applied twice, one LWW winner;
#  2. one of them killed (SIGKILL) in the middle of a push of thousands of
#     intents and restarted: the replica's resends are deduplicated, every
#     intent is applied exactly once;
#  3. a cluster master killed (SIGKILL) in the middle of a push, then
#     restarted on its port, directory and AOF: meanwhile both servers
#     answer 503 and the replica keeps its outbox; every intent acknowledged
#     before the kill is there after the restart; the servers recover by
#     themselves (no restart) and everything arrives exactly once;
#  4. the same with a single redis-server under a third server.
# Redis runs with --appendonly yes --appendfsync always
# (tests/redis/redis-harness.sh), and every Redis process is stopped by
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
# lib.sh's EXIT trap stops the Redis processes too (rh_stop_all).

LOAD="$TETHER_BUILD_DIR/bulkload"
[ -x "$LOAD" ] || fail "example binary not built: $LOAD"
# Intents of one mid-push crash: more than one push request (the CLI sends
# 2000 per request), so that the kill can land between two of them.
NPUSH=6000 ROUNDS=8
if e2e_sanitized; then NPUSH=3000 ROUNDS=5; fi
t0=$SECONDS

pending() { ok rep "$1" status | sed -n 's/^pending: //p'; }

# sync_until_empty NAME: syncs NAME until its outbox is empty (the first
# attempts may still meet a cluster settling down).
sync_until_empty() {
  local i
  for i in 1 2 3 4 5 6 7 8; do
    if rep "$1" sync >"$E2E_TMP/sync-$1.log" 2>&1 && [ "$(pending "$1")" = 0 ]; then
      return 0
    fi
    sleep 1
  done
  fail "$1 could not empty its outbox: $(tail -n 3 "$E2E_TMP/sync-$1.log")"
}

# record NAME PREFIX COUNTER: NPUSH writes to NAME's outbox, alternating a
# new document PREFIX<j> (odd seqs) and an increment of COUNTER (even).
record() {
  local j
  for j in $(seq 1 $((NPUSH / 2))); do
    printf 'put bulk %s%05d {"j":%d}\nincr cnt %s n 1\n' "$2" "$j" "$j" "$3"
  done >"$E2E_TMP/ops-$2.txt"
  assert_eq "$NPUSH writes applied" "$(ok "$LOAD" "$(replica_dir "$1")" <"$E2E_TMP/ops-$2.txt")" "recording $NPUSH writes on $1"
}

# push_then_crash NAME SERVER: starts NAME's sync in the background and
# returns once SERVER has handled intents of it (the push is under way);
# SYNC_PID is the sync.
push_under_way() {
  local base i
  base="$(ok metric "$2" tether_intents_total)"
  rep "$1" sync >"$E2E_TMP/sync-bg-$1.log" 2>&1 &
  SYNC_PID=$!
  E2E_BG+=("$SYNC_PID")
  for i in $(seq 1 600); do
    [ "$(metric "$2" tether_intents_total 2>/dev/null || echo "$base")" -le "$base" ] || return 0
    kill -0 "$SYNC_PID" 2>/dev/null || fail "the sync of $1 ended before $2 handled any intent: $(tail -n 3 "$E2E_TMP/sync-bg-$1.log")"
    sleep 0.05
  done
  fail "$2 handled no intent of $1 within 30 s"
}

# wait_sync_end: waits (at most 120 s) for SYNC_PID; its exit code in SYNC_RC.
wait_sync_end() {
  local i
  for i in $(seq 1 1200); do
    kill -0 "$SYNC_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SYNC_PID" 2>/dev/null && fail "the interrupted sync did not end within 120 s"
  SYNC_RC=0
  wait "$SYNC_PID" || SYNC_RC=$?
}

# check_acked_kept NAME PREFIX COUNTER ACKED FRESH: FRESH (a new replica
# that has synced) holds everything of the first ACKED intents of NAME's
# record: documents PREFIX1..PREFIX<ceil(ACKED/2)> and at least
# floor(ACKED/2) increments of COUNTER.
check_acked_kept() {
  local docs n want_docs=$((($4 + 1) / 2)) j missing=""
  docs="$(ok rep "$5" ls bulk | cut -f1 | grep "^$2" || true)"
  for j in $(seq 1 "$want_docs"); do
    grep -qx "$(printf '%s%05d' "$2" "$j")" <<<"$docs" || { missing="$missing $(printf '%s%05d' "$2" "$j")"; break; }
  done
  [ -z "$missing" ] || fail "an acknowledged intent was lost: $5 lacks document$missing (the first $4 intents of $1 were acknowledged)"
  n="$(ok rep "$5" get cnt "$3" | jq .n)"
  [ "$n" -ge $(($4 / 2)) ] || fail "acknowledged increments were lost: cnt/$3 is $n, at least $(($4 / 2)) were acknowledged"
  echo "$4 acknowledged intents all kept ($want_docs documents, counter $n)"
}

# ---- 1. two servers on one cluster --------------------------------------
start_cluster "$E2E_TMP/cluster" || fail "cluster did not start"
for p in $CLUSTER_PIDS; do e2e_watch "$p"; done
read -r -a cports <<<"$CLUSTER_PORTS"
be=(--backend "$CLUSTER_URL" --partitions 16)
start_server S1 -- "${be[@]}"
start_server S2 -- "${be[@]}"
reps=(A1 A2 B1 B2)
new_replica A1 S1
new_replica A2 S1
new_replica B1 S2
new_replica B2 S2

# Documents written through one server are read through the other.
for i in $(seq 1 30); do ok rep A1 put notes "n$i" "{\"i\":$i}"; done
ok rep A1 sync
ok rep B2 sync
assert_eq 30 "$(ok rep B2 ls notes | wc -l)" "B2 sees A1's 30 documents through S2"
# The data is spread over the masters (16 partitions, 3 masters).
nodes_with_data=0
for port in "${cports[@]}"; do
  n="$(redis-cli -p "$port" dbsize)"
  [ "$n" -gt 0 ] && nodes_with_data=$((nodes_with_data + 1))
done
assert_eq 3 "$nodes_with_data" "every master holds part of the data"

# Concurrent rounds: replica k adds k to one counter, sets a field of its
# own and the shared field t, then all four sync at once.
ok rep A1 put cnt c '{"n":0}'
ok rep A1 sync
for r in "${reps[@]}"; do ok rep "$r" sync >/dev/null; done
for round in $(seq 1 "$ROUNDS"); do
  k=0
  for r in "${reps[@]}"; do
    k=$((k + 1))
    ok rep "$r" incr cnt c n "$k"
    ok rep "$r" set cnt c "f$r" "$round"
    ok rep "$r" set cnt c t "\"$r-$round\""
  done
  pids=()
  for r in "${reps[@]}"; do
    rep "$r" sync >/dev/null 2>&1 &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || true; done # a 503 keeps the outbox for later
done
for i in 1 2; do
  for r in "${reps[@]}"; do sync_until_empty "$r"; done
done
new_replica F1 S1
new_replica F2 S2
ok rep F1 sync
ok rep F2 sync
final="$(ok rep F1 get cnt c)"
assert_eq $((ROUNDS * 10)) "$(jq .n <<<"$final")" "the counter: every increment of the 4 replicas applied exactly once"
for r in "${reps[@]}"; do
  assert_eq "$ROUNDS" "$(jq ".f$r" <<<"$final")" "field f$r of $r: its last write"
done
t="$(jq -r .t <<<"$final")"
case "$t" in
  *"-$ROUNDS") ;;
  *) fail "the shared field t is '$t': not a write of the last round" ;;
esac
for r in "${reps[@]}" F2; do
  assert_eq "$final" "$(ok rep "$r" get cnt c)" "$r converged to the same document"
done
echo "1. two servers, 4 replicas, $ROUNDS concurrent rounds: converged on $final ($((SECONDS - t0)) s)"

# ---- 2. a tether server killed mid-push ---------------------------------
record A1 k kill
push_under_way A1 S1
kill9_server S1
wait_sync_end
echo "2. S1 killed mid-push; the sync exited $SYNC_RC with $(pending A1) of $NPUSH intents pending"
restart_server S1
sync_until_empty A1
ok rep B1 sync >/dev/null
assert_eq $((NPUSH / 2)) "$(ok rep B1 ls bulk | grep -c '^k')" "every document of A1's push arrived once, read through S2"
assert_eq $((NPUSH / 2)) "$(ok rep B1 get cnt kill | jq .n)" "$((NPUSH / 2)) increments through a killed server: each applied exactly once"
echo "   after the restart: exactly once ($(metric S1 'tether_intents_total{outcome="duplicate"}') duplicates answered from the dedupe records)"

# ---- 3. a cluster master killed mid-push, restarted on its AOF ------------
victim=2
vport="${cports[$((victim - 1))]}"
vpid="$(cut -d' ' -f"$victim" <<<"$CLUSTER_PIDS")"
record A2 m master
push_under_way A2 S1
crash_pid "$vpid" || fail "the master on $vport did not die"
wait_sync_end
[ "$SYNC_RC" -ne 0 ] || fail "A2's sync succeeded with a master down"
assert_contains "$(cat "$E2E_TMP/sync-bg-A2.log")" "503" "A2's sync was answered 503"
left="$(pending A2)"
# The push may have been acknowledged whole just before the kill (the
# sync then fails in its pull): legitimate, and checked below like the rest.
[ "$left" -gt 0 ] || echo "   (every intent of A2 was acknowledged before the kill; its pull failed)"
acked=$((NPUSH - left))
# The other server cannot read the cluster either, and says so.
printf '{"v":1,"replica":"%s","cursor":[]}' "$(printf 'e%.0s' $(seq 1 32))" >"$E2E_TMP/pull.json"
assert_eq 503 "$(http_post "$(server_url S2)/v1/pull" "$E2E_TMP/pull.json" "$E2E_TMP/pull.out")" \
  "S2's pull with a master down: $(head -c 300 "$E2E_TMP/pull.out")"
echo "3. master :$vport killed mid-push; $acked of $NPUSH intents were acknowledged, both servers answer 503"
restart_cluster_node "$E2E_TMP/cluster/node$victim" "$vport" || fail "the master did not come back"
e2e_watch "$RH_PID"
new_replica F3 S2
wait_until 30 rep F3 sync || fail "S2 did not recover after the master restarted"
check_acked_kept A2 m master "$acked" F3
sync_until_empty A2
ok rep F3 sync >/dev/null
assert_eq $((NPUSH / 2)) "$(ok rep F3 ls bulk | grep -c '^m')" "every document of A2's push, once"
assert_eq $((NPUSH / 2)) "$(ok rep F3 get cnt master | jq .n)" "every increment of A2's push, once"
for r in "${reps[@]}"; do sync_until_empty "$r"; done
assert_eq "$(ok rep F3 ls cnt)" "$(ok rep B2 ls cnt)" "B2 converged after the outage"

# ---- 4. one redis-server killed mid-push, restarted on its AOF ----------
start_redis "$E2E_TMP/single" || fail "redis-server did not start"
e2e_watch "$REDIS_PID"
start_server S3 -- --backend "$REDIS_URL"
new_replica C S3
record C s single
push_under_way C S3
crash_pid "$REDIS_PID" || fail "redis-server did not die"
wait_sync_end
[ "$SYNC_RC" -ne 0 ] || fail "C's sync succeeded with Redis down"
assert_contains "$(cat "$E2E_TMP/sync-bg-C.log")" "503" "C's sync was answered 503"
left="$(pending C)"
acked=$((NPUSH - left))
assert_eq 503 "$(http_post "$(server_url S3)/v1/pull" "$E2E_TMP/pull.json" "$E2E_TMP/pull.out")" \
  "S3's pull with Redis down: $(head -c 300 "$E2E_TMP/pull.out")"
echo "4. redis-server killed mid-push; $acked of $NPUSH intents were acknowledged, S3 answers 503"
restart_redis "$E2E_TMP/single" "$REDIS_PORT" || fail "redis-server did not restart"
e2e_watch "$REDIS_PID"
new_replica D S3
ok rep D sync
check_acked_kept C s single "$acked" D
sync_until_empty C
ok rep D sync >/dev/null
assert_eq $((NPUSH / 2)) "$(ok rep D ls bulk | grep -c '^s')" "every document of C's push, once"
assert_eq $((NPUSH / 2)) "$(ok rep D get cnt single | jq .n)" "every increment of C's push, once"

stop_server S1
stop_server S2
stop_server S3
echo "redis e2e: $((SECONDS - t0)) s"
pass
