/* replica_faults.c — a replica whose local store fills up. What must hold:
 * the write that does not fit returns TETHER_EFULL and changes nothing
 * (view, outbox, hash chain: byte for byte); recording the server's
 * answer on a full store either works or changes nothing; after the map
 * is grown the replica goes on with the next seq chained on the last
 * stored intent, and nothing written or acknowledged before is lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/intent.h"
#include "core/util.h"
#include "replica/replica.h"
#include "store/store.h"

#define SMALL_MAP (2u << 20)
#define BIG_MAP (64u << 20)
#define PAD 3000
#define NOW 1700000000000ull

static const uint8_t RID[TT_ID_LEN] = {0xfa, 0x17, 1, 2, 3, 4, 5, 6,
                                       7,    8,    9, 10, 11, 12, 13, 14};

typedef struct {
  char dir[64];
  tt_store *st;
  tt_replica *r;
} renv;

static void ropen(renv *e, uint64_t map) {
  char err[256] = "";
  tt_store_opts so = {.map_size = map, .no_sync = 1};
  if (tt_store_open_lmdb(e->dir, &so, &e->st, err, sizeof err))
    fail_msg("store open: %s", err);
  assert_int_equal(tt_replica_open(e->st, &e->r), 0);
}

static void rclose(renv *e) {
  tt_replica_close(e->r);
  e->r = NULL;
  tt_store_close(e->st);
  e->st = NULL;
}

static renv *renv_new(uint64_t map) {
  renv *e = calloc(1, sizeof *e);
  char err[256] = "";
  tt_store_opts so = {.map_size = map, .no_sync = 1};
  assert_non_null(e);
  strcpy(e->dir, "/tmp/tt_rfault_XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  if (tt_store_open_lmdb(e->dir, &so, &e->st, err, sizeof err))
    fail_msg("store open: %s", err);
  assert_int_equal(tt_replica_create(e->st, RID, "http://127.0.0.1:1"), 0);
  assert_int_equal(tt_replica_open(e->st, &e->r), 0);
  return e;
}

static void renv_free(renv *e) {
  char cmd[128];
  rclose(e);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);
  free(e);
}

/* ---- fingerprint of the whole store -------------------------------------- */

typedef struct {
  uint64_t h, n;
} fprint;

static void fmix(fprint *f, const void *p, size_t len) {
  const uint8_t *b = p;
  for (size_t i = 0; i < 8; i++)
    f->h = (f->h ^ (uint8_t)(len >> (8 * i))) * 1099511628211ull;
  for (size_t i = 0; i < len; i++)
    f->h = (f->h ^ b[i]) * 1099511628211ull;
}

static int fprint_cb(void *ctx, tt_bytes k, tt_bytes v) {
  fprint *f = ctx;
  fmix(f, k.data, k.len);
  fmix(f, v.data, v.len);
  f->n++;
  return 0;
}

static fprint fingerprint(tt_store *st) {
  fprint f = {14695981039346656037ull, 0};
  tt_txn *t = NULL;
  tt_bytes all = {NULL, 0};
  assert_int_equal(tt_txn_begin(st, 0, 0, &t), 0);
  for (int tab = 0; tab < TT_TABLE__COUNT; tab++) {
    uint8_t tb = (uint8_t)tab;
    fmix(&f, &tb, 1);
    assert_int_equal(tt_scan(t, (tt_table)tab, all, fprint_cb, &f), 0);
  }
  tt_abort(t);
  return f;
}

#define assert_same_store(a, b)                                                \
  do {                                                                         \
    assert_true((a).h == (b).h);                                               \
    assert_true((a).n == (b).n);                                               \
  } while (0)

/* ---- writes -------------------------------------------------------------- */

/* Writes document "d<N>" = {"n":N,"pad":"..."}. */
static int put_doc(renv *e, unsigned n) {
  char id[32], *pad = malloc(PAD + 1);
  assert_non_null(pad);
  memset(pad, 'a' + (char)(n % 26), PAD);
  pad[PAD] = 0;
  snprintf(id, sizeof id, "d%05u", n);
  json_t *o = json_pack("{s:I,s:s}", "n", (json_int_t)n, "pad", pad);
  int rc = tt_replica_put(e->r, "docs", id, o, NULL, NOW + n);
  json_decref(o);
  free(pad);
  return rc;
}

static void assert_doc(renv *e, unsigned n, int present) {
  char id[32];
  json_t *o = NULL;
  snprintf(id, sizeof id, "d%05u", n);
  int rc = tt_replica_get(e->r, "docs", id, &o);
  if (!present) {
    assert_int_equal(rc, TETHER_ENOTFOUND);
    assert_null(o);
    return;
  }
  if (rc)
    fail_msg("document %s written before is gone: %s", id,
             tether_err_name(rc));
  assert_int_equal(json_integer_value(json_object_get(o, "n")), n);
  const char *pad = json_string_value(json_object_get(o, "pad"));
  assert_non_null(pad);
  assert_int_equal(strlen(pad), PAD);
  assert_int_equal(pad[0], 'a' + (char)(n % 26));
  json_decref(o);
}

/* The whole outbox as the next push would send it: seqs FIRST..LAST,
 * contiguous, each intent well-formed, hashed, chained on the one before,
 * and the one for document N is the write of N. */
static void assert_outbox(renv *e, uint64_t first, uint64_t last) {
  json_t *req = NULL;
  char err[200];
  uint8_t prev[TT_HASH_LEN];
  int rc = tt_replica_push_request(e->r, 0, &req);
  if (first > last) {
    assert_int_equal(rc, TETHER_ENOTFOUND);
    return;
  }
  assert_int_equal(rc, 0);
  const json_t *ins = json_object_get(req, "intents");
  assert_int_equal(json_array_size(ins), last - first + 1);
  for (size_t i = 0; i < json_array_size(ins); i++) {
    tt_intent in;
    char id[32];
    rc = tt_intent_from_json(json_array_get(ins, i), &in, err, sizeof err);
    if (rc)
      fail_msg("outbox intent %zu: %s", i, err);
    assert_int_equal(in.seq, first + i);
    assert_int_equal(tt_intent_check_hash(&in), 0);
    if (i)
      assert_memory_equal(in.prev, prev, TT_HASH_LEN);
    memcpy(prev, in.hash, TT_HASH_LEN);
    snprintf(id, sizeof id, "d%05u", (unsigned)in.seq);
    assert_string_equal(in.id, id);
    tt_intent_clear(&in);
  }
  assert_int_equal(tt_replica_outbox_len(e->r), last - first + 1);
  json_decref(req);
}

/* A 200 answer acknowledging seqs FIRST..LAST as applied. */
static json_t *ack(uint64_t first, uint64_t last) {
  json_t *outs = json_array();
  for (uint64_t s = first; s <= last; s++)
    json_array_append_new(outs, json_pack("{s:I,s:s,s:i,s:I}", "seq",
                                          (json_int_t)s, "outcome",
                                          "applied", "p", 0, "commit",
                                          (json_int_t)s));
  return json_pack("{s:i,s:I,s:o}", "v", 1, "acked", (json_int_t)last,
                   "outcomes", outs);
}

static int count_cb(void *ctx, const json_t *obj) {
  (void)obj;
  (*(size_t *)ctx)++;
  return 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_full_replica(void **state) {
  (void)state;
  renv *e = renv_new(SMALL_MAP);
  unsigned n = 0, acked = 0;
  int rc;

  /* Fill the store, acknowledging the first writes on the way (as a sync
   * would) so that the outbox holds both kinds of record. */
  while ((rc = put_doc(e, n + 1)) == 0) {
    n++;
    if (n == 20) {
      json_t *req = NULL, *resp = ack(1, 10);
      assert_int_equal(tt_replica_push_request(e->r, 10, &req), 0);
      assert_int_equal(tt_replica_push_done(e->r, req, 200, resp), 0);
      acked = 10;
      json_decref(req);
      json_decref(resp);
    }
    assert_true(n < 5000);
  }
  assert_int_equal(rc, TETHER_EFULL);
  assert_true(n > 20);
  print_message("replica full after %u local writes\n", n);

  /* The write that did not fit changed nothing, and does it again. */
  fprint before = fingerprint(e->st);
  assert_int_equal(put_doc(e, n + 1), TETHER_EFULL);
  assert_same_store(before, fingerprint(e->st));
  assert_doc(e, n + 1, 0);
  assert_doc(e, n, 1);
  assert_outbox(e, acked + 1, n);
  /* The server's answer arrives while the store is full: recording it
   * either works or changes nothing. */
  {
    json_t *req = NULL, *resp = ack(acked + 1, acked + 5);
    assert_int_equal(tt_replica_push_request(e->r, 5, &req), 0);
    rc = tt_replica_push_done(e->r, req, 200, resp);
    if (rc) {
      assert_int_equal(rc, TETHER_EFULL);
      assert_same_store(before, fingerprint(e->st));
      print_message("recording an ack on the full store: EFULL\n");
    } else {
      acked += 5;
      print_message("recording an ack on the full store: ok\n");
    }
    json_decref(req);
    json_decref(resp);
  }

  /* The operator grows the store: everything is still there, the same
   * write now fits, and the chain goes on from the last stored intent. */
  rclose(e);
  ropen(e, BIG_MAP);
  for (unsigned i = 1; i <= n; i++)
    assert_doc(e, i, 1);
  assert_doc(e, n + 1, 0);
  assert_outbox(e, acked + 1, n);
  size_t outcomes = 0;
  assert_int_equal(tt_replica_take_outcomes(e->r, count_cb, &outcomes), 0);
  assert_int_equal(outcomes, acked);

  assert_int_equal(put_doc(e, n + 1), 0);
  assert_doc(e, n + 1, 1);
  assert_outbox(e, acked + 1, n + 1);
  {
    /* The rest can now be acknowledged in one answer. */
    json_t *req = NULL, *resp = ack(acked + 1, n + 1);
    assert_int_equal(tt_replica_push_request(e->r, 0, &req), 0);
    assert_int_equal(tt_replica_push_done(e->r, req, 200, resp), 0);
    json_decref(req);
    json_decref(resp);
    assert_outbox(e, 1, 0);
  }
  /* And it survives one more reopen. */
  rclose(e);
  ropen(e, BIG_MAP);
  for (unsigned i = 1; i <= n + 1; i++)
    assert_doc(e, i, 1);
  renv_free(e);
}

/* A batch on a store that fills up: the contract (replica.h) is that the
 * failing write changes nothing and the batch goes on. Whatever commit
 * then answers, the replica must be consistent: a commit that succeeds
 * holds every write that returned 0 and not the failed one; a commit that
 * fails holds none of the batch. */
static void test_full_batch(void **state) {
  (void)state;
  renv *e = renv_new(SMALL_MAP);
  unsigned n = 0, in_batch = 0;
  int rc;

  /* Leave little room, then fill the rest inside one batch. */
  while (put_doc(e, n + 1) == 0 && n < 5000)
    n++;
  rclose(e);
  ropen(e, SMALL_MAP + (256u << 10));
  fprint before = fingerprint(e->st);
  assert_int_equal(tt_replica_batch_begin(e->r), 0);
  while ((rc = put_doc(e, n + in_batch + 1)) == 0) {
    in_batch++;
    assert_true(in_batch < 5000);
  }
  assert_int_equal(rc, TETHER_EFULL);
  assert_true(in_batch > 0);
  rc = tt_replica_batch_commit(e->r);
  print_message("%u writes in the batch before EFULL; commit: %s\n",
                in_batch, tether_err_name(rc));
  if (rc == 0) {
    for (unsigned i = 1; i <= n + in_batch; i++)
      assert_doc(e, i, 1);
    assert_doc(e, n + in_batch + 1, 0);
    assert_outbox(e, 1, n + in_batch);
  } else {
    assert_int_equal(rc, TETHER_EFULL);
    assert_same_store(before, fingerprint(e->st));
    assert_doc(e, n + 1, 0);
    assert_outbox(e, 1, n);
  }
  renv_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_replica),
      cmocka_unit_test(test_full_batch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
