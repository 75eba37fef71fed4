#!/usr/bin/env bash
# G4/G5: concurrent edits of different fields of one document both survive,
# every replica converges to the same bytes, and nothing is a conflict.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

start_server S
new_replica A S
new_replica B S

ok rep A put notes n1 '{"title":"draft","n":1,"body":"x"}'
ok rep A sync
ok rep B sync
assert_eq '{"body":"x","n":1,"title":"draft"}' "$(ok rep B get notes n1)" "B sees A's document after sync"

# Offline: neither syncs while both edit.
ok rep A set notes n1 title '"final"'
ok rep B set notes n1 n 2
assert_eq '{"body":"x","n":1,"title":"final"}' "$(ok rep A get notes n1)" "A's own edit is visible at once"
assert_eq '{"body":"x","n":2,"title":"draft"}' "$(ok rep B get notes n1)" "B's own edit is visible at once"
assert_eq pending "$(ok rep A status notes n1)" "A's edit is pending before sync"

ok rep A sync
ok rep B sync
ok rep A sync

want='{"body":"x","n":2,"title":"final"}'
assert_eq "$want" "$(ok rep A get notes n1)" "A has both edits"
assert_eq "$want" "$(ok rep B get notes n1)" "B has both edits"
assert_eq "$(ok rep A ls notes)" "$(ok rep B ls notes)" "ls is identical on A and B"
assert_eq "" "$(ok rep A conflicts)" "no conflicts on A"
assert_eq "" "$(ok rep B conflicts)" "no conflicts on B"
assert_eq synced "$(ok rep A status notes n1)" "A is synced"
assert_eq synced "$(ok rep B status notes n1)" "B is synced"

# A third replica that was never offline bootstraps to the same bytes.
new_replica C S
ok rep C sync
assert_eq "$want" "$(ok rep C get notes n1)" "a fresh replica converges too"

stop_server S
pass
