/* replica_pushbody.c — the push request as spliced wire text
 * (tt_replica_push_body), its acknowledgement by seq range
 * (tt_replica_push_done_range), and the pull request for the next page
 * built from an answer before it is applied (tt_replica_pull_next_request). */
#include "replica/internal.h"
#include "replica_fixture.h"

static uint64_t seq_of(const json_t *intent) {
  return (uint64_t)json_integer_value(json_object_get(intent, "seq"));
}

static void fx_hex(char hex[33]) { tt_hex_encode(FX_ID, TT_ID_LEN, hex); }

/* N local writes on N distinct documents (one with a label). */
static void writes(fx *f, int n) {
  for (int i = 0; i < n; i++) {
    char id[16];
    snprintf(id, sizeof id, "d%d", i);
    if (i == 1) {
      json_t *v = J("\"lab\"");
      assert_int_equal(tt_replica_write(f->r, "c", id, TT_OP_SET, "t", v,
                                        "lbl", fx_now++),
                       0);
      json_decref(v);
    } else {
      assert_int_equal(fx_set(f, "c", id, "i", "1"), 0);
    }
  }
}

/* Push body that must succeed; checks the shape every body has. */
static tt_push_body body(fx *f, size_t max, uint64_t from) {
  tt_push_body b;
  memset(&b, 0x5a, sizeof b);
  int rc = tt_replica_push_body(f->r, max, from, 0, &b);
  if (rc) print_error("push_body: %s\n", tether_strerror(rc));
  assert_int_equal(rc, 0);
  assert_non_null(b.text);
  assert_int_equal(b.len, strlen(b.text));
  assert_true(b.n > 0);
  assert_true(b.lo >= 1);
  assert_int_equal(b.hi - b.lo + 1, b.n);
  return b;
}

/* Parses B's text and checks it is {"v":1,"replica":hex,"seen":N,
 * "intents":[...]} with N below lo (the outcomes recorded so far) and the
 * intents seq lo..hi in order, each well-formed. New reference. */
static json_t *body_json(const tt_push_body *b) {
  json_error_t e;
  json_t *j = json_loadb(b->text, b->len, 0, &e);
  if (!j) print_error("push body does not parse: %s: %s\n", e.text, b->text);
  assert_non_null(j);
  assert_true(json_is_object(j));
  assert_int_equal(json_object_size(j), 4);
  json_t *seen = json_object_get(j, "seen");
  assert_true(json_is_integer(seen));
  assert_true(json_integer_value(seen) >= 0);
  assert_true((uint64_t)json_integer_value(seen) < b->lo);
  json_t *v = json_object_get(j, "v");
  assert_true(json_is_integer(v));
  assert_int_equal(json_integer_value(v), 1);
  char hex[33];
  fx_hex(hex);
  assert_non_null(json_string_value(json_object_get(j, "replica")));
  assert_string_equal(json_string_value(json_object_get(j, "replica")), hex);
  json_t *ints = json_object_get(j, "intents");
  assert_true(json_is_array(ints));
  assert_int_equal(json_array_size(ints), b->n);
  for (size_t i = 0; i < b->n; i++) {
    json_t *in = json_array_get(ints, i);
    assert_true(json_is_object(in));
    assert_int_equal(seq_of(in), b->lo + i);
    tt_intent ti = {0};
    fx_intent_ok(in, &ti);
    assert_int_equal(ti.seq, b->lo + i);
    tt_intent_clear(&ti);
  }
  return j;
}

static void expect_no_body(fx *f, size_t max, uint64_t from, int want) {
  tt_push_body b;
  memset(&b, 0x5a, sizeof b);
  assert_int_equal(tt_replica_push_body(f->r, max, from, 0, &b), want);
  assert_null(b.text);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.n, 0);
  assert_int_equal(b.lo, 0);
  assert_int_equal(b.hi, 0);
  tt_push_body_clear(&b); /* harmless on an empty body */
}

/* A 200 push answer: "applied" at commit 100+seq for every seq LO..HI. */
static json_t *applied_resp(uint64_t lo, uint64_t hi) {
  json_t *outs = json_array();
  for (uint64_t s = lo; s <= hi; s++)
    json_array_append_new(outs, fx_outcome(s, "applied", 100 + s));
  return fx_push_resp(outs);
}

/* Everything a push_done / push_done_range may change, as text. */
static char *push_state(fx *f) {
  json_t *s = json_object();
  tt_push_body b;
  int rc = tt_replica_push_body(f->r, 0, 0, 0, &b);
  json_object_set_new(s, "rc", json_integer(rc));
  json_object_set_new(s, "body", json_string(rc ? "" : b.text));
  tt_push_body_clear(&b);
  json_object_set_new(s, "len",
                      json_integer((json_int_t)tt_replica_outbox_len(f->r)));
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  json_object_set_new(s, "pending", json_integer((json_int_t)st.pending_intents));
  json_object_set_new(s, "rejected", json_integer((json_int_t)st.rejected));
  json_object_set_new(s, "d0", json_integer(fx_status(f, "c", "d0")));
  char *text = tt_canon(s);
  json_decref(s);
  return text;
}

/* ---- push_body ---------------------------------------------------------- */

static void test_body_empty_then_all(void **state) {
  fx *f = *state;
  expect_no_body(f, 0, 0, TETHER_ENOTFOUND);
  expect_no_body(f, 5, 1, TETHER_ENOTFOUND);
  assert_int_equal(tt_replica_push_body(f->r, 0, 0, 0, NULL), TETHER_EINVAL);

  const int K = 5;
  writes(f, K);
  tt_push_body b = body(f, 0, 0);
  assert_int_equal(b.n, K);
  assert_int_equal(b.lo, 1);
  assert_int_equal(b.hi, K);
  json_t *j = body_json(&b);
  /* The labelled write (seq 2) carries its label on the wire; the
   * others carry none. */
  json_t *ji = json_object_get(j, "intents");
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(ji, 1), "label")),
      "lbl");
  assert_null(json_object_get(json_array_get(ji, 0), "label"));

  /* The tree variant is the same request. */
  json_t *req = fx_push_req(f, 0);
  assert_true(json_equal(j, req));
  json_decref(req);

  /* Building it is a pure read: the same text again, the outbox as it
   * was, and again after a reopen. */
  tt_push_body b2 = body(f, 0, 0);
  assert_string_equal(b.text, b2.text);
  tt_push_body_clear(&b2);
  assert_int_equal(tt_replica_outbox_len(f->r), K);
  fx_reopen(f);
  b2 = body(f, 0, 0);
  assert_string_equal(b.text, b2.text);
  assert_int_equal(b2.lo, 1);
  assert_int_equal(b2.hi, K);
  tt_push_body_clear(&b2);

  tt_push_body_clear(&b);
  assert_null(b.text);
  assert_int_equal(b.n, 0);
  tt_push_body_clear(NULL);
  json_decref(j);
}

static void test_body_max_and_from(void **state) {
  fx *f = *state;
  writes(f, 7);
  json_t *all = fx_intents(f);
  assert_int_equal(json_array_size(all), 7);

  /* max_intents caps the batch, from the first unacknowledged seq. */
  tt_push_body b = body(f, 3, 0);
  assert_int_equal(b.n, 3);
  assert_int_equal(b.lo, 1);
  assert_int_equal(b.hi, 3);
  json_t *j = body_json(&b);
  json_t *req = fx_push_req(f, 3);
  assert_true(json_equal(j, req));
  json_decref(req);
  json_decref(j);
  tt_push_body_clear(&b);

  /* from 1 (= the first unacked) is the default start. */
  b = body(f, 3, 1);
  assert_int_equal(b.lo, 1);
  assert_int_equal(b.hi, 3);
  tt_push_body_clear(&b);

  /* A later from starts there; each intent is the one push_request
   * carries for that seq. */
  b = body(f, 2, 4);
  assert_int_equal(b.n, 2);
  assert_int_equal(b.lo, 4);
  assert_int_equal(b.hi, 5);
  j = body_json(&b);
  for (size_t i = 0; i < 2; i++)
    assert_true(json_equal(json_array_get(json_object_get(j, "intents"), i),
                           json_array_get(all, 3 + i)));
  json_decref(j);
  tt_push_body_clear(&b);

  b = body(f, 0, 4);
  assert_int_equal(b.n, 4);
  assert_int_equal(b.lo, 4);
  assert_int_equal(b.hi, 7);
  j = body_json(&b);
  json_decref(j);
  tt_push_body_clear(&b);

  b = body(f, 0, 7);
  assert_int_equal(b.n, 1);
  assert_int_equal(b.lo, 7);
  assert_int_equal(b.hi, 7);
  tt_push_body_clear(&b);

  /* Past the last seq: nothing left from there. */
  expect_no_body(f, 0, 8, TETHER_ENOTFOUND);
  expect_no_body(f, 3, 1000, TETHER_ENOTFOUND);
  expect_no_body(f, 0, UINT64_MAX, TETHER_ENOTFOUND);
  assert_int_equal(tt_replica_outbox_len(f->r), 7);
  json_decref(all);
}

/* Only durably committed intents leave: an open batch's writes are not in
 * the body (nor in the tree variant). */
static void test_body_skips_open_batch(void **state) {
  fx *f = *state;
  writes(f, 2);
  assert_int_equal(tt_replica_batch_begin(f->r), 0);
  assert_int_equal(fx_set(f, "c", "z", "i", "1"), 0);
  tt_push_body b = body(f, 0, 0);
  assert_int_equal(b.n, 2);
  assert_int_equal(b.hi, 2);
  tt_push_body_clear(&b);
  expect_no_body(f, 0, 3, TETHER_ENOTFOUND);
  assert_int_equal(tt_replica_batch_commit(f->r), 0);
  b = body(f, 0, 3);
  assert_int_equal(b.lo, 3);
  assert_int_equal(b.hi, 3);
  tt_push_body_clear(&b);
}

/* ---- damaged outbox records --------------------------------------------- */

/* A copy of the raw OUTBOX record of SEQ. */
static uint8_t *raw_get(fx *f, uint64_t seq, size_t *len) {
  tt_txn *t = NULL;
  uint8_t sk[8];
  tt_bytes v;
  tt_r_seqkey(sk, seq);
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v), 0);
  uint8_t *c = malloc(v.len ? v.len : 1);
  assert_non_null(c);
  memcpy(c, v.data, v.len);
  *len = v.len;
  tt_abort(t);
  return c;
}

/* Overwrites (or with DATA NULL deletes) the raw OUTBOX record of SEQ. */
static void raw_put(fx *f, uint64_t seq, const void *data, size_t len) {
  tt_txn *t = NULL;
  uint8_t sk[8];
  tt_r_seqkey(sk, seq);
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  if (data)
    assert_int_equal(
        tt_put(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, (tt_bytes){data, len}),
        0);
  else
    assert_int_equal(tt_del(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}), 0);
  assert_int_equal(tt_commit(t), 0);
}

/* ORIG (a valid record) with its intent JSON replaced by JSON[0..JLEN). */
static uint8_t *with_json(const uint8_t *orig, size_t olen, const char *json,
                          size_t jlen, size_t *len) {
  tt_robx o;
  assert_int_equal(tt_r_obx_decode((tt_bytes){orig, olen}, &o), 0);
  o.json = json;
  o.json_len = jlen;
  uint8_t *buf = NULL;
  assert_int_equal(tt_r_obx_encode(&o, &buf, len), 0);
  return buf;
}

static void expect_corrupt(fx *f, size_t max, uint64_t from) {
  expect_no_body(f, max, from, TETHER_ECORRUPT);
  if (from == 0) {
    json_t *req = (json_t *)1;
    assert_int_equal(tt_replica_push_request(f->r, max, &req),
                     TETHER_ECORRUPT);
    assert_null(req);
  }
}

static void test_body_damaged_record(void **state) {
  fx *f = *state;
  writes(f, 3);
  tt_push_body good = body(f, 0, 0);
  size_t olen;
  uint8_t *orig = raw_get(f, 2, &olen);

  /* Intent text that is not an object, or carries a NUL: never sent. */
  static const struct {
    const char *json;
    size_t len;
  } bad_json[] = {
      {"[1,2,3]", 7}, {"null", 4}, {"x", 1}, {"{", 1},
      {"{\"seq\":2\0}", 10}, {"\"{}\"", 4},
  };
  for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
    size_t dl;
    uint8_t *d = with_json(orig, olen, bad_json[i].json, bad_json[i].len, &dl);
    raw_put(f, 2, d, dl);
    free(d);
    /* Any request that would carry seq 2 fails whole: no partial body. */
    expect_corrupt(f, 0, 0);
    expect_corrupt(f, 2, 0);
    expect_corrupt(f, 0, 2);
    /* Requests that do not reach seq 2 are still built. */
    tt_push_body b = body(f, 1, 0);
    assert_int_equal(b.lo, 1);
    assert_int_equal(b.hi, 1);
    tt_push_body_clear(&b);
    b = body(f, 0, 3);
    assert_int_equal(b.lo, 3);
    assert_int_equal(b.hi, 3);
    tt_push_body_clear(&b);
  }

  /* Object-shaped but not JSON: the tree variant still refuses it. */
  static const char half[] = "{\"seq\":2,oops}";
  size_t dl;
  uint8_t *d = with_json(orig, olen, half, sizeof half - 1, &dl);
  raw_put(f, 2, d, dl);
  free(d);
  json_t *req = (json_t *)1;
  assert_int_equal(tt_replica_push_request(f->r, 0, &req), TETHER_ECORRUPT);
  assert_null(req);

  /* A record that does not decode at all. */
  static const uint8_t junk[] = {'g', 'a', 'r', 'b', 'a', 'g', 'e'};
  raw_put(f, 2, junk, sizeof junk);
  expect_corrupt(f, 0, 0);
  /* A bad state byte in an otherwise intact record. */
  uint8_t *st = malloc(olen);
  assert_non_null(st);
  memcpy(st, orig, olen);
  st[1] = 7;
  raw_put(f, 2, st, olen);
  free(st);
  expect_corrupt(f, 0, 0);
  expect_corrupt(f, 0, 2);

  /* Restored, the same request as before. */
  raw_put(f, 2, orig, olen);
  tt_push_body b = body(f, 0, 0);
  assert_string_equal(b.text, good.text);
  tt_push_body_clear(&b);

  /* The first unacknowledged record missing: corrupt, not an empty or a
   * shifted request. */
  size_t l1;
  uint8_t *r1 = raw_get(f, 1, &l1);
  raw_put(f, 1, NULL, 0);
  expect_corrupt(f, 0, 0);
  raw_put(f, 1, r1, l1);
  b = body(f, 0, 0);
  assert_string_equal(b.text, good.text);
  tt_push_body_clear(&b);

  assert_int_equal(tt_replica_outbox_len(f->r), 3);
  free(r1);
  free(orig);
  tt_push_body_clear(&good);
}

/* ---- push_done_range ---------------------------------------------------- */

static void test_done_range_acks_exactly(void **state) {
  fx *f = *state;
  writes(f, 6);
  tt_push_body b1 = body(f, 3, 0);
  assert_int_equal(b1.lo, 1);
  assert_int_equal(b1.hi, 3);
  /* Pipelined: the next request is built while the first is out. */
  tt_push_body b2 = body(f, 2, b1.hi + 1);
  assert_int_equal(b2.lo, 4);
  assert_int_equal(b2.hi, 5);

  /* Non-200 answers change nothing. */
  char *before = push_state(f);
  json_t *gap = J("{\"v\":1,\"error\":\"gap\",\"expected\":1,"
                  "\"message\":\"expected seq 1\"}");
  assert_int_equal(tt_replica_push_done_range(f->r, 1, 3, 409, gap),
                   TETHER_EGAP);
  assert_non_null(strstr(tt_replica_last_error(f->r), "expected seq 1"));
  json_decref(gap);
  json_t *inv = J("{\"v\":1,\"error\":\"invalid\",\"message\":\"no\"}");
  assert_int_equal(tt_replica_push_done_range(f->r, 1, 3, 400, inv),
                   TETHER_EREJECTED);
  json_decref(inv);
  /* Even a 5xx whose body looks like a full answer. */
  json_t *resp13 = applied_resp(1, 3);
  assert_int_equal(tt_replica_push_done_range(f->r, 1, 3, 503, resp13),
                   TETHER_ESERVER);
  assert_int_equal(tt_replica_push_done_range(f->r, 1, 3, 500, NULL),
                   TETHER_ESERVER);
  /* A range this replica cannot have sent. */
  assert_int_equal(tt_replica_push_done_range(f->r, 0, 3, 200, resp13),
                   TETHER_EINVAL);
  assert_int_equal(tt_replica_push_done_range(f->r, 0, 0, 200, resp13),
                   TETHER_EINVAL);
  assert_int_equal(tt_replica_push_done_range(f->r, 3, 2, 200, resp13),
                   TETHER_EINVAL);
  assert_int_equal(tt_replica_push_done_range(NULL, 1, 3, 200, resp13),
                   TETHER_EINVAL);
  char *after = push_state(f);
  assert_string_equal(before, after);
  free(before);
  free(after);

  /* The 200 answer to the first request: exactly 1..3 acknowledged. */
  assert_int_equal(tt_replica_push_done_range(f->r, b1.lo, b1.hi, 200, resp13),
                   0);
  assert_int_equal(tt_replica_outbox_len(f->r), 3);
  tt_push_body b = body(f, 0, 0);
  assert_int_equal(b.lo, b1.hi + 1);
  assert_int_equal(b.hi, 6);
  tt_push_body_clear(&b);
  /* Delivered again: nothing more changes. */
  before = push_state(f);
  assert_int_equal(tt_replica_push_done_range(f->r, 1, 3, 200, resp13), 0);
  after = push_state(f);
  assert_string_equal(before, after);
  free(before);
  free(after);
  json_decref(resp13);

  /* The answer to the second request also names seq 6, which that
   * request did not carry: 6 stays unacknowledged. */
  json_t *resp46 = applied_resp(4, 6);
  assert_int_equal(tt_replica_push_done_range(f->r, b2.lo, b2.hi, 200, resp46),
                   0);
  json_decref(resp46);
  assert_int_equal(tt_replica_outbox_len(f->r), 1);
  fx_reopen(f); /* durable */
  assert_int_equal(tt_replica_outbox_len(f->r), 1);
  b = body(f, 0, 0);
  assert_int_equal(b.lo, 6);
  assert_int_equal(b.hi, 6);
  assert_int_equal(b.n, 1);
  tt_push_body_clear(&b);

  json_t *o = fx_take_outcomes(f);
  assert_int_equal(json_array_size(o), 5);
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(seq_of(json_array_get(o, i)), i + 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(o, i), "outcome")),
        "applied");
  }
  json_decref(o);

  json_t *resp6 = applied_resp(6, 6);
  assert_int_equal(tt_replica_push_done_range(f->r, 6, 6, 200, resp6), 0);
  json_decref(resp6);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  expect_no_body(f, 0, 0, TETHER_ENOTFOUND);
  tt_push_body_clear(&b1);
  tt_push_body_clear(&b2);
}

/* A range answered with a rejection and an out-of-order outcome list: the
 * acknowledged prefix moves over both. */
static void test_done_range_rejected(void **state) {
  fx *f = *state;
  writes(f, 3);
  tt_push_body b = body(f, 0, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(3, "applied", 12));
  json_array_append_new(outs, json_pack("{s:i,s:s,s:s}", "seq", 2, "outcome",
                                        "rejected", "reason", "no way"));
  json_array_append_new(outs, fx_outcome(1, "applied", 11));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done_range(f->r, b.lo, b.hi, 200, resp), 0);
  assert_non_null(strstr(tt_replica_last_error(f->r), "no way"));
  json_decref(resp);
  tt_push_body_clear(&b);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  expect_no_body(f, 0, 0, TETHER_ENOTFOUND);
  assert_int_equal(fx_status(f, "c", "d1"), TETHER_REJECTED);
  assert_doc(f, "c", "d1", "absent");
  assert_int_equal(fx_status(f, "c", "d0"), TETHER_PENDING);
}

/* ---- pull_next_request -------------------------------------------------- */

static json_t *pull_req(fx *f, size_t limit) {
  json_t *req = NULL;
  assert_int_equal(tt_replica_pull_request(f->r, limit, 0, &req), 0);
  assert_non_null(req);
  return req;
}

static void apply_pull(fx *f, const json_t *resp, int want_more) {
  int more = -1;
  size_t n = 99;
  int rc = tt_replica_pull_done(f->r, 200, resp, &more, &n);
  if (rc) print_error("pull_done: %s\n", tt_replica_last_error(f->r));
  assert_int_equal(rc, 0);
  assert_int_equal(more, want_more);
}

static void test_next_no_more(void **state) {
  fx *f = *state;
  static const char *last[] = {
      "{\"v\":1,\"cursor\":[3],\"more\":false,\"changes\":[]}",
      "{\"v\":1,\"cursor\":[3],\"changes\":[]}",
      "{\"v\":1,\"cursor\":[3],\"more\":false,\"resume\":[3],\"changes\":[]}",
  };
  for (size_t i = 0; i < sizeof last / sizeof *last; i++) {
    json_t *resp = J(last[i]);
    json_t *req = (json_t *)1;
    assert_int_equal(tt_replica_pull_next_request(f->r, resp, 100, &req),
                     TETHER_ENOTFOUND);
    assert_null(req);
    json_decref(resp);
  }
}

static void test_next_request_matches_after_done(void **state) {
  fx *f = *state;
  char hex[33], want[256];
  fx_hex(hex);
  fx_pull(f, 2, 0,
          "[{\"coll\":\"c\",\"id\":\"x\",\"p\":0,\"version\":2,"
          "\"set\":{\"n\":1}}]");
  json_t *first = pull_req(f, 100);
  assert_json(json_object_get(first, "cursor"), "[2]");

  json_t *resp = J("{\"v\":1,\"cursor\":[7,2],\"more\":true,"
                   "\"resume\":[7,5],\"changes\":[{\"coll\":\"c\","
                   "\"id\":\"x\",\"p\":0,\"version\":7,\"set\":{\"n\":2}}]}");
  json_t *next = NULL;
  assert_int_equal(tt_replica_pull_next_request(f->r, resp, 100, &next), 0);
  assert_non_null(next);
  snprintf(want, sizeof want,
           "{\"v\":1,\"replica\":\"%s\",\"cursor\":[7,2],\"resume\":[7,5],"
           "\"limit\":100,\"wait_ms\":0}",
           hex);
  assert_json(next, want);
  /* Built from RESP alone: nothing applied yet. */
  json_t *still = pull_req(f, 100);
  assert_true(json_equal(first, still));
  json_decref(still);
  assert_doc(f, "c", "x", "{\"n\":1}");

  apply_pull(f, resp, 1);
  json_t *after = pull_req(f, 100);
  assert_true(json_equal(next, after));
  json_decref(after);
  json_decref(next);
  json_decref(resp);
  assert_doc(f, "c", "x", "{\"n\":2}");

  /* limit 0 asks for no limit; no resume in the answer, none in the
   * request. */
  resp = J("{\"v\":1,\"cursor\":[9,3],\"more\":true,\"changes\":[]}");
  assert_int_equal(tt_replica_pull_next_request(f->r, resp, 0, &next), 0);
  snprintf(want, sizeof want,
           "{\"v\":1,\"replica\":\"%s\",\"cursor\":[9,3],\"wait_ms\":0}", hex);
  assert_json(next, want);
  apply_pull(f, resp, 1);
  after = pull_req(f, 0);
  assert_true(json_equal(next, after));
  json_decref(after);
  json_decref(next);
  json_decref(resp);

  /* The last page: no next request, and the stored resume is gone. */
  resp = J("{\"v\":1,\"cursor\":[10,3],\"more\":false,\"changes\":[]}");
  next = (json_t *)1;
  assert_int_equal(tt_replica_pull_next_request(f->r, resp, 50, &next),
                   TETHER_ENOTFOUND);
  assert_null(next);
  apply_pull(f, resp, 0);
  json_decref(resp);
  after = pull_req(f, 50);
  snprintf(want, sizeof want,
           "{\"v\":1,\"replica\":\"%s\",\"cursor\":[10,3],\"limit\":50,"
           "\"wait_ms\":0}",
           hex);
  assert_json(after, want);
  json_decref(after);
  json_decref(first);
}

static void test_next_malformed_cursor(void **state) {
  fx *f = *state;
  fx_pull(f, 4, 0, "[]");
  json_t *before = pull_req(f, 10);
  static const char *bad[] = {
      "{\"v\":1,\"cursor\":\"7\",\"more\":true,\"changes\":[]}",
      "{\"v\":1,\"cursor\":[-1],\"more\":true,\"changes\":[]}",
      "{\"v\":1,\"cursor\":[5,-3],\"more\":true,\"resume\":[5],"
      "\"changes\":[]}",
      "{\"v\":1,\"cursor\":[1.5],\"more\":true,\"changes\":[]}",
      "{\"v\":1,\"cursor\":[\"5\"],\"more\":true,\"changes\":[]}",
      "{\"v\":1,\"cursor\":{\"0\":5},\"more\":true,\"changes\":[]}",
      "{\"v\":1,\"cursor\":null,\"more\":true,\"changes\":[]}",
      "{\"v\":1,\"more\":true,\"changes\":[]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    json_t *resp = J(bad[i]);
    json_t *req = (json_t *)1;
    int rc = tt_replica_pull_next_request(f->r, resp, 10, &req);
    if (rc != TETHER_EPROTO) print_error("case %zu: rc %d\n", i, rc);
    assert_int_equal(rc, TETHER_EPROTO);
    assert_null(req);
    /* pull_done refuses the same cursor, so the two agree. */
    int more = 9;
    size_t n = 9;
    assert_int_equal(tt_replica_pull_done(f->r, 200, resp, &more, &n),
                     TETHER_EPROTO);
    json_decref(resp);
  }
  json_t *now = pull_req(f, 10);
  assert_true(json_equal(before, now));
  json_decref(now);
  json_decref(before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_body_empty_then_all, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_body_max_and_from, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_body_skips_open_batch, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_body_damaged_record, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_done_range_acks_exactly, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_done_range_rejected, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_next_no_more, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_next_request_matches_after_done,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_next_malformed_cursor, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
