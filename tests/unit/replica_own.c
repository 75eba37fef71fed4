/* replica_own.c — own writes confirmed without a pull: a clean outcome
 * ("clean": true) on the confirmed version the intent was written against
 * is applied locally and leaves the outbox at once; the pull request then
 * says "own" (every intent up to it has its effect in the confirmed state)
 * so the server need not send those writes back; a forgotten duplicate
 * holds "own" below it until a caught-up pull; re-bootstrap resets it. */
#include "replica/internal.h"
#include "replica_fixture.h"

/* {"seq":S,"outcome":"applied","p":0,"commit":C,"clean":true} */
static json_t *clean_outcome(uint64_t seq, uint64_t commit) {
  json_t *o = fx_outcome(seq, "applied", commit);
  assert_int_equal(json_object_set_new(o, "clean", json_true()), 0);
  return o;
}

static json_t *forgotten_dup(uint64_t seq) {
  json_t *o = json_pack("{s:I,s:s,s:b}", "seq", (json_int_t)seq, "outcome",
                        "duplicate", "duplicate", 1);
  assert_non_null(o);
  return o;
}

/* Pushes every unacknowledged intent and hands OUTS (stolen) back as the
 * 200 answer. */
static void push_answer(fx *f, json_t *outs) {
  json_t *req = fx_push_req(f, 0);
  json_t *resp = fx_push_resp(outs);
  int rc = tt_replica_push_done(f->r, req, 200, resp);
  if (rc) print_error("push_done: %s\n", tt_replica_last_error(f->r));
  assert_int_equal(rc, 0);
  json_decref(req);
  json_decref(resp);
}

static json_t *pull_req(fx *f) {
  json_t *req = NULL;
  assert_int_equal(tt_replica_pull_request(f->r, 100, 0, &req), 0);
  assert_non_null(req);
  return req;
}

/* "own" of the next pull request: -1 when absent. Checks it agrees with
 * the stored META "own" (absent on the wire iff 0). */
static long long req_own(fx *f) {
  json_t *req = pull_req(f);
  json_t *o = json_object_get(req, "own");
  long long v = -1;
  if (o) {
    assert_true(json_is_integer(o));
    v = json_integer_value(o);
    assert_true(v > 0);
  }
  json_decref(req);
  tt_txn *t = NULL;
  uint64_t stored = 99;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_r_own_load(t, &stored), 0);
  tt_abort(t);
  assert_int_equal(stored, v < 0 ? 0 : (uint64_t)v);
  return v;
}

static int count_ackidx_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)v;
  if (k.len == TT_R_ACKIDX_LEN) ++*(size_t *)ctx;
  return 0;
}

/* Acknowledged intents waiting for a pull (entries of the acked index). */
static size_t acked_waiting(fx *f) {
  tt_txn *t = NULL;
  size_t n = 0;
  const uint8_t tag = TT_R_ACKIDX_TAG;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_true(tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){&tag, 1},
                      count_ackidx_cb, &n) >= 0);
  tt_abort(t);
  return n;
}

/* Version of the confirmed document; -1 when there is none. *DELETED (may
 * be NULL) tells whether it is a tombstone. */
static long long conf_version(fx *f, const char *coll, const char *id,
                              int *deleted) {
  uint8_t key[TT_R_KEYMAX];
  size_t kl = tt_r_dockey(key, coll, id);
  tt_txn *t = NULL;
  tt_rdoc d = {0};
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_r_doc_load(t, key, kl, &d), 0);
  tt_abort(t);
  long long v = d.exists ? (long long)d.version : -1;
  if (deleted) *deleted = d.deleted;
  tt_r_doc_clear(&d);
  return v;
}

/* ---- (a) clean outcomes confirm locally -------------------------------- */

static void test_clean_confirms_locally(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A\""), 0);
  assert_int_equal(fx_put(f, "c", "b", "{\"n\":1,\"s\":[\"x\"]}"), 0);
  assert_int_equal(req_own(f), -1);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, clean_outcome(2, 2));
  push_answer(f, outs);

  /* Nothing left to push or to wait for. */
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(acked_waiting(f), 0);
  json_t *none = (json_t *)1;
  assert_int_equal(tt_replica_push_request(f->r, 0, &none), TETHER_ENOTFOUND);
  assert_null(none);
  assert_doc(f, "c", "a", "{\"t\":\"A\"}");
  assert_doc(f, "c", "b", "{\"n\":1,\"s\":[\"x\"]}");
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  /* Confirmed at version = commit. */
  assert_int_equal(conf_version(f, "c", "a", NULL), 1);
  assert_int_equal(conf_version(f, "c", "b", NULL), 2);
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.pending_intents, 0);
  assert_int_equal(st.documents, 2);
  assert_int_equal(st.rejected, 0);
  /* The app still hears of them, as plain "applied". */
  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 2);
  assert_json(json_array_get(o, 0),
              "{\"seq\":1,\"coll\":\"c\",\"id\":\"a\",\"outcome\":\"applied\"}");
  assert_json(json_array_get(o, 1),
              "{\"seq\":2,\"coll\":\"c\",\"id\":\"b\",\"outcome\":\"applied\"}");
  json_decref(o);

  /* The pull asks the server not to send them back. */
  assert_int_equal(req_own(f), 2);
  fx_reopen(f); /* durable */
  assert_int_equal(req_own(f), 2);
  assert_doc(f, "c", "a", "{\"t\":\"A\"}");
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  /* The pipelined next-page request says it too. */
  json_t *resp = J("{\"v\":1,\"cursor\":[0],\"more\":true,\"resume\":[0],"
                   "\"changes\":[]}");
  json_t *next = NULL;
  assert_int_equal(tt_replica_pull_next_request(f->r, resp, 10, &next), 0);
  assert_int_equal(json_integer_value(json_object_get(next, "own")), 2);
  json_decref(next);
  json_decref(resp);

  /* The same answer delivered again changes nothing. */
  outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, clean_outcome(2, 2));
  json_t *req = J("{\"v\":1,\"intents\":[{\"seq\":1},{\"seq\":2}]}");
  resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);
  assert_int_equal(req_own(f), 2);
  assert_int_equal(conf_version(f, "c", "a", NULL), 1);
  assert_doc(f, "c", "b", "{\"n\":1,\"s\":[\"x\"]}");
}

/* On documents pulled first: incr, add, unset and delete computed from
 * the confirmed state, which stays what the server holds. */
static void test_clean_on_pulled_docs(void **state) {
  fx *f = *state;
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":1,"
          "\"set\":{\"n\":1,\"tags\":[\"a\"],\"old\":true}},"
          "{\"coll\":\"c\",\"id\":\"y\",\"p\":0,\"version\":2,"
          "\"set\":{\"k\":1}},"
          "{\"coll\":\"c\",\"id\":\"z\",\"p\":0,\"version\":3,"
          "\"deleted\":true}]");
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "4"), 0);     /* 1 */
  assert_int_equal(fx_op(f, "c", "y", TT_OP_DELETE, NULL, NULL), 0); /* 2 */
  assert_int_equal(fx_set(f, "c", "z", "r", "1"), 0);                /* 3 */
  json_t *ints = fx_intents(f);
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(ints, 0), "base")), 1);
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(ints, 1), "base")), 2);
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(ints, 2), "base")), 3);
  json_decref(ints);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 4));
  json_array_append_new(outs, clean_outcome(2, 5));
  json_array_append_new(outs, clean_outcome(3, 6));
  push_answer(f, outs);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(acked_waiting(f), 0);
  int del = -1;
  assert_doc(f, "c", "x", "{\"n\":5,\"tags\":[\"a\"],\"old\":true}");
  assert_int_equal(conf_version(f, "c", "x", &del), 4);
  assert_false(del);
  assert_doc(f, "c", "y", "absent");
  assert_int_equal(conf_version(f, "c", "y", &del), 5);
  assert_true(del); /* a tombstone at the delete's commit */
  /* A write on a tombstone revives it from empty. */
  assert_doc(f, "c", "z", "{\"r\":1}");
  assert_int_equal(conf_version(f, "c", "z", &del), 6);
  assert_false(del);
  for (int i = 0; i < 3; i++) {
    const char *id = i == 0 ? "x" : i == 1 ? "y" : "z";
    assert_int_equal(fx_status(f, "c", id), TETHER_SYNCED);
  }
  assert_int_equal(req_own(f), 3);
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, 2);

  /* Based on the locally confirmed version, the next write is clean
   * again. */
  assert_int_equal(fx_op(f, "c", "x", TT_OP_ADD, "tags", "\"b\""), 0);
  assert_int_equal(fx_op(f, "c", "x", TT_OP_UNSET, "old", NULL), 0);
  ints = fx_intents(f);
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(ints, 0), "base")), 4);
  json_decref(ints);
  outs = json_array();
  json_array_append_new(outs, clean_outcome(4, 7));
  json_array_append_new(outs, fx_outcome(5, "applied", 8)); /* not clean */
  push_answer(f, outs);
  /* 4 confirmed here; 5 waits, and so does "own". */
  assert_int_equal(conf_version(f, "c", "x", NULL), 7);
  assert_int_equal(acked_waiting(f), 1);
  assert_int_equal(fx_status(f, "c", "x"), TETHER_PENDING);
  assert_doc(f, "c", "x", "{\"n\":5,\"tags\":[\"a\",\"b\"]}");
  assert_int_equal(req_own(f), 3);
  fx_pull(f, 8, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":8,"
          "\"set\":{\"n\":5,\"tags\":[\"a\",\"b\"]},\"unset\":[\"old\"]}]");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_SYNCED);
  assert_doc(f, "c", "x", "{\"n\":5,\"tags\":[\"a\",\"b\"]}");
  assert_int_equal(req_own(f), 5);
}

/* ---- (b) without "clean": waits for a pull ----------------------------- */

static void test_not_clean_waits_for_pull(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A\""), 0);
  assert_int_equal(fx_put(f, "c", "b", "{\"n\":1}"), 0);
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(1, "applied", 1));
  json_t *o2 = fx_outcome(2, "applied", 2);
  json_object_set_new(o2, "clean", json_false()); /* only true counts */
  json_array_append_new(outs, o2);
  push_answer(f, outs);
  assert_int_equal(tt_replica_outbox_len(f->r), 0); /* acknowledged */
  assert_int_equal(acked_waiting(f), 2);            /* but not confirmed */
  assert_int_equal(fx_status(f, "c", "a"), TETHER_PENDING);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_PENDING);
  assert_int_equal(conf_version(f, "c", "a", NULL), -1);
  assert_int_equal(conf_version(f, "c", "b", NULL), -1);
  assert_doc(f, "c", "a", "{\"t\":\"A\"}"); /* the view still shows them */
  assert_doc(f, "c", "b", "{\"n\":1}");
  assert_int_equal(req_own(f), -1);
  fx_reopen(f);
  assert_int_equal(req_own(f), -1);

  /* A page that does not cover them yet: "own" still absent. */
  fx_pull(f, 0, 1, "[]");
  assert_int_equal(acked_waiting(f), 2);
  assert_int_equal(req_own(f), -1);
  /* The pull that brings them: confirmed, and "own" moves. */
  fx_pull(f, 2, 0,
          "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":1,"
          "\"set\":{\"t\":\"A\"}},"
          "{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"n\":1}}]");
  assert_int_equal(acked_waiting(f), 0);
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  assert_int_equal(req_own(f), 2);
}

/* One clean and one not: the clean one is confirmed at once, but "own"
 * waits for the other; and once given, "own" never goes down. */
static void test_mixed_clean_and_not(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "1"), 0);
  assert_int_equal(fx_set(f, "c", "b", "t", "2"), 0);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_t *m = fx_outcome(2, "merged", 2);
  json_object_set_new(m, "rule", json_string("lww"));
  json_object_set_new(m, "clean", json_true()); /* only "applied" is */
  json_array_append_new(outs, m);
  push_answer(f, outs);
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_PENDING);
  assert_int_equal(acked_waiting(f), 1);
  assert_int_equal(req_own(f), -1);
  fx_pull(f, 2, 0,
          "[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"t\":2}}]");
  assert_int_equal(req_own(f), 2);
  /* A later intent waiting leaves "own" where it was. */
  assert_int_equal(fx_set(f, "c", "a", "t", "3"), 0);
  outs = json_array();
  json_array_append_new(outs, fx_outcome(3, "applied", 3));
  push_answer(f, outs);
  assert_int_equal(acked_waiting(f), 1);
  assert_int_equal(req_own(f), 2);
  /* A rejected intent is in the acknowledged prefix too. */
  assert_int_equal(fx_set(f, "c", "b", "t", "4"), 0);
  outs = json_array();
  json_array_append_new(outs, json_pack("{s:i,s:s,s:s}", "seq", 4, "outcome",
                                        "rejected", "reason", "no"));
  push_answer(f, outs);
  assert_int_equal(req_own(f), 2);
  fx_pull(f, 3, 0, "[]"); /* covers commit 3 */
  assert_int_equal(acked_waiting(f), 0);
  assert_int_equal(req_own(f), 4);
}

/* ---- (c) a clean outcome on a version this replica no longer holds ----- */

static void test_clean_base_mismatch(void **state) {
  fx *f = *state;
  fx_pull(f, 1, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":1,"
          "\"set\":{\"n\":1}}]");
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "1"), 0); /* base 1 */
  /* Between the write and the answer a pull moved the confirmed x. */
  fx_pull(f, 2, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":2,"
          "\"set\":{\"n\":10}}]");
  assert_doc(f, "c", "x", "{\"n\":11}");
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 3));
  push_answer(f, outs);
  /* Not computed here: the confirmed x stays at 2, the intent waits. */
  assert_int_equal(conf_version(f, "c", "x", NULL), 2);
  assert_int_equal(acked_waiting(f), 1);
  assert_int_equal(fx_status(f, "c", "x"), TETHER_PENDING);
  assert_doc(f, "c", "x", "{\"n\":11}");
  assert_int_equal(req_own(f), -1);
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":3,"
          "\"set\":{\"n\":11}}]");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_SYNCED);
  assert_int_equal(acked_waiting(f), 0);
  assert_int_equal(req_own(f), 1);

  /* A new document that this replica meanwhile pulled (someone else made
   * it): base 0 is not the confirmed version either. */
  assert_int_equal(fx_set(f, "c", "n", "a", "1"), 0); /* seq 2, base 0 */
  fx_pull(f, 4, 0,
          "[{\"coll\":\"c\",\"id\":\"n\",\"p\":0,\"version\":4,"
          "\"set\":{\"b\":2}}]");
  outs = json_array();
  json_array_append_new(outs, clean_outcome(2, 5));
  push_answer(f, outs);
  assert_int_equal(conf_version(f, "c", "n", NULL), 4);
  assert_int_equal(acked_waiting(f), 1);
  assert_doc(f, "c", "n", "{\"a\":1,\"b\":2}");
  assert_int_equal(req_own(f), 1);

  /* A commit not past the base (no server sends it): not taken either. */
  fx_pull(f, 5, 0, "[]");
  assert_int_equal(acked_waiting(f), 0);
  assert_int_equal(fx_set(f, "c", "x", "m", "1"), 0); /* seq 3, base 3 */
  outs = json_array();
  json_array_append_new(outs, clean_outcome(3, 3));
  push_answer(f, outs);
  assert_int_equal(conf_version(f, "c", "x", NULL), 3);
  assert_int_equal(acked_waiting(f), 1);
  assert_int_equal(fx_status(f, "c", "x"), TETHER_PENDING);
}

/* Two writes on one document, both based on its confirmed version 0: a
 * server would not call the second clean; if one does, the second is not
 * computed on top of the first's result. */
static void test_clean_second_write_same_base(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "d", "a", "1"), 0);
  assert_int_equal(fx_set(f, "c", "d", "b", "2"), 0);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, clean_outcome(2, 2));
  push_answer(f, outs);
  /* seq 1 confirmed at 1; seq 2 (base 0) does not match version 1. */
  assert_int_equal(conf_version(f, "c", "d", NULL), 1);
  assert_int_equal(acked_waiting(f), 1);
  assert_doc(f, "c", "d", "{\"a\":1,\"b\":2}");
  assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
  assert_int_equal(req_own(f), -1);
}

/* ---- (d) a forgotten duplicate holds "own" below it -------------------- */

static void test_forgotten_duplicate_holds_own(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A\""), 0); /* 1 */
  assert_int_equal(fx_set(f, "c", "b", "t", "\"B\""), 0); /* 2 */
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, forgotten_dup(2));
  push_answer(f, outs);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(acked_waiting(f), 0);
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  /* b's effect is not here: the view is its (absent) confirmed state. */
  assert_doc(f, "c", "b", "absent");
  assert_int_equal(req_own(f), 1);
  fx_reopen(f);
  assert_int_equal(req_own(f), 1);

  /* A page that is not the last does not release the hold. */
  fx_pull(f, 0, 1, "[]");
  assert_int_equal(req_own(f), 1);
  /* Nor does a later clean intent raise "own" past it. */
  assert_int_equal(fx_set(f, "c", "c", "t", "\"C\""), 0); /* 3 */
  outs = json_array();
  json_array_append_new(outs, clean_outcome(3, 3));
  push_answer(f, outs);
  assert_doc(f, "c", "c", "{\"t\":\"C\"}");
  assert_int_equal(req_own(f), 1);
  fx_pull(f, 1, 1, "[]");
  assert_int_equal(req_own(f), 1);
  /* The caught-up page (it brings b): released, "own" is the acked
   * prefix. */
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"t\":\"B\"}}]");
  assert_doc(f, "c", "b", "{\"t\":\"B\"}");
  assert_int_equal(req_own(f), 3);
  fx_reopen(f);
  assert_int_equal(req_own(f), 3);
}

/* The hold is the lowest forgotten seq of the answer: forgotten
 * duplicates of seqs 5 and 3 (in that order) keep "own" at 2. */
static void test_forgotten_duplicate_lowest_wins(void **state) {
  fx *f = *state;
  for (int i = 0; i < 5; i++) {
    char id[8];
    snprintf(id, sizeof id, "d%d", i);
    assert_int_equal(fx_set(f, "c", id, "i", "1"), 0);
  }
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, clean_outcome(2, 2));
  json_array_append_new(outs, forgotten_dup(5));
  json_array_append_new(outs, forgotten_dup(3));
  json_array_append_new(outs, clean_outcome(4, 4));
  push_answer(f, outs);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(req_own(f), 2);
  fx_pull(f, 5, 0, "[]");
  assert_int_equal(req_own(f), 5);

  /* A forgotten duplicate for seq 1 alone: "own" stays absent. */
  fx_teardown(state);
  fx_setup(state);
  f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "1"), 0);
  outs = json_array();
  json_array_append_new(outs, forgotten_dup(1));
  push_answer(f, outs);
  assert_int_equal(req_own(f), -1);
  fx_pull(f, 1, 1, "[]");
  assert_int_equal(req_own(f), -1);
  fx_pull(f, 1, 0, "[]");
  assert_int_equal(req_own(f), 1);
}

/* ---- (e) re-bootstrap -------------------------------------------------- */

static void test_rebootstrap_resets_own(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "1"), 0);
  assert_int_equal(fx_set(f, "c", "b", "t", "2"), 0);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, forgotten_dup(2));
  push_answer(f, outs);
  assert_int_equal(req_own(f), 1);
  assert_int_equal(tt_replica_rebootstrap(f->r), 0);
  assert_int_equal(req_own(f), -1);
  fx_reopen(f);
  json_t *req = pull_req(f);
  assert_json(json_object_get(req, "cursor"), "[]");
  assert_null(json_object_get(req, "own"));
  json_decref(req);
  /* The confirmed state is empty. */
  assert_doc(f, "c", "a", "absent");
  /* The whole bootstrap in one page: "own" is the acked prefix again (the
   * hold went with the re-bootstrap, and this page caught up anyway). */
  fx_pull(f, 2, 0,
          "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":1,"
          "\"set\":{\"t\":1}},"
          "{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"t\":2}}]");
  assert_doc(f, "c", "a", "{\"t\":1}");
  assert_int_equal(req_own(f), 2);
}

/* "own" means: every intent up to it has its effect in the confirmed
 * state (internal.h). After a re-bootstrap the confirmed state is empty
 * until the pull from [] has caught up, so "own" must stay absent until
 * then; a bootstrap pull that says "own" makes the server skip this
 * replica's own clean writes, which then never come back (the bug this
 * test found: re-bootstrap now holds "own" at 0 until a page says
 * "more": false). */
static void test_rebootstrap_paged_keeps_own_absent(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "1"), 0);
  assert_int_equal(fx_set(f, "c", "b", "t", "2"), 0);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, clean_outcome(2, 2));
  push_answer(f, outs);
  assert_int_equal(req_own(f), 2);
  assert_int_equal(tt_replica_rebootstrap(f->r), 0);
  assert_int_equal(req_own(f), -1);
  /* First page of the bootstrap: brings b, a is still to come. */
  json_t *p1 = J("{\"v\":1,\"cursor\":[0],\"more\":true,\"resume\":[1],"
                 "\"changes\":[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,"
                 "\"version\":2,\"set\":{\"t\":2}}]}");
  int more = -1;
  size_t n = 0;
  assert_int_equal(tt_replica_pull_done(f->r, 200, p1, &more, &n), 0);
  json_decref(p1);
  assert_int_equal(more, 1);
  assert_doc(f, "c", "a", "absent"); /* not here yet */
  /* The next page must not ask the server to skip a. */
  assert_int_equal(req_own(f), -1);
}

/* ---- (f) a pull bringing what was confirmed locally -------------------- */

static void test_pull_same_version_unchanged(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A\""), 0);
  assert_int_equal(fx_put(f, "c", "b", "{\"n\":1,\"l\":[1,2],\"o\":{\"k\":1}}"),
                   0);
  assert_int_equal(fx_op(f, "c", "a", TT_OP_INCR, "n", "3"), 0);
  /* A pull asked before the answer arrives (no "own" in it)... */
  json_t *req = pull_req(f);
  assert_null(json_object_get(req, "own"));
  json_decref(req);
  json_t *outs = json_array();
  json_array_append_new(outs, clean_outcome(1, 1));
  json_array_append_new(outs, clean_outcome(2, 2));
  json_array_append_new(outs, clean_outcome(3, 3)); /* base 0: not taken */
  push_answer(f, outs);
  assert_int_equal(conf_version(f, "c", "a", NULL), 1);
  assert_int_equal(conf_version(f, "c", "b", NULL), 2);
  char *a1 = fx_get(f, "c", "a"), *b1 = fx_get(f, "c", "b");
  assert_string_equal(a1, "{\"n\":3,\"t\":\"A\"}");
  /* ...brings our writes back at the versions confirmed here, and a at
   * an older version than it now has. */
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"n\":1,\"l\":[1,2],\"o\":{\"k\":1}}},"
          "{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":3,"
          "\"set\":{\"t\":\"A\",\"n\":3}}]");
  char *a2 = fx_get(f, "c", "a"), *b2 = fx_get(f, "c", "b");
  assert_string_equal(a1, a2);
  assert_string_equal(b1, b2);
  assert_int_equal(conf_version(f, "c", "b", NULL), 2);
  assert_int_equal(conf_version(f, "c", "a", NULL), 3);
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  assert_int_equal(req_own(f), 3);
  /* The same page again, and one at an older version of b: unchanged. */
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"n\":1,\"l\":[1,2],\"o\":{\"k\":1}}}]");
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":1,"
          "\"set\":{\"n\":0}}]");
  char *b3 = fx_get(f, "c", "b");
  assert_string_equal(b1, b3);
  assert_int_equal(conf_version(f, "c", "b", NULL), 2);
  free(a1);
  free(a2);
  free(b1);
  free(b2);
  free(b3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_clean_confirms_locally, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_clean_on_pulled_docs, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_not_clean_waits_for_pull,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_mixed_clean_and_not, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_clean_base_mismatch, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_clean_second_write_same_base,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_forgotten_duplicate_holds_own,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_forgotten_duplicate_lowest_wins,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebootstrap_resets_own, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebootstrap_paged_keeps_own_absent,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_pull_same_version_unchanged,
                                      fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
