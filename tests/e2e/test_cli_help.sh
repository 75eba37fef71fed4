#!/usr/bin/env bash
# The CLI contract: every subcommand answers --help with exit 0; a malformed
# JSON argument exits 2 naming the problem and records nothing; bad usage
# never exits 0.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

cmds=(serve init put set unset incr add remove del get ls sync status
      conflicts resolve outcomes outbox version)

out="$(ok "$TETHER" --help)"
[ -n "$out" ] || fail "tether --help printed nothing"
for c in "${cmds[@]}"; do
  assert_contains "$out" "$c" "tether --help mentions '$c'"
done

for c in "${cmds[@]}"; do
  rc=0
  out="$("$TETHER" "$c" --help 2>&1)" || rc=$?
  assert_eq 0 "$rc" "tether $c --help exits 0 (output: $out)"
  [ -n "$out" ] || fail "tether $c --help printed nothing"
done

assert_contains "$(ok "$TETHER" version)" "0.1.0" "tether version prints the library version"

R="$(replica_dir A)"
new_replica A "http://127.0.0.1:1"
for c in put set unset incr add remove del get ls sync status conflicts resolve outcomes outbox; do
  rc=0
  "$TETHER" --replica "$R" "$c" --help >/dev/null 2>&1 || rc=$?
  assert_eq 0 "$rc" "tether --replica DIR $c --help exits 0"
done

# expect_bad_json CMD...: must exit 2, say "JSON" on stderr, change nothing.
expect_bad_json() {
  local rc=0 err
  err="$("$TETHER" --replica "$R" "$@" 2>&1 >/dev/null)" || rc=$?
  assert_eq 2 "$rc" "malformed JSON exits 2: tether $*"
  grep -qi json <<<"$err" || fail "error for 'tether $*' does not name JSON: $err"
}
expect_bad_json put notes n1 '{"title": '
expect_bad_json put notes n1 '{title: "x"}'
expect_bad_json put notes n1 "{\"a\":1} trailing"
expect_bad_json set notes n1 title 'not json'
expect_bad_json set notes n1 title '"unterminated'
expect_bad_json add notes n1 tags '[1,'
expect_bad_json remove notes n1 tags '{'
expect_bad_json resolve notes n1 title '{"x"'
if rep A get notes n1 >/dev/null 2>&1; then fail "a rejected put left a document behind"; fi
# An empty outbox may print nothing or a push with no intents; any intent
# would carry a "seq".
assert_not_contains "$(rep A outbox 2>/dev/null || true)" '"seq"' \
  "no intent was recorded by the rejected commands"

# Well-formed JSON of the wrong shape is an error too, not a document.
rc=0; rep A put notes n1 '[1,2]' >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "put with a JSON array instead of an object exited 0"
rc=0; rep A incr notes n1 n abc >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "incr with a non-integer delta exited 0"
rc=0; rep A get notes missing >/dev/null 2>&1 || rc=$?
assert_eq 1 "$rc" "get of an absent document exits 1"
# status of a document the replica does not have is not "synced".
rc=0; err="$(rep A status notes missing 2>&1 >/dev/null)" || rc=$?
assert_eq 1 "$rc" "status of an absent document exits 1"
assert_eq "tether: status: notes/missing: no such document" "$err" \
  "status of an absent document names it"
# ...but a document deleted locally and not yet synced is pending.
ok rep A put notes gone '{"a":1}'
ok rep A del notes gone
assert_eq pending "$(ok rep A status notes gone)" "a deleted, unsynced document is pending"
assert_contains "$("$TETHER" resolve --help)" "--unset" "resolve --help documents --unset"
rc=0; "$TETHER" --replica "$R" frobnicate >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "an unknown subcommand exited 0"
rc=0; "$TETHER" --replica "$E2E_TMP/nowhere" get notes n1 >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a directory that is no replica was accepted"
rc=0; "$TETHER" init --replica "$R" --server http://127.0.0.1:1 >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "init over an existing replica exited 0"

# The partition count is bounded by the server's maximum, 4096.
for p in 0 4097 65536; do
  rc=0
  err="$(timeout 20 "$TETHER" serve --data "$E2E_TMP/parts" --listen 127.0.0.1:0 \
         --partitions "$p" 2>&1)" || rc=$?
  assert_eq 2 "$rc" "serve --partitions $p is bad usage (output: $err)"
  assert_contains "$err" "1 to 4096" "serve --partitions $p names the range"
done

# A malformed server config is refused at start, naming the problem.
echo '{"collections": {"notes": {"policy": "sometimes"}}}' >"$E2E_TMP/bad.json"
rc=0
out="$(timeout 20 "$TETHER" serve --data "$E2E_TMP/srv" --listen 127.0.0.1:"$(free_port)" \
       --config "$E2E_TMP/bad.json" 2>&1)" || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
  fail "serve with an invalid policy did not exit with an error (rc=$rc): $out"
fi
assert_not_contains "$out" "listening on" "serve with a bad config must not listen"
grep -qiE 'policy|sometimes|config' <<<"$out" || fail "serve's error does not name the bad policy: $out"

pass
