/* http_server.h — the HTTP face of a tt_server (docs/PROTOCOL.md):
 * POST /v1/push, POST /v1/pull (long-poll), GET /v1/health, GET /metrics.
 *
 * libmicrohttpd runs one thread per connection, so long-polling replicas
 * each hold a thread, never the others. Handler threads never call
 * tt_server_push themselves: they queue a tt_push_job and wait while one
 * committer thread applies everything queued as one group commit (one
 * durable commit shared by all of them), then wakes them and every
 * long-poll. */
#ifndef TT_NET_HTTP_SERVER_H
#define TT_NET_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "server/server.h"

typedef struct tt_http_server tt_http_server;

typedef struct {
  const char *host;       /* numeric IPv4/IPv6 address or "localhost";
                             NULL = "127.0.0.1" */
  uint16_t port;          /* 0 picks a free port */
  size_t max_body;        /* request body bound, decompressed; 0 = 64 MiB */
  /* Request body bytes buffered at once over all connections (raw bodies
   * while they arrive, then their decoded text until it is parsed; parsed
   * JSON is not counted); past it a request is answered 503 busy with
   * Retry-After. 0 = 1 GiB. */
  size_t max_buffered;
  /* Concurrent connections; 0 = 1000, and never more: each may hold a
   * store read transaction and LMDB has 1024 reader slots. */
  unsigned max_conns;
  size_t max_batch;       /* push jobs in one group commit; 0 = 256 */
  uint32_t max_wait_ms;   /* long-poll cap; 0 = 60000 */
  /* How long a push sent "ahead" (PROTOCOL.md) that finds a gap before it
   * waits for the push it follows to commit; 0 = 2000 */
  uint32_t ahead_wait_ms;
  /* Log sink as in tether_server_opts; may be NULL. */
  void (*log)(void *ctx, const char *level, const char *msg);
  void *log_ctx;
} tt_http_server_opts;

/* Starts serving SRV (borrowed; must outlive the HTTP server). On failure
 * *out is NULL and errbuf says what could not be bound or started. */
int tt_http_server_start(tt_server *srv, const tt_http_server_opts *opts,
                         tt_http_server **out, char *errbuf, size_t errlen);

uint16_t tt_http_server_port(const tt_http_server *h);

/* The connection limit in effect. */
unsigned tt_http_server_max_conns(const tt_http_server *h);

/* Request body bytes of the max_buffered budget held right now. */
size_t tt_http_server_buffered(const tt_http_server *h);

/* Wire byte counters (request/response bodies as sent on the wire, i.e.
 * after compression). */
void tt_http_server_bytes(const tt_http_server *h, uint64_t *req_bytes,
                          uint64_t *resp_bytes);

/* Stops accepting connections, answers every long-poll and held push at
 * once, lets pushes already queued finish their group commit, answers a new
 * request on a connection kept alive 503, and waits (up to 5 s) until every
 * answer under way has been sent before it closes the connections. Then it
 * joins every thread and frees H. The tt_server is not closed. NULL is a
 * no-op. */
void tt_http_server_stop(tt_http_server *h);

#endif
