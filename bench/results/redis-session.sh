#!/usr/bin/env bash
# redis-session.sh BENCH_DIR OUT_DIR [main|extra] — the Redis sessions of BENCHMARKS.md
# ("Redis and Redis Cluster"), in one go: a redis-server and a 3-master
# cluster from tests/redis/redis-harness.sh (loopback, temp dirs,
# appendonly yes, appendfsync always), redis-benchmark and tether_bench on
# both, LMDB beside them, everything stopped by PID at the end.
# BENCH_DIR holds tether_bench and tether (a Release build). "main" (the
# default) is the session behind the tables; "extra" the runs that separate
# partitions from the cluster, and W3 at 100k once for scale.
set -u
BIN=${1:?usage: redis-session.sh BENCH_DIR OUT_DIR}
OUT=${2:?usage: redis-session.sh BENCH_DIR OUT_DIR}
SET=${3:-main}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/redis/redis-harness.sh"
mkdir -p "$OUT"
LOG="$OUT/session.log"
TMP=$(mktemp -d /tmp/tether-redis-session-XXXXXX)
trap 'rh_stop_all; rm -rf "$TMP"' EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

start_redis "$TMP/single" || exit 1
start_cluster "$TMP/cluster" || exit 1
SINGLE=$REDIS_URL
CLUSTER=$CLUSTER_URL
FIRST=${CLUSTER_PORTS%% *}
log "single $SINGLE (pid $REDIS_PID); cluster $CLUSTER (pids $CLUSTER_PIDS)"
for p in $REDIS_PORT $CLUSTER_PORTS; do
  log "127.0.0.1:$p $(redis-cli -p "$p" config get appendonly | tr '\n' ' ')$(redis-cli -p "$p" config get appendfsync | tr '\n' ' ')$(redis-cli -p "$p" info server | tr -d '\r' | grep redis_version)"
done

# redis-benchmark "run the same way": pipelined SET of 200-byte values,
# on an emptied server with a fresh AOF, as tether_bench does.
rb_flush() {
  local p
  for p in "$@"; do
    redis-cli -p "$p" flushall >/dev/null
    redis-cli -p "$p" bgrewriteaof >/dev/null
    for _ in $(seq 1 600); do
      redis-cli -p "$p" info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' &&
        redis-cli -p "$p" info persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0' && break
      sleep 0.1
    done
  done
}
# storage bytes written so far by the servers of NAME (single|cluster)
wbytes() {
  local p sum=0 pids=$REDIS_PID
  [ "$1" = cluster ] && pids=$CLUSTER_PIDS
  for p in $pids; do
    sum=$((sum + $(awk '/^write_bytes:/ {print $2}' "/proc/$p/io")))
  done
  echo "$sum"
}
rb() { # rb NAME ROUND RUN FLUSH_PORTS... -- ARGS...
  local name=$1 round=$2 run=$3 ports=() la line
  shift 3
  while [ "$1" != -- ]; do ports+=("$1"); shift; done
  shift
  rb_flush "${ports[@]}"
  la=$(load)
  w0=$(wbytes "$name")
  line=$(redis-benchmark "$@" 2>&1 | tr '\r' '\n' | grep -E '^ *SET: [0-9.]+ requests per second' | tail -1 | sed 's/^ *//')
  w1=$(wbytes "$name")
  echo "{\"tool\":\"redis-benchmark\",\"target\":\"$name\",\"round\":\"$round\",\"run\":$run,\"loadavg\":\"$la\",\"redis_disk_write_bytes\":$((w1 - w0)),\"args\":\"$*\",\"result\":\"$line\"}" >>"$OUT/redis-benchmark.jsonl"
  log "redis-benchmark $name $round run $run (load $la): $line; redis wrote $((w1 - w0)) bytes"
}
rb_all() {
  local i
  for i in 1 2 3; do
    rb single "$1" "$i" "$REDIS_PORT" -- -h 127.0.0.1 -p "$REDIS_PORT" -t set -d 200 -n 1000000 -P 64 -q
  done
  for i in 1 2 3; do
    # shellcheck disable=SC2086
    rb cluster "$1" "$i" $CLUSTER_PORTS -- -h 127.0.0.1 -p "$FIRST" --cluster -t set -d 200 -n 1000000 -P 64 -q
  done
}

tb() { # tb FILE ARGS...
  local f=$1
  shift
  log "tether_bench $* (load $(load)) > $f"
  "$BIN/tether_bench" "$@" >"$OUT/$f" 2>"$OUT/${f%.jsonl}.err"
  log "  exit $? ($(grep -c '"ok":true' "$OUT/$f") ok)"
}

if [ "$SET" = main ]; then
  rb_all start
  tb W1-100k-lmdb-ref.jsonl -w W1 -n 100000 -r 1
  tb W1-100k-redis.jsonl -w W1 -n 100000 -r 3 --backend "$SINGLE"
  tb W1-100k-redis-cluster-p8.jsonl -w W1 -n 100000 -r 3 --backend "$CLUSTER" --partitions 8
  tb W1-100k-redis-p8.jsonl -w W1 -n 100000 -r 3 --backend "$SINGLE" --partitions 8
  tb W2-100k-redis.jsonl -w W2 -n 100000 -r 3 --backend "$SINGLE"
  tb W2-100k-redis-cluster-p8.jsonl -w W2 -n 100000 -r 3 --backend "$CLUSTER" --partitions 8
  tb W3-20k-redis.jsonl -w W3 -n 20000 -r 3 --backend "$SINGLE"
  tb W3-20k-redis-cluster-p8.jsonl -w W3 -n 20000 -r 3 --backend "$CLUSTER" --partitions 8
  tb W2-100k-lmdb-ref.jsonl -w W2 -n 100000 -r 1
  tb W3-20k-lmdb-ref.jsonl -w W3 -n 20000 -r 1
  rb_all end
else
  rb_all start
  tb W2-100k-redis-p8.jsonl -w W2 -n 100000 -r 3 --backend "$SINGLE" --partitions 8
  tb W3-20k-redis-p8.jsonl -w W3 -n 20000 -r 3 --backend "$SINGLE" --partitions 8
  tb W3-100k-redis.jsonl -w W3 -n 100000 -r 1 --backend "$SINGLE"
  tb W3-100k-redis-cluster-p8.jsonl -w W3 -n 100000 -r 1 --backend "$CLUSTER" --partitions 8
  tb W1-100k-lmdb-ref2.jsonl -w W1 -n 100000 -r 1
  rb_all end
fi
log "done"
