/* replica_ackidx.c — the acked index (replica/internal.h): a pull drops
 * exactly the acknowledged intents its cursor or its page covers, per
 * partition; drops and re-bootstraps keep the index in step with the
 * outbox; format 1 stores gain the index when opened. */
#include "replica/internal.h"
#include "replica_fixture.h"

typedef struct {
  size_t n;
  int bad;
  size_t records;
} idx_count;

static int count_cb(void *ctx, tt_bytes k, tt_bytes v) {
  idx_count *c = ctx;
  uint32_t p;
  uint64_t commit, seq;
  (void)v;
  if (tt_r_ackidx_parse(k, &p, &commit, &seq))
    c->n++;
  else if (k.len == 8)
    c->records++;
  else
    c->bad = 1;
  return 0;
}

static size_t idx_entries(fx *f) {
  tt_txn *t = NULL;
  idx_count c = {0, 0, 0};
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(
      tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){NULL, 0}, count_cb, &c), 0);
  tt_abort(t);
  assert_false(c.bad);
  return c.n;
}

/* Intents still in the outbox, acknowledged or not. */
static uint64_t pending(fx *f) {
  tt_txn *t = NULL;
  idx_count c = {0, 0, 0};
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(
      tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){NULL, 0}, count_cb, &c), 0);
  tt_abort(t);
  return c.records;
}

static json_t *outcome_p(uint64_t seq, uint32_t p, uint64_t commit) {
  json_t *o = json_pack("{s:I,s:s,s:I,s:I}", "seq", (json_int_t)seq,
                        "outcome", "applied", "p", (json_int_t)p, "commit",
                        (json_int_t)commit);
  assert_non_null(o);
  return o;
}

/* A 200 pull answer with cursor CUR (JSON array text). */
static void pull_cur(fx *f, const char *cur, const char *changes) {
  json_t *resp = json_pack("{s:i,s:o,s:b,s:o}", "v", 1, "cursor", J(cur),
                           "more", 0, "changes", J(changes));
  assert_non_null(resp);
  int rc = tt_replica_pull_done(f->r, 200, resp, NULL, NULL);
  if (rc) print_error("pull_done: %s\n", tt_replica_last_error(f->r));
  assert_int_equal(rc, 0);
  json_decref(resp);
}

/* Four intents on a, b, c, d acknowledged at (p0,5) (p1,3) (p1,7) (p2,1). */
static void four_acked(fx *f) {
  const char *ids[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; i++)
    assert_int_equal(fx_set(f, "c", ids[i], "v", "1"), 0);
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, outcome_p(1, 0, 5));
  json_array_append_new(outs, outcome_p(2, 1, 3));
  json_array_append_new(outs, outcome_p(3, 1, 7));
  json_array_append_new(outs, outcome_p(4, 2, 1));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);
}

static void test_partitions(void **state) {
  fx *f = *state;
  assert_int_equal(idx_entries(f), 0);
  four_acked(f);
  assert_int_equal(idx_entries(f), 4);
  assert_int_equal(pending(f), 4);
  assert_int_equal(tt_replica_outbox_len(f->r), 0); /* none unacked */

  /* Partition 0 up to 5 and partition 1 up to 3: a and b only. Partition
   * 2 is not in the cursor at all. */
  pull_cur(f, "[5,3]", "[]");
  assert_int_equal(fx_status(f, "c", "a"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "c"), TETHER_PENDING);
  assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
  assert_int_equal(pending(f), 2);
  assert_int_equal(idx_entries(f), 2);

  /* c arrives at version 7 in partition 1 although the cursor stops at 4;
   * d arriving in the wrong partition does not cover it. */
  pull_cur(f, "[5,4,0]",
           "[{\"coll\":\"c\",\"id\":\"c\",\"p\":1,\"version\":7,"
           "\"set\":{\"v\":1}},"
           "{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":9,"
           "\"set\":{\"v\":1}}]");
  assert_int_equal(fx_status(f, "c", "c"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
  assert_int_equal(idx_entries(f), 1);

  fx_reopen(f);
  pull_cur(f, "[5,7,1]", "[]");
  assert_int_equal(fx_status(f, "c", "d"), TETHER_SYNCED);
  assert_int_equal(pending(f), 0);
  assert_int_equal(idx_entries(f), 0);
}

/* An acknowledged intent past an unacknowledged one waits, as before the
 * index, until the acknowledged prefix reaches it. */
static void test_beyond_acked_prefix_waits(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "v", "1"), 0);
  assert_int_equal(fx_set(f, "c", "b", "v", "1"), 0);
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_array_append_new(outs, outcome_p(2, 0, 4));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(resp);
  assert_int_equal(idx_entries(f), 1);
  pull_cur(f, "[10]", "[]");
  assert_int_equal(fx_status(f, "c", "b"), TETHER_PENDING);
  assert_int_equal(idx_entries(f), 1);
  outs = json_array();
  json_array_append_new(outs, outcome_p(1, 0, 11));
  resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(resp);
  json_decref(req);
  pull_cur(f, "[11]", "[]");
  assert_int_equal(pending(f), 0);
  assert_int_equal(idx_entries(f), 0);
}

static void test_rebootstrap_clears_index(void **state) {
  fx *f = *state;
  four_acked(f);
  assert_int_equal(fx_set(f, "c", "e", "v", "1"), 0); /* unacknowledged */
  assert_int_equal(tt_replica_rebootstrap(f->r), 0);
  assert_int_equal(idx_entries(f), 0);
  assert_int_equal(pending(f), 1);
}

typedef struct {
  uint8_t keys[8][TT_R_ACKIDX_LEN];
  size_t n;
} idx_keys;

static int keys_cb(void *ctx, tt_bytes k, tt_bytes v) {
  idx_keys *c = ctx;
  (void)v;
  if (k.len == TT_R_ACKIDX_LEN && c->n < 8) memcpy(c->keys[c->n++], k.data, k.len);
  return 0;
}

/* A store written before the index (format 1) is indexed when opened. */
static void test_migrates_format_1(void **state) {
  fx *f = *state;
  four_acked(f);
  tt_txn *t = NULL;
  idx_keys ks = {.n = 0};
  uint8_t fmt[4];
  tt_be32_put(fmt, 1);
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  assert_int_equal(
      tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){NULL, 0}, keys_cb, &ks), 0);
  assert_int_equal(ks.n, 4);
  for (size_t i = 0; i < ks.n; i++)
    assert_int_equal(
        tt_del(t, TT_TABLE_OUTBOX, (tt_bytes){ks.keys[i], TT_R_ACKIDX_LEN}),
        0);
  assert_int_equal(
      tt_put(t, TT_TABLE_META, (tt_bytes){"format", 6}, (tt_bytes){fmt, 4}),
      0);
  assert_int_equal(tt_commit(t), 0);
  assert_int_equal(idx_entries(f), 0);

  fx_reopen(f);
  assert_int_equal(idx_entries(f), 4);
  tt_bytes v;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_META, (tt_bytes){"format", 6}, &v), 0);
  assert_int_equal(v.len, 4);
  assert_int_equal(tt_be32_get(v.data), TT_R_FORMAT);
  tt_abort(t);
  pull_cur(f, "[5,7,1]", "[]");
  assert_int_equal(pending(f), 0);
  assert_int_equal(idx_entries(f), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_partitions, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_beyond_acked_prefix_waits,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebootstrap_clears_index, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_migrates_format_1, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
