#!/usr/bin/env bash
# redis-harness.sh — a redis-server, or a 3-master Redis Cluster, on
# loopback ports in a given directory, for tests. Every wait is bounded;
# servers are stopped by PID, never by name.
#
# Sourced (bash):
#   . tests/redis/redis-harness.sh
#   start_redis DIR     sets REDIS_PORT REDIS_PID REDIS_URL
#   start_cluster DIR   sets CLUSTER_PORTS CLUSTER_PIDS (space-separated)
#                       and CLUSTER_URL
#   restart_redis DIR PORT   a server again on PORT and DIR (AOF kept);
#                            sets REDIS_PID
#   restart_cluster_node DIR PORT   a cluster node again on PORT and DIR
#                       (AOF and nodes.conf kept), in CLUSTER_PIDS instead
#                       of the dead one; waits for cluster_state:ok
#   crash_pid PID       SIGKILL (a crash: no shutdown, no last fsync), reaped
#                       and forgotten (its PID may be reused)
#   stop_pid PID...     SIGTERM, then SIGKILL after 10 s
#   rh_stop_all         stops everything started through this file
# Run:
#   redis-harness.sh single DIR    prints "URL PID"
#   redis-harness.sh cluster DIR   prints "URL PID PID PID"
#   redis-harness.sh stop PID...
# The servers run with --appendonly yes --appendfsync always --save "":
# every acknowledged write is in the AOF on disk before the reply.

RH_PIDS=${RH_PIDS:-}
RH_SERVER=${TETHER_REDIS_SERVER:-redis-server}
RH_CLI=${TETHER_REDIS_CLI:-redis-cli}

rh_die() {
  echo "redis-harness: $*" >&2
  return 1
}

# 0 when nothing accepts connections on 127.0.0.1:PORT.
rh_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port P with P (and P+10000, the cluster bus, when $2 = bus) free. Both
# stay below the kernel's ephemeral range (32768-60999 by default), so no
# client socket can take the port of a node that is down to be restarted.
rh_pick_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    p=$((20500 + (RANDOM * 32768 + RANDOM) % 2200))
    if rh_port_free "$p" && { [ "${2:-}" != bus ] || rh_port_free $((p + 10000)); }; then
      echo "$p"
      return 0
    fi
    tries=$((tries + 1))
  done
  rh_die "no free loopback port found"
}

# Waits (at most 10 s) until the server on PORT answers PING; fails early if
# PID died (e.g. its port was taken meanwhile).
rh_wait_ping() {
  local port=$1 pid=$2 i
  for i in $(seq 1 100); do
    if [ "$("$RH_CLI" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
      return 0
    fi
    rh_alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

# rh_spawn DIR PORT [ARGS...]: starts redis-server in the background; echoes
# its PID. Not daemonized, so the PID is the server's.
rh_spawn() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir" || return 1
  "$RH_SERVER" --port "$port" --bind 127.0.0.1 --dir "$dir" \
    --appendonly yes --appendfsync always --save "" --daemonize no \
    --logfile "$dir/redis.log" "$@" </dev/null >/dev/null 2>&1 &
  echo $!
}

# rh_start_one DIR BUS [ARGS...]: picks a port, starts, waits; retries on a
# port lost to a race. Sets RH_PORT RH_PID.
rh_start_one() {
  local dir=$1 bus=$2 attempt pid port
  shift 2
  command -v "$RH_SERVER" >/dev/null 2>&1 || rh_die "$RH_SERVER not found; install redis-server (scripts/deps test)" || return 1
  for attempt in 1 2 3 4 5; do
    port=$(rh_pick_port "$bus") || return 1
    pid=$(rh_spawn "$dir" "$port" "$@") || return 1
    if rh_wait_ping "$port" "$pid"; then
      RH_PORT=$port
      RH_PID=$pid
      RH_PIDS="$RH_PIDS $pid"
      return 0
    fi
    stop_pid "$pid"
  done
  rh_die "redis-server did not start in $dir (see $dir/redis.log)"
}

start_redis() {
  local dir=${1:?start_redis DIR}
  rh_start_one "$dir" nobus || return 1
  REDIS_PORT=$RH_PORT
  REDIS_PID=$RH_PID
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
}

restart_redis() {
  local dir=${1:?restart_redis DIR PORT} port=${2:?restart_redis DIR PORT} pid
  pid=$(rh_spawn "$dir" "$port") || return 1
  rh_wait_ping "$port" "$pid" || { stop_pid "$pid"; rh_die "redis-server did not restart on $port"; return 1; }
  RH_PIDS="$RH_PIDS $pid"
  REDIS_PID=$pid
}

RH_CLUSTER_ARGS=(--cluster-enabled yes --cluster-config-file nodes.conf
  --cluster-node-timeout 2000)

# Waits (at most 30 s) until every node of CLUSTER_PORTS says
# cluster_state:ok.
rh_wait_cluster_ok() {
  local i ok p state
  for i in $(seq 1 300); do
    ok=1
    for p in $CLUSTER_PORTS; do
      state=$("$RH_CLI" -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep '^cluster_state:')
      [ "$state" = "cluster_state:ok" ] || ok=0
    done
    [ $ok = 0 ] || return 0
    sleep 0.1
  done
  return 1
}

start_cluster() {
  local dir=${1:?start_cluster DIR} i addrs=""
  CLUSTER_PORTS=""
  CLUSTER_PIDS=""
  for i in 1 2 3; do
    rh_start_one "$dir/node$i" bus "${RH_CLUSTER_ARGS[@]}" || return 1
    CLUSTER_PORTS="$CLUSTER_PORTS $RH_PORT"
    CLUSTER_PIDS="$CLUSTER_PIDS $RH_PID"
    addrs="$addrs 127.0.0.1:$RH_PORT"
  done
  CLUSTER_PORTS=${CLUSTER_PORTS# }
  CLUSTER_PIDS=${CLUSTER_PIDS# }
  # shellcheck disable=SC2086
  if ! timeout 60 "$RH_CLI" --cluster create $addrs --cluster-replicas 0 \
    --cluster-yes >"$dir/create.log" 2>&1; then
    rh_die "redis-cli --cluster create failed (see $dir/create.log)"
    return 1
  fi
  if rh_wait_cluster_ok; then
    CLUSTER_URL="redis-cluster://$(echo $addrs | tr ' ' ',')"
    return 0
  fi
  rh_die "cluster in $dir never reached cluster_state:ok"
}

restart_cluster_node() {
  local dir=${1:?restart_cluster_node DIR PORT} port=${2:?restart_cluster_node DIR PORT} pid p pids=""
  pid=$(rh_spawn "$dir" "$port" "${RH_CLUSTER_ARGS[@]}") || return 1
  rh_wait_ping "$port" "$pid" || { stop_pid "$pid"; rh_die "cluster node did not restart on $port"; return 1; }
  RH_PIDS="$RH_PIDS $pid"
  RH_PID=$pid
  for p in $CLUSTER_PIDS; do
    rh_alive "$p" && pids="$pids $p"
  done
  CLUSTER_PIDS="${pids# } $pid"
  rh_wait_cluster_ok || rh_die "cluster not back to cluster_state:ok after restarting the node on $port"
}

crash_pid() {
  local pid=${1:?crash_pid PID} i p keep=""
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    rh_alive "$pid" || break
    sleep 0.05
  done
  wait "$pid" 2>/dev/null || true
  for p in $RH_PIDS; do [ "$p" = "$pid" ] || keep="$keep $p"; done
  RH_PIDS=$keep
  ! rh_alive "$pid"
}

# 0 while PID runs (a zombie, not yet reaped by a parent that is not us,
# has stopped running).
rh_alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2)
  [ "$st" != Z ]
}

stop_pid() {
  local pid i
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for i in $(seq 1 200); do
      rh_alive "$pid" || break
      sleep 0.05
    done
    if rh_alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null
    fi
    # Reap it when it is our child; harmless otherwise.
    wait "$pid" 2>/dev/null || true
  done
}

rh_stop_all() {
  # shellcheck disable=SC2086
  stop_pid $RH_PIDS
  RH_PIDS=""
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -u
  case "${1:-}" in
  single)
    start_redis "${2:?usage: redis-harness.sh single DIR}" || exit 1
    echo "$REDIS_URL $REDIS_PID"
    ;;
  cluster)
    start_cluster "${2:?usage: redis-harness.sh cluster DIR}" || { rh_stop_all; exit 1; }
    echo "$CLUSTER_URL $CLUSTER_PIDS"
    ;;
  stop)
    shift
    stop_pid "$@"
    ;;
  *)
    echo "usage: redis-harness.sh single DIR | cluster DIR | stop PID..." >&2
    exit 2
    ;;
  esac
fi
