/* codec.h — request/response bodies on the wire: JSON text <-> json_t and
 * the zstd Content-Encoding, every buffer bounded (docs/PROTOCOL.md,
 * "Compression"). Pure functions; no sockets. */
#ifndef TT_NET_CODEC_H
#define TT_NET_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "tether.h"

/* Bodies larger than this are compressed when the peer accepts zstd. */
#define TT_CODEC_COMPRESS_MIN 4096
/* Default bound on a request body (decompressed bytes), as in
 * tether_server_opts.max_body. */
#define TT_CODEC_MAX_BODY_DEFAULT ((size_t)64 << 20)
/* Bound on a response body the client accepts (decompressed bytes). */
#define TT_CODEC_MAX_RESPONSE ((size_t)512 << 20)

typedef enum {
  TT_ENC_IDENTITY = 0,
  TT_ENC_ZSTD,
  TT_ENC_UNKNOWN
} tt_encoding;

/* Maps a Content-Encoding header value (NULL or "" = identity; names are
 * case-insensitive, surrounding blanks ignored). */
tt_encoding tt_codec_encoding(const char *header);

/* 1 if an Accept-Encoding header value lists zstd (with q > 0). */
int tt_codec_accepts_zstd(const char *header);

/* Compresses IN (LEN bytes) as one zstd frame. On success *out is a
 * malloc'd buffer of *outlen bytes (caller frees with free()).
 * TETHER_ENOMEM or TETHER_EINVAL (zstd refused). */
int tt_codec_compress(const void *in, size_t len, char **out, size_t *outlen);

/* Decompresses one or more zstd frames, never producing more than MAX
 * bytes: past that it stops and returns TETHER_ETOOBIG without having
 * allocated more than MAX (+1) bytes. Corrupt or truncated input is
 * TETHER_EPROTO. On success *out is malloc'd, NUL-terminated (the NUL is
 * not counted in *outlen; caller frees with free()); on failure *out is
 * NULL. */
int tt_codec_decompress(const void *in, size_t len, size_t max, char **out,
                        size_t *outlen);

/* Decodes a body with encoding ENC into plain bytes bounded by MAX:
 * identity bodies longer than MAX are TETHER_ETOOBIG too; TT_ENC_UNKNOWN
 * is TETHER_EINVAL. *out as for tt_codec_decompress (always a fresh,
 * NUL-terminated copy). */
int tt_codec_decode(tt_encoding enc, const void *in, size_t len, size_t max,
                    char **out, size_t *outlen);

/* Parses a body that must be one JSON object. On success *out is a new
 * reference. On failure *out is NULL, the return is TETHER_EJSON (not JSON,
 * or not an object) and errbuf names the problem and its position. */
int tt_codec_parse(const char *text, size_t len, json_t **out, char *errbuf,
                   size_t errlen);

/* Compact JSON text of V (keys sorted), malloc'd and NUL-terminated; its
 * length in *len. NULL on ENOMEM. Caller frees with free(). */
char *tt_codec_dump(const json_t *v, size_t *len);

#endif
