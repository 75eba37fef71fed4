# tests/e2e/lib.sh — sourced by every tests/e2e/test_*.sh.
#
# Each test is `bash test_x.sh PATH/TO/tether` (ctest passes the binary and
# sets TETHER_BUILD_DIR). It starts real `tether serve` processes on loopback
# ports and drives real replicas through the CLI. Everything lives in one
# temporary directory; the EXIT trap kills every process the test started
# and removes it. Every wait is bounded.
#
# Helpers:
#   start_server NAME [--port P] [--config FILE] [-- EXTRA SERVE ARGS]
#   stop_server NAME          SIGTERM, must exit 0 within 15 s
#   kill9_server NAME         SIGKILL (crash), data dir kept for a restart
#   restart_server NAME       same port, same store (data dir or Redis), same
#                             config and extra serve arguments
#   server_url NAME
#   new_replica NAME SERVER_NAME|URL
#   rep NAME ARGS...          tether --replica <dir of NAME> ARGS...
#   ok CMD...                 run, print stdout; on failure fail with stderr
#   bg CMD...                 run in the background, killed by the trap
#   free_port, wait_until SECONDS CMD..., http_post URL FILE OUTFILE
#   fail MSG, assert_eq EXPECTED ACTUAL MSG, assert_contains HAY NEEDLE MSG,
#   assert_not_contains HAY NEEDLE MSG, pass
#
# The server's store: TETHER_E2E_BACKEND =
#   lmdb     (default) each server NAME keeps its data in its own --data dir;
#   redis    one redis-server (AOF, appendfsync always), started in the test's
#            temporary directory at the first start_server, shared by every
#            server of the test (--backend redis://...);
#   cluster  a 3-master Redis Cluster started the same way, every server on
#            it with --backend redis-cluster://... --partitions 8.
# Redis is started through tests/redis/redis-harness.sh, outlives restarts
# of the tether servers (a restart finds its state there, as a restart on
# LMDB finds its data dir), and is stopped by PID by the EXIT trap. Without
# redis-server the test exits 77 (ctest: skipped). A test that passes its
# own --backend after `--` gets that instead. Helpers for it:
#   e2e_backend               prints lmdb, redis or cluster
#   e2e_store_args DIR        E2E_STORE_ARGS=(the serve arguments selecting
#                             the store), starting Redis at the first call
#   E2E_STORE_URL             the Redis URL once started ("" before)

set -euo pipefail

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
  echo "usage: bash $0 PATH/TO/tether  (got: '${1:-}')" >&2
  exit 2
fi
E2E_BACKEND="${TETHER_E2E_BACKEND:-lmdb}"
case "$E2E_BACKEND" in
  lmdb) ;;
  redis | cluster)
    if ! command -v "${TETHER_REDIS_SERVER:-redis-server}" >/dev/null 2>&1 ||
      ! command -v "${TETHER_REDIS_CLI:-redis-cli}" >/dev/null 2>&1; then
      echo "SKIP: TETHER_E2E_BACKEND=$E2E_BACKEND needs redis-server and redis-cli (scripts/deps test)"
      exit 77
    fi
    # shellcheck source=../redis/redis-harness.sh
    . "$(cd "$(dirname "${BASH_SOURCE[0]}")/../redis" && pwd)/redis-harness.sh"
    ;;
  *)
    echo "TETHER_E2E_BACKEND=$E2E_BACKEND: expected lmdb, redis or cluster" >&2
    exit 2
    ;;
esac
E2E_STORE_URL=""
TETHER="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
TETHER_BUILD_DIR="${TETHER_BUILD_DIR:-$(dirname "$TETHER")}"
unset TETHER_REPLICA
E2E_NAME="$(basename "$0" .sh)"
E2E_TMP="$(mktemp -d "${TMPDIR:-/tmp}/tether-e2e.XXXXXX")"

declare -A SRV_PID=() SRV_PORT=() SRV_URL=() SRV_DATA=() SRV_LOG=() SRV_CONFIG=() SRV_STARTS=() SRV_EXTRA=()
E2E_BG=()
E2E_SHELL=$$

# True when the binary under test was built with -DTETHER_SANITIZE=ON, so a
# test can scale its workload to the slower build.
e2e_sanitized() {
  grep -q '^TETHER_SANITIZE:BOOL=ON' "$TETHER_BUILD_DIR/CMakeCache.txt" 2>/dev/null
}

e2e_cleanup() {
  local rc=$? name pid
  for name in "${!SRV_PID[@]}"; do
    pid="${SRV_PID[$name]}"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "$E2E_NAME: server $name (pid $pid) died unexpectedly; its log is below" >&2
      rc=1
    fi
  done
  for name in "${!SRV_PID[@]}"; do
    pid="${SRV_PID[$name]}"
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for pid in "${E2E_BG[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  # Redis last: by PID, SIGTERM first (it exits at once), SIGKILL after 10 s.
  if declare -F rh_stop_all >/dev/null; then rh_stop_all; fi
  if [ "$rc" -ne 0 ]; then
    local log
    for log in "$E2E_TMP"/srv-*.log "$E2E_TMP"/redis/redis.log "$E2E_TMP"/redis/node*/redis.log; do
      [ -f "$log" ] || continue
      echo "---- tail of ${log#"$E2E_TMP"/} ----" >&2
      tail -n 30 "$log" >&2
    done
    echo "$E2E_NAME: FAILED (exit $rc)" >&2
  fi
  if [ -n "${E2E_KEEP:-}" ]; then
    echo "kept $E2E_TMP" >&2
  else
    rm -rf "$E2E_TMP"
  fi
  exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL [$E2E_NAME]: $*" >&2
  exit 1
}

pass() {
  echo "PASS [$E2E_NAME]"
}

assert_eq() {
  if [ "$1" != "$2" ]; then
    fail "$3
  expected: $1
  actual:   $2"
  fi
}

assert_contains() {
  case "$1" in
    *"$2"*) ;;
    *) fail "$3
  expected to contain: $2
  actual: $1" ;;
  esac
}

assert_not_contains() {
  case "$1" in
    *"$2"*) fail "$3
  expected NOT to contain: $2
  actual: $1" ;;
    *) ;;
  esac
}

# ok CMD...: runs CMD; prints its stdout; on non-zero exit fails the test
# with the command, its exit code and its stderr. Use as x="$(ok ...)" or
# plainly; in a command substitution the failure message is still printed
# and set -e ends the test.
ok() {
  local err="$E2E_TMP/ok.err" rc=0
  "$@" 2>"$err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "command failed (exit $rc): $*
$(head -c 2000 "$err")"
  fi
}

bg() {
  "$@" &
  E2E_BG+=("$!")
  e2e_watch "$!"
}

# e2e_watch PID: if this test's shell dies without running its trap (e.g.
# SIGKILL from a ctest timeout), PID is killed too instead of living on.
e2e_watch() {
  (
    trap - EXIT
    while kill -0 "$E2E_SHELL" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
    kill -0 "$E2E_SHELL" 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
  ) >/dev/null 2>&1 </dev/null &
  E2E_BG+=("$!")
  disown "$!"
}

# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds;
# returns 1 after SECONDS.
wait_until() {
  local limit=$(($1 * 10)) i=0
  shift
  while [ "$i" -lt "$limit" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

# A loopback port nobody listens on. Ports come from below the kernel's
# ephemeral range so client sockets do not take them meanwhile; a server
# that still fails to bind is retried by start_server.
free_port() {
  local i port
  for i in $(seq 1 100); do
    port=$((20000 + (RANDOM * 32768 + RANDOM + i) % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  fail "no free loopback port found"
}

e2e_backend() {
  echo "$E2E_BACKEND"
}

# e2e_redis_start: the test's Redis (or cluster), once; sets E2E_STORE_URL.
e2e_redis_start() {
  [ -z "$E2E_STORE_URL" ] || return 0
  local p
  case "$E2E_BACKEND" in
    redis)
      start_redis "$E2E_TMP/redis" || fail "redis-server did not start: $(tail -n 5 "$E2E_TMP/redis/redis.log" 2>/dev/null)"
      e2e_watch "$REDIS_PID"
      E2E_STORE_URL="$REDIS_URL"
      ;;
    cluster)
      start_cluster "$E2E_TMP/redis" || fail "the Redis Cluster did not start: $(tail -n 5 "$E2E_TMP/redis/create.log" 2>/dev/null)"
      for p in $CLUSTER_PIDS; do e2e_watch "$p"; done
      E2E_STORE_URL="$CLUSTER_URL"
      ;;
  esac
}

# e2e_store_args DATA_DIR: sets the array E2E_STORE_ARGS to the serve
# arguments selecting the store (starts Redis at the first call). Call it in
# the test's shell, not in $(...): Redis must be started by that shell.
e2e_store_args() {
  case "$E2E_BACKEND" in
    lmdb) E2E_STORE_ARGS=(--data "$1") ;;
    redis) e2e_redis_start; E2E_STORE_ARGS=(--backend "$E2E_STORE_URL") ;;
    cluster) e2e_redis_start; E2E_STORE_ARGS=(--backend "$E2E_STORE_URL" --partitions 8) ;;
  esac
}

start_server() {
  local name="$1" port="" config="" i attempt attempts=5 pid log url
  shift
  local extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --config) config="$2"; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) fail "start_server: unknown option $1" ;;
    esac
  done
  [ -z "${SRV_PID[$name]:-}" ] || fail "start_server: $name is already running"
  [ -z "$port" ] || attempts=1
  SRV_DATA[$name]="${SRV_DATA[$name]:-$E2E_TMP/srv-$name.data}"
  SRV_CONFIG[$name]="$config"
  # Kept for restart_server, quoted so that it survives word splitting.
  SRV_EXTRA[$name]=""
  [ "${#extra[@]}" -eq 0 ] || SRV_EXTRA[$name]="$(printf '%q ' "${extra[@]}")"
  local store=()
  case " ${extra[*]-} " in
    *" --backend "* | *" --data "*) ;; # the test chose its store itself
    *)
      e2e_store_args "${SRV_DATA[$name]}"
      store=("${E2E_STORE_ARGS[@]}")
      ;;
  esac
  for attempt in $(seq 1 "$attempts"); do
    [ "$attempts" -eq 1 ] || port="$(free_port)"
    SRV_STARTS[$name]=$((${SRV_STARTS[$name]:-0} + 1))
    log="$E2E_TMP/srv-$name.${SRV_STARTS[$name]}.log"
    local args=(serve ${store[@]+"${store[@]}"} --listen "127.0.0.1:$port")
    [ -z "$config" ] || args+=(--config "$config")
    : >"$log" # exists before the first grep below
    "$TETHER" "${args[@]}" ${extra[@]+"${extra[@]}"} >"$log" 2>&1 &
    pid=$!
    e2e_watch "$pid"
    for i in $(seq 1 150); do
      if grep -q 'listening on' "$log"; then
        url="$(grep -o 'listening on http://[^ ]*' "$log" | head -n 1 | sed 's/^listening on //')"
        SRV_PID[$name]="$pid"
        SRV_PORT[$name]="$port"
        SRV_URL[$name]="${url:-http://127.0.0.1:$port}"
        SRV_LOG[$name]="$log"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      fail "server $name did not print 'listening on' within 15 s: $(tail -n 5 "$log")"
    fi
    wait "$pid" 2>/dev/null || true
    echo "server $name (attempt $attempt, port $port) exited: $(tail -n 3 "$log")" >&2
  done
  fail "server $name could not be started"
}

server_url() {
  echo "${SRV_URL[$1]:?no server $1}"
}

stop_server() {
  local name="$1" pid rc=0 i
  pid="${SRV_PID[$name]:?server $name is not running}"
  if ! kill -TERM "$pid" 2>/dev/null; then
    wait "$pid" || rc=$?
    SRV_PID[$name]=""
    fail "server $name had already exited (status $rc): $(tail -n 20 "${SRV_LOG[$name]}")"
  fi
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    SRV_PID[$name]=""
    fail "server $name did not stop within 15 s of SIGTERM"
  fi
  wait "$pid" || rc=$?
  SRV_PID[$name]=""
  [ "$rc" -eq 0 ] || fail "server $name exited $rc after SIGTERM (expected a clean 0): $(tail -n 20 "${SRV_LOG[$name]}")"
}

kill9_server() {
  local name="$1" pid
  pid="${SRV_PID[$name]:?server $name is not running}"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  SRV_PID[$name]=""
}

restart_server() {
  local name="$1" extra=()
  [ -n "${SRV_PORT[$name]:-}" ] || fail "restart_server: $name never started"
  eval "extra=(${SRV_EXTRA[$name]:-})"
  local args=(--port "${SRV_PORT[$name]}")
  [ -z "${SRV_CONFIG[$name]}" ] || args+=(--config "${SRV_CONFIG[$name]}")
  start_server "$name" "${args[@]}" -- ${extra[@]+"${extra[@]}"}
}

replica_dir() {
  echo "$E2E_TMP/r-$1"
}

new_replica() {
  local name="$1" url="$2"
  case "$url" in
    http://*) ;;
    *) url="$(server_url "$url")" ;;
  esac
  ok "$TETHER" init --replica "$(replica_dir "$name")" --server "$url" >/dev/null
}

rep() {
  local name="$1"
  shift
  "$TETHER" --replica "$(replica_dir "$name")" "$@"
}

# http_post URL FILE OUTFILE: POSTs FILE as JSON; prints the HTTP status;
# the response body goes to OUTFILE.
http_post() {
  curl -sS --max-time 60 -o "$3" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary "@$2" "$1"
}

http_get_status() {
  curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$1"
}

# metric SERVER NAME: the sum of every sample of Prometheus metric NAME
# (all label sets) on SERVER's /metrics; 0 when absent.
metric() {
  local out
  out="$(curl -sS --max-time 30 "$(server_url "$1")/metrics")" || return 1
  awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d\n", s }' <<<"$out"
}
