/* fuzz_json.c — flags byte + JSON text -> tt_json_parse, against
 * json_loadb.
 *
 * The low 3 bits of the first byte are the tt_json_parse flags
 * (TT_JSON_ANY, TT_JSON_REJECT_DUPLICATES, TT_JSON_ALLOW_NUL), given to
 * json_loadb as JSON_DECODE_ANY, JSON_REJECT_DUPLICATES, JSON_ALLOW_NUL;
 * the rest is the text (not NUL-terminated). Properties: never a crash,
 * leak or UB; both accept or both refuse; accepted trees are equal
 * (json_equal, and reals bit for bit); tt_json_load and a parse without
 * an error record decide the same; a refusal is TETHER_EJSON with an
 * error text and a position inside the text whose line and column are
 * right.
 *
 * One exception to "what jansson accepts" (core/json.h): json_loadb skips
 * a NUL byte that directly follows a number or literal ("[1\0]" loads;
 * akheron/jansson#331), while a NUL byte is never JSON. A text with a NUL
 * byte must be refused by tt_json_parse, whatever jansson says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/util.h"
#include "fuzz_common.h"

static int same_tree(json_t *a, json_t *b) {
  if (json_typeof(a) != json_typeof(b))
    return 0;
  switch (json_typeof(a)) {
  case JSON_OBJECT: {
    const char *k;
    size_t klen;
    json_t *v;
    if (json_object_size(a) != json_object_size(b))
      return 0;
    json_object_keylen_foreach(a, k, klen, v) {
      json_t *w = json_object_getn(b, k, klen);
      if (!w || !same_tree(v, w))
        return 0;
    }
    return 1;
  }
  case JSON_ARRAY:
    if (json_array_size(a) != json_array_size(b))
      return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!same_tree(json_array_get(a, i), json_array_get(b, i)))
        return 0;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect expect = ff_expectation();
  if (size < 1)
    return 0;
  unsigned flags = data[0] & 7u;
  size_t jflags = 0;
  if (flags & TT_JSON_ANY)
    jflags |= JSON_DECODE_ANY;
  if (flags & TT_JSON_REJECT_DUPLICATES)
    jflags |= JSON_REJECT_DUPLICATES;
  if (flags & TT_JSON_ALLOW_NUL)
    jflags |= JSON_ALLOW_NUL;
  /* An exact-size copy of the text: a read past it is caught by ASan. */
  size_t len = size - 1;
  char *text = malloc(len ? len : 1);
  FF_CHECK(text != NULL, "malloc");
  if (len)
    memcpy(text, data + 1, len);

  json_error_t je;
  json_t *want = json_loadb(text, len, jflags, &je);
  int nul = memchr(text, 0, len) != NULL;
  tt_json_error e;
  memset(&e, 'x', sizeof e);
  json_t *got = (json_t *)&e; /* must be overwritten */
  int rc = tt_json_parse(text, len, flags, &got, &e);

  if (rc == 0) {
    FF_CHECK(expect != FF_EXPECT_BAD, "invalid text accepted");
    FF_CHECK(got != NULL, "accepted without a value");
    FF_CHECK(!nul, "a text with a NUL byte accepted");
    FF_CHECK(want != NULL, "tt_json_parse accepts (flags %u), json_loadb "
             "refuses: %s", flags, je.text);
    if (!same_tree(want, got) || !json_equal(want, got)) {
      char *a = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
      char *b = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
      FF_FAIL("trees differ (flags %u):\n jansson %s\n tt      %s", flags,
              a ? a : "?", b ? b : "?");
    }
  } else {
    FF_CHECK(expect != FF_EXPECT_OK, "valid text refused: %.120s", e.text);
    FF_CHECK(rc == TETHER_EJSON, "refusal is %d, not EJSON", rc);
    FF_CHECK(got == NULL, "refused with a value");
    FF_CHECK(memchr(e.text, 0, sizeof e.text) && e.text[0] &&
                 strncmp(e.text, "xxxx", 4),
             "refusal without an error text");
    FF_CHECK(want == NULL || nul,
             "json_loadb accepts (flags %u), tt_json_parse refuses: %s",
             flags, e.text);
    FF_CHECK(e.position <= len, "error position %zu past %zu", e.position,
             len);
    int line = 1, column = 1;
    for (size_t i = 0; i < e.position; i++) {
      if (text[i] == '\n') {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    FF_CHECK(e.line == line && e.column == column,
             "position %zu is %d:%d, error says %d:%d", e.position, line,
             column, e.line, e.column);
  }

  /* The check without building agrees: it passes exactly the accepted
   * texts that are tt_canon's own (never one the parser refuses), or
   * leaves one it does not vouch for (a \u escape) to the caller. */
  int crc = tt_json_check_canonical(text, len, flags | TT_JSON_ANY);
  FF_CHECK(crc == 0 || crc == TETHER_EJSON, "check_canonical: %d", crc);
  if (crc == 0) {
    json_t *any = NULL;
    FF_CHECK(tt_json_parse(text, len, flags | TT_JSON_ANY, &any, NULL) == 0,
             "check_canonical passes a text the parser refuses");
    char *c = tt_canon(any);
    FF_CHECK(c && strlen(c) == len && memcmp(c, text, len) == 0,
             "check_canonical passes a text that is not canonical");
    free(c);
    json_decref(any);
  } else if (rc == 0 && got && !memchr(text, '\\', len)) {
    char *c = tt_canon(got);
    FF_CHECK(!c || strlen(c) != len || memcmp(c, text, len) != 0,
             "check_canonical refuses canonical text without escapes");
    free(c);
  }

  json_t *again = (json_t *)&e;
  int rc2 = tt_json_parse(text, len, flags, &again, NULL);
  json_t *loaded = tt_json_load(text, len, flags);
  FF_CHECK(rc2 == rc, "without an error record: %d, with: %d", rc2, rc);
  FF_CHECK(!again == !got && (!again || same_tree(again, got)),
           "a second parse differs");
  FF_CHECK(!loaded == !got && (!loaded || same_tree(loaded, got)),
           "tt_json_load differs");
  json_decref(loaded);
  json_decref(again);
  json_decref(got);
  json_decref(want);
  free(text);
  return 0;
}
