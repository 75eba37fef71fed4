/* core_intent.c — intent parsing, wire form, hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/intent.h"
#include "core/json.h"

#define CLIENT "0123456789abcdef0123456789abcdef"
#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"
#define H64 "1111111111111111111111111111111111111111111111111111111111111111"

/* A fixed intent with every kind of op. Its hash is the known answer. */
static const char *FIXED =
    "{\"client\":\"" CLIENT "\",\"seq\":3,\"prev\":\"" H64 "\","
    "\"hash\":\"" ZERO64 "\",\"hlc\":111546413891584000,\"schema\":2,"
    "\"coll\":\"notes\",\"id\":\"n1\",\"base\":17,\"label\":\"rename\","
    "\"ops\":["
    "{\"kind\":\"set\",\"field\":\"title\",\"value\":\"B\",\"base_value\":\"A\"},"
    "{\"kind\":\"unset\",\"field\":\"old\"},"
    "{\"kind\":\"incr\",\"field\":\"n\",\"value\":-3,\"base_value\":10},"
    "{\"kind\":\"add\",\"field\":\"tags\",\"value\":{\"x\":[1,2.5]}},"
    "{\"kind\":\"remove\",\"field\":\"tags\",\"value\":\"t\"},"
    "{\"kind\":\"create\",\"value\":{\"caf\xc3\xa9\":null,\"a\":true}},"
    "{\"kind\":\"delete\"},"
    "{\"kind\":\"resolve\",\"field\":\"title\",\"value\":\"C\","
    "\"conflict\":\"" CLIENT "-2-0\"},"
    "{\"kind\":\"resolve\",\"field\":\"body\",\"value\":null,\"unset\":true,"
    "\"conflict\":\"" CLIENT "-2-1\",\"base_value\":null}"
    "]}";

/* BLAKE2b-256 of tt_canon(FIXED without "hash"), computed once with
 * b2sum -l 256 over the canonical text and frozen here: any change to the
 * canonical encoding or the hashing breaks it (and every deployed chain). */
#define FIXED_HASH "4d24175f6b0f3a3a01267fc66aee39807fcad65332abb8ee8c70dbd32be5f468"

static json_t *load(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, JSON_ALLOW_NUL, &e);
  if (!j)
    fail_msg("bad test JSON: %s", e.text);
  return j;
}

static void parse_ok(const char *s, tt_intent *in) {
  char err[256] = "";
  json_t *j = load(s);
  int rc = tt_intent_from_json(j, in, err, sizeof err);
  if (rc)
    fail_msg("parse failed %d: %s", rc, err);
  json_decref(j);
}

static void test_kind_names(void **state) {
  (void)state;
  const char *names[] = {"set",    "unset",  "incr",   "add",
                         "remove", "delete", "create", "resolve"};
  for (int k = 0; k < TT_OP__COUNT; k++) {
    tt_op_kind got;
    assert_string_equal(tt_op_kind_name((tt_op_kind)k), names[k]);
    assert_int_equal(tt_op_kind_parse(names[k], &got), 0);
    assert_int_equal(got, k);
  }
  tt_op_kind got;
  assert_int_equal(tt_op_kind_parse("merge", &got), TETHER_EINVAL);
  assert_int_equal(tt_op_kind_parse("SET", &got), TETHER_EINVAL);
  assert_int_equal(tt_op_kind_parse(NULL, &got), TETHER_EINVAL);
}

static void test_roundtrip(void **state) {
  (void)state;
  tt_intent in;
  parse_ok(FIXED, &in);
  assert_int_equal(in.seq, 3);
  assert_int_equal(in.base, 17);
  assert_int_equal(in.schema, 2);
  assert_true(in.hlc == 111546413891584000ull);
  assert_string_equal(in.coll, "notes");
  assert_string_equal(in.id, "n1");
  assert_string_equal(in.label, "rename");
  assert_int_equal(in.nops, 9);
  assert_int_equal(in.ops[0].kind, TT_OP_SET);
  assert_string_equal(in.ops[0].field, "title");
  assert_string_equal(json_string_value(in.ops[0].value), "B");
  assert_string_equal(json_string_value(in.ops[0].base_value), "A");
  assert_null(in.ops[1].value);
  assert_null(in.ops[1].base_value);
  assert_int_equal(json_integer_value(in.ops[2].value), -3);
  assert_null(in.ops[5].field);
  assert_null(in.ops[6].field);
  assert_null(in.ops[6].value);
  assert_string_equal(in.ops[7].conflict, CLIENT "-2-0");
  assert_false(in.ops[7].resolve_unset);
  assert_true(in.ops[8].resolve_unset);
  assert_true(json_is_null(in.ops[8].base_value)); /* null, not absent */
  assert_int_equal(in.client[0], 0x01);
  assert_int_equal(in.prev[31], 0x11);

  json_t *orig = load(FIXED);
  json_t *back = tt_intent_to_json(&in, 1);
  assert_non_null(back);
  char *a = tt_canon(orig), *b = tt_canon(back);
  assert_string_equal(a, b);
  free(a);
  free(b);
  json_decref(back);
  back = tt_intent_to_json(&in, 0);
  assert_null(json_object_get(back, "hash"));
  json_object_del(orig, "hash");
  assert_true(tt_canon_equal(orig, back));
  json_decref(back);
  json_decref(orig);

  /* Without a label the key is omitted. */
  free(in.label);
  in.label = NULL;
  back = tt_intent_to_json(&in, 1);
  assert_null(json_object_get(back, "label"));
  json_decref(back);
  tt_intent_clear(&in);
  tt_intent_clear(&in); /* twice is harmless */
}

static void test_hash_known_answer(void **state) {
  (void)state;
  tt_intent in;
  uint8_t h[TT_HASH_LEN];
  char hex[2 * TT_HASH_LEN + 1];
  parse_ok(FIXED, &in);
  assert_int_equal(tt_intent_compute_hash(&in, h), 0);
  tt_hex_encode(h, TT_HASH_LEN, hex);
  assert_string_equal(hex, FIXED_HASH);
  assert_int_equal(tt_intent_check_hash(&in), TETHER_ECHAIN);
  memcpy(in.hash, h, TT_HASH_LEN);
  assert_int_equal(tt_intent_check_hash(&in), 0);
  /* The hash field itself does not take part in the hash. */
  uint8_t h2[TT_HASH_LEN];
  assert_int_equal(tt_intent_compute_hash(&in, h2), 0);
  assert_memory_equal(h, h2, TT_HASH_LEN);
  tt_intent_clear(&in);
}

/* The hash is written field by field without a tree; it must stay the
 * BLAKE2b of the canonical text of the wire form without "hash". */
static void test_hash_is_canon_of_wire_form(void **state) {
  (void)state;
  static const char *const variants[] = {
      NULL, /* FIXED itself */
      "{\"client\":\"" CLIENT "\",\"seq\":1,\"prev\":\"" ZERO64 "\","
      "\"hash\":\"" ZERO64 "\",\"hlc\":0,\"schema\":0,\"coll\":\"c\","
      "\"id\":\"a\\\"b\\\\c\\u0001\\n/\xe2\x82\xac\",\"base\":0,"
      "\"ops\":[{\"kind\":\"delete\"}]}",
      "{\"client\":\"" CLIENT "\",\"seq\":9007199254740993,\"prev\":\"" H64
      "\",\"hash\":\"" ZERO64 "\",\"hlc\":18446744073709551,"
      "\"schema\":4294967295,\"coll\":\"notes\",\"id\":\"x\","
      "\"base\":12345678901,\"label\":\"\\t\\u001f\","
      "\"ops\":[{\"kind\":\"set\",\"field\":\"f\",\"value\":[1.5,-0.0,"
      "{\"z\":1,\"a\":{}}]},{\"kind\":\"add\",\"field\":\"t\","
      "\"value\":\"x\",\"base_value\":[\"y\"]}]}",
  };
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
    tt_intent in;
    uint8_t h[TT_HASH_LEN], want[TT_HASH_LEN];
    parse_ok(variants[i] ? variants[i] : FIXED, &in);
    json_t *j = tt_intent_to_json(&in, 0);
    size_t len;
    char *text = tt_canon_n(j, &len);
    assert_non_null(text);
    crypto_generichash(want, TT_HASH_LEN, (const unsigned char *)text, len,
                       NULL, 0);
    assert_int_equal(tt_intent_compute_hash(&in, h), 0);
    assert_memory_equal(h, want, TT_HASH_LEN);
    free(text);
    json_decref(j);
    /* The same hash straight from the canonical wire text with "hash". */
    j = tt_intent_to_json(&in, 1);
    text = tt_canon_n(j, &len);
    assert_non_null(text);
    memset(h, 0, sizeof h);
    assert_int_equal(tt_intent_hash_text(text, len, h), 0);
    assert_memory_equal(h, want, TT_HASH_LEN);
    /* Upper-case hex is not what the intent hashes: not taken. */
    char *c = strstr(text, "\"client\":\"");
    assert_non_null(c);
    c[10] = 'A';
    assert_int_equal(tt_intent_hash_text(text, len, h), TETHER_EINVAL);
    c[10] = '0';
    char *pv = strstr(text, "\"prev\":\"");
    assert_non_null(pv);
    char keep = pv[8];
    pv[8] = 'F';
    assert_int_equal(tt_intent_hash_text(text, len, h), TETHER_EINVAL);
    pv[8] = keep;
    /* Not laid out as the canonical text: cut short, or not an intent. */
    for (size_t cut = 0; cut < len; cut += 7)
      assert_int_equal(tt_intent_hash_text(text, cut, h), TETHER_EINVAL);
    assert_int_equal(tt_intent_hash_text("{}", 2, h), TETHER_EINVAL);
    free(text);
    json_decref(j);
    tt_intent_clear(&in);
  }
}

/* ---- tt_intent_from_canonical ------------------------------------------ */

static char *canon_intent(const tt_intent *in) {
  json_t *j = tt_intent_to_json(in, 1);
  assert_non_null(j);
  char *s = tt_canon(j);
  assert_non_null(s);
  json_decref(j);
  return s;
}

/* What the general path makes of LEN bytes of TEXT as a pushed element
 * (at nesting level 3: a push body's object, its "intents" array, the
 * element): 0 and *IN, or not 0 (refused, not canonical or not one
 * value). */
static int general_reader(const char *text, size_t len, tt_intent *in) {
  json_t *j = NULL;
  size_t used = 0;
  int canonical = 0;
  memset(in, 0, sizeof *in);
  if (tt_json_parse_prefix(text, len, TT_JSON_REJECT_DUPLICATES, 2, &j, &used,
                           &canonical) ||
      used != len) {
    json_decref(j);
    return -1;
  }
  /* The parser's own verdict (0 may only mean "not checked") against
   * tt_canon's bytes. */
  char *c = tt_canon(j);
  int same = c && strlen(c) == len && memcmp(c, text, len) == 0;
  free(c);
  if (canonical)
    assert_true(same);
  int rc = same ? tt_intent_from_json_sized(j, len, in, NULL, 0) : -1;
  json_decref(j);
  return rc;
}

/* The fast path takes the start of TEXT (with more bytes after it) only
 * when the general path takes that part too, as the same intent. What
 * follows it is the surrounding parser's to check. 1, or 0 with *USED. */
static int fast_agrees(const char *text, size_t len, size_t *used_out) {
  tt_intent fast, slow;
  size_t used = 0;
  char *buf = malloc(len + 8);
  assert_non_null(buf);
  memcpy(buf, text, len);
  memcpy(buf + len, ",{\"x\":1}", 8);
  int rc = tt_intent_from_canonical(buf, len + 8, TT_JSON_REJECT_DUPLICATES, 3,
                                    &fast, &used);
  assert_true(rc == 0 || rc == 1);
  if (rc == 1) {
    assert_null(fast.coll);
    assert_null(fast.ops);
  } else {
    assert_true(used <= len);
    *used_out = used;
    assert_int_equal(general_reader(text, used, &slow), 0);
    char *a = canon_intent(&fast), *b = canon_intent(&slow);
    assert_string_equal(a, b);
    free(a);
    free(b);
    tt_intent_clear(&slow);
    tt_intent_clear(&fast);
  }
  free(buf);
  return rc;
}

static void test_from_canonical(void **state) {
  (void)state;
  static const char *const intents[] = {
      NULL, /* FIXED: every kind of op, a label, a non-ASCII key */
      "{\"client\":\"" CLIENT "\",\"seq\":1,\"prev\":\"" ZERO64 "\","
      "\"hash\":\"" ZERO64 "\",\"hlc\":0,\"schema\":0,\"coll\":\"c\","
      "\"id\":\"a\",\"base\":0,\"label\":\"\",\"ops\":[{\"kind\":\"delete\"}]}",
      "{\"client\":\"" CLIENT "\",\"seq\":9223372036854775807,\"prev\":\"" H64
      "\",\"hash\":\"" ZERO64 "\",\"hlc\":9223372036854775807,"
      "\"schema\":4294967295,\"coll\":\"notes\",\"id\":\"x\","
      "\"base\":9223372036854775807,"
      "\"ops\":[{\"kind\":\"set\",\"field\":\"f\",\"value\":[1.5,-2,"
      "{\"z\":1,\"a\":{}}]}]}",
  };
  for (size_t i = 0; i < sizeof intents / sizeof intents[0]; i++) {
    tt_intent in;
    parse_ok(intents[i] ? intents[i] : FIXED, &in);
    char *text = canon_intent(&in);
    size_t len = strlen(text);
    tt_intent_clear(&in);
    /* The usual case is taken, all of it. */
    size_t used = 0;
    assert_int_equal(fast_agrees(text, len, &used), 0);
    assert_int_equal(used, len);
    /* Any cut is not an intent. */
    for (size_t cut = 0; cut < len; cut++) {
      tt_intent f;
      size_t used;
      assert_int_equal(tt_intent_from_canonical(text, cut, 0, 3, &f, &used), 1);
    }
    /* Every byte changed to each of these, or dropped: whatever the fast
     * path still takes, the general path takes as the same intent. */
    static const char repl[] = {' ', '0', '1', '9', 'A', 'F', 'a', 'f', 'z',
                                '"', '\\', ',', ':', '{', '}', '[', ']',
                                '-', '.', 'e', '\x01', '\x80', '\xff'};
    char *m = malloc(len + 1);
    assert_non_null(m);
    size_t taken = 0, tried = 0;
    for (size_t at = 0; at < len; at++) {
      for (size_t r = 0; r <= sizeof repl; r++) {
        memcpy(m, text, len);
        size_t mlen = len;
        if (r == sizeof repl) {
          memmove(m + at, m + at + 1, len - at - 1);
          mlen--;
        } else if (m[at] == repl[r]) {
          continue;
        } else {
          m[at] = repl[r];
        }
        taken += fast_agrees(m, mlen, &used) == 0;
        tried++;
      }
    }
    /* Digits inside hashes and numbers stay valid: some are taken. */
    assert_true(taken > 0 && taken < tried);
    free(m);
    free(text);
  }

  /* Valid, but not the canonical text: left to the general path. */
  static const char *const general[] = {
      /* white space */
      "{\"base\":0, \"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],\"prev\":\""
      ZERO64 "\",\"schema\":0,\"seq\":1}",
      /* upper-case hex */
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],\"prev\":\""
      "A000000000000000000000000000000000000000000000000000000000000000"
      "\",\"schema\":0,\"seq\":1}",
      /* an escape in a name, and a name that is not ASCII */
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\\\"\",\"hash\":\""
      ZERO64 "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],"
      "\"prev\":\"" ZERO64 "\",\"schema\":0,\"seq\":1}",
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"caf\xc3\xa9\",\"ops\":[{\"kind\":\"delete\"}],"
      "\"prev\":\"" ZERO64 "\",\"schema\":0,\"seq\":1}",
      /* ops not in canonical order */
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"value\":1,\"kind\":\"set\","
      "\"field\":\"f\"}],\"prev\":\"" ZERO64 "\",\"schema\":0,\"seq\":1}",
  };
  for (size_t i = 0; i < sizeof general / sizeof general[0]; i++) {
    tt_intent f, g;
    size_t used;
    const char *t = general[i];
    assert_int_equal(
        tt_intent_from_canonical(t, strlen(t), 0, 3, &f, &used), 1);
    json_t *j = load(t);
    assert_int_equal(tt_intent_from_json(j, &g, NULL, 0), 0);
    json_decref(j);
    tt_intent_clear(&g);
  }
  /* Canonical, but not a valid intent: seq 0, a leading zero, too big, an
   * op the rules refuse, an unknown member, too deep for where it is. */
  static const char *const invalid[] = {
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],\"prev\":\""
      ZERO64 "\",\"schema\":0,\"seq\":0}",
      "{\"base\":01,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],\"prev\":\""
      ZERO64 "\",\"schema\":0,\"seq\":1}",
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],\"prev\":\""
      ZERO64 "\",\"schema\":4294967296,\"seq\":1}",
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"field\":\"n\",\"kind\":\"incr\","
      "\"value\":\"x\"}],\"prev\":\"" ZERO64 "\",\"schema\":0,\"seq\":1}",
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[],\"prev\":\"" ZERO64
      "\",\"schema\":0,\"seq\":1}",
      "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\"" ZERO64
      "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"kind\":\"delete\"}],\"prev\":\""
      ZERO64 "\",\"schema\":0,\"seq\":1,\"x\":1}",
  };
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    tt_intent f;
    size_t used;
    const char *t = invalid[i];
    assert_int_equal(
        tt_intent_from_canonical(t, strlen(t), 0, 3, &f, &used), 1);
  }
  {
    /* Depth, as the surrounding parse counts it: at level 3 the intent,
     * 4 its ops, 5 the op, 6 its value, so a value of K nested arrays
     * reaches 5 + K, and 2048 is the most allowed. */
    for (size_t k = 2042; k <= 2044; k++) {
      tt_buf b = {0};
      const char *head =
          "{\"base\":0,\"client\":\"" CLIENT "\",\"coll\":\"c\",\"hash\":\""
          ZERO64 "\",\"hlc\":0,\"id\":\"a\",\"ops\":[{\"field\":\"f\","
          "\"kind\":\"set\",\"value\":";
      const char *tail = "}],\"prev\":\"" ZERO64 "\",\"schema\":0,\"seq\":1}";
      assert_int_equal(tt_buf_add(&b, head, strlen(head)), 0);
      for (size_t i = 0; i < k; i++) assert_int_equal(tt_buf_add(&b, "[", 1), 0);
      for (size_t i = 0; i < k; i++) assert_int_equal(tt_buf_add(&b, "]", 1), 0);
      assert_int_equal(tt_buf_add(&b, tail, strlen(tail)), 0);
      size_t used = 0;
      int want = k + 5 <= TT_JSON_MAX_DEPTH ? 0 : 1;
      assert_int_equal(fast_agrees((const char *)b.data, b.len, &used), want);
      tt_intent g;
      assert_int_equal(general_reader((const char *)b.data, b.len, &g) == 0,
                       want == 0);
      tt_intent_clear(&g);
      /* One level deeper around it, and the largest K no longer fits. */
      tt_intent f;
      assert_int_equal(tt_intent_from_canonical((const char *)b.data, b.len,
                                                0, 4, &f, &used),
                       k + 6 <= TT_JSON_MAX_DEPTH ? 0 : 1);
      tt_intent_clear(&f);
      tt_buf_free(&b);
    }
    const char *t = invalid[0];
    tt_intent f;
    size_t used;
    assert_int_equal(tt_intent_from_canonical(t, strlen(t), 0,
                                              TT_JSON_MAX_DEPTH, &f, &used),
                     1);
  }
}

/* Every field of the intent takes part in the hash. */
static void test_hash_covers_every_field(void **state) {
  (void)state;
  static const char *const edits[][2] = {
      {"\"seq\":3", "\"seq\":4"},
      {"\"client\":\"0123", "\"client\":\"f123"},
      {"\"prev\":\"1111", "\"prev\":\"2111"},
      {"\"hlc\":111546413891584000", "\"hlc\":111546413891584001"},
      {"\"schema\":2", "\"schema\":3"},
      {"\"coll\":\"notes\"", "\"coll\":\"notez\""},
      {"\"id\":\"n1\"", "\"id\":\"n2\""},
      {"\"base\":17", "\"base\":18"},
      {"\"label\":\"rename\"", "\"label\":\"renamE\""},
      {"\"label\":\"rename\",", ""},
      {"\"value\":\"B\"", "\"value\":\"b\""},
      {"\"base_value\":\"A\"", "\"base_value\":\"a\""},
      {",\"base_value\":\"A\"", ""},
      {"\"field\":\"old\"", "\"field\":\"olD\""},
      {"\"value\":-3", "\"value\":3"},
      {"[1,2.5]", "[1,2.6]"},
      {"{\"kind\":\"delete\"},", ""},
      {"\"kind\":\"add\"", "\"kind\":\"remove\""},
      {"-2-0", "-2-9"},
      {",\"base_value\":null}", "}"},
  };
  uint8_t ref[TT_HASH_LEN];
  tt_intent in;
  parse_ok(FIXED, &in);
  assert_int_equal(tt_intent_compute_hash(&in, ref), 0);
  tt_intent_clear(&in);
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    const char *at = strstr(FIXED, edits[i][0]);
    assert_non_null(at);
    char buf[4096];
    size_t pre = (size_t)(at - FIXED);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, FIXED, edits[i][1],
             at + strlen(edits[i][0]));
    uint8_t h[TT_HASH_LEN];
    parse_ok(buf, &in);
    assert_int_equal(tt_intent_compute_hash(&in, h), 0);
    if (memcmp(h, ref, TT_HASH_LEN) == 0)
      fail_msg("edit %zu (%s) did not change the hash", i, edits[i][0]);
    tt_intent_clear(&in);
  }
}

/* Key order and whitespace of the input do not matter. */
static void test_hash_stable(void **state) {
  (void)state;
  const char *a = "{\"client\":\"" CLIENT "\",\"seq\":1,\"prev\":\"" ZERO64
                  "\",\"hash\":\"" ZERO64 "\",\"hlc\":5,\"schema\":0,"
                  "\"coll\":\"c\",\"id\":\"i\",\"base\":0,\"ops\":[{\"kind\":"
                  "\"set\",\"field\":\"f\",\"value\":{\"b\":1,\"a\":2}}]}";
  const char *b = "{ \"ops\" : [ { \"value\" : { \"a\":2, \"b\":1 }, \"field\""
                  ":\"f\", \"kind\":\"set\" } ], \"base\":0, \"id\":\"i\", "
                  "\"coll\":\"c\", \"schema\":0, \"hlc\":5, \"hash\":\"" ZERO64
                  "\", \"prev\":\"" ZERO64 "\", \"seq\":1, \"client\":\"" CLIENT
                  "\" }";
  tt_intent x, y;
  uint8_t hx[TT_HASH_LEN], hy[TT_HASH_LEN];
  parse_ok(a, &x);
  parse_ok(b, &y);
  assert_int_equal(tt_intent_compute_hash(&x, hx), 0);
  assert_int_equal(tt_intent_compute_hash(&y, hy), 0);
  assert_memory_equal(hx, hy, TT_HASH_LEN);
  tt_intent_clear(&x);
  tt_intent_clear(&y);
}

/* Replaces the first occurrence of FROM in FIXED by TO and parses. */
static int parse_edit(const char *from, const char *to, char *err,
                      size_t errlen) {
  const char *at = strstr(FIXED, from);
  if (!at)
    fail_msg("'%s' not in FIXED", from);
  char buf[8192];
  snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - FIXED), FIXED, to,
           at + strlen(from));
  json_t *j = load(buf);
  tt_intent in;
  memset(&in, 0x5a, sizeof in); /* must be cleared on failure */
  int rc = tt_intent_from_json(j, &in, err, errlen);
  json_decref(j);
  if (rc) {
    tt_intent zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&in, &zero, sizeof in);
  } else {
    tt_intent_clear(&in);
  }
  return rc;
}

typedef struct {
  const char *from, *to;
  int rc;
  const char *in_msg; /* must appear in the message */
} bad_case;

static void test_malformed(void **state) {
  (void)state;
  static const bad_case cases[] = {
      /* missing keys */
      {"\"client\":\"" CLIENT "\",", "", TETHER_EINVAL, "client"},
      {"\"prev\":\"" H64 "\",", "", TETHER_EINVAL, "prev"},
      {"\"hash\":\"" ZERO64 "\",", "", TETHER_EINVAL, "hash"},
      {"\"hlc\":111546413891584000,", "", TETHER_EINVAL, "hlc"},
      {"\"schema\":2,", "", TETHER_EINVAL, "schema"},
      {"\"coll\":\"notes\",", "", TETHER_EINVAL, "coll"},
      {"\"id\":\"n1\",", "", TETHER_EINVAL, "id"},
      {"\"base\":17,", "", TETHER_EINVAL, "base"},
      {",\"ops\":[", ",\"opz\":[", TETHER_EINVAL, "opz"},
      {"\"seq\":3,", "", TETHER_EINVAL, "seq"},
      /* wrong types */
      {"\"client\":\"" CLIENT "\"", "\"client\":7", TETHER_ETYPE, "client"},
      {"\"seq\":3", "\"seq\":\"3\"", TETHER_ETYPE, "seq"},
      {"\"seq\":3", "\"seq\":3.0", TETHER_ETYPE, "seq"},
      {"\"prev\":\"" H64 "\"", "\"prev\":null", TETHER_ETYPE, "prev"},
      {"\"hash\":\"" ZERO64 "\"", "\"hash\":[]", TETHER_ETYPE, "hash"},
      {"\"hlc\":111546413891584000", "\"hlc\":true", TETHER_ETYPE, "hlc"},
      {"\"schema\":2", "\"schema\":{}", TETHER_ETYPE, "schema"},
      {"\"coll\":\"notes\"", "\"coll\":1", TETHER_ETYPE, "coll"},
      {"\"id\":\"n1\"", "\"id\":[\"n1\"]", TETHER_ETYPE, "id"},
      {"\"base\":17", "\"base\":\"17\"", TETHER_ETYPE, "base"},
      {"\"label\":\"rename\"", "\"label\":null", TETHER_ETYPE, "label"},
      {"\"ops\":[", "\"ops\":{\"x\":[", TETHER_EINVAL, NULL}, /* see below */
      /* bad values */
      {"\"seq\":3", "\"seq\":0", TETHER_EINVAL, "seq"},
      {"\"seq\":3", "\"seq\":-3", TETHER_EINVAL, "seq"},
      {"\"base\":17", "\"base\":-1", TETHER_EINVAL, "base"},
      {"\"hlc\":111546413891584000", "\"hlc\":-1", TETHER_EINVAL, "hlc"},
      {"\"schema\":2", "\"schema\":4294967296", TETHER_EINVAL, "schema"},
      {"\"client\":\"0123", "\"client\":\"x123", TETHER_EINVAL, "client"},
      {"\"client\":\"0123", "\"client\":\"123", TETHER_EINVAL, "client"},
      {"\"client\":\"0123", "\"client\":\"00123", TETHER_EINVAL, "client"},
      {"\"prev\":\"1111", "\"prev\":\"111", TETHER_EINVAL, "prev"},
      {"\"hash\":\"0000", "\"hash\":\"000g", TETHER_EINVAL, "hash"},
      {"\"coll\":\"notes\"", "\"coll\":\"\"", TETHER_EINVAL, "coll"},
      {"\"id\":\"n1\"", "\"id\":\"n\\u00001\"", TETHER_EINVAL, "id"},
      {"\"seq\":3,", "\"seq\":3,\"extra\":1,", TETHER_EINVAL, "extra"},
      /* ops */
      {"\"kind\":\"set\"", "\"kind\":\"frob\"", TETHER_EINVAL, "ops[0].kind"},
      {"\"kind\":\"set\"", "\"kind\":7", TETHER_ETYPE, "ops[0].kind"},
      {"{\"kind\":\"set\",", "{", TETHER_EINVAL, "ops[0].kind"},
      {"\"kind\":\"set\",\"field\":\"title\",", "\"kind\":\"set\",",
       TETHER_EINVAL, "ops[0].field"},
      {"\"field\":\"title\",\"value\":\"B\",", "\"field\":\"title\",",
       TETHER_EINVAL, "ops[0].value"},
      {"\"field\":\"title\"", "\"field\":5", TETHER_ETYPE, "ops[0].field"},
      {"\"field\":\"title\"", "\"field\":\"\"", TETHER_EINVAL, "ops[0].field"},
      {"\"field\":\"old\"}", "\"field\":\"old\",\"value\":1}", TETHER_EINVAL,
       "ops[1].value"},
      {"\"value\":-3", "\"value\":\"3\"", TETHER_ETYPE, "ops[2].value"},
      {"\"value\":-3", "\"value\":3.5", TETHER_ETYPE, "ops[2].value"},
      {"{\"kind\":\"create\",\"value\":{", "{\"kind\":\"create\",\"value\":[{",
       TETHER_EINVAL, NULL}, /* invalid JSON after edit is caught by load */
      {"{\"kind\":\"delete\"}", "{\"kind\":\"delete\",\"field\":\"x\"}",
       TETHER_EINVAL, "ops[6].field"},
      {"{\"kind\":\"delete\"}", "{\"kind\":\"delete\",\"value\":1}",
       TETHER_EINVAL, "ops[6].value"},
      {"{\"kind\":\"create\",", "{\"kind\":\"create\",\"field\":\"f\",",
       TETHER_EINVAL, "ops[5].field"},
      {"\"value\":\"C\",\"conflict\":\"" CLIENT "-2-0\"", "\"value\":\"C\"",
       TETHER_EINVAL, "ops[7].conflict"},
      {"\"value\":\"C\",\"conflict\":\"" CLIENT "-2-0\"",
       "\"value\":\"C\",\"conflict\":7", TETHER_ETYPE, "ops[7].conflict"},
      {"\"value\":\"B\",", "\"value\":\"B\",\"conflict\":\"x\",", TETHER_EINVAL,
       "ops[0].conflict"},
      {"\"value\":null,\"unset\":true", "\"value\":null,\"unset\":false",
       TETHER_EINVAL, "ops[8].unset"},
      {"\"value\":null,\"unset\":true", "\"value\":1,\"unset\":true",
       TETHER_EINVAL, "ops[8].value"},
      {"\"value\":null,\"unset\":true", "\"unset\":true", TETHER_EINVAL,
       "ops[8].value"},
      {"\"value\":\"B\",", "\"value\":\"B\",\"unset\":true,", TETHER_EINVAL,
       "ops[0].unset"},
      {"\"value\":\"B\",", "\"value\":\"B\",\"bogus\":1,", TETHER_EINVAL,
       "bogus"},
      {"{\"kind\":\"unset\",\"field\":\"old\"}", "7", TETHER_ETYPE, "ops[1]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const bad_case *c = &cases[i];
    if (!c->in_msg)
      continue;
    char err[256] = "";
    int rc = parse_edit(c->from, c->to, err, sizeof err);
    if (rc != c->rc)
      fail_msg("case %zu (%s): rc %d, want %d (%s)", i, c->to, rc, c->rc, err);
    if (!strstr(err, c->in_msg))
      fail_msg("case %zu: message '%s' lacks '%s'", i, err, c->in_msg);
    /* Every message names the intent (its seq when it has one). */
    if (!strstr(err, "intent seq "))
      fail_msg("case %zu: message '%s' does not name the intent", i, err);
  }
  char err[256];
  assert_int_equal(parse_edit("\"seq\":3,", "\"seq\":3,\"zz\":0,", err,
                              sizeof err),
                   TETHER_EINVAL);
  assert_non_null(strstr(err, "intent seq 3"));
}

static void test_ops_shape(void **state) {
  (void)state;
  char err[256];
  /* ops not an array, empty */
  const char *at = "\"ops\":[";
  char buf[8192];
  const char *p = strstr(FIXED, at);
  snprintf(buf, sizeof buf, "%.*s\"ops\":{}}", (int)(p - FIXED), FIXED);
  json_t *j = load(buf);
  tt_intent in;
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), TETHER_ETYPE);
  assert_non_null(strstr(err, "ops"));
  json_decref(j);
  snprintf(buf, sizeof buf, "%.*s\"ops\":[]}", (int)(p - FIXED), FIXED);
  j = load(buf);
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), TETHER_EINVAL);
  assert_non_null(strstr(err, "ops"));
  json_decref(j);

  /* Too many ops: 1024 is fine, 1025 is ETOOBIG. */
  j = load(FIXED);
  json_t *ops = json_array();
  for (int i = 0; i < TT_MAX_OPS; i++)
    json_array_append_new(ops, json_pack("{s:s,s:s,s:i}", "kind", "set",
                                         "field", "f", "value", i));
  json_object_set_new(j, "ops", ops);
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), 0);
  assert_int_equal(in.nops, TT_MAX_OPS);
  tt_intent_clear(&in);
  json_array_append_new(ops, json_pack("{s:s}", "kind", "delete"));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err),
                   TETHER_ETOOBIG);
  assert_non_null(strstr(err, "ops"));
  json_decref(j);

  /* Not an object at all. */
  j = json_array();
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), TETHER_EJSON);
  json_decref(j);
  /* errbuf may be NULL */
  j = json_object();
  assert_int_equal(tt_intent_from_json(j, &in, NULL, 0), TETHER_EINVAL);
  json_decref(j);
}

static void test_limits(void **state) {
  (void)state;
  char err[256];
  tt_intent in;
  json_t *j = load(FIXED);
  char name[TT_MAX_NAME + 2];
  memset(name, 'n', sizeof name);
  name[TT_MAX_NAME] = '\0';
  json_object_set_new(j, "coll", json_string(name));
  json_object_set_new(j, "id", json_string(name));
  json_object_set_new(j, "label", json_string(name));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), 0);
  tt_intent_clear(&in);
  name[TT_MAX_NAME] = 'n';
  name[TT_MAX_NAME + 1] = '\0';
  char label[TT_MAX_LABEL + 2];
  memset(label, 'l', sizeof label);
  label[TT_MAX_LABEL + 1] = '\0';
  const char *keys[] = {"coll", "id", "label"};
  for (int k = 0; k < 3; k++) {
    json_t *c = json_deep_copy(j);
    json_object_set_new(c, keys[k], json_string(k == 2 ? label : name));
    assert_int_equal(tt_intent_from_json(c, &in, err, sizeof err),
                     TETHER_ETOOBIG);
    assert_non_null(strstr(err, keys[k]));
    json_decref(c);
  }
  /* Empty label is allowed (and distinct from none). */
  json_object_set_new(j, "label", json_string(""));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), 0);
  assert_string_equal(in.label, "");
  tt_intent_clear(&in);
  /* A field name over the limit. */
  json_t *op0 = json_array_get(json_object_get(j, "ops"), 0);
  json_object_set_new(op0, "field", json_string(name));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err),
                   TETHER_ETOOBIG);
  assert_non_null(strstr(err, "ops[0].field"));
  json_object_set_new(op0, "field", json_string("title"));
  /* A value over 1 MiB canonical; exactly 1 MiB is fine. */
  size_t n = TT_MAX_VALUE - 2; /* plus the two quotes */
  char *big = malloc(n + 2);
  memset(big, 'v', n + 1);
  big[n] = '\0';
  json_object_set_new(op0, "value", json_string(big));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err), 0);
  tt_intent_clear(&in);
  big[n] = 'v';
  big[n + 1] = '\0';
  json_object_set_new(op0, "value", json_string(big));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err),
                   TETHER_ETOOBIG);
  assert_non_null(strstr(err, "ops[0].value"));
  json_object_set_new(op0, "value", json_string("B"));
  json_object_set_new(op0, "base_value", json_string(big));
  assert_int_equal(tt_intent_from_json(j, &in, err, sizeof err),
                   TETHER_ETOOBIG);
  assert_non_null(strstr(err, "ops[0].base_value"));
  free(big);
  json_decref(j);
}

static void test_copy(void **state) {
  (void)state;
  tt_intent a, b;
  parse_ok(FIXED, &a);
  assert_int_equal(tt_intent_copy(&b, &a), 0);
  json_t *ja = tt_intent_to_json(&a, 1), *jb = tt_intent_to_json(&b, 1);
  assert_true(tt_canon_equal(ja, jb));
  json_decref(ja);
  json_decref(jb);
  /* Independent: changing the copy leaves the original alone. */
  assert_ptr_not_equal(a.ops[3].value, b.ops[3].value);
  json_array_append_new(json_object_get(b.ops[3].value, "x"), json_integer(9));
  assert_int_equal(json_array_size(json_object_get(a.ops[3].value, "x")), 2);
  tt_intent_clear(&a);
  tt_intent_clear(&b);
}

static void test_op_init(void **state) {
  (void)state;
  tt_op op;
  json_t *v = json_string("x"), *bv = json_integer(1);
  assert_int_equal(tt_op_init(&op, TT_OP_SET, "f", v, bv, NULL), 0);
  assert_int_equal(op.kind, TT_OP_SET);
  assert_string_equal(op.field, "f");
  assert_ptr_equal(op.value, v);
  assert_int_equal(v->refcount, 2); /* a new reference, the caller's stays */
  assert_ptr_equal(op.base_value, bv);
  assert_null(op.conflict);
  tt_op_clear(&op);
  assert_int_equal(v->refcount, 1);
  assert_null(op.field);
  /* A resolve without a value settles to "absent". */
  assert_int_equal(tt_op_init(&op, TT_OP_RESOLVE, "f", NULL, NULL, "c-1-0"), 0);
  assert_true(op.resolve_unset);
  assert_string_equal(op.conflict, "c-1-0");
  tt_intent in;
  memset(&in, 0, sizeof in);
  in.seq = 1;
  in.coll = strdup("c");
  in.id = strdup("i");
  in.ops = calloc(1, sizeof *in.ops);
  in.ops[0] = op;
  in.nops = 1;
  json_t *j = tt_intent_to_json(&in, 1);
  json_t *jop = json_array_get(json_object_get(j, "ops"), 0);
  assert_true(json_is_true(json_object_get(jop, "unset")));
  assert_true(json_is_null(json_object_get(jop, "value")));
  /* ... and its wire form parses back to the same thing. */
  tt_intent back;
  char err[256];
  assert_int_equal(tt_intent_from_json(j, &back, err, sizeof err), 0);
  assert_true(back.ops[0].resolve_unset);
  json_t *j2 = tt_intent_to_json(&back, 1);
  assert_true(tt_canon_equal(j, j2));
  json_decref(j);
  json_decref(j2);
  tt_intent_clear(&back);
  tt_intent_clear(&in);
  json_decref(v);
  json_decref(bv);
  assert_int_equal(tt_op_init(&op, TT_OP__COUNT, "f", NULL, NULL, NULL),
                   TETHER_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kind_names),
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_hash_known_answer),
      cmocka_unit_test(test_hash_is_canon_of_wire_form),
      cmocka_unit_test(test_hash_covers_every_field),
      cmocka_unit_test(test_hash_stable),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_ops_shape),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_copy),
      cmocka_unit_test(test_op_init),
      cmocka_unit_test(test_from_canonical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
