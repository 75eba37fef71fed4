/* server.h — the reconciler as a state machine: it takes parsed request
 * messages and the time, and returns response messages. No sockets, no
 * clock, no threads: net/ feeds it, tests/sim drives it directly.
 *
 * Message shapes are in docs/PROTOCOL.md. One writer at a time may call
 * tt_server_push; tt_server_pull may run concurrently from other threads
 * (it only reads a store snapshot). */
#ifndef TT_SERVER_SERVER_H
#define TT_SERVER_SERVER_H

#include <jansson.h>
#include <stdint.h>

#include "core/policy.h"
#include "core/util.h"
#include "store/store.h"

typedef struct tt_server tt_server;

typedef struct {
  uint64_t max_skew_ms; /* clamp client HLCs ahead by more; 0 = 60000 */
  unsigned partitions;  /* used only when the store is new; 0 = 1 */
  size_t pull_limit;    /* most changes in one pull page; 0 = 5000 */
  /* Tests only (tests/sim): called at each crash point of a group commit
   * that writes something, in order "push:before-commit" (everything
   * written, not committed) and "push:after-commit" (durable and answered,
   * but the answers have not left). A non-zero return simulates a crash
   * there and tt_server_push returns TETHER_EUNAVAILABLE: before the
   * commit, uncommitted writes are dropped and every job gets 503
   * "unavailable"; after it, the jobs keep their answers, which the caller
   * must treat as never sent. Close the server then, as after a real
   * crash. NULL = no hook. */
  int (*fault)(void *ctx, const char *point);
  void *fault_ctx;
} tt_server_opts;

/* Opens the reconciler on ST (borrowed, must outlive the server) with
 * POLICIES (borrowed, immutable, must outlive the server). Reads or creates
 * the store's meta (format version, partition count). On failure *out is
 * NULL and errbuf names the problem. */
int tt_server_open(tt_store *st, const tt_policy_table *policies,
                   const tt_server_opts *opts, tt_server **out, char *errbuf,
                   size_t errlen);
void tt_server_close(tt_server *s);

unsigned tt_server_partitions(const tt_server *s);

/* The partition of document (COLL, ID) among NPARTS (> 0): FNV-1a 32-bit
 * over the bytes of COLL, one zero byte and the bytes of ID, modulo NPARTS.
 * Pure and stable forever: it decides where every stored document lives. */
unsigned tt_server_partition_of(const char *coll, const char *id,
                                unsigned nparts);

/* The last applied seq of replica ID, from a read snapshot (for tests and
 * admin tools). TETHER_ENOTFOUND when the server never applied an intent of
 * it (then *last is 0). Safe concurrently with push. */
int tt_server_replica_last_seq(tt_server *s, const uint8_t id[TT_ID_LEN],
                               uint64_t *last);

/* One push request of a group commit. */
typedef struct {
  const json_t *request; /* in: the parsed body (borrowed) */
  int status;            /* out: HTTP status (200, 400, 409, 503, ...) */
  json_t *response;      /* out: body; caller releases with json_decref */
} tt_push_job;

/* Applies the jobs in order as ONE group commit: every intent of every
 * valid job is validated, deduplicated, merged and written, then committed
 * durably (one store transaction on LMDB, whose transactions span every
 * partition; a per-partition backend will need one per partition touched),
 * and only then are the responses filled. Each job sees the effects of the
 * jobs before it. A job that is invalid as a whole (malformed, bad hash,
 * broken chain, gap, wrong replica) gets a 4xx and changes nothing; the
 * other jobs go on. If the commit fails, every job gets 503 (or 507 when
 * the store is full) and nothing is acknowledged. Returns 0, or the commit
 * error (responses are filled either way). */
int tt_server_push(tt_server *s, tt_push_job *jobs, size_t njobs,
                   uint64_t now_ms);

/* Answers one pull request from a read snapshot. *response is set in every
 * case (caller releases it). Returns 0 or a store error. */
int tt_server_pull(tt_server *s, const json_t *request, int *status,
                   json_t **response);

/* Counters for /metrics and for waking long-polls. Monotonic. */
typedef struct {
  uint64_t commits;        /* group commits that changed something */
  uint64_t pushes;         /* push requests answered */
  uint64_t pulls;
  uint64_t intents_applied;
  uint64_t intents_merged;
  uint64_t intents_conflict;
  uint64_t intents_rejected;
  uint64_t intents_duplicate;
  uint64_t concurrent_writes; /* same-field concurrency detected (audited) */
  uint64_t bad_requests;      /* 4xx answers */
} tt_server_stats;
void tt_server_get_stats(const tt_server *s, tt_server_stats *out);

#endif
