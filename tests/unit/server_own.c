/* server_own.c — clean outcomes and the pull's "own": an intent applied
 * alone on the version it was written against answers "clean": true (kept
 * in its outcome record for duplicate replays) and tags its changelog
 * entry with its replica and seq; a pull whose "own" covers the tag skips
 * the entry (server_int.h, the changelog value). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server/server_int.h"
#include "server_helpers.h"

#define HLC(ms) ((uint64_t)(ms) << 16)

static uint64_t g_hlc = HLC(TH_NOW);

/* Pushes one intent of R; returns its outcome (caller decrefs). */
static json_t *push1(th_env *e, th_rep *r, const char *coll, const char *id,
                     uint64_t base, const char *ops) {
  json_t *o;
  assert_int_equal(
      th_push1(e, r, th_intent(r, g_hlc++, coll, id, base, ops), &o), 200);
  if (!strcmp(th_str(o, "outcome"), "rejected"))
    fail_msg("rejected: %s", th_str(o, "reason"));
  return o;
}

static int is_clean(const json_t *o) {
  json_t *c = json_object_get(o, "clean");
  /* only ever true, or absent */
  assert_true(c == NULL || json_is_true(c));
  return c != NULL;
}

/* The ids of RESP's changes, in order, as "id@version,..." (free()). */
static char *change_ids(const json_t *resp) {
  json_t *ch = json_object_get(resp, "changes"), *c;
  size_t i;
  char *s = calloc(1, 4096);
  assert_non_null(s);
  json_array_foreach(ch, i, c) {
    size_t n = strlen(s);
    snprintf(s + n, 4096 - n, "%s%s@%lld", i ? "," : "", th_str(c, "id"),
             th_int(c, "version"));
  }
  return s;
}

static void expect_ids(const json_t *resp, const char *want) {
  char *got = change_ids(resp);
  if (strcmp(got, want))
    fail_msg("changes: got [%s] want [%s]", got, want);
  free(got);
}

static const json_t *change_of(const json_t *resp, const char *id) {
  json_t *ch = json_object_get(resp, "changes"), *c;
  size_t i;
  json_array_foreach(ch, i, c) if (!strcmp(th_str(c, "id"), id)) return c;
  return NULL;
}

/* The decoded changelog entry of partition 0 at SEQ. */
static void change_entry(th_env *e, uint64_t seq, char *key, size_t *klen,
                         int *tagged, uint8_t rid[TT_ID_LEN],
                         uint64_t *wseq) {
  tt_txn *t = NULL;
  uint8_t ck[12];
  tt_bytes v;
  tt_srv_change_key(ck, 0, seq);
  assert_int_equal(tt_txn_begin(e->st, 0, 0, &t), 0);
  assert_int_equal(tt_get(t, TT_TABLE_CHANGES, (tt_bytes){ck, 12}, &v), 0);
  *wseq = 0;
  assert_int_equal(tt_srv_change_decode(v, klen, tagged, rid, wseq), 0);
  memcpy(key, v.data, *klen);
  tt_abort(t);
}

static void expect_entry(th_env *e, uint64_t seq, const char *coll,
                         const char *id, const th_rep *writer,
                         uint64_t wseq) {
  char key[TT_SRV_DOCKEY_MAX], want[TT_SRV_DOCKEY_MAX];
  size_t klen, wl = tt_srv_doc_key(want, coll, id);
  int tagged = -1;
  uint8_t rid[TT_ID_LEN];
  uint64_t s;
  change_entry(e, seq, key, &klen, &tagged, rid, &s);
  assert_int_equal(klen, wl);
  assert_memory_equal(key, want, wl);
  assert_int_equal(tagged, writer != NULL);
  if (writer) {
    assert_memory_equal(rid, writer->id, TT_ID_LEN);
    assert_int_equal(s, wseq);
  }
}

/* ---- (a) which outcomes are clean --------------------------------------- */

static void test_clean_outcomes(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b;
  json_t *o;
  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);

  /* A creates n1: alone, on the version it saw (none). */
  o = push1(e, &a, "notes", "n1", 0,
            "[{\"kind\":\"create\",\"value\":{\"title\":\"A\"}}]");
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 1);
  assert_true(is_clean(o));
  json_decref(o);
  expect_entry(e, 1, "notes", "n1", &a, 1);

  /* A again on n1, still based on 0: applied (its own write is no
   * conflict), but the document was at 1. */
  o = push1(e, &a, "notes", "n1", 0,
            "[{\"kind\":\"set\",\"field\":\"body\",\"value\":\"x\"}]");
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 2);
  assert_false(is_clean(o));
  json_decref(o);
  expect_entry(e, 2, "notes", "n1", NULL, 0);

  /* B on the document A changed, based on its current version. */
  o = push1(e, &b, "notes", "n1", 2,
            "[{\"kind\":\"set\",\"field\":\"title\",\"value\":\"B\","
            "\"base_value\":\"A\"}]");
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 3);
  assert_true(is_clean(o));
  json_decref(o);
  expect_entry(e, 3, "notes", "n1", &b, 1);

  /* A on the title, based on 2 while B wrote it at 3: merged (lww). */
  o = push1(e, &a, "notes", "n1", 2,
            "[{\"kind\":\"set\",\"field\":\"title\",\"value\":\"A2\","
            "\"base_value\":\"A\"}]");
  assert_string_equal(th_str(o, "outcome"), "merged");
  assert_false(is_clean(o));
  long long c4 = th_int(o, "commit");
  json_decref(o);

  /* A write that changes nothing (the value it already has), on the
   * current version: applied, no new version, not clean. */
  o = push1(e, &b, "notes", "n1", (uint64_t)c4,
            "[{\"kind\":\"set\",\"field\":\"body\",\"value\":\"x\","
            "\"base_value\":\"x\"}]");
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), c4);
  assert_false(is_clean(o));
  json_decref(o);

  /* Counters, sets and deletes on the current version are clean. */
  o = push1(e, &b, "c", "k", 0,
            "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":2}]");
  assert_true(is_clean(o));
  long long ck = th_int(o, "commit");
  json_decref(o);
  o = push1(e, &a, "c", "k", (uint64_t)ck,
            "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":3},"
            "{\"kind\":\"add\",\"field\":\"s\",\"value\":\"v\"}]");
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_true(is_clean(o));
  ck = th_int(o, "commit");
  json_decref(o);
  expect_entry(e, (uint64_t)ck, "c", "k", &a, a.seq);
  o = push1(e, &b, "c", "k", (uint64_t)ck, "[{\"kind\":\"delete\"}]");
  assert_true(is_clean(o));
  ck = th_int(o, "commit");
  json_decref(o);
  /* Reviving the tombstone, based on it. */
  o = push1(e, &a, "c", "k", (uint64_t)ck,
            "[{\"kind\":\"set\",\"field\":\"r\",\"value\":1}]");
  assert_true(is_clean(o));
  json_decref(o);
  json_t *d = th_doc(e, "c", "k");
  th_assert_json(d, "{\"r\":1}");
  json_decref(d);
  /* Deleting what never existed changes nothing: not clean. */
  o = push1(e, &a, "c", "never", 0, "[{\"kind\":\"delete\"}]");
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_false(is_clean(o));
  json_decref(o);
  th_env_free(e);
}

/* Conflicts and resolves: a resolve applied on the current version is
 * still not clean (it settles a conflict record as well). */
static void test_conflict_and_resolve_not_clean(void **state) {
  (void)state;
  th_env *e = th_env_new("{\"collections\":{\"notes\":{\"policy\":"
                         "\"manual\"}}}",
                         0, 0);
  th_rep a, b;
  json_t *o, *c;
  char ops[256];
  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  o = push1(e, &a, "notes", "n", 0,
            "[{\"kind\":\"create\",\"value\":{\"title\":\"A\"}}]");
  assert_true(is_clean(o));
  json_decref(o);
  o = push1(e, &a, "notes", "n", 1,
            "[{\"kind\":\"set\",\"field\":\"title\",\"value\":\"C\","
            "\"base_value\":\"A\"}]");
  assert_true(is_clean(o));
  json_decref(o);
  o = push1(e, &b, "notes", "n", 1,
            "[{\"kind\":\"set\",\"field\":\"title\",\"value\":\"B\","
            "\"base_value\":\"A\"}]");
  assert_string_equal(th_str(o, "outcome"), "conflict");
  assert_false(is_clean(o));
  c = json_object_get(o, "conflict");
  snprintf(ops, sizeof ops,
           "[{\"kind\":\"resolve\",\"field\":\"title\",\"value\":\"BC\","
           "\"conflict\":\"%s\"}]",
           th_str(c, "id"));
  json_decref(o);
  o = push1(e, &b, "notes", "n", 2, ops);
  assert_string_equal(th_str(o, "outcome"), "applied");
  assert_int_equal(th_int(o, "commit"), 3);
  assert_false(is_clean(o));
  json_decref(o);
  expect_entry(e, 3, "notes", "n", NULL, 0);
  th_env_free(e);
}

/* ---- (b) a duplicate replay answers "clean" again ----------------------- */

static void test_duplicate_replay_keeps_clean(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a;
  json_t *in[3], *req, *r1, *r2;
  th_rep_init(&a, 0x33);
  in[0] = th_intent(&a, g_hlc++, "c", "x", 0,
                    "[{\"kind\":\"create\",\"value\":{\"n\":1}}]");
  in[1] = th_intent(&a, g_hlc++, "c", "x", 0,
                    "[{\"kind\":\"set\",\"field\":\"m\",\"value\":2}]");
  in[2] = th_intent(&a, g_hlc++, "c", "y", 0,
                    "[{\"kind\":\"incr\",\"field\":\"k\",\"value\":1}]");
  req = th_req(&a, in, 3);
  assert_int_equal(th_push(e, req, &r1), 200);
  json_t *o1 = json_object_get(r1, "outcomes");
  assert_int_equal(json_array_size(o1), 3);
  assert_true(is_clean(json_array_get(o1, 0)));
  assert_false(is_clean(json_array_get(o1, 1)));
  assert_true(is_clean(json_array_get(o1, 2)));
  for (int round = 0; round < 2; round++) {
    if (round == 1)
      th_reopen(e); /* from the stored records */
    assert_int_equal(th_push(e, req, &r2), 200);
    json_t *o2 = json_object_get(r2, "outcomes");
    assert_int_equal(json_array_size(o2), 3);
    for (size_t i = 0; i < 3; i++) {
      json_t *b = json_array_get(o2, i);
      assert_true(json_is_true(json_object_get(b, "duplicate")));
      json_t *bc = json_deep_copy(b);
      json_object_del(bc, "duplicate");
      char *x = tt_canon(json_array_get(o1, i)), *y = tt_canon(bc);
      if (strcmp(x, y))
        fail_msg("replay %zu: got %s want %s", i, y, x);
      free(x);
      free(y);
      json_decref(bc);
    }
    json_decref(r2);
  }
  json_decref(r1);
  json_decref(req);
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.intents_duplicate, 3); /* counted since the reopen */
  th_env_free(e);
}

/* ---- (c) the pull skips the puller's own clean writes ------------------- */

static void test_pull_skips_own(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b;
  json_t *o, *resp;
  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  /* A: a1 (seq 1, commit 1, clean), a2 (2, 2, clean), a3 created clean
   * (3, 3) then written again on the old base (4, 4: not clean). */
  const char *create = "[{\"kind\":\"create\",\"value\":{\"v\":1}}]";
  o = push1(e, &a, "c", "a1", 0, create);
  assert_true(is_clean(o));
  json_decref(o);
  o = push1(e, &a, "c", "a2", 0, create);
  assert_true(is_clean(o));
  json_decref(o);
  o = push1(e, &a, "c", "a3", 0, create);
  assert_true(is_clean(o));
  json_decref(o);
  o = push1(e, &a, "c", "a3", 0,
            "[{\"kind\":\"set\",\"field\":\"w\",\"value\":2}]");
  assert_false(is_clean(o));
  json_decref(o);
  /* B: b1 (B seq 1, commit 5, clean), then a2 on its current version
   * (B seq 2, commit 6, clean: a2's last write is B's). */
  o = push1(e, &b, "c", "b1", 0, create);
  assert_true(is_clean(o));
  json_decref(o);
  o = push1(e, &b, "c", "a2", 2,
            "[{\"kind\":\"set\",\"field\":\"by\",\"value\":\"B\"}]");
  assert_true(is_clean(o));
  assert_int_equal(th_int(o, "commit"), 6);
  json_decref(o);

  /* A with "own" covering its seqs: a1 is not sent; the cursor still
   * reaches the head. */
  const char *owns[] = {"4", "1", "1000000", "9007199254740993"};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(th_pull_as(e, a.hex, "[]", NULL, 0, owns[i], &resp), 200);
    expect_ids(resp, "a3@4,b1@5,a2@6");
    th_assert_json(json_object_get(resp, "cursor"), "[6]");
    assert_false(json_is_true(json_object_get(resp, "more")));
    assert_null(json_object_get(resp, "resume"));
    /* a3 and a2 come whole (from []), A's own fields included. */
    th_assert_json(json_object_get(change_of(resp, "a3"), "set"),
                   "{\"v\":1,\"w\":2}");
    th_assert_json(json_object_get(change_of(resp, "a2"), "set"),
                   "{\"v\":1,\"by\":\"B\"}");
    json_decref(resp);
  }
  /* "own" absent or 0: everything. */
  const char *none[] = {NULL, "0"};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(th_pull_as(e, a.hex, "[]", NULL, 0, none[i], &resp), 200);
    expect_ids(resp, "a1@1,a3@4,b1@5,a2@6");
    th_assert_json(json_object_get(resp, "cursor"), "[6]");
    json_decref(resp);
  }
  /* B with a large "own": its own b1 and a2 skipped, A's a1 and a3 sent. */
  assert_int_equal(th_pull_as(e, b.hex, "[]", NULL, 0, "1000", &resp), 200);
  expect_ids(resp, "a1@1,a3@4");
  th_assert_json(json_object_get(resp, "cursor"), "[6]");
  json_decref(resp);
  /* B with "own": 1 covers only its seq 1. */
  assert_int_equal(th_pull_as(e, b.hex, "[]", NULL, 0, "1", &resp), 200);
  expect_ids(resp, "a1@1,a3@4,a2@6");
  json_decref(resp);
  /* A third replica's "own" skips nothing of either. */
  assert_int_equal(th_pull_as(e, "a0000000000000000000000000000000", "[]",
                            NULL, 0, "1000", &resp),
                   200);
  expect_ids(resp, "a1@1,a3@4,b1@5,a2@6");
  json_decref(resp);
  /* From a cursor: only entries after it, own ones skipped. */
  assert_int_equal(th_pull_as(e, b.hex, "[4]", NULL, 0, "5", &resp), 200);
  expect_ids(resp, "");
  th_assert_json(json_object_get(resp, "cursor"), "[6]");
  assert_false(json_is_true(json_object_get(resp, "more")));
  json_decref(resp);
  /* Caught up with everything skipped: nothing, still at the head. */
  assert_int_equal(th_pull_as(e, b.hex, "[6]", NULL, 0, "5", &resp), 200);
  expect_ids(resp, "");
  th_assert_json(json_object_get(resp, "cursor"), "[6]");
  json_decref(resp);
  th_env_free(e);
}

/* Skipped entries cost a page 1/8 of a change each: with limit 1, a page
 * may skip 8 entries before it is full. */
static void test_skip_weight_paging(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a, b;
  json_t *o, *resp;
  char id[16], *cur, *res;
  th_rep_init(&a, 0x44);
  th_rep_init(&b, 0x55);
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof id, "d%02d", i);
    o = push1(e, &a, "c", id, 0,
              "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
    assert_true(is_clean(o));
    json_decref(o);
  }
  o = push1(e, &b, "c", "z", 0,
            "[{\"kind\":\"set\",\"field\":\"f\",\"value\":2}]");
  json_decref(o);
  static const char *want_ids[] = {"", "", "z@21"};
  static const char *want_res[] = {"[8]", "[16]", NULL};
  cur = strdup("[]");
  res = NULL;
  for (int page = 0; page < 3; page++) {
    assert_int_equal(th_pull_as(e, a.hex, cur, res, 1, "20", &resp), 200);
    expect_ids(resp, want_ids[page]);
    assert_int_equal(json_is_true(json_object_get(resp, "more")), page < 2);
    free(cur);
    free(res);
    cur = th_key_text(resp, "cursor");
    res = th_key_text(resp, "resume");
    assert_string_equal(cur, page < 2 ? "[0]" : "[21]");
    if (want_res[page])
      assert_string_equal(res, want_res[page]);
    else
      assert_null(res);
    json_decref(resp);
  }
  free(cur);
  free(res);
  /* With limit 3 a page holds 3 changes or 24 skips: one page. */
  assert_int_equal(th_pull_as(e, a.hex, "[]", NULL, 3, "20", &resp), 200);
  expect_ids(resp, "z@21");
  assert_false(json_is_true(json_object_get(resp, "more")));
  json_decref(resp);
  th_env_free(e);
}

/* ---- (d) a bad "own" ---------------------------------------------------- */

static void test_own_invalid(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a;
  json_t *o, *resp;
  th_rep_init(&a, 0x11);
  o = push1(e, &a, "c", "x", 0, "[{\"kind\":\"set\",\"field\":\"f\","
                                "\"value\":1}]");
  json_decref(o);
  assert_int_equal(th_pull_as(e, a.hex, "[]", NULL, 0, NULL, &resp), 200);
  char *before = tt_canon(resp);
  json_decref(resp);
  tt_server_stats s0, s1;
  tt_server_get_stats(e->srv, &s0);
  static const char *bad[] = {"-1", "\"x\"", "1.5", "null", "true",
                              "[1]", "{}", "\"1\"", "-9223372036854775808"};
  const size_t nbad = sizeof bad / sizeof *bad;
  for (size_t i = 0; i < nbad; i++) {
    assert_int_equal(th_pull_as(e, a.hex, "[]", NULL, 0, bad[i], &resp), 400);
    assert_string_equal(th_str(resp, "error"), "invalid");
    assert_non_null(strstr(th_str(resp, "message"), "own"));
    assert_null(json_object_get(resp, "changes"));
    json_decref(resp);
  }
  tt_server_get_stats(e->srv, &s1);
  assert_int_equal(s1.bad_requests - s0.bad_requests, nbad);
  assert_int_equal(s1.commits, s0.commits);
  /* Nothing changed: the same answer as before. */
  assert_int_equal(th_pull_as(e, a.hex, "[]", NULL, 0, NULL, &resp), 200);
  char *after = tt_canon(resp);
  assert_string_equal(before, after);
  free(before);
  free(after);
  json_decref(resp);
  th_env_free(e);
}

/* ---- (e) tt_srv_change_decode ------------------------------------------- */

static int decode(const void *v, size_t n, size_t *klen, int *tagged,
                  uint8_t rid[TT_ID_LEN], uint64_t *seq) {
  *klen = 12345;
  *tagged = 7;
  memset(rid, 0xee, TT_ID_LEN);
  *seq = 0;
  return tt_srv_change_decode((tt_bytes){v, n}, klen, tagged, rid, seq);
}

static void test_change_decode(void **state) {
  (void)state;
  uint8_t rid[TT_ID_LEN], buf[TT_SRV_CHANGE_MAX + 8];
  size_t klen;
  int tagged;
  uint64_t seq;
  uint8_t who[TT_ID_LEN] = {0xa0, 0, 1, 0, 2, 0, 0, 3,
                            4,    5, 6, 7, 8, 9, 0, 0}; /* NULs inside */

  /* Old (untagged) value. */
  assert_int_equal(decode("notes\0n1", 8, &klen, &tagged, rid, &seq), 0);
  assert_int_equal(klen, 8);
  assert_int_equal(tagged, 0);

  /* Tagged: the key, NUL, replica id, be64 seq (with NUL bytes). */
  memcpy(buf, "notes\0n1\0", 9);
  memcpy(buf + 9, who, TT_ID_LEN);
  tt_be64_put(buf + 9 + TT_ID_LEN, UINT64_C(0x0100000000000002));
  size_t tl = 9 + TT_ID_LEN + 8;
  assert_int_equal(tl, 8 + TT_SRV_CHANGE_TAG_LEN);
  assert_int_equal(decode(buf, tl, &klen, &tagged, rid, &seq), 0);
  assert_int_equal(klen, 8);
  assert_int_equal(tagged, 1);
  assert_memory_equal(rid, who, TT_ID_LEN);
  assert_int_equal(seq, UINT64_C(0x0100000000000002));

  /* The tag one byte short or long, or only its NUL. */
  assert_int_equal(decode(buf, tl - 1, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);
  buf[tl] = 7;
  assert_int_equal(decode(buf, tl + 1, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);
  assert_int_equal(decode(buf, 9, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);
  assert_int_equal(decode("notes\0n1\0x", 10, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);
  /* A tag right after the key's NUL (empty id). */
  assert_int_equal(decode("notes\0\0", 7, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);

  /* Empty, no NUL, empty collection. */
  assert_int_equal(decode("", 0, &klen, &tagged, rid, &seq), TETHER_ECORRUPT);
  assert_int_equal(decode("notesn1", 7, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);
  assert_int_equal(decode("\0n1", 3, &klen, &tagged, rid, &seq),
                   TETHER_ECORRUPT);

  /* Lengths: the longest key is fine, untagged and tagged; one more byte
   * of key is not, nor is anything over TT_SRV_CHANGE_MAX. */
  memset(buf, 'k', sizeof buf);
  buf[TT_MAX_NAME] = 0; /* coll of TT_MAX_NAME, id of TT_MAX_NAME */
  assert_int_equal(decode(buf, TT_SRV_DOCKEY_MAX, &klen, &tagged, rid, &seq),
                   0);
  assert_int_equal(klen, TT_SRV_DOCKEY_MAX);
  assert_int_equal(tagged, 0);
  assert_int_equal(
      decode(buf, TT_SRV_DOCKEY_MAX + 1, &klen, &tagged, rid, &seq),
      TETHER_ECORRUPT);
  buf[TT_SRV_DOCKEY_MAX] = 0;
  memcpy(buf + TT_SRV_DOCKEY_MAX + 1, who, TT_ID_LEN);
  tt_be64_put(buf + TT_SRV_DOCKEY_MAX + 1 + TT_ID_LEN, 9);
  assert_int_equal(decode(buf, TT_SRV_CHANGE_MAX, &klen, &tagged, rid, &seq),
                   0);
  assert_int_equal(klen, TT_SRV_DOCKEY_MAX);
  assert_int_equal(tagged, 1);
  assert_int_equal(seq, 9);
  assert_int_equal(
      decode(buf, TT_SRV_CHANGE_MAX + 1, &klen, &tagged, rid, &seq),
      TETHER_ECORRUPT);
  /* A key one byte too long, with a tag of the right length: over
   * TT_SRV_CHANGE_MAX as a whole. */
  memset(buf, 'k', sizeof buf);
  buf[TT_MAX_NAME] = 0;
  buf[TT_SRV_DOCKEY_MAX + 1] = 0;
  memset(buf + TT_SRV_DOCKEY_MAX + 2, 1, TT_SRV_CHANGE_TAG_LEN - 1);
  assert_int_equal(
      decode(buf, TT_SRV_CHANGE_MAX + 1, &klen, &tagged, rid, &seq),
      TETHER_ECORRUPT);
}

/* A corrupt changelog value fails the pull (500), never a wrong answer. */
static void test_corrupt_change_value(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep a;
  json_t *o, *resp;
  tt_txn *t;
  uint8_t ck[12];
  th_rep_init(&a, 0x11);
  o = push1(e, &a, "c", "x", 0, "[{\"kind\":\"set\",\"field\":\"f\","
                                "\"value\":1}]");
  assert_true(is_clean(o));
  json_decref(o);
  tt_srv_change_key(ck, 0, 1);
  assert_int_equal(tt_txn_begin(e->st, 0, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_CHANGES, (tt_bytes){ck, 12},
                          (tt_bytes){"c\0x\0short", 9}),
                   0);
  assert_int_equal(tt_commit(t), 0);
  /* (tt_server_pull returns the store error, with the 500 answer set.) */
  json_t *req = json_pack("{s:i,s:s,s:[],s:i}", "v", 1, "replica", a.hex,
                          "cursor", "own", 5);
  int st = 0;
  resp = NULL;
  assert_int_equal(tt_server_pull(e->srv, req, &st, &resp), TETHER_ECORRUPT);
  assert_int_equal(st, 500);
  assert_string_equal(th_str(resp, "error"), "internal");
  json_decref(resp);
  json_decref(req);
  th_env_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clean_outcomes),
      cmocka_unit_test(test_conflict_and_resolve_not_clean),
      cmocka_unit_test(test_duplicate_replay_keeps_clean),
      cmocka_unit_test(test_pull_skips_own),
      cmocka_unit_test(test_skip_weight_paging),
      cmocka_unit_test(test_own_invalid),
      cmocka_unit_test(test_change_decode),
      cmocka_unit_test(test_corrupt_change_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
