#!/usr/bin/env bash
# The example app (examples/fieldnotes.c, written against tether.h alone)
# end to end: two devices, offline add, sync, and the CLI reading its data.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

FN="$TETHER_BUILD_DIR/fieldnotes"
[ -x "$FN" ] || fail "example binary not built: $FN"

start_server S
url="$(server_url S)"
A="$E2E_TMP/notes-A"
B="$E2E_TMP/notes-B"

id1="$(ok "$FN" "$A" "$url" add 'Saw a heron #birds #river #birds')"
id2="$(ok "$FN" "$A" "$url" add $'He said "hi"\tback #people')"
if [ -z "$id1" ] || [ -z "$id2" ]; then fail "add printed no id"; fi
[ "$id1" != "$id2" ] || fail "two notes got the same id $id1"

list="$(ok "$FN" "$A" "$url" list)"
assert_eq 2 "$(grep -c . <<<"$list")" "A lists two notes: $list"
n1="$(grep "^$id1	" <<<"$list")" || fail "note $id1 not listed: $list"
assert_contains "$n1" $'\tpending\t' "a new note is pending before sync"
assert_contains "$n1" '"tags":["birds","river"]' "hashtags become distinct tags"
assert_contains "$n1" '"text":"Saw a heron #birds #river #birds"' "text kept as typed"
assert_contains "$n1" '"created":' "note has a creation time"
n2="$(grep "^$id2	" <<<"$list")" || fail "note $id2 not listed: $list"
assert_contains "$n2" '"text":"He said \"hi\"\tback #people"' "quotes and tabs are escaped"

out="$(ok "$FN" "$A" "$url" sync)"
assert_eq "synced: 2 notes, 0 pending, 0 conflicts" "$out" "sync summary on A"

ok "$FN" "$B" "$url" sync >/dev/null
listB="$(ok "$FN" "$B" "$url" list)"
assert_eq "$(ok "$FN" "$A" "$url" list)" "$listB" "B lists exactly what A lists"
assert_contains "$listB" $'\tsynced\t' "notes are synced on B"

# The app's replica is an ordinary replica: the CLI reads it.
json1="$(cut -f3 <<<"$n1")"
assert_eq "$json1" "$(ok "$TETHER" --replica "$B" get notes "$id1")" "the CLI reads the app's notes"

# Offline add, failed sync, then catch up.
stop_server S
id3="$(ok "$FN" "$A" "$url" add 'written offline #field')"
if "$FN" "$A" "$url" sync >/dev/null 2>&1; then fail "sync succeeded with the server down"; fi
assert_contains "$(ok "$FN" "$A" "$url" list)" "$id3"$'\tpending' "offline note kept, pending"
restart_server S
ok "$FN" "$A" "$url" sync >/dev/null
ok "$FN" "$B" "$url" sync >/dev/null
listB="$(ok "$FN" "$B" "$url" list)"
assert_eq 3 "$(grep -c . <<<"$listB")" "B has all three notes"
assert_contains "$listB" '"tags":["field"],"text":"written offline #field"' "B has the offline note"

if "$FN" "$A" "$url" frobnicate >/dev/null 2>&1; then fail "unknown command accepted"; fi

stop_server S
pass
