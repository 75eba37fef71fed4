#!/usr/bin/env bash
# test_server_redis.sh BUILD_DIR — the server unit suites (test_server_push,
# test_server_pull, test_server_partitions, test_server_own, built in BUILD_DIR) again with
# their store in Redis: once on a single redis-server, once on a 3-master
# Redis Cluster, both started here on loopback ports in a temporary
# directory and stopped by PID at the end. tests/unit/server_helpers.h opens
# TETHER_TEST_STORE_URL instead of LMDB and flushes it before each test;
# tests that only make sense on LMDB say so and skip.
# test_server_faults is not run here: every test in it is about LMDB (map
# size, read-only files, a removed directory); Redis outages and failures
# are covered by tests/unit/store_redis.c and tests/redis/test_e2e_redis.sh.
# Exit 77 (ctest: skipped) when redis-server is not installed.
set -u
build=${1:?usage: test_server_redis.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=redis-harness.sh
. "$here/redis-harness.sh"

if ! command -v "$RH_SERVER" >/dev/null 2>&1 || ! command -v "$RH_CLI" >/dev/null 2>&1; then
  echo "SKIP: redis-server/redis-cli not installed (scripts/deps test)"
  exit 77
fi
suites="test_server_push test_server_pull test_server_partitions test_server_own"
for s in $suites; do
  [ -x "$build/$s" ] || { echo "FAIL: $build/$s not built"; exit 1; }
done

tmp=$(mktemp -d /tmp/tt_srv_redis_XXXXXX)
cleanup() {
  rh_stop_all
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis "$tmp/single" || exit 1
start_cluster "$tmp/cluster" || exit 1
echo "single: $REDIS_URL (pid $REDIS_PID); cluster: $CLUSTER_URL (pids $CLUSTER_PIDS)"

failed=""
for url in "$REDIS_URL" "$CLUSTER_URL"; do
  for s in $suites; do
    echo "=== $s on $url"
    rc=0
    TETHER_TEST_STORE_URL=$url "$build/$s" || rc=$?
    [ "$rc" -eq 0 ] || failed="$failed $s@${url%%://*}(exit $rc)"
  done
done
if [ -n "$failed" ]; then
  echo "FAILED:$failed"
  exit 1
fi
echo "PASS: $suites on redis and redis-cluster"
