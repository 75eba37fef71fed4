#!/usr/bin/env bash
# test_store_redis.sh TEST_BINARY — runs the Redis store unit tests against
# a single redis-server and a 3-master Redis Cluster started here on
# loopback ports in a temporary directory, stopped by PID at the end.
# Exit 77 (ctest: skipped) when redis-server is not installed.
set -u
bin=${1:?usage: test_store_redis.sh TEST_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=redis-harness.sh
. "$here/redis-harness.sh"

if ! command -v "$RH_SERVER" >/dev/null 2>&1 || ! command -v "$RH_CLI" >/dev/null 2>&1; then
  echo "SKIP: redis-server/redis-cli not installed (scripts/deps test)"
  exit 77
fi

tmp=$(mktemp -d /tmp/tt_redis_XXXXXX)
cleanup() {
  rh_stop_all
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis "$tmp/single" || exit 1
start_cluster "$tmp/cluster" || exit 1
echo "single: $REDIS_URL (pid $REDIS_PID); cluster: $CLUSTER_URL (pids $CLUSTER_PIDS)"

TETHER_TEST_REDIS_URL=$REDIS_URL \
  TETHER_TEST_REDIS_CLUSTER_URL=$CLUSTER_URL \
  TETHER_TEST_REDIS_SERVER=$(command -v "$RH_SERVER") \
  "$bin"
