/* core_canon.c — the canonical writer (core/util.c) writes exactly the
 * bytes jansson's dumper writes with JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENCODE_ANY, which is how the canonical form is defined; hashes
 * stored by earlier versions depend on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/util.h"

#define JANSSON_CANON (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Strings mixing plain ASCII, every character that needs escaping, and
 * 2-, 3- and 4-byte UTF-8. */
static void rnd_text(char *out, size_t max, size_t *len) {
  static const char *const pieces[] = {
      "a", "Z", "0", " ", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t",
      "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
      "\xe2\x80\xa8", "key", "title"};
  size_t n = 0, want = rnd() % 24;
  for (size_t i = 0; i < want; i++) {
    const char *p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
    size_t pl = strlen(p);
    if (n + pl >= max) break;
    memcpy(out + n, p, pl);
    n += pl;
  }
  out[n] = 0;
  *len = n;
}

static json_t *rnd_value(int depth) {
  char text[256];
  size_t len;
  switch (rnd() % (depth > 4 ? 6 : 8)) {
  case 0: return json_null();
  case 1: return json_boolean(rnd() & 1);
  case 2: {
    static const json_int_t edge[] = {0, -1, 1, INT64_MAX, INT64_MIN, 42};
    return json_integer(rnd() & 1 ? edge[rnd() % 6]
                                  : (json_int_t)(rnd() >> (rnd() % 64)));
  }
  case 3: {
    static const double edge[] = {0.0, -0.0, 0.1, 1.0, 1e300, 1e-7, -2.5e-300,
                                  123456789.0, 5e-324, 1.7976931348623157e308};
    if (rnd() & 1) return json_real(edge[rnd() % 10]);
    double d;
    uint64_t bits = rnd();
    memcpy(&d, &bits, sizeof d);
    if (d != d || d - d != 0) d = 3.25; /* jansson refuses NaN and inf */
    return json_real(d);
  }
  case 4:
  case 5:
    rnd_text(text, sizeof text, &len);
    return json_stringn(text, len);
  case 6: {
    json_t *a = json_array();
    size_t n = rnd() % 6;
    for (size_t i = 0; i < n; i++) json_array_append_new(a, rnd_value(depth + 1));
    return a;
  }
  default: {
    json_t *o = json_object();
    /* Sometimes more than 16 members, so both sort paths run. */
    size_t n = rnd() % 4 == 0 ? 17 + rnd() % 30 : rnd() % 8;
    for (size_t i = 0; i < n; i++) {
      rnd_text(text, sizeof text, &len);
      json_object_setn_new(o, text, len, rnd_value(depth + 1));
    }
    return o;
  }
  }
}

typedef struct {
  char *b;
  size_t len;
} collect;

static int collect_cb(const char *buf, size_t size, void *data) {
  collect *c = data;
  c->b = realloc(c->b, c->len + size + 1);
  memcpy(c->b + c->len, buf, size);
  c->len += size;
  c->b[c->len] = 0;
  return 0;
}

static void same_as_jansson(const json_t *v) {
  char *want = json_dumps(v, JANSSON_CANON);
  assert_non_null(want);
  char *got = tt_canon(v);
  assert_non_null(got);
  assert_string_equal(got, want);
  size_t n = 0;
  assert_int_equal(tt_canon_len(v, strlen(want), &n), 0);
  assert_int_equal(n, strlen(want));
  if (n > 0) assert_int_equal(tt_canon_len(v, n - 1, &n), TETHER_ETOOBIG);
  collect c = {NULL, 0};
  assert_int_equal(tt_canon_dump(v, collect_cb, &c), 0);
  assert_int_equal(c.len, strlen(want));
  assert_memory_equal(c.b, want, c.len);
  free(c.b);
  free(got);
  free(want);
}

static void test_random_trees(void **state) {
  (void)state;
  for (int i = 0; i < 3000; i++) {
    json_t *v = rnd_value(0);
    assert_non_null(v);
    same_as_jansson(v);
    json_decref(v);
  }
}

static void test_edges(void **state) {
  (void)state;
  static const char *const texts[] = {
      "{}", "[]", "\"\"", "0", "-0.0", "1e300", "1e-7", "0.1", "1.0",
      "{\"b\":1,\"a\":{\"d\":[],\"c\":{}},\"ab\":2,\"\":3}",
      "[\"\\u0000x\"]", "[\"\\u2028\\u00e9\\/\"]", "[1.5e-300,2E+10]"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    json_t *v = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(v);
    same_as_jansson(v);
    json_decref(v);
  }
  /* Longer than the streaming stage, so it is flushed mid-string. */
  char *big = malloc(20000);
  for (int i = 0; i < 19999; i++) big[i] = (char)('a' + i % 26);
  big[19999] = 0;
  big[5000] = '\n';
  json_t *v = json_pack("{s:s,s:[s,s]}", "x", big, "y", big, big);
  same_as_jansson(v);
  json_decref(v);
  free(big);
  /* Deep nesting. */
  json_t *deep = json_integer(7);
  for (int i = 0; i < 500; i++) deep = json_pack("{s:o}", "k", deep);
  same_as_jansson(deep);
  json_decref(deep);
}

static void test_bad_utf8_and_bounds(void **state) {
  (void)state;
  json_t *bad = json_pack("{s:o}", "k", json_stringn_nocheck("a\xff", 2));
  assert_null(json_dumps(bad, JANSSON_CANON));
  assert_null(tt_canon(bad));
  tt_buf b = {0};
  assert_int_equal(tt_buf_add(&b, "keep", 4), 0);
  assert_int_equal(tt_canon_buf(&b, bad, 0), TETHER_EINVAL);
  assert_int_equal(b.len, 4); /* unchanged on error */
  json_t *ok = json_pack("{s:s}", "title", "hello");
  assert_int_equal(tt_canon_buf(&b, ok, 10), TETHER_ETOOBIG);
  assert_int_equal(b.len, 4);
  assert_int_equal(tt_canon_buf(&b, ok, 17), 0);
  assert_int_equal(b.len, 4 + 17);
  assert_memory_equal(b.data, "keep{\"title\":\"hello\"}", b.len);
  tt_buf_free(&b);
  assert_null(b.data);
  json_decref(ok);
  json_decref(bad);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_trees),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_bad_utf8_and_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
