/* server.h — the reconciler as a state machine: it takes parsed request
 * messages and the time, and returns response messages. No sockets, no
 * clock, no threads: net/ feeds it, tests/sim drives it directly.
 *
 * Message shapes are in docs/PROTOCOL.md. A handle caches nothing of the
 * store, so several handles (threads, processes, machines running `tether
 * serve`) may share one store: every decision is made from values read in
 * the store transaction that commits it, and the store serializes writers
 * per partition (LMDB: one writer for all; Redis: WATCH/MULTI/EXEC per hash
 * slot, a raced transaction is redone). tt_server_push and tt_server_pull
 * may run concurrently on one handle from several threads. */
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
  /* Tests only (tests/sim): called at the crash points of a group
   * commit, around EACH partition transaction that writes something, in
   * increasing partition order: "push:before-commit" (that partition's
   * writes made, not committed) and "push:after-commit" (that partition
   * durable). A non-zero return simulates a crash there: the partitions
   * not yet committed are never written, and tt_server_push returns
   * TETHER_EUNAVAILABLE. Every job whose partitions (and home record
   * update) had ALL committed before the crash keeps its 200 answer, which
   * the caller must treat as never sent; every other job gets 503
   * "unavailable" — though some of its intents may be durable (those of
   * partitions committed before the crash; its retry finds them
   * deduplicated). With one partition that is: before-commit, nothing
   * durable and every job 503; after-commit, everything durable and every
   * valid job 200. Close the server then, as after a real crash.
   * Also called once per intent merged, at "push:outcome", just before its
   * answer is built: non-zero makes that fail as if out of memory, which
   * fails that intent's job alone (503, nothing of it written in that
   * partition) while the others of the group commit go on. NULL = no
   * hook. */
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

/* The home partition of replica ID among NPARTS (> 0): FNV-1a 32-bit over
 * the TT_ID_LEN bytes of ID, modulo NPARTS. Pure and stable forever: it
 * decides where each replica's home record lives. */
unsigned tt_server_home_of(const uint8_t id[TT_ID_LEN], unsigned nparts);

/* The last seq of replica ID in its home record (the head of its chain as
 * the server knows it), for tests and admin tools. TETHER_ENOTFOUND when
 * the server never took an intent of it (then *last is 0). Safe
 * concurrently with push. With several partitions, after a crash between
 * partition commits, intents at or below it may still be missing from a
 * partition until the replica's retry (which is deduplicated per
 * partition) brings them. */
int tt_server_replica_last_seq(tt_server *s, const uint8_t id[TT_ID_LEN],
                               uint64_t *last);

/* The stored outcome of intent SEQ of replica ID, in the wire form of a
 * push answer (without "duplicate"), for tests and admin tools: *out is a
 * new reference the caller releases. TETHER_ENOTFOUND when the server holds
 * none (never applied, or forgotten once the replica took it; then *out is
 * NULL). */
int tt_server_outcome(tt_server *s, const uint8_t id[TT_ID_LEN], uint64_t seq,
                      json_t **out);

/* A push body read and checked on its own: step 1 of a group commit (the
 * JSON, the shape, every intent's hash and the chain inside the request),
 * which needs no store, so a connection thread can do it while the group
 * commit before runs. The body's intents are read one at a time
 * (tt_json_parse_streamed): no tree of the whole body is ever held. */
typedef struct tt_push_prep tt_push_prep;

/* Reads the LEN bytes of BODY (JSON text). 0 with *OUT set, also for a body
 * that is refused: its 4xx answer is then inside and tt_server_push gives
 * it back without touching the store. TETHER_ENOMEM (*OUT NULL) when it
 * cannot be read for want of memory. Free *OUT with tt_push_prep_free
 * (NULL is fine) once the job that carried it is answered. */
int tt_server_push_prepare(const char *body, size_t len, tt_push_prep **out);
void tt_push_prep_free(tt_push_prep *p);
/* 1 when P holds a request that says "ahead": true (PROTOCOL.md): its
 * sender may not have had the answer to its previous push yet, so a gap
 * before it may be that push still on its way (tt_push_job.may_wait). */
int tt_push_prep_ahead(const tt_push_prep *p);

/* One push request of a group commit. */
typedef struct {
  const json_t *request; /* in: the parsed body (borrowed), or NULL with: */
  tt_push_prep *prep;    /* in: the prepared body (borrowed); its intents
                            are taken by tt_server_push, and freed with
                            it (tt_push_prep_free) */
  int may_wait;          /* in: a prepared "ahead" request that finds a
                            gap before it is deferred, not refused */
  int text_answer;       /* in: a 200 answer comes as RESPONSE_TEXT */
  int status;            /* out: HTTP status (200, 400, 409, 503, ...) */
  json_t *response;      /* out: body; caller releases with json_decref;
                            NULL for a 200 answer given as text */
  char *response_text;   /* out: with text_answer, the 200 body as its
                            canonical JSON text, RESPONSE_LEN bytes (no
                            NUL); caller free()s it. Else NULL */
  size_t response_len;
  int deferred;          /* out: 1 = not run, no answer (status 0): its
                            replica's chain head is still below its first
                            seq; its prep is intact, so the caller may run
                            it again once another push commits, or with
                            may_wait 0 to answer it */
} tt_push_job;

/* Applies the jobs in order as ONE group commit (push.c tells how):
 * every job is checked as a whole first (malformed, bad hash, broken
 * chain, gap, wrong replica, an intent at the replica's last applied seq
 * that is not the one applied there: a 4xx that changes nothing; the
 * other jobs go on); then the intents of the valid jobs are deduplicated
 * (a resent intent whose stored outcome records another hash: 409 chain
 * for that job), merged and
 * written with one store transaction per partition they touch, in
 * increasing partition order (ONE transaction and one durable commit when
 * the store has one partition). Each job sees the effects of the jobs
 * before it. A job is answered 200 only once every partition holding its
 * intents, and its replica's home record update, have committed. A job
 * whose own answer cannot be built (out of memory) gets 503 alone, with
 * the other jobs of its replica in the batch; the rest go on. If a
 * partition cannot commit, every job not yet fully committed gets 503 (507
 * when the store is full) and is not acknowledged; jobs fully committed
 * before still get their 200. Returns 0, or the store error that stopped
 * the group commit (responses are filled either way). */
int tt_server_push(tt_server *s, tt_push_job *jobs, size_t njobs,
                   uint64_t now_ms);

/* Answers one pull request, reading each partition in a read transaction
 * of its own (pull.c tells why that never skips a change). *response is
 * set in every case (caller releases it). Returns 0 or a store error. */
int tt_server_pull(tt_server *s, const json_t *request, int *status,
                   json_t **response);

/* tt_server_pull, with a 200 answer as its canonical text when TEXT (the
 * HTTP server sends it as it is; the page is written from the stored
 * records, never built as a tree). */
typedef struct {
  int text;         /* in */
  int status;       /* out: HTTP status */
  json_t *response; /* out: the answer (caller json_decref()s it); NULL for
                       a 200 answer given as BODY */
  char *body;       /* out: with TEXT, the 200 answer, BODY_LEN bytes (no
                       NUL); caller free()s it. Else NULL */
  size_t body_len;
  int empty;        /* out: a 200 answer with no change that does not say
                       "more" (a long-poll waits on) */
} tt_pull_answer;
int tt_server_pull_answer(tt_server *s, const json_t *request,
                          tt_pull_answer *a);

/* Counters for /metrics and for waking long-polls. Monotonic. */
typedef struct {
  uint64_t commits;        /* group commits that changed something */
  uint64_t pushes;         /* push requests answered */
  uint64_t pushes_held;    /* times a push sent ahead was held (deferred:
                              the push before it had not committed) */
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
