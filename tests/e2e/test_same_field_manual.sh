#!/usr/bin/env bash
# G5 with policy manual: concurrent writes to one field are held as a
# conflict for the second pusher, the server value is kept, and `resolve`
# settles it everywhere.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

cfg="$E2E_TMP/policy.json"
echo '{"collections": {"notes": {"policy": "manual"}}}' >"$cfg"
start_server S --config "$cfg"
new_replica A S
new_replica B S

ok rep A put notes n1 '{"title":"base","n":0}'
ok rep A sync
ok rep B sync
assert_eq '{"n":0,"title":"base"}' "$(ok rep B get notes n1)" "B starts from A's document"

ok rep A set notes n1 title '"A-title"'
ok rep B set notes n1 title '"B-title"'
ok rep A sync
ok rep B sync

assert_eq "" "$(ok rep A conflicts)" "the first pusher has no conflict"
c="$(ok rep B conflicts)"
assert_eq 1 "$(printf '%s\n' "$c" | grep -c .)" "exactly one conflict on B: $c"
for kv in '"coll":"notes"' '"id":"n1"' '"field":"title"' '"base":"base"' \
          '"theirs":"A-title"' '"ours":"B-title"'; do
  assert_contains "$c" "$kv" "conflict record carries $kv"
done
assert_eq conflict "$(ok rep B status notes n1)" "B's document is in conflict"
assert_eq '{"n":0,"title":"A-title"}' "$(ok rep B get notes n1)" "the server value is kept on B"
assert_eq '{"n":0,"title":"A-title"}' "$(ok rep A get notes n1)" "the server value is kept on A"

# A conflict on one field does not block other fields.
ok rep A set notes n1 n 5

ok rep B resolve notes n1 title '"merged"'
ok rep B sync
ok rep A sync
ok rep B sync

want='{"n":5,"title":"merged"}'
assert_eq "$want" "$(ok rep A get notes n1)" "A has the resolved value"
assert_eq "$want" "$(ok rep B get notes n1)" "B has the resolved value"
assert_eq "" "$(ok rep A conflicts)" "no conflicts left on A"
assert_eq "" "$(ok rep B conflicts)" "no conflicts left on B"
assert_eq synced "$(ok rep A status notes n1)" "A is synced"
assert_eq synced "$(ok rep B status notes n1)" "B is synced"

# Resolving something that is not in conflict is an error.
if rep B resolve notes n1 title '"again"' 2>/dev/null; then
  fail "resolve without an open conflict succeeded"
fi

# A conflict can be settled with the field absent (null would be a value).
ok rep A set notes n1 title '"A2"'
ok rep B set notes n1 title '"B2"'
ok rep A sync
ok rep B sync
assert_eq conflict "$(ok rep B status notes n1)" "B has a second conflict"
rc=0; rep B resolve notes n1 title '"x"' --unset >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "resolve with both a value and --unset is bad usage"
rc=0; rep B resolve notes n1 title >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "resolve with neither a value nor --unset is bad usage"
ok rep B resolve notes n1 title --unset
assert_eq '{"n":5}' "$(ok rep B get notes n1)" "resolve --unset removes the field at once"
ok rep B sync
ok rep A sync
assert_eq '{"n":5}' "$(ok rep A get notes n1)" "A sees the field removed by the decision"
assert_eq "" "$(ok rep B conflicts)" "the --unset decision settled B's conflict"
assert_eq synced "$(ok rep B status notes n1)" "B is synced after resolve --unset"

stop_server S
pass
