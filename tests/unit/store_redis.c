/* store_redis.c — the Redis backend against the store.h contract.
 *
 * The groups that need a server read TETHER_TEST_REDIS_URL (one
 * redis-server) and TETHER_TEST_REDIS_CLUSTER_URL (a 3-master cluster) and
 * are skipped, saying so, when they are unset; tests/redis/
 * test_store_redis.sh starts both and sets them. The outage test starts its
 * own redis-server (TETHER_TEST_REDIS_SERVER or redis-server on PATH) so
 * it can kill and restart it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/redis_int.h"
#include "store/store.h"

extern char **environ;

/* ---- helpers ------------------------------------------------------------ */

static const char *g_url;  /* the group's store URL */
static int g_cluster;      /* the group runs on the cluster */
static unsigned g_next_p = 100; /* each test its own partition */

typedef struct {
  tt_store *st;
  unsigned p;
} fixture;

static tt_store *ropen(const char *url) {
  char err[512];
  tt_store *st = (tt_store *)1;
  int rc = tt_store_open_redis(url, NULL, &st, err, sizeof(err));
  if (rc)
    print_error("open %s: %s\n", url, err);
  assert_int_equal(rc, 0);
  assert_non_null(st);
  return st;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->st = ropen(g_url);
  f->p = g_next_p++;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tt_store_close(f->st);
  free(f);
  return 0;
}

static tt_bytes B(const char *s) {
  tt_bytes b = {s, strlen(s)};
  return b;
}

static tt_bytes BN(const void *p, size_t n) {
  tt_bytes b = {p, n};
  return b;
}

static void put_commit(tt_store *st, unsigned p, tt_table tab, const char *k,
                       const char *v) {
  tt_txn *t = NULL;
  assert_int_equal(tt_txn_begin(st, p, 1, &t), 0);
  assert_int_equal(tt_put(t, tab, B(k), B(v)), 0);
  assert_int_equal(tt_commit(t), 0);
}

/* 1 when TAB holds K = V, 0 when K is absent; fails on anything else. */
static int has(tt_store *st, unsigned p, tt_table tab, const char *k,
               const char *v) {
  tt_txn *t = NULL;
  tt_bytes val;
  int rc;
  assert_int_equal(tt_txn_begin(st, p, 0, &t), 0);
  rc = tt_get(t, tab, B(k), &val);
  if (rc == 0) {
    assert_int_equal(val.len, strlen(v));
    assert_memory_equal(val.data, v, val.len);
  } else {
    assert_int_equal(rc, TETHER_ENOTFOUND);
  }
  tt_abort(t);
  return rc == 0;
}

typedef struct {
  int n, stop_at;
  char keys[64][600];
  size_t klen[64];
  char vals[64][64];
} collect;

static int collect_cb(void *ctx, tt_bytes k, tt_bytes v) {
  collect *c = ctx;
  if (c->n == c->stop_at)
    return 42;
  assert_true(c->n < 64);
  assert_true(k.len < sizeof(c->keys[0]) && v.len < sizeof(c->vals[0]));
  memcpy(c->keys[c->n], k.data, k.len);
  c->klen[c->n] = k.len;
  memcpy(c->vals[c->n], v.data, v.len);
  c->vals[c->n][v.len] = '\0';
  c->n++;
  return 0;
}

static void do_scan(tt_txn *t, tt_table tab, tt_bytes from, collect *c) {
  memset(c, 0, sizeof(*c));
  c->stop_at = -1;
  assert_int_equal(tt_scan(t, tab, from, collect_cb, c), 0);
}

static int count_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)k, (void)v;
  ++*(int *)ctx;
  return 0;
}

/* ---- raw Redis, for checks and cluster surgery --------------------------- */

static redisContext *raw_connect(const char *host, int port) {
  struct timeval tv = {5, 0};
  redisContext *c = redisConnectWithTimeout(host, port, tv);
  assert_non_null(c);
  if (c->err)
    print_error("connect %s:%d: %s\n", host, port, c->errstr);
  assert_int_equal(c->err, 0);
  return c;
}

static redisReply *raw(redisContext *c, int argc, const char **argv) {
  redisReply *r = redisCommandArgv(c, argc, argv, NULL);
  assert_non_null(r);
  return r;
}

/* Runs a command expecting a status or integer reply. */
static void raw_ok(redisContext *c, int argc, const char **argv) {
  redisReply *r = raw(c, argc, argv);
  if (r->type == REDIS_REPLY_ERROR)
    print_error("%s: %s\n", argv[0], r->str);
  assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
  freeReplyObject(r);
}

/* The seeds of a URL (the harness lists every master). */
static int url_nodes(const char *url, char hosts[][64], int *ports, int max) {
  rd_cfg cfg;
  char err[256];
  int n;
  assert_int_equal(rd_cfg_parse(url, &cfg, err, sizeof(err)), 0);
  n = cfg.nseeds < max ? cfg.nseeds : max;
  for (int i = 0; i < n; i++) {
    snprintf(hosts[i], 64, "%.63s", cfg.hosts[i]);
    ports[i] = cfg.ports[i];
  }
  rd_cfg_free(&cfg);
  return n;
}

static void flush_all(const char *url) {
  char hosts[8][64];
  int ports[8], n = url_nodes(url, hosts, ports, 8);
  const char *argv[] = {"FLUSHALL"};
  for (int i = 0; i < n; i++) {
    redisContext *c = raw_connect(hosts[i], ports[i]);
    raw_ok(c, 1, argv);
    redisFree(c);
  }
}

static int group_setup(void **state) {
  (void)state;
  flush_all(g_url);
  return 0;
}

/* ---- tests without a server --------------------------------------------- */

static void test_crc16_slots(void **state) {
  (void)state;
  /* The check value of CRC16/XMODEM, and the examples of the cluster spec
   * (slot of "foo" is 12182, of "{user1000}.following" that of "user1000"). */
  assert_int_equal(rd_crc16("123456789", 9), 0x31C3);
  assert_int_equal(rd_crc16("foo", 3) & 16383, 12182);
  assert_int_equal(rd_partition_slot(0), rd_crc16("p0", 2) & 16383);
  assert_int_equal(rd_partition_slot(4242), rd_crc16("p4242", 5) & 16383);
  /* Partitions spread: 64 of them land in well over 32 distinct slots. */
  {
    unsigned seen[64];
    int distinct = 0;
    for (unsigned p = 0; p < 64; p++) {
      int dup = 0;
      seen[p] = rd_partition_slot(p);
      for (unsigned q = 0; q < p; q++)
        dup |= seen[q] == seen[p];
      distinct += !dup;
    }
    assert_true(distinct > 32);
  }
}

static void test_url_parsing(void **state) {
  static const char *const bad[] = {
      "http://127.0.0.1:6379",
      "redis://",
      "redis://127.0.0.1:0",
      "redis://127.0.0.1:99999",
      "redis://127.0.0.1:x",
      "redis://a:1,b:2",
      "redis-cluster://a:1/2",
      "redis://h:1/db",
      "redis://h:1?color=blue",
      "redis://h:1?wait=1&wait_ms=0",
      "redis-cluster://a:1,,b:2",
      "redis://[::1",
  };
  rd_cfg cfg;
  char err[512];
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    assert_int_equal(rd_cfg_parse(bad[i], &cfg, err, sizeof(err)),
                     TETHER_EINVAL);
    /* The message names the URL and what is expected. */
    if (!strstr(err, bad[i]) || !strstr(err, "expected"))
      print_error("message for %s: %s\n", bad[i], err);
    assert_non_null(strstr(err, bad[i]));
    assert_non_null(strstr(err, "expected"));
  }

  assert_int_equal(rd_cfg_parse("redis://127.0.0.1:6380/3", &cfg, err,
                                sizeof(err)),
                   0);
  assert_false(cfg.cluster);
  assert_int_equal(cfg.nseeds, 1);
  assert_string_equal(cfg.hosts[0], "127.0.0.1");
  assert_int_equal(cfg.ports[0], 6380);
  assert_int_equal(cfg.db, 3);
  assert_null(cfg.password);
  rd_cfg_free(&cfg);

  assert_int_equal(rd_cfg_parse("redis://localhost", &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg.ports[0], 6379);
  rd_cfg_free(&cfg);

  assert_int_equal(rd_cfg_parse("redis://bob:s3cret@h:1/2?wait=1&wait_ms=50",
                                &cfg, err, sizeof(err)),
                   0);
  assert_string_equal(cfg.user, "bob");
  assert_string_equal(cfg.password, "s3cret");
  assert_int_equal(cfg.wait_replicas, 1);
  assert_int_equal(cfg.wait_ms, 50);
  rd_cfg_free(&cfg);

  assert_int_equal(rd_cfg_parse("redis-cluster://a:1,b:2,[::1]:3", &cfg, err,
                                sizeof(err)),
                   0);
  assert_true(cfg.cluster);
  assert_int_equal(cfg.nseeds, 3);
  assert_string_equal(cfg.hosts[2], "::1");
  assert_int_equal(cfg.ports[2], 3);
  rd_cfg_free(&cfg);

  /* A password never shows in messages. */
  assert_int_equal(rd_cfg_parse("redis://:hunter2@h:1/x", &cfg, err,
                                sizeof(err)),
                   TETHER_EINVAL);
  assert_null(strstr(err, "hunter2"));
  assert_non_null(strstr(err, "redis://:***@h:1/x"));
}

static int free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static void test_open_unreachable(void **state) {
  char url[128], err[512], want[64];
  tt_store *st = (tt_store *)1;
  int port = free_port(); /* nothing listens there */
  (void)state;
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
  snprintf(want, sizeof(want), "127.0.0.1:%d", port);
  assert_int_equal(tt_store_open_redis(url, NULL, &st, err, sizeof(err)),
                   TETHER_EUNAVAILABLE);
  assert_null(st);
  assert_non_null(strstr(err, want));
  assert_non_null(strstr(err, "cannot connect"));
  snprintf(url, sizeof(url), "redis-cluster://127.0.0.1:%d", port);
  st = (tt_store *)1;
  assert_int_equal(tt_store_open_redis(url, NULL, &st, err, sizeof(err)),
                   TETHER_EUNAVAILABLE);
  assert_null(st);
  assert_non_null(strstr(err, want));
  st = (tt_store *)1;
  assert_int_equal(tt_store_open_redis("redis:/x", NULL, &st, err,
                                       sizeof(err)),
                   TETHER_EINVAL);
  assert_null(st);
}

/* ---- the contract, on one server and on the cluster --------------------- */

static void test_put_get_del(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  tt_bytes v;

  assert_string_equal(f->st->ops->name, "redis");
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("a"), &v), TETHER_ENOTFOUND);
  assert_null(v.data);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("a"), B("one")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("a"), &v), 0); /* own write */
  assert_int_equal(v.len, 3);
  assert_memory_equal(v.data, "one", 3);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("a"), B("replaced")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("empty"), BN(NULL, 0)), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN("", 0), B("x")), TETHER_EINVAL);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN("bin\0ary", 7), B("b")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "a", "replaced"));
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "empty", ""));
  /* Another partition is another namespace. */
  assert_false(has(f->st, f->p + 1000, TT_TABLE_DOCS, "a", NULL));

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, BN("bin\0ary", 7), &v), 0);
  assert_memory_equal(v.data, "b", 1);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, BN("bin", 3), &v),
                   TETHER_ENOTFOUND);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("a")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("never-there")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("a"), &v), TETHER_ENOTFOUND);
  assert_int_equal(tt_commit(t), 0);
  assert_false(has(f->st, f->p, TT_TABLE_DOCS, "a", NULL));
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "empty", ""));

  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("b"), B("x")), TETHER_EREADONLY);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("empty")), TETHER_EREADONLY);
  assert_int_equal(tt_commit(t), 0);
  tt_abort(NULL);
  tt_store_close(NULL);
}

static void test_scan_order_and_from(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  collect c;
  static const struct {
    const char *k;
    size_t n;
  } keys[] = {{"b", 1},   {"ab", 2}, {"a\0b", 3}, {"a", 1},
              {"a\0", 2}, {"\xff", 1}, {"ba", 2}};
  static const int order[] = {3, 4, 2, 1, 0, 6, 5};
  char big[600];

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    char v[8];
    snprintf(v, sizeof(v), "v%zu", i);
    assert_int_equal(tt_put(t, TT_TABLE_CHANGES, BN(keys[i].k, keys[i].n),
                            B(v)),
                     0);
  }
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  do_scan(t, TT_TABLE_CHANGES, BN(NULL, 0), &c);
  assert_int_equal(c.n, 7);
  for (int i = 0; i < 7; i++) {
    char v[8];
    snprintf(v, sizeof(v), "v%d", order[i]);
    assert_int_equal(c.klen[i], keys[order[i]].n);
    assert_memory_equal(c.keys[i], keys[order[i]].k, c.klen[i]);
    assert_string_equal(c.vals[i], v);
  }
  do_scan(t, TT_TABLE_CHANGES, BN("ab", 2), &c);
  assert_int_equal(c.n, 4);
  assert_memory_equal(c.keys[0], "ab", 2);
  do_scan(t, TT_TABLE_CHANGES, BN("aa", 2), &c);
  assert_int_equal(c.n, 4);
  assert_memory_equal(c.keys[0], "ab", 2);
  do_scan(t, TT_TABLE_CHANGES, BN("a\0", 2), &c);
  assert_int_equal(c.n, 6);
  assert_int_equal(c.klen[0], 2);
  do_scan(t, TT_TABLE_CHANGES, BN("\xff\x01", 2), &c);
  assert_int_equal(c.n, 0);
  memset(big, 0, sizeof(big));
  big[0] = 'b';
  do_scan(t, TT_TABLE_CHANGES, BN(big, sizeof(big)), &c);
  assert_int_equal(c.n, 2);
  assert_memory_equal(c.keys[0], "ba", 2);

  memset(&c, 0, sizeof(c));
  c.stop_at = 2;
  assert_int_equal(tt_scan(t, TT_TABLE_CHANGES, BN(NULL, 0), collect_cb, &c),
                   42);
  assert_int_equal(c.n, 2);
  do_scan(t, TT_TABLE_AUDIT, BN(NULL, 0), &c);
  assert_int_equal(c.n, 0);
  tt_abort(t);
}

static void test_tables_independent(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  collect c;

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  for (int i = 0; i < TT_TABLE__COUNT; i++) {
    char v[16];
    snprintf(v, sizeof(v), "table%d", i);
    assert_int_equal(tt_put(t, (tt_table)i, B("same-key"), B(v)), 0);
    snprintf(v, sizeof(v), "only%d", i);
    assert_int_equal(tt_put(t, (tt_table)i, B(v), B("x")), 0);
  }
  /* A record named like the index does not clash with it. */
  assert_int_equal(tt_put(t, TT_TABLE_META, B("idx"), B("not the index")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_del(t, TT_TABLE_VIEW, B("same-key")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_META, B("idx")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  for (int i = 0; i < TT_TABLE__COUNT; i++) {
    char v[16];
    tt_bytes val;
    int rc = tt_get(t, (tt_table)i, B("same-key"), &val);
    if (i == TT_TABLE_VIEW) {
      assert_int_equal(rc, TETHER_ENOTFOUND);
    } else {
      assert_int_equal(rc, 0);
      snprintf(v, sizeof(v), "table%d", i);
      assert_int_equal(val.len, strlen(v));
      assert_memory_equal(val.data, v, val.len);
    }
    do_scan(t, (tt_table)i, BN(NULL, 0), &c);
    assert_int_equal(c.n, i == TT_TABLE_VIEW ? 1 : 2);
    snprintf(v, sizeof(v), "only%d", i);
    assert_int_equal(c.klen[0], strlen(v));
    assert_memory_equal(c.keys[0], v, c.klen[0]);
  }
  tt_abort(t);
}

static void test_commit_abort_reopen(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;

  put_commit(f->st, f->p, TT_TABLE_META, "committed", "yes");
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_META, B("aborted"), B("no")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_META, B("committed"), B("no")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_META, B("committed")), 0);
  tt_abort(t);
  assert_true(has(f->st, f->p, TT_TABLE_META, "committed", "yes"));
  assert_false(has(f->st, f->p, TT_TABLE_META, "aborted", NULL));

  tt_store_close(f->st);
  f->st = ropen(g_url);
  assert_true(has(f->st, f->p, TT_TABLE_META, "committed", "yes"));
  assert_false(has(f->st, f->p, TT_TABLE_META, "aborted", NULL));

  /* A write transaction never ended before close leaves nothing. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_OUTBOX, B("k"), B("v")), 0);
  tt_abort(t);
  assert_false(has(f->st, f->p, TT_TABLE_OUTBOX, "k", NULL));
}

static void test_values_stable_in_write_txn(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  tt_bytes v1, v2, v3;

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("a"), B("AAAAAAAA")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("b"), B("BBBBBBBB")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("b"), &v1), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("b"), B("xxxxxxxx")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("a")), 0);
  assert_memory_equal(v1.data, "BBBBBBBB", 8);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("b"), &v3), 0);
  assert_memory_equal(v3.data, "xxxxxxxx", 8);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("b"), &v1), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("b"), B("yyyyyyyy")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("b")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("b"), &v2), TETHER_ENOTFOUND);
  assert_memory_equal(v1.data, "xxxxxxxx", 8);
  assert_int_equal(tt_commit(t), 0);
}

/* Remote a, c, e; in the transaction: put b, del c, put e, put f. */
static void test_read_your_writes_scan(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  collect c;
  static const char *const want_k[] = {"a", "b", "e", "f"};
  static const char *const want_v[] = {"A", "B2", "E2", "F2"};

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_STATUS, B("a"), B("A")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_STATUS, B("c"), B("C")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_STATUS, B("e"), B("E")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_STATUS, B("b"), B("B2")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_STATUS, B("c")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_STATUS, B("e"), B("E2")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_STATUS, B("f"), B("F2")), 0);
  do_scan(t, TT_TABLE_STATUS, BN(NULL, 0), &c);
  assert_int_equal(c.n, 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(c.klen[i], 1);
    assert_memory_equal(c.keys[i], want_k[i], 1);
    assert_string_equal(c.vals[i], want_v[i]);
  }
  do_scan(t, TT_TABLE_STATUS, B("c"), &c);
  assert_int_equal(c.n, 2);
  assert_memory_equal(c.keys[0], "e", 1);
  assert_string_equal(c.vals[0], "E2");
  do_scan(t, TT_TABLE_STATUS, B("b"), &c);
  assert_int_equal(c.n, 3);
  assert_memory_equal(c.keys[0], "b", 1);
  assert_int_equal(tt_commit(t), 0);

  /* The index followed the commit. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  do_scan(t, TT_TABLE_STATUS, BN(NULL, 0), &c);
  assert_int_equal(c.n, 4);
  for (int i = 0; i < 4; i++) {
    assert_memory_equal(c.keys[i], want_k[i], 1);
    assert_string_equal(c.vals[i], want_v[i]);
  }
  tt_abort(t);
}

static int del_each_cb(void *ctx, tt_bytes k, tt_bytes v) {
  tt_txn *t = ctx;
  (void)v;
  return tt_del(t, TT_TABLE_PENDING, k);
}

typedef struct {
  tt_txn *t;
  int visited;
  char seen[16][8];
} grow_ctx;

static int grow_cb(void *ctx, tt_bytes k, tt_bytes v) {
  grow_ctx *g = ctx;
  char nk[8];
  (void)v;
  assert_true(g->visited < 16 && k.len < 7);
  memcpy(g->seen[g->visited], k.data, k.len);
  g->seen[g->visited][k.len] = '\0';
  g->visited++;
  if (k.len == 2) {
    memcpy(nk, k.data, 2);
    nk[2] = 'x';
    return tt_put(g->t, TT_TABLE_PENDING, BN(nk, 3), B("new"));
  }
  return 0;
}

static int overwrite_cb(void *ctx, tt_bytes k, tt_bytes v) {
  tt_txn *t = ctx;
  char before[8];
  assert_int_equal(v.len, 5);
  assert_int_equal(k.len, 4);
  memcpy(before, k.data, 4);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, k, B("VALUE")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_PENDING, B("0000")), 0);
  assert_memory_equal(v.data, "value", 5);
  assert_memory_equal(k.data, before, 4);
  return 0;
}

static int nested_cb(void *ctx, tt_bytes k, tt_bytes v) {
  tt_txn *t = ctx;
  char kcopy[8], vcopy[8];
  int n = 0;
  assert_true(k.len < 8 && v.len < 8);
  memcpy(kcopy, k.data, k.len);
  memcpy(vcopy, v.data, v.len);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0000"), count_cb, &n), 0);
  assert_int_equal(n, 700);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("0250"), B("value")), 0);
  assert_memory_equal(k.data, kcopy, k.len);
  assert_memory_equal(v.data, vcopy, v.len);
  return 0;
}

/* 700 entries: more than one ZRANGEBYLEX page. */
static void test_scan_with_writes(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  collect c;
  grow_ctx g;
  char k[8];
  int n = 0;

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  for (int i = 0; i < 700; i++) {
    snprintf(k, sizeof(k), "%04d", i);
    assert_int_equal(tt_put(t, TT_TABLE_PENDING, B(k), B("value")), 0);
  }
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), count_cb, &n),
                   0);
  assert_int_equal(n, 700);
  n = 0;
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0600"), count_cb, &n), 0);
  assert_int_equal(n, 100);
  tt_abort(t);

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0100"), overwrite_cb, t),
                   0);
  for (int i = 0; i < 700; i++) {
    snprintf(k, sizeof(k), "%04d", i);
    assert_int_equal(tt_put(t, TT_TABLE_PENDING, B(k), B("value")), 0);
  }
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), overwrite_cb, t),
                   0);
  tt_abort(t);

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("0699"), B("value")), 0);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0690"), nested_cb, t), 0);
  tt_abort(t);

  /* Delete every entry from inside the scan: all are visited once. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  n = 0;
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), count_cb, &n),
                   0);
  assert_int_equal(n, 700);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), del_each_cb, t),
                   0);
  do_scan(t, TT_TABLE_PENDING, BN(NULL, 0), &c);
  assert_int_equal(c.n, 0);
  assert_int_equal(tt_commit(t), 0);
  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  do_scan(t, TT_TABLE_PENDING, BN(NULL, 0), &c);
  assert_int_equal(c.n, 0);
  tt_abort(t);

  /* Insert after the current key from inside the scan: visited. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("k1"), B("")), 0);
  assert_int_equal(tt_commit(t), 0);
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("k2"), B("")), 0);
  memset(&g, 0, sizeof(g));
  g.t = t;
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), grow_cb, &g), 0);
  assert_int_equal(g.visited, 4);
  assert_string_equal(g.seen[0], "k1");
  assert_string_equal(g.seen[1], "k1x");
  assert_string_equal(g.seen[2], "k2");
  assert_string_equal(g.seen[3], "k2x");
  assert_int_equal(tt_commit(t), 0);
  assert_true(has(f->st, f->p, TT_TABLE_PENDING, "k2x", "new"));
}

static void test_key_too_long(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  char key[512];
  tt_bytes v;
  collect c;

  memset(key, 'k', sizeof(key));
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN(key, 511), B("max")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN(key, 512), B("over")),
                   TETHER_ETOOBIG);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, BN(key, 512), &v),
                   TETHER_ENOTFOUND);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, BN(key, 512)), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k"), B("short")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, BN(key, 511), &v), 0);
  assert_memory_equal(v.data, "max", 3);
  do_scan(t, TT_TABLE_DOCS, BN(NULL, 0), &c);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.klen[0], 1);
  assert_int_equal(c.klen[1], 511);
  tt_abort(t);
}

/* Two handles stand for two tether servers on one Redis. */
static void test_watch_conflict(void **state) {
  fixture *f = *state;
  tt_store *other = ropen(g_url);
  tt_txn *t = NULL, *u = NULL;
  tt_bytes v;
  collect c;

  put_commit(f->st, f->p, TT_TABLE_DOCS, "k", "v0");
  /* T reads k, U changes it and commits first: T must redo. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k"), &v), 0);
  put_commit(other, f->p, TT_TABLE_DOCS, "k", "v1");
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k"), B("from-t")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("t-only"), B("x")), 0);
  assert_int_equal(tt_commit(t), TETHER_ERETRY);
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "k", "v1"));
  assert_false(has(f->st, f->p, TT_TABLE_DOCS, "t-only", NULL));
  {
    char msg[256];
    tt_store_last_error(f->st, msg, sizeof(msg));
    assert_non_null(strstr(msg, "WATCH"));
  }

  /* A read of an absent key is watched too (no double create). */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("new"), &v), TETHER_ENOTFOUND);
  put_commit(other, f->p, TT_TABLE_DOCS, "new", "by-other");
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("new"), B("by-t")), 0);
  assert_int_equal(tt_commit(t), TETHER_ERETRY);
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "new", "by-other"));

  /* A scan watches the table: a key inserted meanwhile is a conflict. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  do_scan(t, TT_TABLE_OUTCOMES, BN(NULL, 0), &c);
  assert_int_equal(c.n, 0);
  put_commit(other, f->p, TT_TABLE_OUTCOMES, "o1", "x");
  assert_int_equal(tt_put(t, TT_TABLE_OUTCOMES, B("summary"), B("0")), 0);
  assert_int_equal(tt_commit(t), TETHER_ERETRY);

  /* Redone, it commits. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k"), &v), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k"), B("from-t")), 0);
  assert_int_equal(tt_commit(t), 0);
  assert_true(has(other, f->p, TT_TABLE_DOCS, "k", "from-t"));

  /* Writes without reads are not guarded: a blind write commits. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("blind"), B("1")), 0);
  put_commit(other, f->p, TT_TABLE_DOCS, "k", "v2");
  assert_int_equal(tt_commit(t), 0);

  /* A write transaction that only read ends without a round trip, and
   * its watch does not leak into the next transaction on the connection
   * (UNWATCH rides along with that one's first request). */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k"), &v), 0);
  {
    uint64_t rt = rd_store_roundtrips(f->st);
    assert_int_equal(tt_commit(t), 0);
    assert_int_equal(rd_store_roundtrips(f->st), rt);
  }
  put_commit(other, f->p, TT_TABLE_DOCS, "k", "v3");
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("blind"), &v), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("blind"), B("2")), 0);
  assert_int_equal(tt_commit(t), 0);

  /* Another partition is another slot: no conflict between them. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_txn_begin(other, f->p + 1, 1, &u), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k"), &v), 0);
  assert_int_equal(tt_get(u, TT_TABLE_DOCS, B("k"), &v), TETHER_ENOTFOUND);
  assert_int_equal(tt_put(u, TT_TABLE_DOCS, B("k"), B("p+1")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k"), B("p")), 0);
  assert_int_equal(tt_commit(u), 0);
  assert_int_equal(tt_commit(t), 0);
  tt_store_close(other);
}

static void test_round_trips(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  tt_bytes keys[300], v;
  char names[300][8];
  uint64_t rt0;
  int n = 0;

  for (int i = 0; i < 300; i++) {
    snprintf(names[i], sizeof(names[i]), "d%03d", i);
    keys[i] = B(names[i]);
  }
  put_commit(f->st, f->p, TT_TABLE_DOCS, "d000", "old");
  /* A batch: prefetch 300 documents, read each, write each and 300 more
   * records, commit: 2 round trips whatever the batch size. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  rt0 = rd_store_roundtrips(f->st);
  assert_int_equal(tt_prefetch(t, TT_TABLE_DOCS, keys, 300), 0);
  for (int i = 0; i < 300; i++) {
    int rc = tt_get(t, TT_TABLE_DOCS, keys[i], &v);
    assert_int_equal(rc, i == 0 ? 0 : TETHER_ENOTFOUND);
    assert_int_equal(tt_put(t, TT_TABLE_DOCS, keys[i], B("new")), 0);
    assert_int_equal(tt_put(t, TT_TABLE_CHANGES, keys[i], B("c")), 0);
  }
  assert_int_equal(tt_commit(t), 0);
  print_message("round trips: batch of 300 (prefetch + commit): %llu\n",
                (unsigned long long)(rd_store_roundtrips(f->st) - rt0));
  assert_int_equal(rd_store_roundtrips(f->st) - rt0, 2);

  /* Without prefetch: one per read, plus the commit. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  rt0 = rd_store_roundtrips(f->st);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(tt_get(t, TT_TABLE_DOCS, keys[i], &v), 0);
    assert_int_equal(tt_get(t, TT_TABLE_DOCS, keys[i], &v), 0); /* cached */
    assert_int_equal(tt_put(t, TT_TABLE_DOCS, keys[i], B("newer")), 0);
  }
  assert_int_equal(tt_commit(t), 0);
  assert_int_equal(rd_store_roundtrips(f->st) - rt0, 11);

  /* A read transaction: a scan of 300 entries is one page, 2 round trips
   * (index range + values). */
  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  rt0 = rd_store_roundtrips(f->st);
  assert_int_equal(tt_scan(t, TT_TABLE_CHANGES, BN(NULL, 0), count_cb, &n), 0);
  assert_int_equal(n, 300);
  assert_int_equal(rd_store_roundtrips(f->st) - rt0, 2);
  tt_abort(t);
}

typedef struct {
  tt_store *st;
  unsigned p;
  volatile int began, rc;
} writer_arg;

static void *writer_main(void *arg) {
  writer_arg *a = arg;
  tt_txn *t = NULL;
  a->rc = tt_txn_begin(a->st, a->p, 1, &t);
  __atomic_store_n(&a->began, 1, __ATOMIC_SEQ_CST);
  if (a->rc)
    return NULL;
  a->rc = tt_put(t, TT_TABLE_DOCS, B("w2"), B("second"));
  if (!a->rc)
    a->rc = tt_commit(t);
  else
    tt_abort(t);
  return NULL;
}

static void test_one_writer_per_partition(void **state) {
  fixture *f = *state;
  tt_txn *w = NULL, *w2 = NULL, *r = NULL;
  pthread_t th, th2;
  writer_arg a = {.st = f->st, .p = f->p};
  writer_arg b = {.st = f->st, .p = f->p + 2000};
  struct timespec ts = {0, 200 * 1000 * 1000};

  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &w), 0);
  assert_int_equal(tt_txn_begin(f->st, f->p + 1, 1, &w2), TETHER_EBUSY);
  assert_null(w2);
  /* Readers do not wait. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &r), 0);
  tt_abort(r);
  /* A writer of the same partition waits; of another, it does not. */
  assert_int_equal(pthread_create(&th, NULL, writer_main, &a), 0);
  assert_int_equal(pthread_create(&th2, NULL, writer_main, &b), 0);
  assert_int_equal(pthread_join(th2, NULL), 0);
  assert_int_equal(b.rc, 0);
  nanosleep(&ts, NULL);
  assert_int_equal(__atomic_load_n(&a.began, __ATOMIC_SEQ_CST), 0);
  assert_int_equal(tt_put(w, TT_TABLE_DOCS, B("w1"), B("first")), 0);
  assert_int_equal(tt_commit(w), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(a.rc, 0);
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "w1", "first"));
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "w2", "second"));
  assert_true(has(f->st, f->p + 2000, TT_TABLE_DOCS, "w2", "second"));
}

static void *read_moves_main(void *arg) {
  tt_txn *t = arg;
  tt_bytes v;
  int rc = tt_get(t, TT_TABLE_DOCS, B("k"), &v);
  tt_abort(t);
  return (void *)(intptr_t)rc;
}

static void test_read_txn_moves_threads(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  pthread_t th;
  void *ret;
  put_commit(f->st, f->p, TT_TABLE_DOCS, "k", "v");
  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  assert_int_equal(pthread_create(&th, NULL, read_moves_main, t), 0);
  assert_int_equal(pthread_join(th, &ret), 0);
  assert_int_equal((int)(intptr_t)ret, 0);
  /* Connections return to the pool: many transactions, few sockets. */
  for (int i = 0; i < 2000; i++) {
    assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
    tt_abort(t);
  }
}

/* A reply over 64 MiB is refused, not allocated; the store goes on. */
static void test_reply_bound(void **state) {
  fixture *f = *state;
  char key[64], host[8][64], msg[256];
  int port[8];
  size_t big = ((size_t)64 << 20) + 1024;
  char *val = malloc(big);
  const char *argv[3];
  size_t lens[3];
  redisContext *c;
  redisReply *r;
  tt_txn *t = NULL;
  tt_bytes v;

  if (g_cluster) {
    skip(); /* the same code path; once is enough */
    free(val);
    return;
  }
  assert_non_null(val);
  memset(val, 'x', big);
  url_nodes(g_url, host, port, 8);
  c = raw_connect(host[0], port[0]);
  snprintf(key, sizeof(key), "tt{p%u}:%d:big", f->p, TT_TABLE_DOCS);
  argv[0] = "SET";
  argv[1] = key;
  argv[2] = val;
  lens[0] = 3;
  lens[1] = strlen(key);
  lens[2] = big;
  r = redisCommandArgv(c, 3, argv, lens);
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_STATUS);
  freeReplyObject(r);
  redisFree(c);
  free(val);

  put_commit(f->st, f->p, TT_TABLE_DOCS, "small", "ok");
  assert_int_equal(tt_txn_begin(f->st, f->p, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("big"), &v),
                   TETHER_EUNAVAILABLE);
  tt_store_last_error(f->st, msg, sizeof(msg));
  assert_non_null(strstr(msg, "64 MiB"));
  /* The read transaction is not poisoned; a new connection serves it. */
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("small"), &v), 0);
  assert_memory_equal(v.data, "ok", 2);
  tt_abort(t);
}

/* Wrong URL kinds and an evicting Redis are refused at open, saying why. */
static void test_open_refusals(void **state) {
  char hosts[8][64], url[160], err[512];
  int ports[8];
  tt_store *st = (tt_store *)1;
  redisContext *c;
  const char *lru[] = {"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"};
  const char *noev[] = {"CONFIG", "SET", "maxmemory-policy", "noeviction"};
  (void)state;
  url_nodes(g_url, hosts, ports, 8);
  if (g_cluster) {
    /* redis:// given a cluster node. */
    snprintf(url, sizeof(url), "redis://%s:%d", hosts[0], ports[0]);
    assert_int_equal(tt_store_open_redis(url, NULL, &st, err, sizeof(err)),
                     TETHER_ECONFIG);
    assert_null(st);
    assert_non_null(strstr(err, "redis-cluster://"));
    return;
  }
  /* redis-cluster:// given a single server. */
  snprintf(url, sizeof(url), "redis-cluster://%s:%d", hosts[0], ports[0]);
  assert_int_equal(tt_store_open_redis(url, NULL, &st, err, sizeof(err)),
                   TETHER_ECONFIG);
  assert_null(st);
  assert_non_null(strstr(err, "use redis://"));
  /* A policy that evicts any key would lose records. */
  c = raw_connect(hosts[0], ports[0]);
  raw_ok(c, 4, lru);
  st = (tt_store *)1;
  assert_int_equal(tt_store_open_redis(g_url, NULL, &st, err, sizeof(err)),
                   TETHER_ECONFIG);
  assert_null(st);
  assert_non_null(strstr(err, "allkeys-lru"));
  assert_non_null(strstr(err, "noeviction"));
  raw_ok(c, 4, noev);
  redisFree(c);
  tt_store_close(ropen(g_url));
}

/* ---- outage: a private redis-server, killed and restarted ---------------- */

static pid_t spawn_redis(const char *dir, int port) {
  const char *bin = getenv("TETHER_TEST_REDIS_SERVER");
  char portbuf[16], logf[256];
  pid_t pid;
  posix_spawn_file_actions_t fa;
  char *argv[] = {(char *)(bin && *bin ? bin : "redis-server"),
                  "--port", portbuf, "--bind", "127.0.0.1", "--dir",
                  (char *)dir, "--appendonly", "yes", "--appendfsync",
                  "always", "--save", "", "--daemonize", "no", "--logfile",
                  logf, NULL};
  snprintf(portbuf, sizeof(portbuf), "%d", port);
  snprintf(logf, sizeof(logf), "%s/redis.log", dir);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
    pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

static int wait_ping(int port) {
  for (int i = 0; i < 100; i++) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && !c->err) {
      redisReply *r = redisCommand(c, "PING");
      int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
      if (r)
        freeReplyObject(r);
      redisFree(c);
      if (ok)
        return 0;
    } else if (c) {
      redisFree(c);
    }
    usleep(100 * 1000);
  }
  return -1;
}

static void kill_wait(pid_t pid, int sig) {
  int st;
  kill(pid, sig);
  waitpid(pid, &st, 0);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

/* The private server, killed by the teardown if a check fails midway. */
static pid_t g_outage_pid = -1;
static char g_outage_dir[64];

static int outage_teardown(void **state) {
  (void)state;
  if (g_outage_pid > 0)
    kill_wait(g_outage_pid, SIGKILL);
  g_outage_pid = -1;
  if (g_outage_dir[0])
    nftw(g_outage_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  g_outage_dir[0] = '\0';
  return 0;
}

static void test_outage_and_recovery(void **state) {
  char *dir = g_outage_dir, url[64], msg[256], want[32];
  int port = free_port();
  pid_t pid;
  tt_store *st;
  tt_txn *t = NULL, *w = NULL;
  tt_bytes v;
  (void)state;

  strcpy(dir, "/tmp/tt_redis_outage_XXXXXX");
  assert_non_null(mkdtemp(dir));
  pid = g_outage_pid = spawn_redis(dir, port);
  assert_true(pid > 0);
  if (wait_ping(port)) {
    kill_wait(pid, SIGKILL);
    g_outage_pid = -1;
    fail_msg("redis-server did not start on %d", port);
  }
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
  snprintf(want, sizeof(want), "127.0.0.1:%d", port);
  st = ropen(url);
  put_commit(st, 7, TT_TABLE_DOCS, "kept", "through a crash");

  /* A write in flight when Redis dies, without a clean shutdown. */
  assert_int_equal(tt_txn_begin(st, 7, 1, &w), 0);
  assert_int_equal(tt_get(w, TT_TABLE_DOCS, B("kept"), &v), 0);
  kill_wait(pid, SIGKILL);
  g_outage_pid = -1;
  assert_int_equal(tt_put(w, TT_TABLE_DOCS, B("lost"), B("x")), 0);
  assert_int_equal(tt_commit(w), TETHER_EUNAVAILABLE);

  /* Down: begin says so, with the address. */
  assert_int_equal(tt_txn_begin(st, 7, 0, &t), TETHER_EUNAVAILABLE);
  assert_null(t);
  assert_int_equal(tt_txn_begin(st, 7, 1, &t), TETHER_EUNAVAILABLE);
  tt_store_last_error(st, msg, sizeof(msg));
  assert_non_null(strstr(msg, want));

  /* Back on the same port and directory: the AOF (appendfsync always)
   * kept the acknowledged commit, and the store recovers by itself. */
  pid = g_outage_pid = spawn_redis(dir, port);
  assert_true(pid > 0);
  if (wait_ping(port)) {
    kill_wait(pid, SIGKILL);
    g_outage_pid = -1;
    fail_msg("redis-server did not restart on %d", port);
  }
  assert_true(has(st, 7, TT_TABLE_DOCS, "kept", "through a crash"));
  assert_false(has(st, 7, TT_TABLE_DOCS, "lost", NULL));
  put_commit(st, 7, TT_TABLE_DOCS, "after", "restart");
  assert_true(has(st, 7, TT_TABLE_DOCS, "after", "restart"));

  /* Pooled connections that died while idle are replaced silently, even
   * for a transaction whose first request is its commit. */
  kill_wait(pid, SIGTERM);
  pid = g_outage_pid = spawn_redis(dir, port);
  assert_true(pid > 0);
  assert_int_equal(wait_ping(port), 0);
  put_commit(st, 7, TT_TABLE_DOCS, "blind", "write");
  assert_true(has(st, 7, TT_TABLE_DOCS, "after", "restart"));
  assert_int_equal(tt_txn_begin(st, 7, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("after"), &v), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("after"), B("again")), 0);
  assert_int_equal(tt_commit(t), 0);

  tt_store_close(st);
  kill_wait(pid, SIGTERM);
  g_outage_pid = -1;
}

/* ---- cluster only -------------------------------------------------------- */

typedef struct {
  char host[64];
  int port;
  char id[64];
} cnode;

static int cluster_nodes(cnode *n, int max) {
  char hosts[8][64];
  int ports[8], cnt = url_nodes(g_url, hosts, ports, max < 8 ? max : 8);
  for (int i = 0; i < cnt; i++) {
    const char *argv[] = {"CLUSTER", "MYID"};
    redisContext *c = raw_connect(hosts[i], ports[i]);
    redisReply *r = raw(c, 2, argv);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(n[i].host, sizeof(n[i].host), "%.63s", hosts[i]);
    n[i].port = ports[i];
    snprintf(n[i].id, sizeof(n[i].id), "%.63s", r->str);
    freeReplyObject(r);
    redisFree(c);
  }
  return cnt;
}

/* The node of NODES owning SLOT, asked to the cluster itself. */
static int slot_owner(cnode *nodes, int n, unsigned slot) {
  const char *argv[] = {"CLUSTER", "SLOTS"};
  redisContext *c = raw_connect(nodes[0].host, nodes[0].port);
  redisReply *r = raw(c, 2, argv);
  int owner = -1;
  for (size_t i = 0; i < r->elements; i++) {
    redisReply *e = r->element[i];
    if ((long long)slot >= e->element[0]->integer &&
        (long long)slot <= e->element[1]->integer) {
      for (int j = 0; j < n; j++)
        if (nodes[j].port == e->element[2]->element[1]->integer)
          owner = j;
    }
  }
  freeReplyObject(r);
  redisFree(c);
  assert_true(owner >= 0);
  return owner;
}

static void setslot(cnode *on, unsigned slot, const char *how,
                    const char *id) {
  char s[16];
  const char *argv[] = {"CLUSTER", "SETSLOT", s, how, id};
  redisContext *c = raw_connect(on->host, on->port);
  snprintf(s, sizeof(s), "%u", slot);
  raw_ok(c, 5, argv);
  redisFree(c);
}

/* Migrates the keys of SLOT on SRC to DST: all (MAX < 0) or at most MAX,
 * those whose name contains ONLY (NULL: any). */
static void migrate_keys(cnode *src, cnode *dst, unsigned slot,
                         const char *only, int max) {
  char s[16], portbuf[16];
  const char *gargv[] = {"CLUSTER", "GETKEYSINSLOT", s, "1000"};
  redisContext *c = raw_connect(src->host, src->port);
  redisReply *r;
  int moved = 0;
  snprintf(s, sizeof(s), "%u", slot);
  snprintf(portbuf, sizeof(portbuf), "%d", dst->port);
  r = raw(c, 4, gargv);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  for (size_t i = 0; i < r->elements && (max < 0 || moved < max); i++) {
    const char *margv[] = {"MIGRATE", dst->host, portbuf, r->element[i]->str,
                           "0", "5000"};
    size_t mlens[] = {7, strlen(dst->host), strlen(portbuf),
                      r->element[i]->len, 1, 4};
    redisReply *m;
    if (only && !strstr(r->element[i]->str, only))
      continue;
    m = redisCommandArgv(c, 6, margv, mlens);
    assert_non_null(m);
    if (m->type == REDIS_REPLY_ERROR)
      print_error("MIGRATE: %s\n", m->str);
    assert_int_not_equal(m->type, REDIS_REPLY_ERROR);
    freeReplyObject(m);
    moved++;
  }
  freeReplyObject(r);
  redisFree(c);
}

static void move_slot(cnode *nodes, int n, unsigned slot, int from, int to) {
  setslot(&nodes[to], slot, "IMPORTING", nodes[from].id);
  setslot(&nodes[from], slot, "MIGRATING", nodes[to].id);
  migrate_keys(&nodes[from], &nodes[to], slot, NULL, -1);
  for (int i = 0; i < n; i++)
    setslot(&nodes[i], slot, "NODE", nodes[to].id);
}

static rd_node *store_owner(tt_store *st, unsigned slot) {
  rd_store *s = (rd_store *)st;
  rd_node *n;
  pthread_mutex_lock(&s->mu);
  n = s->slot[slot] >= 0 ? s->nodes[s->slot[slot]] : NULL;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void test_cluster_spread(void **state) {
  fixture *f = *state;
  cnode nodes[3];
  int n = cluster_nodes(nodes, 3), per_node[3] = {0, 0, 0};
  tt_txn *t = NULL;
  (void)f;
  assert_int_equal(n, 3);
  for (unsigned p = 0; p < 64; p++) {
    char v[16];
    snprintf(v, sizeof(v), "p%u", p);
    assert_int_equal(tt_txn_begin(f->st, 5000 + p, 1, &t), 0);
    assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("doc"), B(v)), 0);
    assert_int_equal(tt_put(t, TT_TABLE_CHANGES, B("chg"), B(v)), 0);
    assert_int_equal(tt_commit(t), 0);
  }
  for (unsigned p = 0; p < 64; p++) {
    char v[16], key[64];
    const char *argv[] = {"CLUSTER", "KEYSLOT", key};
    redisContext *c = raw_connect(nodes[0].host, nodes[0].port);
    redisReply *r;
    int owner;
    snprintf(v, sizeof(v), "p%u", 5000 + p);
    snprintf(key, sizeof(key), "tt{p%u}:%d:doc", 5000 + p, TT_TABLE_DOCS);
    /* Our slot is Redis's slot for our key names. */
    r = raw(c, 3, argv);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal((unsigned)r->integer, rd_partition_slot(5000 + p));
    freeReplyObject(r);
    redisFree(c);
    owner = slot_owner(nodes, 3, rd_partition_slot(5000 + p));
    per_node[owner]++;
    /* The record really is on that node, under the hash tag. */
    c = raw_connect(nodes[owner].host, nodes[owner].port);
    {
      const char *gargv[] = {"GET", key};
      r = raw(c, 2, gargv);
      assert_int_equal(r->type, REDIS_REPLY_STRING);
      snprintf(v, sizeof(v), "p%u", p);
      assert_string_equal(r->str, v);
      freeReplyObject(r);
    }
    redisFree(c);
    snprintf(v, sizeof(v), "p%u", p);
    assert_true(has(f->st, 5000 + p, TT_TABLE_DOCS, "doc", v));
  }
  print_message("64 partitions over the 3 masters: %d %d %d\n", per_node[0],
                per_node[1], per_node[2]);
  for (int i = 0; i < 3; i++)
    assert_true(per_node[i] > 5);
}

static void test_cluster_moved(void **state) {
  fixture *f = *state;
  cnode nodes[3];
  int n = cluster_nodes(nodes, 3), from, to;
  unsigned slot = rd_partition_slot(f->p);
  tt_store *stale;
  tt_txn *t = NULL;
  tt_bytes v;
  char want[80];

  put_commit(f->st, f->p, TT_TABLE_DOCS, "k", "before");
  put_commit(f->st, f->p, TT_TABLE_DOCS, "k2", "before");
  stale = ropen(g_url); /* its map predates the move */
  assert_true(has(stale, f->p, TT_TABLE_DOCS, "k", "before"));
  from = slot_owner(nodes, n, slot);
  to = (from + 1) % n;
  move_slot(nodes, n, slot, from, to);
  snprintf(want, sizeof(want), "%s:%d", nodes[to].host, nodes[to].port);

  /* A write transaction on the old map: MOVED at its first read, followed
   * (nothing was watched yet), and it commits on the new owner. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k"), &v), 0);
  assert_memory_equal(v.data, "before", 6);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k"), B("after")), 0);
  assert_int_equal(tt_commit(t), 0);
  assert_string_equal(store_owner(f->st, slot)->name, want);

  /* A read transaction on the old map. */
  assert_true(has(stale, f->p, TT_TABLE_DOCS, "k", "after"));
  assert_string_equal(store_owner(stale, slot)->name, want);
  assert_true(has(stale, f->p, TT_TABLE_DOCS, "k2", "before"));

  /* Moved again while a write transaction has watched a key: redo. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k"), &v), 0);
  move_slot(nodes, n, slot, to, from);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k2"), &v), TETHER_ERETRY);
  assert_int_equal(tt_commit(t), TETHER_ERETRY);
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("k2"), &v), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k2"), B("after")), 0);
  assert_int_equal(tt_commit(t), 0);
  assert_true(has(stale, f->p, TT_TABLE_DOCS, "k2", "after"));
  tt_store_close(stale);
}

static void test_cluster_ask(void **state) {
  fixture *f = *state;
  cnode nodes[3];
  int n = cluster_nodes(nodes, 3), from, to;
  unsigned slot = rd_partition_slot(f->p);
  tt_txn *t = NULL;
  tt_bytes v;
  char only[32];

  put_commit(f->st, f->p, TT_TABLE_DOCS, "moving", "m");
  put_commit(f->st, f->p, TT_TABLE_DOCS, "staying", "s");
  from = slot_owner(nodes, n, slot);
  to = (from + 2) % n;
  setslot(&nodes[to], slot, "IMPORTING", nodes[from].id);
  setslot(&nodes[from], slot, "MIGRATING", nodes[to].id);
  snprintf(only, sizeof(only), ":%d:moving", TT_TABLE_DOCS);
  migrate_keys(&nodes[from], &nodes[to], slot, only, 1);

  /* Mid-migration: reads follow ASK for the key already moved. */
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "moving", "m"));
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "staying", "s"));
  assert_false(has(f->st, f->p, TT_TABLE_DOCS, "nowhere", NULL));
  /* A write transaction cannot span the two nodes: redo later. */
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("moving"), &v), TETHER_ERETRY);
  tt_abort(t);

  /* Migration finished: writes work again (via MOVED). */
  migrate_keys(&nodes[from], &nodes[to], slot, NULL, -1);
  for (int i = 0; i < n; i++)
    setslot(&nodes[i], slot, "NODE", nodes[to].id);
  assert_int_equal(tt_txn_begin(f->st, f->p, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("moving"), &v), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("moving"), B("done")), 0);
  assert_int_equal(tt_commit(t), 0);
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "moving", "done"));
  assert_true(has(f->st, f->p, TT_TABLE_DOCS, "staying", "s"));
}

/* ---- main ------------------------------------------------------------------- */

#define GENERIC(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest offline[] = {
      cmocka_unit_test(test_crc16_slots),
      cmocka_unit_test(test_url_parsing),
      cmocka_unit_test(test_open_unreachable),
  };
  const struct CMUnitTest single[] = {
      GENERIC(test_put_get_del),
      GENERIC(test_scan_order_and_from),
      GENERIC(test_tables_independent),
      GENERIC(test_commit_abort_reopen),
      GENERIC(test_values_stable_in_write_txn),
      GENERIC(test_read_your_writes_scan),
      GENERIC(test_scan_with_writes),
      GENERIC(test_key_too_long),
      GENERIC(test_watch_conflict),
      GENERIC(test_round_trips),
      GENERIC(test_one_writer_per_partition),
      GENERIC(test_read_txn_moves_threads),
      GENERIC(test_reply_bound),
      cmocka_unit_test(test_open_refusals),
      cmocka_unit_test_teardown(test_outage_and_recovery, outage_teardown),
  };
  const struct CMUnitTest cluster[] = {
      GENERIC(test_put_get_del),
      GENERIC(test_scan_order_and_from),
      GENERIC(test_tables_independent),
      GENERIC(test_commit_abort_reopen),
      GENERIC(test_values_stable_in_write_txn),
      GENERIC(test_read_your_writes_scan),
      GENERIC(test_scan_with_writes),
      GENERIC(test_key_too_long),
      GENERIC(test_watch_conflict),
      GENERIC(test_round_trips),
      GENERIC(test_one_writer_per_partition),
      GENERIC(test_cluster_spread),
      GENERIC(test_cluster_moved),
      GENERIC(test_cluster_ask),
      cmocka_unit_test(test_open_refusals),
  };
  const char *url = getenv("TETHER_TEST_REDIS_URL");
  const char *curl = getenv("TETHER_TEST_REDIS_CLUSTER_URL");
  int rc = cmocka_run_group_tests_name("redis_offline", offline, NULL, NULL);

  if (url && *url) {
    g_url = url;
    g_cluster = 0;
    rc |= cmocka_run_group_tests_name("redis_single", single, group_setup,
                                      NULL);
  } else {
    printf("SKIP redis_single: TETHER_TEST_REDIS_URL is not set (run "
           "tests/redis/test_store_redis.sh, or ctest -R redis)\n");
  }
  if (curl && *curl) {
    g_url = curl;
    g_cluster = 1;
    rc |= cmocka_run_group_tests_name("redis_cluster", cluster, group_setup,
                                      NULL);
  } else {
    printf("SKIP redis_cluster: TETHER_TEST_REDIS_CLUSTER_URL is not set (run "
           "tests/redis/test_store_redis.sh, or ctest -R redis)\n");
  }
  return rc;
}
