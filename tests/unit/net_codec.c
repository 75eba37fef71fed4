/* net_codec.c — zstd body codec: round trip, bomb limit, garbage; JSON
 * body parsing; header parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "net/codec.h"

static void test_round_trip(void **state) {
  (void)state;
  size_t len = 100000;
  char *in = malloc(len);
  assert_non_null(in);
  for (size_t i = 0; i < len; i++)
    in[i] = (char)("{\"title\":\"hello\"}"[i % 17] + (i / 1000) % 3);
  char *z = NULL, *out = NULL;
  size_t zlen = 0, outlen = 0;
  assert_int_equal(tt_codec_compress(in, len, &z, &zlen), 0);
  assert_true(zlen < len / 4); /* repetitive text shrinks */
  assert_int_equal(tt_codec_decompress(z, zlen, len, &out, &outlen), 0);
  assert_int_equal(outlen, len);
  assert_memory_equal(out, in, len);
  assert_int_equal(out[outlen], '\0');
  free(out);
  /* One byte under the real size is over the limit. */
  assert_int_equal(tt_codec_decompress(z, zlen, len - 1, &out, &outlen),
                   TETHER_ETOOBIG);
  assert_null(out);
  /* Through the generic decoder too. */
  assert_int_equal(tt_codec_decode(TT_ENC_ZSTD, z, zlen, len, &out, &outlen),
                   0);
  assert_int_equal(outlen, len);
  free(out);
  free(z);
  free(in);
}

static void test_empty_round_trip(void **state) {
  (void)state;
  char *z = NULL, *out = NULL;
  size_t zlen = 0, outlen = 1;
  assert_int_equal(tt_codec_compress("", 0, &z, &zlen), 0);
  assert_true(zlen > 0);
  assert_int_equal(tt_codec_decompress(z, zlen, 10, &out, &outlen), 0);
  assert_int_equal(outlen, 0);
  assert_string_equal(out, "");
  free(out);
  free(z);
}

/* A frame that does not declare its size and expands 64 MiB of zeros:
 * must be refused at the limit, not decoded. */
static void test_bomb_streamed(void **state) {
  (void)state;
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  assert_non_null(cc);
  size_t chunk = 1 << 20;
  char *zeros = calloc(1, chunk);
  size_t cap = 1 << 20;
  char *z = malloc(cap);
  assert_non_null(zeros);
  assert_non_null(z);
  ZSTD_outBuffer ob = {z, cap, 0};
  for (int i = 0; i < 64; i++) {
    ZSTD_inBuffer ib = {zeros, chunk, 0};
    while (ib.pos < ib.size)
      assert_false(ZSTD_isError(
          ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_continue)));
  }
  ZSTD_inBuffer empty = {NULL, 0, 0};
  size_t left;
  do {
    left = ZSTD_compressStream2(cc, &ob, &empty, ZSTD_e_end);
    assert_false(ZSTD_isError(left));
  } while (left != 0);
  ZSTD_freeCCtx(cc);
  assert_true(ob.pos < 64 * 1024); /* a few KiB expanding to 64 MiB */
  assert_true(ZSTD_getFrameContentSize(z, ob.pos) == ZSTD_CONTENTSIZE_UNKNOWN);

  char *out = NULL;
  size_t outlen = 0;
  assert_int_equal(tt_codec_decompress(z, ob.pos, 1 << 20, &out, &outlen),
                   TETHER_ETOOBIG);
  assert_null(out);
  assert_int_equal(outlen, 0);
  /* With room for it all, the same frame decodes. */
  assert_int_equal(tt_codec_decompress(z, ob.pos, 64u << 20, &out, &outlen),
                   0);
  assert_int_equal(outlen, 64u << 20);
  assert_int_equal(out[12345], 0);
  free(out);
  free(z);
  free(zeros);
}

/* A frame that declares a size over the limit is refused up front. */
static void test_bomb_declared(void **state) {
  (void)state;
  size_t len = 8u << 20;
  char *zeros = calloc(1, len);
  char *z = NULL, *out = NULL;
  size_t zlen = 0, outlen = 0;
  assert_int_equal(tt_codec_compress(zeros, len, &z, &zlen), 0);
  assert_int_equal(tt_codec_decompress(z, zlen, 4096, &out, &outlen),
                   TETHER_ETOOBIG);
  assert_null(out);
  free(z);
  free(zeros);
}

static void test_garbage(void **state) {
  (void)state;
  char *out = NULL;
  size_t outlen = 0;
  assert_int_equal(tt_codec_decompress("", 0, 100, &out, &outlen),
                   TETHER_EPROTO);
  const char junk[] = "this is not zstd at all, just text";
  assert_int_equal(tt_codec_decompress(junk, sizeof junk, 100, &out, &outlen),
                   TETHER_EPROTO);
  assert_null(out);

  /* A valid frame cut short. */
  char text[5000];
  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (char)('a' + (i * 7) % 26);
  char *z = NULL;
  size_t zlen = 0;
  assert_int_equal(tt_codec_compress(text, sizeof text, &z, &zlen), 0);
  assert_int_equal(tt_codec_decompress(z, zlen - 3, 10000, &out, &outlen),
                   TETHER_EPROTO);
  assert_null(out);
  /* A flipped byte in the middle of the payload. */
  z[zlen / 2] ^= 0x5a;
  int rc = tt_codec_decompress(z, zlen, 10000, &out, &outlen);
  if (rc == 0) { /* zstd has no checksum by default: then bytes differ */
    assert_true(outlen != sizeof text || memcmp(out, text, outlen) != 0);
    free(out);
  } else {
    assert_int_equal(rc, TETHER_EPROTO);
    assert_null(out);
  }
  free(z);
}

static void test_identity_limit(void **state) {
  (void)state;
  char *out = NULL;
  size_t outlen = 0;
  assert_int_equal(tt_codec_decode(TT_ENC_IDENTITY, "abcdef", 6, 5, &out,
                                   &outlen),
                   TETHER_ETOOBIG);
  assert_null(out);
  assert_int_equal(tt_codec_decode(TT_ENC_IDENTITY, "abcdef", 6, 6, &out,
                                   &outlen),
                   0);
  assert_string_equal(out, "abcdef");
  free(out);
  assert_int_equal(tt_codec_decode(TT_ENC_UNKNOWN, "x", 1, 6, &out, &outlen),
                   TETHER_EINVAL);
}

static void test_headers(void **state) {
  (void)state;
  assert_int_equal(tt_codec_encoding(NULL), TT_ENC_IDENTITY);
  assert_int_equal(tt_codec_encoding(""), TT_ENC_IDENTITY);
  assert_int_equal(tt_codec_encoding(" identity "), TT_ENC_IDENTITY);
  assert_int_equal(tt_codec_encoding("zstd"), TT_ENC_ZSTD);
  assert_int_equal(tt_codec_encoding("ZSTD"), TT_ENC_ZSTD);
  assert_int_equal(tt_codec_encoding("gzip"), TT_ENC_UNKNOWN);
  assert_int_equal(tt_codec_encoding("zstd, gzip"), TT_ENC_UNKNOWN);

  assert_true(tt_codec_accepts_zstd("zstd"));
  assert_true(tt_codec_accepts_zstd("gzip, zstd"));
  assert_true(tt_codec_accepts_zstd("gzip;q=1, zstd;q=0.5"));
  assert_false(tt_codec_accepts_zstd("zstd;q=0"));
  assert_false(tt_codec_accepts_zstd("gzip, br"));
  assert_false(tt_codec_accepts_zstd("zstdx"));
  assert_false(tt_codec_accepts_zstd(NULL));
}

static void test_parse(void **state) {
  (void)state;
  json_t *v = NULL;
  char err[200];
  const char ok[] = "{\"v\":1,\"a\":[1,2]}";
  assert_int_equal(tt_codec_parse(ok, strlen(ok), &v, err, sizeof err), 0);
  assert_int_equal(json_integer_value(json_object_get(v, "v")), 1);
  json_decref(v);

  assert_int_equal(tt_codec_parse("[1]", 3, &v, err, sizeof err),
                   TETHER_EJSON);
  assert_null(v);
  assert_non_null(strstr(err, "not a JSON object"));

  assert_int_equal(tt_codec_parse("{\"a\":", 5, &v, err, sizeof err),
                   TETHER_EJSON);
  assert_non_null(strstr(err, "line 1"));
  assert_int_equal(tt_codec_parse("", 0, &v, err, sizeof err), TETHER_EJSON);
  /* Duplicate keys are ambiguous: refused. */
  const char dup[] = "{\"v\":1,\"v\":2}";
  assert_int_equal(tt_codec_parse(dup, strlen(dup), &v, err, sizeof err),
                   TETHER_EJSON);

  json_t *o = json_pack("{s:i,s:s}", "b", 2, "a", "x");
  size_t len = 0;
  char *s = tt_codec_dump(o, &len);
  assert_string_equal(s, "{\"a\":\"x\",\"b\":2}");
  assert_int_equal(len, strlen(s));
  free(s);
  json_decref(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_empty_round_trip),
      cmocka_unit_test(test_bomb_streamed),
      cmocka_unit_test(test_bomb_declared),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_identity_limit),
      cmocka_unit_test(test_headers),
      cmocka_unit_test(test_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
