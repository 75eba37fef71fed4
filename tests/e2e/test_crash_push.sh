#!/usr/bin/env bash
# G1 + G2 under crashes: a replica pushes a large offline outbox and the
# server is SIGKILLed mid-push (twice), then restarted on the same data dir.
# After syncing to the end, a fresh replica must hold exactly the expected
# documents: no acknowledged intent lost, none applied twice.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

LOAD="$TETHER_BUILD_DIR/bulkload"
[ -x "$LOAD" ] || fail "example binary not built: $LOAD"

# ~20,000 intents; a quarter of that in the (much slower) sanitizer build.
DOCS=4000 CTRS=50 INCRS=14000 SETS=2000
if e2e_sanitized; then DOCS=1000 CTRS=20 INCRS=3500 SETS=500; fi
total=$((DOCS + CTRS + INCRS + SETS))

start_server S
new_replica A S

# The workload and, computed independently of tether, the exact `ls`
# output every replica must end with. Ids are zero-padded so that id order
# is the numeric order.
awk -v D="$DOCS" -v C="$CTRS" -v I="$INCRS" -v S="$SETS" \
    -v ops="$E2E_TMP/ops.txt" -v docs="$E2E_TMP/want-docs.txt" -v ctrs="$E2E_TMP/want-ctrs.txt" '
BEGIN {
  for (i = 0; i < D; i++) {
    printf "put docs d%05d {\"i\": %d, \"tag\": \"t%d\", \"v\": 0}\n", i, i, i % 7 > ops
    v[i] = 0
  }
  for (c = 0; c < C; c++) { printf "put ctr c%03d {\"n\":0}\n", c > ops; n[c] = 0 }
  for (j = 0; j < I; j++) {
    c = (j * 7) % C; d = j % 5 + 1
    printf "incr ctr c%03d n %d\n", c, d > ops
    n[c] += d
    # Interleave field sets with the increments; a later set replaces an
    # earlier one on the same document.
    if (j % int(I / S) == 0 && s < S) {
      i = (s * 13) % D; s++
      printf "set docs d%05d v %d\n", i, s > ops
      v[i] = s
    }
  }
  for (i = 0; i < D; i++)
    printf "d%05d\t{\"i\":%d,\"tag\":\"t%d\",\"v\":%d}\n", i, i, i % 7, v[i] > docs
  for (c = 0; c < C; c++)
    printf "c%03d\t{\"n\":%d}\n", c, n[c] > ctrs
}'
nops="$(grep -c . "$E2E_TMP/ops.txt")"
[ "$nops" -ge $((total - 10)) ] || fail "workload has only $nops operations"

# The outbox is recorded in two parts: the second while the server is down
# after the first crash, so the second crash hits a push that resumes in the
# middle of the outbox.
split=$((nops * 3 / 5))
head -n "$split" "$E2E_TMP/ops.txt" >"$E2E_TMP/ops1.txt"
tail -n +"$((split + 1))" "$E2E_TMP/ops.txt" >"$E2E_TMP/ops2.txt"
t0=$SECONDS
ok "$LOAD" "$(replica_dir A)" <"$E2E_TMP/ops1.txt" >/dev/null

# crash_during_sync ROUND MODE: starts a sync of A in the background and
# SIGKILLs the server as soon as it has handled more intents than before
# (the push is under way). MODE "down": wait for that sync to give up
# while the server is down, then restart. MODE "now": restart at once, so
# the sync's own retries meet the restarted server.
crash_during_sync() {
  local base seen i pid rc=0
  base="$(ok metric S tether_intents_total)"
  rep A sync >"$E2E_TMP/sync-$1.log" 2>&1 &
  pid=$!
  E2E_BG+=("$pid")
  e2e_watch "$pid"
  seen="$base"
  for i in $(seq 1 1200); do
    seen="$(metric S tether_intents_total 2>/dev/null || echo "$seen")"
    [ "$seen" -le "$base" ] || break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "round $1: the sync finished before the crash"
  fi
  kill9_server S
  echo "round $1: server killed after $((seen - base)) intents were handled"
  [ "$2" = down ] || restart_server S
  for i in $(seq 1 1200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then fail "round $1: the interrupted sync did not end within 120 s"; fi
  wait "$pid" || rc=$?
  echo "round $1: the interrupted sync exited $rc: $(tail -n 1 "$E2E_TMP/sync-$1.log")"
}

crash_during_sync 1 down
ok "$LOAD" "$(replica_dir A)" <"$E2E_TMP/ops2.txt" >/dev/null
echo "recorded $nops intents offline in $((SECONDS - t0)) s (with one sync between)"
rep A ls docs >"$E2E_TMP/A-docs.txt"
rep A ls ctr >"$E2E_TMP/A-ctrs.txt"
cmp -s "$E2E_TMP/want-docs.txt" "$E2E_TMP/A-docs.txt" || fail "the local view of docs differs from the workload: $(diff "$E2E_TMP/want-docs.txt" "$E2E_TMP/A-docs.txt" | head -n 5)"
cmp -s "$E2E_TMP/want-ctrs.txt" "$E2E_TMP/A-ctrs.txt" || fail "the local view of counters differs from the workload: $(diff "$E2E_TMP/want-ctrs.txt" "$E2E_TMP/A-ctrs.txt" | head -n 5)"
restart_server S
crash_during_sync 2 now

synced=0
for i in 1 2 3 4 5; do
  if rep A sync >"$E2E_TMP/sync-final.log" 2>&1; then synced=1; break; fi
  echo "final sync attempt $i failed: $(tail -n 2 "$E2E_TMP/sync-final.log")"
  sleep 1
done
[ "$synced" -eq 1 ] || fail "A could not sync after the crashes"
assert_not_contains "$(rep A outbox 2>/dev/null || true)" '"seq"' "A's outbox is empty after a full sync"

new_replica B S
ok rep B sync
rep B ls docs >"$E2E_TMP/B-docs.txt"
rep B ls ctr >"$E2E_TMP/B-ctrs.txt"
cmp -s "$E2E_TMP/want-docs.txt" "$E2E_TMP/B-docs.txt" || fail "documents on a fresh replica differ from the expected ones (- expected, + actual):
$(diff "$E2E_TMP/want-docs.txt" "$E2E_TMP/B-docs.txt" | head -n 20)"
cmp -s "$E2E_TMP/want-ctrs.txt" "$E2E_TMP/B-ctrs.txt" || fail "counters on a fresh replica differ (lost or doubled increments):
$(diff "$E2E_TMP/want-ctrs.txt" "$E2E_TMP/B-ctrs.txt" | head -n 20)"
rep A ls ctr >"$E2E_TMP/A-ctrs.txt"
cmp -s "$E2E_TMP/want-ctrs.txt" "$E2E_TMP/A-ctrs.txt" || fail "counters on A after sync differ:
$(diff "$E2E_TMP/want-ctrs.txt" "$E2E_TMP/A-ctrs.txt" | head -n 20)"

stop_server S
pass
