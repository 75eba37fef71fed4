/* server_push.c — the reconciler's push path against a real LMDB store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server_helpers.h"

#define HLC(ms) ((uint64_t)(ms) << 16)

static void test_apply_and_pull_back(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *o, *d;

  th_rep_init(&r, 1);
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, HLC(TH_NOW), "notes", "n1", 0,
                         "[{\"kind\":\"create\",\"value\":{\"title\":\"A\","
                         "\"n\":1}}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "seq"), 1);
  assert_int_equal(th_int(o, "p"), 0);
  assert_int_equal(th_int(o, "commit"), 1);
  assert_null(json_object_get(o, "duplicate"));
  json_decref(o);

  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, HLC(TH_NOW) + 1, "notes", "n1", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"B\",\"base_value\":\"A\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 2);
  json_decref(o);

  d = th_doc(e, "notes", "n1");
  assert_non_null(d);
  th_assert_json(d, "{\"title\":\"B\",\"n\":1}");
  json_decref(d);

  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.intents_applied, 2);
  assert_int_equal(st.pushes, 2);
  assert_int_equal(st.commits, 2);
  assert_int_equal(st.bad_requests, 0);
  th_env_free(e);
}

static void test_duplicate_applied_once(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *in[2], *req, *resp1, *resp2, *d;

  th_rep_init(&r, 2);
  in[0] = th_intent(&r, HLC(TH_NOW), "c", "x", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":5}]");
  in[1] = th_intent(&r, HLC(TH_NOW) + 1, "c", "x", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":2}]");
  req = th_req(&r, in, 2);
  assert_int_equal(th_push(e, req, &resp1), 200);
  assert_int_equal(th_push(e, req, &resp2), 200);
  assert_int_equal(th_int(resp1, "acked"), 2);
  assert_int_equal(th_int(resp2, "acked"), 2);
  for (size_t i = 0; i < 2; i++) {
    json_t *a = json_array_get(json_object_get(resp1, "outcomes"), i);
    json_t *b = json_array_get(json_object_get(resp2, "outcomes"), i);
    assert_true(json_is_true(json_object_get(b, "duplicate")));
    json_t *bc = json_deep_copy(b);
    json_object_del(bc, "duplicate");
    assert_true(json_equal(a, bc)); /* the same outcome, again */
    json_decref(bc);
  }
  d = th_doc(e, "c", "x");
  th_assert_json(d, "{\"n\":7}"); /* not 14 */
  json_decref(d);

  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.intents_duplicate, 2);
  assert_int_equal(st.commits, 1);
  json_decref(resp1);
  json_decref(resp2);
  json_decref(req);
  th_env_free(e);
}

static void test_gap(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *i1, *i2, *i3, *req, *resp, *o;

  th_rep_init(&r, 3);
  i1 = th_intent(&r, HLC(TH_NOW), "c", "a", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  i2 = th_intent(&r, HLC(TH_NOW), "c", "b", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":2}]");
  i3 = th_intent(&r, HLC(TH_NOW), "c", "c", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":3}]");
  assert_int_equal(th_push1(e, &r, i1, &o), 200);
  json_decref(o);
  /* seq 3 without seq 2 */
  req = th_req(&r, &i3, 1);
  assert_int_equal(th_push(e, req, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "gap");
  assert_int_equal(th_int(resp, "expected"), 2);
  assert_int_equal(th_int(resp, "v"), 1);
  json_decref(resp);
  json_decref(req);
  assert_null(th_doc(e, "c", "c"));
  /* resending from the expected seq works */
  assert_int_equal(th_push1(e, &r, i2, &o), 200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  json_decref(o);
  /* a brand-new replica starting at seq 2 is a gap from 1 */
  th_rep n;
  th_rep_init(&n, 9);
  json_decref(th_intent(&n, 1, "c", "z", 0, "[{\"kind\":\"delete\"}]"));
  json_t *z = th_intent(&n, 1, "c", "z", 0, "[{\"kind\":\"delete\"}]");
  req = th_req(&n, &z, 1);
  assert_int_equal(th_push(e, req, &resp), 409);
  assert_int_equal(th_int(resp, "expected"), 1);
  json_decref(resp);
  json_decref(req);
  th_env_free(e);
}

static void test_chain(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r, fork;
  json_t *o, *req, *resp, *good;

  th_rep_init(&r, 4);
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 1, "c", "a", 0,
                         "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"),
               &o),
      200);
  json_decref(o);
  /* seq 2 whose prev is not seq 1's hash */
  fork = r;
  memset(fork.last, 0x55, TT_HASH_LEN);
  json_t *bad = th_intent(&fork, 2, "c", "a", 0,
                          "[{\"kind\":\"set\",\"field\":\"f\",\"value\":2}]");
  req = th_req(&r, &bad, 1);
  assert_int_equal(th_push(e, req, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "chain");
  json_decref(resp);
  json_decref(req);

  /* broken inside the request: seq 3's prev is not seq 2's hash */
  good = th_intent(&r, 3, "c", "a", 0,
                   "[{\"kind\":\"set\",\"field\":\"f\",\"value\":3}]");
  fork = r;
  memset(fork.last, 0x66, TT_HASH_LEN);
  json_t *two[2] = {good,
                    th_intent(&fork, 4, "c", "a", 0,
                              "[{\"kind\":\"set\",\"field\":\"f\","
                              "\"value\":4}]")};
  req = th_req(&r, two, 2);
  assert_int_equal(th_push(e, req, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "chain");
  json_decref(resp);
  json_decref(req);

  json_t *d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"f\":1}");
  json_decref(d);
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.bad_requests, 2);
  th_env_free(e);
}

static void test_bad_hash_and_replica(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r, other;
  json_t *in, *req, *resp, *o;

  th_rep_init(&r, 5);
  th_rep_init(&other, 6);
  in = th_intent(&r, 1, "c", "a", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  /* tamper with the content after hashing */
  json_object_set_new(in, "id", json_string("b"));
  req = th_req(&r, &in, 1);
  assert_int_equal(th_push(e, req, &resp), 400);
  assert_string_equal(th_str(resp, "error"), "hash");
  json_decref(resp);
  json_decref(req);

  /* an intent of OTHER pushed as R */
  in = th_intent(&other, 1, "c", "a", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  req = th_req(&r, &in, 1);
  assert_int_equal(th_push(e, req, &resp), 400);
  assert_string_equal(th_str(resp, "error"), "replica");
  json_decref(resp);
  json_decref(req);

  assert_null(th_doc(e, "c", "a"));
  assert_null(th_doc(e, "c", "b"));
  /* R's seq 1 was never consumed */
  r.seq = 0;
  memset(r.last, 0, TT_HASH_LEN);
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 1, "c", "a", 0,
                         "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"),
               &o),
      200);
  assert_int_equal(th_int(o, "seq"), 1);
  json_decref(o);
  th_env_free(e);
}

static void expect_err(th_env *e, const char *body, int status,
                       const char *code) {
  json_t *req = json_loads(body, JSON_DECODE_ANY, NULL), *resp;
  assert_non_null(req);
  int st = th_push(e, req, &resp);
  if (st != status || strcmp(th_str(resp, "error"), code))
    fail_msg("%s -> %d %s, want %d %s", body, st, th_str(resp, "error"),
             status, code);
  assert_int_equal(th_int(resp, "v"), 1);
  assert_true(json_is_string(json_object_get(resp, "message")));
  json_decref(resp);
  json_decref(req);
}

static void test_malformed(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *o, *in, *req;
  char *txt;

  th_rep_init(&r, 7);
  expect_err(e, "[1,2]", 400, "json");
  expect_err(e, "\"x\"", 400, "json");
  expect_err(e, "{}", 400, "version");
  expect_err(e, "{\"v\":2,\"replica\":\"x\",\"intents\":[]}", 400, "version");
  expect_err(e, "{\"v\":\"1\"}", 400, "version");
  expect_err(e, "{\"v\":1,\"intents\":[]}", 400, "invalid");
  expect_err(e, "{\"v\":1,\"replica\":\"abc\",\"intents\":[]}", 400,
             "invalid");
  char body[256];
  snprintf(body, sizeof body, "{\"v\":1,\"replica\":\"%s\"}", r.hex);
  expect_err(e, body, 400, "invalid");
  snprintf(body, sizeof body, "{\"v\":1,\"replica\":\"%s\",\"intents\":[]}",
           r.hex);
  expect_err(e, body, 400, "invalid");
  snprintf(body, sizeof body,
           "{\"v\":1,\"replica\":\"%s\",\"intents\":[{\"seq\":1}]}", r.hex);
  expect_err(e, body, 400, "invalid");

  /* a valid intent with a key removed or an unknown op kind */
  in = th_intent(&r, 1, "c", "a", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  json_object_del(in, "coll");
  req = th_req(&r, &in, 1);
  txt = json_dumps(req, 0);
  expect_err(e, txt, 400, "invalid");
  free(txt);
  json_decref(req);

  /* seqs not contiguous within the request */
  r.seq = 0;
  memset(r.last, 0, TT_HASH_LEN);
  json_t *two[2];
  two[0] = th_intent(&r, 1, "c", "a", 0,
                     "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  json_decref(th_intent(&r, 1, "c", "a", 0, "[{\"kind\":\"delete\"}]"));
  two[1] = th_intent(&r, 1, "c", "a", 0,
                     "[{\"kind\":\"set\",\"field\":\"f\",\"value\":3}]");
  req = th_req(&r, two, 2);
  txt = json_dumps(req, 0);
  expect_err(e, txt, 400, "invalid");
  free(txt);
  json_decref(req);

  /* too many intents */
  json_t *many = json_array();
  for (int i = 0; i < TT_MAX_INTENTS + 1; i++)
    json_array_append_new(many, json_object());
  req = json_pack("{s:i,s:s,s:o}", "v", 1, "replica", r.hex, "intents",
                  many);
  txt = json_dumps(req, 0);
  expect_err(e, txt, 413, "too_big");
  free(txt);
  json_decref(req);

  /* nothing changed: no document, and seq 1 is still expected */
  assert_null(th_doc(e, "c", "a"));
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.commits, 0);
  assert_int_equal(st.bad_requests, 13);
  r.seq = 0;
  memset(r.last, 0, TT_HASH_LEN);
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 1, "c", "a", 0,
                         "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"),
               &o),
      200);
  json_decref(o);
  th_env_free(e);
}

static void test_different_fields_no_conflict(void **state) {
  (void)state;
  th_env *e = th_env_new("{\"collections\":{\"notes\":{\"policy\":"
                         "\"manual\"}}}",
                         0, 0);
  th_rep a, b;
  json_t *o, *d;

  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW), "notes", "n", 0,
                         "[{\"kind\":\"create\",\"value\":{\"title\":\"T\","
                         "\"body\":\"x\"}}]"),
               &o),
      200);
  json_decref(o);
  /* both saw version 1, each edits another field */
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW) + 1, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"T2\",\"base_value\":\"T\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  json_decref(o);
  assert_int_equal(
      th_push1(e, &b,
               th_intent(&b, HLC(TH_NOW) + 2, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"body\",\"value\":"
                         "\"y\",\"base_value\":\"x\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  json_decref(o);
  d = th_doc(e, "notes", "n");
  th_assert_json(d, "{\"title\":\"T2\",\"body\":\"y\"}");
  json_decref(d);
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.concurrent_writes, 0);
  assert_int_equal(st.intents_conflict, 0);
  th_env_free(e);
}

/* Counts entries of a table in the server's store. */
static int count_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)k;
  (void)v;
  (*(size_t *)ctx)++;
  return 0;
}

static size_t count_table(th_env *e, tt_table tab) {
  tt_txn *t;
  size_t n = 0;
  tt_bytes from = {NULL, 0};
  assert_int_equal(tt_txn_begin(e->st, 0, 0, &t), 0);
  assert_true(tt_scan(t, tab, from, count_cb, &n) >= 0);
  tt_abort(t);
  return n;
}

static json_t *get_json_record(th_env *e, tt_table tab, const char *key) {
  tt_txn *t;
  tt_bytes k = {key, strlen(key)}, v;
  json_t *j = NULL;
  assert_int_equal(tt_txn_begin(e->st, 0, 0, &t), 0);
  if (tt_get(t, tab, k, &v) == 0)
    j = json_loadb(v.data, v.len, 0, NULL);
  tt_abort(t);
  return j;
}

static void test_same_field_lww(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b;
  json_t *o, *d;

  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW), "notes", "n", 0,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"A\"}]"),
               &o),
      200);
  json_decref(o);
  /* A writes B at a later clock; then B, who saw version 1, writes C with
   * an older clock: lww keeps A's write */
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW) + 10, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"B\",\"base_value\":\"A\"}]"),
               &o),
      200);
  json_decref(o);
  assert_int_equal(
      th_push1(e, &b,
               th_intent(&b, HLC(TH_NOW) + 5, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"C\",\"base_value\":\"A\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "merged");
  assert_string_equal(th_str(o, "rule"), "lww");
  assert_int_equal(th_int(o, "commit"), 2); /* the value that beat it */
  json_decref(o);
  d = th_doc(e, "notes", "n");
  th_assert_json(d, "{\"title\":\"B\"}");
  json_decref(d);
  /* a later clock wins */
  assert_int_equal(
      th_push1(e, &b,
               th_intent(&b, HLC(TH_NOW) + 20, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"D\",\"base_value\":\"A\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "merged");
  assert_int_equal(th_int(o, "commit"), 3);
  json_decref(o);
  d = th_doc(e, "notes", "n");
  th_assert_json(d, "{\"title\":\"D\"}");
  json_decref(d);

  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.concurrent_writes, 2);
  assert_int_equal(st.intents_merged, 2);
  assert_int_equal(count_table(e, TT_TABLE_AUDIT), 2);
  /* the audit entry says what happened */
  tt_txn *t;
  uint8_t k[16];
  tt_bytes key = {k, 16}, v;
  tt_be32_put(k, 0);
  tt_be64_put(k + 4, 2);
  tt_be32_put(k + 12, 0);
  assert_int_equal(tt_txn_begin(e->st, 0, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_AUDIT, key, &v), 0);
  json_t *a1 = json_loadb(v.data, v.len, 0, NULL);
  tt_abort(t);
  assert_string_equal(th_str(a1, "field"), "title");
  assert_string_equal(th_str(a1, "policy"), "lww");
  assert_string_equal(th_str(a1, "winner"), "server");
  assert_string_equal(th_str(a1, "replica"), b.hex);
  json_decref(a1);
  th_env_free(e);
}

static void test_future_clock_clamped(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b;
  json_t *o, *d;

  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  /* A's clock is a day ahead: clamped to now + 60 s */
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW + 86400000), "c", "x", 0,
                         "[{\"kind\":\"set\",\"field\":\"f\",\"value\":"
                         "\"a\"}]"),
               &o),
      200);
  json_decref(o);
  /* B writes concurrently at now + 61 s, clamped to now + 60 s too: the
   * tie breaks on the origin (B's is greater). Unclamped, A would win. */
  assert_int_equal(
      th_push1(e, &b,
               th_intent(&b, HLC(TH_NOW + 61000), "c", "x", 0,
                         "[{\"kind\":\"set\",\"field\":\"f\",\"value\":"
                         "\"b\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "rule"), "lww");
  json_decref(o);
  d = th_doc(e, "c", "x");
  th_assert_json(d, "{\"f\":\"b\"}");
  json_decref(d);
  th_env_free(e);
}

static void test_manual_conflict_and_resolve(void **state) {
  (void)state;
  th_env *e = th_env_new("{\"collections\":{\"notes\":{\"policy\":"
                         "\"manual\"}}}",
                         0, 0);
  th_rep a, b;
  json_t *o, *d, *c, *rec;
  char cid[128], ops[256];

  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW), "notes", "n", 0,
                         "[{\"kind\":\"create\",\"value\":{\"title\":\"A\"}}]"),
               &o),
      200);
  json_decref(o);
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW) + 1, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"C\",\"base_value\":\"A\"}]"),
               &o),
      200);
  json_decref(o);
  assert_int_equal(
      th_push1(e, &b,
               th_intent(&b, HLC(TH_NOW) + 2, "notes", "n", 1,
                         "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                         "\"B\",\"base_value\":\"A\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "conflict");
  assert_int_equal(th_int(o, "commit"), 2);
  c = json_object_get(o, "conflict");
  assert_non_null(c);
  snprintf(cid, sizeof cid, "%s-1-0", b.hex);
  assert_string_equal(th_str(c, "id"), cid);
  assert_string_equal(th_str(c, "field"), "title");
  th_assert_json(json_object_get(c, "base"), "\"A\"");
  th_assert_json(json_object_get(c, "theirs"), "\"C\"");
  th_assert_json(json_object_get(c, "ours"), "\"B\"");
  json_decref(o);
  d = th_doc(e, "notes", "n");
  th_assert_json(d, "{\"title\":\"C\"}"); /* server value kept */
  json_decref(d);
  rec = get_json_record(e, TT_TABLE_CONFLICTS, cid);
  assert_non_null(rec);
  assert_string_equal(th_str(rec, "state"), "open");
  assert_string_equal(th_str(rec, "coll"), "notes");
  json_decref(rec);

  /* a resolve naming the wrong field is rejected and changes nothing */
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"resolve\",\"field\":\"body\",\"value\":\"Z\","
           "\"conflict\":\"%s\"}]",
           cid);
  assert_int_equal(
      th_push1(e, &b, th_intent(&b, HLC(TH_NOW) + 3, "notes", "n", 2, ops), &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  assert_string_equal(th_str(o, "reason"), "unknown conflict");
  json_decref(o);

  /* the person decides */
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"resolve\",\"field\":\"title\",\"value\":\"BC\","
           "\"conflict\":\"%s\"}]",
           cid);
  assert_int_equal(
      th_push1(e, &b, th_intent(&b, HLC(TH_NOW) + 4, "notes", "n", 2, ops), &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 3);
  json_decref(o);
  d = th_doc(e, "notes", "n");
  th_assert_json(d, "{\"title\":\"BC\"}");
  json_decref(d);
  rec = get_json_record(e, TT_TABLE_CONFLICTS, cid);
  assert_string_equal(th_str(rec, "state"), "resolved");
  json_decref(rec);

  /* settling it twice is refused */
  assert_int_equal(
      th_push1(e, &a, th_intent(&a, HLC(TH_NOW) + 5, "notes", "n", 3, ops), &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  assert_string_equal(th_str(o, "reason"), "unknown conflict");
  json_decref(o);
  /* and an id that never existed */
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW) + 6, "notes", "n", 3,
                         "[{\"kind\":\"resolve\",\"field\":\"title\","
                         "\"value\":1,\"conflict\":\"nope\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  json_decref(o);

  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.intents_conflict, 1);
  assert_int_equal(st.intents_rejected, 3);
  assert_int_equal(count_table(e, TT_TABLE_AUDIT), 1);
  th_env_free(e);
}

static void test_concurrent_incr(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b;
  json_t *o, *d;

  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW), "c", "k", 0,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":3}]"),
               &o),
      200);
  json_decref(o);
  assert_int_equal(
      th_push1(e, &b,
               th_intent(&b, HLC(TH_NOW), "c", "k", 0,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":4}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "merged");
  assert_string_equal(th_str(o, "rule"), "counter");
  json_decref(o);
  d = th_doc(e, "c", "k");
  th_assert_json(d, "{\"n\":7}");
  json_decref(d);
  /* incr on a string is rejected and consumes the seq */
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW), "c", "k", 2,
                         "[{\"kind\":\"set\",\"field\":\"s\",\"value\":\"x\"},"
                         "{\"kind\":\"incr\",\"field\":\"s\",\"value\":1}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  assert_true(strlen(th_str(o, "reason")) > 0);
  assert_int_equal(th_int(o, "commit"), 2);
  json_decref(o);
  assert_int_equal(
      th_push1(e, &a,
               th_intent(&a, HLC(TH_NOW), "c", "k", 2,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]"),
               &o),
      200);
  assert_int_equal(th_int(o, "seq"), 3);
  json_decref(o);
  d = th_doc(e, "c", "k");
  th_assert_json(d, "{\"n\":8}");
  json_decref(d);
  th_env_free(e);
}

static void test_group_commit(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b, c;
  tt_push_job jobs[4];
  json_t *reqs[4], *in, *d;

  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  th_rep_init(&c, 0x33);
  in = th_intent(&a, 1, "c", "a", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  reqs[0] = th_req(&a, &in, 1);
  /* B's push has a tampered hash: refused as a whole */
  in = th_intent(&b, 1, "c", "b", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":2}]");
  json_object_set_new(in, "hlc", json_integer(99));
  reqs[1] = th_req(&b, &in, 1);
  in = th_intent(&c, 1, "c", "c", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":3}]");
  reqs[2] = th_req(&c, &in, 1);
  /* A again in the same batch: sees its first push's dedupe state */
  json_t *two[2];
  two[0] = json_deep_copy(json_array_get(json_object_get(reqs[0], "intents"),
                                         0));
  two[1] = th_intent(&a, 2, "c", "a", 1,
                     "[{\"kind\":\"incr\",\"field\":\"g\",\"value\":1}]");
  reqs[3] = th_req(&a, two, 2);
  for (int i = 0; i < 4; i++)
    jobs[i] = (tt_push_job){.request = reqs[i]};

  assert_int_equal(tt_server_push(e->srv, jobs, 4, TH_NOW), 0);
  assert_int_equal(jobs[0].status, 200);
  assert_int_equal(jobs[1].status, 400);
  assert_string_equal(th_str(jobs[1].response, "error"), "hash");
  assert_int_equal(jobs[2].status, 200);
  assert_int_equal(jobs[3].status, 200);
  json_t *oc = json_object_get(jobs[3].response, "outcomes");
  assert_int_equal(json_array_size(oc), 2);
  assert_true(json_is_true(json_object_get(json_array_get(oc, 0),
                                           "duplicate")));
  assert_string_equal(th_str(json_array_get(oc, 1), "outcome"), "applied");
  assert_int_equal(th_int(jobs[3].response, "acked"), 2);
  assert_int_equal(th_int(jobs[0].response, "acked"), 1);

  d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"f\":1,\"g\":1}");
  json_decref(d);
  assert_null(th_doc(e, "c", "b"));
  d = th_doc(e, "c", "c");
  th_assert_json(d, "{\"f\":3}");
  json_decref(d);

  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.commits, 1);
  assert_int_equal(st.pushes, 4);
  assert_int_equal(st.bad_requests, 1);
  assert_int_equal(st.intents_applied, 3);
  assert_int_equal(st.intents_duplicate, 1);
  for (int i = 0; i < 4; i++) {
    json_decref(jobs[i].response);
    json_decref(reqs[i]);
  }
  th_env_free(e);
}

static void test_restart_keeps_state(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 4, 0);
  th_rep r;
  json_t *o, *i1, *req, *resp;

  th_rep_init(&r, 0x44);
  i1 = th_intent(&r, 1, "c", "a", 0,
                 "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  req = th_req(&r, &i1, 1);
  assert_int_equal(th_push(e, req, &resp), 200);
  json_decref(resp);
  for (int i = 0; i < 5; i++) {
    char id[8];
    snprintf(id, sizeof id, "d%d", i);
    assert_int_equal(
        th_push1(e, &r,
                 th_intent(&r, 1, "c", id, 0,
                           "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"),
                 &o),
        200);
    json_decref(o);
  }
  /* reopen asking for another partition count: the stored one stays */
  e->opts.partitions = 8;
  th_reopen(e);
  assert_int_equal(tt_server_partitions(e->srv), 4);
  /* the old request is still a duplicate */
  assert_int_equal(th_push(e, req, &resp), 200);
  assert_true(json_is_true(json_object_get(
      json_array_get(json_object_get(resp, "outcomes"), 0), "duplicate")));
  assert_int_equal(th_int(resp, "acked"), 6);
  json_decref(resp);
  json_decref(req);
  /* the chain goes on, and the partition seq continues where it was */
  json_t *ni = th_intent(&r, 1, "c", "a", 1,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  unsigned p = tt_server_partition_of("c", "a", 4);
  req = th_req(&r, &ni, 1);
  assert_int_equal(th_push(e, req, &resp), 200);
  json_t *oc = json_array_get(json_object_get(resp, "outcomes"), 0);
  assert_int_equal(th_int(oc, "p"), p);
  /* partition p had some commits before; this one is the next */
  json_t *pr;
  assert_int_equal(th_pull(e, "[]", 0, &pr), 200);
  assert_int_equal(
      th_int(oc, "commit"),
      json_integer_value(json_array_get(json_object_get(pr, "cursor"), p)));
  assert_true(th_int(oc, "commit") >= 2);
  json_decref(pr);
  json_decref(resp);
  json_decref(req);
  json_t *d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":2}");
  json_decref(d);
  th_env_free(e);
}

static size_t count_outcomes(th_env *e, const th_rep *r) {
  tt_txn *t;
  size_t n = 0;
  for (uint64_t s = 1; s <= r->seq; s++) {
    uint8_t k[TT_ID_LEN + 8];
    tt_bytes key = {k, sizeof k}, v;
    memcpy(k, r->id, TT_ID_LEN);
    tt_be64_put(k + TT_ID_LEN, s);
    assert_int_equal(tt_txn_begin(e->st, 0, 0, &t), 0);
    if (tt_get(t, TT_TABLE_OUTCOMES, key, &v) == 0)
      n++;
    tt_abort(t);
  }
  return n;
}

static void test_outcome_pruning(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *batch1[3], *req1, *resp, *o;

  th_rep_init(&r, 0x55);
  for (int i = 0; i < 3; i++)
    batch1[i] = th_intent(&r, 1, "c", "a", 0,
                          "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  req1 = th_req(&r, batch1, 3);
  assert_int_equal(th_push(e, req1, &resp), 200);
  json_decref(resp);
  assert_int_equal(count_outcomes(e, &r), 3);
  /* pushing from seq 4 says outcomes 1..3 were taken */
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 1, "c", "a", 3,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]"),
               &o),
      200);
  json_decref(o);
  assert_int_equal(count_outcomes(e, &r), 1);
  assert_int_equal(count_table(e, TT_TABLE_OUTCOMES), 1);
  /* a late duplicate of a pruned seq still does nothing, and says so */
  assert_int_equal(th_push(e, req1, &resp), 200);
  json_t *o0 = json_array_get(json_object_get(resp, "outcomes"), 0);
  assert_string_equal(th_str(o0, "outcome"), "duplicate");
  assert_true(json_is_true(json_object_get(o0, "duplicate")));
  assert_int_equal(th_int(o0, "seq"), 1);
  assert_int_equal(th_int(resp, "acked"), 4);
  json_decref(resp);
  json_decref(req1);
  json_t *d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":4}");
  json_decref(d);
  /* the changelog has one entry per document */
  assert_int_equal(count_table(e, TT_TABLE_CHANGES), 1);
  th_env_free(e);
}

/* "seen" lower than the first seq keeps the outcomes above it: a replica
 * may send its next push before it has recorded the last one's outcomes
 * (net/sync.c), and must find them again if it fails meanwhile. */
static void test_seen_keeps_outcomes(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *batch1[3], *req1, *resp, *o;

  th_rep_init(&r, 0x56);
  for (int i = 0; i < 3; i++)
    batch1[i] = th_intent(&r, 1, "c", "a", 0,
                          "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  req1 = th_req(&r, batch1, 3);
  assert_int_equal(th_push(e, req1, &resp), 200);
  /* the server says it honours "seen" */
  assert_true(json_is_true(json_object_get(resp, "seen_ok")));
  json_decref(resp);
  json_t *in4 = th_intent(&r, 1, "c", "a", 3,
                          "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  json_t *req2 = th_req(&r, &in4, 1);
  json_object_set_new(req2, "seen", json_integer(0));
  assert_int_equal(th_push(e, req2, &resp), 200);
  json_decref(resp);
  json_decref(req2);
  /* nothing below 4 was forgotten: seen 0 */
  assert_int_equal(count_outcomes(e, &r), 4);
  assert_int_equal(th_push(e, req1, &resp), 200);
  json_t *o0 = json_array_get(json_object_get(resp, "outcomes"), 0);
  assert_string_equal(th_str(o0, "outcome"), "applied");
  assert_true(json_is_true(json_object_get(o0, "duplicate")));
  assert_int_equal(th_int(o0, "commit"), 1);
  json_decref(resp);
  /* seen 2 forgets 1 and 2 only */
  json_t *in5 = th_intent(&r, 1, "c", "a", 4,
                          "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  json_t *req3 = th_req(&r, &in5, 1);
  json_object_set_new(req3, "seen", json_integer(2));
  assert_int_equal(th_push(e, req3, &resp), 200);
  json_decref(resp);
  json_decref(req3);
  assert_int_equal(count_outcomes(e, &r), 3);
  /* a bad "seen" is refused and changes nothing */
  json_t *in6 = th_intent(&r, 1, "c", "a", 5,
                          "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  json_t *req4 = th_req(&r, &in6, 1);
  json_object_set_new(req4, "seen", json_integer(-1));
  assert_int_equal(th_push(e, req4, &resp), 400);
  assert_string_equal(th_str(resp, "error"), "invalid");
  json_decref(resp);
  json_decref(req4);
  json_decref(req1);
  json_t *d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":5}");
  json_decref(d);
  (void)o;
  th_env_free(e);
}

static void test_delete_and_revive(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *o, *d;

  th_rep_init(&r, 0x66);
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 1, "c", "a", 0,
                         "[{\"kind\":\"create\",\"value\":{\"x\":1}}]"),
               &o),
      200);
  json_decref(o);
  assert_int_equal(
      th_push1(e, &r, th_intent(&r, 2, "c", "a", 1, "[{\"kind\":\"delete\"}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 2);
  json_decref(o);
  assert_null(th_doc(e, "c", "a"));
  assert_int_equal(count_table(e, TT_TABLE_CHANGES), 1);
  /* revived: a replica that saw version 1 learns x is gone and y is new */
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 3, "c", "a", 2,
                         "[{\"kind\":\"create\",\"value\":{\"y\":2}}]"),
               &o),
      200);
  assert_int_equal(th_int(o, "commit"), 3);
  json_decref(o);
  d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"y\":2}");
  json_decref(d);
  json_t *resp;
  assert_int_equal(th_pull(e, "[1]", 0, &resp), 200);
  th_assert_json(json_object_get(resp, "changes"),
                 "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":3,"
                 "\"set\":{\"y\":2},\"unset\":[\"x\"]}]");
  json_decref(resp);
  assert_int_equal(count_table(e, TT_TABLE_CHANGES), 1);
  th_env_free(e);
}

/* A store that fills up: the failed group commit acknowledges nothing, and
 * after the operator grows the store the same intents go through with the
 * partition sequence continuing from the last durable commit. */
static void test_store_full(void **state) {
  (void)state;
  th_skip_unless(!th_store_url(), "the store's size is LMDB's map size");
  th_env *e = calloc(1, sizeof *e);
  th_rep r, q;
  char *big = malloc(200001), ops[200100];
  json_t *o;
  int st = 200, n = 0;
  char id0[16];

  strcpy(e->dir, "/tmp/tt_server_XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  e->map_size = 2u << 20;
  th_open_server(e);
  memset(big, 'x', 200000);
  big[200000] = '\0';
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"set\",\"field\":\"f\",\"value\":\"%s\"}]", big);
  th_rep_init(&r, 0x77);
  th_rep_init(&q, 0x78);
  while (st == 200) {
    char id[16];
    snprintf(id, sizeof id, "b%d", n++);
    st = th_push1(e, &r, th_intent(&r, 1, "c", id, 0, ops), &o);
    json_decref(o);
    assert_true(n < 100);
  }
  assert_int_equal(st, 507);
  /* a group commit with a small valid job fails as a whole */
  json_t *small = th_intent(&q, 1, "c", "small", 0,
                            "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  json_t *reqs[2];
  tt_push_job jobs[2];
  /* the failed intent again, with it a small valid job: both refused */
  r.seq--;
  memcpy(r.last, r.prev_last, TT_HASH_LEN);
  snprintf(id0, sizeof id0, "b%d", n - 1);
  reqs[0] = th_req(&r, (json_t *[]){th_intent(&r, 1, "c", id0, 0, ops)}, 1);
  reqs[1] = th_req(&q, &small, 1);
  jobs[0] = (tt_push_job){.request = reqs[0]};
  jobs[1] = (tt_push_job){.request = reqs[1]};
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW), TETHER_EFULL);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(jobs[i].status, 507);
    assert_string_equal(th_str(jobs[i].response, "error"), "full");
    json_decref(jobs[i].response);
    json_decref(reqs[i]);
  }
  tt_server_stats s0;
  tt_server_get_stats(e->srv, &s0);
  assert_int_equal(s0.commits, (uint64_t)n - 1);

  /* the operator grows the store; the small push is not a duplicate */
  e->map_size = 64u << 20;
  th_reopen(e);
  q.seq = 0;
  memset(q.last, 0, TT_HASH_LEN);
  assert_int_equal(
      th_push1(e, &q,
               th_intent(&q, 1, "c", "small", 0,
                         "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"),
               &o),
      200);
  assert_null(json_object_get(o, "duplicate"));
  assert_int_equal(th_int(o, "commit"), n); /* n-1 durable commits before */
  json_decref(o);
  free(big);
  th_env_free(e);
}

typedef struct {
  const char *crash_at;
  int calls;
} fault_ctx;

static int fault_hook(void *ctx, const char *point) {
  fault_ctx *f = ctx;
  f->calls++;
  return f->crash_at && !strcmp(point, f->crash_at);
}

/* Crashes at each commit point: before it nothing is durable; after it the
 * effect is durable but unanswered, and the retry is a duplicate. */
static void test_crash_points(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  fault_ctx f = {0};
  th_rep r;
  json_t *in, *req, *resp;
  uint64_t last = 99;

  th_rep_init(&r, 0x79);
  e->opts.fault = fault_hook;
  e->opts.fault_ctx = &f;
  th_reopen(e);
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last),
                   TETHER_ENOTFOUND);
  assert_int_equal(last, 0);
  in = th_intent(&r, 1, "c", "a", 0,
                 "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  req = th_req(&r, &in, 1);

  f.crash_at = "push:before-commit";
  tt_push_job job = {.request = req};
  assert_int_equal(tt_server_push(e->srv, &job, 1, TH_NOW),
                   TETHER_EUNAVAILABLE);
  assert_int_equal(job.status, 503);
  json_decref(job.response);
  th_reopen(e);
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last),
                   TETHER_ENOTFOUND);
  assert_null(th_doc(e, "c", "a"));

  f.crash_at = "push:after-commit";
  job = (tt_push_job){.request = req};
  assert_int_equal(tt_server_push(e->srv, &job, 1, TH_NOW),
                   TETHER_EUNAVAILABLE);
  /* durable: the job keeps its answer, which the caller drops (server.h) */
  assert_int_equal(job.status, 200);
  json_decref(job.response);
  th_reopen(e);
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last), 0);
  assert_int_equal(last, 1);

  f.crash_at = NULL;
  f.calls = 0;
  assert_int_equal(th_push(e, req, &resp), 200);
  assert_true(json_is_true(json_object_get(
      json_array_get(json_object_get(resp, "outcomes"), 0), "duplicate")));
  assert_int_equal(f.calls, 0); /* nothing to commit: no crash point */
  json_decref(resp);
  json_decref(req);
  json_t *d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":1}");
  json_decref(d);
  th_env_free(e);
}

/* ---- review fixes ------------------------------------------------------- */

/* "a" followed by 60 x "é": quoted to 100 bytes, the name would end in half
 * a character. */
static void long_utf8_field(char *out, size_t n) {
  assert_true(n >= 1 + 60 * 2 + 1);
  out[0] = 'a';
  for (int i = 0; i < 60; i++)
    memcpy(out + 1 + 2 * i, "\xc3\xa9", 2);
  out[1 + 60 * 2] = '\0';
}

/* A rejected intent whose reason quotes a long UTF-8 field name: the
 * outcome is answered and stored, and the other job of the same group
 * commit is not failed with it (before: the reason was not UTF-8, the
 * outcome could not be built, and every job of the group got 503 on every
 * retry). */
static void test_reject_reason_utf8_in_group(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b, c;
  char field[128], ops[512];
  json_t *o, *in, *reqs[2], *d;
  tt_push_job jobs[2];

  long_utf8_field(field, sizeof field);
  th_rep_init(&a, 0x81);
  th_rep_init(&b, 0x82);
  th_rep_init(&c, 0x83);
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"set\",\"field\":\"%s\",\"value\":\"str\"}]", field);
  assert_int_equal(
      th_push1(e, &a, th_intent(&a, HLC(TH_NOW), "c", "x", 0, ops), &o), 200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  json_decref(o);

  snprintf(ops, sizeof ops,
           "[{\"kind\":\"incr\",\"field\":\"%s\",\"value\":1}]", field);
  in = th_intent(&b, HLC(TH_NOW) + 1, "c", "x", 0, ops);
  reqs[0] = th_req(&b, &in, 1);
  in = th_intent(&c, HLC(TH_NOW) + 2, "c", "y", 0,
                 "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  reqs[1] = th_req(&c, &in, 1);
  for (int i = 0; i < 2; i++)
    jobs[i] = (tt_push_job){.request = reqs[i]};
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW), 0);
  assert_int_equal(jobs[0].status, 200);
  assert_int_equal(jobs[1].status, 200);
  o = json_array_get(json_object_get(jobs[0].response, "outcomes"), 0);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  const char *reason = th_str(o, "reason");
  assert_true(tt_utf8_valid(reason, strlen(reason)));
  assert_non_null(strstr(reason, "incr on field 'a\xc3\xa9"));
  o = json_array_get(json_object_get(jobs[1].response, "outcomes"), 0);
  assert_string_equal(th_str(o, "outcome"), "applied");
  /* stored as answered: a resend gets the same rejection */
  json_t *resp;
  assert_int_equal(th_push(e, reqs[0], &resp), 200);
  o = json_array_get(json_object_get(resp, "outcomes"), 0);
  assert_true(json_is_true(json_object_get(o, "duplicate")));
  assert_string_equal(th_str(o, "reason"), reason);
  json_decref(resp);
  for (int i = 0; i < 2; i++) {
    json_decref(jobs[i].response);
    json_decref(reqs[i]);
  }
  d = th_doc(e, "c", "y");
  th_assert_json(d, "{\"f\":1}");
  json_decref(d);
  th_env_free(e);
}

typedef struct {
  int calls, fail_at; /* "push:outcome" call (1-based) that fails */
} outcome_fault;

static int outcome_hook(void *ctx, const char *point) {
  outcome_fault *f = ctx;
  if (strcmp(point, "push:outcome"))
    return 0;
  return ++f->calls == f->fail_at;
}

/* When ONE intent's answer cannot be built, only its job fails (503,
 * nothing of it written), with any other job of the same replica in the
 * batch; the other replicas' jobs are applied and answered. Its retry then
 * goes through. With one partition and with several. */
static void test_outcome_failure_fails_one_job(void **state) {
  (void)state;
  for (unsigned parts = 1; parts <= 4; parts += 3) {
    th_env *e = th_env_new(NULL, parts, 0);
    outcome_fault f = {0, 2};
    th_rep a, b, c;
    json_t *in[2], *reqs[4], *d, *o;
    tt_push_job jobs[4];

    e->opts.fault = outcome_hook;
    e->opts.fault_ctx = &f;
    th_reopen(e);
    th_rep_init(&a, 0x91);
    th_rep_init(&b, 0x92);
    th_rep_init(&c, 0x93);
    in[0] = th_intent(&a, 1, "c", "a", 0,
                      "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
    reqs[0] = th_req(&a, in, 1);
    /* B: its first intent's answer is the 2nd built: it fails */
    in[0] = th_intent(&b, 1, "c", "b", 0,
                      "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
    in[1] = th_intent(&b, 1, "c", "a", 0,
                      "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":10}]");
    reqs[1] = th_req(&b, in, 2);
    in[0] = th_intent(&c, 1, "c", "c", 0,
                      "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
    reqs[2] = th_req(&c, in, 1);
    /* B again, chained on its first job: dropped with it */
    in[0] = th_intent(&b, 1, "c", "b", 0,
                      "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":100}]");
    reqs[3] = th_req(&b, in, 1);
    for (int i = 0; i < 4; i++)
      jobs[i] = (tt_push_job){.request = reqs[i]};
    assert_int_equal(tt_server_push(e->srv, jobs, 4, TH_NOW), 0);
    assert_int_equal(jobs[0].status, 200);
    /* B's jobs: the one whose answer failed (which is 2nd depends on the
     * partitions' order) says why, the other that it went with it */
    assert_int_equal(jobs[1].status, 503);
    assert_int_equal(jobs[3].status, 503);
    assert_string_equal(th_str(jobs[1].response, "error"), "unavailable");
    assert_string_equal(th_str(jobs[3].response, "error"), "unavailable");
    assert_true(!!strstr(th_str(jobs[1].response, "message"), "ENOMEM") !=
                !!strstr(th_str(jobs[3].response, "message"), "ENOMEM"));
    assert_int_equal(jobs[2].status, 200);
    d = th_doc(e, "c", "a");
    th_assert_json(d, "{\"n\":1}"); /* A's, not B's second intent */
    json_decref(d);
    assert_null(th_doc(e, "c", "b"));
    d = th_doc(e, "c", "c");
    th_assert_json(d, "{\"n\":1}");
    json_decref(d);
    tt_server_stats st;
    tt_server_get_stats(e->srv, &st);
    assert_int_equal(st.intents_applied, 2);
    uint64_t last = 9;
    assert_int_equal(tt_server_replica_last_seq(e->srv, b.id, &last),
                     TETHER_ENOTFOUND);

    /* B retries both pushes: applied once each */
    f.fail_at = 0;
    assert_int_equal(th_push(e, reqs[1], &o), 200);
    assert_int_equal(th_int(o, "acked"), 2);
    json_decref(o);
    assert_int_equal(th_push(e, reqs[3], &o), 200);
    assert_int_equal(th_int(o, "acked"), 3);
    json_decref(o);
    d = th_doc(e, "c", "a");
    th_assert_json(d, "{\"n\":11}");
    json_decref(d);
    d = th_doc(e, "c", "b");
    th_assert_json(d, "{\"n\":101}");
    json_decref(d);
    for (int i = 0; i < 4; i++) {
      json_decref(jobs[i].response);
      json_decref(reqs[i]);
    }
    th_env_free(e);
  }
}

/* ops text setting fields f<from>..f<to-1> to strings of LEN 'x's. */
static char *big_sets(int from, int to, size_t len) {
  size_t cap = (size_t)(to - from) * (len + 64) + 16, w = 0;
  char *ops = malloc(cap);
  assert_non_null(ops);
  ops[w++] = '[';
  for (int i = from; i < to; i++) {
    w += (size_t)snprintf(
        ops + w, cap - w,
        "%s{\"kind\":\"set\",\"field\":\"f%02d\",\"value\":\"",
        i > from ? "," : "", i);
    memset(ops + w, 'x', len);
    w += len;
    w += (size_t)snprintf(ops + w, cap - w, "\"}");
  }
  snprintf(ops + w, cap - w, "]");
  return ops;
}

/* No accepted write may grow a document past TT_MAX_DOC (replicas refuse
 * records much larger, and every pull would fail for good): such an intent
 * is rejected and changes nothing; smaller writes go on. */
static void test_document_size_limit(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *o, *d;
  char *ops, want[64];
  const size_t len = 1000000; /* one value: under TT_MAX_VALUE */

  assert_true(TT_MAX_DOC == (size_t)16 << 20);
  th_rep_init(&r, 0xa1);
  /* 16 MB of values: under 16 MiB */
  ops = big_sets(0, 16, len);
  assert_int_equal(th_push1(e, &r, th_intent(&r, 1, "c", "big", 0, ops), &o),
                   200);
  free(ops);
  assert_string_equal(th_str(o, "outcome"), "applied");
  long long commit = th_int(o, "commit");
  json_decref(o);
  /* one more MB: over */
  ops = big_sets(16, 17, len);
  assert_int_equal(
      th_push1(e, &r, th_intent(&r, 2, "c", "big", (uint64_t)commit, ops), &o),
      200);
  free(ops);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  snprintf(want, sizeof want, "document over %zu bytes", (size_t)TT_MAX_DOC);
  assert_string_equal(th_str(o, "reason"), want);
  assert_int_equal(th_int(o, "commit"), commit); /* nothing changed */
  json_decref(o);
  /* a single intent making a new document that large: the same */
  ops = big_sets(0, 17, len);
  assert_int_equal(th_push1(e, &r, th_intent(&r, 3, "c", "big2", 0, ops), &o),
                   200);
  free(ops);
  assert_string_equal(th_str(o, "outcome"), "rejected");
  json_decref(o);
  assert_null(th_doc(e, "c", "big2"));
  /* small writes to the big document still go through */
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 4, "c", "big", (uint64_t)commit,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]"),
               &o),
      200);
  assert_string_equal(th_str(o, "outcome"), "applied");
  json_decref(o);
  d = th_doc(e, "c", "big");
  assert_non_null(d);
  assert_int_equal(json_object_size(d), 17); /* f00..f15 and n */
  assert_null(json_object_get(d, "f16"));
  json_decref(d);
  th_env_free(e);
}

/* A replica restored from a backup re-issues OTHER intents under seqs the
 * server already applied. Answering them as duplicates would tell its app
 * "applied" for writes that never happened: the push is refused with 409
 * chain, and nothing changes. */
static void test_diverged_history(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r, restored, other;
  json_t *in[3], *req, *resp, *d, *o;

  th_rep_init(&r, 0xb1);
  th_rep_init(&other, 0xb2);
  in[0] = th_intent(&r, 1, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  restored = r; /* the backup: taken after seq 1 was made */
  in[1] = th_intent(&r, 2, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":2}]");
  in[2] = th_intent(&r, 3, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":4}]");
  req = th_req(&r, in, 3);
  assert_int_equal(th_push(e, req, &resp), 200);
  json_decref(resp);
  json_decref(req);

  /* 1. up to the head (seq 3): the intent at the head is not the one
   * applied there */
  th_rep x = restored;
  in[0] = th_intent(&x, 2, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":20}]");
  in[1] = th_intent(&x, 3, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":40}]");
  req = th_req(&x, in, 2);
  assert_int_equal(th_push(e, req, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "chain");
  assert_non_null(strstr(th_str(resp, "message"), "diverged"));
  assert_non_null(strstr(th_str(resp, "message"), "seq 3"));
  json_decref(resp);
  json_decref(req);

  /* 2. below the head (seq 2 only), its outcome record still kept: the
   * stored hash differs. In a group commit with another replica's job,
   * which goes through. */
  x = restored;
  json_t *two[2];
  two[0] = th_intent(&x, 2, "c", "a", 0,
                     "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":20}]");
  two[1] = th_intent(&other, 2, "c", "b", 0,
                     "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  json_t *reqs[2] = {th_req(&x, &two[0], 1), th_req(&other, &two[1], 1)};
  tt_push_job jobs[2] = {{.request = reqs[0]}, {.request = reqs[1]}};
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW), 0);
  assert_int_equal(jobs[0].status, 409);
  assert_string_equal(th_str(jobs[0].response, "error"), "chain");
  assert_non_null(strstr(th_str(jobs[0].response, "message"), "seq 2"));
  assert_int_equal(jobs[1].status, 200);
  for (int i = 0; i < 2; i++) {
    json_decref(jobs[i].response);
    json_decref(reqs[i]);
  }

  /* nothing of the diverged pushes changed anything */
  d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":7}");
  json_decref(d);
  uint64_t last = 0;
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last), 0);
  assert_int_equal(last, 3);
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.bad_requests, 2);
  assert_int_equal(st.intents_duplicate, 0);

  /* the same intents resent are still duplicates, and the replica goes on */
  x = restored;
  in[0] = th_intent(&x, 2, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":2}]");
  req = th_req(&x, in, 1);
  assert_int_equal(th_push(e, req, &resp), 200);
  o = json_array_get(json_object_get(resp, "outcomes"), 0);
  assert_true(json_is_true(json_object_get(o, "duplicate")));
  assert_string_equal(th_str(o, "outcome"), "applied");
  json_decref(resp);
  json_decref(req);
  assert_int_equal(
      th_push1(e, &r,
               th_intent(&r, 4, "c", "a", 0,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":8}]"),
               &o),
      200);
  json_decref(o);
  d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":15}");
  json_decref(d);
  th_env_free(e);
}

/* With several partitions: a different intent under an applied seq that
 * lands in ANOTHER partition is new there by that partition's dedupe
 * record; the outcome record of the seq (LMDB sees every partition's)
 * shows it was applied elsewhere. Refused; nothing changes. */
static void test_diverged_history_partitions(void **state) {
  (void)state;
  th_skip_unless(!th_store_url(),
                 "a partition's transaction sees other partitions' records "
                 "only on LMDB");
  th_env *e = th_env_new(NULL, 4, 0);
  th_rep r, x;
  json_t *in[3], *req, *resp;
  char id_other[16] = "";

  th_rep_init(&r, 0xc1);
  in[0] = th_intent(&r, 1, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  x = r;
  in[1] = th_intent(&r, 2, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":2}]");
  in[2] = th_intent(&r, 3, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":4}]");
  req = th_req(&r, in, 3);
  assert_int_equal(th_push(e, req, &resp), 200);
  json_decref(resp);
  json_decref(req);
  for (int i = 0; !id_other[0]; i++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", i);
    if (tt_server_partition_of("c", id, 4) !=
        tt_server_partition_of("c", "a", 4))
      strcpy(id_other, id);
  }
  in[0] = th_intent(&x, 2, "c", id_other, 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":20}]");
  req = th_req(&x, in, 1);
  assert_int_equal(th_push(e, req, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "chain");
  json_decref(resp);
  json_decref(req);
  assert_null(th_doc(e, "c", id_other));
  json_t *d = th_doc(e, "c", "a");
  th_assert_json(d, "{\"n\":7}");
  json_decref(d);
  th_env_free(e);
}

/* Outcome records written before they kept the intent's hash (format 1)
 * are still read: a resent intent is answered from them. */
static void test_outcome_record_format1(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *in[2], *req, *resp, *o;
  tt_txn *t;
  uint8_t k[TT_ID_LEN + 8];
  /* format 1, applied, p 0, commit 1, no rule, no reason */
  static const uint8_t v1[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               0, 0, 0, 1, 0, 0, 0};

  th_rep_init(&r, 0xd1);
  in[0] = th_intent(&r, 1, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  in[1] = th_intent(&r, 2, "c", "a", 0,
                    "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
  req = th_req(&r, in, 2);
  assert_int_equal(th_push(e, req, &resp), 200);
  json_decref(resp);
  memcpy(k, r.id, TT_ID_LEN);
  tt_be64_put(k + TT_ID_LEN, 1);
  assert_int_equal(tt_txn_begin(e->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_OUTCOMES, (tt_bytes){k, sizeof k},
                          (tt_bytes){v1, sizeof v1}),
                   0);
  assert_int_equal(tt_commit(t), 0);
  assert_int_equal(th_push(e, req, &resp), 200);
  o = json_array_get(json_object_get(resp, "outcomes"), 0);
  assert_true(json_is_true(json_object_get(o, "duplicate")));
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 1);
  json_decref(resp);
  json_decref(req);
  th_env_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_apply_and_pull_back),
      cmocka_unit_test(test_duplicate_applied_once),
      cmocka_unit_test(test_gap),
      cmocka_unit_test(test_chain),
      cmocka_unit_test(test_bad_hash_and_replica),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_different_fields_no_conflict),
      cmocka_unit_test(test_same_field_lww),
      cmocka_unit_test(test_future_clock_clamped),
      cmocka_unit_test(test_manual_conflict_and_resolve),
      cmocka_unit_test(test_concurrent_incr),
      cmocka_unit_test(test_group_commit),
      cmocka_unit_test(test_restart_keeps_state),
      cmocka_unit_test(test_outcome_pruning),
      cmocka_unit_test(test_seen_keeps_outcomes),
      cmocka_unit_test(test_delete_and_revive),
      cmocka_unit_test(test_store_full),
      cmocka_unit_test(test_crash_points),
      cmocka_unit_test(test_reject_reason_utf8_in_group),
      cmocka_unit_test(test_outcome_failure_fails_one_job),
      cmocka_unit_test(test_document_size_limit),
      cmocka_unit_test(test_diverged_history),
      cmocka_unit_test(test_diverged_history_partitions),
      cmocka_unit_test(test_outcome_record_format1),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
