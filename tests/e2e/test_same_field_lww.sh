#!/usr/bin/env bash
# G5 with the default policy (lww): the same field edited on two replicas;
# the write with the later HLC wins on every replica whatever the push
# order, and no conflict is raised.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

start_server S
new_replica A S
new_replica B S

ok rep A put notes n1 '{"title":"base","n":0}'
ok rep A sync
ok rep B sync

ok rep B set notes n1 title '"from-B"'
# HLC carries milliseconds: a pause makes A's write strictly later.
sleep 0.1
ok rep A set notes n1 title '"from-A"'

# The later write is pushed first, so the earlier one arrives second and
# must lose on the timestamp, not win on arrival order.
ok rep A sync
ok rep B sync
ok rep A sync

want='{"n":0,"title":"from-A"}'
assert_eq "$want" "$(ok rep A get notes n1)" "A holds the later write"
assert_eq "$want" "$(ok rep B get notes n1)" "B holds the later write"
assert_eq "" "$(ok rep A conflicts)" "lww raises no conflict on A"
assert_eq "" "$(ok rep B conflicts)" "lww raises no conflict on B"
assert_eq synced "$(ok rep B status notes n1)" "B is synced"

# And the other way round: now B writes last and pushes last.
ok rep A set notes n1 title '"A2"'
sleep 0.1
ok rep B set notes n1 title '"B2"'
ok rep A sync
ok rep B sync
ok rep A sync
want='{"n":0,"title":"B2"}'
assert_eq "$want" "$(ok rep A get notes n1)" "A holds B's later write"
assert_eq "$want" "$(ok rep B get notes n1)" "B holds its later write"
assert_eq "" "$(ok rep B conflicts)" "still no conflict"

stop_server S
pass
