#!/usr/bin/env bash
# Offline first: with the server down, writes succeed and survive process
# restarts (every CLI call is a new process), sync fails clearly and
# touches nothing; once the server is up, everything arrives.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

port="$(free_port)"
new_replica A "http://127.0.0.1:$port"

ok rep A put notes n1 '{"title":"written offline"}'
ok rep A set notes n1 n 1
ok rep A incr notes n1 n 2
ok rep A add notes n1 tags '"field"'
ok rep A put notes n2 '{"title":"doomed"}'
ok rep A del notes n2
want='{"n":3,"tags":["field"],"title":"written offline"}'
assert_eq "$want" "$(ok rep A get notes n1)" "offline writes are visible"

rc=0
rep A sync >"$E2E_TMP/sync.out" 2>"$E2E_TMP/sync.err" || rc=$?
[ "$rc" -ne 0 ] || fail "sync with the server down exited 0"
msg="$(cat "$E2E_TMP/sync.out" "$E2E_TMP/sync.err")"
[ -n "$msg" ] || fail "sync failed without any message"
if ! grep -qiE 'unreachable|connect|refused' <<<"$msg"; then
  fail "sync's message does not say the server is unreachable: $msg"
fi
assert_eq "$want" "$(ok rep A get notes n1)" "a failed sync leaves local data untouched"
assert_eq pending "$(ok rep A status notes n1)" "the writes are still pending"
if rep A get notes n2 >/dev/null 2>&1; then fail "deleted document is visible"; fi
before="$(ok rep A outbox)"
[ -n "$before" ] || fail "outbox is empty after a failed sync"

start_server S --port "$port"
ok rep A sync
assert_eq synced "$(ok rep A status notes n1)" "synced once the server is up"
assert_eq "$want" "$(ok rep A get notes n1)" "A unchanged by its own sync"

new_replica B S
ok rep B sync
assert_eq "$want" "$(ok rep B get notes n1)" "another replica sees the offline writes"
assert_eq "n1"$'\t'"$want" "$(ok rep B ls notes)" "ls lists n1 only: the deleted document stays deleted"

# Survives a server restart too.
stop_server S
restart_server S
new_replica C S
ok rep C sync
assert_eq "$want" "$(ok rep C get notes n1)" "data survives a clean server restart"

stop_server S
pass
