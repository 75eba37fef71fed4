/* store_lmdb.c — the LMDB backend against the store.h contract. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"

/* ---- helpers ------------------------------------------------------------ */

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void rm_rf(const char *dir) {
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct {
  char dir[64];
  tt_store *st;
} fixture;

static tt_store *open_ok(const char *dir, const tt_store_opts *o) {
  char err[512];
  tt_store *st = (tt_store *)1;
  int rc = tt_store_open_lmdb(dir, o, &st, err, sizeof(err));
  if (rc)
    print_error("open %s: %s\n", dir, err);
  assert_int_equal(rc, 0);
  assert_non_null(st);
  return st;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  strcpy(f->dir, "/tmp/tt_store_XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  f->st = open_ok(f->dir, NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tt_store_close(f->st);
  rm_rf(f->dir);
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

static void put_commit(tt_store *st, tt_table tab, const char *k,
                       const char *v) {
  tt_txn *t = NULL;
  assert_int_equal(tt_txn_begin(st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, tab, B(k), B(v)), 0);
  assert_int_equal(tt_commit(t), 0);
}

/* 1 when TAB holds K = V, 0 when K is absent; fails on anything else. */
static int has(tt_store *st, tt_table tab, const char *k, const char *v) {
  tt_txn *t = NULL;
  tt_bytes val;
  int rc;
  assert_int_equal(tt_txn_begin(st, 0, 0, &t), 0);
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

/* ---- tests -------------------------------------------------------------- */

static void test_put_get_del(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  tt_bytes v;

  assert_string_equal(f->st->ops->name, "lmdb");
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("a"), &v), TETHER_ENOTFOUND);
  assert_null(v.data);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("a"), B("one")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("a"), &v), 0); /* own write */
  assert_int_equal(v.len, 3);
  assert_memory_equal(v.data, "one", 3);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("a"), B("replaced")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("empty"), BN(NULL, 0)), 0);
  /* An empty key is a caller bug, and does not poison T. */
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN("", 0), B("x")), TETHER_EINVAL);
  assert_int_equal(tt_commit(t), 0);

  assert_true(has(f->st, TT_TABLE_DOCS, "a", "replaced"));
  assert_true(has(f->st, TT_TABLE_DOCS, "empty", ""));

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("a")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("never-there")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("a"), &v), TETHER_ENOTFOUND);
  assert_int_equal(tt_commit(t), 0);
  assert_false(has(f->st, TT_TABLE_DOCS, "a", NULL));
  assert_true(has(f->st, TT_TABLE_DOCS, "empty", ""));

  /* Writes in a read transaction are refused. */
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
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
  /* Insertion order differs from key order; "a" < "a\0" < "a\0b" < "ab". */
  static const struct {
    const char *k;
    size_t n;
  } keys[] = {{"b", 1},   {"ab", 2}, {"a\0b", 3}, {"a", 1},
              {"a\0", 2}, {"\xff", 1}, {"ba", 2}};
  static const int order[] = {3, 4, 2, 1, 0, 6, 5};
  char big[600];

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    char v[8];
    snprintf(v, sizeof(v), "v%zu", i);
    assert_int_equal(tt_put(t, TT_TABLE_CHANGES, BN(keys[i].k, keys[i].n),
                            B(v)),
                     0);
  }
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  do_scan(t, TT_TABLE_CHANGES, BN(NULL, 0), &c);
  assert_int_equal(c.n, 7);
  for (int i = 0; i < 7; i++) {
    char v[8];
    snprintf(v, sizeof(v), "v%d", order[i]);
    assert_int_equal(c.klen[i], keys[order[i]].n);
    assert_memory_equal(c.keys[i], keys[order[i]].k, c.klen[i]);
    assert_string_equal(c.vals[i], v);
  }

  /* From a present key: it is included. */
  do_scan(t, TT_TABLE_CHANGES, BN("ab", 2), &c);
  assert_int_equal(c.n, 4);
  assert_memory_equal(c.keys[0], "ab", 2);
  /* From an absent key: the next one up. */
  do_scan(t, TT_TABLE_CHANGES, BN("aa", 2), &c);
  assert_int_equal(c.n, 4);
  assert_memory_equal(c.keys[0], "ab", 2);
  do_scan(t, TT_TABLE_CHANGES, BN("a\0", 2), &c);
  assert_int_equal(c.n, 6);
  assert_int_equal(c.klen[0], 2);
  /* Past the end: nothing. */
  do_scan(t, TT_TABLE_CHANGES, BN("\xff\x01", 2), &c);
  assert_int_equal(c.n, 0);
  /* From a key longer than any storable key ("b" + 599 zero bytes sorts
   * after "b" and before "ba"). */
  memset(big, 0, sizeof(big));
  big[0] = 'b';
  do_scan(t, TT_TABLE_CHANGES, BN(big, sizeof(big)), &c);
  assert_int_equal(c.n, 2);
  assert_memory_equal(c.keys[0], "ba", 2);

  /* A non-zero callback return stops the scan and is returned. */
  memset(&c, 0, sizeof(c));
  c.stop_at = 2;
  assert_int_equal(tt_scan(t, TT_TABLE_CHANGES, BN(NULL, 0), collect_cb, &c),
                   42);
  assert_int_equal(c.n, 2);
  /* An empty table. */
  do_scan(t, TT_TABLE_AUDIT, BN(NULL, 0), &c);
  assert_int_equal(c.n, 0);
  tt_abort(t);
}

static void test_tables_independent(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  collect c;

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  for (int i = 0; i < TT_TABLE__COUNT; i++) {
    char v[16];
    snprintf(v, sizeof(v), "table%d", i);
    assert_int_equal(tt_put(t, (tt_table)i, B("same-key"), B(v)), 0);
    snprintf(v, sizeof(v), "only%d", i);
    assert_int_equal(tt_put(t, (tt_table)i, B(v), B("x")), 0);
  }
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_del(t, TT_TABLE_VIEW, B("same-key")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
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

static void test_durability(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  tt_bytes v;

  put_commit(f->st, TT_TABLE_META, "committed", "yes");
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_META, B("aborted"), B("no")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_META, B("committed"), B("no")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_META, B("committed")), 0);
  tt_abort(t);
  assert_true(has(f->st, TT_TABLE_META, "committed", "yes"));
  assert_false(has(f->st, TT_TABLE_META, "aborted", NULL));

  tt_store_close(f->st);
  f->st = open_ok(f->dir, NULL);
  assert_true(has(f->st, TT_TABLE_META, "committed", "yes"));
  assert_false(has(f->st, TT_TABLE_META, "aborted", NULL));

  /* A write transaction left open at reopen time is gone too. */
  assert_int_equal(tt_txn_begin(f->st, 3, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_OUTBOX, B("k"), B("v")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_OUTBOX, B("k"), &v), 0);
  tt_abort(t);
  tt_store_close(f->st);
  f->st = open_ok(f->dir, NULL);
  assert_false(has(f->st, TT_TABLE_OUTBOX, "k", NULL));
}

/* Values handed out in a write transaction stay valid after later writes
 * to the same page (LMDB edits dirty pages in place). */
static void test_values_stable_in_write_txn(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  tt_bytes v1, v2, v3;

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("a"), B("AAAAAAAA")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("b"), B("BBBBBBBB")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("c"), B("CCCCCCCC")), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("b"), &v1), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("c"), &v2), 0);
  /* Same-size overwrite is done in place; a delete compacts the page. */
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("b"), B("xxxxxxxx")), 0);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, B("a")), 0);
  assert_memory_equal(v1.data, "BBBBBBBB", 8);
  assert_memory_equal(v2.data, "CCCCCCCC", 8);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("b"), &v3), 0);
  assert_memory_equal(v3.data, "xxxxxxxx", 8);
  assert_int_equal(tt_commit(t), 0);

  /* Read from the map (table not yet written), then write: still valid. */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("c"), &v1), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("c"), B("yyyyyyyy")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("c"), B("zzzzzzzz")), 0);
  assert_memory_equal(v1.data, "CCCCCCCC", 8);
  assert_int_equal(tt_commit(t), 0);
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

/* On "k1".."k3" adds key+"x" (sorted right after it), once. */
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

/* Overwrites each entry in place, then checks KEY/VAL it was given. */
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

static int count_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)k, (void)v;
  ++*(int *)ctx;
  return 0;
}

/* Scans the same table from inside a scan, then writes. */
static int nested_cb(void *ctx, tt_bytes k, tt_bytes v) {
  tt_txn *t = ctx;
  char kcopy[8], vcopy[8];
  int n = 0;
  assert_true(k.len < 8 && v.len < 8);
  memcpy(kcopy, k.data, k.len);
  memcpy(vcopy, v.data, v.len);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0000"), count_cb, &n), 0);
  assert_int_equal(n, 500);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("0250"), B("value")), 0);
  assert_memory_equal(k.data, kcopy, k.len);
  assert_memory_equal(v.data, vcopy, v.len);
  return 0;
}

static void test_scan_with_writes(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  collect c;
  grow_ctx g;
  char k[8];

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  for (int i = 0; i < 500; i++) {
    snprintf(k, sizeof(k), "%04d", i);
    assert_int_equal(tt_put(t, TT_TABLE_PENDING, B(k), B("value")), 0);
  }
  assert_int_equal(tt_commit(t), 0);

  /* KEY/VAL given to the callback survive its writes to their page, both
   * for a table untouched so far and for one already written. */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0100"), overwrite_cb, t),
                   0);
  for (int i = 0; i < 500; i++) {
    snprintf(k, sizeof(k), "%04d", i);
    assert_int_equal(tt_put(t, TT_TABLE_PENDING, B(k), B("value")), 0);
  }
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), overwrite_cb, t),
                   0);
  tt_abort(t);

  /* Nested scans of a written table keep the outer entry intact. */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("0499"), B("value")), 0);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, B("0490"), nested_cb, t), 0);
  tt_abort(t);

  /* Delete every entry from inside the scan: all are visited once. */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_scan(t, TT_TABLE_PENDING, BN(NULL, 0), del_each_cb, t),
                   0);
  do_scan(t, TT_TABLE_PENDING, BN(NULL, 0), &c);
  assert_int_equal(c.n, 0);
  assert_int_equal(tt_commit(t), 0);

  /* Insert after the current key from inside the scan: visited. */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_PENDING, B("k1"), B("")), 0);
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
}

/* ---- threads ------------------------------------------------------------ */

typedef struct {
  tt_store *st;
  tt_txn *txn; /* for reader_other_thread */
  int got_old, saw_new_key, rc;
} reader_arg;

static void *reader_main(void *p) {
  reader_arg *a = p;
  tt_txn *t = NULL;
  tt_bytes v;
  collect c;
  a->rc = tt_txn_begin(a->st, 0, 0, &t);
  if (a->rc)
    return NULL;
  a->rc = tt_get(t, TT_TABLE_DOCS, B("k"), &v);
  a->got_old = a->rc == 0 && v.len == 3 && memcmp(v.data, "old", 3) == 0;
  memset(&c, 0, sizeof(c));
  c.stop_at = -1;
  tt_scan(t, TT_TABLE_DOCS, BN(NULL, 0), collect_cb, &c);
  a->saw_new_key = c.n != 1;
  tt_abort(t);
  return NULL;
}

static void test_snapshot_during_write(void **state) {
  fixture *f = *state;
  tt_txn *w = NULL, *r = NULL;
  tt_bytes v;
  pthread_t th;
  reader_arg a = {.st = f->st};

  put_commit(f->st, TT_TABLE_DOCS, "k", "old");
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &r), 0); /* before the write */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &w), 0);
  assert_int_equal(tt_put(w, TT_TABLE_DOCS, B("k"), B("new")), 0);
  assert_int_equal(tt_put(w, TT_TABLE_DOCS, B("k2"), B("added")), 0);

  /* A reader on another thread, while the write is open, does not block
   * and sees the last committed state. */
  assert_int_equal(pthread_create(&th, NULL, reader_main, &a), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(a.rc, 0);
  assert_true(a.got_old);
  assert_false(a.saw_new_key);

  assert_int_equal(tt_commit(w), 0);
  /* The older snapshot is unchanged by the commit; a new one sees it. */
  assert_int_equal(tt_get(r, TT_TABLE_DOCS, B("k"), &v), 0);
  assert_memory_equal(v.data, "old", 3);
  assert_int_equal(tt_get(r, TT_TABLE_DOCS, B("k2"), &v), TETHER_ENOTFOUND);
  tt_abort(r);
  assert_true(has(f->st, TT_TABLE_DOCS, "k", "new"));
  assert_true(has(f->st, TT_TABLE_DOCS, "k2", "added"));
}

static void *reader_other_thread(void *p) {
  reader_arg *a = p;
  tt_bytes v;
  a->rc = tt_get(a->txn, TT_TABLE_DOCS, B("k"), &v);
  a->got_old = a->rc == 0 && v.len == 3 && memcmp(v.data, "old", 3) == 0;
  tt_abort(a->txn); /* ended on a thread other than the one that began it */
  return NULL;
}

static void test_read_txn_moves_threads(void **state) {
  fixture *f = *state;
  pthread_t th;
  reader_arg a = {.st = f->st};
  put_commit(f->st, TT_TABLE_DOCS, "k", "old");
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &a.txn), 0);
  assert_int_equal(pthread_create(&th, NULL, reader_other_thread, &a), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(a.rc, 0);
  assert_true(a.got_old);
  /* Its reader slot was released: many more read transactions work. */
  for (int i = 0; i < 2000; i++) {
    tt_txn *t = NULL;
    assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
    tt_abort(t);
  }
}

typedef struct {
  tt_store *st;
  volatile int began, rc;
} writer_arg;

static void *writer_main(void *p) {
  writer_arg *a = p;
  tt_txn *t = NULL;
  a->rc = tt_txn_begin(a->st, 1, 1, &t); /* another partition: same writer */
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

static void test_one_writer(void **state) {
  fixture *f = *state;
  tt_txn *w = NULL, *w2 = NULL;
  pthread_t th;
  writer_arg a = {.st = f->st};
  struct timespec ts = {0, 200 * 1000 * 1000};

  assert_int_equal(tt_txn_begin(f->st, 0, 1, &w), 0);
  /* The same thread asking for a second writer would deadlock: refused. */
  assert_int_equal(tt_txn_begin(f->st, 1, 1, &w2), TETHER_EBUSY);
  assert_null(w2);
  /* Another thread waits until the first writer ends. */
  assert_int_equal(pthread_create(&th, NULL, writer_main, &a), 0);
  nanosleep(&ts, NULL);
  assert_int_equal(__atomic_load_n(&a.began, __ATOMIC_SEQ_CST), 0);
  assert_int_equal(tt_put(w, TT_TABLE_DOCS, B("w1"), B("first")), 0);
  assert_int_equal(tt_commit(w), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(a.began, 1);
  assert_int_equal(a.rc, 0);
  assert_true(has(f->st, TT_TABLE_DOCS, "w1", "first"));
  assert_true(has(f->st, TT_TABLE_DOCS, "w2", "second"));
  /* After the end, this thread may write again. */
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &w), 0);
  tt_abort(w);
}

/* ---- limits and errors -------------------------------------------------- */

static void test_map_full(void **state) {
  fixture *f = *state;
  tt_store_opts o = {.map_size = 1 << 20};
  char val[1000], key[16];
  int committed = 0, rc = 0;
  tt_txn *t = NULL;
  tt_bytes v;

  tt_store_close(f->st);
  rm_rf(f->dir);
  f->st = open_ok(f->dir, &o);
  memset(val, 'v', sizeof(val));
  for (int i = 0; i < 100000; i++) {
    snprintf(key, sizeof(key), "%08d", i);
    assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
    rc = tt_put(t, TT_TABLE_DOCS, B(key), BN(val, sizeof(val)));
    if (rc) {
      assert_int_equal(rc, TETHER_EFULL);
      /* T is poisoned: everything after returns the same error. */
      assert_int_equal(tt_get(t, TT_TABLE_DOCS, B("00000000"), &v),
                       TETHER_EFULL);
      assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("x"), B("y")), TETHER_EFULL);
      assert_int_equal(tt_commit(t), TETHER_EFULL);
      break;
    }
    rc = tt_commit(t);
    if (rc) {
      assert_int_equal(rc, TETHER_EFULL);
      break;
    }
    committed++;
  }
  assert_int_equal(rc, TETHER_EFULL);
  assert_true(committed > 100 && committed < 1100);

  /* Everything committed before is readable, and reads still work. */
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  for (int i = 0; i < committed; i++) {
    snprintf(key, sizeof(key), "%08d", i);
    assert_int_equal(tt_get(t, TT_TABLE_DOCS, B(key), &v), 0);
    assert_int_equal(v.len, sizeof(val));
    assert_memory_equal(v.data, val, sizeof(val));
  }
  snprintf(key, sizeof(key), "%08d", committed);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, B(key), &v), TETHER_ENOTFOUND);
  tt_abort(t);

  /* Reopen with a larger map: same data, and writes go through. */
  tt_store_close(f->st);
  o.map_size = 8 << 20;
  f->st = open_ok(f->dir, &o);
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  for (int i = committed; i < committed + 200; i++) {
    snprintf(key, sizeof(key), "%08d", i);
    assert_int_equal(tt_put(t, TT_TABLE_DOCS, B(key), BN(val, sizeof(val))),
                     0);
  }
  assert_int_equal(tt_commit(t), 0);
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  for (int i = 0; i < committed + 200; i++) {
    snprintf(key, sizeof(key), "%08d", i);
    assert_int_equal(tt_get(t, TT_TABLE_DOCS, B(key), &v), 0);
  }
  tt_abort(t);
}

static void test_read_only(void **state) {
  fixture *f = *state;
  tt_store_opts ro = {.read_only = 1};
  tt_txn *t = NULL;
  tt_bytes v;

  put_commit(f->st, TT_TABLE_META, "format", "1");
  tt_store_close(f->st);
  f->st = open_ok(f->dir, &ro);
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), TETHER_EREADONLY);
  assert_null(t);
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_META, B("format"), &v), 0);
  assert_memory_equal(v.data, "1", 1);
  assert_int_equal(tt_put(t, TT_TABLE_META, B("format"), B("2")),
                   TETHER_EREADONLY);
  assert_int_equal(tt_del(t, TT_TABLE_META, B("format")), TETHER_EREADONLY);
  tt_abort(t);
  tt_store_close(f->st);
  f->st = open_ok(f->dir, NULL);
  assert_true(has(f->st, TT_TABLE_META, "format", "1"));
}

static void test_missing_dir(void **state) {
  fixture *f = *state;
  tt_store_opts ro = {.read_only = 1};
  tt_store *st = (tt_store *)1;
  char err[512], sub[128], file[128];
  struct stat sb;
  FILE *fp;
  int rc;

  /* The directory vanished after close: a read-only open fails cleanly. */
  tt_store_close(f->st);
  f->st = NULL;
  rm_rf(f->dir);
  rc = tt_store_open_lmdb(f->dir, &ro, &st, err, sizeof(err));
  assert_int_equal(rc, TETHER_ENOTFOUND);
  assert_null(st);
  assert_non_null(strstr(err, f->dir));

  /* An empty directory holds no store: read-only does not create one. */
  assert_int_equal(mkdir(f->dir, 0700), 0);
  st = (tt_store *)1;
  rc = tt_store_open_lmdb(f->dir, &ro, &st, err, sizeof(err));
  assert_int_equal(rc, TETHER_ENOTFOUND);
  assert_null(st);
  assert_non_null(strstr(err, f->dir));
  assert_int_equal(access(strcat(strcpy(sub, f->dir), "/data.mdb"), F_OK),
                   -1);

  /* A read-write open creates missing parents, mode 0700. */
  snprintf(sub, sizeof(sub), "%s/x/y", f->dir);
  tt_store_close(open_ok(sub, NULL));
  assert_int_equal(stat(sub, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  snprintf(sub, sizeof(sub), "%s/x", f->dir);
  assert_int_equal(stat(sub, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);

  /* A path that is a file. */
  snprintf(file, sizeof(file), "%s/plain", f->dir);
  fp = fopen(file, "w");
  assert_non_null(fp);
  fclose(fp);
  st = (tt_store *)1;
  rc = tt_store_open_lmdb(file, NULL, &st, err, sizeof(err));
  assert_int_equal(rc, TETHER_EINVAL);
  assert_null(st);
  assert_non_null(strstr(err, file));
  /* Bad arguments. */
  assert_int_equal(tt_store_open_lmdb("", NULL, &st, err, sizeof(err)),
                   TETHER_EINVAL);
  assert_int_equal(tt_store_open_lmdb(f->dir, NULL, &st, NULL, 0),
                   0); /* errbuf is optional */
  f->st = st;
}

/* The data directory removed while the store is open: a commit would go to
 * an unlinked file and vanish at the next open, so it must fail, and what
 * was committed before stays readable through the open handle. */
static void test_vanished_while_open(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  put_commit(f->st, TT_TABLE_DOCS, "before", "1");
  rm_rf(f->dir);
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("after"), B("2")), 0);
  assert_int_equal(tt_commit(t), TETHER_EIO);
  assert_int_equal(has(f->st, TT_TABLE_DOCS, "before", "1"), 1);
  assert_int_equal(has(f->st, TT_TABLE_DOCS, "after", "2"), 0);
}

/* Re-reading a value the transaction wrote: get keeps a private copy per
 * read (bounded, ENOMEM past the bound), get_tmp none — 400 reads of 1 MiB
 * would be 400 MiB of copies. */
static void test_get_tmp_rereads(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  size_t n = 1u << 20;
  char *big = malloc(n);
  tt_bytes v;
  assert_non_null(big);
  memset(big, 'x', n);
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("big"), BN(big, n)), 0);
  for (int i = 0; i < 400; i++) {
    assert_int_equal(tt_get_tmp(t, TT_TABLE_DOCS, B("big"), &v), 0);
    assert_int_equal(v.len, n);
    assert_memory_equal(v.data, big, 64);
  }
  int rc = 0;
  for (int i = 0; i < 400 && rc == 0; i++)
    rc = tt_get(t, TT_TABLE_DOCS, B("big"), &v);
  assert_int_equal(rc, TETHER_ENOMEM); /* the bound on copies holds */
  tt_abort(t);
  free(big);
}

static void test_not_a_store(void **state) {
  fixture *f = *state;
  char err[512], path[128];
  tt_store *st = (tt_store *)1;
  FILE *fp;
  int rc;
  tt_store_close(f->st);
  f->st = NULL;
  snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
  fp = fopen(path, "w");
  assert_non_null(fp);
  for (int i = 0; i < 4096; i++)
    fputc('#', fp);
  fclose(fp);
  snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
  remove(path);
  rc = tt_store_open_lmdb(f->dir, NULL, &st, err, sizeof(err));
  assert_int_equal(rc, TETHER_ECORRUPT);
  assert_null(st);
  assert_non_null(strstr(err, f->dir));
  assert_non_null(strstr(err, "backup"));
}

static void test_double_open(void **state) {
  fixture *f = *state;
  char err[512];
  tt_store *st = (tt_store *)1;
  assert_int_equal(tt_store_open_lmdb(f->dir, NULL, &st, err, sizeof(err)),
                   TETHER_EBUSY);
  assert_null(st);
  assert_non_null(strstr(err, f->dir));
  /* The first handle is unaffected. */
  put_commit(f->st, TT_TABLE_META, "still", "works");
  assert_true(has(f->st, TT_TABLE_META, "still", "works"));
}

static void test_key_too_long(void **state) {
  fixture *f = *state;
  tt_txn *t = NULL;
  char key[512];
  tt_bytes v;
  collect c;

  memset(key, 'k', sizeof(key));
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN(key, 511), B("max")), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, BN(key, 512), B("over")),
                   TETHER_ETOOBIG);
  /* The refusal changed nothing and T goes on. */
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, BN(key, 512), &v),
                   TETHER_ENOTFOUND);
  assert_int_equal(tt_del(t, TT_TABLE_DOCS, BN(key, 512)), 0);
  assert_int_equal(tt_put(t, TT_TABLE_DOCS, B("k"), B("short")), 0);
  assert_int_equal(tt_commit(t), 0);

  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_DOCS, BN(key, 511), &v), 0);
  assert_memory_equal(v.data, "max", 3);
  do_scan(t, TT_TABLE_DOCS, BN(NULL, 0), &c);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.klen[0], 1);
  assert_int_equal(c.klen[1], 511);
  tt_abort(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scan_order_and_from, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tables_independent, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_durability, setup, teardown),
      cmocka_unit_test_setup_teardown(test_values_stable_in_write_txn, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_scan_with_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_during_write, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_read_txn_moves_threads, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_one_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_vanished_while_open, setup, teardown),
      cmocka_unit_test_setup_teardown(test_get_tmp_rereads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_a_store, setup, teardown),
      cmocka_unit_test_setup_teardown(test_double_open, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_too_long, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
