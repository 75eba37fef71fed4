#!/usr/bin/env bash
# One server, 100 replicas at once. Every replica records a document of its
# own and an increment of one shared counter (absent on the server, so the
# first increments also create it), then all 100 `tether sync` run at the
# same moment: every one must exit 0. One more round of syncs and every
# replica holds the same 100 documents and the counter at exactly 100.
#
# Then 100 long-polling pulls wait on the server at once. The CLI has no
# long-poll option (`tether sync --help` offers only --progress), so these
# are sent as raw POST /v1/pull requests with curl, with each replica's own
# id and the current cursor; they must all be held, the server must keep
# answering meanwhile, and one commit must wake every one of them with it.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

N="${E2E_REPLICAS:-100}"
LOAD="$TETHER_BUILD_DIR/bulkload"
[ -x "$LOAD" ] || fail "example binary not built: $LOAD"
t0=$SECONDS

start_server S

# Replicas are created and written 8 at a time: hundreds of CLI processes
# one by one cost many seconds in the sanitizer build. The two writes go
# through the example app bulkload (tether.h), one process per replica.
setup_one() {
  local k="$1" dir
  dir="$(replica_dir "r$k")"
  "$TETHER" init --replica "$dir" --server "$(server_url S)" >/dev/null &&
    printf 'put docs d%03d {"k":%d,"tag":"r%d"}\nincr ctr shared n 1\n' "$k" "$k" "$k" |
    "$LOAD" "$dir" | grep -qx '2 writes applied'
}
pids=()
for k in $(seq 1 "$N"); do
  setup_one "$k" >"$E2E_TMP/setup-$k.log" 2>&1 &
  pids+=("$!")
  if [ "${#pids[@]}" -ge 8 ]; then
    for p in "${pids[@]}"; do wait "$p" || fail "setting up a replica failed: $(cat "$E2E_TMP"/setup-*.log)"; done
    pids=()
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail "setting up a replica failed: $(cat "$E2E_TMP"/setup-*.log)"; done
echo "$N replicas created and written in $((SECONDS - t0)) s"

# sync_all ROUND: starts every replica's sync at once, waits (bounded) for
# all, and fails naming each replica whose sync did not exit 0.
sync_all() {
  local round="$1" k
  local -a spid=()
  local started bad="" rc
  started="$(date +%s%3N)"
  for k in $(seq 1 "$N"); do
    timeout 60 "$TETHER" --replica "$(replica_dir "r$k")" sync \
      >"$E2E_TMP/sync-$round-$k.out" 2>&1 &
    spid[k]=$!
  done
  for k in $(seq 1 "$N"); do
    rc=0
    wait "${spid[k]}" || rc=$?
    if [ "$rc" -ne 0 ]; then
      bad="$bad
  r$k exited $rc: $(tail -n 2 "$E2E_TMP/sync-$round-$k.out")"
    fi
  done
  [ -z "$bad" ] || fail "round $round: syncs of $N concurrent replicas failed:$bad"
  echo "round $round: $N concurrent syncs exited 0 in $(($(date +%s%3N) - started)) ms"
}

sync_all 1
sync_all 2

# The expected documents, computed without tether.
want_docs="$E2E_TMP/want-docs.txt"
for k in $(seq 1 "$N"); do
  printf 'd%03d\t{"k":%d,"tag":"r%d"}\n' "$k" "$k" "$k"
done >"$want_docs"
want_ctr="{\"n\":$N}"

new_replica fresh S
ok rep fresh sync >/dev/null
# Each replica's state, read 8 replicas at a time, then compared.
collect_one() {
  rep "$1" get ctr shared >"$E2E_TMP/ctr-$1.txt" &&
    rep "$1" ls docs >"$E2E_TMP/docs-$1.txt" &&
    rep "$1" status >"$E2E_TMP/status-$1.txt"
}
mapfile -t names < <(echo fresh; seq -f 'r%g' 1 "$N")
pids=()
for name in "${names[@]}"; do
  collect_one "$name" 2>"$E2E_TMP/collect-$name.err" &
  pids+=("$!:$name")
  if [ "${#pids[@]}" -ge 8 ] || [ "$name" = "${names[-1]}" ]; then
    for p in "${pids[@]}"; do
      wait "${p%%:*}" || fail "reading the state of ${p#*:} failed: $(cat "$E2E_TMP/collect-${p#*:}.err")"
    done
    pids=()
  fi
done
for name in "${names[@]}"; do
  got="$(<"$E2E_TMP/ctr-$name.txt")"
  [ "$got" = "$want_ctr" ] || fail "counter ctr/shared on $name: expected $want_ctr, got $got (lost or doubled increments)"
  cmp -s "$want_docs" "$E2E_TMP/docs-$name.txt" || fail "documents on $name differ (- expected, + actual):
$(diff "$want_docs" "$E2E_TMP/docs-$name.txt" | head -n 20)"
  st="$(<"$E2E_TMP/status-$name.txt")"
  assert_contains "$st" "pending: 0" "$name has nothing pending"
  assert_contains "$st" "rejected: 0" "$name has nothing rejected"
done
echo "all $N replicas and a fresh one hold $N documents and the counter at $N"

# ---- 100 long-polling pulls at once -------------------------------------
# The current cursor of every replica: they have all pulled everything.
cat >"$E2E_TMP/pull0.json" <<EOF
{"v":1,"replica":"$(sed -n 's/^replica: //p' "$E2E_TMP/status-fresh.txt")","cursor":[]}
EOF
code="$(http_post "$(server_url S)/v1/pull" "$E2E_TMP/pull0.json" "$E2E_TMP/pull0.out")"
assert_eq 200 "$code" "a full pull answers 200: $(head -c 300 "$E2E_TMP/pull0.out")"
[ "$(jq -r .more "$E2E_TMP/pull0.out")" = false ] || fail "a full pull of $N documents needs more than one page"
cursor="$(jq -c .cursor "$E2E_TMP/pull0.out")"

WAIT_MS=30000
declare -a lp=()
for k in $(seq 1 "$N"); do
  id="$(sed -n 's/^replica: //p' "$E2E_TMP/status-r$k.txt")"
  [ -n "$id" ] || fail "no replica id for r$k"
  printf '{"v":1,"replica":"%s","cursor":%s,"wait_ms":%d}\n' "$id" "$cursor" "$WAIT_MS" >"$E2E_TMP/lp-$k.json"
done
# The server counts a pull when it has pulled for it, before it waits.
pulls0="$(ok metric S tether_pulls_total)"
lp_t0=$SECONDS
for k in $(seq 1 "$N"); do
  curl -sS --max-time 60 -o "$E2E_TMP/lp-$k.out" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary "@$E2E_TMP/lp-$k.json" \
    "$(server_url S)/v1/pull" >"$E2E_TMP/lp-$k.code" 2>"$E2E_TMP/lp-$k.err" &
  lp[k]=$!
  E2E_BG+=("$!")
done

# Every pull reaches the server and is held there: none answers while
# nothing commits.
all_received() {
  [ "$(metric S tether_pulls_total)" -ge $((pulls0 + N)) ]
}
all_waiting() {
  local k
  for k in $(seq 1 "$N"); do
    kill -0 "${lp[k]}" 2>/dev/null || return 1
  done
}
wait_until 30 all_received || fail "the server took only $(($(metric S tether_pulls_total) - pulls0)) of the $N long-polling pulls within 30 s"
sleep 1
if ! all_waiting; then
  early=""
  for k in $(seq 1 "$N"); do
    kill -0 "${lp[k]}" 2>/dev/null || early="$early r$k($(cat "$E2E_TMP/lp-$k.code" 2>/dev/null) $(head -c 200 "$E2E_TMP/lp-$k.out" 2>/dev/null) $(cat "$E2E_TMP/lp-$k.err"))"
  done
  fail "long-polling pulls answered before anything committed:$early"
fi
# ...and the server still answers other requests meanwhile.
assert_eq 200 "$(http_get_status "$(server_url S)/v1/health")" "health answers while $N pulls are held"
waiting_for=$((SECONDS - lp_t0))

# One commit wakes every waiting pull, each with that change.
ok rep r1 set docs d001 woke 1 >/dev/null
ok rep r1 sync >/dev/null
commit_ms="$(date +%s%3N)"
deadline=$((SECONDS + 15))
for k in $(seq 1 "$N"); do
  while kill -0 "${lp[k]}" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
  kill -0 "${lp[k]}" 2>/dev/null && fail "long-polling pull of r$k was not answered within 15 s of a commit (held since $((SECONDS - lp_t0)) s, wait_ms $WAIT_MS)"
done
woke_ms=$(($(date +%s%3N) - commit_ms))
[ $((SECONDS - lp_t0)) -lt $((WAIT_MS / 1000)) ] || fail "long-polling pulls were answered by their timeout, not by the commit"
for k in $(seq 1 "$N"); do
  wait "${lp[k]}" || fail "long-polling pull of r$k failed: $(cat "$E2E_TMP/lp-$k.err")"
  assert_eq 200 "$(cat "$E2E_TMP/lp-$k.code")" "long-polling pull of r$k: $(head -c 300 "$E2E_TMP/lp-$k.out")"
  got="$(jq -c '[.changes[] | select(.coll == "docs" and .id == "d001") | .set.woke]' "$E2E_TMP/lp-$k.out")"
  assert_eq "[1]" "$got" "the pull of r$k woke with the new commit: $(head -c 300 "$E2E_TMP/lp-$k.out")"
done
echo "$N long-polling pulls held for $waiting_for s, all answered with the change within $woke_ms ms of the commit's sync"

stop_server S
echo "many replicas: $N replicas, $((SECONDS - t0)) s"
pass
