/* tether_server.h — embedding the tether reconciliation server.
 *
 * Same conventions as tether.h (error codes, ownership, NULL no-ops).
 * The server runs its own threads; the calls below are thread-safe.
 */
#ifndef TETHER_SERVER_H
#define TETHER_SERVER_H

#include "tether.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tether_server tether_server; /* opaque */

typedef struct {
  const char *data_dir;    /* embedded LMDB store; default "./tether-data" */
  const char *host;        /* listen address; default "127.0.0.1" */
  uint16_t port;           /* 0 (as in a zeroed opts) picks a free port
                              (see tether_server_port); a NULL opts, and
                              the CLI's `tether serve`, use 8420 */
  const char *config_path; /* policy config JSON file; NULL = all lww */
  uint64_t max_skew_ms;    /* clamp client clocks ahead by more; default 60000 */
  uint64_t map_size;       /* LMDB map size in bytes; 0 = default (64 GiB) */
  size_t max_body;         /* largest request body; 0 = default (64 MiB) */
  /* Log sink; the library never prints. LEVEL is "info", "warn" or "error".
   * MSG is one line, valid only during the call. NULL = silent. */
  void (*log)(void *ctx, const char *level, const char *msg);
  void *log_ctx;
  /* Where the server keeps its state. NULL, "" or "lmdb": the embedded
   * LMDB store in data_dir. "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"
   * (one redis-server) or "redis-cluster://HOST[:PORT][,HOST[:PORT]...]"
   * (seed nodes of a Redis Cluster), either with "?wait=N&wait_ms=MS"
   * (WAIT for N replicas after each commit): several servers may share one
   * Redis or cluster (docs/REDIS.md). data_dir is unused then. */
  const char *backend;
  /* Partitions of a new store, 1 to 4096 (0 = 1); an existing store keeps
   * its own count. On Redis Cluster a partition is one hash slot, so more
   * partitions spread the data over more nodes. */
  unsigned partitions;
} tether_server_opts;

/* Opens the store and starts listening. On success *out is a running server
 * to stop with tether_server_stop(); on failure *out is NULL and ERRBUF (if
 * non-NULL) holds a one-line reason naming what was wrong. */
int tether_server_start(tether_server **out, const tether_server_opts *opts,
                        char *errbuf, size_t errlen);

/* The port actually bound (useful with port 0). */
uint16_t tether_server_port(const tether_server *s);

/* Stops accepting, finishes in-flight commits, closes the store, frees S. */
void tether_server_stop(tether_server *s);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_SERVER_H */
