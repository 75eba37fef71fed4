/* fuzz_codec.c — the wire codec (net/codec.h): body decoding with and
 * without zstd, JSON body parsing, the encoding headers.
 *
 * The first input byte selects the case (low 2 bits) and the bound (high
 * bits), the rest is the body:
 *   0 identity body -> tt_codec_decode: a fresh NUL-terminated copy of
 *     the bytes, or ETOOBIG past the bound
 *   1 zstd body     -> tt_codec_decode: never more than the bound, corrupt
 *     input is EPROTO; what comes out compresses and decompresses back
 *   2 header text   -> tt_codec_encoding, tt_codec_accepts_zstd
 *   3 any bytes     -> compress, then decompress with the exact bound
 *     (same bytes) and one byte less (ETOOBIG)
 * Every decoded body is also given to tt_codec_parse: an accepted object
 * dumps to text that parses to the same canonical text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "fuzz_common.h"
#include "net/codec.h"

static const size_t bounds[] = {0, 1, 64, 4096, 1u << 20};

static void parse_body(const char *text, size_t len) {
  json_t *j = NULL, *j2 = NULL;
  char err[256], *s, *s2;
  size_t l, l2;
  int rc = tt_codec_parse(text, len, &j, err, sizeof err);
  if (rc) {
    FF_CHECK(rc == TETHER_EJSON && j == NULL && err[0],
             "parse refusal: %s", tether_err_name(rc));
    return;
  }
  FF_CHECK(json_is_object(j), "parsed body is not an object");
  s = tt_codec_dump(j, &l);
  FF_CHECK(s && strlen(s) == l, "dump");
  rc = tt_codec_parse(s, l, &j2, err, sizeof err);
  FF_CHECK(rc == 0, "dumped body does not parse: %s", err);
  s2 = tt_codec_dump(j2, &l2);
  FF_CHECK(s2 && l2 == l && !memcmp(s, s2, l), "dump not stable");
  free(s);
  free(s2);
  json_decref(j);
  json_decref(j2);
}

static void decode_case(tt_encoding enc, const uint8_t *d, size_t n,
                        size_t max) {
  char *out = (char *)&out;
  size_t olen = 12345;
  int rc = tt_codec_decode(enc, d, n, max, &out, &olen);
  if (rc) {
    FF_CHECK(out == NULL, "failed decode left a buffer");
    if (enc == TT_ENC_IDENTITY)
      FF_CHECK(rc == TETHER_ETOOBIG && n > max, "identity decode: %s",
               tether_err_name(rc));
    else
      FF_CHECK(rc == TETHER_ETOOBIG || rc == TETHER_EPROTO,
               "zstd decode: %s", tether_err_name(rc));
    return;
  }
  FF_CHECK(olen <= max, "decoded %zu bytes past the bound %zu", olen, max);
  FF_CHECK(out[olen] == '\0', "not NUL-terminated");
  if (enc == TT_ENC_IDENTITY) {
    FF_CHECK(olen == n && !memcmp(out, d, n), "identity changed bytes");
  } else {
    char *z = NULL, *back = NULL;
    size_t zl = 0, bl = 0;
    FF_CHECK(tt_codec_compress(out, olen, &z, &zl) == 0, "compress");
    FF_CHECK(tt_codec_decompress(z, zl, olen, &back, &bl) == 0 &&
                 bl == olen && !memcmp(back, out, olen),
             "zstd round trip");
    free(z);
    free(back);
  }
  parse_body(out, olen);
  free(out);
}

static void header_case(const uint8_t *d, size_t n) {
  char *h = malloc(n + 1);
  FF_CHECK(h != NULL, "oom");
  memcpy(h, d, n);
  h[n] = 0;
  tt_encoding e = tt_codec_encoding(h);
  FF_CHECK(e == TT_ENC_IDENTITY || e == TT_ENC_ZSTD || e == TT_ENC_UNKNOWN,
           "encoding value");
  int a = tt_codec_accepts_zstd(h);
  FF_CHECK(a == 0 || a == 1, "accepts_zstd value");
  if (e == TT_ENC_UNKNOWN) {
    char *out = NULL;
    size_t ol;
    FF_CHECK(tt_codec_decode(e, "x", 1, 10, &out, &ol) == TETHER_EINVAL &&
                 out == NULL,
             "unknown encoding decoded");
  }
  free(h);
}

static void roundtrip_case(const uint8_t *d, size_t n) {
  char *z = NULL, *back = NULL;
  size_t zl = 0, bl = 0;
  int rc;
  FF_CHECK(tt_codec_compress(d, n, &z, &zl) == 0, "compress");
  rc = tt_codec_decompress(z, zl, n, &back, &bl);
  FF_CHECK(rc == 0 && bl == n && (n == 0 || !memcmp(back, d, n)),
           "compress/decompress round trip");
  free(back);
  back = NULL;
  if (n > 0) {
    rc = tt_codec_decompress(z, zl, n - 1, &back, &bl);
    FF_CHECK(rc == TETHER_ETOOBIG && back == NULL,
             "decompress past the bound: %s", tether_err_name(rc));
  }
  free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *d = data + 1;
  size_t n, max;

  if (size == 0)
    return 0;
  n = size - 1;
  max = bounds[(data[0] >> 2) % (sizeof bounds / sizeof bounds[0])];
  switch (data[0] & 3) {
  case 0:
    decode_case(TT_ENC_IDENTITY, d, n, max);
    break;
  case 1:
    decode_case(TT_ENC_ZSTD, d, n, max);
    break;
  case 2:
    header_case(d, n);
    break;
  default:
    roundtrip_case(d, n);
    break;
  }
  return 0;
}
