/* core_util.c — hex, canonical JSON, names, errors, big-endian helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static void test_hex_roundtrip(void **state) {
  (void)state;
  uint8_t in[5] = {0x00, 0x01, 0xab, 0xff, 0x7e}, out[5];
  char hex[11];
  tt_hex_encode(in, 5, hex);
  assert_string_equal(hex, "0001abff7e");
  assert_int_equal(tt_hex_decode(hex, out, 5), 0);
  assert_memory_equal(in, out, 5);
  assert_int_equal(tt_hex_decode("0001ABFF7E", out, 5), 0);
  assert_memory_equal(in, out, 5);
  tt_hex_encode(in, 0, hex);
  assert_string_equal(hex, "");
}

static void test_hex_invalid(void **state) {
  (void)state;
  uint8_t out[4];
  assert_int_equal(tt_hex_decode("0001abg0", out, 4), TETHER_EINVAL);
  assert_int_equal(tt_hex_decode("0001ab", out, 4), TETHER_EINVAL); /* short */
  assert_int_equal(tt_hex_decode("0001ab0", out, 4), TETHER_EINVAL); /* odd */
  assert_int_equal(tt_hex_decode(" 001ab00", out, 4), TETHER_EINVAL);
  assert_int_equal(tt_hex_decode(NULL, out, 4), TETHER_EINVAL);
}

static json_t *parse(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  assert_non_null(j);
  return j;
}

static void canon_is(const char *in, const char *expect) {
  json_t *j = parse(in);
  char *c = tt_canon(j);
  assert_non_null(c);
  assert_string_equal(c, expect);
  size_t n = 0;
  assert_int_equal(tt_canon_len(j, 1 << 20, &n), 0);
  assert_int_equal(n, strlen(expect));
  free(c);
  json_decref(j);
}

static void test_canon(void **state) {
  (void)state;
  canon_is("{ \"b\" : 1, \"a\" : [ 1, 2.5, true, null ], \"c\": {\"z\":1,\"y\":2}}",
           "{\"a\":[1,2.5,true,null],\"b\":1,\"c\":{\"y\":2,\"z\":1}}");
  canon_is("\"caf\\u00e9 / \\u001f\"", "\"caf\xc3\xa9 / \\u001F\"");
  canon_is("1.0", "1.0");
  canon_is("-0.0", "-0.0");
  canon_is("0.1", "0.10000000000000001");
  canon_is("1e300", "1.0000000000000001e300");
  canon_is("-9223372036854775808", "-9223372036854775808");
  canon_is("{\"\\u00e9\":1,\"z\":2,\"Z\":3}", "{\"Z\":3,\"z\":2,\"\xc3\xa9\":1}");
  canon_is("\"a\\nb\\tc\\\"\\\\\"", "\"a\\nb\\tc\\\"\\\\\"");
  assert_null(tt_canon(NULL));
}

static void test_canon_len_limit(void **state) {
  (void)state;
  json_t *j = parse("[\"0123456789\",\"0123456789\"]");
  size_t n = 0;
  assert_int_equal(tt_canon_len(j, 27, &n), 0);
  assert_int_equal(n, 27);
  assert_int_equal(tt_canon_len(j, 26, &n), TETHER_ETOOBIG);
  assert_int_equal(tt_canon_len(NULL, 26, &n), TETHER_EINVAL);
  json_decref(j);
}

static void test_canon_equal(void **state) {
  (void)state;
  json_t *a = parse("{\"x\":[1,{\"p\":2,\"q\":3}],\"y\":\"s\"}");
  json_t *b = parse("{\"y\":\"s\",\"x\":[1,{\"q\":3,\"p\":2}]}");
  json_t *c = parse("{\"y\":\"s\",\"x\":[1,{\"q\":3,\"p\":2.0}]}");
  json_t *d = parse("{\"y\":\"s\",\"x\":[{\"q\":3,\"p\":2},1]}");
  assert_true(tt_canon_equal(a, b));
  assert_false(tt_canon_equal(a, c)); /* integer vs real */
  assert_false(tt_canon_equal(a, d)); /* arrays are ordered */
  assert_true(tt_canon_equal(NULL, NULL));
  assert_false(tt_canon_equal(a, NULL));
  assert_false(tt_canon_equal(NULL, a));
  json_t *z = parse("0.0"), *nz = parse("-0.0");
  assert_false(tt_canon_equal(z, nz));
  json_t *n1 = parse("\"a\\u0000b\""), *n2 = parse("\"a\\u0000c\"");
  assert_false(tt_canon_equal(n1, n2));
  json_t *n3 = parse("\"a\\u0000b\"");
  assert_true(tt_canon_equal(n1, n3));
  json_t *nul = parse("null"), *f = parse("false");
  assert_false(tt_canon_equal(nul, f));
  assert_false(tt_canon_equal(nul, NULL)); /* JSON null is not absence */
  json_t *o1 = parse("{\"a\":1}"), *o2 = parse("{\"a\":1,\"b\":1}");
  assert_false(tt_canon_equal(o1, o2));
  assert_false(tt_canon_equal(o2, o1));
  json_t *o3 = parse("{\"b\":1}");
  assert_false(tt_canon_equal(o1, o3));
  json_t *all[] = {a, b, c, d, z, nz, n1, n2, n3, nul, f, o1, o2, o3};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    json_decref(all[i]);
}

static void test_name_valid(void **state) {
  (void)state;
  char big[TT_MAX_NAME + 2];
  memset(big, 'x', sizeof big);
  big[TT_MAX_NAME] = '\0';
  assert_true(tt_name_valid(big));
  big[TT_MAX_NAME] = 'x';
  big[TT_MAX_NAME + 1] = '\0';
  assert_false(tt_name_valid(big));
  assert_false(tt_name_valid(""));
  assert_false(tt_name_valid(NULL));
  assert_true(tt_name_valid("a"));
  assert_true(tt_name_valid("caf\xc3\xa9"));
}

static void test_errf(void **state) {
  (void)state;
  char buf[8];
  tt_errf(buf, sizeof buf, "%s-%d", "abcdef", 42);
  assert_string_equal(buf, "abcdef-");
  tt_errf(NULL, 0, "%d", 1); /* no crash */
  tt_errf(buf, 0, "%d", 1);
  assert_string_equal(buf, "abcdef-");
}

/* tt_i64_text writes what "%lld" writes: the bounds, zero, each power of
 * ten and its neighbours, and a spread of values in between. */
static void test_i64_text(void **state) {
  (void)state;
  int64_t vals[200];
  size_t n = 0;
  vals[n++] = 0;
  vals[n++] = INT64_MAX;
  vals[n++] = INT64_MIN;
  vals[n++] = INT64_MIN + 1;
  for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
    vals[n++] = p;
    vals[n++] = p - 1;
    vals[n++] = -p;
    vals[n++] = -(p + 1);
  }
  uint64_t x = 0x9e3779b97f4a7c15u;
  while (n < sizeof vals / sizeof vals[0]) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    vals[n++] = (int64_t)x >> (x % 60);
  }
  for (size_t i = 0; i < n; i++) {
    char want[32], got[TT_I64_TEXT_MAX + 1];
    int wn = snprintf(want, sizeof want, "%lld", (long long)vals[i]);
    size_t gn = tt_i64_text(vals[i], got);
    got[gn] = 0;
    assert_int_equal(gn, (size_t)wn);
    assert_string_equal(got, want);
  }
}

static void test_be(void **state) {
  (void)state;
  uint8_t b8[8], b4[4];
  tt_be64_put(b8, UINT64_C(0x0102030405060708));
  const uint8_t e8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  assert_memory_equal(b8, e8, 8);
  assert_true(tt_be64_get(b8) == UINT64_C(0x0102030405060708));
  tt_be64_put(b8, UINT64_MAX);
  assert_true(tt_be64_get(b8) == UINT64_MAX);
  tt_be32_put(b4, 0xa1b2c3d4u);
  const uint8_t e4[4] = {0xa1, 0xb2, 0xc3, 0xd4};
  assert_memory_equal(b4, e4, 4);
  assert_int_equal(tt_be32_get(b4), 0xa1b2c3d4u);
  /* Byte order sorts like the numbers. */
  uint8_t x[8], y[8];
  tt_be64_put(x, 255);
  tt_be64_put(y, 256);
  assert_true(memcmp(x, y, 8) < 0);
}

static void test_errors(void **state) {
  (void)state;
  assert_string_equal(tether_strerror(TETHER_OK), "success");
  assert_string_equal(tether_strerror(TETHER_EINVAL), "invalid argument");
  assert_string_equal(tether_strerror(TETHER_EUNAVAILABLE),
                      "backend unavailable");
  assert_string_equal(tether_strerror(-9999), "unknown error");
  assert_string_equal(tether_strerror(5), "unknown error");
  assert_string_equal(tether_err_name(TETHER_OK), "OK");
  assert_string_equal(tether_err_name(TETHER_ECORRUPT), "ECORRUPT");
  assert_string_equal(tether_err_name(TETHER_ECONFIG), "ECONFIG");
  assert_string_equal(tether_err_name(-424242), "unknown error");
  for (int e = 0; e >= TETHER_EUNAVAILABLE; e--) {
    assert_string_not_equal(tether_strerror(e), "unknown error");
    assert_string_not_equal(tether_err_name(e), "unknown error");
  }
  assert_string_equal(tether_version(), TETHER_VERSION_STRING);
  tether_free(NULL);
  tether_free(malloc(3));
}

/* Exactly what jansson accepts: checked against json_stringn on each. */
static void test_utf8_valid(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t n;
    int ok;
  } cases[] = {
      {"", 0, 1},
      {"plain", 5, 1},
      {"\xc3\xa9", 2, 1},             /* é */
      {"\xe2\x82\xac", 3, 1},         /* € */
      {"\xf0\x9f\x98\x80", 4, 1},     /* emoji */
      {"\xc3", 1, 0},                 /* truncated */
      {"\xe2\x82", 2, 0},             /* truncated */
      {"\xc0\xaf", 2, 0},             /* overlong '/' */
      {"\xe0\x80\xaf", 3, 0},         /* overlong */
      {"\xed\xa0\x80", 3, 0},         /* surrogate */
      {"\xf4\x90\x80\x80", 4, 0},     /* above U+10FFFF */
      {"\xff", 1, 0},
      {"\x80", 1, 0},                 /* lone continuation */
      {"a\xc3\xa9" "b\xe2\x82", 6, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(tt_utf8_valid(cases[i].s, cases[i].n), cases[i].ok);
    json_t *j = json_stringn(cases[i].s, cases[i].n);
    assert_int_equal(j != NULL, cases[i].ok);
    json_decref(j);
  }
}

/* The longest prefix within a byte budget that is still UTF-8: a quoted
 * name cut by "%.100s" could end in half a character, and such a message
 * can no longer become a JSON string. */
/* The word-at-a-time scan must stop exactly where a byte-at-a-time one
 * does: every special byte class, at every offset of a buffer long enough
 * to cross several words, with plain bytes on either side that sit next to
 * the classes' bounds (0x1f/0x20, 0x7f/0x80, '"'+1, '\\'-1). */
static void test_json_plain_end(void **state) {
  (void)state;
  static const unsigned char specials[] = {0x00, 0x01, 0x1f, '"', '\\',
                                           0x80, 0xc3, 0xff};
  static const unsigned char plains[] = {0x20, 0x7f, '#', '[', ']', 'a'};
  unsigned char buf[40];
  for (size_t pl = 0; pl < sizeof plains; pl++) {
    for (size_t len = 0; len <= sizeof buf; len++) {
      memset(buf, plains[pl], sizeof buf);
      assert_ptr_equal(tt_json_plain_end(buf, buf + len), buf + len);
      for (size_t at = 0; at < len; at++) {
        for (size_t sp = 0; sp < sizeof specials; sp++) {
          memset(buf, plains[pl], sizeof buf);
          buf[at] = specials[sp];
          if (at + 3 < len) buf[at + 3] = '"'; /* a later one must not win */
          assert_ptr_equal(tt_json_plain_end(buf, buf + len), buf + at);
          /* Bytes past END are never looked at as an answer. */
          assert_ptr_equal(tt_json_plain_end(buf, buf + at), buf + at);
        }
      }
    }
  }
}

static void test_utf8_prefix(void **state) {
  (void)state;
  char name[1 + 60 * 2 + 1];
  name[0] = 'a';
  for (int i = 0; i < 60; i++)
    memcpy(name + 1 + 2 * i, "\xc3\xa9", 2); /* "a" + 60 x "é" */
  name[sizeof name - 1] = '\0';
  /* 100 bytes would end in the middle of the 50th é: stop before it */
  assert_int_equal(tt_utf8_prefix(name, 100), 99);
  assert_int_equal(tt_utf8_prefix(name, 99), 99);
  assert_int_equal(tt_utf8_prefix(name, 101), 101);
  assert_int_equal(tt_utf8_prefix(name, 1000), strlen(name));
  assert_int_equal(tt_utf8_prefix(name, 0), 0);
  assert_int_equal(tt_utf8_prefix(name, 1), 1);
  assert_int_equal(tt_utf8_prefix(name, 2), 1);
  for (size_t max = 0; max <= sizeof name; max++) {
    size_t n = tt_utf8_prefix(name, max);
    size_t want = max < strlen(name) ? max : strlen(name);
    /* at most one byte short: é is two bytes */
    assert_true(n == want || (n + 1 == want && (name[n] & 0xc0) == 0xc0));
    assert_true(tt_utf8_valid(name, n));
    json_t *j = json_stringn(name, n);
    assert_non_null(j);
    json_decref(j);
  }
  /* 4-byte characters, and input that is not UTF-8 at all */
  assert_int_equal(tt_utf8_prefix("\xf0\x9f\x98\x80" "x", 3), 0);
  assert_int_equal(tt_utf8_prefix("\xf0\x9f\x98\x80" "x", 4), 4);
  assert_int_equal(tt_utf8_prefix("ab\xff" "cd", 10), 2);
  assert_int_equal(tt_utf8_prefix("ab\xc3", 10), 2);
  assert_int_equal(tt_utf8_prefix("", 10), 0);
  assert_int_equal(tt_utf8_prefix(NULL, 10), 0);

  /* tt_errf cuts on a character boundary too */
  char buf[5]; /* room for "'", one é and half of the next */
  tt_errf(buf, sizeof buf, "'%s'", "\xc3\xa9\xc3\xa9\xc3\xa9");
  assert_string_equal(buf, "'\xc3\xa9");
  assert_true(tt_utf8_valid(buf, strlen(buf)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_prefix), cmocka_unit_test(test_json_plain_end),
      cmocka_unit_test(test_hex_roundtrip), cmocka_unit_test(test_hex_invalid),
      cmocka_unit_test(test_canon),         cmocka_unit_test(test_canon_len_limit),
      cmocka_unit_test(test_canon_equal),   cmocka_unit_test(test_name_valid), cmocka_unit_test(test_utf8_valid),
      cmocka_unit_test(test_errf),          cmocka_unit_test(test_be), cmocka_unit_test(test_i64_text),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
