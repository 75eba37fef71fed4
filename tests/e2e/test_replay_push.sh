#!/usr/bin/env bash
# G2: the same push delivered twice is applied once. The exact body the
# replica would send (`tether outbox`) is POSTed by hand, twice.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

start_server S
url="$(server_url S)"
new_replica A S

ok rep A put stats s1 '{"n":10}'
ok rep A sync

ok rep A incr stats s1 n 7
body="$E2E_TMP/push.json"
ok rep A outbox >"$body"
assert_eq 1 "$(grep -c . "$body")" "outbox prints one line"
assert_contains "$(cat "$body")" '"incr"' "the outbox body carries the incr"

st1="$(http_post "$url/v1/push" "$body" "$E2E_TMP/r1.json")"
st2="$(http_post "$url/v1/push" "$body" "$E2E_TMP/r2.json")"
assert_eq 200 "$st1" "first delivery accepted: $(cat "$E2E_TMP/r1.json")"
assert_eq 200 "$st2" "second delivery accepted: $(cat "$E2E_TMP/r2.json")"
assert_not_contains "$(tr -d ' ' <"$E2E_TMP/r1.json")" '"duplicate":true' "first delivery is not a duplicate"
assert_contains "$(tr -d ' ' <"$E2E_TMP/r2.json")" '"duplicate":true' "second delivery reports duplicate"

new_replica B S
ok rep B sync
assert_eq '{"n":17}' "$(ok rep B get stats s1)" "a fresh replica sees the increment once"

# The replica itself now delivers the same intent a third time.
ok rep A sync
assert_eq '{"n":17}' "$(ok rep A get stats s1)" "the replica converges without double counting"
assert_eq synced "$(ok rep A status stats s1)" "the replica's intent is settled"
ok rep B sync
assert_eq '{"n":17}' "$(ok rep B get stats s1)" "still applied once after the replica's own push"

stop_server S
pass
