/* core_merge.c — the merge engine, rule by rule (src/core/merge.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/merge.h"

static uint8_t A[TT_ID_LEN], B[TT_ID_LEN], C[TT_ID_LEN];

static int setup(void **state) {
  (void)state;
  memset(A, 0xaa, TT_ID_LEN);
  memset(B, 0xbb, TT_ID_LEN);
  memset(C, 0xcc, TT_ID_LEN);
  return 0;
}

static json_t *J(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
  if (!j)
    fail_msg("bad test JSON '%s': %s", s, e.text);
  return j;
}

/* An intent on c/d built through the real parser. */
static tt_intent mk(const uint8_t *client, uint64_t seq, uint64_t hlc,
                    uint64_t base, const char *ops) {
  char hex[2 * TT_ID_LEN + 1], buf[8192], err[256];
  tt_hex_encode(client, TT_ID_LEN, hex);
  snprintf(buf, sizeof buf,
           "{\"client\":\"%s\",\"seq\":%llu,\"prev\":\"%064d\",\"hash\":"
           "\"%064d\",\"hlc\":%llu,\"schema\":0,\"coll\":\"c\",\"id\":\"d\","
           "\"base\":%llu,\"ops\":%s}",
           hex, (unsigned long long)seq, 0, 0, (unsigned long long)hlc,
           (unsigned long long)base, ops);
  json_t *j = J(buf);
  tt_intent in;
  if (tt_intent_from_json(j, &in, err, sizeof err) != 0)
    fail_msg("intent: %s", err);
  json_decref(j);
  return in;
}

static tt_policy_table *pol(const char *coll_policy) {
  char cfg[256];
  tt_policy_table *t;
  snprintf(cfg, sizeof cfg, "{\"collections\":{\"c\":{\"policy\":\"%s\"}}}",
           coll_policy);
  assert_int_equal(tt_policy_parse(cfg, strlen(cfg), &t, NULL, 0), 0);
  return t;
}

static const char *const POLICIES[] = {"lww", "server-wins", "client-wins",
                                       "manual"};

/* Merges and checks the outcome kind; returns the result for more checks
 * (caller clears it). */
static tt_merge_result run(tt_doc *d, const uint8_t *client, uint64_t seq,
                           uint64_t hlc, uint64_t base, const char *ops,
                           uint64_t commit, const tt_policy_table *p,
                           tt_outcome_kind want) {
  tt_intent in = mk(client, seq, hlc, base, ops);
  tt_merge_result r;
  assert_int_equal(tt_merge_intent(d, &in, hlc, commit, p, &r), 0);
  if (r.kind != want)
    fail_msg("ops %s: outcome %s (%s), want %s", ops, tt_outcome_name(r.kind),
             r.reason, tt_outcome_name(want));
  tt_intent_clear(&in);
  return r;
}

static void view_is(const tt_doc *d, const char *want) {
  json_t *v = tt_doc_view(d);
  if (!want) {
    if (v) {
      char *s = tt_canon(v);
      fail_msg("view %s, want absent", s);
    }
    return;
  }
  json_t *w = J(want);
  if (!tt_canon_equal(v, w)) {
    char *s = v ? tt_canon(v) : NULL;
    fail_msg("view %s, want %s", s ? s : "(absent)", want);
  }
  json_decref(v);
  json_decref(w);
}

static void stamp_is(const tt_doc *d, const char *field, uint64_t seq,
                     uint64_t hlc, const uint8_t *origin) {
  tt_field *f = tt_doc_field(d, field);
  assert_non_null(f);
  assert_true(f->stamp.seq == seq);
  assert_true(f->stamp.hlc == hlc);
  assert_memory_equal(f->stamp.origin, origin, TT_ID_LEN);
}

/* Base document: A created {"t":"a","x":1} at commit 1 (hlc 100). */
static void base_doc(tt_doc *d, const tt_policy_table *p) {
  memset(d, 0, sizeof *d);
  tt_merge_result r =
      run(d, A, 1, 100, 0, "[{\"kind\":\"create\",\"value\":{\"t\":\"a\",\"x\":1}}]",
          1, p, TT_OUT_APPLIED);
  assert_true(r.changed);
  tt_merge_result_clear(&r);
}

static void test_names(void **state) {
  (void)state;
  const char *n[] = {"applied", "merged", "conflict", "rejected"};
  for (int k = 0; k < TT_OUT__COUNT; k++) {
    tt_outcome_kind got;
    assert_string_equal(tt_outcome_name((tt_outcome_kind)k), n[k]);
    assert_int_equal(tt_outcome_parse(n[k], &got), 0);
    assert_int_equal(got, k);
  }
  assert_int_equal(tt_outcome_parse("duplicate", NULL), TETHER_EINVAL);
}

/* ---- not concurrent ----------------------------------------------------*/

static void test_apply_fresh(void **state) {
  (void)state;
  tt_policy_table *p = pol("manual");
  tt_doc d;
  base_doc(&d, p);
  assert_true(d.version == 1);
  view_is(&d, "{\"t\":\"a\",\"x\":1}");
  stamp_is(&d, "t", 1, 100, A);
  /* Field absent: applied, stamped, version moves. */
  tt_merge_result r = run(&d, B, 1, 50, 0,
                          "[{\"kind\":\"set\",\"field\":\"y\",\"value\":2}]", 2,
                          p, TT_OUT_APPLIED);
  assert_true(r.changed);
  assert_int_equal(r.concurrent, 0);
  assert_null(r.rule);
  tt_merge_result_clear(&r);
  assert_true(d.version == 2);
  stamp_is(&d, "y", 2, 50, B);
  view_is(&d, "{\"t\":\"a\",\"x\":1,\"y\":2}");
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* Each of the four "not concurrent" conditions, under manual (which would
 * otherwise record a conflict). */
static void test_not_concurrent(void **state) {
  (void)state;
  tt_policy_table *p = pol("manual");
  tt_doc d;
  tt_merge_result r;
  /* S.seq <= base: B saw A's write. */
  base_doc(&d, p);
  r = run(&d, B, 1, 50, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\",\"base_value\":\"zz\"}]",
          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"b\",\"x\":1}");
  stamp_is(&d, "t", 2, 50, B);
  tt_doc_clear(&d);
  /* S.origin == client: A's own earlier write, base stale. */
  base_doc(&d, p);
  r = run(&d, A, 2, 101, 0,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"a2\",\"base_value\":\"a\"}]",
          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"a2\",\"x\":1}");
  tt_doc_clear(&d);
  /* Three-way: current equals base_value (theirs == base, take ours). */
  base_doc(&d, p);
  r = run(&d, B, 1, 50, 0,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\",\"base_value\":\"a\"}]",
          2, p, TT_OUT_APPLIED);
  assert_int_equal(r.concurrent, 0);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"b\",\"x\":1}");
  /* Three-way with canonical equality: {"p":1,"q":2} == {"q":2,"p":1}. */
  r = run(&d, A, 2, 200, 2,
          "[{\"kind\":\"set\",\"field\":\"o\",\"value\":{\"p\":1,\"q\":2}}]", 3,
          p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, C, 1, 10, 0,
          "[{\"kind\":\"set\",\"field\":\"o\",\"value\":3,\"base_value\":"
          "{\"q\":2,\"p\":1}}]",
          4, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"b\",\"x\":1,\"o\":3}");
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* G5: concurrent writes to different fields never conflict, whatever the
 * policy. */
static void test_different_fields_never_conflict(void **state) {
  (void)state;
  for (int i = 0; i < 4; i++) {
    tt_policy_table *p = pol(POLICIES[i]);
    tt_doc d;
    base_doc(&d, p);
    tt_merge_result r = run(&d, B, 1, 50, 1,
                            "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\","
                            "\"base_value\":\"a\"}]",
                            2, p, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    /* C saw only commit 1 and writes x: concurrent with B, other field. */
    r = run(&d, C, 1, 40, 1,
            "[{\"kind\":\"set\",\"field\":\"x\",\"value\":9,\"base_value\":1},"
            "{\"kind\":\"incr\",\"field\":\"k\",\"value\":1},"
            "{\"kind\":\"add\",\"field\":\"s\",\"value\":1},"
            "{\"kind\":\"unset\",\"field\":\"nope\"}]",
            3, p, TT_OUT_APPLIED);
    assert_int_equal(r.concurrent, 0);
    assert_int_equal(r.nconflicts, 0);
    tt_merge_result_clear(&r);
    view_is(&d, "{\"t\":\"b\",\"x\":9,\"k\":1,\"s\":[1]}");
    tt_doc_clear(&d);
    tt_policy_free(p);
  }
}

/* ---- concurrent, per policy --------------------------------------------*/

/* B wrote t="b" at commit 2 (hlc HB); C, having seen commit 1 only, writes
 * t="c" at hlc HC. */
static tt_merge_result race(tt_doc *d, const tt_policy_table *p, uint64_t hb,
                            uint64_t hc, const uint8_t *c_id,
                            tt_outcome_kind want) {
  base_doc(d, p);
  tt_merge_result r = run(d, B, 1, hb, 1,
                          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\","
                          "\"base_value\":\"a\"}]",
                          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  return run(d, c_id, 1, hc, 1,
             "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"c\","
             "\"base_value\":\"a\"}]",
             3, p, want);
}

static void test_lww(void **state) {
  (void)state;
  tt_policy_table *p = pol("lww");
  tt_doc d;
  /* Later HLC arriving second wins. */
  tt_merge_result r = race(&d, p, 200, 300, C, TT_OUT_MERGED);
  assert_string_equal(r.rule, "lww");
  assert_int_equal(r.concurrent, 1);
  assert_true(r.changed);
  view_is(&d, "{\"t\":\"c\",\"x\":1}");
  stamp_is(&d, "t", 3, 300, C);
  assert_true(d.version == 3);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  /* Earlier HLC arriving second loses; still merged(lww), nothing changes. */
  r = race(&d, p, 300, 200, C, TT_OUT_MERGED);
  assert_string_equal(r.rule, "lww");
  assert_int_equal(r.concurrent, 1);
  assert_false(r.changed);
  view_is(&d, "{\"t\":\"b\",\"x\":1}");
  stamp_is(&d, "t", 2, 300, B);
  assert_true(d.version == 2);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  /* Equal HLC: the larger origin wins, in both arrival orders. C > B. */
  r = race(&d, p, 250, 250, C, TT_OUT_MERGED);
  view_is(&d, "{\"t\":\"c\",\"x\":1}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  /* Now the smaller origin (A-ish: use a fresh id 0x11) arrives second. */
  uint8_t small[TT_ID_LEN];
  memset(small, 0x11, TT_ID_LEN);
  r = race(&d, p, 250, 250, small, TT_OUT_MERGED);
  view_is(&d, "{\"t\":\"b\",\"x\":1}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* A far-future client clock is clamped: it cannot beat a later honest
 * write beyond the skew allowance. */
static void test_lww_clamped_future(void **state) {
  (void)state;
  tt_policy_table *p = pol("lww");
  const uint64_t skew = 60000, now1 = 1000000, now2 = now1 + 2 * skew;
  tt_doc d;
  base_doc(&d, p);
  tt_hlc liar = TT_HLC_MAKE(now1 + 1000 * skew, 0); /* far in the future */
  tt_hlc clamped = tt_hlc_clamp(liar, now1, skew);
  assert_true(clamped == TT_HLC_MAKE(now1 + skew, 0));
  tt_intent in = mk(B, 1, liar, 1,
                    "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"liar\","
                    "\"base_value\":\"a\"}]");
  tt_merge_result r;
  assert_int_equal(tt_merge_intent(&d, &in, clamped, 2, p, &r), 0);
  assert_int_equal(r.kind, TT_OUT_APPLIED);
  stamp_is(&d, "t", 2, clamped, B); /* stamped with the clamped value */
  tt_merge_result_clear(&r);
  tt_intent_clear(&in);
  /* An honest concurrent write later in real time wins. */
  tt_hlc honest = TT_HLC_MAKE(now2, 0);
  r = run(&d, C, 1, honest, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"honest\","
          "\"base_value\":\"a\"}]",
          3, p, TT_OUT_MERGED);
  assert_string_equal(r.rule, "lww");
  view_is(&d, "{\"t\":\"honest\",\"x\":1}");
  tt_merge_result_clear(&r);
  /* Unclamped, the liar would have won. */
  tt_doc_clear(&d);
  base_doc(&d, p);
  in = mk(B, 1, liar, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"liar\"}]");
  assert_int_equal(tt_merge_intent(&d, &in, liar, 2, p, &r), 0);
  tt_merge_result_clear(&r);
  tt_intent_clear(&in);
  r = run(&d, C, 1, honest, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"honest\"}]", 3, p,
          TT_OUT_MERGED);
  view_is(&d, "{\"t\":\"liar\",\"x\":1}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

static void test_server_wins(void **state) {
  (void)state;
  tt_policy_table *p = pol("server-wins");
  tt_doc d;
  /* Even with a later HLC, the committed value stays. */
  tt_merge_result r = race(&d, p, 200, 900, C, TT_OUT_MERGED);
  assert_string_equal(r.rule, "server-wins");
  assert_int_equal(r.concurrent, 1);
  assert_false(r.changed);
  view_is(&d, "{\"t\":\"b\",\"x\":1}");
  assert_true(d.version == 2);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

static void test_client_wins(void **state) {
  (void)state;
  tt_policy_table *p = pol("client-wins");
  tt_doc d;
  /* Even with an earlier HLC, the incoming intent wins. */
  tt_merge_result r = race(&d, p, 900, 200, C, TT_OUT_MERGED);
  assert_string_equal(r.rule, "client-wins");
  assert_int_equal(r.concurrent, 1);
  assert_true(r.changed);
  view_is(&d, "{\"t\":\"c\",\"x\":1}");
  stamp_is(&d, "t", 3, 200, C);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

static void conflict_is(const tt_conflict *c, const char *id, const char *field,
                        const char *base, const char *theirs,
                        const char *ours) {
  assert_string_equal(c->id, id);
  assert_string_equal(c->field, field);
  const char *want[3] = {base, theirs, ours};
  json_t *got[3] = {c->base, c->theirs, c->ours};
  for (int i = 0; i < 3; i++) {
    if (!want[i]) {
      assert_null(got[i]);
      continue;
    }
    json_t *w = J(want[i]);
    if (!tt_canon_equal(w, got[i]))
      fail_msg("conflict part %d: got %s want %s", i,
               got[i] ? tt_canon(got[i]) : "(absent)", want[i]);
    json_decref(w);
  }
}

static void test_manual(void **state) {
  (void)state;
  tt_policy_table *p = pol("manual");
  tt_doc d;
  char cid[64], hex[33];
  tt_hex_encode(C, TT_ID_LEN, hex);
  tt_merge_result r = race(&d, p, 200, 300, C, TT_OUT_CONFLICT);
  assert_int_equal(r.nconflicts, 1);
  assert_int_equal(r.concurrent, 1);
  assert_false(r.changed);
  assert_null(r.rule);
  snprintf(cid, sizeof cid, "%s-1-0", hex);
  conflict_is(&r.conflicts[0], cid, "t", "\"a\"", "\"b\"", "\"c\"");
  view_is(&d, "{\"t\":\"b\",\"x\":1}"); /* server value kept */
  tt_merge_result_clear(&r);
  /* An unset racing a write: ours is absent. The op index is in the id. */
  r = run(&d, A, 2, 150, 1,
          "[{\"kind\":\"set\",\"field\":\"z\",\"value\":0},"
          "{\"kind\":\"unset\",\"field\":\"t\",\"base_value\":\"a\"}]",
          4, p, TT_OUT_CONFLICT);
  tt_hex_encode(A, TT_ID_LEN, hex);
  snprintf(cid, sizeof cid, "%s-2-1", hex);
  assert_int_equal(r.nconflicts, 1);
  conflict_is(&r.conflicts[0], cid, "t", "\"a\"", "\"b\"", NULL);
  assert_true(r.changed); /* the first op applied */
  view_is(&d, "{\"t\":\"b\",\"x\":1,\"z\":0}");
  tt_merge_result_clear(&r);
  /* Base absent in the record when the replica saw no value. */
  r = run(&d, C, 2, 400, 1,
          "[{\"kind\":\"set\",\"field\":\"z\",\"value\":5}]", 5, p,
          TT_OUT_CONFLICT);
  conflict_is(&r.conflicts[0], r.conflicts[0].id, "z", NULL, "0", "5");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* Concurrent, but the value already equals ours: applied, nothing written. */
static void test_concurrent_same_value(void **state) {
  (void)state;
  for (int i = 0; i < 4; i++) {
    tt_policy_table *p = pol(POLICIES[i]);
    tt_doc d;
    base_doc(&d, p);
    tt_merge_result r = run(&d, B, 1, 200, 1,
                            "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\","
                            "\"base_value\":\"a\"}]",
                            2, p, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    r = run(&d, C, 1, 300, 1,
            "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\","
            "\"base_value\":\"a\"}]",
            3, p, TT_OUT_APPLIED);
    assert_false(r.changed);
    assert_int_equal(r.nconflicts, 0);
    stamp_is(&d, "t", 2, 200, B);
    tt_merge_result_clear(&r);
    tt_doc_clear(&d);
    tt_policy_free(p);
  }
}

/* ---- counters and sets --------------------------------------------------*/

static void test_incr(void **state) {
  (void)state;
  for (int i = 0; i < 4; i++) {
    tt_policy_table *p = pol(POLICIES[i]); /* the policy plays no part */
    tt_doc d;
    base_doc(&d, p);
    tt_merge_result r = run(&d, B, 1, 200, 1,
                            "[{\"kind\":\"incr\",\"field\":\"x\",\"value\":5,"
                            "\"base_value\":1}]",
                            2, p, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    r = run(&d, C, 1, 100, 1,
            "[{\"kind\":\"incr\",\"field\":\"x\",\"value\":-3,"
            "\"base_value\":1}]",
            3, p, TT_OUT_MERGED);
    assert_string_equal(r.rule, "counter");
    assert_int_equal(r.concurrent, 1);
    tt_merge_result_clear(&r);
    view_is(&d, "{\"t\":\"a\",\"x\":3}"); /* 1 + 5 - 3 */
    stamp_is(&d, "x", 3, 100, C);
    /* absent = 0 */
    r = run(&d, C, 2, 101, 3,
            "[{\"kind\":\"incr\",\"field\":\"k\",\"value\":7}]", 4, p,
            TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    view_is(&d, "{\"t\":\"a\",\"x\":3,\"k\":7}");
    /* incr by 0 of an existing counter is a no-op. */
    r = run(&d, C, 3, 102, 4,
            "[{\"kind\":\"incr\",\"field\":\"k\",\"value\":0}]", 5, p,
            TT_OUT_APPLIED);
    assert_false(r.changed);
    tt_merge_result_clear(&r);
    stamp_is(&d, "k", 4, 101, C);
    tt_doc_clear(&d);
    tt_policy_free(p);
  }
}

static void assert_doc_bytes(const tt_doc *d, const char *buf, size_t len) {
  char *b2;
  size_t l2;
  assert_int_equal(tt_doc_encode(d, &b2, &l2), 0);
  assert_int_equal(l2, len);
  assert_memory_equal(b2, buf, len);
  free(b2);
}

/* Rejected intents change nothing at all, even after earlier ops of the
 * same intent had been applied. */
static void test_rejected_unchanged(void **state) {
  (void)state;
  static const char *const bad[] = {
      /* incr on a string */
      "[{\"kind\":\"set\",\"field\":\"x\",\"value\":100},"
      "{\"kind\":\"incr\",\"field\":\"t\",\"value\":1}]",
      /* incr overflow */
      "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"q\"},"
      "{\"kind\":\"set\",\"field\":\"big\",\"value\":9223372036854775807},"
      "{\"kind\":\"incr\",\"field\":\"big\",\"value\":1}]",
      /* add / remove on a non-array */
      "[{\"kind\":\"unset\",\"field\":\"t\"},"
      "{\"kind\":\"add\",\"field\":\"x\",\"value\":1}]",
      "[{\"kind\":\"delete\"},{\"kind\":\"create\",\"value\":{\"x\":\"s\"}},"
      "{\"kind\":\"remove\",\"field\":\"x\",\"value\":1}]",
      /* the reserved pseudo-field */
      "[{\"kind\":\"set\",\"field\":\"t\",\"value\":2},"
      "{\"kind\":\"set\",\"field\":\"_doc\",\"value\":1}]",
      "[{\"kind\":\"create\",\"value\":{\"_doc\":1}}]",
      "[{\"kind\":\"create\",\"value\":{\"ok\":1,\"\":1}}]",
      "[{\"kind\":\"resolve\",\"field\":\"_doc\",\"value\":5,\"conflict\":\"c\"}]",
  };
  for (int pi = 0; pi < 4; pi++) {
    tt_policy_table *p = pol(POLICIES[pi]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      tt_doc d;
      base_doc(&d, p);
      tt_merge_result r = run(&d, B, 1, 200, 1,
                              "[{\"kind\":\"set\",\"field\":\"t\",\"value\":"
                              "\"b\"}]",
                              2, p, TT_OUT_APPLIED);
      tt_merge_result_clear(&r);
      char *before;
      size_t blen;
      assert_int_equal(tt_doc_encode(&d, &before, &blen), 0);
      r = run(&d, C, 1, 300, 0, bad[i], 3, p, TT_OUT_REJECTED);
      assert_false(r.changed);
      assert_int_equal(r.nconflicts, 0);
      assert_null(r.conflicts);
      assert_true(strlen(r.reason) > 0);
      assert_null(r.rule);
      assert_doc_bytes(&d, before, blen);
      free(before);
      tt_merge_result_clear(&r);
      tt_doc_clear(&d);
    }
    tt_policy_free(p);
  }
}

static void test_sets(void **state) {
  (void)state;
  tt_policy_table *p = pol("manual");
  tt_doc d;
  base_doc(&d, p);
  tt_merge_result r = run(&d, A, 2, 110, 1,
                          "[{\"kind\":\"set\",\"field\":\"s\",\"value\":"
                          "[1,{\"a\":1,\"b\":2},\"x\",1]}]",
                          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  /* Concurrent adds of different elements: union; adding a present one
   * (canonically equal) is a no-op. */
  r = run(&d, B, 1, 120, 1,
          "[{\"kind\":\"add\",\"field\":\"s\",\"value\":2},"
          "{\"kind\":\"add\",\"field\":\"s\",\"value\":{\"b\":2,\"a\":1}}]",
          3, p, TT_OUT_MERGED);
  assert_string_equal(r.rule, "set");
  tt_merge_result_clear(&r);
  r = run(&d, C, 1, 130, 1,
          "[{\"kind\":\"add\",\"field\":\"s\",\"value\":3}]", 4, p,
          TT_OUT_MERGED);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"a\",\"x\":1,\"s\":[1,{\"a\":1,\"b\":2},\"x\",1,2,3]}");
  /* Adding what is already there (even concurrently) changes nothing: no
   * new stamp, no new version. */
  r = run(&d, B, 2, 125, 1,
          "[{\"kind\":\"add\",\"field\":\"s\",\"value\":3}]", 9, p,
          TT_OUT_MERGED);
  assert_false(r.changed);
  tt_merge_result_clear(&r);
  stamp_is(&d, "s", 4, 130, C);
  assert_true(d.version == 4);
  /* remove deletes every equal element; 1.0 is not 1. */
  r = run(&d, C, 2, 140, 1,
          "[{\"kind\":\"remove\",\"field\":\"s\",\"value\":1},"
          "{\"kind\":\"remove\",\"field\":\"s\",\"value\":2.0},"
          "{\"kind\":\"remove\",\"field\":\"s\",\"value\":\"nothere\"}]",
          5, p, TT_OUT_APPLIED); /* s was last written by C itself */
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"a\",\"x\":1,\"s\":[{\"a\":1,\"b\":2},\"x\",2,3]}");
  /* absent = [] */
  r = run(&d, C, 3, 150, 5,
          "[{\"kind\":\"add\",\"field\":\"n\",\"value\":\"e\"},"
          "{\"kind\":\"remove\",\"field\":\"m\",\"value\":\"e\"}]",
          6, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"a\",\"x\":1,\"s\":[{\"a\":1,\"b\":2},\"x\",2,3],"
              "\"n\":[\"e\"],\"m\":[]}");
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* ---- create ------------------------------------------------------------*/

static void test_create(void **state) {
  (void)state;
  tt_policy_table *p = pol("lww");
  tt_doc d = {0};
  /* {} on a never-written document makes it exist. */
  tt_merge_result r = run(&d, A, 1, 100, 0,
                          "[{\"kind\":\"create\",\"value\":{}}]", 1, p,
                          TT_OUT_APPLIED);
  assert_true(r.changed);
  tt_merge_result_clear(&r);
  view_is(&d, "{}");
  tt_doc_clear(&d);
  /* create {} then delete in one intent: the document existed in between. */
  r = run(&d, A, 1, 100, 0,
          "[{\"kind\":\"create\",\"value\":{}},{\"kind\":\"delete\"}]", 1,
          p, TT_OUT_APPLIED);
  assert_true(d.deleted);
  assert_true(d.version == 1);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  /* Replace a document the replica saw: set + unset of what is missing. */
  base_doc(&d, p);
  r = run(&d, B, 1, 50, 1,
          "[{\"kind\":\"create\",\"value\":{\"t\":\"n\",\"y\":[1]}}]", 2, p,
          TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  view_is(&d, "{\"t\":\"n\",\"y\":[1]}");
  stamp_is(&d, "x", 2, 50, B); /* the unset is stamped */
  assert_null(tt_doc_field(&d, "x")->value);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* create over concurrent writes: each field against its policy. */
static void test_create_on_existing_concurrent(void **state) {
  (void)state;
  const char *cfg =
      "{\"collections\":{\"c\":{\"policy\":\"manual\",\"fields\":{"
      "\"x\":{\"policy\":\"lww\"},\"w\":{\"policy\":\"server-wins\"}}}}}";
  tt_policy_table *p;
  assert_int_equal(tt_policy_parse(cfg, strlen(cfg), &p, NULL, 0), 0);
  tt_doc d;
  base_doc(&d, p);
  /* B (saw commit 1) writes t, x, w and adds u at commit 2. */
  tt_merge_result r = run(&d, B, 1, 200, 1,
                          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\"},"
                          "{\"kind\":\"set\",\"field\":\"x\",\"value\":2},"
                          "{\"kind\":\"set\",\"field\":\"w\",\"value\":2},"
                          "{\"kind\":\"set\",\"field\":\"u\",\"value\":2}]",
                          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  /* C, having seen commit 1 only, replaces the whole document. */
  r = run(&d, C, 1, 300, 1,
          "[{\"kind\":\"create\",\"value\":{\"x\":3,\"t\":\"c\",\"w\":3,"
          "\"v\":3}}]",
          3, p, TT_OUT_CONFLICT);
  char hex[33], id0[64], id1[64];
  tt_hex_encode(C, TT_ID_LEN, hex);
  snprintf(id0, sizeof id0, "%s-1-0", hex);
  snprintf(id1, sizeof id1, "%s-1-0.1", hex);
  /* Two manual fields: t (set) and u (unset); key order decides ids. */
  assert_int_equal(r.nconflicts, 2);
  conflict_is(&r.conflicts[0], id0, "t", NULL, "\"b\"", "\"c\"");
  conflict_is(&r.conflicts[1], id1, "u", NULL, "2", NULL);
  assert_int_equal(r.concurrent, 4); /* t, w, x, u */
  const char *cf[] = {"t", "w", "x", "u"};
  for (int i = 0; i < 4; i++)
    assert_string_equal(r.concurrent_fields[i], cf[i]);
  assert_true(r.changed);
  /* t kept (manual), x=3 (lww, newer), w kept (server-wins), v new. */
  view_is(&d, "{\"t\":\"b\",\"x\":3,\"w\":2,\"u\":2,\"v\":3}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* ---- delete ------------------------------------------------------------*/

static void test_delete_plain(void **state) {
  (void)state;
  tt_policy_table *p = pol("manual");
  tt_doc d;
  base_doc(&d, p);
  tt_merge_result r =
      run(&d, B, 1, 200, 1, "[{\"kind\":\"delete\"}]", 2, p, TT_OUT_APPLIED);
  assert_true(r.changed);
  tt_merge_result_clear(&r);
  assert_true(d.deleted);
  view_is(&d, NULL);
  assert_true(d.del_stamp.seq == 2 && d.del_stamp.hlc == 200);
  assert_memory_equal(d.del_stamp.origin, B, TT_ID_LEN);
  stamp_is(&d, "t", 2, 200, B); /* field tombstones carry the delete */
  assert_null(tt_doc_field(&d, "t")->value);
  json_t *s, *u;
  assert_int_equal(tt_doc_changes_since(&d, 1, &s, &u), 0);
  assert_int_equal(json_object_size(s) + json_array_size(u), 0);
  json_decref(s);
  json_decref(u);
  /* Deleting again is a no-op; so is deleting what never existed. */
  r = run(&d, C, 1, 300, 0, "[{\"kind\":\"delete\"}]", 3, p, TT_OUT_APPLIED);
  assert_false(r.changed);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  r = run(&d, C, 2, 300, 0, "[{\"kind\":\"delete\"}]", 3, p, TT_OUT_APPLIED);
  assert_false(r.changed);
  assert_false(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* B edits t at commit 2; C deletes having seen only commit 1. */
static tt_merge_result delete_race(tt_doc *d, const tt_policy_table *p,
                                   uint64_t hb, uint64_t hc,
                                   tt_outcome_kind want) {
  base_doc(d, p);
  tt_merge_result r = run(d, B, 1, hb, 1,
                          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\"}]",
                          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  return run(d, C, 1, hc, 1, "[{\"kind\":\"delete\"}]", 3, p, want);
}

static void test_delete_vs_edit(void **state) {
  (void)state;
  tt_doc d;
  tt_merge_result r;
  tt_policy_table *p = pol("lww");
  r = delete_race(&d, p, 200, 300, TT_OUT_MERGED); /* delete newer: wins */
  assert_string_equal(r.rule, "lww");
  assert_int_equal(r.concurrent, 1);
  assert_string_equal(r.concurrent_fields[0], "_doc");
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  r = delete_race(&d, p, 300, 200, TT_OUT_MERGED); /* delete older: loses */
  assert_false(d.deleted);
  assert_false(r.changed);
  view_is(&d, "{\"t\":\"b\",\"x\":1}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  p = pol("server-wins");
  r = delete_race(&d, p, 300, 900, TT_OUT_MERGED);
  assert_string_equal(r.rule, "server-wins");
  assert_false(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  p = pol("client-wins");
  r = delete_race(&d, p, 900, 300, TT_OUT_MERGED);
  assert_string_equal(r.rule, "client-wins");
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  p = pol("manual");
  r = delete_race(&d, p, 200, 900, TT_OUT_CONFLICT);
  char hex[33], id[64];
  tt_hex_encode(C, TT_ID_LEN, hex);
  snprintf(id, sizeof id, "%s-1-0", hex);
  assert_int_equal(r.nconflicts, 1);
  conflict_is(&r.conflicts[0], id, "_doc", NULL, "{\"t\":\"b\",\"x\":1}", NULL);
  assert_false(d.deleted);
  assert_false(r.changed);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);

  /* Not concurrent: the deleter saw every write (base), or the only newer
   * writes are its own — applied under manual. */
  base_doc(&d, p);
  r = run(&d, B, 1, 200, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\"}]", 2, p,
          TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, B, 2, 201, 1, "[{\"kind\":\"delete\"}]", 3, p, TT_OUT_APPLIED);
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  /* A delete that loses under lww uses the max stamp of all concurrent
   * fields: newer than one of them is not enough. */
  p = pol("lww");
  base_doc(&d, p);
  r = run(&d, B, 1, 200, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\"}]", 2, p,
          TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, A, 2, 500, 2,
          "[{\"kind\":\"set\",\"field\":\"x\",\"value\":2}]", 3, p,
          TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, C, 1, 300, 1, "[{\"kind\":\"delete\"}]", 4, p, TT_OUT_MERGED);
  assert_false(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* ---- writes to a tombstone ---------------------------------------------*/

/* C deletes at commit 2 (hlc HD); B, having seen commit 1, writes t. */
static tt_merge_result tomb_race(tt_doc *d, const tt_policy_table *p,
                                 uint64_t hd, uint64_t hb, uint64_t bbase,
                                 tt_outcome_kind want) {
  base_doc(d, p);
  tt_merge_result r =
      run(d, C, 1, hd, 1, "[{\"kind\":\"delete\"}]", 2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  return run(d, B, 1, hb, bbase,
             "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\","
             "\"base_value\":\"a\"}]",
             3, p, want);
}

static void test_write_to_tombstone(void **state) {
  (void)state;
  tt_doc d;
  tt_merge_result r;
  json_t *s, *u;
  for (int i = 0; i < 4; i++) {
    /* Not concurrent: B saw the delete. Revives with only the new field. */
    tt_policy_table *p = pol(POLICIES[i]);
    r = tomb_race(&d, p, 200, 100, 2, TT_OUT_APPLIED);
    assert_false(d.deleted);
    view_is(&d, "{\"t\":\"b\"}");
    tt_merge_result_clear(&r);
    /* A replica whose cursor predates the delete learns x is gone. */
    assert_int_equal(tt_doc_changes_since(&d, 1, &s, &u), 0);
    json_t *ws = J("{\"t\":\"b\"}"), *wu = J("[\"x\"]");
    assert_true(tt_canon_equal(s, ws));
    assert_true(tt_canon_equal(u, wu));
    json_decref(ws);
    json_decref(wu);
    json_decref(s);
    json_decref(u);
    tt_doc_clear(&d);
    tt_policy_free(p);
  }
  tt_policy_table *p = pol("lww");
  r = tomb_race(&d, p, 200, 300, 1, TT_OUT_MERGED); /* newer write revives */
  assert_string_equal(r.rule, "lww");
  assert_int_equal(r.concurrent, 1);
  view_is(&d, "{\"t\":\"b\"}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  r = tomb_race(&d, p, 300, 200, 1, TT_OUT_MERGED); /* older write: stays */
  assert_true(d.deleted);
  assert_false(r.changed);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  /* An unset on a tombstone is a no-op even when concurrent. */
  base_doc(&d, p);
  r = run(&d, C, 1, 200, 1, "[{\"kind\":\"delete\"}]", 2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, B, 1, 300, 1, "[{\"kind\":\"unset\",\"field\":\"t\"}]", 3, p,
          TT_OUT_APPLIED);
  assert_false(r.changed);
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  p = pol("server-wins");
  r = tomb_race(&d, p, 200, 900, 1, TT_OUT_MERGED);
  assert_string_equal(r.rule, "server-wins");
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  p = pol("client-wins");
  r = tomb_race(&d, p, 900, 200, 1, TT_OUT_MERGED);
  assert_string_equal(r.rule, "client-wins");
  view_is(&d, "{\"t\":\"b\"}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  p = pol("manual");
  r = tomb_race(&d, p, 200, 900, 1, TT_OUT_CONFLICT);
  assert_int_equal(r.nconflicts, 1);
  conflict_is(&r.conflicts[0], r.conflicts[0].id, "t", "\"a\"", NULL,
              "\"b\"");
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  /* incr against the concurrent delete: ours is the value it would make. */
  r = run(&d, B, 2, 901, 1,
          "[{\"kind\":\"incr\",\"field\":\"x\",\"value\":4}]", 4, p,
          TT_OUT_CONFLICT);
  conflict_is(&r.conflicts[0], r.conflicts[0].id, "x", NULL, NULL, "4");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);

  /* create on a tombstone it saw: exactly the value. */
  p = pol("manual");
  base_doc(&d, p);
  r = run(&d, C, 1, 200, 1, "[{\"kind\":\"delete\"}]", 2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, B, 1, 100, 2, "[{\"kind\":\"create\",\"value\":{\"q\":1}}]", 3,
          p, TT_OUT_APPLIED);
  view_is(&d, "{\"q\":1}");
  tt_merge_result_clear(&r);
  /* ... and an empty create on a tombstone it saw: an existing {}. */
  r = run(&d, C, 2, 300, 3, "[{\"kind\":\"delete\"}]", 4, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  assert_true(d.deleted);
  r = run(&d, B, 2, 100, 4, "[{\"kind\":\"create\",\"value\":{}}]", 5, p,
          TT_OUT_APPLIED);
  assert_true(r.changed);
  assert_true(d.version == 5);
  view_is(&d, "{}");
  tt_merge_result_clear(&r);
  /* Concurrent with a delete, an empty create asks the collection policy
   * (manual here): a conflict on "_doc". */
  r = run(&d, C, 3, 300, 5, "[{\"kind\":\"delete\"}]", 6, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, B, 3, 100, 5, "[{\"kind\":\"create\",\"value\":{}}]", 7, p,
          TT_OUT_CONFLICT);
  conflict_is(&r.conflicts[0], r.conflicts[0].id, "_doc", NULL, NULL, "{}");
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* A create concurrent with a delete: every field meets its policy against
 * the delete, whatever the order of the names. Before, the field that
 * revived the document (b, client-wins) let the fields after it take the
 * three-way shortcut on the field tombstones the delete left (R2), so c
 * ignored the collection's server-wins, while a (before b) did not. */
static void test_create_vs_delete_name_order(void **state) {
  (void)state;
  static const char *cfg =
      "{\"collections\":{\"c\":{\"policy\":\"server-wins\",\"fields\":"
      "{\"b\":{\"policy\":\"client-wins\"}}}}}";
  static const struct {
    const char *create, *want;
    size_t nfields;
  } cases[] = {
      {"{\"b\":7,\"c\":7}", "{\"b\":7}", 2},
      {"{\"a\":7,\"b\":7}", "{\"b\":7}", 2},
      {"{\"a\":7,\"b\":7,\"c\":7}", "{\"b\":7}", 3},
      /* a field the document never had: the same, before or after b */
      {"{\"b\":7,\"z\":7}", "{\"b\":7}", 2},
      {"{\"0\":7,\"b\":7}", "{\"b\":7}", 2},
  };
  tt_policy_table *p;
  assert_int_equal(tt_policy_parse(cfg, strlen(cfg), &p, NULL, 0), 0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ops[256];
    tt_doc d = {0};
    tt_merge_result r = run(
        &d, A, 1, 100, 0,
        "[{\"kind\":\"create\",\"value\":{\"a\":1,\"b\":1,\"c\":1}}]", 1, p,
        TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    r = run(&d, C, 1, 200, 1, "[{\"kind\":\"delete\"}]", 2, p, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    /* B saw commit 1, not the delete */
    snprintf(ops, sizeof ops, "[{\"kind\":\"create\",\"value\":%s}]",
             cases[i].create);
    r = run(&d, B, 1, 300, 1, ops, 3, p, TT_OUT_MERGED);
    view_is(&d, cases[i].want);
    /* each field of the create was a concurrent write */
    assert_int_equal(r.concurrent, cases[i].nfields);
    tt_merge_result_clear(&r);
    tt_doc_clear(&d);
  }

  /* The same tombstones later: a set on c after a create revived the
   * document, in the same intent or in a later one of a replica that did
   * not see the delete, meets server-wins too. */
  tt_doc d = {0};
  tt_merge_result r = run(
      &d, A, 1, 100, 0,
      "[{\"kind\":\"create\",\"value\":{\"a\":1,\"b\":1,\"c\":1}}]", 1, p,
      TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, C, 1, 200, 1, "[{\"kind\":\"delete\"}]", 2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  r = run(&d, B, 1, 300, 1,
          "[{\"kind\":\"create\",\"value\":{\"b\":7}},"
          "{\"kind\":\"set\",\"field\":\"c\",\"value\":7}]",
          3, p, TT_OUT_MERGED);
  view_is(&d, "{\"b\":7}");
  assert_int_equal(r.concurrent, 2);
  tt_merge_result_clear(&r);
  /* another replica that saw only commit 1 */
  r = run(&d, A, 2, 400, 1, "[{\"kind\":\"set\",\"field\":\"a\",\"value\":8}]",
          4, p, TT_OUT_MERGED);
  assert_string_equal(r.rule, "server-wins");
  view_is(&d, "{\"b\":7}");
  tt_merge_result_clear(&r);
  /* a replica that saw the delete (base 2) writes freely */
  r = run(&d, C, 2, 500, 3, "[{\"kind\":\"set\",\"field\":\"a\",\"value\":9}]",
          5, p, TT_OUT_APPLIED);
  view_is(&d, "{\"a\":9,\"b\":7}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* A rejection reason quotes the field name cut to 100 bytes; the cut must
 * not split a character, or the reason is not UTF-8 and cannot be put
 * into the JSON answer (the server then failed the whole group commit). */
static void test_reject_reason_utf8(void **state) {
  (void)state;
  char field[1 + 60 * 2 + 1], ops[512], want[128];
  tt_policy_table *p = pol("lww");
  tt_doc d = {0};
  field[0] = 'a';
  for (int i = 0; i < 60; i++)
    memcpy(field + 1 + 2 * i, "\xc3\xa9", 2);
  field[sizeof field - 1] = '\0';
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"set\",\"field\":\"%s\",\"value\":\"str\"}]", field);
  tt_merge_result r = run(&d, A, 1, 100, 0, ops, 1, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"incr\",\"field\":\"%s\",\"value\":1}]", field);
  r = run(&d, B, 1, 200, 1, ops, 2, p, TT_OUT_REJECTED);
  assert_true(tt_utf8_valid(r.reason, strlen(r.reason)));
  json_t *j = json_string(r.reason);
  assert_non_null(j);
  json_decref(j);
  /* the name is quoted as far as whole characters fit in 100 bytes */
  snprintf(want, sizeof want, "incr on field '%.99s'", field);
  assert_non_null(strstr(r.reason, want));
  tt_merge_result_clear(&r);
  /* add/remove quote it the same way */
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"add\",\"field\":\"%s\",\"value\":1}]", field);
  r = run(&d, B, 2, 300, 1, ops, 2, p, TT_OUT_REJECTED);
  assert_true(tt_utf8_valid(r.reason, strlen(r.reason)));
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* ---- resolve -----------------------------------------------------------*/

static void test_resolve(void **state) {
  (void)state;
  tt_policy_table *p = pol("manual");
  tt_doc d;
  tt_merge_result r = race(&d, p, 200, 300, C, TT_OUT_CONFLICT);
  char id[80];
  snprintf(id, sizeof id, "%s", r.conflicts[0].id);
  tt_merge_result_clear(&r);
  /* A person decided: applies even though stale and concurrent. */
  char ops[256];
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"resolve\",\"field\":\"t\",\"value\":\"both\","
           "\"conflict\":\"%s\"}]",
           id);
  r = run(&d, C, 2, 50, 1, ops, 4, p, TT_OUT_APPLIED);
  assert_true(r.changed);
  assert_int_equal(r.nconflicts, 0);
  view_is(&d, "{\"t\":\"both\",\"x\":1}");
  stamp_is(&d, "t", 4, 50, C);
  tt_merge_result_clear(&r);
  /* Resolve to absent. */
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"resolve\",\"field\":\"t\",\"value\":null,\"unset\":"
           "true,\"conflict\":\"%s\"}]",
           id);
  r = run(&d, C, 3, 51, 1, ops, 5, p, TT_OUT_APPLIED);
  view_is(&d, "{\"x\":1}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);

  /* "_doc": resolving a delete conflict. */
  r = delete_race(&d, p, 200, 900, TT_OUT_CONFLICT);
  tt_merge_result_clear(&r);
  r = run(&d, C, 2, 901, 1,
          "[{\"kind\":\"resolve\",\"field\":\"_doc\",\"value\":null,\"unset\":"
          "true,\"conflict\":\"x\"}]",
          4, p, TT_OUT_APPLIED);
  assert_true(d.deleted);
  tt_merge_result_clear(&r);
  /* ... and back, by replacing the document: revives it. */
  r = run(&d, B, 2, 10, 0,
          "[{\"kind\":\"resolve\",\"field\":\"_doc\",\"value\":{\"k\":1},"
          "\"conflict\":\"x\"}]",
          5, p, TT_OUT_APPLIED);
  assert_false(d.deleted);
  view_is(&d, "{\"k\":1}");
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* ---- outcome aggregation -----------------------------------------------*/

static void test_outcome_aggregation(void **state) {
  (void)state;
  const char *cfg =
      "{\"collections\":{\"c\":{\"policy\":\"lww\",\"fields\":{"
      "\"m\":{\"policy\":\"manual\"},\"m2\":{\"policy\":\"manual\"}}}}}";
  tt_policy_table *p;
  assert_int_equal(tt_policy_parse(cfg, strlen(cfg), &p, NULL, 0), 0);
  tt_doc d;
  base_doc(&d, p);
  tt_merge_result r = run(&d, B, 1, 200, 1,
                          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\"},"
                          "{\"kind\":\"incr\",\"field\":\"x\",\"value\":1},"
                          "{\"kind\":\"set\",\"field\":\"m\",\"value\":\"b\"},"
                          "{\"kind\":\"set\",\"field\":\"m2\",\"value\":\"b\"}]",
                          2, p, TT_OUT_APPLIED);
  tt_merge_result_clear(&r);
  char hex[33], id[64];
  tt_hex_encode(C, TT_ID_LEN, hex);
  /* merged: the first merged op's rule (counter before lww). */
  r = run(&d, C, 1, 300, 1,
          "[{\"kind\":\"set\",\"field\":\"new\",\"value\":1},"
          "{\"kind\":\"incr\",\"field\":\"x\",\"value\":1},"
          "{\"kind\":\"set\",\"field\":\"t\",\"value\":\"c\"}]",
          3, p, TT_OUT_MERGED);
  assert_string_equal(r.rule, "counter");
  assert_int_equal(r.concurrent, 2);
  assert_string_equal(r.concurrent_fields[0], "x");
  assert_string_equal(r.concurrent_fields[1], "t");
  tt_merge_result_clear(&r);
  /* conflict beats merged; the first conflict's id comes first. */
  r = run(&d, C, 2, 300, 1,
          "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"d\"},"
          "{\"kind\":\"set\",\"field\":\"m2\",\"value\":\"c\"},"
          "{\"kind\":\"set\",\"field\":\"m\",\"value\":\"c\"}]",
          4, p, TT_OUT_CONFLICT);
  assert_int_equal(r.nconflicts, 2);
  snprintf(id, sizeof id, "%s-2-1", hex);
  assert_string_equal(r.conflicts[0].id, id);
  assert_string_equal(r.conflicts[0].field, "m2");
  snprintf(id, sizeof id, "%s-2-2", hex);
  assert_string_equal(r.conflicts[1].id, id);
  assert_null(r.rule);
  tt_merge_result_clear(&r);
  /* rejected beats everything, and drops the conflicts. */
  r = run(&d, C, 3, 300, 1,
          "[{\"kind\":\"set\",\"field\":\"m\",\"value\":\"e\"},"
          "{\"kind\":\"incr\",\"field\":\"t\",\"value\":1}]",
          5, p, TT_OUT_REJECTED);
  assert_int_equal(r.nconflicts, 0);
  assert_int_equal(r.concurrent, 0);
  assert_null(r.concurrent_fields);
  tt_merge_result_clear(&r);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

/* ---- determinism (G6) --------------------------------------------------*/

static void test_deterministic(void **state) {
  (void)state;
  static const struct {
    const uint8_t *who;
    uint64_t seq, hlc, base;
    const char *ops;
  } log[] = {
      {A, 1, 100, 0, "[{\"kind\":\"create\",\"value\":{\"a\":1,\"b\":[1]}}]"},
      {B, 1, 90, 0, "[{\"kind\":\"set\",\"field\":\"a\",\"value\":2}]"},
      {C, 1, 95, 1, "[{\"kind\":\"add\",\"field\":\"b\",\"value\":2}]"},
      {B, 2, 91, 1, "[{\"kind\":\"delete\"}]"},
      {A, 2, 300, 1, "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":3}]"},
      {C, 2, 96, 2, "[{\"kind\":\"create\",\"value\":{\"z\":null}}]"},
  };
  char *first = NULL;
  size_t flen = 0;
  for (int pi = 0; pi < 4; pi++) {
    tt_policy_table *p = pol(POLICIES[pi]);
    for (int round = 0; round < 2; round++) {
      tt_doc d = {0};
      for (size_t i = 0; i < sizeof log / sizeof log[0]; i++) {
        tt_intent in = mk(log[i].who, log[i].seq, log[i].hlc, log[i].base,
                          log[i].ops);
        tt_merge_result r;
        assert_int_equal(tt_merge_intent(&d, &in, in.hlc, i + 1, p, &r), 0);
        tt_merge_result_clear(&r);
        tt_intent_clear(&in);
      }
      char *buf;
      size_t len;
      assert_int_equal(tt_doc_encode(&d, &buf, &len), 0);
      if (round == 0) {
        first = buf;
        flen = len;
      } else {
        assert_int_equal(len, flen);
        assert_memory_equal(buf, first, len);
        free(buf);
        free(first);
      }
      tt_doc_clear(&d);
    }
    tt_policy_free(p);
  }
}

/* ---- G5 property: random two-replica races ------------------------------*/

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

/* Two replicas that both saw commit 1 write random fields. Concurrency must
 * be reported exactly when they touched the same field with different
 * values, and under manual exactly those become conflicts. */
static void test_g5_random(void **state) {
  (void)state;
  static const char *const fields[] = {"f0", "f1", "f2", "f3", "f4"};
  tt_policy_table *p = pol("manual");
  for (int iter = 0; iter < 500; iter++) {
    tt_doc d = {0};
    tt_merge_result r = run(&d, A, 1, 10, 0,
                            "[{\"kind\":\"create\",\"value\":{\"f0\":0,\"f1\":0,"
                            "\"f2\":0,\"f3\":0,\"f4\":0}}]",
                            1, p, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    int wrote_b[5] = {0}, vb[5] = {0};
    char ops[1024];
    size_t off = 0;
    off += (size_t)snprintf(ops + off, sizeof ops - off, "[");
    int nb = 1 + (int)rnd(3);
    for (int k = 0; k < nb; k++) {
      int f = (int)rnd(5), v = 1 + (int)rnd(2);
      wrote_b[f] = 1;
      vb[f] = v;
      off += (size_t)snprintf(ops + off, sizeof ops - off,
                              "%s{\"kind\":\"set\",\"field\":\"%s\",\"value\":%d,"
                              "\"base_value\":0}",
                              k ? "," : "", fields[f], v);
    }
    snprintf(ops + off, sizeof ops - off, "]");
    r = run(&d, B, 1, 20, 1, ops, 2, p, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    /* C writes one field. */
    int f = (int)rnd(5), v = 1 + (int)rnd(2);
    snprintf(ops, sizeof ops,
             "[{\"kind\":\"set\",\"field\":\"%s\",\"value\":%d,"
             "\"base_value\":0}]",
             fields[f], v);
    int same = wrote_b[f] && vb[f] != v;
    tt_intent in = mk(C, 1, 30, 1, ops);
    assert_int_equal(tt_merge_intent(&d, &in, 30, 3, p, &r), 0);
    assert_int_equal(r.concurrent, same ? 1 : 0);
    assert_int_equal(r.nconflicts, same ? 1 : 0);
    assert_int_equal(r.kind, same ? TT_OUT_CONFLICT : TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    tt_intent_clear(&in);
    tt_doc_clear(&d);
  }
  tt_policy_free(p);
}

/* ---- value rules and the replica's view --------------------------------*/

static void test_value_rules(void **state) {
  (void)state;
  json_t *out, *one = json_integer(1), *s = json_string("s");
  json_t *max = json_integer(INT64_MAX), *min = json_integer(INT64_MIN);
  json_t *neg = json_integer(-1);
  assert_int_equal(tt_value_incr(NULL, one, &out), 0);
  assert_int_equal(json_integer_value(out), 1);
  json_decref(out);
  assert_int_equal(tt_value_incr(max, one, &out), TETHER_ETYPE);
  assert_null(out);
  assert_int_equal(tt_value_incr(min, neg, &out), TETHER_ETYPE);
  assert_int_equal(tt_value_incr(s, one, &out), TETHER_ETYPE);
  assert_int_equal(tt_value_incr(one, s, &out), TETHER_ETYPE);
  json_t *r = json_real(1.0);
  assert_int_equal(tt_value_incr(r, one, &out), TETHER_ETYPE);
  json_decref(r);
  assert_int_equal(tt_value_incr(max, neg, &out), 0);
  assert_true(json_integer_value(out) == INT64_MAX - 1);
  json_decref(out);

  json_t *arr = J("[1,\"s\"]");
  assert_int_equal(tt_value_set_add(arr, s, &out), 0);
  assert_true(tt_canon_equal(out, arr));
  json_decref(out);
  assert_int_equal(tt_value_set_add(arr, max, &out), 0);
  json_t *w = J("[1,\"s\",9223372036854775807]");
  assert_true(tt_canon_equal(out, w));
  json_decref(w);
  json_decref(out);
  assert_int_equal(json_array_size(arr), 2); /* input untouched */
  assert_int_equal(tt_value_set_remove(arr, one, &out), 0);
  w = J("[\"s\"]");
  assert_true(tt_canon_equal(out, w));
  json_decref(w);
  json_decref(out);
  assert_int_equal(tt_value_set_remove(NULL, one, &out), 0);
  assert_int_equal(json_array_size(out), 0);
  json_decref(out);
  assert_int_equal(tt_value_set_add(s, one, &out), TETHER_ETYPE);
  assert_int_equal(tt_value_set_remove(s, one, &out), TETHER_ETYPE);
  json_decref(arr);
  json_decref(one);
  json_decref(s);
  json_decref(max);
  json_decref(min);
  json_decref(neg);
}

static void view_case(const char *view, const char *ops, int rc,
                      const char *want) {
  json_t *v = view ? J(view) : NULL;
  char *before = v ? tt_canon(v) : NULL;
  tt_intent in = mk(A, 1, 1, 0, ops);
  json_t *out = (json_t *)1;
  int got = tt_view_apply(v, &in, &out);
  if (got != rc)
    fail_msg("view_apply %s: rc %d want %d", ops, got, rc);
  if (rc || !want) {
    assert_null(out);
  } else {
    json_t *w = J(want);
    if (!tt_canon_equal(out, w))
      fail_msg("view_apply %s: got %s want %s", ops,
               out ? tt_canon(out) : "(absent)", want);
    json_decref(w);
  }
  if (v) { /* the input view is never changed */
    char *after = tt_canon(v);
    assert_string_equal(before, after);
    free(after);
  }
  free(before);
  json_decref(out == (json_t *)1 ? NULL : out);
  json_decref(v);
  tt_intent_clear(&in);
}

static void test_view_apply(void **state) {
  (void)state;
  const char *v0 = "{\"t\":\"a\",\"n\":1,\"s\":[1]}";
  view_case(v0, "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b\"}]", 0,
            "{\"t\":\"b\",\"n\":1,\"s\":[1]}");
  view_case(v0, "[{\"kind\":\"unset\",\"field\":\"t\"}]", 0,
            "{\"n\":1,\"s\":[1]}");
  view_case(v0, "[{\"kind\":\"unset\",\"field\":\"zz\"}]", 0, v0);
  view_case(v0, "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":4}]", 0,
            "{\"t\":\"a\",\"n\":5,\"s\":[1]}");
  view_case(v0,
            "[{\"kind\":\"add\",\"field\":\"s\",\"value\":2},"
            "{\"kind\":\"add\",\"field\":\"s\",\"value\":1},"
            "{\"kind\":\"remove\",\"field\":\"s\",\"value\":1}]",
            0, "{\"t\":\"a\",\"n\":1,\"s\":[2]}");
  view_case(v0, "[{\"kind\":\"delete\"}]", 0, NULL);
  view_case(v0, "[{\"kind\":\"create\",\"value\":{\"q\":1}}]", 0, "{\"q\":1}");
  view_case(v0,
            "[{\"kind\":\"resolve\",\"field\":\"t\",\"value\":\"r\","
            "\"conflict\":\"x\"}]",
            0, "{\"t\":\"r\",\"n\":1,\"s\":[1]}");
  view_case(v0,
            "[{\"kind\":\"resolve\",\"field\":\"t\",\"value\":null,"
            "\"unset\":true,\"conflict\":\"x\"}]",
            0, "{\"n\":1,\"s\":[1]}");
  view_case(v0,
            "[{\"kind\":\"resolve\",\"field\":\"_doc\",\"value\":null,"
            "\"unset\":true,\"conflict\":\"x\"}]",
            0, NULL);
  view_case(NULL,
            "[{\"kind\":\"resolve\",\"field\":\"_doc\",\"value\":{\"a\":1},"
            "\"conflict\":\"x\"}]",
            0, "{\"a\":1}");
  /* absent documents */
  view_case(NULL, "[{\"kind\":\"set\",\"field\":\"t\",\"value\":1}]", 0,
            "{\"t\":1}");
  view_case(NULL, "[{\"kind\":\"unset\",\"field\":\"t\"}]", 0, NULL);
  view_case(NULL, "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":-2}]", 0,
            "{\"n\":-2}");
  view_case(NULL, "[{\"kind\":\"delete\"},{\"kind\":\"add\",\"field\":\"s\","
                  "\"value\":1}]",
            0, "{\"s\":[1]}");
  /* misfits: ETYPE, nothing returned */
  view_case(v0, "[{\"kind\":\"incr\",\"field\":\"t\",\"value\":1}]",
            TETHER_ETYPE, NULL);
  view_case(v0,
            "[{\"kind\":\"set\",\"field\":\"x\",\"value\":1},"
            "{\"kind\":\"add\",\"field\":\"n\",\"value\":1}]",
            TETHER_ETYPE, NULL);
  view_case(v0, "[{\"kind\":\"remove\",\"field\":\"t\",\"value\":1}]",
            TETHER_ETYPE, NULL);
  view_case("{\"n\":9223372036854775807}",
            "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]", TETHER_ETYPE,
            NULL);
  view_case(v0,
            "[{\"kind\":\"resolve\",\"field\":\"_doc\",\"value\":1,"
            "\"conflict\":\"x\"}]",
            TETHER_ETYPE, NULL);
  view_case(v0, "[{\"kind\":\"set\",\"field\":\"_doc\",\"value\":1}]",
            TETHER_EINVAL, NULL);
  view_case(v0, "[{\"kind\":\"create\",\"value\":{\"\":1}}]", TETHER_EINVAL,
            NULL);
}

/* The replica's view and the server agree when nothing is concurrent. */
static void test_view_matches_server(void **state) {
  (void)state;
  static const char *const seq[] = {
      "[{\"kind\":\"create\",\"value\":{\"a\":1,\"s\":[\"x\"]}}]",
      "[{\"kind\":\"set\",\"field\":\"b\",\"value\":{\"k\":[1,2]}}]",
      "[{\"kind\":\"incr\",\"field\":\"a\",\"value\":41}]",
      "[{\"kind\":\"add\",\"field\":\"s\",\"value\":\"y\"},"
      "{\"kind\":\"remove\",\"field\":\"s\",\"value\":\"x\"}]",
      "[{\"kind\":\"unset\",\"field\":\"b\"}]",
      "[{\"kind\":\"delete\"}]",
      "[{\"kind\":\"incr\",\"field\":\"c\",\"value\":1}]",
      "[{\"kind\":\"create\",\"value\":{\"z\":true}}]",
      "[{\"kind\":\"resolve\",\"field\":\"z\",\"value\":null,\"unset\":true,"
      "\"conflict\":\"q\"}]",
  };
  tt_policy_table *p = pol("manual");
  tt_doc d = {0};
  json_t *view = NULL;
  for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
    tt_intent in = mk(A, i + 1, 100 + i, d.version, seq[i]);
    json_t *nv;
    assert_int_equal(tt_view_apply(view, &in, &nv), 0);
    json_decref(view);
    view = nv;
    tt_merge_result r;
    assert_int_equal(tt_merge_intent(&d, &in, in.hlc, i + 1, p, &r), 0);
    assert_int_equal(r.kind, TT_OUT_APPLIED);
    tt_merge_result_clear(&r);
    json_t *sv = tt_doc_view(&d);
    if (!tt_canon_equal(sv, view))
      fail_msg("step %zu: server %s, view %s", i, sv ? tt_canon(sv) : "-",
               view ? tt_canon(view) : "-");
    json_decref(sv);
    tt_intent_clear(&in);
  }
  json_decref(view);
  tt_doc_clear(&d);
  tt_policy_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_apply_fresh),
      cmocka_unit_test(test_not_concurrent),
      cmocka_unit_test(test_different_fields_never_conflict),
      cmocka_unit_test(test_lww),
      cmocka_unit_test(test_lww_clamped_future),
      cmocka_unit_test(test_server_wins),
      cmocka_unit_test(test_client_wins),
      cmocka_unit_test(test_manual),
      cmocka_unit_test(test_concurrent_same_value),
      cmocka_unit_test(test_incr),
      cmocka_unit_test(test_rejected_unchanged),
      cmocka_unit_test(test_sets),
      cmocka_unit_test(test_create),
      cmocka_unit_test(test_create_on_existing_concurrent),
      cmocka_unit_test(test_delete_plain),
      cmocka_unit_test(test_delete_vs_edit),
      cmocka_unit_test(test_write_to_tombstone),
      cmocka_unit_test(test_resolve),
      cmocka_unit_test(test_outcome_aggregation),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_g5_random),
      cmocka_unit_test(test_value_rules),
      cmocka_unit_test(test_view_apply),
      cmocka_unit_test(test_view_matches_server),
      cmocka_unit_test(test_create_vs_delete_name_order),
      cmocka_unit_test(test_reject_reason_utf8),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
