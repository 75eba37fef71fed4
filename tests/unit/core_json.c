/* core_json.c — the strict JSON reader (core/json.c) accepts exactly what
 * jansson's json_loadb accepts with the matching flags and builds the same
 * tree, which is its contract (core/json.h). Every case below is run
 * through both, under all 8 flag combinations, from an exact-size copy of
 * its bytes (not NUL-terminated: a read past the end is a read past the
 * allocation under ASan); the expected decision is also written down, so
 * a case documents the rule it is about. Trees must be equal for
 * json_equal and also bit for bit (json_equal has -0.0 == 0.0).
 *
 * One exception to "what jansson accepts": a raw NUL byte is never JSON
 * (not white space, not allowed in a string), but json_loadb skips one NUL
 * byte that directly follows a number or a literal: its stream cannot
 * unget a 0 byte, so "[1\0]", "true\0" and "{\"a\":1\0}" load
 * (jansson 2.14; akheron/jansson#331, "n_multidigit_number_then_00").
 * tt_json_parse refuses every text with a NUL byte, and that is what is
 * asserted (fuzz/fuzz_json.c does the same). */
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "core/util.h"
#include "tether.h"

#define ALL_FLAGS 8u /* every combination of the three flags */
#define ANY TT_JSON_ANY
#define DUP TT_JSON_REJECT_DUPLICATES
#define NUL TT_JSON_ALLOW_NUL

static long jansson_nul_quirk; /* texts jansson took only by skipping a NUL */

static size_t jansson_flags(unsigned f) {
  size_t j = 0;
  if (f & TT_JSON_ANY) j |= JSON_DECODE_ANY;
  if (f & TT_JSON_REJECT_DUPLICATES) j |= JSON_REJECT_DUPLICATES;
  if (f & TT_JSON_ALLOW_NUL) j |= JSON_ALLOW_NUL;
  return j;
}

/* ---- comparing --------------------------------------------------------- */

/* Same types, same values, reals bit for bit. */
static int same_tree(json_t *a, json_t *b) {
  if (json_typeof(a) != json_typeof(b)) return 0;
  switch (json_typeof(a)) {
  case JSON_OBJECT: {
    const char *k;
    size_t klen;
    json_t *v;
    if (json_object_size(a) != json_object_size(b)) return 0;
    json_object_keylen_foreach(a, k, klen, v) {
      json_t *w = json_object_getn(b, k, klen);
      if (!w || !same_tree(v, w)) return 0;
    }
    return 1;
  }
  case JSON_ARRAY:
    if (json_array_size(a) != json_array_size(b)) return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!same_tree(json_array_get(a, i), json_array_get(b, i))) return 0;
    return 1;
  case JSON_STRING:
    return json_string_length(a) == json_string_length(b) &&
           !memcmp(json_string_value(a), json_string_value(b),
                   json_string_length(a));
  case JSON_INTEGER:
    return json_integer_value(a) == json_integer_value(b);
  case JSON_REAL: {
    double x = json_real_value(a), y = json_real_value(b);
    return !memcmp(&x, &y, sizeof x);
  }
  default:
    return 1;
  }
}

/* TEXT as a C literal, cut at 160 bytes, for failure messages. */
static const char *show(const char *text, size_t len) {
  static char out[800];
  size_t n = 0;
  for (size_t i = 0; i < len && i < 160; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c >= 0x20 && c < 0x7F && c != '\\' && c != '"')
      out[n++] = (char)c;
    else
      n += (size_t)snprintf(out + n, sizeof out - n, "\\x%02x", c);
  }
  if (len > 160) n += (size_t)snprintf(out + n, sizeof out - n, "...(%zu bytes)", len);
  out[n] = 0;
  return out;
}

/* Fails at the line of the case, not of the helper. */
#define MISMATCH(file, line, ...)                                              \
  do {                                                                         \
    print_error(__VA_ARGS__);                                                  \
    _fail(file, line);                                                         \
  } while (0)

/* Parses TEXT[0..LEN) with FLAGS through json_loadb, tt_json_parse (with
 * and without an error record) and tt_json_load; fails unless all agree.
 * On a refusal also checks the error record: EJSON, a NUL-terminated
 * non-empty text, a position inside the input and the line and column of
 * that position. Returns 1 if the text was accepted. If GOT is not NULL
 * it receives tt_json_parse's tree (a new reference). */
static int agree_at(const char *text, size_t len, unsigned flags, json_t **got,
                    const char *file, int line) {
  char *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len) memcpy(copy, text, len);
  json_error_t je;
  json_t *want = json_loadb(copy, len, jansson_flags(flags), &je);
  if (want && memchr(copy, 0, len)) {
    jansson_nul_quirk++;
    json_decref(want);
    want = NULL;
    snprintf(je.text, sizeof je.text, "(accepts, skipping a NUL byte)");
  }
  json_t *v = (json_t *)&je; /* must be overwritten */
  tt_json_error e;
  memset(&e, 0x55, sizeof e);
  int rc = tt_json_parse(copy, len, flags, &v, &e);
  if ((rc == 0) != (want != NULL))
    MISMATCH(file, line,
             "flags %u, \"%s\": jansson %s%s, tt_json_parse %s (%d) %s\n",
             flags, show(text, len), want ? "accepts" : "refuses: ",
             want ? "" : je.text, rc ? "refuses" : "accepts", rc,
             rc ? e.text : "");
  if (want) {
    if (!same_tree(want, v) || !json_equal(want, v)) {
      char *a = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
      char *b = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
      MISMATCH(file, line, "flags %u, \"%s\": trees differ:\n jansson %s\n tt      %s\n",
               flags, show(text, len), a ? a : "?", b ? b : "?");
    }
  } else {
    if (rc != TETHER_EJSON || v != NULL)
      MISMATCH(file, line, "flags %u, \"%s\": rc %d, out %p\n", flags,
               show(text, len), rc, (void *)v);
    if (!memchr(e.text, 0, sizeof e.text) || !e.text[0])
      MISMATCH(file, line, "flags %u, \"%s\": refusal without error text\n",
               flags, show(text, len));
    if (e.position > len)
      MISMATCH(file, line, "flags %u, \"%s\": error position %zu past %zu\n",
               flags, show(text, len), e.position, len);
    int l = 1, c = 1;
    for (size_t i = 0; i < e.position; i++) {
      if (copy[i] == '\n') {
        l++;
        c = 1;
      } else {
        c++;
      }
    }
    if (e.line != l || e.column != c)
      MISMATCH(file, line,
               "flags %u, \"%s\": position %zu is line %d column %d, not %d:%d\n",
               flags, show(text, len), e.position, l, c, e.line, e.column);
  }
  /* Without an error record, and through tt_json_load: the same. */
  json_t *v2 = (json_t *)&je;
  int rc2 = tt_json_parse(copy, len, flags, &v2, NULL);
  json_t *v3 = tt_json_load(copy, len, flags);
  if (rc2 != rc || (!v2) != (!v) || (v2 && !same_tree(v, v2)) ||
      (!v3) != (!v) || (v3 && !same_tree(v, v3)))
    MISMATCH(file, line, "flags %u, \"%s\": tt_json_parse(err NULL) %d or "
             "tt_json_load differs from tt_json_parse %d\n",
             flags, show(text, len), rc2, rc);
  json_decref(v2);
  json_decref(v3);
  json_decref(want);
  free(copy);
  if (got)
    *got = v;
  else
    json_decref(v);
  return rc == 0;
}

/* Every flag combination agrees with jansson, and under FLAGS the text is
 * accepted (WANT 1) or refused (WANT 0). */
static void expect_at(const char *text, size_t len, unsigned flags, int want,
                      const char *file, int line) {
  for (unsigned f = 0; f < ALL_FLAGS; f++) {
    int ok = agree_at(text, len, f, NULL, file, line);
    if (f == flags && ok != want)
      MISMATCH(file, line, "flags %u, \"%s\": %s by both, expected %s\n", f,
               show(text, len), ok ? "accepted" : "refused",
               want ? "accepted" : "refused");
  }
}

/* Literals (sizeof, so embedded NUL bytes count) or pointer + length. */
#define OK(fl, lit) expect_at(lit, sizeof lit - 1, fl, 1, __FILE__, __LINE__)
#define BAD(fl, lit) expect_at(lit, sizeof lit - 1, fl, 0, __FILE__, __LINE__)
#define OKN(fl, p, n) expect_at(p, n, fl, 1, __FILE__, __LINE__)
#define BADN(fl, p, n) expect_at(p, n, fl, 0, __FILE__, __LINE__)
#define AGREE(p, n, fl) agree_at(p, n, fl, NULL, __FILE__, __LINE__)

/* The value tt_json_parse builds for TEXT (asserted to agree). */
static json_t *parsed_at(const char *text, size_t len, unsigned flags,
                         const char *file, int line) {
  json_t *v = NULL;
  if (!agree_at(text, len, flags, &v, file, line))
    MISMATCH(file, line, "\"%s\" refused\n", show(text, len));
  return v;
}
#define PARSED(fl, lit) parsed_at(lit, sizeof lit - 1, fl, __FILE__, __LINE__)

/* tt_json_parse's error record for a refused TEXT. */
static tt_json_error refusal(const char *text, size_t len, unsigned flags) {
  tt_json_error e;
  json_t *v = NULL;
  memset(&e, 0, sizeof e);
  assert_false(agree_at(text, len, flags, NULL, __FILE__, __LINE__));
  assert_int_equal(tt_json_parse(text, len, flags, &v, &e), TETHER_EJSON);
  assert_null(v);
  return e;
}

/* ---- strings ------------------------------------------------------------ */

typedef struct {
  const char *body;
  size_t len; /* 0: strlen */
  int ok;
} body_case;

#define B(lit, ok) {lit, sizeof lit - 1, ok}

/* BODY between quotes as an array element, a top-level value, an object
 * value and an object key, each on the path without escapes and (after a
 * leading "\/") on the path with escapes, with an escape after it too:
 * the same decision everywhere (keys never take \u0000: see
 * test_string_nul). */
static void string_body(const char *body, size_t blen, int ok, int line) {
  static const char *const shapes[][2] = {
      {"[\"", "\"]"},         {"[\"\\/", "\"]"},     {"[\"", "\\/\"]"},
      {"\"", "\""},           {"\"\\t", "\""},       {"{\"k\":\"", "\"}"},
      {"{\"k\":\"\\n", "\"}"}, {"{\"", "\":0}"},      {"{\"\\r", "\":0}"},
      {"[\"\\\\", "\",1]"},   {"{\"", "\\b\":[]}"}};
  char buf[256];
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    size_t a = strlen(shapes[i][0]), z = strlen(shapes[i][1]);
    assert_true(a + blen + z <= sizeof buf);
    memcpy(buf, shapes[i][0], a);
    memcpy(buf + a, body, blen);
    memcpy(buf + a + blen, shapes[i][1], z);
    unsigned flags = shapes[i][0][0] == '"' ? ANY : 0;
    expect_at(buf, a + blen + z, flags, ok, __FILE__, line);
  }
}

static void test_string_escapes(void **state) {
  (void)state;
  static const body_case cases[] = {
      B("", 1), B("abc", 1), B(" ", 1), B("'", 1), B("\x7f", 1),
      /* the eight short escapes */
      B("\\\"", 1), B("\\\\", 1), B("\\/", 1), B("\\b", 1), B("\\f", 1),
      B("\\n", 1), B("\\r", 1), B("\\t", 1), B("a\\nb\\tc\\\"d", 1),
      B("\\\\u0041", 1), B("\\\\\\\\", 1),
      /* \u, both cases of hex digits */
      B("\\u0041", 1), B("\\u00e9", 1), B("\\u00E9", 1), B("\\u00Ff", 1),
      B("\\u0001", 1), B("\\u001f", 1), B("\\u007f", 1), B("\\u0080", 1),
      B("\\u07FF", 1), B("\\u0800", 1), B("\\u20ac", 1), B("\\uD7FF", 1),
      B("\\uE000", 1), B("\\uFFFE", 1), B("\\uFFFF", 1), B("\\u2028", 1),
      /* surrogate pairs: first, last, an emoji */
      B("\\uD800\\uDC00", 1), B("\\udbff\\udfff", 1), B("\\uDBFF\\uDFFF", 1),
      B("\\uD83D\\uDE00", 1), B("x\\uD83D\\uDE00y\\uD83D\\uDE00", 1),
      /* bad short escapes */
      B("\\a", 0), B("\\x41", 0), B("\\'", 0), B("\\0", 0), B("\\U0041", 0),
      B("\\v", 0), B("\\ ", 0), B("\\\n", 0), B("\\\x80", 0),
      B("\\\xc3\xa9", 0),
      /* bad \u */
      B("\\u", 0), B("\\u1", 0), B("\\u12", 0), B("\\u123", 0),
      B("\\u12G4", 0), B("\\uGGGG", 0), B("\\u 123", 0), B("\\u-123", 0),
      B("\\u+123", 0), B("\\u0x12", 0),
      /* lone high surrogates */
      B("\\uD800", 0), B("\\uDBFF", 0), B("\\uD800x", 0), B("\\uD800\\n", 0),
      B("\\uD800\\u0041", 0), B("\\uD800\\uD800", 0), B("\\uD800\\uDBFF", 0),
      B("\\uD800\\uE000", 0), B("\\uD800\\u", 0), B("\\uD800\\uDC", 0),
      B("\\uD800\\uDCxx", 0), B("\\uD800\\\\uDC00", 0), B("\\uD800 \\uDC00", 0),
      B("\\uD800\\u0000", 0),
      /* lone low surrogates */
      B("\\uDC00", 0), B("\\uDFFF", 0), B("a\\uDFFFb", 0),
      B("\\uDC00\\uD800", 0), B("\\uDE00\\uD83D", 0),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    string_body(cases[i].body, cases[i].len, cases[i].ok, __LINE__);
  /* A backslash that escapes the closing quote. */
  BAD(0, "[\"\\\"]");
  BAD(0, "[\"a\\\"]");
  BAD(ANY, "\"\\\"");
  BAD(0, "{\"\\\":1}");
  BAD(ANY, "\"\\");

  /* Decoded values. */
  json_t *v = PARSED(0, "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\uD83D\\uDE00\"]");
  assert_string_equal(json_string_value(json_array_get(v, 0)),
                      "\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  json_decref(v);
  v = PARSED(ANY, "\"\\uDBFF\\uDFFF\\u0800\\u07ff\\u0080\\u007F\"");
  assert_string_equal(json_string_value(v), "\xf4\x8f\xbf\xbf\xe0\xa0\x80"
                                            "\xdf\xbf\xc2\x80\x7f");
  json_decref(v);

  /* Long strings with escapes: the scratch buffer grows, a key with
   * escapes is kept while its value (with escapes) reuses the buffer. */
  static char big[80000];
  size_t n = 0;
#define CAT(str) (memcpy(big + n, str, strlen(str)), n += strlen(str))
  CAT("{\"");
  for (int i = 0; i < 3000; i++) CAT(i % 2 ? "\\n" : "k\\u00e9");
  CAT("\":\"");
  for (int i = 0; i < 3000; i++) CAT("v\\t\\uD83D\\uDE00");
  CAT("\",\"\\n\":\"\\t\",\"\\n\\n\":\"x\\ty\"}");
#undef CAT
  OKN(0, big, n);
  v = parsed_at(big, n, 0, __FILE__, __LINE__);
  assert_int_equal(json_object_size(v), 3);
  assert_string_equal(json_string_value(json_object_get(v, "\n")), "\t");
  assert_string_equal(json_string_value(json_object_get(v, "\n\n")), "x\ty");
  json_decref(v);
}

static void test_string_control_and_nul_bytes(void **state) {
  (void)state;
  /* Every raw control character, NUL included, is refused; DEL is not. */
  for (int c = 0; c < 0x20; c++) {
    char body[3] = {'a', (char)c, 'b'};
    string_body(body, 3, 0, __LINE__);
    string_body(body + 1, 1, 0, __LINE__);
  }
  string_body("\x7f", 1, 1, __LINE__);
  /* Embedded NUL bytes anywhere: refused with every flag (ALLOW_NUL is
   * about \u0000 only). */
  for (unsigned f = 0; f < ALL_FLAGS; f++) {
    BAD(f, "[\"a\0b\"]");
    BAD(f, "[\"\0\"]");
    BAD(f, "\"\0\"");
    BAD(f, "[1\0]");
    BAD(f, "[\0]");
    BAD(f, "\0[]");
    BAD(f, "[]\0");
    BAD(f, "[]\0[]");
    BAD(f, "{\"a\0\":1}");
    BAD(f, "{\"a\":1\0}");
    BAD(f, "{\0\"a\":1}");
    BAD(f, "\0");
    BAD(f, "tr\0ue");
    /* those that json_loadb takes by skipping the NUL */
    BAD(f, "[1\0]");
    BAD(f, "[-2.5e3\0]");
    BAD(f, "[true\0]");
    BAD(f, "[null\0,1]");
    BAD(f, "{\"a\":false\0}");
  }
  BAD(ANY, "1\0");
  BAD(ANY, "true\0");
  json_t *q = json_loadb("[1\0]", 4, 0, NULL);
  assert_non_null(q); /* still jansson's behaviour? */
  json_decref(q);
  assert_true(jansson_nul_quirk > 0);
}

static void test_string_nul(void **state) {
  (void)state;
  /* \u0000 in a value: only with ALLOW_NUL, and then a real NUL byte. */
  BAD(0, "[\"\\u0000\"]");
  BAD(ANY, "\"\\u0000\"");
  BAD(DUP, "[\"a\\u0000b\"]");
  BAD(0, "{\"k\":\"\\u0000\"}");
  OK(NUL, "[\"\\u0000\"]");
  OK(NUL | ANY, "\"\\u0000\"");
  OK(NUL | DUP, "[\"a\\u0000b\"]");
  OK(NUL, "{\"k\":\"\\u0000\"}");
  OK(NUL, "{\"k\":[\"\\n\\u0000\\u0000\"]}");
  json_t *v = PARSED(NUL, "[\"a\\u0000b\",\"\\u0000\"]");
  assert_int_equal(json_string_length(json_array_get(v, 0)), 3);
  assert_memory_equal(json_string_value(json_array_get(v, 0)), "a\0b", 3);
  assert_int_equal(json_string_length(json_array_get(v, 1)), 1);
  json_decref(v);
  /* A literal backslash before u0000 is no NUL. */
  OK(0, "[\"\\\\u0000\"]");
  /* In a key: refused whatever the flags. */
  for (unsigned f = 0; f < ALL_FLAGS; f++) {
    BAD(f, "{\"\\u0000\":1}");
    BAD(f, "{\"a\\u0000\":1}");
    BAD(f, "{\"\\u0000a\":1}");
    BAD(f, "{\"k\":1,\"\\u0000\":1}");
    BAD(f, "[{\"k\":{\"\\n\\u0000\":1}}]");
  }
}

static void test_string_utf8(void **state) {
  (void)state;
  static const body_case cases[] = {
      /* boundaries of each length */
      B("\xc2\x80", 1), B("\xdf\xbf", 1), B("\xe0\xa0\x80", 1),
      B("\xed\x9f\xbf", 1), B("\xee\x80\x80", 1), B("\xef\xbf\xbf", 1),
      B("\xf0\x90\x80\x80", 1), B("\xf4\x8f\xbf\xbf", 1),
      B("\xf0\x9f\x98\x80", 1), B("\xe2\x80\xa8", 1),
      B("a\xc3\xa9\\u00e9\xf0\x9f\x98\x80z", 1),
      /* stray continuation bytes */
      B("\x80", 0), B("\xbf", 0), B("a\x80", 0), B("\xc3\xa9\x80", 0),
      B("\x80\x80", 0),
      /* overlong forms */
      B("\xc0\x80", 0), B("\xc0\xaf", 0), B("\xc1\xbf", 0),
      B("\xe0\x80\x80", 0), B("\xe0\x9f\xbf", 0), B("\xf0\x80\x80\x80", 0),
      B("\xf0\x8f\xbf\xbf", 0),
      /* UTF-16 surrogates encoded in UTF-8 (and a CESU-8 pair) */
      B("\xed\xa0\x80", 0), B("\xed\xbf\xbf", 0), B("\xed\xaf\xbf", 0),
      B("\xed\xa0\xbd\xed\xb8\x80", 0),
      /* above U+10FFFF, and bytes that never start a sequence */
      B("\xf4\x90\x80\x80", 0), B("\xf4\xbf\xbf\xbf", 0),
      B("\xf5\x80\x80\x80", 0), B("\xf7\xbf\xbf\xbf", 0),
      B("\xf8\x88\x80\x80\x80", 0), B("\xfc\x84\x80\x80\x80\x80", 0),
      B("\xfe", 0), B("\xff", 0), B("\xfe\xff", 0),
      /* truncated sequences, then the closing quote */
      B("\xc2", 0), B("\xc3" "a", 0), B("\xc2\xc2\x80", 0), B("\xe0\xa0", 0),
      B("\xe2\x82", 0), B("\xe2\x82" "a", 0), B("\xe2\x28\xa1", 0),
      B("\xe2\x82\x28", 0), B("\xf0\x9f\x98", 0), B("\xf0\x9f", 0),
      B("\xf0", 0), B("\xf0\x28\x8c\xbc", 0), B("\xf0\x90\x28\xbc", 0),
      B("\xf4", 0), B("\xed", 0), B("\xc0", 0),
      /* a control character inside a sequence */
      B("\xc3\n", 0), B("\xe2\x82\x00", 0),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    string_body(cases[i].body, cases[i].len, cases[i].ok, __LINE__);
  /* Truncated at the very end of the input, no closing quote. */
  BAD(ANY, "\"\xc3");
  BAD(ANY, "\"\xe2\x82");
  BAD(ANY, "\"\xf0\x9f\x98");
  BAD(0, "[\"\xf4\x8f\xbf");
  BAD(0, "{\"\xc3");
  /* Any byte >= 0x80 outside a string, valid UTF-8 or not. */
  BAD(ANY, "\xc3\xa9");
  BAD(0, "[\xc3\xa9]");
  BAD(0, "[1,\xf0\x9f\x98\x80]");
  BAD(0, "{\"a\"\xc2\xa0:1}");
  BAD(0, "[\x80]");
  BAD(0, "[\xff]");
  BAD(0, "\xef\xbb\xbf[]"); /* no byte order mark either */
}

/* ---- numbers ------------------------------------------------------------- */

typedef struct {
  const char *text;
  int ok;
} num_case;

/* TEXT as a top-level value, an array element (first and last), an object
 * value, before white space and before a comma. */
static void number_case(const char *text, int ok, int line) {
  static const char *const shapes[][2] = {
      {"", ""}, {"[", "]"}, {"[", ",0]"}, {"[0,", "]"}, {"{\"n\":", "}"},
      {" ", "\n"}, {"[[", "],[]]"}};
  char buf[512];
  size_t n = strlen(text);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    size_t a = strlen(shapes[i][0]), z = strlen(shapes[i][1]);
    memcpy(buf, shapes[i][0], a);
    memcpy(buf + a, text, n);
    memcpy(buf + a + n, shapes[i][1], z);
    expect_at(buf, a + n + z, ANY, ok, __FILE__, line);
  }
}

static void test_numbers(void **state) {
  (void)state;
  static const num_case cases[] = {
      {"0", 1}, {"-0", 1}, {"1", 1}, {"-1", 1}, {"7", 1}, {"123", 1},
      {"1234567890", 1}, {"0.5", 1}, {"-0.5", 1}, {"0.0", 1}, {"-0.0", 1},
      {"0.000", 1}, {"10.25", 1}, {"1e5", 1}, {"1E5", 1}, {"1e+5", 1},
      {"1E-5", 1}, {"1e05", 1}, {"0e0", 1}, {"-0e0", 1}, {"0E+0", 1},
      {"0.0e-0", 1}, {"1.5e300", 1}, {"-2.5e-300", 1},
      {"1.7976931348623157e308", 1}, {"-1.7976931348623157e308", 1},
      /* DBL_MAX written out in full */
      {"17976931348623157081452742373170435679807056752584499659891747680315"
       "72607800285387605895586327668781715404589535143824642343213268894641"
       "82768467546703537516986049910576551282076245490090389328944075868508"
       "45513394230458323690322294816580855933212334827479782620414472316873"
       "8177180919299881250404026184124858368.0", 1},
      {"2.2250738585072014e-308", 1}, {"2.2250738585072011e-308", 1},
      {"4.9e-324", 1}, {"5e-324", 1}, {"2e-324", 1},
      /* underflow: accepted (as 0 or a subnormal) */
      {"1e-400", 1}, {"-1e-400", 1}, {"1e-99999999999999999999", 1},
      {"0e99999999999999999999", 1}, {"0.0e400", 1},
      {"123456789012345678901234567890.0", 1},
      {"123456789012345678901234567890e0", 1},
      {"0.00000000000000000000000000000000000000000000000000000000001", 1},
      /* overflow: refused */
      {"1e309", 0}, {"-1e309", 0}, {"1e400", 0}, {"-1e400", 0},
      {"1.8e308", 0}, {"1.7976931348623159e308", 0},
      {"1e99999999999999999999", 0},
      /* syntax */
      {"01", 0}, {"-01", 0}, {"00", 0}, {"00.5", 0}, {"-", 0}, {"--1", 0},
      {"- 1", 0}, {"+1", 0}, {"+0", 0}, {".5", 0}, {"-.5", 0}, {"1.", 0},
      {"-1.", 0}, {"1.e5", 0}, {"1e", 0}, {"1E", 0}, {"1e+", 0}, {"1e-", 0},
      {"1e+-1", 0}, {"-e5", 0}, {"e5", 0}, {"1.5.5", 0}, {"1e5e5", 0},
      {"1e5.5", 0}, {"0x10", 0}, {"0X1", 0}, {"1_000", 0}, {"1 2", 0},
      {"1..5", 0}, {"0.e1", 0}, {".e1", 0}, {"1e1.", 0},
      {"Infinity", 0}, {"-Infinity", 0}, {"NaN", 0}, {"nan", 0}, {"inf", 0},
      {"-inf", 0}, {"1f", 0}, {"1d", 0}, {"1L", 0}, {"0b1", 0}, {"08", 0},
      {"1e5x", 0}, {"-0x", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    number_case(cases[i].text, cases[i].ok, __LINE__);
  /* 10^309 in full, and 0.(400 zeros)1. */
  char big[512];
  memset(big, '0', sizeof big);
  big[0] = '1';
  memcpy(big + 310, ".5", 3);
  number_case(big, 0, __LINE__);
  memset(big, '0', sizeof big);
  memcpy(big, "0.", 2);
  memcpy(big + 402, "1", 2);
  number_case(big, 1, __LINE__);

  /* Types and values. */
  json_t *v = PARSED(ANY, "-0");
  assert_true(json_is_integer(v));
  assert_int_equal(json_integer_value(v), 0);
  json_decref(v);
  v = PARSED(ANY, "-0.0");
  assert_true(json_is_real(v));
  assert_true(json_real_value(v) == 0 && signbit(json_real_value(v)));
  json_decref(v);
  v = PARSED(ANY, "-1e-400");
  assert_true(json_is_real(v));
  assert_true(json_real_value(v) == 0 && signbit(json_real_value(v)));
  json_decref(v);
  v = PARSED(ANY, "1e-400");
  assert_true(json_real_value(v) == 0 && !signbit(json_real_value(v)));
  json_decref(v);
  v = PARSED(ANY, "4.9e-324");
  assert_true(json_real_value(v) > 0 && json_real_value(v) < 1e-323);
  json_decref(v);
  v = PARSED(0, "[1,1.0,1e0,1E+0,10e-1]");
  assert_true(json_is_integer(json_array_get(v, 0)));
  for (size_t i = 1; i < 5; i++) {
    assert_true(json_is_real(json_array_get(v, i)));
    assert_true(json_real_value(json_array_get(v, i)) == 1.0);
  }
  json_decref(v);
  v = PARSED(0, "[0.1,1.7976931348623157e308,2.2250738585072014e-308]");
  assert_true(json_real_value(json_array_get(v, 0)) == 0.1);
  assert_true(json_real_value(json_array_get(v, 1)) == 1.7976931348623157e308);
  assert_true(json_real_value(json_array_get(v, 2)) == 2.2250738585072014e-308);
  json_decref(v);
}

static void test_integer_limits(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int ok;
    json_int_t value;
    const char *why;
  } cases[] = {
      {"9223372036854775807", 1, INT64_MAX, NULL},
      {"9223372036854775806", 1, INT64_MAX - 1, NULL},
      {"-9223372036854775808", 1, INT64_MIN, NULL},
      {"-9223372036854775807", 1, INT64_MIN + 1, NULL},
      {"0009223372036854775807", 0, 0, NULL}, /* leading zeros, not range */
      {"9223372036854775808", 0, 0, "too big integer"},
      {"9223372036854775809", 0, 0, "too big integer"},
      {"9223372036854775810", 0, 0, "too big integer"},
      {"9999999999999999999", 0, 0, "too big integer"},
      {"18446744073709551615", 0, 0, "too big integer"},
      {"18446744073709551616", 0, 0, "too big integer"},
      {"18446744073709551617", 0, 0, "too big integer"},
      {"92233720368547758070", 0, 0, "too big integer"},
      {"123456789012345678901234567890", 0, 0, "too big integer"},
      {"-9223372036854775809", 0, 0, "too big negative integer"},
      {"-9223372036854775810", 0, 0, "too big negative integer"},
      {"-18446744073709551616", 0, 0, "too big negative integer"},
      {"-18446744073709551617", 0, 0, "too big negative integer"},
      {"-92233720368547758080", 0, 0, "too big negative integer"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *t = cases[i].text;
    size_t n = strlen(t);
    number_case(t, cases[i].ok, __LINE__);
    if (cases[i].ok) {
      json_t *v = parsed_at(t, n, ANY, __FILE__, __LINE__);
      assert_true(json_is_integer(v));
      assert_true(json_integer_value(v) == cases[i].value);
      json_decref(v);
    } else if (cases[i].why) {
      tt_json_error e = refusal(t, n, ANY);
      assert_string_equal(e.text, cases[i].why);
      assert_int_equal(e.position, 0);
      json_error_t je;
      assert_null(json_loadb(t, n, JSON_DECODE_ANY, &je));
      assert_int_equal(json_error_code(&je), json_error_numeric_overflow);
      assert_int_equal(strncmp(je.text, cases[i].why, strlen(cases[i].why)), 0);
      /* The same as a real is fine. */
      char real[64];
      snprintf(real, sizeof real, "%s.0", t);
      OKN(ANY, real, strlen(real));
      snprintf(real, sizeof real, "%se0", t);
      OKN(ANY, real, strlen(real));
    }
  }
  tt_json_error e = refusal("[1e400]", 7, 0);
  assert_string_equal(e.text, "real number overflow");
  assert_int_equal(e.position, 1);
}

/* ---- literals, top level, trailing bytes, white space, structure ---------- */

static void test_literals(void **state) {
  (void)state;
  OK(ANY, "true");
  OK(ANY, "false");
  OK(ANY, "null");
  OK(ANY, " \ttrue\r\n");
  OK(0, "[true,false,null]");
  OK(0, "{\"t\":true,\"f\":false,\"n\":null}");
  json_t *v = PARSED(0, "[true,false,null]");
  assert_true(json_is_true(json_array_get(v, 0)));
  assert_true(json_is_false(json_array_get(v, 1)));
  assert_true(json_is_null(json_array_get(v, 2)));
  json_decref(v);
  static const char *const bad[] = {
      "t", "tr", "tru", "f", "fals", "n", "nul", "True", "TRUE", "False",
      "NULL", "Null", "nulL", "truee", "nulll", "falsee", "true1", "truefalse",
      "[true false]", "[truefalse]", "[nulltrue]", "[tru]", "[nul,1]",
      "-true", "+null", "undefined", "none", "nil", "t rue", "[true,]",
      "{\"a\":tru}", "{\"a\":nulll}", "{true:1}", "{null:1}", "\"true",
      "true\"", "[\"true]", "'true'",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    BADN(ANY, bad[i], strlen(bad[i]));
}

static void test_top_level(void **state) {
  (void)state;
  static const char *const scalars[] = {
      "1", "-1", "0.5", "\"a\"", "\"\"", "true", "false", "null", " 1 ",
      "\n\"x\"\n", "-0", "1e5"};
  for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
    size_t n = strlen(scalars[i]);
    BADN(0, scalars[i], n);
    BADN(DUP | NUL, scalars[i], n);
    OKN(ANY, scalars[i], n);
    OKN(ANY | DUP | NUL, scalars[i], n);
  }
  OK(0, "[]");
  OK(0, "{}");
  OK(0, " \t\r\n[] \t\r\n");
  OK(0, "\n{}\n");
  tt_json_error e = refusal("  \n  1", 6, 0);
  assert_string_equal(e.text, "'[' or '{' expected");
  assert_int_equal(e.position, 5);
}

static void test_trailing_and_empty(void **state) {
  (void)state;
  static const char *const trailing[] = {
      "[]x", "[] []", "[][]", "{}}", "[]]", "{}{}", "[],", "[] ,", "[]:",
      "[]/", "[]//c", "[]/*c*/", "[] #", "[]\f", "[]\v", "[]\x1b",
      "[]\xc2\xa0", "[]\xef\xbb\xbf", "[]\xff", "[]\"", "[]1", "[]null",
      "1 2", "1,", "\"a\"\"b\"", "\"a\" \"b\"", "nulll", "null null",
      "true,false", "0 0", "-0-", "1.5 x", "{\"a\":1} {}", "[1]\n]",
  };
  for (size_t i = 0; i < sizeof trailing / sizeof trailing[0]; i++)
    BADN(ANY, trailing[i], strlen(trailing[i]));
  tt_json_error e = refusal("[1] x", 5, 0);
  assert_string_equal(e.text, "end of input expected");
  assert_int_equal(e.position, 4);

  /* Empty input and white space only: refused with every flag. */
  static const char *const empty[] = {"", " ", "\n", "\t", "\r",
                                      " \t\r\n ", "\n\n\n"};
  for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++)
    for (unsigned f = 0; f < ALL_FLAGS; f++)
      BADN(f, empty[i], strlen(empty[i]));
  /* A NULL text of length 0 is the empty text; of length > 0, EINVAL. */
  json_t *v = (json_t *)&e;
  assert_int_equal(tt_json_parse(NULL, 0, ANY, &v, &e), TETHER_EJSON);
  assert_null(v);
  assert_true(e.text[0] != 0);
  v = (json_t *)&e;
  assert_int_equal(tt_json_parse(NULL, 5, ANY, &v, &e), TETHER_EINVAL);
  assert_null(v);
  assert_null(tt_json_load(NULL, 0, ANY));
}

static void test_whitespace(void **state) {
  (void)state;
  OK(0, " [ 1 , { \"a\" : 2 , \"b\" : [ ] } , \"x\" ] ");
  OK(0, "\t[\t1\t,\t{\t\"a\"\t:\t2\t}\t]\t");
  OK(0, "\r\n[\r\n1\r\n,\r\n{\r\n\"a\"\r\n:\r\n2\r\n}\r\n]\r\n");
  OK(0, "\n\n[\n\n\n]");
  OK(0, "{ }");
  OK(0, "[ ]");
  OK(ANY, "\n\t\r 1 \n\t\r");
  OK(ANY, " \"a b\" ");
  static const char *const bad[] = {
      "[1,\f2]", "[\v]", "[\xa0]", "[\xc2\xa0]", "[1\x0b]", "\f[]",
      "{\"a\"\f:1}", "[\x1f]", "[\x01]", "[1,\x7f" "2]", "[\x85]",
      "[\xe2\x80\xa8]", "[\xe3\x80\x80]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    BADN(ANY, bad[i], strlen(bad[i]));
  BAD(ANY, "[1\x00]");
}

static void test_structure(void **state) {
  (void)state;
  OK(0, "[1,[2,[3,{}]],{\"a\":{\"b\":[]}}]");
  OK(0, "{\"\":\"\"}");
  OK(0, "[[],[[]],{}]");
  OK(0, "[\"a\",\"b\",\"a\"]");
  static const char *const bad[] = {
      "[", "{", "]", "}", "[}", "{]", "[1}", "{\"a\":1]", "[1,]", "[,1]",
      "[,]", "[1 2]", "[1,,2]", "[[]", "[]]", "[[[]]", "{\"a\"}",
      "{\"a\":}", "{\"a\" 1}", "{,}", "{\"a\":1,}", "{,\"a\":1}", "{1:2}",
      "{'a':1}", "{a:1}", "{\"a\"::1}", "{\"a\":1:2}", "[\"a\":1]",
      "{\"a\":1 \"b\":2}", "{\"a\":1}}", "[\"\"", "[\"", "\"", "{\"",
      "{\"a", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,", "[1,", "[1",
      "{[]:1}", "{{}:1}", "[:]", "[1:2]", "{\"a\",\"b\"}", "{\"a\";1}",
      "(1)", "<>", "[1;2]", "{\"a\"=1}", "{\"a\":1;\"b\":2}", "[\"a\"\"b\"]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    BADN(0, bad[i], strlen(bad[i]));
    BADN(ANY, bad[i], strlen(bad[i]));
  }
}

/* ---- nesting ------------------------------------------------------------- */

/* N nested containers (KIND 0 arrays, 1 objects, 2 alternating), INNER
 * inside; *INNER_AT is where INNER starts. A static buffer, valid until
 * the next call (nothing to free when an assertion fails). */
static char *nest(int n, int kind, const char *inner, size_t *len,
                  size_t *inner_at) {
  static char b[6 * (TT_JSON_MAX_DEPTH + 1) + 64];
  size_t il = strlen(inner);
  size_t k = 0;
  assert_true((size_t)n * 6 + il <= sizeof b);
  for (int i = 0; i < n; i++) {
    int obj = kind == 1 || (kind == 2 && i % 2);
    if (obj) memcpy(b + k, "{\"a\":", 5), k += 5;
    else b[k++] = '[';
  }
  if (inner_at) *inner_at = k;
  memcpy(b + k, inner, il), k += il;
  for (int i = n - 1; i >= 0; i--) {
    int obj = kind == 1 || (kind == 2 && i % 2);
    b[k++] = obj ? '}' : ']';
  }
  *len = k;
  return b;
}

static void test_depth(void **state) {
  (void)state;
  const int max = TT_JSON_MAX_DEPTH;
  assert_int_equal(max, 2048);
  for (int kind = 0; kind < 3; kind++) {
    size_t n;
    /* MAX containers, the innermost empty: accepted; one more refused. */
    char *b = nest(max - 1, kind, "[]", &n, NULL);
    OKN(0, b, n);
    b = nest(max - 1, kind, "{}", &n, NULL);
    OKN(0, b, n);
    size_t innermost;
    b = nest(max, kind, "[]", &n, &innermost);
    BADN(0, b, n);
    tt_json_error e = refusal(b, n, 0);
    assert_non_null(strstr(e.text, "depth"));
    assert_int_equal(e.position, innermost); /* the container too many */
    b = nest(max, kind, "{}", &n, NULL);
    BADN(0, b, n);
    /* Well inside the limit, with values at every level. */
    b = nest(max / 2, kind, "[1,\"s\",{\"k\":[true]}]", &n, NULL);
    OKN(0, b, n);
  }
  /* Far too deep, and never closed: refused without exhausting the stack. */
  static char deep[200000];
  memset(deep, '[', sizeof deep);
  BADN(0, deep, sizeof deep);
  for (size_t i = 0; i + 6 <= sizeof deep; i += 6) memcpy(deep + i, "[{\"a\":", 6);
  BADN(0, deep, sizeof deep);
}

/* jansson's limit counts every value, scalars included: MAX - 1 containers
 * may hold a scalar, MAX containers may not (the scalar would be value
 * number MAX + 1 on the way down). */
static void test_depth_counts_scalars(void **state) {
  (void)state;
  const int max = TT_JSON_MAX_DEPTH;
  static const char *const inner[] = {"1", "\"s\"", "true", "null", "-0.5"};
  for (size_t i = 0; i < sizeof inner / sizeof inner[0]; i++)
    for (int kind = 0; kind < 3; kind++) {
      size_t n;
      char *b = nest(max - 1, kind, inner[i], &n, NULL);
      OKN(0, b, n);
        b = nest(max, kind, inner[i], &n, NULL);
      BADN(0, b, n);
      }
}

/* ---- duplicates ------------------------------------------------------------ */

static void test_duplicates(void **state) {
  (void)state;
  static const char *const dups[] = {
      "{\"a\":1,\"a\":2}",
      "{\"a\":1,\"b\":2,\"a\":3}",
      "{\"a\":1,\"\\u0061\":2}",
      "{\"\\n\":1,\"\\u000a\":2}",
      "{\"\":1,\"\":2}",
      "{\"a\":{\"b\":1},\"a\":[2]}",
      "{\"\\n\":\"\\t\",\"\\n\":\"\\r\\n\"}",
      "[{\"x\":{\"a\":1,\"a\":2}}]",
      "{\"\xc3\xa9\":1,\"\\u00e9\":2}",
      "{\"\xf0\x9f\x98\x80\":1,\"\\ud83d\\ude00\":2}",
      "{\"a\":1,\"a\":1,\"a\":1}",
      "{\"k\":[{\"a\":1}],\"k\":[{\"a\":1,\"a\":2}]}",
  };
  for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++) {
    size_t n = strlen(dups[i]);
    OKN(0, dups[i], n);
    OKN(NUL | ANY, dups[i], n);
    BADN(DUP, dups[i], n);
    BADN(DUP | ANY | NUL, dups[i], n);
  }
  static const char *const fine[] = {
      "[{\"a\":1},{\"a\":2}]", "{\"a\":1,\"A\":2}", "{\"a\":{\"a\":{\"a\":1}}}",
      "{\"a\":1,\"a \":2,\" a\":3}", "{\"\\u00e9\":1,\"e\\u0301\":2}",
      "{\"ab\":1,\"a\":2,\"b\":3}",
  };
  for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
    OKN(DUP, fine[i], strlen(fine[i]));
  /* The later member wins. */
  json_t *v = PARSED(0, "{\"a\":1,\"b\":2,\"a\":{\"c\":[3]}}");
  assert_int_equal(json_object_size(v), 2);
  assert_true(json_is_object(json_object_get(v, "a")));
  assert_int_equal(json_integer_value(json_object_get(v, "b")), 2);
  json_decref(v);
  v = PARSED(0, "{\"\\n\":\"\\t\",\"\\n\":\"\\r\\n\"}");
  assert_string_equal(json_string_value(json_object_get(v, "\n")), "\r\n");
  json_decref(v);
}

/* ---- buffers that are not NUL-terminated --------------------------------- */

static void test_prefixes(void **state) {
  (void)state;
  /* Every prefix of every text, under every flag combination. */
  static const char *const texts[] = {
      "[1,2]", "{\"a\":[true,false,null],\"b\":-1.5e-3}",
      "\"\\uD83D\\uDE00\"", "12345", "-0.5e+10", "[\"\xf0\x9f\x98\x80\"]",
      "true", "false", "null", "{\"k\\n\":\"v\\t\"}", "9223372036854775807",
      "-9223372036854775808", "1e308", "[\"a\\u0000b\"]", "{\"a\":1,\"a\":2}",
      " [ {\"x\" : \"\\\\\" } ] ", "\"\xe2\x82\xac\\u20ac\"", "[1e400]",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    size_t n = strlen(texts[i]);
    for (size_t k = 0; k <= n; k++)
      for (unsigned f = 0; f < ALL_FLAGS; f++) AGREE(texts[i], k, f);
  }
  /* The bytes after LEN would change the answer if they were read. */
  json_t *v;
  assert_int_equal(tt_json_parse("12345", 3, ANY, &v, NULL), 0);
  assert_int_equal(json_integer_value(v), 123);
  json_decref(v);
  assert_int_equal(tt_json_parse("1.25e3", 4, ANY, &v, NULL), 0);
  assert_true(json_real_value(v) == 1.25);
  json_decref(v);
  assert_int_equal(tt_json_parse("[1]]", 3, 0, &v, NULL), 0);
  json_decref(v);
  assert_int_equal(tt_json_parse("\"ab\"cd\"", 4, ANY, &v, NULL), 0);
  assert_string_equal(json_string_value(v), "ab");
  json_decref(v);
  assert_int_equal(tt_json_parse("truex", 4, ANY, &v, NULL), 0);
  assert_true(json_is_true(v));
  json_decref(v);
  assert_int_equal(tt_json_parse("true", 3, ANY, &v, NULL), TETHER_EJSON);
  assert_int_equal(tt_json_parse("1.5", 2, ANY, &v, NULL), TETHER_EJSON);
  assert_int_equal(tt_json_parse("-1", 1, ANY, &v, NULL), TETHER_EJSON);
  assert_int_equal(tt_json_parse("1e5", 2, ANY, &v, NULL), TETHER_EJSON);
  assert_int_equal(tt_json_parse("\"\\u0041\"", 6, ANY, &v, NULL), TETHER_EJSON);
  assert_int_equal(tt_json_parse("\"\\uD83D\\uDE00\"", 12, ANY, &v, NULL),
                   TETHER_EJSON);
  assert_int_equal(tt_json_parse("\"\xc3\xa9\"", 2, ANY, &v, NULL), TETHER_EJSON);
  assert_int_equal(tt_json_parse("[] ", 2, 0, &v, NULL), 0);
  json_decref(v);
}

/* ---- error positions ---------------------------------------------------------- */

static size_t at(const char *text, const char *marker) {
  const char *p = strstr(text, marker);
  assert_non_null(p);
  return (size_t)(p - text);
}

static void where(const char *text, size_t len, unsigned flags, size_t pos,
                  int line, int column, const char *says) {
  tt_json_error e = refusal(text, len, flags);
  if (e.position != pos || e.line != line || e.column != column ||
      (says && !strstr(e.text, says))) {
    print_error("\"%s\": got %zu (%d:%d) \"%s\", want %zu (%d:%d) \"%s\"\n",
                show(text, len), e.position, e.line, e.column, e.text, pos,
                line, column, says ? says : "");
    fail();
  }
}
#define WHERE(fl, lit, pos, l, c, says) where(lit, sizeof lit - 1, fl, pos, l, c, says)

static void test_error_positions(void **state) {
  (void)state;
  const char *t;
  t = "{\n  \"a\": 1,\n  \"b\": tru\n}";
  WHERE(0, "{\n  \"a\": 1,\n  \"b\": tru\n}", at(t, "tru"), 3, 8, NULL);
  t = "[\n  1,\n  \"ok\",\n  \"x\x01y\"\n]";
  WHERE(0, "[\n  1,\n  \"ok\",\n  \"x\x01y\"\n]", at(t, "\x01"), 4, 5,
        "control character");
  t = "[1,\n 2\n 3]";
  WHERE(0, "[1,\n 2\n 3]", at(t, "3"), 3, 2, NULL);
  t = "{\"a\":\n\"\xc3\xa9\xff\"}";
  WHERE(0, "{\"a\":\n\"\xc3\xa9\xff\"}", at(t, "\xff"), 2, 4, "UTF-8");
  t = "[]\n\n  x";
  WHERE(0, "[]\n\n  x", at(t, "x"), 3, 3, "end of input");
  t = "[\r\n1,\r\nx]";
  WHERE(0, "[\r\n1,\r\nx]", at(t, "x"), 3, 1, NULL);
  WHERE(0, "[1,\n", 4, 2, 1, NULL); /* at the end */
  t = "[\n  9223372036854775808\n]";
  WHERE(0, "[\n  9223372036854775808\n]", at(t, "9"), 2, 3, "too big integer");
  t = "[\n  -9223372036854775809\n]";
  WHERE(0, "[\n  -9223372036854775809\n]", at(t, "-"), 2, 3,
        "too big negative integer");
  t = "[\n\n1e999]";
  WHERE(0, "[\n\n1e999]", at(t, "1"), 3, 1, "overflow");
  t = "{\"k\":\n  \"ab\\q\"}";
  WHERE(0, "{\"k\":\n  \"ab\\q\"}", at(t, "\\"), 2, 6, "escape");
  t = "[\"x\",\n \"\\uD800\"]";
  WHERE(0, "[\"x\",\n \"\\uD800\"]", at(t, "\\"), 2, 3, "surrogate");
  t = "[\"x\",\n \"\\uDC00\"]";
  WHERE(0, "[\"x\",\n \"\\uDC00\"]", at(t, "\\"), 2, 3, "surrogate");
  t = "[\n\"\\u0000\"]";
  WHERE(0, "[\n\"\\u0000\"]", at(t, "\\"), 2, 2, NULL);
  t = "{\"a\":\n1,\n\"\\u0000\":2}";
  WHERE(NUL, "{\"a\":\n1,\n\"\\u0000\":2}", at(t, "\\"), 3, 2, NULL);
  t = "\n\n  1";
  WHERE(0, "\n\n  1", at(t, "1"), 3, 3, "expected");
  t = "[\"\xe2\x82\xac\", x]";
  WHERE(0, "[\"\xe2\x82\xac\", x]", at(t, "x"), 1, 9, NULL); /* columns are bytes */
  t = "[1,\n\x80]";
  WHERE(0, "[1,\n\x80]", at(t, "\x80"), 2, 1, NULL);
  t = "{\n\"a\"\n1}";
  WHERE(0, "{\n\"a\"\n1}", at(t, "1"), 3, 1, NULL);
  t = "{\n 7:1}";
  WHERE(0, "{\n 7:1}", at(t, "7"), 2, 2, NULL);
  t = "[\n  1.]";
  WHERE(0, "[\n  1.]", at(t, "1"), 2, 3, NULL); /* at the number */
  t = "[\n  01]";
  WHERE(0, "[\n  01]", at(t, "0"), 2, 3, NULL);

  /* Unterminated string: at its opening quote. */
  t = "[1,\n \"abc";
  WHERE(0, "[1,\n \"abc", at(t, "\""), 2, 2, "unterminated");
  /* A duplicate key: at the repeated key (or just after it). */
  t = "{\n\"a\": 1,\n\"a\": 2}";
  tt_json_error e = refusal(t, strlen(t), DUP);
  size_t key = (size_t)(strrchr(t, 'a') - t) - 1; /* the second "a" */
  assert_true(e.position >= key && e.position <= key + 3);
  assert_int_equal(e.line, 3);
  assert_non_null(strstr(e.text, "duplicate"));
}

/* ---- out of memory -------------------------------------------------------- */

static long alloc_count, alloc_live, alloc_fail_at;

static void *failing_malloc(size_t n) {
  if (++alloc_count == alloc_fail_at) return NULL;
  void *p = malloc(n);
  if (p) alloc_live++;
  return p;
}

static void counting_free(void *p) {
  if (p) alloc_live--;
  free(p);
}

static void test_out_of_memory(void **state) {
  (void)state;
  static const char text[] =
      "{\"a\":[1,-2.5e3,\"x\\ny\",{\"b\\u00e9\":null,\"c\":[true,false]}],"
      "\"a\":\"\\uD83D\\uDE00 long string with escapes \\t\\t\\t\","
      "\"k\\n\":{\"\\r\":\"\\r\"},\"d\":[[[[]]]],\"e\":1e-5}";
  json_t *want = json_loadb(text, sizeof text - 1, 0, NULL);
  assert_non_null(want);
  json_malloc_t om;
  json_free_t of;
  json_get_alloc_funcs(&om, &of);
  int succeeded = 0;
  for (alloc_fail_at = 1; alloc_fail_at < 10000 && !succeeded; alloc_fail_at++) {
    json_t *v = (json_t *)&om;
    tt_json_error e;
    alloc_count = alloc_live = 0;
    json_set_alloc_funcs(failing_malloc, counting_free);
    int rc = tt_json_parse(text, sizeof text - 1, 0, &v, &e);
    if (rc == 0) {
      succeeded = 1;
      assert_true(alloc_count < alloc_fail_at);
      assert_true(same_tree(v, want));
      json_decref(v);
    } else {
      assert_int_equal(rc, TETHER_ENOMEM);
      assert_null(v);
      assert_string_equal(e.text, "out of memory");
    }
    json_set_alloc_funcs(om, of);
    assert_int_equal(alloc_live, 0); /* nothing leaked */
  }
  assert_true(succeeded);
  assert_true(alloc_fail_at > 20); /* it did fail many allocations */
  json_decref(want);
}

/* ---- randomized differential ---------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

typedef struct {
  char *b;
  size_t len, cap;
} text_buf;

static void put(text_buf *t, const void *p, size_t n) {
  if (t->len + n + 1 > t->cap) {
    while (t->len + n + 1 > t->cap) t->cap = t->cap ? 2 * t->cap : 256;
    t->b = realloc(t->b, t->cap);
    assert_non_null(t->b);
  }
  memcpy(t->b + t->len, p, n);
  t->len += n;
}
static void puts_(text_buf *t, const char *s) { put(t, s, strlen(s)); }

static const char *pick(const char *const *list, size_t n) {
  return list[rnd() % n];
}
#define PICK(list) pick(list, sizeof list / sizeof list[0])

/* Random trees for jansson to write: strings with NUL bytes, every kind
 * of UTF-8, reals of random bits. */
static json_t *rnd_value(int depth) {
  if (depth == 0 && rnd() % 4) { /* mostly a container at the top */
    json_t *c = rnd() & 1 ? json_array() : json_object();
    size_t n = rnd() % 6;
    for (size_t i = 0; i < n; i++) {
      if (json_is_array(c)) {
        json_array_append_new(c, rnd_value(1));
      } else {
        char k[8];
        snprintf(k, sizeof k, "k%u", (unsigned)(rnd() % 10));
        json_object_set_new(c, k, rnd_value(1));
      }
    }
    return c;
  }
  static const char *const pieces[] = {
      "a", "Z", "0", " ", "\"", "\\", "/", "\b", "\n", "\t", "\x01", "\x1f",
      "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
      "\xef\xbf\xbf", "key", "k"};
  char text[128];
  size_t len = 0;
  switch (rnd() % (depth > 4 ? 6 : 8)) {
  case 0: return json_null();
  case 1: return json_boolean(rnd() & 1);
  case 2: {
    static const json_int_t edge[] = {0, -1, 1, INT64_MAX, INT64_MIN, 42,
                                      INT64_MAX - 1, INT64_MIN + 1};
    return json_integer(rnd() & 1 ? edge[rnd() % 8]
                                  : (json_int_t)(rnd() >> (rnd() % 64)));
  }
  case 3: {
    static const double edge[] = {0.0, -0.0, 0.1, 1.0, 1e300, 1e-7, -2.5e-300,
                                  5e-324, 1.7976931348623157e308, 1e22};
    if (rnd() & 1) return json_real(edge[rnd() % 10]);
    double d;
    uint64_t bits = rnd();
    memcpy(&d, &bits, sizeof d);
    if (d != d || d - d != 0) d = 3.25;
    return json_real(d);
  }
  case 4:
  case 5: {
    size_t want = rnd() % 8;
    for (size_t i = 0; i < want; i++) {
      const char *p = PICK(pieces);
      size_t pl = strlen(p);
      memcpy(text + len, p, pl), len += pl;
    }
    if (rnd() % 8 == 0) text[len++] = 0; /* \u0000 */
    return json_stringn(text, len);
  }
  case 6: {
    json_t *a = json_array();
    size_t n = rnd() % 5;
    for (size_t i = 0; i < n; i++) json_array_append_new(a, rnd_value(depth + 1));
    return a;
  }
  default: {
    json_t *o = json_object();
    size_t n = rnd() % 5;
    for (size_t i = 0; i < n; i++) {
      len = 0;
      size_t want = rnd() % 3;
      for (size_t j = 0; j < want; j++) {
        const char *p = PICK(pieces);
        size_t pl = strlen(p);
        memcpy(text + len, p, pl), len += pl;
      }
      if (rnd() % 16 == 0) text[len++] = 0;
      json_object_setn_new(o, text, len, rnd_value(depth + 1));
    }
    return o;
  }
  }
}

static const char *const space[] = {"", "", "", " ", "\n", "\t", "\r\n", "  "};

/* Text written directly: duplicate keys, every escape (lone surrogates,
 * \u0000 included), numbers at the edges, white space between tokens. */
static void rnd_text(text_buf *t, int depth) {
  static const char *const keys[] = {
      "\"a\"", "\"b\"", "\"\\u0061\"", "\"\"", "\"\\n\"", "\"a\\u0000\"",
      "\"\xc3\xa9\"", "\"\\u00e9\"", "\"key\"", "\"a\""};
  static const char *const pieces[] = {
      "a", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
      "\\u0041", "\\u00e9", "\\uD83D\\uDE00", "\\uDBFF\\uDFFF", "\\u0000",
      "\\uD800", "\\uDC00", "\\uFFFF", "\xc3\xa9", "\xf0\x9f\x98\x80", " ",
      "\xed\x9f\xbf", "\\u20AC"};
  static const char *const numbers[] = {
      "0", "-0", "1", "-1", "0.5", "-0.0", "1e5", "1E-5", "1e+5", "1e400",
      "-1e400", "1e-400", "9223372036854775807", "9223372036854775808",
      "-9223372036854775808", "-9223372036854775809", "18446744073709551616",
      "4.9e-324", "1.7976931348623157e308", "123.456e-7", "0e0", "10"};
  puts_(t, PICK(space));
  unsigned kind = (unsigned)(rnd() % (depth > 5 ? 5 : 7));
  if (depth == 0 && rnd() % 4) kind = 5 + (unsigned)(rnd() & 1);
  switch (kind) {
  case 0: puts_(t, rnd() % 3 == 0 ? "true" : rnd() & 1 ? "false" : "null"); break;
  case 1:
  case 2:
    if (rnd() & 1) {
      puts_(t, PICK(numbers));
    } else {
      char n[40];
      int k = snprintf(n, sizeof n, "%s%llu", rnd() & 1 ? "-" : "",
                       (unsigned long long)(rnd() >> (rnd() % 64)));
      if (rnd() % 3 == 0)
        k += snprintf(n + k, sizeof n - (size_t)k, ".%u",
                      (unsigned)(rnd() % 1000));
      if (rnd() % 3 == 0)
        snprintf(n + k, sizeof n - (size_t)k, "e%d", (int)(rnd() % 700) - 350);
      puts_(t, n);
    }
    break;
  case 3:
  case 4: {
    puts_(t, "\"");
    size_t n = rnd() % 6;
    for (size_t i = 0; i < n; i++) puts_(t, PICK(pieces));
    puts_(t, "\"");
    break;
  }
  case 5: {
    puts_(t, "[");
    size_t n = rnd() % 5;
    for (size_t i = 0; i < n; i++) {
      if (i) puts_(t, ",");
      rnd_text(t, depth + 1);
    }
    puts_(t, PICK(space));
    puts_(t, "]");
    break;
  }
  default: {
    puts_(t, "{");
    size_t n = rnd() % 5;
    for (size_t i = 0; i < n; i++) {
      if (i) puts_(t, ",");
      puts_(t, PICK(space));
      puts_(t, PICK(keys));
      puts_(t, PICK(space));
      puts_(t, ":");
      rnd_text(t, depth + 1);
    }
    puts_(t, PICK(space));
    puts_(t, "}");
    break;
  }
  }
  puts_(t, PICK(space));
}

static void mutate(text_buf *t) {
  static const char *const special[] = {
      "\"", "\\", "\xc0", "\xed", "\xf4", "\x80", "\xbf", "\xc3", "\xe2\x82",
      "0", "1", "9", "e", "E", "-", "+", ".", ",", ":", "[", "]", "{", "}",
      " ", "\n", "\x00", "\x1f", "\\u", "\\uD800", "\\uDC00", "\\u0000",
      "\\n", "\"\"", "9223372036854775808", "1e400", "true", "null", "00",
      "\xef\xbb\xbf", "\xff", "u", "\"a\":1,"};
  size_t pos = t->len ? rnd() % (t->len + 1) : 0;
  switch (rnd() % 7) {
  case 0: /* flip a bit */
    if (t->len) t->b[rnd() % t->len] ^= (char)(1u << (rnd() % 8));
    break;
  case 1: /* any byte */
    if (t->len) t->b[rnd() % t->len] = (char)rnd();
    break;
  case 2: /* overwrite with a special byte */
    if (t->len) {
      const char *s = PICK(special);
      t->b[rnd() % t->len] = s[0];
    }
    break;
  case 3: { /* insert a special byte or string */
    const char *s = PICK(special);
    size_t n = s[0] ? strlen(s) : 1;
    put(t, s, n); /* grow, then move into place */
    memmove(t->b + pos + n, t->b + pos, t->len - n - pos);
    memcpy(t->b + pos, s, n);
    break;
  }
  case 4: /* truncate */
    t->len = pos;
    break;
  case 5: { /* delete a few bytes */
    size_t n = 1 + rnd() % 4;
    if (pos + n > t->len) n = t->len - pos;
    memmove(t->b + pos, t->b + pos + n, t->len - pos - n);
    t->len -= n;
    break;
  }
  default: { /* copy a range elsewhere (repeats members, keys, escapes) */
    if (!t->len || t->len > 4096) break;
    size_t from = rnd() % t->len, n = 1 + rnd() % 16;
    if (from + n > t->len) n = t->len - from;
    char tmp[16];
    memcpy(tmp, t->b + from, n);
    put(t, tmp, n);
    memmove(t->b + pos + n, t->b + pos, t->len - n - pos);
    memcpy(t->b + pos, tmp, n);
    break;
  }
  }
}

/* tt_json_span.canonical: whenever it says 1, the element's bytes are
 * tt_canon of the element (the intent hash fast path relies on it); the
 * canonical writer's own output without escapes is always recognised;
 * white space, key order, "-0", reals not in canonical form, "\/" and
 * duplicate keys are not. */
typedef struct {
  int n, canonical[8];
  int mismatches;
} span_seen;

static int span_each(void *ctx, json_t *elem, const tt_json_span *span) {
  span_seen *c = ctx;
  if (span->canonical) {
    size_t len;
    char *t = tt_canon_n(elem, &len);
    if (!t || len != span->len || memcmp(t, span->text, len) != 0)
      c->mismatches++;
    free(t);
  }
  if (c->n < 8) c->canonical[c->n] = span->canonical;
  c->n++;
  json_decref(elem);
  return 0;
}

static void test_streamed_span_canonical(void **state) {
  (void)state;
  static const struct {
    const char *elem;
    int canonical;
  } cases[] = {
      {"{\"a\":1,\"b\":[true,null,\"x\"]}", 1},
      {"{\"b\":1,\"a\":2}", 0},
      {"{\"a\":1,\"a\":2}", 0},
      {"{\"a\":1, \"b\":2}", 0},
      {"{\"ab\":1,\"a\":2}", 0},
      {"{\"a\":1,\"ab\":2}", 1},
      {"-0", 0},
      {"0", 1},
      {"1.5", 1},
      {"1.50", 0},
      {"1e2", 0},
      {"100.0", 1},
      {"\"a\\/b\"", 0},
      {"\"a\\nb\\\"\"", 1},
      {"\"\\u0041\"", 0},
      {"[ 1]", 0},
      {"{}", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char body[200];
    snprintf(body, sizeof body, "{\"k\": [ %s , 7 ] }", cases[i].elem);
    span_seen c = {0};
    json_t *out = NULL;
    assert_int_equal(tt_json_parse_streamed(body, strlen(body), 0, "k",
                                            span_each, &c, &out, NULL),
                     0);
    json_decref(out);
    assert_int_equal(c.n, 2);
    if (c.canonical[0] != cases[i].canonical)
      fail_msg("%s: canonical %d, expected %d", cases[i].elem, c.canonical[0],
               cases[i].canonical);
    assert_int_equal(c.canonical[1], 1);
    assert_int_equal(c.mismatches, 0);
  }
  /* Random trees, written by tt_canon and by jansson in other forms. */
  text_buf t = {NULL, 0, 0};
  int recognised = 0;
  for (int i = 0; i < 5000; i++) {
    json_t *v = rnd_value(0);
    char *s = i % 2 ? tt_canon(v) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(v);
    if (!s) continue; /* tt_canon refuses what is not UTF-8 */
    t.len = 0;
    puts_(&t, "{\"k\":[");
    puts_(&t, s);
    puts_(&t, "]}");
    span_seen c = {0};
    json_t *out = NULL;
    if (tt_json_parse_streamed(t.b, t.len, TT_JSON_ALLOW_NUL, "k", span_each,
                               &c, &out, NULL) == 0) {
      assert_int_equal(c.mismatches, 0);
      if (i % 2 && !strchr(s, '\\')) {
        if (!c.canonical[0]) fail_msg("not recognised: %s", s);
        recognised++;
      }
    }
    json_decref(out);
    free(s);
  }
  free(t.b);
  assert_true(recognised > 500);
}

static void test_random_differential(void **state) {
  (void)state;
  const int inputs = 20000;
  long accepted[ALL_FLAGS] = {0}, checked = 0;
  text_buf t = {NULL, 0, 0};
  for (int i = 0; i < inputs; i++) {
    t.len = 0;
    if (i % 2 == 0) {
      json_t *v = rnd_value(0);
      size_t fl = JSON_ENCODE_ANY;
      switch (rnd() % 4) {
      case 0: fl |= JSON_COMPACT; break;
      case 1: fl |= JSON_INDENT(rnd() % 4); break;
      case 2: fl |= JSON_ENSURE_ASCII | JSON_COMPACT; break; /* \uXXXX pairs */
      default: fl |= JSON_ESCAPE_SLASH | JSON_REAL_PRECISION(1 + rnd() % 17); break;
      }
      char *s = json_dumps(v, fl);
      assert_non_null(s);
      puts_(&t, s);
      free(s);
      json_decref(v);
    } else {
      rnd_text(&t, 0);
    }
    int mutations = rnd() % 10 < 4 ? 0 : 1 + (int)(rnd() % 3);
    for (int m = 0; m < mutations; m++) mutate(&t);
    for (unsigned f = 0; f < ALL_FLAGS; f++) {
      if (agree_at(t.b ? t.b : "", t.len, f, NULL, __FILE__, __LINE__))
        accepted[f]++;
      checked++;
    }
  }
  free(t.b);
  long total = 0;
  for (unsigned f = 0; f < ALL_FLAGS; f++) total += accepted[f];
  print_message("random differential: %d inputs x %u flag sets = %ld parses, "
                "%ld accepted (flags 0: %ld, ANY: %ld, ANY|ALLOW_NUL: %ld, "
                "ANY|REJECT_DUPLICATES: %ld); jansson skipped a NUL byte "
                "%ld times so far\n",
                inputs, ALL_FLAGS, checked, total, accepted[0], accepted[ANY],
                accepted[ANY | NUL], accepted[ANY | DUP], jansson_nul_quirk);
  /* Both decisions are well represented, and the flags matter. */
  assert_true(total > checked / 5 && total < checked * 4 / 5);
  assert_true(accepted[ANY] > accepted[0]);
  assert_true(accepted[ANY | NUL] > accepted[ANY]);
  assert_true(accepted[ANY | DUP] < accepted[ANY]);
}

/* ---- locale -------------------------------------------------------------- */

static const char locale_text[] =
    "[1.5,-0.25,2e-1,1.25E+2,0.5e-300,123.456,-0.0,1e308,4.9e-324]";

/* Reads LOCALE_TEXT with LC_NUMERIC set to NAME (if installed) and checks
 * that it gives what it gives in the C locale. Returns 0 if NAME is not
 * installed. */
static int same_in_locale(const char *name, int single_byte_point) {
  json_t *c = tt_json_load(locale_text, sizeof locale_text - 1, 0);
  assert_non_null(c);
  char *old = strdup(setlocale(LC_NUMERIC, NULL));
  assert_non_null(old);
  if (!setlocale(LC_NUMERIC, name)) {
    free(old);
    json_decref(c);
    return 0;
  }
  const char *point = localeconv()->decimal_point;
  int single = point && point[0] && !point[1];
  print_message("locale %s: decimal point \"%s\"\n", name, point ? point : "?");
  json_t *v = tt_json_load(locale_text, sizeof locale_text - 1, 0);
  int same = v && same_tree(v, c);
  /* jansson also puts the locale's point in place of '.' (and asserts
   * when that is more than one byte); compare with it only then. */
  if (same && single && single_byte_point)
    for (unsigned f = 0; f < ALL_FLAGS; f++)
      AGREE(locale_text, sizeof locale_text - 1, f);
  setlocale(LC_NUMERIC, old);
  free(old);
  if (!same) {
    print_error("%s: reals read differently than in the C locale\n", name);
    fail();
  }
  json_decref(v);
  json_decref(c);
  return 1;
}

static void test_locale_comma(void **state) {
  (void)state;
  static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "de_DE",
                                      "fr_FR.UTF-8", "fr_FR.utf8"};
  int ran = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !ran; i++)
    ran = same_in_locale(names[i], 1);
  if (!ran)
    print_message("skipped: no locale with a comma decimal point "
                  "(de_DE.UTF-8, fr_FR.UTF-8) is installed\n");
}

/* A decimal point of more than one byte (ps_AF: U+066B). */
static void test_locale_multibyte_point(void **state) {
  (void)state;
  if (!same_in_locale("ps_AF.UTF-8", 0) && !same_in_locale("ps_AF.utf8", 0))
    print_message("skipped: ps_AF.UTF-8 (a two-byte decimal point) is not "
                  "installed\n");
}

/* Canonical text passes without a tree; any other text, valid or not,
 * does not (a \u escape included: the reader does not vouch for it). */
static void test_check_canonical(void **state) {
  (void)state;
  const unsigned f = TT_JSON_ANY | TT_JSON_ALLOW_NUL;
  static const char *const pass[] = {
      "{}", "[]", "0", "-1", "1.5", "\"x\"", "true", "null",
      "{\"a\":[1,{\"b\":null}],\"b\":\"caf\xc3\xa9\",\"c\":\"\\n\\\"\"}",
      "[[[[[[1]]]]]]", "{\"a\":1,\"ab\":2,\"b\":3}"};
  static const char *const fail[] = {
      "", " 1", "1 ", "{\"b\":1,\"a\":2}", "{\"a\":1,\"a\":1}", "-0", "1e2",
      "01", "{\"a\" :1}", "[1,]", "\"\\u0041\"", "\"\\u0000\"", "{", "nul",
      "\"\xff\"", "1.50", "[1] [2]"};
  for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++)
    if (tt_json_check_canonical(pass[i], strlen(pass[i]), f) != 0)
      fail_msg("refused canonical %s", pass[i]);
  for (size_t i = 0; i < sizeof fail / sizeof fail[0]; i++)
    if (tt_json_check_canonical(fail[i], strlen(fail[i]), f) != TETHER_EJSON)
      fail_msg("passed %s", fail[i]);
  /* Depth counts as in a parse: 2048 levels are the most. */
  char deep[2 * 2049 + 1];
  for (size_t n = 2048; n <= 2049; n++) {
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    assert_int_equal(tt_json_check_canonical(deep, 2 * n, f),
                     n <= 2048 ? 0 : TETHER_EJSON);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_string_escapes),
      cmocka_unit_test(test_string_control_and_nul_bytes),
      cmocka_unit_test(test_string_nul),
      cmocka_unit_test(test_string_utf8),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_integer_limits),
      cmocka_unit_test(test_literals),
      cmocka_unit_test(test_top_level),
      cmocka_unit_test(test_trailing_and_empty),
      cmocka_unit_test(test_whitespace),
      cmocka_unit_test(test_structure),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_depth_counts_scalars),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_prefixes),
      cmocka_unit_test(test_error_positions),
      cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_random_differential),
      cmocka_unit_test(test_streamed_span_canonical),
      cmocka_unit_test(test_locale_comma),
      cmocka_unit_test(test_locale_multibyte_point),
      cmocka_unit_test(test_check_canonical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
