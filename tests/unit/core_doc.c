/* core_doc.c — the stamped document, its stored form, changes_since. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/doc.h"

static json_t *J(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (!j)
    fail_msg("bad test JSON: %s", e.text);
  return j;
}

static void set_field(tt_doc *d, const char *name, const char *json,
                      uint64_t seq, uint64_t hlc, uint8_t origin) {
  tt_field *f = tt_doc_field_upsert(d, name);
  assert_non_null(f);
  json_decref(f->value);
  f->value = json ? J(json) : NULL;
  f->stamp.seq = seq;
  f->stamp.hlc = hlc;
  memset(f->stamp.origin, origin, TT_ID_LEN);
}

static void sample(tt_doc *d) {
  memset(d, 0, sizeof *d);
  set_field(d, "title", "\"Hello \\u00e9\"", 5, 100, 1);
  set_field(d, "n", "42", 7, 200, 2);
  set_field(d, "tags", "[1,\"a\",{\"k\":null},2.5]", 3, 50, 1);
  set_field(d, "gone", NULL, 8, 300, 3);
  set_field(d, "nul", "\"a\\u0000b\"", 2, 10, 4);
  d->version = 8;
}

static void assert_doc_equal(const tt_doc *a, const tt_doc *b) {
  assert_true(a->version == b->version);
  assert_int_equal(a->deleted, b->deleted);
  assert_memory_equal(&a->del_stamp, &b->del_stamp, sizeof a->del_stamp);
  assert_int_equal(a->nfields, b->nfields);
  for (size_t i = 0; i < a->nfields; i++) {
    assert_string_equal(a->fields[i].name, b->fields[i].name);
    assert_true(tt_canon_equal(a->fields[i].value, b->fields[i].value));
    assert_memory_equal(&a->fields[i].stamp, &b->fields[i].stamp,
                        sizeof(tt_stamp));
  }
}

static void test_fields_sorted(void **state) {
  (void)state;
  tt_doc d;
  sample(&d);
  assert_int_equal(d.nfields, 5);
  for (size_t i = 1; i < d.nfields; i++)
    assert_true(strcmp(d.fields[i - 1].name, d.fields[i].name) < 0);
  assert_non_null(tt_doc_field(&d, "n"));
  assert_null(tt_doc_field(&d, "zzz"));
  assert_non_null(tt_doc_field(&d, "gone")); /* tombstones are entries */
  tt_field *f = tt_doc_field_upsert(&d, "n");
  assert_ptr_equal(f, tt_doc_field(&d, "n"));
  assert_int_equal(d.nfields, 5);
  /* Many inserts in reverse order stay sorted and findable. */
  char name[16];
  for (int i = 99; i >= 0; i--) {
    snprintf(name, sizeof name, "f%03d", i);
    assert_non_null(tt_doc_field_upsert(&d, name));
  }
  assert_int_equal(d.nfields, 105);
  for (size_t i = 1; i < d.nfields; i++)
    assert_true(strcmp(d.fields[i - 1].name, d.fields[i].name) < 0);
  assert_non_null(tt_doc_field(&d, "f050"));
  tt_doc_clear(&d);
  tt_doc_clear(&d);
}

static void test_view(void **state) {
  (void)state;
  tt_doc d = {0};
  assert_null(tt_doc_view(&d)); /* never written */
  sample(&d);
  json_t *v = tt_doc_view(&d);
  json_t *want = J("{\"title\":\"Hello \\u00e9\",\"n\":42,\"tags\":[1,\"a\","
                   "{\"k\":null},2.5],\"nul\":\"a\\u0000b\"}");
  assert_true(tt_canon_equal(v, want));
  json_decref(v);
  json_decref(want);
  d.deleted = 1;
  assert_null(tt_doc_view(&d));
  tt_doc_clear(&d);
  /* A document whose fields are all unset still exists: {}. */
  d.version = 3;
  set_field(&d, "x", NULL, 3, 1, 1);
  v = tt_doc_view(&d);
  assert_non_null(v);
  assert_int_equal(json_object_size(v), 0);
  json_decref(v);
  tt_doc_clear(&d);
}

static void test_copy(void **state) {
  (void)state;
  tt_doc a, b;
  sample(&a);
  a.deleted = 0;
  a.del_stamp.seq = 4;
  assert_int_equal(tt_doc_copy(&b, &a), 0);
  assert_doc_equal(&a, &b);
  /* Entries are independent (values are shared and never mutated). */
  set_field(&b, "n", "43", 9, 1, 1);
  assert_int_equal(json_integer_value(tt_doc_field(&a, "n")->value), 42);
  assert_non_null(tt_doc_field_upsert(&b, "new"));
  assert_null(tt_doc_field(&a, "new"));
  tt_doc_clear(&a);
  tt_doc_clear(&b);
  tt_doc z = {0}, zc;
  assert_int_equal(tt_doc_copy(&zc, &z), 0);
  assert_int_equal(zc.nfields, 0);
  tt_doc_clear(&zc);
}

static void roundtrip(const tt_doc *d) {
  char *buf;
  size_t len;
  tt_doc back;
  assert_int_equal(tt_doc_encode(d, &buf, &len), 0);
  assert_int_equal(tt_doc_decode(buf, len, &back), 0);
  assert_doc_equal(d, &back);
  /* Deterministic: the same document encodes to the same bytes. */
  char *buf2;
  size_t len2;
  assert_int_equal(tt_doc_encode(&back, &buf2, &len2), 0);
  assert_int_equal(len, len2);
  assert_memory_equal(buf, buf2, len);
  free(buf);
  free(buf2);
  tt_doc_clear(&back);
}

static void test_encode_roundtrip(void **state) {
  (void)state;
  tt_doc d = {0};
  roundtrip(&d);
  sample(&d);
  roundtrip(&d);
  /* deleted, with field tombstones */
  for (size_t i = 0; i < d.nfields; i++) {
    json_decref(d.fields[i].value);
    d.fields[i].value = NULL;
  }
  d.deleted = 1;
  d.del_stamp.seq = 9;
  d.del_stamp.hlc = UINT64_MAX;
  memset(d.del_stamp.origin, 0xee, TT_ID_LEN);
  roundtrip(&d);
  tt_doc_clear(&d);
  /* extremes */
  d.version = UINT64_MAX;
  char name[TT_MAX_NAME + 1];
  memset(name, 'z', TT_MAX_NAME);
  name[TT_MAX_NAME] = '\0';
  set_field(&d, name, "{\"deep\":[[[[[1]]]]],\"r\":-0.0,\"i\":-9223372036854775808}",
            UINT64_MAX, UINT64_MAX, 0xff);
  roundtrip(&d);
  tt_doc_clear(&d);
}

static void encode_sample(char **buf, size_t *len) {
  tt_doc d;
  sample(&d);
  d.del_stamp.seq = 1;
  assert_int_equal(tt_doc_encode(&d, buf, len), 0);
  tt_doc_clear(&d);
}

static void expect_corrupt(const void *buf, size_t len) {
  tt_doc out;
  memset(&out, 0x5a, sizeof out);
  int rc = tt_doc_decode(buf, len, &out);
  if (rc != TETHER_ECORRUPT && rc != TETHER_EVERSION)
    fail_msg("decode of %zu bytes gave %d", len, rc);
  tt_doc zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(&out, &zero, sizeof out); /* left cleared */
}

static void test_decode_truncated(void **state) {
  (void)state;
  char *buf;
  size_t len;
  encode_sample(&buf, &len);
  for (size_t n = 0; n < len; n++) {
    /* A fresh allocation of exactly N bytes, so ASan sees any overread. */
    char *cut = malloc(n ? n : 1);
    memcpy(cut, buf, n);
    expect_corrupt(cut, n);
    free(cut);
  }
  /* Trailing garbage too. */
  char *longer = malloc(len + 1);
  memcpy(longer, buf, len);
  longer[len] = ' ';
  expect_corrupt(longer, len + 1);
  free(longer);
  expect_corrupt(NULL, 0);
  free(buf);
}

static void test_decode_corrupt(void **state) {
  (void)state;
  char *buf;
  size_t len;
  encode_sample(&buf, &len);
  char *b = malloc(len);
  /* Every single-byte flip either decodes to something valid or is
   * rejected cleanly — never a crash (run under ASan). */
  for (size_t i = 0; i < len; i++) {
    for (int bit = 0; bit < 8; bit++) {
      memcpy(b, buf, len);
      b[i] ^= (char)(1 << bit);
      tt_doc out;
      int rc = tt_doc_decode(b, len, &out);
      assert_true(rc == 0 || rc == TETHER_ECORRUPT || rc == TETHER_EVERSION);
      tt_doc_clear(&out);
    }
  }
  /* Specific structural damage. */
  memcpy(b, buf, len);
  b[0] = 'X';
  expect_corrupt(b, len); /* magic */
  memcpy(b, buf, len);
  b[2] = 2;
  tt_doc out;
  assert_int_equal(tt_doc_decode(b, len, &out), TETHER_EVERSION);
  memcpy(b, buf, len);
  b[3] = 0x02;
  expect_corrupt(b, len); /* unknown flag */
  memcpy(b, buf, len);
  b[3] = 0x01;
  expect_corrupt(b, len); /* deleted but live fields */
  /* nfields claims far more than the input holds (no huge allocation). */
  memcpy(b, buf, len);
  size_t nf_at = 4 + 8 + 32;
  tt_be32_put((uint8_t *)b + nf_at, 0xffffffffu);
  expect_corrupt(b, len);
  /* fields out of order: swap the first two names' first letters. */
  memcpy(b, buf, len);
  size_t f0 = nf_at + 4;
  assert_int_equal((uint8_t)b[f0 + 2], 'g'); /* "gone" sorts first */
  b[f0 + 2] = 'z';
  expect_corrupt(b, len);
  /* has_value not 0/1 */
  memcpy(b, buf, len);
  b[f0 + 2 + 4] = 2;
  expect_corrupt(b, len);
  free(b);
  free(buf);
  /* A value that is not JSON. */
  tt_doc d = {0};
  set_field(&d, "a", "1", 1, 1, 1);
  assert_int_equal(tt_doc_encode(&d, &buf, &len), 0);
  buf[len - 1] = '{';
  expect_corrupt(buf, len);
  free(buf);
  tt_doc_clear(&d);
}

/* Random bytes, and random bytes behind a valid header, never crash. */
static void test_decode_random(void **state) {
  (void)state;
  uint64_t x = 0x2545f4914f6cdd1dull;
  char *valid;
  size_t vlen;
  encode_sample(&valid, &vlen);
  for (int iter = 0; iter < 20000; iter++) {
    size_t n = (size_t)(iter % 300);
    uint8_t *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b[i] = (uint8_t)x;
    }
    /* Half of them keep a valid prefix so the decoder gets deeper. */
    if (iter & 1) {
      size_t keep = (size_t)(x % (vlen + 1));
      memcpy(b, valid, keep < n ? keep : n);
    }
    tt_doc out;
    int rc = tt_doc_decode(b, n, &out);
    assert_true(rc == 0 || rc == TETHER_ECORRUPT || rc == TETHER_EVERSION);
    tt_doc_clear(&out);
    free(b);
  }
  free(valid);
}

static void test_changes_since(void **state) {
  (void)state;
  tt_doc d;
  json_t *set, *unset;
  sample(&d); /* seqs: title 5, n 7, tags 3, gone 8 (unset), nul 2 */
  assert_int_equal(tt_doc_changes_since(&d, 4, &set, &unset), 0);
  json_t *ws = J("{\"title\":\"Hello \\u00e9\",\"n\":42}");
  json_t *wu = J("[\"gone\"]");
  assert_true(tt_canon_equal(set, ws));
  assert_true(tt_canon_equal(unset, wu));
  json_decref(set);
  json_decref(unset);
  assert_int_equal(tt_doc_changes_since(&d, 8, &set, &unset), 0);
  assert_int_equal(json_object_size(set), 0);
  assert_int_equal(json_array_size(unset), 0);
  json_decref(set);
  json_decref(unset);
  assert_int_equal(tt_doc_changes_since(&d, 0, &set, &unset), 0);
  assert_int_equal(json_object_size(set), 4);
  assert_int_equal(json_array_size(unset), 1);
  json_decref(set);
  json_decref(unset);
  d.deleted = 1;
  assert_int_equal(tt_doc_changes_since(&d, 0, &set, &unset), 0);
  assert_int_equal(json_object_size(set), 0);
  assert_int_equal(json_array_size(unset), 0);
  json_decref(set);
  json_decref(unset);
  json_decref(ws);
  json_decref(wu);
  tt_doc_clear(&d);
}

/* The pull's text writer: the canonical text of what changes_since
 * builds, read straight off the stored record, and a value whose stored
 * bytes are not canonical JSON any more is a corrupt record. */
static void test_changes_text(void **state) {
  (void)state;
  tt_doc d;
  char *enc = NULL;
  size_t elen = 0;
  sample(&d); /* seqs: title 5, n 7, tags 3, gone 8 (unset), nul 2 */
  assert_int_equal(tt_doc_encode(&d, &enc, &elen), 0);
  const uint64_t cursors[] = {0, 1, 2, 3, 4, 5, 7, 8, UINT64_MAX};
  for (size_t i = 0; i < sizeof cursors / sizeof cursors[0]; i++) {
    json_t *set, *unset;
    tt_buf want = {0}, got = {0};
    assert_int_equal(tt_doc_changes_since(&d, cursors[i], &set, &unset), 0);
    if (json_object_size(set))
      assert_int_equal(tt_buf_add(&want, ",\"set\":", 7) ||
                           tt_canon_buf(&want, set, 0),
                       0);
    if (json_array_size(unset))
      assert_int_equal(tt_buf_add(&want, ",\"unset\":", 9) ||
                           tt_canon_buf(&want, unset, 0),
                       0);
    assert_int_equal(tt_doc_changes_text(enc, elen, cursors[i], &got), 0);
    assert_int_equal(got.len, want.len);
    if (want.len)
      assert_memory_equal(got.data, want.data, want.len);
    if (cursors[i] == 4) {
      static const char lit[] =
          ",\"set\":{\"n\":42,\"title\":\"Hello \xc3\xa9\"},\"unset\":[\"gone\"]";
      assert_int_equal(got.len, sizeof lit - 1);
      assert_memory_equal(got.data, lit, sizeof lit - 1);
    }
    json_decref(set);
    json_decref(unset);
    tt_buf_free(&want);
    tt_buf_free(&got);
  }
  /* "42" stored as "4x": refused like tt_doc_decode refuses it, and the
   * buffer is left as it was. */
  char *v = NULL;
  for (size_t i = 0; i + 1 < elen && !v; i++)
    if (enc[i] == '4' && enc[i + 1] == '2')
      v = enc + i;
  assert_non_null(v);
  v[1] = 'x';
  tt_doc bad;
  assert_int_equal(tt_doc_decode(enc, elen, &bad), TETHER_ECORRUPT);
  tt_buf b = {0};
  assert_int_equal(tt_buf_add(&b, "keep", 4), 0);
  assert_int_equal(tt_doc_changes_text(enc, elen, 0, &b), TETHER_ECORRUPT);
  assert_int_equal(b.len, 4);
  /* Also when that field is not sent (its stamp is below the cursor). */
  assert_int_equal(tt_doc_changes_text(enc, elen, UINT64_MAX, &b),
                   TETHER_ECORRUPT);
  assert_int_equal(b.len, 4);
  tt_buf_free(&b);
  /* A cut record. */
  v[1] = '2';
  b = (tt_buf){0};
  assert_int_equal(tt_doc_changes_text(enc, elen - 1, 0, &b), TETHER_ECORRUPT);
  assert_int_equal(b.len, 0);
  tt_buf_free(&b);
  free(enc);
  tt_doc_clear(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fields_sorted),
      cmocka_unit_test(test_view),
      cmocka_unit_test(test_copy),
      cmocka_unit_test(test_encode_roundtrip),
      cmocka_unit_test(test_decode_truncated),
      cmocka_unit_test(test_decode_corrupt),
      cmocka_unit_test(test_decode_random),
      cmocka_unit_test(test_changes_since),
      cmocka_unit_test(test_changes_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
