#!/usr/bin/env bash
# The crash loop (G1, G2, G4 with real processes). A real `tether serve`
# and R replicas that write and sync concurrently, each in its own loop:
# per round a few increments of a counter every replica shares, a few of
# the replica's own counter, a new document, a field set, now and then an
# unset and a delete, an element added to (and sometimes removed from) a
# shared set, then `tether sync`. Meanwhile the server is SIGKILLed at
# random moments and restarted on the same data dir and port, ROUNDS times.
# Every write each replica made is recorded, and so is every outcome it
# received. At the end the writers stop, the server restarts cleanly, every
# replica syncs until its outbox is empty, and:
#   G1  every intent of every replica has exactly one outcome (seqs 1..N, no
#       gap, for the document it was made on), none rejected or in
#       conflict, nothing pending; a fresh replica has every effect;
#   G2  every counter equals exactly the sum of its increments (the shared
#       one: the sum over all replicas);
#   G4  every replica's `ls` of every collection is byte-identical to a fresh
#       replica's, which equals the state computed from the record alone.
#
# E2E_CRASH_ROUNDS (default 20), E2E_CRASH_REPLICAS (default 4) and
# E2E_SEED (the seed of the random kill moments) override the defaults.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

LOAD="$TETHER_BUILD_DIR/bulkload"
[ -x "$LOAD" ] || fail "example binary not built: $LOAD"

ROUNDS="${E2E_CRASH_ROUNDS:-20}"
R="${E2E_CRASH_REPLICAS:-4}"
SEED="${E2E_SEED:-$(( $(date +%s) % 100000 ))}"
RANDOM="$SEED"
# Time between a restart and the next kill, and time the server stays down,
# in ms: uniformly random in [MIN, MIN + SPAN) (and longer downs, below). The sanitizer build is about
# three times slower, so its rounds are longer (the same number of kills,
# each landing among fewer, slower requests).
UP_MIN=200 UP_SPAN=1100 DOWN_SPAN=400
if e2e_sanitized || [ -n "${E2E_SLOW:-}" ]; then
  UP_MIN=400 UP_SPAN=1400 DOWN_SPAN=400
fi
echo "crash loop: $ROUNDS rounds, $R replicas, seed $SEED (E2E_SEED=$SEED replays the kill moments)"

ms_sleep() {
  sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
}

# The writer processes run in their own process groups (set -m) so that a
# failing test ends them together with the sync they may be running.
WPID=()
crash_cleanup() {
  local rc=$? p
  # errexit would end this handler at the (exit) below, before lib.sh's.
  set +e
  for p in "${WPID[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  (exit "$rc")
  e2e_cleanup
}
trap crash_cleanup EXIT

start_server S

# Every replica's record: ops-rK.txt holds every write it made, one per
# line in the bulkload format, in the order made, so line n is intent seq n.
for k in $(seq 1 "$R"); do new_replica "r$k" S; done
printf 'put ctr shared {"n":0}\nput sets shared {"s":[]}\n' >"$E2E_TMP/ops-r1.txt"
for k in $(seq 1 "$R"); do
  printf 'put ctr own-r%d {"n":0}\n' "$k" >>"$E2E_TMP/ops-r$k.txt"
  out="$(ok "$LOAD" "$(replica_dir "r$k")" <"$E2E_TMP/ops-r$k.txt")"
  assert_eq "$(grep -c . "$E2E_TMP/ops-r$k.txt") writes applied" "$out" "setup writes of r$k"
done
for k in $(seq 1 "$R") 1; do
  ok rep "r$k" sync >/dev/null
  rep "r$k" outcomes >>"$E2E_TMP/outcomes-r$k.jsonl" || fail "outcomes of r$k failed"
done

# writer K: the loop of replica rK until the file "stop" exists. Anything
# that must never happen (a local write failing, a sync that hangs,
# crashes or reports a sanitizer error) is written to writer-rK.err and
# ends the loop; the main loop checks for that file every round.
writer() {
  trap - EXIT
  local k="$1" name="r$1" i=0 j d rc out dir
  local ops="$E2E_TMP/round-r$1.txt" err="$E2E_TMP/writer-r$1.err"
  local syncs_ok=0 syncs_failed=0
  dir="$(replica_dir "$name")"
  while [ ! -e "$E2E_TMP/stop" ]; do
    i=$((i + 1))
    {
      for j in 1 2 3; do
        # Deltas of both signs and different sizes, so that a lost and a
        # doubled increment cannot cancel out.
        d=$(((k * 31 + i * 7 + j * 13) % 9 - 3))
        [ "$d" -ne 0 ] || d=5
        echo "incr ctr shared n $d"
      done
      for j in 1 2; do echo "incr ctr own-$name n $((k + j))"; done
      printf 'put docs %s-%04d {"i":%d,"r":%d,"v":0}\n' "$name" "$i" "$i" "$k"
      [ "$i" -le 1 ] || printf 'set docs %s-%04d v %d\n' "$name" $((i - 1)) "$i"
      [ $((i % 5)) -ne 0 ] || printf 'unset docs %s-%04d v\n' "$name" $((i - 2))
      [ $((i % 4)) -ne 0 ] || printf 'del docs %s-%04d\n' "$name" $((i - 3))
      printf 'add sets shared s "%s-%04d"\n' "$name" "$i"
      [ $((i % 3)) -ne 0 ] || printf 'remove sets shared s "%s-%04d"\n' "$name" $((i - 1))
    } >"$ops"
    rc=0
    out="$("$LOAD" "$dir" <"$ops" 2>"$err.tmp")" || rc=$?
    if [ "$rc" -ne 0 ] || [ "$out" != "$(grep -c . "$ops") writes applied" ]; then
      echo "round $i: local writes failed (exit $rc, '$out'): $(cat "$err.tmp")" >"$err"
      return 1
    fi
    cat "$ops" >>"$E2E_TMP/ops-$name.txt"
    rc=0
    # --foreground keeps the sync in the writer's process group, which a
    # failing test kills as a whole.
    timeout --foreground 60 "$TETHER" --replica "$dir" sync >/dev/null 2>"$err.sync" || rc=$?
    if grep -qE 'Sanitizer|runtime error' "$err.sync"; then
      echo "round $i: sync reported a sanitizer error: $(head -c 3000 "$err.sync")" >"$err"
      return 1
    fi
    case "$rc" in
      0) syncs_ok=$((syncs_ok + 1)) ;;
      # The server is down or was killed under the sync: expected here,
      # and the only failure expected (a refused push, a gap or a broken
      # chain after a restart would mean the server lost what it acked).
      1) syncs_failed=$((syncs_failed + 1))
         if ! grep -q 'server unreachable' "$err.sync"; then
           echo "round $i: sync failed, and not because the server was unreachable: $(head -c 2000 "$err.sync")" >"$err"
           return 1
         fi
         head -n 1 "$err.sync" | sed 's/[0-9]\{2,\}/N/g' >>"$E2E_TMP/syncfail-$name.txt" ;;
      *) echo "round $i: sync exited $rc (expected 0, or 1 while the server is down): $(head -c 2000 "$err.sync")" >"$err"
         return 1 ;;
    esac
    if ! "$TETHER" --replica "$dir" outcomes >>"$E2E_TMP/outcomes-$name.jsonl" 2>"$err.tmp"; then
      echo "round $i: outcomes failed: $(cat "$err.tmp")" >"$err"
      return 1
    fi
    echo "$i $syncs_ok $syncs_failed" >"$E2E_TMP/progress-$name"
  done
}

check_writers() {
  local k
  for k in $(seq 1 "$R"); do
    [ ! -s "$E2E_TMP/writer-r$k.err" ] || fail "writer r$k: $(cat "$E2E_TMP/writer-r$k.err")"
  done
}

t0=$SECONDS
set -m
for k in $(seq 1 "$R"); do
  writer "$k" >"$E2E_TMP/writer-r$k.log" 2>&1 </dev/null &
  WPID+=("$!")
  e2e_watch "$!"
done
set +m

kills=0 handled=0 dups=0
for round in $(seq 1 "$ROUNDS"); do
  up=$((UP_MIN + RANDOM % UP_SPAN))
  down=$((RANDOM % DOWN_SPAN))
  # Every fifth round the server stays down longer than a sync keeps
  # retrying, so syncs fail and the writers go on offline.
  [ $((round % 5)) -ne 3 ] || down=$((1500 + RANDOM % 1000))
  ms_sleep "$up"
  check_writers
  # What this incarnation handled (read just before the kill, so a lower
  # bound), to show the kills land among pushes.
  n="$(metric S tether_intents_total 2>/dev/null || echo 0)"
  dup="$(metric S 'tether_intents_total{outcome="duplicate"}' 2>/dev/null || echo 0)"
  kill -0 "${SRV_PID[S]}" 2>/dev/null || fail "round $round: the server died on its own before the kill: $(tail -n 30 "${SRV_LOG[S]}")"
  kill9_server S
  kills=$((kills + 1))
  handled=$((handled + n))
  dups=$((dups + dup))
  echo "round $round: up ${up} ms, handled $n intents ($dup duplicates), SIGKILL, down ${down} ms"
  ms_sleep "$down"
  restart_server S
done
chaos_s=$((SECONDS - t0))

touch "$E2E_TMP/stop"
for p in "${WPID[@]}"; do
  for _ in $(seq 1 1200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && fail "a writer did not stop within 120 s"
  wait "$p" || true
done
check_writers
WPID=()
summary=""
for k in $(seq 1 "$R"); do
  read -r wr sok sfail <"$E2E_TMP/progress-r$k" || fail "writer r$k made no progress"
  [ "$sok" -ge 1 ] || fail "writer r$k never synced successfully in $wr rounds; its sync errors: $(sort "$E2E_TMP/syncfail-r$k.txt" | uniq -c)"
  summary="$summary r$k: $wr rounds, $sok syncs ok, $sfail failed;"
done
echo "writers:$summary"
if cat "$E2E_TMP"/syncfail-r*.txt >/dev/null 2>&1; then
  echo "failed syncs said:"
  cat "$E2E_TMP"/syncfail-r*.txt | sort | uniq -c | sort -rn | head -n 8
fi

for k in $(seq 1 "$R"); do
  [ ! -s "$E2E_TMP/writer-r$k.log" ] || fail "writer r$k printed unexpected errors: $(head -c 2000 "$E2E_TMP/writer-r$k.log")"
done
for log in "$E2E_TMP"/srv-S.*.log; do
  if grep -qE 'Sanitizer|runtime error' "$log"; then
    fail "a server incarnation reported a sanitizer error in $(basename "$log"): $(grep -E -A 15 'Sanitizer|runtime error' "$log" | head -n 40)"
  fi
done

# A clean restart, then sync every replica until its outbox is empty, and
# once more so that every replica has pulled every other one's last push.
stop_server S
restart_server S
for k in $(seq 1 "$R"); do
  for attempt in 1 2 3 4 5; do
    rc=0
    timeout 60 "$TETHER" --replica "$(replica_dir "r$k")" sync >/dev/null 2>"$E2E_TMP/final.err" || rc=$?
    rep "r$k" outcomes >>"$E2E_TMP/outcomes-r$k.jsonl" || fail "outcomes of r$k failed"
    [ "$rc" -ne 0 ] || [ -n "$(rep "r$k" outbox)" ] || break
    echo "r$k: final sync attempt $attempt exited $rc: $(head -n 2 "$E2E_TMP/final.err")"
    [ "$attempt" -lt 5 ] || fail "r$k could not empty its outbox after the crashes (last sync exited $rc)"
    sleep 1
  done
done
for k in $(seq 1 "$R"); do
  ok rep "r$k" sync >/dev/null
  rep "r$k" outcomes >>"$E2E_TMP/outcomes-r$k.jsonl" || fail "outcomes of r$k failed"
done
new_replica fresh S
ok rep fresh sync >/dev/null

# ---- G1: every intent made has exactly one outcome, none lost or refused.
intents=0
for k in $(seq 1 "$R"); do
  name="r$k"
  nk="$(grep -c . "$E2E_TMP/ops-$name.txt")"
  intents=$((intents + nk))
  awk '{ print NR "\t" $2 "\t" $3 }' "$E2E_TMP/ops-$name.txt" >"$E2E_TMP/want-seqs-$name.txt"
  jq -r '[.seq, .coll, .id] | @tsv' "$E2E_TMP/outcomes-$name.jsonl" | sort -n -k1,1 \
    >"$E2E_TMP/got-seqs-$name.txt" || fail "outcomes of $name are not JSON"
  cmp -s "$E2E_TMP/want-seqs-$name.txt" "$E2E_TMP/got-seqs-$name.txt" || fail "G1: the outcomes $name received are not exactly one per intent seq 1..$nk (a seq missing = an intent lost or never acknowledged; twice = reported twice) (- expected seq/coll/id, + got):
$(diff "$E2E_TMP/want-seqs-$name.txt" "$E2E_TMP/got-seqs-$name.txt" | head -n 20)"
  bad="$(jq -c 'select(.outcome != "applied" and .outcome != "merged")' "$E2E_TMP/outcomes-$name.jsonl" | head -n 5)"
  [ -z "$bad" ] || fail "G1: intents of $name were not applied (no intent of this workload may be rejected or conflict): $bad"
  st="$(ok rep "$name" status)"
  for want in "pending: 0" "conflicts: 0" "rejected: 0"; do
    assert_contains "$st" "$want" "G1: final status of $name"
  done
done

# ---- The expected state, computed from the record alone (not by tether).
cat "$E2E_TMP"/ops-r*.txt | awk -v docs="$E2E_TMP/want-docs.unsorted" \
    -v ctrs="$E2E_TMP/want-ctr.unsorted" -v sets="$E2E_TMP/want-set.unsorted" '
$1 == "put" && $2 == "ctr"  { n[$3] = 0; next }
$1 == "incr"                { n[$3] += $5; next }
$1 == "put" && $2 == "sets" { next }
$1 == "put" && $2 == "docs" {
  match($4, /"i":[0-9]+/); i[$3] = substr($4, RSTART + 4, RLENGTH - 4)
  match($4, /"r":[0-9]+/); r[$3] = substr($4, RSTART + 4, RLENGTH - 4)
  v[$3] = 0; hasv[$3] = 1; live[$3] = 1; next
}
$1 == "set" && $4 == "v"    { v[$3] = $5; hasv[$3] = 1; next }
$1 == "unset" && $4 == "v"  { hasv[$3] = 0; next }
$1 == "del"                 { live[$3] = 0; next }
$1 == "add"                 { in_set[$5] = 1; next }
$1 == "remove"              { in_set[$5] = 0; next }
{ print "unexpected op in the record: " $0 > "/dev/stderr"; exit 1 }
END {
  for (id in n) printf "%s\t{\"n\":%d}\n", id, n[id] > ctrs
  for (id in live) if (live[id]) {
    if (hasv[id]) printf "%s\t{\"i\":%d,\"r\":%d,\"v\":%d}\n", id, i[id], r[id], v[id] > docs
    else printf "%s\t{\"i\":%d,\"r\":%d}\n", id, i[id], r[id] > docs
  }
  for (e in in_set) if (in_set[e]) print e > sets
}' || fail "cannot compute the expected state from the record"
LC_ALL=C sort "$E2E_TMP/want-ctr.unsorted" >"$E2E_TMP/want-ctr.txt"
LC_ALL=C sort "$E2E_TMP/want-docs.unsorted" >"$E2E_TMP/want-docs.txt"
want_set="$(LC_ALL=C sort "$E2E_TMP/want-set.unsorted" | jq -sc .)"

# ---- G2 + G1 on the server: a fresh replica holds exactly the expected state.
rep fresh ls ctr >"$E2E_TMP/fresh-ctr.txt" || fail "ls ctr failed on the fresh replica"
if ! cmp -s "$E2E_TMP/want-ctr.txt" "$E2E_TMP/fresh-ctr.txt"; then
  msg=""
  while IFS=$'\t' read -r id want; do
    got="$(awk -F'\t' -v id="$id" '$1 == id { print $2 }' "$E2E_TMP/fresh-ctr.txt")"
    [ "$got" = "$want" ] || msg="$msg
  counter ctr/$id: expected $want, got ${got:-nothing} (increments made: $(cat "$E2E_TMP"/ops-r*.txt | grep -c "^incr ctr $id "))"
  done <"$E2E_TMP/want-ctr.txt"
  fail "G2: counters on a fresh replica are not the exact sums of the increments made (lost or doubled):$msg
(- expected, + actual)
$(diff "$E2E_TMP/want-ctr.txt" "$E2E_TMP/fresh-ctr.txt" | head -n 20)"
fi
rep fresh ls docs >"$E2E_TMP/fresh-docs.txt" || fail "ls docs failed on the fresh replica"
cmp -s "$E2E_TMP/want-docs.txt" "$E2E_TMP/fresh-docs.txt" || fail "G1: documents on a fresh replica differ from the record of writes (- expected, + actual):
$(diff "$E2E_TMP/want-docs.txt" "$E2E_TMP/fresh-docs.txt" | head -n 20)"
rep fresh ls sets >"$E2E_TMP/fresh-sets.txt" || fail "ls sets failed on the fresh replica"
got_set="$(cut -f2 "$E2E_TMP/fresh-sets.txt" | jq -c '.s | sort')"
[ "$got_set" = "$want_set" ] || fail "G1: the shared set on a fresh replica differs from the record of adds and removes:
  missing: $(jq -nc --argjson w "$want_set" --argjson g "$got_set" '$w - $g')
  extra:   $(jq -nc --argjson w "$want_set" --argjson g "$got_set" '$g - $w')"

# ---- G4: every replica byte-identical to the fresh one.
for coll in ctr docs sets; do
  for k in $(seq 1 "$R"); do
    rep "r$k" ls "$coll" >"$E2E_TMP/r$k-$coll.txt" || fail "ls $coll failed on r$k"
    cmp -s "$E2E_TMP/fresh-$coll.txt" "$E2E_TMP/r$k-$coll.txt" || fail "G4: r$k's $coll differ from a fresh replica's (- fresh, + r$k):
$(diff "$E2E_TMP/fresh-$coll.txt" "$E2E_TMP/r$k-$coll.txt" | head -n 20)"
  done
done

stop_server S
echo "crash loop: $ROUNDS rounds, $kills kills in ${chaos_s} s, $intents intents from $R replicas, >= $handled intents handled by killed servers (>= $dups duplicates replayed), shared counter $(awk -F'\t' '$1 == "shared" { print $2 }' "$E2E_TMP/fresh-ctr.txt"), $(grep -c . "$E2E_TMP/fresh-docs.txt") documents, $((SECONDS - t0)) s in all"
pass
