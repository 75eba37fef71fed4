/* replica_sync.c — push and pull messages against hand-built server
 * answers: batching, outcomes, rollback, conflicts, rebase, resolve. */
#include <time.h>

#include "replica_fixture.h"

static uint64_t seq_of(const json_t *intent) {
  return (uint64_t)json_integer_value(json_object_get(intent, "seq"));
}

/* Canonical text of everything observable, to prove a call changed
 * nothing. */
static char *snapshot(fx *f) {
  json_t *s = json_object();
  json_t *req = NULL;
  if (tt_replica_push_request(f->r, 0, &req) == 0)
    json_object_set_new(s, "push", req);
  req = NULL;
  assert_int_equal(tt_replica_pull_request(f->r, 100, 0, &req), 0);
  json_object_set_new(s, "pull", req);
  const char *ids[] = {"a", "b", "c", "d", "x", "y"};
  for (size_t i = 0; i < 6; i++) {
    char *d = fx_get(f, "c", ids[i]);
    char sk[16];
    snprintf(sk, sizeof sk, "status_%s", ids[i]);
    json_object_set_new(s, ids[i], json_string(d));
    json_object_set_new(s, sk, json_integer(fx_status(f, "c", ids[i])));
    free(d);
  }
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  json_object_set_new(s, "stats",
                      json_pack("{s:I,s:I,s:I,s:I}", "p",
                                (json_int_t)st.pending_intents, "c",
                                (json_int_t)st.conflicts, "r",
                                (json_int_t)st.rejected, "d",
                                (json_int_t)st.documents));
  json_object_set_new(s, "conflicts", fx_conflicts(f));
  char *text = tt_canon(s);
  json_decref(s);
  return text;
}

static void test_push_batching(void **state) {
  fx *f = *state;
  json_t *req = (json_t *)1;
  assert_int_equal(tt_replica_push_request(f->r, 10, &req),
                   TETHER_ENOTFOUND);
  assert_null(req);
  for (int i = 0; i < 7; i++) {
    char id[8];
    snprintf(id, sizeof id, "d%d", i);
    assert_int_equal(fx_set(f, "c", id, "i", "1"), 0);
  }
  req = fx_push_req(f, 3);
  assert_int_equal(json_integer_value(json_object_get(req, "v")), 1);
  char hex[33];
  tt_hex_encode(FX_ID, TT_ID_LEN, hex);
  assert_string_equal(json_string_value(json_object_get(req, "replica")), hex);
  json_t *ints = json_object_get(req, "intents");
  assert_int_equal(json_array_size(ints), 3);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(seq_of(json_array_get(ints, i)), i + 1);
  /* Without an answer the same batch goes again. */
  json_t *again = fx_push_req(f, 3);
  assert_true(json_equal(req, again));
  json_decref(again);

  json_t *outs = json_array();
  for (uint64_t s = 1; s <= 3; s++)
    json_array_append_new(outs, fx_outcome(s, "applied", 100 + s));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  assert_int_equal(tt_replica_outbox_len(f->r), 4);
  json_decref(req);
  fx_reopen(f);

  req = fx_push_req(f, 3);
  ints = json_object_get(req, "intents");
  assert_int_equal(json_array_size(ints), 3);
  assert_int_equal(seq_of(json_array_get(ints, 0)), 4);
  /* The old answer again (a duplicate delivery) changes nothing. */
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  assert_int_equal(tt_replica_outbox_len(f->r), 4);
  json_decref(resp);
  json_decref(req);

  req = fx_push_req(f, 0);
  assert_int_equal(json_array_size(json_object_get(req, "intents")), 4);
  json_decref(req);
  fx_push_all_applied(f, 100);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(tt_replica_push_request(f->r, 0, &req), TETHER_ENOTFOUND);
  /* Acknowledged but not yet pulled: still pending in the view. */
  assert_int_equal(fx_status(f, "c", "d0"), TETHER_PENDING);
  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 7);
  json_decref(o);
}

static void test_push_outcomes(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A\""), 0);
  assert_int_equal(fx_op(f, "c", "b", TT_OP_INCR, "n", "1"), 0);
  assert_int_equal(fx_set(f, "c", "c", "t", "\"ours\""), 0);
  json_t *v = J("\"Y\"");
  assert_int_equal(
      tt_replica_write(f->r, "c", "d", TT_OP_SET, "y", v, "lbl", T0), 0);
  json_decref(v);
  assert_doc(f, "c", "d", "{\"y\":\"Y\"}");

  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(1, "applied", 10));
  json_t *m = fx_outcome(2, "merged", 11);
  json_object_set_new(m, "rule", json_string("counter"));
  json_array_append_new(outs, m);
  json_t *c = fx_outcome(3, "conflict", 9);
  char cid[64];
  char hex[33];
  tt_hex_encode(FX_ID, TT_ID_LEN, hex);
  snprintf(cid, sizeof cid, "%s-3-0", hex);
  json_object_set_new(c, "conflict",
                      json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", cid, "field",
                                "t", "base", "A", "theirs", "B", "ours",
                                "ours"));
  json_array_append_new(outs, c);
  json_array_append_new(outs,
                        json_pack("{s:i,s:s,s:s}", "seq", 4, "outcome",
                                  "rejected", "reason", "nope: not allowed"));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  assert_non_null(strstr(tt_replica_last_error(f->r), "nope: not allowed"));
  fx_reopen(f);

  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  /* The rejected write is rolled back from the view. */
  assert_doc(f, "c", "d", "absent");
  assert_int_equal(fx_status(f, "c", "d"), TETHER_REJECTED);
  assert_int_equal(fx_status(f, "c", "c"), TETHER_CONFLICT);
  assert_int_equal(fx_status(f, "c", "a"), TETHER_PENDING);
  assert_doc(f, "c", "a", "{\"t\":\"A\"}");
  assert_doc(f, "c", "c", "{\"t\":\"ours\"}");

  json_t *cf = fx_conflicts(f);
  assert_int_equal(json_array_size(cf), 1);
  char want[256];
  snprintf(want, sizeof want,
           "{\"conflict\":\"%s\",\"coll\":\"c\",\"id\":\"c\",\"field\":\"t\","
           "\"base\":\"A\",\"theirs\":\"B\",\"ours\":\"ours\"}",
           cid);
  assert_json(json_array_get(cf, 0), want);
  json_decref(cf);

  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.pending_intents, 0);
  assert_int_equal(st.conflicts, 1);
  assert_int_equal(st.rejected, 1);
  assert_int_equal(st.documents, 3);

  /* The same answer delivered again is ignored. */
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);

  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 4);
  assert_json(json_array_get(o, 0),
              "{\"seq\":1,\"coll\":\"c\",\"id\":\"a\",\"outcome\":\"applied\"}");
  assert_json(json_array_get(o, 1),
              "{\"seq\":2,\"coll\":\"c\",\"id\":\"b\",\"outcome\":\"merged\","
              "\"rule\":\"counter\"}");
  snprintf(want, sizeof want,
           "{\"seq\":3,\"coll\":\"c\",\"id\":\"c\",\"outcome\":\"conflict\","
           "\"conflict\":\"%s\"}",
           cid);
  assert_json(json_array_get(o, 2), want);
  assert_json(json_array_get(o, 3),
              "{\"seq\":4,\"coll\":\"c\",\"id\":\"d\",\"label\":\"lbl\","
              "\"outcome\":\"rejected\",\"reason\":\"nope: not allowed\"}");
  json_decref(o);
  /* Taken once. */
  o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 0);
  json_decref(o);
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.rejected, 0);

  /* A newer write on the rejected document ends its rejected status. */
  assert_int_equal(fx_set(f, "c", "d", "y", "\"Z\""), 0);
  assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
}

static int stop_after_one(void *ctx, const json_t *obj) {
  (void)obj;
  int *n = ctx;
  return ++*n == 2 ? 5 : 0;
}

static void test_take_outcomes_stops(void **state) {
  fx *f = *state;
  for (int i = 0; i < 3; i++) assert_int_equal(fx_set(f, "c", "a", "n", "1"), 0);
  fx_push_all_applied(f, 0);
  int n = 0;
  /* The callback accepts the first, refuses the second. */
  assert_int_equal(tt_replica_take_outcomes(f->r, stop_after_one, &n), 5);
  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 2);
  assert_int_equal(seq_of(json_array_get(o, 0)), 2);
  json_decref(o);
}

static void test_rejected_keeps_later_pending(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "x", "a", "1"), 0);
  assert_int_equal(fx_set(f, "c", "x", "b", "2"), 0);
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, json_pack("{s:i,s:s,s:s}", "seq", 1, "outcome",
                                        "rejected", "reason", "no"));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  /* Seq 2 still waits; its write shows, seq 1's does not. */
  assert_doc(f, "c", "x", "{\"b\":2}");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_PENDING);
  assert_int_equal(tt_replica_outbox_len(f->r), 1);
  json_decref(req);
  json_decref(resp);
  req = fx_push_req(f, 0);
  assert_int_equal(seq_of(json_array_get(json_object_get(req, "intents"), 0)),
                   2);
  json_decref(req);
}

static void test_push_errors_change_nothing(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "t", "1"), 0);
  assert_int_equal(fx_set(f, "c", "b", "t", "2"), 0);
  char *before = snapshot(f);
  json_t *req = fx_push_req(f, 0);

  json_t *gap = J("{\"v\":1,\"error\":\"gap\",\"expected\":1,"
                  "\"message\":\"expected seq 1\"}");
  assert_int_equal(tt_replica_push_done(f->r, req, 409, gap), TETHER_EGAP);
  assert_non_null(strstr(tt_replica_last_error(f->r), "expected seq 1"));
  json_decref(gap);
  json_t *bad = J("{\"v\":1,\"error\":\"invalid\",\"message\":\"seq 1: ops\"}");
  assert_int_equal(tt_replica_push_done(f->r, req, 400, bad),
                   TETHER_EREJECTED);
  assert_non_null(strstr(tt_replica_last_error(f->r), "seq 1: ops"));
  json_decref(bad);
  json_t *un = J("{\"v\":1,\"error\":\"unavailable\"}");
  assert_int_equal(tt_replica_push_done(f->r, req, 503, un), TETHER_ESERVER);
  assert_int_equal(tt_replica_push_done(f->r, req, 503, NULL),
                   TETHER_ESERVER);
  json_decref(un);

  /* A malformed 200: the second outcome lacks its commit. The first one
   * must not be applied either. */
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(1, "applied", 5));
  json_array_append_new(outs, J("{\"seq\":2,\"outcome\":\"applied\",\"p\":0}"));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), TETHER_EPROTO);
  json_decref(resp);
  outs = json_array();
  json_array_append_new(outs, J("{\"seq\":1,\"outcome\":\"won\",\"p\":0,"
                                "\"commit\":1}"));
  resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), TETHER_EPROTO);
  json_decref(resp);
  json_t *arr = J("[]");
  assert_int_equal(tt_replica_push_done(f->r, req, 200, arr), TETHER_EPROTO);
  json_decref(arr);

  char *after = snapshot(f);
  assert_string_equal(before, after);
  free(before);
  free(after);
  json_decref(req);
}

static void test_pull_applies_and_rebases(void **state) {
  fx *f = *state;
  json_t *req = NULL;
  assert_int_equal(tt_replica_pull_request(f->r, 500, 2000, &req), 0);
  assert_json(json_object_get(req, "cursor"), "[]");
  assert_int_equal(json_integer_value(json_object_get(req, "limit")), 500);
  assert_int_equal(json_integer_value(json_object_get(req, "wait_ms")), 2000);
  assert_int_equal(json_integer_value(json_object_get(req, "v")), 1);
  json_decref(req);

  fx_pull(f, 6, 1,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":5,"
          "\"set\":{\"a\":1,\"n\":10,\"old\":0}},"
          "{\"coll\":\"c\",\"id\":\"y\",\"p\":0,\"version\":6,"
          "\"deleted\":true}]");
  fx_reopen(f);
  assert_int_equal(tt_replica_pull_request(f->r, 0, 0, &req), 0);
  assert_json(json_object_get(req, "cursor"), "[6]");
  assert_null(json_object_get(req, "limit"));
  json_decref(req);
  assert_doc(f, "c", "x", "{\"a\":1,\"n\":10,\"old\":0}");
  assert_doc(f, "c", "y", "absent");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_SYNCED);

  /* A local increment, based on version 5. */
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "5"), 0);
  assert_doc(f, "c", "x", "{\"a\":1,\"n\":15,\"old\":0}");
  json_t *ints = fx_intents(f);
  tt_intent in = {0};
  fx_intent_ok(json_array_get(ints, 0), &in);
  assert_int_equal(in.base, 5);
  assert_null(in.ops[0].base_value); /* incr always combines */
  tt_intent_clear(&in);
  json_decref(ints);
  /* A write on the deleted document is based on its tombstone. */
  assert_int_equal(fx_set(f, "c", "y", "b", "1"), 0);
  ints = fx_intents(f);
  fx_intent_ok(json_array_get(ints, 1), &in);
  assert_int_equal(in.base, 6);
  tt_intent_clear(&in);
  json_decref(ints);

  /* Acknowledged at commits 8 and 9. */
  req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(1, "applied", 8));
  json_array_append_new(outs, fx_outcome(2, "applied", 9));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);

  /* Another replica's +2 at commit 7 arrives; ours (commit 8) is not in
   * the confirmed state yet, so the view is the sum. */
  fx_pull(f, 7, 1,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":7,"
          "\"set\":{\"n\":12},\"unset\":[\"old\"]}]");
  assert_doc(f, "c", "x", "{\"a\":1,\"n\":17}");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_PENDING);
  fx_reopen(f);
  assert_doc(f, "c", "x", "{\"a\":1,\"n\":17}");

  /* Commit 8 is pulled: the intent leaves, the view is the confirmed
   * state. Commit 9 (c/y) is covered by the cursor without being in the
   * page: swept too. */
  fx_pull(f, 9, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":8,"
          "\"set\":{\"n\":17}}]");
  assert_doc(f, "c", "x", "{\"a\":1,\"n\":17}");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "y"), TETHER_SYNCED);
  /* The view of y falls back to the confirmed tombstone: the server's
   * version of it never reached this replica in this test. */
  assert_doc(f, "c", "y", "absent");
  /* A revived document arrives without its old fields. */
  fx_pull(f, 10, 0,
          "[{\"coll\":\"c\",\"id\":\"y\",\"p\":0,\"version\":10,"
          "\"set\":{\"b\":1}}]");
  assert_doc(f, "c", "y", "{\"b\":1}");
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, 2);
  assert_int_equal(st.pending_intents, 0);
}

static void test_page_version_covers_intent(void **state) {
  fx *f = *state;
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":3,"
          "\"set\":{\"n\":1}}]");
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "1"), 0);
  fx_push_all_applied(f, 4); /* commit 5 */
  /* A page whose cursor stops short of 5 but carries x at version 6:
   * the confirmed document already includes our increment. */
  fx_pull(f, 4, 1,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":6,"
          "\"set\":{\"n\":2}}]");
  assert_doc(f, "c", "x", "{\"n\":2}");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_SYNCED);
}

static void test_rejected_incr_on_string(void **state) {
  fx *f = *state;
  fx_pull(f, 1, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":1,"
          "\"set\":{\"n\":10}}]");
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "1"), 0);
  assert_doc(f, "c", "x", "{\"n\":11}");
  /* Another replica made n a string before our push. */
  fx_pull(f, 2, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":2,"
          "\"set\":{\"n\":\"ten\"}}]");
  /* The pending increment no longer fits: not shown. */
  assert_doc(f, "c", "x", "{\"n\":\"ten\"}");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_PENDING);
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "1"), TETHER_ETYPE);

  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs,
                        json_pack("{s:i,s:s,s:s}", "seq", 1, "outcome",
                                  "rejected", "reason",
                                  "incr: field n is not an integer"));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);
  assert_int_equal(fx_status(f, "c", "x"), TETHER_REJECTED);
  assert_non_null(strstr(tt_replica_last_error(f->r), "not an integer"));
  assert_doc(f, "c", "x", "{\"n\":\"ten\"}");
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  fx_reopen(f);
  assert_int_equal(fx_status(f, "c", "x"), TETHER_REJECTED);
}

static void test_resolve(void **state) {
  fx *f = *state;
  char hex[33], cid[64], want[256];
  tt_hex_encode(FX_ID, TT_ID_LEN, hex);
  snprintf(cid, sizeof cid, "%s-1-0", hex);
  fx_pull(f, 1, 0,
          "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":1,"
          "\"set\":{\"t\":\"A\",\"u\":0}}]");
  assert_int_equal(fx_set(f, "c", "d", "t", "\"ours\""), 0);
  assert_int_equal(fx_set(f, "c", "d", "u", "1"), 0);
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_t *c = fx_outcome(1, "conflict", 2);
  json_object_set_new(c, "conflict",
                      json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", cid, "field",
                                "t", "base", "A", "theirs", "B", "ours",
                                "ours"));
  json_array_append_new(outs, c);
  json_array_append_new(outs, fx_outcome(2, "applied", 3));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);
  json_t *o = fx_take_outcomes(f);
  json_decref(o);

  /* The server kept theirs ("B", commit 2) and took u (commit 3). */
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":3,"
          "\"set\":{\"t\":\"B\",\"u\":1}}]");
  assert_doc(f, "c", "d", "{\"t\":\"B\",\"u\":1}");
  assert_int_equal(fx_status(f, "c", "d"), TETHER_CONFLICT);
  fx_reopen(f);
  assert_int_equal(fx_status(f, "c", "d"), TETHER_CONFLICT);

  json_t *v = J("\"final\"");
  assert_int_equal(tt_replica_resolve(f->r, "c", "d", "u", v, T0),
                   TETHER_ENOTFOUND);
  assert_int_equal(tt_replica_resolve(f->r, "c", "d", "t", v, T0), 0);
  assert_doc(f, "c", "d", "{\"t\":\"final\",\"u\":1}");
  assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
  json_t *cf = fx_conflicts(f);
  assert_int_equal(json_array_size(cf), 0);
  json_decref(cf);
  assert_int_equal(tt_replica_resolve(f->r, "c", "d", "t", v, T0),
                   TETHER_ENOTFOUND);
  json_decref(v);

  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 1);
  snprintf(want, sizeof want,
           "{\"kind\":\"resolve\",\"field\":\"t\",\"value\":\"final\","
           "\"base_value\":\"B\",\"conflict\":\"%s\"}",
           cid);
  json_t *i3 = json_array_get(ints, 0);
  assert_int_equal(seq_of(i3), 3);
  assert_int_equal(json_integer_value(json_object_get(i3, "base")), 3);
  assert_json(json_array_get(json_object_get(i3, "ops"), 0), want);
  tt_intent in = {0};
  fx_intent_ok(i3, &in);
  tt_intent_clear(&in);
  json_decref(ints);
}

static void test_resolve_unset(void **state) {
  fx *f = *state;
  char hex[33], cid[64];
  tt_hex_encode(FX_ID, TT_ID_LEN, hex);
  snprintf(cid, sizeof cid, "%s-1-0", hex);
  assert_int_equal(fx_set(f, "c", "d", "t", "\"ours\""), 0);
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_t *c = fx_outcome(1, "conflict", 2);
  json_object_set_new(c, "conflict", json_pack("{s:s,s:s,s:s}", "id", cid,
                                               "field", "t", "ours", "ours"));
  json_array_append_new(outs, c);
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);
  json_t *cf = fx_conflicts(f);
  char want[200];
  snprintf(want, sizeof want,
           "{\"conflict\":\"%s\",\"coll\":\"c\",\"id\":\"d\",\"field\":\"t\","
           "\"ours\":\"ours\"}",
           cid);
  assert_json(json_array_get(cf, 0), want);
  json_decref(cf);
  assert_int_equal(tt_replica_resolve(f->r, "c", "d", "t", NULL, T0), 0);
  assert_doc(f, "c", "d", "{}");
  json_t *ints = fx_intents(f);
  json_t *op = json_array_get(json_object_get(json_array_get(ints, 0), "ops"),
                              0);
  assert_true(json_is_true(json_object_get(op, "unset")));
  assert_string_equal(json_string_value(json_object_get(op, "conflict")), cid);
  tt_intent in = {0};
  fx_intent_ok(json_array_get(ints, 0), &in);
  assert_int_equal(in.ops[0].kind, TT_OP_RESOLVE);
  assert_true(in.ops[0].resolve_unset);
  tt_intent_clear(&in);
  json_decref(ints);
}

static void test_pull_errors_change_nothing(void **state) {
  fx *f = *state;
  fx_pull(f, 1, 0,
          "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":1,"
          "\"set\":{\"t\":1}}]");
  assert_int_equal(fx_set(f, "c", "b", "t", "2"), 0);
  char *before = snapshot(f);
  int more = 9;
  size_t n = 9;
  json_t *e = J("{\"v\":1,\"error\":\"cursor\",\"message\":\"ahead\"}");
  assert_int_equal(tt_replica_pull_done(f->r, 400, e, &more, &n),
                   TETHER_EPROTO);
  assert_non_null(strstr(tt_replica_last_error(f->r), "cursor"));
  assert_true(tt_replica_cursor_refused(f->r));
  assert_int_equal(more, 0);
  assert_int_equal(n, 0);
  json_decref(e);
  e = J("{\"v\":1,\"error\":\"unavailable\"}");
  assert_int_equal(tt_replica_pull_done(f->r, 503, e, &more, &n),
                   TETHER_ESERVER);
  assert_false(tt_replica_cursor_refused(f->r));
  json_decref(e);
  static const char *bad[] = {
      "{\"v\":1,\"cursor\":[5],\"more\":false,\"changes\":[{\"coll\":\"c\","
      "\"id\":\"a\",\"p\":0,\"version\":5,\"set\":{\"t\":9}},{\"coll\":\"c\","
      "\"id\":\"\",\"p\":0,\"version\":5}]}",
      "{\"v\":1,\"cursor\":[-1],\"changes\":[]}",
      "{\"v\":1,\"cursor\":[5],\"changes\":[{\"coll\":\"c\",\"id\":\"a\","
      "\"p\":0,\"version\":5,\"set\":[1]}]}",
      "{\"v\":1,\"cursor\":[5],\"changes\":[{\"coll\":\"c\",\"id\":\"a\","
      "\"p\":0,\"version\":5,\"unset\":[1]}]}",
      "{\"v\":1,\"cursor\":[5],\"changes\":[{\"coll\":\"c\",\"id\":\"a\","
      "\"p\":0,\"set\":{}}]}",
      "{\"v\":1,\"changes\":[]}",
      "{\"v\":1,\"cursor\":[5],\"more\":1,\"changes\":[]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    e = J(bad[i]);
    assert_int_equal(tt_replica_pull_done(f->r, 200, e, &more, &n),
                     TETHER_EPROTO);
    json_decref(e);
  }
  char *after = snapshot(f);
  assert_string_equal(before, after);
  free(before);
  free(after);
}

/* {"outcome":"duplicate","duplicate":true}: the server applied the intent
 * once and forgot its outcome. For an intent still in our outbox that is
 * its acknowledgement: it must leave the outbox (else it is re-pushed
 * forever) and the app is told "duplicate". */
static void test_forgotten_duplicate_acks(void **state) {
  fx *f = *state;
  fx_pull(f, 1, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":1,"
          "\"set\":{\"n\":1}}]");
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A\""), 0);
  assert_int_equal(fx_op(f, "c", "x", TT_OP_INCR, "n", "2"), 0);
  json_t *v = J("\"B\"");
  assert_int_equal(
      tt_replica_write(f->r, "c", "b", TT_OP_SET, "t", v, "lbl", T0), 0);
  json_decref(v);
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, J("{\"seq\":1,\"outcome\":\"duplicate\","
                                "\"duplicate\":true}"));
  json_array_append_new(outs, fx_outcome(2, "applied", 5));
  json_array_append_new(outs, J("{\"seq\":3,\"outcome\":\"duplicate\","
                                "\"duplicate\":true}"));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  fx_reopen(f);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  json_t *none = NULL;
  assert_int_equal(tt_replica_push_request(f->r, 0, &none), TETHER_ENOTFOUND);
  /* Delivered again: nothing left to change. */
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);

  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 3);
  assert_json(json_array_get(o, 0),
              "{\"seq\":1,\"coll\":\"c\",\"id\":\"a\","
              "\"outcome\":\"duplicate\"}");
  assert_json(json_array_get(o, 1),
              "{\"seq\":2,\"coll\":\"c\",\"id\":\"x\",\"outcome\":\"applied\"}");
  assert_json(json_array_get(o, 2),
              "{\"seq\":3,\"coll\":\"c\",\"id\":\"b\",\"label\":\"lbl\","
              "\"outcome\":\"duplicate\"}");
  json_decref(o);
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.rejected, 0);
  assert_int_equal(st.pending_intents, 0);
  /* Their effect comes with the next pull. */
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  fx_pull(f, 6, 0,
          "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":3,"
          "\"set\":{\"t\":\"A\"}},"
          "{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":4,"
          "\"set\":{\"t\":\"B\"}},"
          "{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":5,"
          "\"set\":{\"n\":3}}]");
  assert_doc(f, "c", "a", "{\"t\":\"A\"}");
  assert_doc(f, "c", "b", "{\"t\":\"B\"}");
  assert_doc(f, "c", "x", "{\"n\":3}");
  assert_int_equal(fx_status(f, "c", "x"), TETHER_SYNCED);
  /* "duplicate" without "duplicate": true is no outcome at all. */
  assert_int_equal(fx_set(f, "c", "a", "t", "\"A2\""), 0);
  req = fx_push_req(f, 0);
  outs = json_array();
  json_array_append_new(outs, J("{\"seq\":4,\"outcome\":\"duplicate\"}"));
  resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), TETHER_EPROTO);
  assert_int_equal(tt_replica_outbox_len(f->r), 1);
  json_decref(req);
  json_decref(resp);
}

/* Two pulls of one replica running side by side (two processes): the
 * slower one's older changes must not overwrite what the newer one
 * stored. */
static void test_older_change_skipped(void **state) {
  fx *f = *state;
  fx_pull(f, 10, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":10,"
          "\"set\":{\"a\":2,\"b\":2}},"
          "{\"coll\":\"c\",\"id\":\"y\",\"p\":0,\"version\":9,"
          "\"deleted\":true},"
          "{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":8,"
          "\"set\":{\"a\":1}}]");
  /* A pending write on d: the page is applied under the view too. */
  assert_int_equal(fx_set(f, "c", "d", "m", "1"), 0);
  fx_pull(f, 7, 0,
          "[{\"coll\":\"c\",\"id\":\"y\",\"p\":0,\"version\":5,"
          "\"set\":{\"c\":1}},"
          "{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":6,"
          "\"set\":{\"a\":1},\"unset\":[\"b\"]},"
          "{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":7,"
          "\"set\":{\"a\":0}},"
          "{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":4,"
          "\"deleted\":true},"
          "{\"coll\":\"c\",\"id\":\"w\",\"p\":0,\"version\":3,"
          "\"set\":{\"k\":1}}]");
  assert_doc(f, "c", "x", "{\"a\":2,\"b\":2}");
  assert_doc(f, "c", "y", "absent");
  assert_doc(f, "c", "d", "{\"a\":1,\"m\":1}");
  assert_doc(f, "c", "w", "{\"k\":1}"); /* new to us: taken */
  /* Same or newer versions still apply. */
  fx_pull(f, 11, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":10,"
          "\"set\":{\"a\":2,\"b\":2}},"
          "{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":11,"
          "\"set\":{\"a\":3}},"
          "{\"coll\":\"c\",\"id\":\"y\",\"p\":0,\"version\":11,"
          "\"set\":{\"c\":2}}]");
  assert_doc(f, "c", "x", "{\"a\":3,\"b\":2}");
  assert_doc(f, "c", "y", "{\"c\":2}");
}

/* 400 cursor: the server does not know our cursor (its data was reset or
 * restored; or we are older than its retention horizon, G7). The answer
 * changes nothing; tt_replica_rebootstrap then forgets the confirmed
 * state in one transaction, keeping every unacknowledged intent, and the
 * pull from [] brings the server's state back under them. */
static void test_rebootstrap(void **state) {
  fx *f = *state;
  fx_pull(f, 5, 0,
          "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":2,"
          "\"set\":{\"t\":\"a\"}},"
          "{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":3,"
          "\"set\":{\"t\":\"b\",\"n\":1}},"
          "{\"coll\":\"c\",\"id\":\"gone\",\"p\":0,\"version\":4,"
          "\"set\":{\"t\":\"g\"}}]");
  /* seq 1: acknowledged at commit 6, not pulled yet. */
  assert_int_equal(fx_set(f, "c", "b", "u", "1"), 0);
  fx_push_all_applied(f, 5);
  /* seqs 2 and 3: not acknowledged. */
  assert_int_equal(fx_op(f, "c", "b", TT_OP_INCR, "n", "5"), 0);
  assert_int_equal(fx_set(f, "c", "x", "t", "\"new\""), 0);
  assert_doc(f, "c", "b", "{\"n\":6,\"t\":\"b\",\"u\":1}");
  /* Paging: a first page leaves a resume position. */
  json_t *p1 = J("{\"v\":1,\"cursor\":[5],\"more\":true,\"resume\":[5],"
                 "\"changes\":[]}");
  int more = 9;
  size_t n = 9;
  assert_int_equal(tt_replica_pull_done(f->r, 200, p1, &more, &n), 0);
  json_decref(p1);
  json_t *req = NULL;
  assert_int_equal(tt_replica_pull_request(f->r, 0, 0, &req), 0);
  assert_non_null(json_object_get(req, "resume"));
  json_decref(req);

  /* Like any refused answer, it only drops the paging position. */
  char *text = snapshot(f);
  json_t *bj = J(text);
  free(text);
  json_object_del(json_object_get(bj, "pull"), "resume");
  char *before = tt_canon(bj);
  json_decref(bj);
  json_t *e = J("{\"v\":1,\"error\":\"cursor\",\"message\":\"ahead\"}");
  assert_int_equal(tt_replica_pull_done(f->r, 400, e, &more, &n),
                   TETHER_EPROTO);
  json_decref(e);
  assert_int_equal(more, 0);
  assert_int_equal(n, 0);
  assert_true(tt_replica_cursor_refused(f->r));
  assert_non_null(strstr(tt_replica_last_error(f->r), "cursor"));
  char *after = snapshot(f);
  assert_string_equal(before, after);
  free(before);
  free(after);

  assert_int_equal(tt_replica_batch_begin(f->r), 0);
  assert_int_equal(tt_replica_rebootstrap(f->r), TETHER_EBUSY);
  tt_replica_batch_abort(f->r);
  assert_int_equal(tt_replica_rebootstrap(f->r), 0);
  assert_false(tt_replica_cursor_refused(f->r));
  fx_reopen(f); /* durable */
  assert_int_equal(tt_replica_pull_request(f->r, 0, 0, &req), 0);
  assert_json(json_object_get(req, "cursor"), "[]");
  assert_null(json_object_get(req, "resume"));
  json_decref(req);
  /* Confirmed documents are gone; the view is the unacknowledged
   * intents replayed on nothing. */
  assert_doc(f, "c", "a", "absent");
  assert_doc(f, "c", "gone", "absent");
  assert_doc(f, "c", "b", "{\"n\":5}");
  assert_doc(f, "c", "x", "{\"t\":\"new\"}");
  assert_int_equal(fx_status(f, "c", "b"), TETHER_PENDING);
  assert_int_equal(tt_replica_outbox_len(f->r), 2);
  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 2);
  assert_int_equal(seq_of(json_array_get(ints, 0)), 2);
  assert_int_equal(seq_of(json_array_get(ints, 1)), 3);
  json_decref(ints);
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, 2);
  assert_int_equal(st.pending_intents, 2);

  /* The bootstrap page from the restored server: it has a and b (with
   * our seq 1), not "gone". */
  fx_pull(f, 3, 0,
          "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":1,"
          "\"set\":{\"t\":\"a2\"}},"
          "{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":2,"
          "\"set\":{\"t\":\"b\",\"n\":1,\"u\":1}}]");
  assert_doc(f, "c", "a", "{\"t\":\"a2\"}");
  assert_doc(f, "c", "b", "{\"n\":6,\"t\":\"b\",\"u\":1}");
  assert_doc(f, "c", "gone", "absent");
  assert_doc(f, "c", "x", "{\"t\":\"new\"}");
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_PENDING);
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, 3);
  /* The intents go on from where they were. */
  fx_push_all_applied(f, 1); /* commits 3 and 4 */
  fx_pull(f, 4, 0,
          "[{\"coll\":\"c\",\"id\":\"b\",\"p\":0,\"version\":3,"
          "\"set\":{\"n\":6}},"
          "{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":4,"
          "\"set\":{\"t\":\"new\"}}]");
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  assert_doc(f, "c", "b", "{\"n\":6,\"t\":\"b\",\"u\":1}");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Initial sync of 100,000 documents in pages of 5,000, then pushing
 * 100,000 intents. Rates are printed; the asserts are loose so a loaded
 * machine or a sanitizer build still passes. */
static void test_bulk_rates(void **state) {
  fx *f = *state;
  const int total = 100000, page = 5000;
  double applied = 0;
  for (int p = 0; p < total / page; p++) {
    json_t *changes = json_array();
    for (int i = 0; i < page; i++) {
      int k = p * page + i;
      char id[16];
      snprintf(id, sizeof id, "doc%06d", k);
      json_array_append_new(
          changes,
          json_pack("{s:s,s:s,s:i,s:i,s:{s:s,s:i,s:b}}", "coll", "items", "id",
                    id, "p", 0, "version", k + 1, "set", "title",
                    "some title text", "n", k, "done", 0));
    }
    json_t *resp = json_pack("{s:i,s:[i],s:b,s:o}", "v", 1, "cursor",
                             (p + 1) * page, "more", p + 1 < total / page,
                             "changes", changes);
    int more;
    size_t n;
    double t0 = now_s();
    assert_int_equal(tt_replica_pull_done(f->r, 200, resp, &more, &n), 0);
    applied += now_s() - t0;
    assert_int_equal(n, page);
    json_decref(resp);
  }
  print_message("pull_done: %d changes in %.3f s = %.0f changes/s\n", total,
                applied, total / applied);
  assert_true(total / applied > 20000);
  assert_doc(f, "items", "doc099999",
             "{\"title\":\"some title text\",\"n\":99999,\"done\":false}");

  json_t *v = J("1");
  double t0 = now_s();
  for (int i = 0; i < total; i++) {
    char id[16];
    snprintf(id, sizeof id, "doc%06d", i);
    assert_int_equal(tt_replica_write(f->r, "items", id, TT_OP_INCR, "n", v,
                                      NULL, T0 + (uint64_t)i),
                     0);
  }
  double wt = now_s() - t0;
  json_decref(v);
  print_message("writes: %d in %.3f s = %.0f/s (no fsync)\n", total, wt,
                total / wt);
  double pt = 0;
  uint64_t done = 0;
  for (;;) {
    json_t *req = NULL;
    double a = now_s();
    int rc = tt_replica_push_request(f->r, 10000, &req);
    if (rc == TETHER_ENOTFOUND) break;
    assert_int_equal(rc, 0);
    pt += now_s() - a;
    json_t *ints = json_object_get(req, "intents");
    json_t *outs = json_array();
    for (size_t i = 0; i < json_array_size(ints); i++) {
      uint64_t s = seq_of(json_array_get(ints, i));
      json_array_append_new(outs, fx_outcome(s, "applied", 200000 + s));
    }
    json_t *resp = fx_push_resp(outs);
    a = now_s();
    assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
    pt += now_s() - a;
    done += json_array_size(ints);
    json_decref(req);
    json_decref(resp);
  }
  assert_int_equal(done, total);
  print_message("push: %d intents built+acknowledged in %.3f s = %.0f/s\n",
                total, pt, total / pt);
  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), total);
  json_decref(o);
  assert_doc(f, "items", "doc000007",
             "{\"title\":\"some title text\",\"n\":8,\"done\":false}");
  /* One empty page moves the cursor over every commit: all swept. */
  fx_pull(f, 400000, 0, "[]");
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, total);
  assert_int_equal(st.pending_intents, 0);
  assert_int_equal(fx_status(f, "items", "doc000007"), TETHER_SYNCED);
  /* Confirmed state (without the never-pulled increments) shows again. */
  assert_doc(f, "items", "doc000007",
             "{\"title\":\"some title text\",\"n\":7,\"done\":false}");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_push_batching, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_push_outcomes, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_take_outcomes_stops, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_rejected_keeps_later_pending,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_push_errors_change_nothing,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_pull_applies_and_rebases, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_page_version_covers_intent,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rejected_incr_on_string, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_resolve, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_resolve_unset, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_pull_errors_change_nothing,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_forgotten_duplicate_acks,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_older_change_skipped, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebootstrap, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_bulk_rates, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
