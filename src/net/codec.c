/* codec.c — bounded JSON and zstd body codec. */
#include "net/codec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "core/json.h"
#include "core/util.h"

/* Compares the token [s, s+n) to NAME ignoring case and blanks around. */
static int token_is(const char *s, size_t n, const char *name) {
  while (n > 0 && isspace((unsigned char)*s)) {
    s++;
    n--;
  }
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    n--;
  return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

tt_encoding tt_codec_encoding(const char *header) {
  if (header == NULL)
    return TT_ENC_IDENTITY;
  size_t n = strlen(header);
  if (token_is(header, n, "") || token_is(header, n, "identity"))
    return TT_ENC_IDENTITY;
  if (token_is(header, n, "zstd"))
    return TT_ENC_ZSTD;
  return TT_ENC_UNKNOWN;
}

int tt_codec_accepts_zstd(const char *header) {
  if (header == NULL)
    return 0;
  const char *p = header;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    /* "zstd" or "zstd;q=0.5"; "q=0" refuses it. */
    const char *semi = memchr(p, ';', n);
    size_t name_len = semi ? (size_t)(semi - p) : n;
    if (token_is(p, name_len, "zstd")) {
      if (semi == NULL)
        return 1;
      const char *q = semi + 1;
      while (q < p + n && isspace((unsigned char)*q))
        q++;
      if (q + 2 <= p + n && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
        double qv = strtod(q + 2, NULL);
        return qv > 0.0;
      }
      return 1;
    }
    if (end == NULL)
      break;
    p = end + 1;
  }
  return 0;
}

int tt_codec_compress(const void *in, size_t len, char **out, size_t *outlen) {
  *out = NULL;
  *outlen = 0;
  size_t bound = ZSTD_compressBound(len);
  if (ZSTD_isError(bound))
    return TETHER_ETOOBIG;
  char *buf = malloc(bound ? bound : 1);
  if (buf == NULL)
    return TETHER_ENOMEM;
  /* Level 1: on a push body of 5,000 intents (2.4 MB of JSON) it both
   * compresses better than zstd's default level 3 (8.6x against 7.7x: the
   * hashes do not compress and the rest repeats at short range) and runs at
   * twice its speed (`zstd -b1 -e3` on the benchmark machine: 620 against
   * 296 MB/s); the client compresses every large body on the sync path. */
  size_t n = ZSTD_compress(buf, bound, in, len, 1);
  if (ZSTD_isError(n)) {
    free(buf);
    return TETHER_EINVAL;
  }
  *out = buf;
  *outlen = n;
  return 0;
}

int tt_codec_decompress(const void *in, size_t len, size_t max, char **out,
                        size_t *outlen) {
  int rc = 0;
  char *buf = NULL;
  size_t cap = 0;
  ZSTD_DCtx *dctx = NULL;
  *out = NULL;
  *outlen = 0;

  /* A frame that declares a content size over the limit is refused before
   * any work; frames that do not declare one are caught while streaming. */
  unsigned long long declared = ZSTD_getFrameContentSize(in, len);
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    rc = TETHER_EPROTO;
    goto out;
  }
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > max) {
    rc = TETHER_ETOOBIG;
    goto out;
  }
  dctx = ZSTD_createDCtx();
  if (dctx == NULL) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  /* Bound the decoder's window too, so a frame cannot ask for a huge
   * history buffer (zstd's own default limit is 128 MiB). */
  ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27);

  /* Start from the declared size when it is known and sane, else from a
   * guess; grow by doubling, never past MAX + 1 (the +1 detects overflow
   * and holds the terminating NUL). */
  cap = declared != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)declared + 1
                                             : (len < max / 4 ? len * 4 : max);
  if (cap < 256)
    cap = 256;
  if (cap > max + 1)
    cap = max + 1;
  buf = malloc(cap);
  if (buf == NULL) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  ZSTD_inBuffer ib = {in, len, 0};
  ZSTD_outBuffer ob = {buf, cap, 0};
  size_t last = 0;
  for (;;) {
    last = ZSTD_decompressStream(dctx, &ob, &ib);
    if (ZSTD_isError(last)) {
      rc = ZSTD_getErrorCode(last) == ZSTD_error_frameParameter_windowTooLarge
               ? TETHER_ETOOBIG
               : TETHER_EPROTO;
      goto out;
    }
    if (ob.pos > max) {
      rc = TETHER_ETOOBIG;
      goto out;
    }
    if (ib.pos == ib.size && ob.pos < ob.size)
      break; /* all input consumed and the decoder had room: done */
    if (ob.pos == ob.size) {
      if (cap >= max + 1) {
        rc = TETHER_ETOOBIG; /* full at the limit with more to come */
        goto out;
      }
      size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
      char *nb = realloc(buf, ncap);
      if (nb == NULL) {
        rc = TETHER_ENOMEM;
        goto out;
      }
      buf = nb;
      cap = ncap;
      ob.dst = buf;
      ob.size = cap;
    }
  }
  if (last != 0) {
    rc = TETHER_EPROTO; /* input ended inside a frame */
    goto out;
  }
  if (ob.pos >= cap) { /* room for the NUL (cap <= max + 1 always) */
    rc = TETHER_ETOOBIG;
    goto out;
  }
  buf[ob.pos] = '\0';
  *out = buf;
  *outlen = ob.pos;
  buf = NULL;
out:
  free(buf);
  ZSTD_freeDCtx(dctx);
  return rc;
}

int tt_codec_decode(tt_encoding enc, const void *in, size_t len, size_t max,
                    char **out, size_t *outlen) {
  *out = NULL;
  *outlen = 0;
  if (enc == TT_ENC_ZSTD)
    return tt_codec_decompress(in, len, max, out, outlen);
  if (enc != TT_ENC_IDENTITY)
    return TETHER_EINVAL;
  if (len > max)
    return TETHER_ETOOBIG;
  char *buf = malloc(len + 1);
  if (buf == NULL)
    return TETHER_ENOMEM;
  if (len)
    memcpy(buf, in, len);
  buf[len] = '\0';
  *out = buf;
  *outlen = len;
  return 0;
}

int tt_codec_parse(const char *text, size_t len, json_t **out, char *errbuf,
                   size_t errlen) {
  tt_json_error err;
  *out = NULL;
  if (len == 0) {
    tt_errf(errbuf, errlen, "empty body, expected a JSON object");
    return TETHER_EJSON;
  }
  json_t *v;
  int rc = tt_json_parse(text, len, TT_JSON_REJECT_DUPLICATES, &v, &err);
  if (rc) {
    tt_errf(errbuf, errlen, "%s at line %d column %d", err.text, err.line,
            err.column);
    return rc;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    tt_errf(errbuf, errlen, "body is not a JSON object");
    return TETHER_EJSON;
  }
  *out = v;
  return 0;
}

char *tt_codec_dump(const json_t *v, size_t *len) {
  return tt_canon_n(v, len);
}
