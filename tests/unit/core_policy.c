/* core_policy.c — the policy config parser and lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/policy.h"
#include "tether.h"

static void test_names(void **state) {
  (void)state;
  const char *names[] = {"lww", "server-wins", "client-wins", "manual"};
  for (int p = 0; p < TT_POLICY__COUNT; p++) {
    tt_policy got;
    assert_string_equal(tt_policy_name((tt_policy)p), names[p]);
    assert_int_equal(tt_policy_parse_name(names[p], &got), 0);
    assert_int_equal(got, p);
  }
  tt_policy got;
  assert_int_equal(tt_policy_parse_name("merge", &got), TETHER_EINVAL);
  assert_int_equal(tt_policy_parse_name(NULL, &got), TETHER_EINVAL);
}

static void test_empty_is_lww(void **state) {
  (void)state;
  tt_policy_table *t;
  char err[128];
  assert_int_equal(tt_policy_parse(NULL, 0, &t, err, sizeof err), 0);
  assert_non_null(t);
  assert_int_equal(tt_policy_lookup(t, "any", "f"), TT_POLICY_LWW);
  assert_int_equal(tt_policy_lookup(t, "any", NULL), TT_POLICY_LWW);
  tt_policy_free(t);
  assert_int_equal(tt_policy_parse("{}", 2, &t, err, sizeof err), 0);
  assert_int_equal(tt_policy_lookup(t, "x", "y"), TT_POLICY_LWW);
  tt_policy_free(t);
  assert_int_equal(tt_policy_lookup(NULL, "x", "y"), TT_POLICY_LWW);
  tt_policy_free(NULL);
}

static void test_lookup(void **state) {
  (void)state;
  const char *cfg =
      "{\"collections\":{"
      "\"notes\":{\"policy\":\"manual\",\"fields\":{\"n\":{\"policy\":\"lww\"},"
      "\"a\":{\"policy\":\"client-wins\"},\"z\":{\"policy\":\"server-wins\"}}},"
      "\"tasks\":{\"fields\":{\"done\":{\"policy\":\"server-wins\"}}},"
      "\"audit\":{\"policy\":\"server-wins\"},"
      "\"b\":{}}}";
  tt_policy_table *t;
  char err[128];
  assert_int_equal(tt_policy_parse(cfg, strlen(cfg), &t, err, sizeof err), 0);
  assert_int_equal(tt_policy_lookup(t, "notes", "n"), TT_POLICY_LWW);
  assert_int_equal(tt_policy_lookup(t, "notes", "a"), TT_POLICY_CLIENT_WINS);
  assert_int_equal(tt_policy_lookup(t, "notes", "z"), TT_POLICY_SERVER_WINS);
  assert_int_equal(tt_policy_lookup(t, "notes", "other"), TT_POLICY_MANUAL);
  assert_int_equal(tt_policy_lookup(t, "notes", NULL), TT_POLICY_MANUAL);
  assert_int_equal(tt_policy_lookup(t, "tasks", "done"), TT_POLICY_SERVER_WINS);
  assert_int_equal(tt_policy_lookup(t, "tasks", "x"), TT_POLICY_LWW);
  assert_int_equal(tt_policy_lookup(t, "tasks", NULL), TT_POLICY_LWW);
  assert_int_equal(tt_policy_lookup(t, "audit", "x"), TT_POLICY_SERVER_WINS);
  assert_int_equal(tt_policy_lookup(t, "b", "x"), TT_POLICY_LWW);
  assert_int_equal(tt_policy_lookup(t, "unknown", "n"), TT_POLICY_LWW);
  assert_int_equal(tt_policy_lookup(t, NULL, "n"), TT_POLICY_LWW);
  tt_policy_free(t);
}

static void expect_err(const char *cfg, int rc, const char *in_msg) {
  tt_policy_table *t = (tt_policy_table *)1;
  char err[200] = "";
  int got = tt_policy_parse(cfg, strlen(cfg), &t, err, sizeof err);
  if (got != rc)
    fail_msg("'%s': rc %d want %d (%s)", cfg, got, rc, err);
  assert_null(t);
  if (!strstr(err, in_msg))
    fail_msg("'%s': message '%s' lacks '%s'", cfg, err, in_msg);
}

static void test_errors(void **state) {
  (void)state;
  expect_err("{", TETHER_EJSON, "line");
  expect_err("[]", TETHER_ECONFIG, "object");
  expect_err("{\"colections\":{}}", TETHER_ECONFIG, "colections");
  expect_err("{\"collections\":[]}", TETHER_ECONFIG, "collections");
  expect_err("{\"collections\":{\"c\":1}}", TETHER_ECONFIG, "collections.c");
  expect_err("{\"collections\":{\"c\":{\"policy\":\"merge\"}}}", TETHER_ECONFIG,
             "collections.c.policy");
  expect_err("{\"collections\":{\"c\":{\"policy\":3}}}", TETHER_ECONFIG,
             "collections.c.policy");
  expect_err("{\"collections\":{\"c\":{\"polcy\":\"lww\"}}}", TETHER_ECONFIG,
             "polcy");
  expect_err("{\"collections\":{\"c\":{\"fields\":[]}}}", TETHER_ECONFIG,
             "collections.c.fields");
  expect_err("{\"collections\":{\"c\":{\"fields\":{\"f\":\"lww\"}}}}",
             TETHER_ECONFIG, "collections.c.fields.f");
  expect_err("{\"collections\":{\"c\":{\"fields\":{\"f\":{}}}}}", TETHER_ECONFIG,
             "collections.c.fields.f.policy");
  expect_err("{\"collections\":{\"c\":{\"fields\":{\"f\":{\"policy\":\"x\"}}}}}",
             TETHER_ECONFIG, "collections.c.fields.f.policy");
  expect_err("{\"collections\":{\"c\":{\"fields\":{\"f\":{\"policy\":\"lww\","
             "\"extra\":1}}}}}",
             TETHER_ECONFIG, "extra");
  expect_err("{\"collections\":{\"\":{}}}", TETHER_ECONFIG, "collection name");
  /* Duplicate keys are ambiguous: rejected. */
  expect_err("{\"collections\":{\"c\":{},\"c\":{}}}", TETHER_EJSON, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_empty_is_lww),
      cmocka_unit_test(test_lookup),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
