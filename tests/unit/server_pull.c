/* server_pull.c — the reconciler's pull path against a real LMDB store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server_helpers.h"

static void push_ok(th_env *e, th_rep *r, const char *coll, const char *id,
                    uint64_t base, const char *ops) {
  json_t *o;
  assert_int_equal(th_push1(e, r, th_intent(r, 1, coll, id, base, ops), &o),
                   200);
  if (!strcmp(th_str(o, "outcome"), "rejected"))
    fail_msg("rejected: %s", th_str(o, "reason"));
  json_decref(o);
}

static char *cursor_text(const json_t *resp) {
  return json_dumps(json_object_get(resp, "cursor"), JSON_COMPACT);
}

static void test_empty_server(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 3, 0);
  json_t *resp;
  assert_int_equal(th_pull(e, "[]", 0, &resp), 200);
  th_assert_json(resp, "{\"v\":1,\"cursor\":[0,0,0],\"more\":false,"
                       "\"changes\":[]}");
  json_decref(resp);
  assert_int_equal(th_pull(e, "[0,0,0]", 0, &resp), 200);
  json_decref(resp);
  th_env_free(e);
}

static void test_paging(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *resp;
  char id[16], *cur, *res = NULL;
  const long long want_n[] = {3, 3, 3, 1};
  /* the cursor stays until the partition is complete; the scan position
   * travels in "resume" */
  const char *want_cur[] = {"[0]", "[0]", "[0]", "[10]"};
  const char *want_res[] = {"[3]", "[6]", "[9]", NULL};

  th_rep_init(&r, 1);
  for (int i = 0; i < 10; i++) {
    snprintf(id, sizeof id, "d%02d", i);
    push_ok(e, &r, "c", id, 0,
            "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  }
  cur = strdup("[]");
  for (int page = 0; page < 4; page++) {
    assert_int_equal(th_pull_r(e, cur, res, 3, &resp), 200);
    json_t *ch = json_object_get(resp, "changes");
    assert_int_equal(json_array_size(ch), want_n[page]);
    for (size_t i = 0; i < json_array_size(ch); i++) {
      json_t *c = json_array_get(ch, i);
      snprintf(id, sizeof id, "d%02d", page * 3 + (int)i);
      assert_string_equal(th_str(c, "id"), id);
      assert_int_equal(th_int(c, "version"), page * 3 + (int)i + 1);
      assert_int_equal(th_int(c, "p"), 0);
    }
    assert_int_equal(json_is_true(json_object_get(resp, "more")), page < 3);
    free(cur);
    free(res);
    cur = cursor_text(resp);
    res = th_key_text(resp, "resume");
    assert_string_equal(cur, want_cur[page]);
    if (want_res[page])
      assert_string_equal(res, want_res[page]);
    else
      assert_null(res);
    json_decref(resp);
  }
  /* caught up */
  assert_int_equal(th_pull(e, cur, 3, &resp), 200);
  assert_null(json_object_get(resp, "resume"));
  assert_int_equal(json_array_size(json_object_get(resp, "changes")), 0);
  assert_false(json_is_true(json_object_get(resp, "more")));
  json_decref(resp);
  free(cur);

  /* an exact fit: 10 of 10 is not "more" */
  assert_int_equal(th_pull(e, "[]", 10, &resp), 200);
  assert_int_equal(json_array_size(json_object_get(resp, "changes")), 10);
  assert_false(json_is_true(json_object_get(resp, "more")));
  json_decref(resp);

  /* an updated document moves to the end of the changelog: it is sent
   * once, at its new version */
  push_ok(e, &r, "c", "d00", 1,
          "[{\"kind\":\"set\",\"field\":\"g\",\"value\":2}]");
  assert_int_equal(th_pull(e, "[]", 0, &resp), 200);
  json_t *ch = json_object_get(resp, "changes");
  assert_int_equal(json_array_size(ch), 10);
  json_t *last = json_array_get(ch, 9);
  assert_string_equal(th_str(last, "id"), "d00");
  assert_int_equal(th_int(last, "version"), 11);
  th_assert_json(json_object_get(last, "set"), "{\"f\":1,\"g\":2}");
  json_decref(resp);
  th_env_free(e);
}

/* A document whose changelog entry moved past the page cut still has a
 * field written before the cut: the next page must carry it. */
static void test_paging_keeps_moved_fields(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *resp, *ch;
  char *cur, *res;

  th_rep_init(&r, 7);
  push_ok(e, &r, "c", "y", 0,
          "[{\"kind\":\"set\",\"field\":\"a\",\"value\":1}]"); /* 1 */
  push_ok(e, &r, "c", "z1", 0,
          "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"); /* 2 */
  push_ok(e, &r, "c", "z2", 0,
          "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"); /* 3 */
  push_ok(e, &r, "c", "z3", 0,
          "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]"); /* 4 */
  push_ok(e, &r, "c", "y", 1,
          "[{\"kind\":\"set\",\"field\":\"b\",\"value\":2}]"); /* 5 */
  assert_int_equal(th_pull(e, "[]", 2, &resp), 200);
  ch = json_object_get(resp, "changes");
  assert_string_equal(th_str(json_array_get(ch, 0), "id"), "z1");
  assert_string_equal(th_str(json_array_get(ch, 1), "id"), "z2");
  cur = th_key_text(resp, "cursor");
  res = th_key_text(resp, "resume");
  assert_string_equal(cur, "[0]");
  assert_string_equal(res, "[3]");
  json_decref(resp);
  assert_int_equal(th_pull_r(e, cur, res, 2, &resp), 200);
  th_assert_json(resp, "{\"v\":1,\"cursor\":[5],\"more\":false,\"changes\":["
                       "{\"coll\":\"c\",\"id\":\"z3\",\"p\":0,"
                       "\"version\":4,\"set\":{\"f\":1}},"
                       "{\"coll\":\"c\",\"id\":\"y\",\"p\":0,"
                       "\"version\":5,\"set\":{\"a\":1,\"b\":2}}]}");
  json_decref(resp);
  free(cur);
  free(res);
  /* a client that lost "resume" starts the run again: repeats, loses
   * nothing */
  assert_int_equal(th_pull(e, "[0]", 2, &resp), 200);
  assert_string_equal(
      th_str(json_array_get(json_object_get(resp, "changes"), 0), "id"), "z1");
  json_decref(resp);
  th_env_free(e);
}

static void test_server_page_limit(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 4);
  th_rep r;
  json_t *resp;
  th_rep_init(&r, 2);
  for (int i = 0; i < 6; i++) {
    char id[8];
    snprintf(id, sizeof id, "x%d", i);
    push_ok(e, &r, "c", id, 0,
            "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  }
  /* asking for more than the page size gets the page size */
  assert_int_equal(th_pull(e, "[]", 100, &resp), 200);
  assert_int_equal(json_array_size(json_object_get(resp, "changes")), 4);
  assert_true(json_is_true(json_object_get(resp, "more")));
  json_decref(resp);
  assert_int_equal(th_pull(e, "[]", 0, &resp), 200);
  assert_int_equal(json_array_size(json_object_get(resp, "changes")), 4);
  json_decref(resp);
  th_env_free(e);
}

static void test_only_changed_fields(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *resp, *c;

  th_rep_init(&r, 3);
  push_ok(e, &r, "notes", "n", 0,
          "[{\"kind\":\"create\",\"value\":{\"a\":1,\"b\":2}}]");
  assert_int_equal(th_pull(e, "[]", 0, &resp), 200);
  c = json_array_get(json_object_get(resp, "changes"), 0);
  th_assert_json(c, "{\"coll\":\"notes\",\"id\":\"n\",\"p\":0,\"version\":1,"
                    "\"set\":{\"a\":1,\"b\":2}}");
  json_decref(resp);

  push_ok(e, &r, "notes", "n", 1,
          "[{\"kind\":\"set\",\"field\":\"b\",\"value\":3,\"base_value\":2}]");
  assert_int_equal(th_pull(e, "[1]", 0, &resp), 200);
  c = json_array_get(json_object_get(resp, "changes"), 0);
  th_assert_json(c, "{\"coll\":\"notes\",\"id\":\"n\",\"p\":0,\"version\":2,"
                    "\"set\":{\"b\":3}}");
  th_assert_json(json_object_get(resp, "cursor"), "[2]");
  json_decref(resp);

  push_ok(e, &r, "notes", "n", 2,
          "[{\"kind\":\"unset\",\"field\":\"a\",\"base_value\":1}]");
  assert_int_equal(th_pull(e, "[2]", 0, &resp), 200);
  c = json_array_get(json_object_get(resp, "changes"), 0);
  th_assert_json(c, "{\"coll\":\"notes\",\"id\":\"n\",\"p\":0,\"version\":3,"
                    "\"unset\":[\"a\"]}");
  json_decref(resp);
  /* from an older cursor both changes arrive together */
  assert_int_equal(th_pull(e, "[1]", 0, &resp), 200);
  c = json_array_get(json_object_get(resp, "changes"), 0);
  th_assert_json(c, "{\"coll\":\"notes\",\"id\":\"n\",\"p\":0,\"version\":3,"
                    "\"set\":{\"b\":3},\"unset\":[\"a\"]}");
  json_decref(resp);
  th_env_free(e);
}

static void test_tombstone(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep r;
  json_t *resp;

  th_rep_init(&r, 4);
  push_ok(e, &r, "c", "gone", 0,
          "[{\"kind\":\"create\",\"value\":{\"a\":1}}]");
  push_ok(e, &r, "c", "kept", 0,
          "[{\"kind\":\"create\",\"value\":{\"a\":2}}]");
  push_ok(e, &r, "c", "gone", 1, "[{\"kind\":\"delete\"}]");
  assert_int_equal(th_pull(e, "[2]", 0, &resp), 200);
  th_assert_json(resp, "{\"v\":1,\"cursor\":[3],\"more\":false,\"changes\":["
                       "{\"coll\":\"c\",\"id\":\"gone\",\"p\":0,"
                       "\"version\":3,\"deleted\":true}]}");
  json_decref(resp);
  assert_int_equal(th_pull(e, "[]", 0, &resp), 200);
  th_assert_json(json_object_get(resp, "changes"),
                 "[{\"coll\":\"c\",\"id\":\"kept\",\"p\":0,\"version\":2,"
                 "\"set\":{\"a\":2}},"
                 "{\"coll\":\"c\",\"id\":\"gone\",\"p\":0,\"version\":3,"
                 "\"deleted\":true}]");
  json_decref(resp);
  th_env_free(e);
}

static void pull_err(th_env *e, const char *body, int status,
                     const char *code) {
  json_t *req = json_loads(body, JSON_DECODE_ANY, NULL), *resp = NULL;
  int st = 0;
  assert_non_null(req);
  assert_int_equal(tt_server_pull(e->srv, req, &st, &resp), 0);
  assert_non_null(resp);
  if (st != status || strcmp(th_str(resp, "error"), code))
    fail_msg("%s -> %d %s, want %d %s", body, st, th_str(resp, "error"),
             status, code);
  assert_int_equal(th_int(resp, "v"), 1);
  json_decref(resp);
  json_decref(req);
}

#define RID "\"replica\":\"a0000000000000000000000000000000\""

static void test_bad_requests(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 2, 0);
  th_rep r;
  th_rep_init(&r, 5);
  push_ok(e, &r, "c", "a", 0,
          "[{\"kind\":\"set\",\"field\":\"f\",\"value\":1}]");
  unsigned p = tt_server_partition_of("c", "a", 2);

  pull_err(e, "[]", 400, "json");
  pull_err(e, "{\"v\":3," RID "}", 400, "version");
  pull_err(e, "{\"v\":1}", 400, "invalid");
  pull_err(e, "{\"v\":1,\"replica\":\"zz\"}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[0]}", 400, "cursor");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[0,0,0]}", 400, "cursor");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[0,-1]}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[0,\"1\"]}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":{}}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"limit\":0}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"limit\":\"5\"}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"wait_ms\":-1}", 400, "invalid");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[0,0],\"resume\":[0]}", 400,
           "cursor");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[1,1],\"resume\":[0,1]}", 400,
           "cursor");
  pull_err(e, "{\"v\":1," RID ",\"cursor\":[0,0],\"resume\":[5,5]}", 400,
           "cursor");
  /* ahead of the server in the partition that has a commit, and in the
   * one that has none */
  pull_err(e, p ? "{\"v\":1," RID ",\"cursor\":[0,2]}"
                : "{\"v\":1," RID ",\"cursor\":[2,0]}",
           400, "cursor");
  pull_err(e, p ? "{\"v\":1," RID ",\"cursor\":[1,0]}"
                : "{\"v\":1," RID ",\"cursor\":[0,1]}",
           400, "cursor");

  json_t *resp;
  assert_int_equal(th_pull(e, p ? "[0,1]" : "[1,0]", 0, &resp), 200);
  assert_int_equal(json_array_size(json_object_get(resp, "changes")), 0);
  json_decref(resp);
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.bad_requests, 17);
  assert_int_equal(st.pulls, 18);
  th_env_free(e);
}

static void test_partitions(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, 4, 0);
  th_rep r;
  json_t *resp;
  int seen[40] = {0};
  uint64_t head[4] = {0};

  th_rep_init(&r, 6);
  for (int i = 0; i < 40; i++) {
    char id[8];
    snprintf(id, sizeof id, "k%d", i);
    head[tt_server_partition_of("c", id, 4)]++;
    push_ok(e, &r, "c", id, 0,
            "[{\"kind\":\"set\",\"field\":\"i\",\"value\":1}]");
  }
  for (unsigned p = 0; p < 4; p++)
    assert_true(head[p] > 0); /* the hash spreads them */

  /* page through with a small limit: every document exactly once, in
   * partition order, versions ascending within a partition */
  char *cur = strdup("[]"), *res = NULL;
  int more = 1, pages = 0;
  long long lastp = -1, lastv = 0;
  while (more) {
    assert_int_equal(th_pull_r(e, cur, res, 7, &resp), 200);
    json_t *ch = json_object_get(resp, "changes"), *c;
    size_t i;
    assert_true(json_array_size(ch) <= 7);
    json_array_foreach(ch, i, c) {
      int k = atoi(th_str(c, "id") + 1);
      assert_true(k >= 0 && k < 40);
      seen[k]++;
      assert_int_equal(th_int(c, "p"),
                       tt_server_partition_of("c", th_str(c, "id"), 4));
      if (th_int(c, "p") == lastp) {
        assert_true(th_int(c, "version") > lastv);
      } else {
        assert_true(th_int(c, "p") > lastp);
      }
      lastp = th_int(c, "p");
      lastv = th_int(c, "version");
    }
    more = json_is_true(json_object_get(resp, "more"));
    free(cur);
    free(res);
    cur = cursor_text(resp);
    res = th_key_text(resp, "resume");
    json_decref(resp);
    assert_true(++pages < 20);
  }
  assert_null(res);
  for (int i = 0; i < 40; i++)
    assert_int_equal(seen[i], 1);
  char want[128];
  snprintf(want, sizeof want, "[%llu,%llu,%llu,%llu]",
           (unsigned long long)head[0], (unsigned long long)head[1],
           (unsigned long long)head[2], (unsigned long long)head[3]);
  assert_string_equal(cur, want);
  free(cur);
  th_env_free(e);
}

static void test_partition_function(void **state) {
  (void)state;
  /* Pinned: changing the function would move every stored document. */
  assert_int_equal(tt_server_partition_of("c", "a", 1), 0);
  assert_int_not_equal(tt_server_partition_of("ab", "c", 1 << 30),
                       tt_server_partition_of("a", "bc", 1 << 30));
  /* FNV-1a 32 of "c\0a" */
  uint32_t h = 2166136261u;
  const unsigned char bytes[] = {'c', 0, 'a'};
  for (size_t i = 0; i < 3; i++)
    h = (h ^ bytes[i]) * 16777619u;
  assert_int_equal(tt_server_partition_of("c", "a", 7), h % 7);
  /* Pinned values, so that keeping one FNV-1a in server/ moved nothing:
   * FNV-1a 32 of "notes\0n1", and of the id a0 11 11 ... 11. */
  assert_int_equal(tt_server_partition_of("notes", "n1", 1u << 30),
                   2375622675u % (1u << 30));
  uint8_t id[TT_ID_LEN];
  memset(id, 0x11, sizeof id);
  id[0] = 0xa0;
  assert_int_equal(tt_server_home_of(id, 1u << 30), 0x192f2724u % (1u << 30));
  assert_int_equal(tt_server_home_of(id, 7), 0x192f2724u % 7);
  assert_int_equal(tt_server_home_of(id, 1), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty_server),
      cmocka_unit_test(test_paging),
      cmocka_unit_test(test_paging_keeps_moved_fields),
      cmocka_unit_test(test_server_page_limit),
      cmocka_unit_test(test_only_changed_fields),
      cmocka_unit_test(test_tombstone),
      cmocka_unit_test(test_bad_requests),
      cmocka_unit_test(test_partitions),
      cmocka_unit_test(test_partition_function),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
