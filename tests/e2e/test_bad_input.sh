#!/usr/bin/env bash
# Hostile and broken requests: each is answered 4xx with a JSON body naming
# the error, nothing changes, and the server keeps serving. Broken bodies
# are made from a real captured push (`tether outbox`) and, where only one
# defect is wanted, re-hashed so that defect is the only one.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

start_server S
url="$(server_url S)"
new_replica A S
ok rep A put stats s1 '{"n":1}'
ok rep A sync
ok rep A incr stats s1 n 5

body="$(ok rep A outbox)"
re='^\{"intents":\[(.*)\],"replica":"([0-9a-f]{32})","seen":1,"v":1\}$'
[[ $body =~ $re ]] || fail "outbox body is not canonical {\"intents\":[...],\"replica\":...,\"seen\":1,\"v\":1}: $body"
intent="${BASH_REMATCH[1]}"
rid="${BASH_REMATCH[2]}"
assert_contains "$intent" '"seq":2' "the pending intent is seq 2"

# rehash INTENT: recomputes "hash" = BLAKE2b-256 of the canonical intent
# without its hash key (PROTOCOL.md). Canonical keys are sorted, so "hash"
# sits right before "hlc".
rehash() {
  local noh h
  noh="$(printf '%s' "$1" | sed -E 's/"hash":"[0-9a-f]{64}",//')"
  h="$(printf '%s' "$noh" | b2sum -l 256 | cut -d' ' -f1)"
  printf '%s' "$noh" | sed -E "s/\"hlc\":/\"hash\":\"$h\",\"hlc\":/"
}
assert_eq "$intent" "$(rehash "$intent")" \
  "the outbox intent's hash is BLAKE2b-256 of its canonical JSON (PROTOCOL.md)"

mkbody() { # mkbody FILE INTENT [REPLICA]
  printf '{"intents":[%s],"replica":"%s","v":1}' "$2" "${3:-$rid}" >"$1"
}
edit() { # edit SED_EXPR: the captured intent edited, hash left stale
  printf '%s' "$intent" | sed -E "$1"
}

pull_snapshot() {
  printf '{"v":1,"replica":"%s","cursor":[],"limit":5000,"wait_ms":0}' "$(printf 'f%.0s' $(seq 1 32))" >"$E2E_TMP/pull.json"
  local st
  st="$(http_post "$url/v1/pull" "$E2E_TMP/pull.json" "$E2E_TMP/snap.json")"
  assert_eq 200 "$st" "snapshot pull"
  cat "$E2E_TMP/snap.json"
}

before="$(pull_snapshot)"
commits_before="$(metric S tether_commits_total)"
assert_contains "$before" '"n":1' "the snapshot holds the synced document"

n_bad=0
# expect PATH WHAT STATUS_RE ERROR_RE FILE [CURL ARGS...]
expect() {
  local path="$1" what="$2" st_re="$3" err_re="$4" file="$5" st resp
  shift 5
  st="$(curl -sS --max-time 120 -o "$E2E_TMP/resp.json" -w '%{http_code}' \
        -H 'Content-Type: application/json' "$@" --data-binary "@$file" "$url$path" 2>"$E2E_TMP/curl.err" || true)"
  resp="$(head -c 500 "$E2E_TMP/resp.json" 2>/dev/null | tr -d ' \n' || true)"
  [[ $st =~ ^($st_re)$ ]] || fail "$what: HTTP $st, expected $st_re (body: $resp $(cat "$E2E_TMP/curl.err"))"
  [[ $resp =~ \"error\":\"($err_re)\" ]] || fail "$what: body does not name error $err_re: $resp"
  n_bad=$((n_bad + 1))
}

f="$E2E_TMP/bad.json"
printf '{"v":1,"replica":' >"$f";              expect /v1/push "truncated JSON" 400 json "$f"
printf 'hello' >"$f";                          expect /v1/push "not JSON" 400 json "$f"
printf '[1,2,3]' >"$f";                        expect /v1/push "JSON array, not object" 400 json "$f"
: >"$f";                                       expect /v1/push "empty body" 400 json "$f"
printf '%s' "$body" | sed 's/"v":1}$/"v":2}/' >"$f"
                                               expect /v1/push "v = 2" 400 version "$f"
printf '{"intents":[%s],"replica":"%s"}' "$intent" "$rid" >"$f"
                                               expect /v1/push "v missing" 400 version "$f"
mkbody "$f" "$(rehash "$(edit 's/"kind":"incr"/"kind":"explode"/')")"
                                               expect /v1/push "unknown op kind" 400 invalid "$f"
mkbody "$f" "$(rehash "$(edit 's/"seq":2/"seq":"2"/')")"
                                               expect /v1/push "seq as a string" 400 invalid "$f"
mkbody "$f" "$(rehash "$(edit 's/"hlc":([0-9]+)/"hlc":[\1]/')")"
                                               expect /v1/push "hlc as an array" 400 invalid "$f"
mkbody "$f" "$(rehash "$(edit 's/"value":5/"value":"5"/')")"
                                               expect /v1/push "incr by a string" 400 invalid "$f"
mkbody "$f" "$(rehash "$(edit 's/"coll":"stats",//')")"
                                               expect /v1/push "coll missing" 400 invalid "$f"
mkbody "$f" "$(rehash "$(edit 's/"id":"s1"/"id":""/')")"
                                               expect /v1/push "empty id" 400 invalid "$f"
printf '{"intents":{},"replica":"%s","v":1}' "$rid" >"$f"
                                               expect /v1/push "intents not an array" 400 invalid "$f"
mkbody "$f" "$intent" "0123456789abcdef0123456789abcdef"
                                               expect /v1/push "replica id mismatch" 400 replica "$f"
mkbody "$f" "$(edit 's/"hlc":([0-9]+)/"hlc":1\1/')"
                                               expect /v1/push "stale hash" 400 hash "$f"
mkbody "$f" "$(edit 's/"prev":"[0-9a-f]{64}"/"prev":"'"$(printf 'a%.0s' $(seq 1 64))"'"/')"
                                               expect /v1/push "prev edited, hash stale" '400|409' 'hash|chain' "$f"
mkbody "$f" "$(rehash "$(edit 's/"prev":"[0-9a-f]{64}"/"prev":"'"$(printf 'a%.0s' $(seq 1 64))"'"/')")"
                                               expect /v1/push "broken hash chain" 409 chain "$f"
mkbody "$f" "$(rehash "$(edit 's/"seq":2/"seq":4/')")"
                                               expect /v1/push "seq gap" 409 gap "$f"
assert_contains "$(tr -d ' ' <"$E2E_TMP/resp.json")" '"expected":2' "the gap answer says where to resume"
# Built with bash expansions: a 1 MiB argument to sed would exceed the
# kernel's per-argument limit.
big="$(head -c $((1024 * 1024 + 64)) /dev/zero | tr '\0' v)"
pre="${intent%%\"ops\":\[*}"
rest="${intent#*\"ops\":\[}"
rest="${rest#*\]}"
mkbody "$f" "$(rehash "$pre\"ops\":[{\"field\":\"big\",\"kind\":\"set\",\"value\":\"$big\"}]$rest")"
unset big pre rest
                                               expect /v1/push "value over 1 MiB" 413 too_big "$f"
{
  printf '{"intents":[],"pad":"'
  head -c $((64 * 1024 * 1024 + 4096)) /dev/zero | tr '\0' p
  printf '","replica":"%s","v":1}' "$rid"
} >"$f"
                                               expect /v1/push "body over 64 MiB" 413 too_big "$f"
mkbody "$f" "$intent"
                                               expect /v1/push "gzip encoding" 415 encoding "$f" -H 'Content-Encoding: gzip'
# Cursors of the server's partition count (1 on LMDB, more on a cluster:
# TETHER_E2E_BACKEND), and of one more.
nparts="$(tr -d ' \n' <<<"$before" | grep -o '"cursor":\[[0-9,]*\]' | head -n 1 | tr -cd ',' | wc -c)"
nparts=$((nparts + 1))
ahead="$(printf '999999999,%.0s' $(seq 1 "$nparts"))"
wrong="$(printf '0,%.0s' $(seq 0 "$nparts"))"
printf '{"v":1,"replica":"%s","cursor":[%s]}' "$rid" "${ahead%,}" >"$f"
                                               expect /v1/pull "cursor ahead of the server" 400 cursor "$f"
assert_contains "$(cat "$E2E_TMP/resp.json")" "ahead of the server" "the answer to a cursor of $nparts partitions says it is ahead"
printf '{"v":1,"replica":"%s","cursor":[%s]}' "$rid" "${wrong%,}" >"$f"
                                               expect /v1/pull "cursor with wrong partition count" 400 cursor "$f"
printf '{"v":7,"replica":"%s","cursor":[]}' "$rid" >"$f"
                                               expect /v1/pull "pull v = 7" 400 version "$f"
printf '{"v":1' >"$f";                         expect /v1/pull "pull truncated JSON" 400 json "$f"
printf '{}' >"$f";                             expect /v1/nothing-here "unknown path" 404 not_found "$f"

st="$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$url/v1/push")"
assert_eq 405 "$st" "GET on /v1/push"

echo "$n_bad bad requests answered as expected"

# Still serving, nothing changed.
assert_eq 200 "$(http_get_status "$url/v1/health")" "health after $n_bad bad requests"
assert_contains "$(curl -sS --max-time 30 "$url/v1/health" | tr -d ' ')" '"status":"ok"' "health body"
assert_eq "$before" "$(pull_snapshot)" "state unchanged by the bad requests"
assert_eq "$commits_before" "$(metric S tether_commits_total)" "no commit by the bad requests"
bad="$(metric S tether_bad_requests_total)"
[ "$bad" -gt 0 ] || fail "tether_bad_requests_total did not count the bad requests"

# The real intent goes through, once.
ok rep A sync
assert_eq '{"n":6}' "$(ok rep A get stats s1)" "the replica's own push works afterwards"
new_replica B S
ok rep B sync
assert_eq '{"n":6}' "$(ok rep B get stats s1)" "a fresh replica sees the increment once"

stop_server S
pass
