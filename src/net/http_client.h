/* http_client.h — the replica's side of the wire: POST a JSON body to the
 * server and get the status and parsed JSON answer back (libcurl; one
 * connection kept alive across calls). Retries with jittered exponential
 * backoff on connection errors and on 502/503/504; zstd request bodies
 * once the server has said it accepts them. */
#ifndef TT_NET_HTTP_CLIENT_H
#define TT_NET_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tether.h"

typedef struct tt_http_client tt_http_client;

typedef struct {
  uint32_t timeout_ms;      /* whole request; 0 = 30000 */
  uint32_t connect_ms;      /* connect phase; 0 = min(timeout, 5000) */
  uint32_t retries;         /* extra attempts; 0 = 4 */
  uint32_t backoff_ms;      /* first pause, doubled per retry; 0 = 100 */
  uint32_t backoff_max_ms;  /* largest pause; 0 = 5000 */
  int no_retry;             /* 1: a single attempt (retries ignored) */
} tt_http_client_opts;

/* BASE_URL like "http://127.0.0.1:8420" (a trailing '/' is ignored); it is
 * copied. OPTS may be NULL. TETHER_EINVAL for an empty URL. On failure *out
 * is NULL. Free with tt_http_client_free. */
int tt_http_client_new(const char *base_url, const tt_http_client_opts *opts,
                       tt_http_client **out);
/* A client of the same server with the same options and its own
 * connection, for a second request in flight at once (a client is used by
 * one thread at a time). It starts knowing what C knows of the server's
 * zstd. On failure *out is NULL. Free with tt_http_client_free. */
int tt_http_client_sibling(const tt_http_client *c, tt_http_client **out);
/* NULL is a no-op. */
void tt_http_client_free(tt_http_client *c);

/* POSTs BODY (borrowed) to base_url + PATH.
 * Returns 0 when the server answered with a JSON object body: *status is the
 * HTTP status (any, 4xx and 5xx included) and *resp a new reference the
 * caller releases with json_decref.
 * Errors (*resp NULL; errbuf says what, naming the URL):
 *   TETHER_EUNREACHABLE  no connection or no answer after every retry
 *                        (refused, timed out, reset, DNS failure), or
 *                        502/503/504 without a JSON body after every retry
 *   TETHER_EPROTO        an answer that is not a JSON object, or bad zstd
 *   TETHER_ETOOBIG       an answer over TT_CODEC_MAX_RESPONSE
 *   TETHER_ENOMEM / TETHER_EINVAL
 * A 502/503/504 with a JSON body is retried, then returned as 0 with the
 * status, so the caller sees the server's reason. */
int tt_http_post(tt_http_client *c, const char *path, const json_t *body,
                 int *status, json_t **resp, char *errbuf, size_t errlen);

/* The same with a body that is already JSON text (LEN bytes, borrowed). */
int tt_http_post_text(tt_http_client *c, const char *path, const char *text,
                      size_t len, int *status, json_t **resp, char *errbuf,
                      size_t errlen);

/* GETs base_url + PATH (e.g. "/v1/health"); same contract as tt_http_post. */
int tt_http_get(tt_http_client *c, const char *path, int *status,
                json_t **resp, char *errbuf, size_t errlen);

/* Bytes on the wire so far (headers and bodies as sent, i.e. compressed). */
void tt_http_client_bytes(const tt_http_client *c, uint64_t *sent,
                          uint64_t *received);

/* 1 once the server has answered with "Accept-Encoding: zstd". */
int tt_http_client_server_zstd(const tt_http_client *c);

#endif
